// A diverged training run, reported as such: the Trainer stops at the first update whose loss, logits or gradient
// norm is not finite (NaN/±Inf), leaves the parameters as the previous update left them, writes no checkpoint of the
// failed update, and throws a DivergenceError that says which update failed, why, and what the run did before.
// (The naive loss −r·log π is the typical cause: it is unbounded below, docs/design.md §1.4.)
import type { StepMetrics } from './trainer';

export type DivergenceReason = 'non-finite loss' | 'non-finite logits' | 'non-finite gradient norm';

export interface Divergence {
  /** The optimizer update that failed (1-based); the parameters are those after update step − 1. */
  step: number;
  totalSteps: number;
  method: string;
  reason: DivergenceReason;
  /** The engine's own words (e.g. "logits: row 12 holds NaN or Inf"), or the non-finite value. */
  detail: string;
  /** The loss of the last completed update (NaN when none completed). */
  lastLoss: number;
}

export class DivergenceError extends Error {
  readonly divergence: Divergence;
  /** Metrics of every completed update, the failed one excluded. */
  readonly history: StepMetrics[];

  constructor(d: Divergence, history: StepMetrics[]) {
    const last = Number.isFinite(d.lastLoss)
      ? `; the last completed update's loss was ${d.lastLoss.toPrecision(6)}`
      : '';
    super(
      `training diverged at update ${d.step} of ${d.totalSteps} (method '${d.method}'): ${d.reason} (${d.detail}); ` +
        `the parameters are those after update ${d.step - 1}${last}`,
    );
    this.name = 'DivergenceError';
    this.divergence = d;
    this.history = history;
  }
}

/** The divergence reason of an engine error (NaN/Inf logits or gradient norm), or undefined for any other error. */
export function divergenceReason(e: unknown): DivergenceReason | undefined {
  const msg = e instanceof Error ? e.message : '';
  if (e instanceof RangeError && /^logits: row \d+ holds NaN or Inf/.test(msg)) return 'non-finite logits';
  if (/^step: the gradient norm is /.test(msg)) return 'non-finite gradient norm';
  return undefined;
}
