// Learning-rate schedules, matching Hugging Face transformers' optimization.py:
//   constant  get_constant_schedule_with_warmup
//   linear    get_linear_schedule_with_warmup
//   cosine    get_cosine_schedule_with_warmup (num_cycles = 0.5), or get_cosine_with_min_lr_schedule_with_warmup
//             when minLr > 0
//
// Steps count optimizer updates from 0: the LR used by update `step` is lrAt(step). Warmup is linear from 0:
// lrAt(0) = 0 when warmupSteps > 0 (HF: lr·step/warmup for step < warmup), lrAt(warmupSteps) = baseLr, then
// the decay. Decay progress = (step − warmup) / max(1, total − warmup), so lrAt(totalSteps) is the floor
// (minLr for cosine/linear). Steps past totalSteps are a RangeError (HF's cosine would climb again).

export type ScheduleKind = 'cosine' | 'constant' | 'linear';
export const SCHEDULE_KINDS: readonly ScheduleKind[] = ['cosine', 'constant', 'linear'];

export interface ScheduleOptions {
  kind: ScheduleKind;
  baseLr: number;
  /** Linear warmup from 0 over this many steps (default 0). */
  warmupSteps?: number;
  /** Total optimizer steps; required for cosine and linear, optional for constant (bounds `step` when given). */
  totalSteps?: number;
  /**
   * Floor of the decay (default 0), as in HF's cosine-with-min-lr: factor' = factor·(1 − r) + r with
   * r = minLr / baseLr. Warmup still starts from 0. For linear the same blend is applied (HF's linear schedule has
   * no floor); ignored by constant. Must be ≤ baseLr.
   */
  minLr?: number;
}

function checkOptions(o: ScheduleOptions): { warmup: number; total: number | undefined; minLr: number } {
  if (typeof o !== 'object' || o === null) throw new TypeError('options: must be an object');
  if (!SCHEDULE_KINDS.includes(o.kind))
    throw new RangeError(`kind: must be one of ${SCHEDULE_KINDS.join(', ')}, got ${JSON.stringify(o.kind)}`);
  if (typeof o.baseLr !== 'number' || !Number.isFinite(o.baseLr) || o.baseLr < 0)
    throw new RangeError(`baseLr: must be a finite number ≥ 0, got ${o.baseLr}`);
  const warmup = o.warmupSteps ?? 0;
  if (!Number.isSafeInteger(warmup) || warmup < 0)
    throw new RangeError(`warmupSteps: must be an integer ≥ 0, got ${o.warmupSteps}`);
  const total = o.totalSteps;
  if (total === undefined) {
    if (o.kind !== 'constant') throw new RangeError(`totalSteps: required for the ${o.kind} schedule`);
  } else {
    if (!Number.isSafeInteger(total) || total <= 0)
      throw new RangeError(`totalSteps: must be a positive integer, got ${total}`);
    if (warmup > total) throw new RangeError(`warmupSteps: ${warmup} exceeds totalSteps ${total}`);
  }
  const minLr = o.minLr ?? 0;
  if (typeof minLr !== 'number' || !Number.isFinite(minLr) || minLr < 0 || minLr > o.baseLr)
    throw new RangeError(`minLr: must be a finite number in [0, baseLr = ${o.baseLr}], got ${o.minLr}`);
  return { warmup, total, minLr };
}

/** The multiplier of baseLr at `step` (HF's lr_lambda). */
export function lrFactor(step: number, opts: ScheduleOptions): number {
  const { warmup, total, minLr } = checkOptions(opts);
  if (!Number.isSafeInteger(step) || step < 0) throw new RangeError(`step: must be an integer ≥ 0, got ${step}`);
  if (total !== undefined && step > total) throw new RangeError(`step: ${step} is past totalSteps ${total}`);
  if (step < warmup) return step / Math.max(1, warmup);
  if (opts.kind === 'constant') return 1;
  const span = Math.max(1, total! - warmup);
  const progress = (step - warmup) / span;
  const r = opts.baseLr > 0 ? minLr / opts.baseLr : 0;
  const f =
    opts.kind === 'cosine'
      ? Math.max(0, 0.5 * (1 + Math.cos(Math.PI * progress)))
      : Math.max(0, (total! - step) / span);
  return r > 0 ? f * (1 - r) + r : f;
}

/** The learning rate for optimizer update `step` (0-based). */
export function lrAt(step: number, opts: ScheduleOptions): number {
  return opts.baseLr * lrFactor(step, opts);
}
