// Rollouts: K samples per problem from the engine's sampler, scored, appended to a JSONL store; resumable.
//
// Determinism. Sample i of problem p is drawn from the sampler's RNG stream (seed, problemKey(p.id), i) — the key
// is a hash of the problem id, not its position — so a sample does not depend on which other problems are in the
// list, their order, or whether the run was interrupted. A problem is always generated with all K samples and only
// its missing ones are kept, and records are appended in problem order, so a resumed run writes the bytes an
// unbroken run would.
//
// Batching. The problems that need samples go to generate() together (continuous batching: rows of many problems
// decoded at once, lib/engine/continuous.ts), in chunks of PROBLEMS_PER_CALL problems; a problem's records are
// appended once it and every problem before it are done.
import { generate, type PromptSamples, type SamplerModel, type SamplerTokenizer } from '../engine/sampler';
import { openRollouts, appendRollouts, sameParams, type RolloutRecord, type RolloutSamplingParams } from './store';
import { checkPromptSpec, promptHash, promptSpecKey, samePromptSpec, type PromptSpec } from '../data/prompt-spec';

/** What a problem needs to be rolled out: a stable string id (lib/data/problems.ts's Problem is one). */
export interface ProblemLike {
  id: string;
}

export interface ScoreResult {
  reward: number;
  correct: boolean;
  /** The extracted answer (null or undefined: none). */
  extracted?: string | null;
}

/** Scores one sample's text against its problem (e.g. lib/reward's verify() + rewardFor()). */
export type Scorer<P> = (problem: P, text: string) => ScoreResult | Promise<ScoreResult>;

export interface RolloutParams {
  /** Default 1. */
  temperature?: number;
  /** Default 0 (off). */
  topK?: number;
  /** Default 1 (off). */
  topP?: number;
  maxNewTokens: number;
  /** Default 0. */
  seed?: number;
  /** Passed to generate() (not recorded). */
  stopTokens?: readonly number[];
  stopStrings?: readonly string[];
  /** Passed to generate(): false for chat-templated prompts. Default true. */
  addSpecialTokens?: boolean;
  /** Passed to generate() (not recorded): most rows decoded together (default 256), 'per-prompt' batching. */
  maxBatchRows?: number;
  batching?: 'continuous' | 'per-prompt';
}

/** The recorded sampling parameters with defaults filled in. */
export function resolveParams(p: RolloutParams): RolloutSamplingParams {
  if (typeof p !== 'object' || p === null) throw new TypeError('params: must be an object with at least maxNewTokens');
  const r = {
    temperature: p.temperature ?? 1,
    topK: p.topK ?? 0,
    topP: p.topP ?? 1,
    maxNewTokens: p.maxNewTokens,
    seed: p.seed ?? 0,
  };
  if (!Number.isSafeInteger(r.maxNewTokens) || r.maxNewTokens < 1)
    throw new RangeError(`params: maxNewTokens must be an integer ≥ 1, got ${p.maxNewTokens}`);
  return r;
}

/**
 * The sampler's prompt key of a problem: a 53-bit hash of its id (two 32-bit FNV-1a variants over UTF-16 code
 * units), so each problem has its own RNG streams whatever its position.
 */
export function problemKey(id: string): number {
  let a = 0x811c9dc5,
    b = 0x9747b28c;
  for (let i = 0; i < id.length; i++) {
    const c = id.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x5bd1e995);
    b ^= b >>> 13;
  }
  a >>>= 0;
  b = (b ^ (b >>> 15)) >>> 0;
  return (b & 0x1fffff) * 2 ** 32 + a;
}

export function checkProblems(problems: readonly ProblemLike[]): void {
  if (!Array.isArray(problems)) throw new TypeError('problems: must be an array');
  const ids = new Set<string>();
  problems.forEach((p, i) => {
    if (typeof p !== 'object' || p === null || typeof p.id !== 'string' || p.id.length === 0)
      throw new TypeError(`problems: problems[${i}] must have a non-empty string id`);
    if (ids.has(p.id)) throw new RangeError(`problems: id ${JSON.stringify(p.id)} appears twice`);
    ids.add(p.id);
  });
}

export function checkK(k: unknown): asserts k is number {
  if (!Number.isSafeInteger(k) || (k as number) < 1)
    throw new RangeError(`k: must be an integer ≥ 1, got ${String(k)}`);
}

export function checkScore(s: unknown, where: string): asserts s is ScoreResult {
  const o = s as ScoreResult;
  if (typeof s !== 'object' || s === null)
    throw new TypeError(`score: returned ${String(s)} for ${where}, want {reward, correct, extracted?}`);
  if (typeof o.reward !== 'number' || !Number.isFinite(o.reward))
    throw new TypeError(`score: reward for ${where} must be a finite number, got ${o.reward}`);
  if (typeof o.correct !== 'boolean') throw new TypeError(`score: correct for ${where} must be a boolean`);
  if (o.extracted !== undefined && o.extracted !== null && typeof o.extracted !== 'string')
    throw new TypeError(`score: extracted for ${where} must be a string, null or undefined`);
}

/** Problems per generate() call of sampleProblems (bounds the samples held in memory at once). */
export const PROBLEMS_PER_CALL = 1024;

/**
 * K samples of each prompt with its problem's streams (shared by rollouts and evaluation): generate() over chunks
 * of PROBLEMS_PER_CALL problems; onDone(i, samples) as each problem i finishes (not always in order). Returns nothing:
 * the caller keeps what it needs.
 */
export async function sampleProblems<Cache>(
  model: SamplerModel<Cache>,
  tokenizer: SamplerTokenizer,
  items: readonly { prompt: string | Int32Array; problemId: string }[],
  k: number,
  params: RolloutParams,
  onDone: (index: number, out: PromptSamples) => void | Promise<void>,
): Promise<void> {
  const p = resolveParams(params);
  for (let c0 = 0; c0 < items.length; c0 += PROBLEMS_PER_CALL) {
    const chunk = items.slice(c0, c0 + PROBLEMS_PER_CALL);
    await generate(
      model,
      tokenizer,
      chunk.map((x) => x.prompt),
      {
        k,
        maxNewTokens: p.maxNewTokens,
        temperature: p.temperature,
        topK: p.topK,
        topP: p.topP,
        seed: p.seed,
        promptKeys: chunk.map((x) => problemKey(x.problemId)),
        ...(params.stopTokens !== undefined ? { stopTokens: params.stopTokens } : {}),
        ...(params.stopStrings !== undefined ? { stopStrings: params.stopStrings } : {}),
        ...(params.addSpecialTokens !== undefined ? { addSpecialTokens: params.addSpecialTokens } : {}),
        ...(params.maxBatchRows !== undefined ? { maxBatchRows: params.maxBatchRows } : {}),
        ...(params.batching !== undefined ? { batching: params.batching } : {}),
        onPromptDone: (i, out) => onDone(c0 + i, out),
      },
    );
  }
}

/** K samples of one prompt with a problem's streams. */
export async function sampleProblem<Cache>(
  model: SamplerModel<Cache>,
  tokenizer: SamplerTokenizer,
  prompt: string | Int32Array,
  problemId: string,
  k: number,
  params: RolloutParams,
): Promise<PromptSamples> {
  let out: PromptSamples | undefined;
  await sampleProblems(model, tokenizer, [{ prompt, problemId }], k, params, (_, o) => {
    out = o;
  });
  return out!;
}

export interface RolloutProgress {
  problemId: string;
  /** Position of the problem in `problems`. */
  index: number;
  /** Number of problems in this run. */
  total: number;
  /** The records just appended for this problem. */
  records: readonly RolloutRecord[];
}

export interface RolloutOptions<P extends ProblemLike, Cache = unknown> {
  model: SamplerModel<Cache>;
  tokenizer: SamplerTokenizer;
  problems: readonly P[];
  /** Samples per problem. */
  k: number;
  params: RolloutParams;
  /** The JSONL store (created when missing). */
  file: string;
  score: Scorer<P>;
  /** The prompt text of a problem (or its token ids). */
  promptFor: (problem: P) => string | Int32Array;
  /**
   * The prompt format promptFor builds with (lib/loop/prompt.ts), recorded in each record; resuming a store whose
   * records have another one (or none) is an error.
   */
  promptFormat?: PromptSpec;
  /** Called after each generated problem's records are appended; a throw stops the run (the records stay). */
  onProgress?: (p: RolloutProgress) => void | Promise<void>;
  /** Write an ISO `ts` into each record (default false: a rerun then reproduces the file byte for byte). */
  timestamps?: boolean;
  /** Told when the store holds repeated (problem, sample) records (skipped; see lib/rollout/store.ts). */
  onWarning?: (message: string) => void;
}

/**
 * Positives and negatives are counted by the reward's sign, as training sees them (lib/train/examples.ts: RFT and
 * DPO's chosen take reward > 0, DPO's rejected reward ≤ 0) — with a custom reward module that differs from the
 * verifier's verdict, which `correct`, `allCorrect` and `allWrong` report.
 */
export interface RolloutStats {
  problems: number;
  samples: number;
  /** Samples with reward > 0. */
  positives: number;
  /** Samples with reward ≤ 0. */
  negatives: number;
  /** Samples the verifier judged correct. */
  correct: number;
  /** Fraction of problems with both a positive and a non-positive sample (those give DPO pairs). */
  mixedRate: number;
  /** Problems whose samples the verifier judged all correct / all incorrect. */
  allCorrect: number;
  allWrong: number;
  meanReward: number;
}

export interface RolloutResult {
  /** The records of `problems` × samples 0..K−1, in problem order then sample index (old and new). */
  records: RolloutRecord[];
  /** Samples generated by this call. */
  generated: number;
  /** Samples found in the store and kept. */
  reused: number;
  /** Bytes of a torn last line removed from the store before resuming. */
  droppedBytes: number;
  /** Repeated (problem, sample) records found in the store and skipped. */
  duplicates: number;
  stats: RolloutStats;
}

/**
 * Samples K responses per problem, scores them and appends them to `file`; (problem, sample) pairs already in the
 * file are skipped. Records in the file for other problems or sample indices ≥ K are left alone. A record of one
 * of these (problem, sample) pairs made with other sampling parameters, another prompt format, or after other
 * prompt tokens (its promptHash) is an error: use a different file. Every prompt is built before the store is
 * opened, so a prompt that fails to build leaves the file untouched. Each new record holds the prompt's token
 * count and promptHash.
 */
export async function runRollouts<P extends ProblemLike, Cache = unknown>(
  opts: RolloutOptions<P, Cache>,
): Promise<RolloutResult> {
  if (typeof opts !== 'object' || opts === null) throw new TypeError('options: must be an object');
  const { model, tokenizer, problems, k, file, score, promptFor, onProgress } = opts;
  checkProblems(problems);
  checkK(k);
  if (typeof file !== 'string' || file.length === 0) throw new TypeError('file: must be a path');
  if (typeof score !== 'function')
    throw new TypeError('score: must be a function (problem, text) => {reward, correct, extracted}');
  if (typeof promptFor !== 'function') throw new TypeError('promptFor: must be a function (problem) => prompt');
  const params = resolveParams(opts.params);
  if (opts.promptFormat !== undefined) checkPromptSpec(opts.promptFormat, 'promptFormat');
  const prompts = new Map<string, { ids: Int32Array; hash: string }>();
  for (const p of problems) {
    const pr = promptFor(p);
    const ids =
      typeof pr === 'string' ? tokenizer.encode(pr, { addSpecialTokens: opts.params.addSpecialTokens ?? true }) : pr;
    if (!(ids instanceof Int32Array))
      throw new TypeError(`promptFor: returned neither a string nor an Int32Array for problem ${JSON.stringify(p.id)}`);
    if (ids.length === 0)
      throw new RangeError(`promptFor: the prompt of problem ${JSON.stringify(p.id)} has no tokens`);
    prompts.set(p.id, { ids, hash: promptHash(ids) });
  }

  const wanted = new Set(problems.map((p) => p.id));
  const { records: existing, droppedBytes, duplicates } = openRollouts(file, { onWarning: opts.onWarning });
  const done = new Map<string, Map<number, RolloutRecord>>();
  existing.forEach((r, i) => {
    if (!wanted.has(r.problemId) || r.sampleIndex >= k) return;
    if (!sameParams(r.params, params))
      throw new Error(
        `${file}: record ${i + 1} (problem ${JSON.stringify(r.problemId)}, sample ${r.sampleIndex}) was sampled with ` +
          `${JSON.stringify(r.params)}, this run uses ${JSON.stringify(params)}; use another file`,
      );
    if (!samePromptSpec(r.promptFormat, opts.promptFormat))
      throw new Error(
        `${file}: record ${i + 1} (problem ${JSON.stringify(r.problemId)}, sample ${r.sampleIndex}) was sampled with the prompt format ` +
          `${promptSpecKey(r.promptFormat)}, this run uses ${promptSpecKey(opts.promptFormat)}; use another file`,
      );
    const now = prompts.get(r.problemId)!;
    if (r.promptHash !== undefined && r.promptHash !== now.hash)
      throw new Error(
        `${file}: record ${i + 1} (problem ${JSON.stringify(r.problemId)}, sample ${r.sampleIndex}) was sampled after another prompt ` +
          `(${r.promptTokens} tokens, hash ${r.promptHash}) than this run builds (${now.ids.length} tokens, hash ${now.hash}): ` +
          `the problem text, the prompt format or the tokenizer changed; use another file`,
      );
    let m = done.get(r.problemId);
    if (!m) done.set(r.problemId, (m = new Map()));
    m.set(r.sampleIndex, r); // openRollouts returns each (problem, sample) once
  });

  let generated = 0,
    reused = 0;
  const haves = problems.map((problem) => done.get(problem.id) ?? new Map<number, RolloutRecord>());
  const missingOf = (i: number) => Array.from({ length: k }, (_, s) => s).filter((s) => !haves[i].has(s));
  const todo: number[] = []; // problems with missing samples, in order
  problems.forEach((_, i) => {
    const n = missingOf(i).length;
    reused += k - n;
    if (n > 0) todo.push(i);
  });
  // Problems finish in any order; their records go to the store in problem order.
  const finished = new Map<number, RolloutRecord[]>(); // position in todo → new records
  let flushed = 0;
  const flush = async () => {
    while (finished.has(flushed)) {
      const fresh = finished.get(flushed)!;
      finished.delete(flushed);
      const index = todo[flushed++];
      appendRollouts(file, fresh);
      generated += fresh.length;
      if (onProgress)
        await onProgress({ problemId: problems[index].id, index, total: problems.length, records: fresh });
    }
  };
  const items = todo.map((i) => ({ prompt: prompts.get(problems[i].id)!.ids, problemId: problems[i].id }));
  await sampleProblems(model, tokenizer, items, k, opts.params, async (t, out) => {
    const index = todo[t],
      problem = problems[index],
      prompt = prompts.get(problem.id)!;
    const fresh: RolloutRecord[] = [];
    for (const i of missingOf(index)) {
      const s = out.samples[i];
      const sc = await score(problem, s.text);
      checkScore(sc, `problem ${JSON.stringify(problem.id)} sample ${i}`);
      fresh.push({
        problemId: problem.id,
        sampleIndex: i,
        text: s.text,
        tokens: s.ids.length,
        reward: sc.reward,
        correct: sc.correct,
        ...(sc.extracted !== undefined ? { extracted: sc.extracted } : {}),
        finishReason: s.finishReason,
        params: { ...params },
        ...(opts.promptFormat !== undefined ? { promptFormat: opts.promptFormat } : {}),
        promptTokens: prompt.ids.length,
        promptHash: prompt.hash,
        ...(opts.timestamps ? { ts: new Date().toISOString() } : {}),
      });
    }
    for (const r of fresh) haves[index].set(r.sampleIndex, r);
    finished.set(t, fresh);
    await flush();
  });
  const all: RolloutRecord[] = [];
  problems.forEach((_, i) => {
    for (let s = 0; s < k; s++) all.push(haves[i].get(s)!);
  });
  return { records: all, generated, reused, droppedBytes, duplicates, stats: rolloutStats(all) };
}

/** Positives / negatives (by the reward's sign), verifier counts, mixed-problem rate and mean reward of a set of records. */
export function rolloutStats(
  records: readonly Pick<RolloutRecord, 'problemId' | 'correct' | 'reward'>[],
): RolloutStats {
  if (!Array.isArray(records)) throw new TypeError('records: must be an array');
  const per = new Map<string, { pos: number; neg: number; right: number; wrong: number }>();
  let positives = 0,
    correct = 0,
    rewardSum = 0;
  for (const r of records) {
    let e = per.get(r.problemId);
    if (!e) per.set(r.problemId, (e = { pos: 0, neg: 0, right: 0, wrong: 0 }));
    if (r.reward > 0) {
      e.pos++;
      positives++;
    } else e.neg++;
    if (r.correct) {
      e.right++;
      correct++;
    } else e.wrong++;
    rewardSum += r.reward;
  }
  let mixed = 0,
    allCorrect = 0,
    allWrong = 0;
  for (const e of per.values()) {
    if (e.pos && e.neg) mixed++;
    if (!e.wrong) allCorrect++;
    if (!e.right) allWrong++;
  }
  return {
    problems: per.size,
    samples: records.length,
    positives,
    negatives: records.length - positives,
    correct,
    mixedRate: per.size ? mixed / per.size : 0,
    allCorrect,
    allWrong,
    meanReward: records.length ? rewardSum / records.length : 0,
  };
}
