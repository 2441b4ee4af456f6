// The pieces of the RIFT loop that the CLI commands and the demo share (no terminal I/O here: callers log).
//
//   scorer          verify(text, answer) → {reward: rPos | rNeg (or a user module's value), correct, extracted}
//   exampleFromRecord / rolloutExamples   rollout records → training Examples (prompt ids + response ids + reward)
//   referenceExamples                     problems' worked solutions → Examples (reward 1; the data of SFT)
//   trainMethod     a Trainer run with an optional exact step budget (stops after `steps` optimizer updates)
//   memoryDelta     per-category peak bytes of a run above the baseline taken before it
//
// Prompt format: the embedded base model's (lib/demo/base-model.ts): prompt = problem text + "\n", response = the
// solution + eos. A rollout's text has special tokens stripped, so a sample that ended on the eos token gets it back.
import type { Problem } from '../data/problems';
import { Model, type MemoryReport } from '../engine/model';
import type { Tokenizer } from '../engine/tokenizer';
import type { RolloutRecord } from '../rollout/store';
import type { ScoreResult } from '../rollout/rollout';
import { verify } from '../reward/verifier';
import { rewardFor, type RewardFn } from '../reward/rewards';
import { selectExamples, type Example } from '../train/examples';
import { Trainer, type StepMetrics, type TrainerOptions } from '../train/trainer';
import { promptFor as basePromptFor, responseFor as baseResponseFor } from './base-model';

import * as fs from 'fs';
import * as path from 'path';

export const promptFor = basePromptFor;

/** The package's root directory (the nearest ancestor of this file holding package.json). */
export function packageRoot(): string {
  let d = __dirname;
  while (!fs.existsSync(path.join(d, 'package.json'))) {
    const up = path.dirname(d);
    if (up === d) return process.cwd();
    d = up;
  }
  return d;
}

/** The embedded base model's directory. */
export function defaultModelDir(): string {
  return path.join(packageRoot(), 'models', 'tiny-base');
}
export const responseFor = baseResponseFor;

export interface ScorerOptions {
  rPos?: number;
  rNeg?: number;
  /** A loaded user reward module (lib/reward/rewards.ts loadRewardModule): replaces rPos/rNeg. */
  rewardFn?: RewardFn;
}

/** A Scorer for rollouts/evaluation: the verifier's verdict, the reward from rPos/rNeg or the user module. */
export function makeScorer(opts: ScorerOptions = {}): (p: Problem, text: string) => Promise<ScoreResult> {
  rewardFor(true, opts); // validates rPos / rNeg now
  return async (p, text) => {
    const v = verify(text, p.answer, { symbolic: false });
    const reward = opts.rewardFn
      ? await opts.rewardFn({ problem: p.problem, response: text, reference: p.answer, id: p.id })
      : rewardFor(v.correct, opts);
    return { reward, correct: v.correct, extracted: v.extracted };
  };
}

function eosId(tok: Tokenizer): number | undefined {
  return tok.eosTokenIds.length ? tok.eosTokenIds[0] : undefined;
}

/** One rollout record as a training example (prompt re-encoded; eos appended when the sample stopped on it). */
export function exampleFromRecord(rec: RolloutRecord, problem: Problem, tok: Tokenizer): Example | null {
  const resp = tok.encode(rec.text, { addSpecialTokens: false });
  const eos = eosId(tok);
  const ids = rec.finishReason === 'stop' && eos !== undefined ? Int32Array.from([...resp, eos]) : resp;
  if (ids.length === 0) return null;
  return { problemId: rec.problemId, sampleIndex: rec.sampleIndex, promptIds: tok.encode(promptFor(problem)), responseIds: ids, reward: rec.reward };
}

/** Training examples of the records whose problem is in `problems` (others are skipped and counted). */
export function rolloutExamples(records: readonly RolloutRecord[], problems: readonly Problem[], tok: Tokenizer): { examples: Example[]; skipped: number } {
  const byId = new Map(problems.map((p) => [p.id, p]));
  const examples: Example[] = [];
  let skipped = 0;
  for (const r of records) {
    const p = byId.get(r.problemId);
    const e = p ? exampleFromRecord(r, p, tok) : null;
    if (e) examples.push(e);
    else skipped++;
  }
  return { examples, skipped };
}

/** The problems' worked solutions as examples with reward 1 (SFT's data); problems without a solution are skipped. */
export function referenceExamples(problems: readonly Problem[], tok: Tokenizer): Example[] {
  return problems
    .filter((p) => typeof p.solution === 'string')
    .map((p) => ({ problemId: p.id, sampleIndex: 0, promptIds: tok.encode(promptFor(p)), responseIds: tok.encode(responseFor(p)), reward: 1 }));
}

class StopTraining extends Error {}

export interface TrainMethodOptions extends TrainerOptions {
  /** Stop after exactly this many optimizer updates (epochs are raised so that the data lasts). */
  steps?: number;
  /** Resume from this checkpoint root first (Trainer.resume). */
  resumeFrom?: string;
}

/**
 * Trains `model` with one Trainer. With `steps`, runs enough epochs for `steps` updates and stops there (the LR
 * schedule then spans the full planned run: use 'constant' for an exact budget). Returns the step metrics.
 */
export async function trainMethod(model: Model, examples: readonly Example[], refSolutions: readonly Example[] | undefined, o: TrainMethodOptions): Promise<{ metrics: StepMetrics[]; trainer: Trainer }> {
  const { steps, resumeFrom, ...opts } = o;
  let trainerOpts: TrainerOptions = opts;
  if (steps !== undefined) {
    if (!Number.isSafeInteger(steps) || steps < 1) throw new RangeError(`steps: must be an integer ≥ 1, got ${steps}`);
    const per = opts.examplesPerStep ?? 1;
    const sel = selectExamples(opts.method, examples, { refSolutions, dftData: opts.dftData });
    const units = sel.pairs ? sel.pairs.length : sel.examples.length;
    if (units === 0) throw new RangeError(`examples: nothing to train on for method '${opts.method}' (${JSON.stringify(sel.stats)})`);
    const epochs = Math.ceil(steps / Math.ceil(units / per));
    const user = opts.onStep;
    trainerOpts = {
      ...opts,
      epochs,
      onStep: async (m) => {
        if (user) await user(m);
        if (m.step >= steps) throw new StopTraining();
      },
    };
  }
  const trainer = new Trainer(model, trainerOpts);
  if (resumeFrom) await trainer.resume(resumeFrom);
  try {
    await trainer.run(examples, refSolutions ? { refSolutions } : {});
  } catch (e) {
    if (!(e instanceof StopTraining)) throw e;
  }
  return { metrics: trainer.history.slice(), trainer };
}

export const MEMORY_CATEGORIES = ['params', 'grads', 'optimizer', 'activations', 'logitsChunk', 'reference', 'workspace', 'kvCache'] as const;

/** Peak bytes per category (and total) reached since `before` was taken, above `before`'s current bytes. */
export function memoryDelta(before: MemoryReport, after: MemoryReport): Record<string, number> {
  const out: Record<string, number> = {};
  const a = after as unknown as Record<string, { peak: number; current: number }>;
  const b = before as unknown as Record<string, { peak: number; current: number }>;
  for (const k of [...MEMORY_CATEGORIES, 'total']) if (a[k] && b[k]) out[k] = Math.max(0, a[k].peak - b[k].current);
  return out;
}
