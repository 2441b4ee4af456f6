// `rift experiment`: a declared, fair small-scale reproduction of the RIFT paper's comparisons on the embedded base
// model (lib/experiment/protocol.ts holds the protocol; report.ts turns the runs into the report).
//
//   0. problem sets (data.ts), rollouts of the base model (K_max per training problem, resumable files)
//   1. base model on every evaluation set (the same evaluation seeds as the runs)
//   2. grid      each method's learning rate (DPO: and β) from a small grid, epoch-matched, on the VALIDATION split
//   3. main      the chosen settings, every seed, epoch-matched (E passes over each method's own data); test + OOD
//   4. updates   the same, update-matched (every method makes RIFT-token's number of updates)
//   5. ablations RIFT-token (and RFT where it is a comparison) on the ablation seeds: r_neg, group-normalised rewards,
//                K, normaliser
//   6. difficulty RIFT-token vs RFT on easier / harder training sets (different shares of mixed problems)
//   7. collapse  naive vs RIFT-token at RIFT-token's learning rate, constant LR, several epochs, validation after each
//   8. memory    RIFT vs DPO (held reference): predicted for Qwen2.5-Math-1.5B/7B, measured on the base model's shapes
// Every finished run is appended to OUT/runs.jsonl (keyed by its spec and the sizing), so an interrupted run resumes
// and `--parts` runs a subset; the report is rebuilt from all runs present each time.
// `setting` (protocol.ts SETTINGS) picks the base model, the problem sets and the sizings: 'tiny' (default) or 'hard'.
// OUT/setting.json records it; an OUT made for the other setting is refused (an OUT without the marker but with runs
// predates settings: 'tiny').
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { writeProblems } from '../data/problems';
import { Model } from '../engine/model';
import { Tokenizer } from '../engine/tokenizer';
import { writeJsonAtomic } from '../eval/evaluate';
import { defaultModelDir, PromptFormat, resolvePromptSpec } from '../loop';
import { selectExamples, type Example } from '../train/examples';
import { examplesFor, experimentProblems, makeRollouts, referenceFor, statsAtK, type RolloutSet } from './data';
import { measuredComparisons, predictedComparisons, type MemoryComparison } from './memory';
import {
  MAIN_METHODS,
  MAIN_REWARD,
  PARTS,
  settingSpec,
  type Budget,
  type ExperimentSetting,
  type DataSpec,
  type ExperimentSize,
  type ExperimentSizing,
  type MethodSpec,
  type Part,
} from './protocol';
import { writeExperimentReport, type ExperimentCall, type ExperimentData } from './report';
import { executeRun, runKey, RunStore, updatesPerEpoch, type RunContext, type RunRecord, type RunSpec } from './runner';

export interface ExperimentOptions {
  /** Output directory (default 'experiment-out'). */
  out?: string;
  size?: ExperimentSize;
  /** 'tiny' (default: models/tiny-base, difficulty 2) or 'hard' (models/hard-base, difficulty 4). */
  setting?: ExperimentSetting;
  /** Parts to run (default all); the report uses every run found in OUT/runs.jsonl. */
  parts?: readonly Part[];
  modelDir?: string;
  /** Overrides of the sizing (tests; a different sizing is a different set of runs). */
  sizing?: Partial<ExperimentSizing>;
  log?: (line: string) => void;
}

export interface ExperimentResult {
  out: string;
  report: string;
  runs: number;
  newRuns: number;
  wallSeconds: number;
}

const BASE_METHOD: MethodSpec = { name: 'base', method: 'sft', grid: 'sample' };
const find = (name: string) => MAIN_METHODS.find((m) => m.name === name)!;

export async function runExperiment(opts: ExperimentOptions = {}): Promise<ExperimentResult> {
  const t0 = Date.now();
  const out = opts.out ?? 'experiment-out';
  const size = opts.size ?? 'full';
  const settingName = opts.setting ?? 'tiny';
  const setting = settingSpec(settingName);
  if (!Object.prototype.hasOwnProperty.call(setting.sizings, size))
    throw new RangeError(
      `size: must be one of ${Object.keys(setting.sizings).join(', ')}, got ${JSON.stringify(size)}`,
    );
  const sizing: ExperimentSizing = { ...setting.sizings[size], ...(opts.sizing ?? {}) };
  const parts = new Set<Part>(opts.parts ?? PARTS);
  for (const p of parts)
    if (!PARTS.includes(p)) throw new RangeError(`parts: unknown part ${JSON.stringify(p)} (${PARTS.join(', ')})`);
  const log = opts.log ?? (() => undefined);
  const modelDir = opts.modelDir ?? path.join(path.dirname(defaultModelDir()), setting.model);
  if (!fs.existsSync(path.join(modelDir, 'config.json')))
    throw new Error(
      `${modelDir}: no base model (config.json missing)${settingName === 'hard' && !opts.modelDir ? '; make it with `node scripts/make-base-model.js --preset hard`' : ''}`,
    );
  fs.mkdirSync(out, { recursive: true });
  claimSetting(out, settingName);
  const timings: Record<string, number> = {};
  const timed = async <T>(name: string, f: () => Promise<T>): Promise<T> => {
    const s = Date.now();
    try {
      return await f();
    } finally {
      timings[name] = (timings[name] ?? 0) + (Date.now() - s) / 1000;
    }
  };

  const store = new RunStore(path.join(out, 'runs.jsonl'));
  // a run's identity: its spec, the sizing and the base model's weights file (size and bytes' hash)
  const protocolKey = runKey({
    sizing,
    model: fileDigest(path.join(modelDir, 'model.safetensors')),
  } as unknown as RunSpec);
  // a part selected now, or run by an earlier call (its runs are in the report: so are the data they need)
  const stored = new Set(
    store
      .all()
      .filter((r) => r.protocol === protocolKey)
      .map((r) => r.spec.part),
  );
  const reported = (p: Part) => parts.has(p) || stored.has(p);

  // 0. data and rollouts
  const tokenizer = Tokenizer.load(modelDir);
  const format = new PromptFormat(resolvePromptSpec({}, { dir: modelDir, tokenizer }), tokenizer);
  const splits = experimentProblems(sizing, settingName);
  const dataDir = path.join(out, 'data');
  fs.mkdirSync(dataDir, { recursive: true });
  for (const [name, ps] of Object.entries(splits)) writeProblems(path.join(dataDir, `${name}.jsonl`), ps);
  const kMax = Math.max(sizing.k, ...(reported('ablations') ? sizing.kAblation : []));
  const base = Model.load(modelDir);
  const dctx = { model: base, tokenizer, format, maxNewTokens: sizing.maxNewTokens, dir: dataDir };
  const sets = new Map<DataSpec['set'], RolloutSet>();
  await timed('rollouts', async () => {
    sets.set('main', await makeRollouts(dctx, 'main', splits.train, kMax));
    if (reported('difficulty')) {
      sets.set('d1', await makeRollouts(dctx, 'd1', splits.d1Train, sizing.k));
      sets.set('d2long', await makeRollouts(dctx, 'd2long', splits.d2longTrain, sizing.k));
    }
  });
  base.dispose();
  for (const s of sets.values()) {
    const st = statsAtK(s, sizing.k);
    log(
      `rollouts ${s.name}: ${s.problems.length} problems × K=${s.k} (${s.seconds.toFixed(1)} s); at K=${sizing.k}: ${st.positives} positive / ${st.negatives} negative, mixed ${(100 * st.mixedRate).toFixed(1)}%`,
    );
  }

  const cache = new Map<string, { examples: Example[]; refs: Example[] }>();
  const examples = (d: DataSpec) => {
    const key = JSON.stringify(d);
    let e = cache.get(key);
    if (!e) {
      const set = sets.get(d.set);
      if (!set) throw new Error(`data: rollouts '${d.set}' were not made (part 'difficulty' not selected)`);
      cache.set(key, (e = { examples: examplesFor(set, d, format), refs: referenceFor(set, format) }));
    }
    return e;
  };
  const mainData: DataSpec = { set: 'main', k: sizing.k, reward: MAIN_REWARD };
  const probeSrc = examples(mainData).examples;
  const ctx: RunContext = {
    baseDir: modelDir,
    sizing,
    padId: tokenizer.padTokenId ?? 0,
    examples,
    probes: {
      positive: probeSrc.filter((e) => e.reward > 0).slice(0, sizing.probeSamples),
      negative: probeSrc.filter((e) => e.reward < 0).slice(0, sizing.probeSamples),
    },
    evalCtx: {
      tokenizer,
      format,
      k: sizing.k,
      maxNewTokens: sizing.maxNewTokens,
      sets: { val: splits.val, test: splits.test, ood: splits.ood, d1: splits.d1Test, d2long: splits.d2longTest },
    },
  };

  const keyOf = (s: RunSpec) => runKey({ ...s, protocol: protocolKey } as unknown as RunSpec);
  let newRuns = 0;
  const run = async (spec: RunSpec): Promise<RunRecord> => {
    const key = keyOf(spec);
    const have = store.get(key);
    if (have) return have;
    const label = `${spec.part} ${spec.method.name}${spec.variant ? ` [${spec.variant}]` : ''} seed ${spec.seed}`;
    const rec = await timed(spec.part, () => executeRun(spec, ctx, key));
    rec.protocol = protocolKey;
    store.add(rec);
    newRuns++;
    const ev = Object.entries(rec.evals)
      .map(
        ([s, e]) =>
          `${s} Mean@${sizing.k} ${(100 * e.meanAtK).toFixed(1)}% Pass@${sizing.k} ${(100 * e.passAtK[String(sizing.k)]).toFixed(1)}%`,
      )
      .join(', ');
    if (rec.skipped) log(`${label}: skipped: ${rec.skipped}`);
    else
      log(
        `${label}: ${rec.updates} updates${rec.diverged ? ` (DIVERGED at ${rec.diverged.step})` : ''}, ${ev} (train ${rec.trainSeconds.toFixed(1)} s, eval ${rec.evalSeconds.toFixed(1)} s)`,
      );
    return rec;
  };
  const spec = (part: string, method: MethodSpec, lr: number, seed: number, o: Partial<RunSpec> = {}): RunSpec => ({
    part,
    variant: '',
    method,
    lr,
    reduction: 'token-mean',
    seed,
    data: mainData,
    budget: { kind: 'epochs', epochs: sizing.epochs },
    schedule: 'cosine',
    evals: ['test'],
    ...o,
  });
  const baseRun = (set: string, seed: number) =>
    run(spec('base', BASE_METHOD, 0, seed, { budget: { kind: 'updates', updates: 0 }, evals: [set] }));

  // 1. the base model
  for (const seed of sizing.seeds) for (const set of ['test', 'ood']) await baseRun(set, seed);
  await baseRun('val', sizing.gridSeed);

  // 2. learning rates on the validation split
  const gridRuns = (m: MethodSpec): RunSpec[] =>
    m.grid === 'dpo'
      ? sizing.dpoLrGrid.flatMap((lr) =>
          sizing.dpoBetaGrid.map((b) =>
            spec('grid', m, lr, sizing.gridSeed, { dpoBeta: b, variant: `lr=${lr} β=${b}`, evals: ['val'] }),
          ),
        )
      : sizing.lrGrid.map((lr) => spec('grid', m, lr, sizing.gridSeed, { variant: `lr=${lr}`, evals: ['val'] }));
  const chosen = new Map<string, { lr: number; dpoBeta?: number; tuned: boolean }>();
  for (const m of MAIN_METHODS) {
    const cands: RunRecord[] = [];
    for (const s of gridRuns(m)) {
      const have = store.get(keyOf(s));
      if (have) cands.push(have);
      else if (parts.has('grid')) cands.push(await run(s));
    }
    const best = cands
      .filter((r) => !r.skipped)
      .sort(
        (a, b) =>
          b.evals.val.meanAtK - a.evals.val.meanAtK ||
          b.evals.val.passAtK[String(sizing.k)] - a.evals.val.passAtK[String(sizing.k)] ||
          a.spec.lr - b.spec.lr,
      )[0];
    if (best) chosen.set(m.name, { lr: best.spec.lr, dpoBeta: best.spec.dpoBeta, tuned: true });
    else {
      const g = m.grid === 'dpo' ? sizing.dpoLrGrid : sizing.lrGrid;
      chosen.set(m.name, {
        lr: g[Math.floor(g.length / 2)],
        dpoBeta: m.grid === 'dpo' ? sizing.dpoBetaGrid[0] : undefined,
        tuned: false,
      });
    }
  }
  const at = (m: MethodSpec, seed: number, o: Partial<RunSpec> = {}) => {
    const c = chosen.get(m.name)!;
    return spec(o.part ?? 'main', m, c.lr, seed, { dpoBeta: c.dpoBeta, ...o });
  };

  // 3–4. the chosen settings: epoch-matched, then update-matched to RIFT-token's updates
  const rift = find('RIFT-token'),
    rft = find('RFT');
  const { examples: mainEx, refs: mainRefs } = examples(mainData);
  const U = sizing.epochs * updatesPerEpoch(sizing, rift, mainEx, mainRefs);
  const updBudget: Budget = { kind: 'updates', updates: U };
  for (const m of MAIN_METHODS) {
    if (selectExamples(m.method, mainEx, { refSolutions: mainRefs }).examples.length === 0) continue;
    if (parts.has('main'))
      for (const seed of sizing.seeds) await run(at(m, seed, { part: 'main', evals: ['test', 'ood'] }));
    const epochUpdates = sizing.epochs * updatesPerEpoch(sizing, m, mainEx, mainRefs);
    if (parts.has('updates') && epochUpdates !== U)
      for (const seed of sizing.seeds) await run(at(m, seed, { part: 'updates', budget: updBudget, evals: ['test'] }));
  }

  // 5. ablations (RIFT-token; RFT where the comparison needs it)
  if (parts.has('ablations')) {
    for (const seed of sizing.ablationSeeds) {
      for (const rNeg of [-0.5, -0.8])
        await run(
          at(rift, seed, {
            part: 'ablations',
            variant: `rNeg=${rNeg}`,
            data: { ...mainData, reward: { kind: 'fixed', rNeg } },
          }),
        );
      await run(
        at(rift, seed, {
          part: 'ablations',
          variant: 'group-normalised',
          data: { ...mainData, reward: { kind: 'group' } },
        }),
      );
      for (const k of sizing.kAblation)
        for (const m of [rift, rft])
          await run(at(m, seed, { part: 'ablations', variant: `K=${k}`, data: { ...mainData, k } }));
      for (const m of [rift, rft])
        await run(at(m, seed, { part: 'ablations', variant: 'sequence-mean', reduction: 'sequence-mean' }));
    }
  }

  // 6. difficulty: other training sets, their own test sets
  if (parts.has('difficulty')) {
    for (const set of ['d1', 'd2long'] as const) {
      for (const seed of sizing.ablationSeeds) {
        await baseRun(set, seed);
        for (const m of [rift, rft])
          await run(at(m, seed, { part: 'difficulty', variant: set, data: { ...mainData, set }, evals: [set] }));
      }
    }
  }

  // 7. the collapse of the naive loss, next to RIFT-token, at RIFT-token's learning rate
  if (parts.has('collapse')) {
    const lr = chosen.get('RIFT-token')!.lr;
    for (const m of [find('naive'), rift])
      await run(
        spec('collapse', m, lr, sizing.gridSeed, {
          schedule: 'constant',
          budget: { kind: 'epochs', epochs: sizing.collapseEpochs },
          evals: ['val'],
          evalEachEpoch: ['val'],
        }),
      );
  }

  // 8. memory
  let memory: MemoryComparison[] = [];
  if (parts.has('memory')) {
    memory = await timed('memory', async () => {
      const cfg = JSON.parse(fs.readFileSync(path.join(modelDir, 'config.json'), 'utf8')) as Record<string, unknown>;
      const T = Math.max(8, Math.min(128, Number(cfg.max_position_embeddings ?? 128)));
      return [...predictedComparisons(), ...(await measuredComparisons(path.basename(modelDir), cfg, 8, T))];
    });
  }

  const data: ExperimentData = {
    size,
    setting: settingName,
    settingLabel: setting.label,
    sizing,
    modelDir,
    out,
    runs: store.all().filter((r) => r.protocol === protocolKey),
    chosen: Object.fromEntries(chosen),
    updateBudget: U,
    rollouts: Object.fromEntries(
      [...sets.values()].map((s) => [
        s.name,
        {
          problems: s.problems.length,
          k: s.k,
          seconds: s.seconds,
          atK: statsAtK(s, sizing.k),
          byK: Object.fromEntries(
            [...new Set([sizing.k, ...sizing.kAblation])].filter((k) => k <= s.k).map((k) => [k, statsAtK(s, k)]),
          ),
        },
      ]),
    ),
    problemSets: Object.fromEntries(Object.entries(setting.problemSets).map(([k, v]) => [k, v.label])),
    splits: Object.fromEntries(Object.entries(splits).map(([k, v]) => [k, v.length])),
    memory,
    timings,
    parts: [...parts],
    wallSeconds: (Date.now() - t0) / 1000,
  };
  const callsFile = path.join(out, 'calls.json');
  const thisCall = (): ExperimentCall => ({
    at: new Date(t0).toISOString(),
    parts: [...parts],
    newRuns,
    wallSeconds: (Date.now() - t0) / 1000,
    timings: { ...timings },
  });
  data.calls = [...previousCalls(callsFile), thisCall()];
  const report = await timed('report', () => writeExperimentReport(out, data));
  data.wallSeconds = (Date.now() - t0) / 1000;
  data.timings = timings;
  data.calls[data.calls.length - 1] = thisCall();
  writeJsonAtomic(callsFile, data.calls);
  writeJsonAtomic(path.join(out, 'results.json'), { ...data, runs: data.runs });
  return { out, report, runs: data.runs.length, newRuns, wallSeconds: data.wallSeconds };
}

/** The calls recorded in OUT/calls.json (none when it does not exist; an Error naming the file when unreadable). */
function previousCalls(file: string): ExperimentCall[] {
  if (!fs.existsSync(file)) return [];
  let v: unknown;
  try {
    v = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`${file}: not a list of experiment calls (${(e as Error).message})`);
  }
  if (!Array.isArray(v)) throw new Error(`${file}: not a list of experiment calls`);
  return v as ExperimentCall[];
}

/** sha256 of a file's bytes (the base model's weights: runs of another base model are other runs). */
function fileDigest(file: string): string {
  return createHash('sha256').update(fs.readFileSync(file)).digest('hex').slice(0, 16);
}

/** The setting an output directory was made for: OUT/setting.json, or 'tiny' for an older OUT with runs. */
export function outSetting(out: string): ExperimentSetting | undefined {
  const file = path.join(out, 'setting.json');
  if (fs.existsSync(file)) {
    let s: unknown;
    try {
      s = (JSON.parse(fs.readFileSync(file, 'utf8')) as { setting?: unknown }).setting;
    } catch (e) {
      throw new Error(`${file}: not a setting marker (${(e as Error).message})`);
    }
    settingSpec(s);
    return s as ExperimentSetting;
  }
  return fs.existsSync(path.join(out, 'runs.jsonl')) ? 'tiny' : undefined;
}

/** Refuses an OUT made for another setting (RangeError naming `setting`); marks a new one. */
function claimSetting(out: string, setting: ExperimentSetting): void {
  const have = outSetting(out);
  if (have !== undefined && have !== setting)
    throw new RangeError(
      `setting: ${out} holds the '${have}' setting's runs, not '${setting}'; rerun with --setting ${have} to resume it, or choose another --out`,
    );
  if (have === undefined || !fs.existsSync(path.join(out, 'setting.json')))
    writeJsonAtomic(path.join(out, 'setting.json'), { setting });
}
