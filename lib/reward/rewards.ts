// Rewards: the verifier's verdict mapped to r_pos / r_neg, optional group normalisation, and user reward functions
// loaded from a JS module.
//
// groupNormalize: within each problem's K samples, r ← (r − mean) / std (population std, i.e. ÷K). When every
// sample of a problem got the same reward (std = 0, e.g. all correct or all wrong) the group carries no signal and
// all its rewards become 0 — such samples then add nothing to the RIFT loss. Note the sign change: after
// normalisation a wrong answer in a mostly-wrong group can still be slightly negative and a right one positive, but a
// group's rewards always sum to 0.
//
// User modules: a CommonJS or ES module whose default export (or `module.exports`, or a named export `reward`) is
// `(sample: {problem, response, reference, id?}) => number | Promise<number>`. CommonJS (and, on Node ≥ 20.19,
// synchronous ES modules) load with require(); otherwise the module is loaded with a real dynamic import()
// (not rewritten to require() by the TypeScript build). Every returned value is checked: anything but a finite
// number is a TypeError naming the module.
import * as fs from 'fs';
import * as path from 'path';
import { pathToFileURL } from 'url';
import { describe } from '../util/validate';
import { verify, VerifyOptions } from './verifier';

export interface RewardOptions {
  /** Reward of a correct sample (default 1). */
  rPos?: number;
  /** Reward of a wrong sample (default −0.2). */
  rNeg?: number;
}

export interface RewardSample {
  problem: string;
  response: string;
  reference: string;
  id?: string;
}

export type UserRewardFn = (sample: RewardSample) => number | Promise<number>;
/** A loaded user reward function: always async, always returns a finite number (or rejects with a TypeError). */
export type RewardFn = (sample: RewardSample) => Promise<number>;

function finite(arg: string, v: unknown): number {
  if (typeof v !== 'number') throw new TypeError(`${arg}: must be a number, got ${typeof v}`);
  if (!Number.isFinite(v)) throw new RangeError(`${arg}: must be finite, got ${v}`);
  return v;
}

/** rPos (default 1) when correct, else rNeg (default −0.2). */
export function rewardFor(correct: boolean, opts: RewardOptions = {}): number {
  if (typeof correct !== 'boolean') throw new TypeError(`correct: must be a boolean, got ${typeof correct}`);
  const rPos = finite('rPos', opts.rPos ?? 1);
  const rNeg = finite('rNeg', opts.rNeg ?? -0.2);
  return correct ? rPos : rNeg;
}

/** (r − mean) / std within each group (one group per problem); a group with std 0 becomes all zeros. */
export function groupNormalize(groups: readonly (readonly number[])[]): number[][] {
  if (!Array.isArray(groups)) throw new TypeError('groups: must be an array of reward arrays');
  return groups.map((g, gi) => {
    if (!Array.isArray(g)) throw new TypeError(`groups[${gi}]: must be an array of numbers`);
    g.forEach((r, i) => finite(`groups[${gi}][${i}]`, r));
    const k = g.length;
    if (k === 0) return [];
    const mean = g.reduce((a, b) => a + b, 0) / k;
    const std = Math.sqrt(g.reduce((a, b) => a + (b - mean) * (b - mean), 0) / k);
    if (!(std > 1e-12 * Math.max(1, Math.abs(mean)))) return g.map(() => 0);
    return g.map((r) => (r - mean) / std);
  });
}

// A dynamic import() that the CommonJS build keeps as import() (tsc rewrites a literal import() into require()).
const dynamicImport = new Function('specifier', 'return import(specifier)') as (s: string) => Promise<unknown>;

function pickFunction(mod: unknown): UserRewardFn | null {
  const m = mod as Record<string, unknown> | ((...a: unknown[]) => unknown) | null | undefined;
  if (typeof m === 'function') return m as UserRewardFn;
  if (m && typeof m === 'object') {
    const d = m.default as Record<string, unknown> | ((...a: unknown[]) => unknown) | undefined;
    if (typeof d === 'function') return d as UserRewardFn;
    if (typeof m.reward === 'function') return m.reward as UserRewardFn;
    if (d && typeof d === 'object') {
      if (typeof d.default === 'function') return d.default as UserRewardFn;
      if (typeof d.reward === 'function') return d.reward as UserRewardFn;
    }
  }
  return null;
}

function needsImport(e: unknown, file: string): boolean {
  const err = e as { code?: string; name?: string; message?: string } | null;
  if (file.endsWith('.mjs')) return true;
  if (err?.code === 'ERR_REQUIRE_ESM' || err?.code === 'ERR_REQUIRE_ASYNC_MODULE') return true;
  return err?.name === 'SyntaxError' && /\b(import|export)\b|module/.test(err.message ?? '');
}

/**
 * Loads a user reward function from a JS module path (resolved against the working directory). The returned
 * function awaits the user's and checks its result: not a finite number → TypeError naming the module.
 */
export async function loadRewardModule(modulePath: string): Promise<RewardFn> {
  if (typeof modulePath !== 'string' || modulePath === '')
    throw new TypeError('rewardModule: must be a non-empty path string');
  const file = path.resolve(modulePath);
  if (!fs.existsSync(file)) throw new Error(`reward module ${file}: file not found`);
  let mod: unknown;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    mod = file.endsWith('.mjs') ? undefined : require(file);
  } catch (e) {
    if (!needsImport(e, file))
      throw new Error(`reward module ${file}: failed to load: ${(e as Error)?.message ?? String(e)}`, { cause: e });
  }
  if (mod === undefined) {
    try {
      mod = await dynamicImport(pathToFileURL(file).href);
    } catch (e) {
      throw new Error(`reward module ${file}: failed to load as an ES module: ${(e as Error)?.message ?? String(e)}`, {
        cause: e,
      });
    }
  }
  const fn = pickFunction(mod);
  if (!fn) {
    const got = mod && typeof mod === 'object' ? `an object with keys [${Object.keys(mod).join(', ')}]` : describe(mod);
    throw new TypeError(
      `reward module ${file}: exports no function (expected a default export, module.exports = function, or a named export "reward"), got ${got}`,
    );
  }
  return async (sample: RewardSample): Promise<number> => {
    let r: unknown;
    try {
      r = await fn(sample);
    } catch (e) {
      throw new Error(
        `reward module ${file}: threw${sample.id !== undefined ? ` on "${sample.id}"` : ''}: ${(e as Error)?.message ?? String(e)}`,
        {
          cause: e,
        },
      );
    }
    if (typeof r !== 'number' || !Number.isFinite(r))
      throw new TypeError(
        `reward module ${file}: returned ${typeof r === 'number' ? r : describe(r)}${sample.id !== undefined ? ` for "${sample.id}"` : ''}, expected a finite number`,
      );
    return r;
  };
}

export interface ScoreInput {
  /** Groups samples for normalisation (samples of one problem share it). */
  problemId: string;
  problem: string;
  response: string;
  /** The reference answer. */
  reference: string;
}

export interface ScoredSample {
  problemId: string;
  /** The verifier's verdict (computed even when a user module gives the reward). */
  correct: boolean;
  extracted: string | null;
  reason: string;
  /** rewardFor(correct) or the user module's value, before normalisation. */
  rawReward: number;
  /** The reward to train with: rawReward, or its group-normalised value. */
  reward: number;
}

export interface ScoreOptions extends RewardOptions {
  /** A loaded user reward function (loadRewardModule); replaces rPos/rNeg. */
  rewardFn?: RewardFn;
  /** Normalise rewards within each problemId group (default false). */
  groupNormalize?: boolean;
  /** Options for the verifier (timeoutMs, symbolic, boxedOnly, ...). */
  verifier?: VerifyOptions;
}

/** Scores samples in order: the verifier always, the reward from rPos/rNeg or the user module, then normalisation. */
export async function scoreSamples(samples: readonly ScoreInput[], opts: ScoreOptions = {}): Promise<ScoredSample[]> {
  if (!Array.isArray(samples)) throw new TypeError('samples: must be an array');
  if (opts.rewardFn !== undefined && typeof opts.rewardFn !== 'function')
    throw new TypeError('rewardFn: must be a function');
  rewardFor(true, opts); // validates rPos / rNeg up front
  const out: ScoredSample[] = [];
  for (let i = 0; i < samples.length; i++) {
    const s = samples[i];
    if (typeof s !== 'object' || s === null) throw new TypeError(`samples[${i}]: must be an object`);
    for (const f of ['problemId', 'problem', 'response', 'reference'] as const)
      if (typeof s[f] !== 'string') throw new TypeError(`samples[${i}].${f}: must be a string, got ${describe(s[f])}`);
    const v = verify(s.response, s.reference, opts.verifier);
    const raw = opts.rewardFn
      ? await opts.rewardFn({ problem: s.problem, response: s.response, reference: s.reference, id: s.problemId })
      : rewardFor(v.correct, opts);
    out.push({
      problemId: s.problemId,
      correct: v.correct,
      extracted: v.extracted,
      reason: v.reason,
      rawReward: raw,
      reward: raw,
    });
  }
  if (opts.groupNormalize) {
    const groups = new Map<string, number[]>();
    out.forEach((o, i) => {
      const g = groups.get(o.problemId);
      if (g) g.push(i);
      else groups.set(o.problemId, [i]);
    });
    for (const idx of groups.values()) {
      const [norm] = groupNormalize([idx.map((i) => out[i].rawReward)]);
      idx.forEach((i, j) => (out[i].reward = norm[j]));
    }
  }
  return out;
}
