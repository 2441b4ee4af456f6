// Training examples and what each method trains on (the RIFT loop's step 4: trainers on one harness).
//
//   Example      one sampled (or reference) answer: prompt + response token ids and its scalar reward.
//   selectExamples(method, examples, {refSolutions})
//     sft   the reference solutions (given as examples with reward 1), not the samples
//     rft   the positive samples only (reward > 0), trained with the SFT loss
//     dft   DFT (token loss weighted by stop-grad p) on the same data as RFT: the positive samples. The DFT
//           baseline is "SFT with a different loss", so it trains on what SFT/RFT would; on a RIFT loop the
//           data that exists is the policy's own positives. `dftData: 'reference'` trains it on the reference
//           solutions instead (the DFT paper's own setting).
//     rift  every sample with its reward; r = 0 samples contribute nothing to the loss or its gradient
//           (docs/design.md §1.3) and are dropped (counted in stats.zeroReward)
//     naive the same data as rift, trained with −r·log π on every sample (the unbounded baseline, §1.4)
//     dpo   pairs of the SAME problem: chosen = a positive (reward > 0), rejected = a non-positive (reward ≤ 0).
//           Every positive is paired with a negative, round-robin over the problem's negatives (both in
//           sampleIndex order, so the pairing is deterministic); problems without both kinds are dropped
//           (stats.problemsDropped). A negative may appear in several pairs when positives outnumber it.
import { checkEnum, describe, rangeError, typeError } from '../util/validate';

export interface Example {
  /** Groups the K samples of one problem (DPO pairs never cross problems). */
  problemId: string;
  /** Which of the K samples (orders a problem's samples deterministically). */
  sampleIndex: number;
  /** The prompt's token ids (≥ 1 token: the first response token is predicted from the last prompt position). */
  promptIds: Int32Array;
  /** The response's token ids (≥ 1 token): these positions are the loss's targets. */
  responseIds: Int32Array;
  /** The scalar reward (finite). */
  reward: number;
}

export type TrainMethod = 'sft' | 'rft' | 'dft' | 'rift' | 'dpo' | 'naive';
export const TRAIN_METHODS: readonly TrainMethod[] = ['sft', 'rft', 'dft', 'rift', 'dpo', 'naive'];

export interface DpoPair {
  chosen: Example;
  rejected: Example;
}

export interface SelectOptions {
  /** Reference solutions (reward 1 each): the data of 'sft' (and of 'dft' with dftData 'reference'). */
  refSolutions?: readonly Example[];
  /** What 'dft' trains on: 'positives' (default, the RFT data) or 'reference' (refSolutions). */
  dftData?: 'positives' | 'reference';
}

export interface SelectionStats {
  /** Examples given (samples; for sft the reference solutions). */
  input: number;
  /** Examples selected (for dpo: distinct examples in some pair). */
  selected: number;
  /** rift: samples with reward 0 (dropped); others: 0. */
  zeroReward: number;
  /** Distinct problemIds in the input. */
  problems: number;
  /** dpo: problems without both a positive and a non-positive sample (dropped); others: 0. */
  problemsDropped: number;
  /** dpo: the number of pairs; others: 0. */
  pairs: number;
}

export interface Selection {
  method: TrainMethod;
  /** What is trained on, in input order (dpo: every example that is in a pair, in pair order, once). */
  examples: Example[];
  /** dpo only: (chosen, rejected) pairs, grouped by problem in first-appearance order. */
  pairs?: DpoPair[];
  stats: SelectionStats;
}

/** Checks one example; `arg` names it in errors (e.g. "examples[3]"). */
export function checkExample(arg: string, e: unknown): Example {
  if (e === null || typeof e !== 'object') throw typeError(arg, `must be an Example object, got ${describe(e)}`);
  const x = e as Example;
  if (typeof x.problemId !== 'string')
    throw typeError(`${arg}.problemId`, `must be a string, got ${describe(x.problemId)}`);
  if (typeof x.sampleIndex !== 'number' || !Number.isSafeInteger(x.sampleIndex))
    throw typeError(`${arg}.sampleIndex`, `must be an integer, got ${describe(x.sampleIndex)}`);
  for (const k of ['promptIds', 'responseIds'] as const) {
    if (!(x[k] instanceof Int32Array)) throw typeError(`${arg}.${k}`, `must be an Int32Array, got ${describe(x[k])}`);
    if (x[k].length < 1) throw rangeError(`${arg}.${k}`, 'must hold at least one token');
  }
  if (typeof x.reward !== 'number') throw typeError(`${arg}.reward`, `must be a number, got ${describe(x.reward)}`);
  if (!Number.isFinite(x.reward)) throw rangeError(`${arg}.reward`, `must be finite, got ${x.reward}`);
  return x;
}

function checkList(arg: string, v: unknown): readonly Example[] {
  if (!Array.isArray(v)) throw typeError(arg, `must be an array of Example, got ${describe(v)}`);
  v.forEach((e, i) => checkExample(`${arg}[${i}]`, e));
  return v as Example[];
}

function countProblems(list: readonly Example[]): number {
  return new Set(list.map((e) => e.problemId)).size;
}

/** What `method` trains on (see the file comment). Throws TypeError/RangeError naming the bad argument. */
export function selectExamples(method: TrainMethod, examples: readonly Example[], opts: SelectOptions = {}): Selection {
  checkEnum('method', method, TRAIN_METHODS);
  if (opts === null || typeof opts !== 'object') throw typeError('options', `must be an object, got ${describe(opts)}`);
  const dftData = opts.dftData ?? 'positives';
  if (dftData !== 'positives' && dftData !== 'reference')
    throw rangeError('dftData', `must be 'positives' or 'reference', got ${describe(dftData)}`);
  const useRef = method === 'sft' || (method === 'dft' && dftData === 'reference');
  if (useRef) {
    if (opts.refSolutions === undefined)
      throw typeError(
        'refSolutions',
        `reference solutions are required for method '${method}'${method === 'dft' ? " with dftData 'reference'" : ''}`,
      );
    const ref = checkList('refSolutions', opts.refSolutions);
    const stats: SelectionStats = {
      input: ref.length,
      selected: ref.length,
      zeroReward: 0,
      problems: countProblems(ref),
      problemsDropped: 0,
      pairs: 0,
    };
    return { method, examples: [...ref], stats };
  }
  const list = checkList('examples', examples);
  const stats: SelectionStats = {
    input: list.length,
    selected: 0,
    zeroReward: 0,
    problems: countProblems(list),
    problemsDropped: 0,
    pairs: 0,
  };
  if (method === 'rft' || method === 'dft') {
    const sel = list.filter((e) => e.reward > 0);
    stats.selected = sel.length;
    return { method, examples: sel, stats };
  }
  if (method === 'rift' || method === 'naive') {
    const sel = list.filter((e) => e.reward !== 0);
    stats.zeroReward = list.length - sel.length;
    stats.selected = sel.length;
    return { method, examples: sel, stats };
  }
  // dpo
  const byProblem = new Map<string, Example[]>();
  for (const e of list) {
    const g = byProblem.get(e.problemId);
    if (g) g.push(e);
    else byProblem.set(e.problemId, [e]);
  }
  const pairs: DpoPair[] = [];
  const used = new Set<Example>();
  const order = (a: Example, b: Example) => a.sampleIndex - b.sampleIndex;
  for (const group of byProblem.values()) {
    const pos = group.filter((e) => e.reward > 0).sort(order);
    const neg = group.filter((e) => e.reward <= 0).sort(order);
    if (!pos.length || !neg.length) {
      stats.problemsDropped++;
      continue;
    }
    pos.forEach((chosen, i) => {
      const rejected = neg[i % neg.length];
      pairs.push({ chosen, rejected });
      used.add(chosen).add(rejected);
    });
  }
  stats.pairs = pairs.length;
  stats.selected = used.size;
  return { method, examples: [...used], pairs, stats };
}
