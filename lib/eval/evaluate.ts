// Evaluation on held-out problems: K samples per problem with the engine's sampler (the same per-problem RNG
// streams as rollouts), scored, summarised as Mean@K and Pass@k; a Markdown table across methods; an atomic JSON
// writer.
import type { SamplerModel, SamplerTokenizer } from '../engine/sampler';
import { writeBytesAtomic } from '../util/atomic';
import {
  checkK,
  checkProblems,
  checkScore,
  resolveParams,
  sampleProblems,
  type ProblemLike,
  type RolloutParams,
  type Scorer,
} from '../rollout/rollout';
import type { RolloutSamplingParams } from '../rollout/store';
import { summarize } from './metrics';

export interface ProblemEval {
  problemId: string;
  /** Samples (K). */
  n: number;
  /** Correct samples. */
  c: number;
  correct: boolean[];
  /** The verifier's extracted answer per sample (null: none). */
  extracted: (string | null)[];
  /** Generated tokens per sample. */
  tokens: number[];
  /** The sample texts (only with keepTexts). */
  texts?: string[];
}

export interface EvalResult {
  k: number;
  problems: number;
  samples: number;
  meanAtK: number;
  /** Pass@k by k ('1', '2', …, String(K)). */
  passAtK: Record<string, number>;
  /** Mean generated tokens per sample. */
  meanTokens: number;
  params: RolloutSamplingParams;
  perProblem: ProblemEval[];
}

export interface EvaluateOptions<P extends ProblemLike, Cache = unknown> {
  model: SamplerModel<Cache>;
  tokenizer: SamplerTokenizer;
  problems: readonly P[];
  /** Samples per problem. */
  k: number;
  params: RolloutParams;
  /** Only `correct` (and `extracted`) are used. */
  score: Scorer<P>;
  promptFor: (problem: P) => string | Int32Array;
  /** The k of Pass@k (default 1, 2, 4, …, K). */
  ks?: readonly number[];
  /** Keep each sample's text in perProblem (default false). */
  keepTexts?: boolean;
  /** Called as each problem is scored (problems finish in about, not exactly, their order); done: problems so far. */
  onProgress?: (p: { problemId: string; index: number; total: number; done: number }) => void | Promise<void>;
}

/** Samples, scores and summarises K responses per held-out problem. */
export async function evaluate<P extends ProblemLike, Cache = unknown>(
  opts: EvaluateOptions<P, Cache>,
): Promise<EvalResult> {
  if (typeof opts !== 'object' || opts === null) throw new TypeError('options: must be an object');
  const { model, tokenizer, problems, k, score, promptFor } = opts;
  checkProblems(problems);
  if (problems.length === 0) throw new RangeError('problems: nothing to evaluate');
  checkK(k);
  if (typeof score !== 'function') throw new TypeError('score: must be a function (problem, text) => {correct, …}');
  if (typeof promptFor !== 'function') throw new TypeError('promptFor: must be a function (problem) => prompt');
  const params = resolveParams(opts.params);

  const perProblem: ProblemEval[] = new Array(problems.length);
  let tokenSum = 0,
    finished = 0;
  const items = problems.map((problem) => ({ prompt: promptFor(problem), problemId: problem.id }));
  await sampleProblems(model, tokenizer, items, k, opts.params, async (index, out) => {
    const problem = problems[index];
    const e: ProblemEval = {
      problemId: problem.id,
      n: k,
      c: 0,
      correct: [],
      extracted: [],
      tokens: [],
      ...(opts.keepTexts ? { texts: [] } : {}),
    };
    for (const [i, s] of out.samples.entries()) {
      const sc = await score(problem, s.text);
      checkScore(sc, `problem ${JSON.stringify(problem.id)} sample ${i}`);
      e.correct.push(sc.correct);
      if (sc.correct) e.c++;
      e.extracted.push(sc.extracted ?? null);
      e.tokens.push(s.ids.length);
      e.texts?.push(s.text);
      tokenSum += s.ids.length;
    }
    perProblem[index] = e;
    if (opts.onProgress)
      await opts.onProgress({ problemId: problem.id, index, total: problems.length, done: ++finished });
  });
  const sum = summarize(
    perProblem.map((e) => e.correct),
    opts.ks,
  );
  return {
    k,
    problems: sum.problems,
    samples: sum.samples,
    meanAtK: sum.meanAtK,
    passAtK: sum.passAtK,
    meanTokens: tokenSum / sum.samples,
    params,
    perProblem,
  };
}

// ---- table and JSON -------------------------------------------------------------------------------------------

export interface EvalRow {
  method: string;
  meanAtK: number;
  passAtK: Readonly<Record<string, number>>;
  /** K of Mean@K (default: the largest k in passAtK). */
  k?: number;
  peakMemoryBytes?: number;
  /** Further columns (numbers or strings), in first-appearance order: e.g. trainSeconds, steps. */
  [column: string]: unknown;
}

const pct = (x: number) => (Number.isFinite(x) ? `${(100 * x).toFixed(1)}%` : '–');

/** Bytes as B / KiB / MiB / GiB with 3 significant digits. */
export function formatBytes(b: number): string {
  if (!Number.isFinite(b)) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let u = 0,
    x = b;
  while (Math.abs(x) >= 1024 && u < units.length - 1) {
    x /= 1024;
    u++;
  }
  return u === 0 ? `${b} B` : `${x.toPrecision(3)} ${units[u]}`;
}

const cell = (v: unknown): string => {
  if (v === undefined || v === null) return '';
  const s = typeof v === 'number' ? (Number.isInteger(v) ? String(v) : v.toPrecision(4)) : String(v);
  return s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
};

const KNOWN = new Set(['method', 'meanAtK', 'passAtK', 'k', 'peakMemoryBytes']);

/** A Markdown table: method | Mean@K | Pass@k … | peak memory | further columns. Percentages with one decimal. */
export function evalTable(rows: readonly EvalRow[]): string {
  if (!Array.isArray(rows) || rows.length === 0) throw new RangeError('rows: no rows');
  rows.forEach((r, i) => {
    if (typeof r?.method !== 'string') throw new TypeError(`rows: rows[${i}].method must be a string`);
    if (typeof r.meanAtK !== 'number') throw new TypeError(`rows: rows[${i}].meanAtK must be a number`);
    if (typeof r.passAtK !== 'object' || r.passAtK === null)
      throw new TypeError(`rows: rows[${i}].passAtK must be an object`);
  });
  const ks = [...new Set(rows.flatMap((r) => Object.keys(r.passAtK)))].sort((a, b) => Number(a) - Number(b));
  const Ks = new Set(
    rows.map(
      (r) => r.k ?? (Object.keys(r.passAtK).length ? Math.max(...Object.keys(r.passAtK).map(Number)) : undefined),
    ),
  );
  const meanHead = Ks.size === 1 && [...Ks][0] !== undefined ? `Mean@${[...Ks][0]}` : 'Mean@K';
  const mem = rows.some((r) => r.peakMemoryBytes !== undefined);
  const extras: string[] = [];
  for (const r of rows)
    for (const key of Object.keys(r)) if (!KNOWN.has(key) && !extras.includes(key)) extras.push(key);

  const head = ['method', meanHead, ...ks.map((k) => `Pass@${k}`), ...(mem ? ['peak memory'] : []), ...extras];
  const align = ['---', ...head.slice(1).map(() => '---:')];
  const body = rows.map((r) => [
    cell(r.method),
    pct(r.meanAtK),
    ...ks.map((k) => (r.passAtK[k] === undefined ? '' : pct(r.passAtK[k]))),
    ...(mem ? [r.peakMemoryBytes === undefined ? '' : formatBytes(r.peakMemoryBytes)] : []),
    ...extras.map((key) => cell(r[key])),
  ]);
  return [head, align, ...body].map((cols) => `| ${cols.join(' | ')} |`).join('\n') + '\n';
}

/** Writes `value` as pretty JSON, atomically (temporary file + rename). */
export function writeJsonAtomic(file: string, value: unknown): void {
  writeBytesAtomic(file, JSON.stringify(value, null, 2) + '\n');
}
