// The loop's scorer: the math verifier's verdict on a sample and its reward (rPos / rNeg, or a user module's value).
import type { Problem } from '../data/problems';
import type { ScoreResult } from '../rollout/rollout';
import { verify } from '../reward/verifier';
import { rewardFor, type RewardFn } from '../reward/rewards';

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
