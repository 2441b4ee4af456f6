// `rift demo`: the whole RIFT loop on the embedded base model, on CPU.
//
//   1. load models/tiny-base (tokenizer + model)
//   2. problems: the base model's held-out 'tiny' problems (regenerated with its data seed and split, so none was
//      in its SFT data), shuffled by the demo's data seed → train / test
//   3. rollouts of the base model on the train problems (K samples, reward rPos / rNeg) → stats
//   4. for each seed: the base model on the test problems (Mean@K, Pass@K; the evaluation seed depends on the seed)
//   5. for each method and seed: a fresh copy of the base model trained with the fair protocol's cheapest setting
//      (lib/experiment): an epoch-matched budget (each method makes `epochs` passes over its own data, so every
//      method sees each of its examples equally often), a cosine schedule with warm-up, and the method's own learning
//      rate (and DPO's β) as chosen on the validation split by `rift experiment`; peak memory per category;
//      evaluated like the base model
//   6. the Markdown table (mean ± sd over seeds), results.json, and report/ (loss curves, accuracy, memory)
//
// Nothing here writes to the terminal: `log` receives human-readable lines and `onEvent` progress events.
import * as fs from 'fs';
import * as path from 'path';
import { generateProblems, splitProblems } from '../data/synthetic';
import { writeProblems, type Problem } from '../data/problems';
import { Model } from '../engine/model';
import { Tokenizer } from '../engine/tokenizer';
import { evaluate, formatBytes, writeJsonAtomic, type EvalResult } from '../eval/evaluate';
import { runRollouts, type RolloutStats } from '../rollout/rollout';
import { lossCurvePlot, accuracyPlot, memoryPlot, type LossPoint, type MemoryRow } from '../report/plots';
import { writeReport } from '../report/report';
import type { StepMetrics, TrainerOptions } from '../train/trainer';
import { selectExamples } from '../train/examples';
import { BASE_MAX_NEW_TOKENS } from './base-model';
import {
  buildPrompts,
  defaultModelDir,
  makeScorer,
  memoryDelta,
  PromptFormat,
  referenceExamples,
  resolvePromptSpec,
  rolloutExamples,
  trainMethod,
} from '../loop';
import { collectGarbage } from '../profile/memory';

export interface DemoEvent {
  phase: 'rollout' | 'eval' | 'train';
  /** What runs: 'base', 'rift-token seed 1', … */
  label: string;
  done: number;
  total: number;
  /** Generated (rollout/eval) or trained (train) tokens so far in this phase item. */
  tokens?: number;
  loss?: number;
  /** 'start' | 'progress' | 'end' */
  kind: 'start' | 'progress' | 'end';
}

export interface DemoOptions {
  /** Output directory (default 'demo-out'). */
  out?: string;
  /** Training / evaluation seeds (default [1, 2, 3]; quick: [1]). */
  seeds?: readonly number[];
  /** A smoke run: a handful of problems, 2 steps, K = 2 (for tests). */
  quick?: boolean;
  /** The base model directory (default models/tiny-base). */
  modelDir?: string;
  log?: (line: string) => void;
  onEvent?: (e: DemoEvent) => void;
  /** Override the sizing (see DEMO_SIZES). */
  size?: Partial<DemoSize>;
}

export interface DemoSize {
  trainProblems: number;
  testProblems: number;
  k: number;
  /** Passes of every method over its own data (the epoch-matched budget). */
  epochs: number;
  /** Stop each run after this many updates (smoke runs); the schedule still spans the planned run. */
  maxSteps?: number;
  /** Sequences per optimizer update (DPO: half as many pairs). */
  sequencesPerStep: number;
  /** Most tokens (B × T) per micro-batch, for every method (DPO's reference pass included). */
  tokenBudget: number;
  /** One learning rate for every method, instead of each method's own (DEMO_METHODS). */
  lr?: number;
  /** Linear warm-up over this fraction of a run's planned updates (at least 1), then cosine to 0. */
  warmupFraction: number;
  maxNewTokens: number;
  temperature: number;
}

export const DEMO_SIZES: Record<'full' | 'quick', DemoSize> = {
  full: {
    trainProblems: 256,
    testProblems: 256,
    k: 8,
    epochs: 1,
    sequencesPerStep: 32,
    tokenBudget: 2048,
    warmupFraction: 0.1,
    maxNewTokens: BASE_MAX_NEW_TOKENS,
    temperature: 1,
  },
  quick: {
    trainProblems: 8,
    testProblems: 4,
    k: 4,
    epochs: 1,
    maxSteps: 2,
    sequencesPerStep: 4,
    tokenBudget: 2048,
    lr: 3e-4,
    warmupFraction: 0.1,
    maxNewTokens: 48,
    temperature: 1,
  },
};

export interface DemoMethod {
  name: string;
  /** lr (and DPO's dpoBeta): the setting `rift experiment` (full protocol, tiny setting, 2026-12-05) chose for the
   *  method on its validation split from the grid {1e-4, 3e-4, 1e-3} (DPO: {1e-5, 3e-5, 1e-4} × β {0.1, 0.5}). */
  options: Pick<TrainerOptions, 'method' | 'negative' | 'dpoReference' | 'lr' | 'dpoBeta'> & { lr: number };
}

export const DEMO_METHODS: readonly DemoMethod[] = [
  { name: 'SFT', options: { method: 'sft', lr: 3e-4 } },
  { name: 'RFT', options: { method: 'rft', lr: 3e-4 } },
  { name: 'DFT', options: { method: 'dft', lr: 3e-4 } },
  { name: 'DPO', options: { method: 'dpo', dpoReference: 'precomputed', lr: 3e-5, dpoBeta: 0.5 } },
  { name: 'RIFT-token', options: { method: 'rift', negative: 'token', lr: 3e-4 } },
  { name: 'RIFT-sequence', options: { method: 'rift', negative: 'sequence', lr: 3e-4 } },
  { name: 'naive', options: { method: 'naive', lr: 1e-4 } },
];

/** Updates of one run: `epochs` passes over the method's own data (DPO: pairs), capped by `maxSteps`. */
function plannedUpdates(size: DemoSize, units: number, perUpdate: number): number {
  const planned = size.epochs * Math.ceil(units / perUpdate);
  return size.maxSteps === undefined ? planned : Math.min(planned, size.maxSteps);
}

export interface RunResult {
  method: string;
  seed: number;
  meanAtK: number;
  passAtK: number;
  /** Peak tracked bytes above the baseline during training, by category and 'total'. */
  memory: Record<string, number>;
  loss: { step: number; loss: number }[];
  steps: number;
  trainSeconds: number;
  evalSeconds: number;
  tokensPerSec: number;
  /** Why the method did not run (no training data, e.g. no positive samples). */
  skipped?: string;
}

export interface DemoResult {
  out: string;
  size: DemoSize;
  seeds: number[];
  problems: { train: number; test: number };
  rollouts: RolloutStats & { seconds: number };
  runs: RunResult[];
  /** Rows of the table: base first, then each method (aggregated over seeds). */
  summary: {
    method: string;
    meanAtK: number;
    meanSd: number;
    passAtK: number;
    passSd: number;
    peakMemory: number | null;
    n: number;
  }[];
  table: string;
  timings: Record<string, number>;
  wallSeconds: number;
}

/** The demo's data: the base model's held-out problems (see the file comment). */
export function demoProblems(nTrain: number, nTest: number): { train: Problem[]; test: Problem[] } {
  // base-model.ts defaults: count 20000, seed 1, difficulty 2, 512 held out
  const all = generateProblems({ count: 20000, seed: 1, style: 'tiny', difficulty: 2 });
  const { test } = splitProblems(all, { testFraction: 512 / 20000, seed: 1 });
  if (nTrain + nTest > test.length)
    throw new RangeError(`size: ${nTrain} + ${nTest} problems exceed the ${test.length} held out from the base model`);
  return { train: test.slice(0, nTrain), test: test.slice(nTrain, nTrain + nTest) };
}

const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const sd = (xs: readonly number[]) =>
  xs.length < 2 ? 0 : Math.sqrt(xs.reduce((a, x) => a + (x - mean(xs)) ** 2, 0) / (xs.length - 1));
const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

export async function runDemo(opts: DemoOptions = {}): Promise<DemoResult> {
  const t0 = Date.now();
  const out = opts.out ?? 'demo-out';
  const quick = !!opts.quick;
  const size: DemoSize = { ...DEMO_SIZES[quick ? 'quick' : 'full'], ...(opts.size ?? {}) };
  const seeds = [...(opts.seeds ?? (quick ? [1] : [1, 2, 3]))];
  if (!seeds.length || seeds.some((s) => !Number.isSafeInteger(s) || s < 0))
    throw new RangeError(`seeds: must be integers ≥ 0, got ${seeds.join(',')}`);
  const log = opts.log ?? (() => undefined);
  const ev = opts.onEvent ?? (() => undefined);
  const modelDir = opts.modelDir ?? defaultModelDir();
  if (!fs.existsSync(path.join(modelDir, 'config.json')))
    throw new Error(`${modelDir}: no base model (config.json missing); build it with scripts/make-base-model.js`);
  fs.mkdirSync(out, { recursive: true });
  const timings: Record<string, number> = {};
  const timed = async <T>(name: string, f: () => Promise<T>): Promise<T> => {
    const s = Date.now();
    try {
      return await f();
    } finally {
      timings[name] = (timings[name] ?? 0) + (Date.now() - s) / 1000;
    }
  };

  const tok = Tokenizer.load(modelDir);
  const format = new PromptFormat(resolvePromptSpec({}, { dir: modelDir, tokenizer: tok }), tok); // the model's own format
  const { train, test } = demoProblems(size.trainProblems, size.testProblems);
  const prompts = buildPrompts(format, [...train, ...test]);
  const promptFor = (p: Problem) => prompts.get(p.id)!;
  writeProblems(path.join(out, 'train.jsonl'), train);
  writeProblems(path.join(out, 'test.jsonl'), test);
  log(
    `base model ${modelDir}; ${train.length} train / ${test.length} test problems; K=${size.k}; seeds ${seeds.join(',')}; ${size.epochs} epoch(s) of each method's own data, ${size.sequencesPerStep} sequences per update`,
  );
  const score = makeScorer({ rPos: 1, rNeg: -0.2 });
  const params = { temperature: size.temperature, maxNewTokens: size.maxNewTokens, seed: 0 };

  // 3. rollouts
  let base: Model | undefined = Model.load(modelDir);
  const rolloutFile = path.join(out, 'rollouts.jsonl');
  let rolloutTokens = 0;
  ev({ phase: 'rollout', label: 'rollouts', done: 0, total: train.length, kind: 'start' });
  const doRollouts = () =>
    runRollouts({
      model: base!,
      tokenizer: tok,
      problems: train,
      k: size.k,
      params,
      file: rolloutFile,
      score,
      promptFor,
      promptFormat: format.spec,
      onProgress: (p) => {
        rolloutTokens += p.records.reduce((a, r) => a + r.tokens, 0);
        ev({
          phase: 'rollout',
          label: 'rollouts',
          done: p.index + 1,
          total: p.total,
          tokens: rolloutTokens,
          kind: 'progress',
        });
      },
    });
  const ro = await timed('rollouts', async () => {
    try {
      return await doRollouts();
    } catch (e) {
      // a store from a run with other sampling parameters (another size) or prompts: start it afresh
      if (!(e instanceof Error && /use another file$/.test(e.message))) throw e;
      log(`${rolloutFile}: made with other sampling parameters or prompts; starting it afresh`);
      fs.rmSync(rolloutFile, { force: true });
      rolloutTokens = 0;
      return doRollouts();
    }
  });
  ev({
    phase: 'rollout',
    label: 'rollouts',
    done: train.length,
    total: train.length,
    tokens: rolloutTokens,
    kind: 'end',
  });
  const st = ro.stats;
  log(
    `rollouts: ${st.samples} samples (${ro.generated} generated, ${ro.reused} reused) in ${timings.rollouts.toFixed(1)} s: ${st.positives} positive, ${st.negatives} negative, mixed problems ${pct(st.mixedRate)}, all-correct ${st.allCorrect}, all-wrong ${st.allWrong}`,
  );
  const { examples } = rolloutExamples(ro.records, train, format);
  const refs = referenceExamples(train, format);

  const evalOne = async (model: Model, label: string, seed: number): Promise<EvalResult> => {
    let tokens = 0;
    ev({ phase: 'eval', label, done: 0, total: test.length, kind: 'start' });
    const r = await evaluate({
      model,
      tokenizer: tok,
      problems: test,
      k: size.k,
      params: { ...params, seed: 1000 + seed },
      score,
      promptFor,
      ks: [1, size.k],
      onProgress: () => undefined,
    });
    for (const p of r.perProblem) tokens += p.tokens.reduce((a, b) => a + b, 0);
    ev({ phase: 'eval', label, done: test.length, total: test.length, tokens, kind: 'end' });
    return r;
  };

  // 4. the base model
  const baseRuns: { seed: number; meanAtK: number; passAtK: number }[] = [];
  for (const seed of seeds) {
    const r = await timed('eval', () => evalOne(base!, `base seed ${seed}`, seed));
    baseRuns.push({ seed, meanAtK: r.meanAtK, passAtK: r.passAtK[String(size.k)] });
    log(`base seed ${seed}: Mean@${size.k} ${pct(r.meanAtK)}  Pass@${size.k} ${pct(r.passAtK[String(size.k)])}`);
  }
  base = undefined;

  // 5. the methods
  const runs: RunResult[] = [];
  for (const m of DEMO_METHODS) {
    for (const seed of seeds) {
      const label = `${m.name} seed ${seed}`;
      collectGarbage();
      await new Promise((r) => setImmediate(r));
      const before = Model.memory();
      Model.resetPeaks();
      const model = Model.load(modelDir);
      const dpo = m.options.method === 'dpo';
      const per = dpo ? Math.max(1, Math.floor(size.sequencesPerStep / 2)) : size.sequencesPerStep;
      let trainedTokens = 0;
      const ts = Date.now();
      const sel = selectExamples(m.options.method, examples, { refSolutions: refs });
      const units = sel.pairs ? sel.pairs.length : sel.examples.length;
      if (units === 0) {
        const why = `no training data for ${m.name} (${JSON.stringify(sel.stats)})`;
        log(`${label}: skipped: ${why}`);
        runs.push({
          method: m.name,
          seed,
          meanAtK: NaN,
          passAtK: NaN,
          memory: {},
          loss: [],
          steps: 0,
          trainSeconds: 0,
          evalSeconds: 0,
          tokensPerSec: 0,
          skipped: why,
        });
        ev({ phase: 'train', label, done: 0, total: 0, kind: 'end' });
        continue;
      }
      const planned = size.epochs * Math.ceil(units / per);
      const steps = plannedUpdates(size, units, per);
      ev({ phase: 'train', label, done: 0, total: steps, kind: 'start' });
      const { metrics } = await timed('train', () =>
        trainMethod(model, examples, refs, {
          ...m.options,
          lr: size.lr ?? m.options.lr,
          schedule: 'cosine',
          warmupSteps: Math.max(1, Math.round(size.warmupFraction * planned)),
          epochs: size.epochs,
          weightDecay: 0.01,
          maxGradNorm: 1,
          examplesPerStep: per,
          tokenBudget: size.tokenBudget,
          seed,
          padId: 0,
          ...(steps < planned ? { steps } : {}),
          onStep: (s: StepMetrics) => {
            trainedTokens += s.tokens;
            ev({
              phase: 'train',
              label,
              done: s.step,
              total: steps,
              tokens: trainedTokens,
              loss: s.loss,
              kind: 'progress',
            });
          },
        }),
      );
      const trainSeconds = (Date.now() - ts) / 1000;
      const memory = memoryDelta(before, Model.memory());
      ev({ phase: 'train', label, done: metrics.length, total: steps, tokens: trainedTokens, kind: 'end' });
      const es = Date.now();
      const r = await timed('eval', () => evalOne(model, label, seed));
      const evalSeconds = (Date.now() - es) / 1000;
      const run: RunResult = {
        method: m.name,
        seed,
        meanAtK: r.meanAtK,
        passAtK: r.passAtK[String(size.k)],
        memory,
        loss: metrics.map((s) => ({ step: s.step, loss: s.loss })),
        steps: metrics.length,
        trainSeconds,
        evalSeconds,
        tokensPerSec: trainedTokens / Math.max(1e-9, trainSeconds),
      };
      runs.push(run);
      log(
        `${label}: loss ${metrics[0]?.loss.toFixed(4)} → ${metrics[metrics.length - 1]?.loss.toFixed(4)} (${metrics.length} updates, ${trainSeconds.toFixed(1)} s), ` +
          `Mean@${size.k} ${pct(run.meanAtK)}  Pass@${size.k} ${pct(run.passAtK)}, peak ${formatBytes(memory.total ?? 0)} (eval ${evalSeconds.toFixed(1)} s)`,
      );
    }
  }

  // 6. table, JSON, report
  const summary: DemoResult['summary'] = [
    {
      method: 'base',
      meanAtK: mean(baseRuns.map((r) => r.meanAtK)),
      meanSd: sd(baseRuns.map((r) => r.meanAtK)),
      passAtK: mean(baseRuns.map((r) => r.passAtK)),
      passSd: sd(baseRuns.map((r) => r.passAtK)),
      peakMemory: null,
      n: baseRuns.length,
    },
    ...DEMO_METHODS.map((m) => {
      const rs = runs.filter((r) => r.method === m.name && !r.skipped);
      if (!rs.length)
        return { method: m.name, meanAtK: NaN, meanSd: NaN, passAtK: NaN, passSd: NaN, peakMemory: null, n: 0 };
      return {
        method: m.name,
        meanAtK: mean(rs.map((r) => r.meanAtK)),
        meanSd: sd(rs.map((r) => r.meanAtK)),
        passAtK: mean(rs.map((r) => r.passAtK)),
        passSd: sd(rs.map((r) => r.passAtK)),
        peakMemory: Math.max(...rs.map((r) => r.memory.total ?? 0)),
        n: rs.length,
      };
    }),
  ];
  const K = size.k;
  const pm = (x: number, s: number, n: number) =>
    n === 0 ? 'skipped (no data)' : n > 1 ? `${pct(x)} ± ${(100 * s).toFixed(1)}` : pct(x);
  const table =
    [
      `| method | Mean@${K} | Pass@${K} | peak memory (training) |`,
      '| --- | ---: | ---: | ---: |',
      ...summary.map(
        (r) =>
          `| ${r.method} | ${pm(r.meanAtK, r.meanSd, r.n)} | ${pm(r.passAtK, r.passSd, r.n)} | ${r.peakMemory === null ? '–' : formatBytes(r.peakMemory)} |`,
      ),
    ].join('\n') + '\n';

  const lossSeries: LossPoint[] = [];
  for (const m of DEMO_METHODS) {
    const rs = runs.filter((r) => r.method === m.name && !r.skipped);
    if (!rs.length) continue;
    const steps = Math.min(...rs.map((r) => r.loss.length));
    for (let i = 0; i < steps; i++)
      lossSeries.push({ method: m.name, step: i + 1, loss: mean(rs.map((r) => r.loss[i].loss)) });
  }
  const memRows: MemoryRow[] = [];
  for (const m of DEMO_METHODS) {
    const r = runs.find((x) => x.method === m.name && !x.skipped);
    if (!r) continue;
    for (const [category, bytes] of Object.entries(r.memory))
      if (category !== 'total' && bytes > 0) memRows.push({ method: m.name, category, bytes });
  }
  const wallSoFar = (Date.now() - t0) / 1000;
  const intro = [
    `The RIFT loop on the embedded base model (${modelDir}) on CPU: ${train.length} training problems × K=${K} rollouts ` +
      `(reward +1 correct / −0.2 wrong), ${test.length} held-out test problems × K=${K} samples (temperature ${size.temperature}).`,
    `Every method starts from the same base weights and makes ${size.epochs} pass(es) over its own data (epoch-matched: ` +
      `${size.sequencesPerStep} sequences per AdamW update in micro-batches of ≤ ${size.tokenBudget} tokens; DPO ${Math.max(1, Math.floor(size.sequencesPerStep / 2))} pairs, precomputed reference), ` +
      `cosine schedule after a linear warm-up over ${100 * size.warmupFraction}% of its updates, at ` +
      (size.lr !== undefined
        ? `lr ${size.lr} for all. `
        : `its own learning rate (${DEMO_METHODS.map((x) => `${x.name} ${x.options.lr}${x.options.dpoBeta ? ` β ${x.options.dpoBeta}` : ''}`).join(', ')}: chosen on a validation split by \`rift experiment\`). `) +
      `SFT trains on the reference solutions, RFT and DFT on the positive samples, DPO on (positive, negative) pairs of a problem, RIFT on every sample, naive (−r·log π, the unbounded loss RIFT replaces) on every sample.`,
    `Seeds ${seeds.join(', ')} (data order and evaluation sampling); accuracy is mean ± sd over seeds. Peak memory = the tracker's peak bytes during training above the baseline before the model was loaded.`,
    `Rollouts: ${st.positives} positive / ${st.negatives} negative samples, ${pct(st.mixedRate)} of problems mixed.`,
  ].join('\n\n');
  const result: DemoResult = {
    out,
    size,
    seeds,
    problems: { train: train.length, test: test.length },
    rollouts: { ...st, seconds: timings.rollouts },
    runs,
    summary,
    table,
    timings,
    wallSeconds: wallSoFar,
  };
  await timed('report', async () => {
    await writeReport(path.join(out, 'report'), {
      title: 'RIFT demo',
      intro,
      table,
      plots: [
        {
          name: 'loss',
          title: 'Training loss (mean over seeds)',
          spec: lossCurvePlot(lossSeries, { title: 'Training loss (each method its own loss)' }),
        },
        {
          name: 'accuracy',
          title: 'Held-out accuracy',
          spec: accuracyPlot(
            summary
              .filter((r) => r.n > 0)
              .map((r) => ({ method: r.method, meanAtK: r.meanAtK, passAtK: { [String(K)]: r.passAtK }, k: K })),
          ),
        },
        { name: 'memory', title: 'Peak training memory by category', spec: memoryPlot(memRows) },
      ],
      sections: [
        {
          heading: 'Timings (s)',
          body: Object.entries(timings)
            .map(([k, v]) => `- ${k}: ${v.toFixed(1)}`)
            .join('\n'),
        },
      ],
    });
  });
  result.wallSeconds = (Date.now() - t0) / 1000;
  result.timings = timings;
  writeJsonAtomic(path.join(out, 'results.json'), result);
  fs.writeFileSync(path.join(out, 'table.md'), table);
  return result;
}
