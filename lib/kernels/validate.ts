// Argument checks shared by the kernel API: each failure is a TypeError or RangeError naming the argument.

export function typeError(arg: string, what: string): TypeError {
  return new TypeError(`${arg}: ${what}`);
}
export function rangeError(arg: string, what: string): RangeError {
  return new RangeError(`${arg}: ${what}`);
}

export function checkInteger(arg: string, v: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof v !== 'number') throw typeError(arg, `must be a number, got ${typeof v}`);
  if (!Number.isInteger(v) || v < min || v > max) throw rangeError(arg, `must be an integer in [${min}, ${max}], got ${v}`);
  return v;
}

export function checkFiniteNumber(arg: string, v: unknown): number {
  if (typeof v !== 'number') throw typeError(arg, `must be a number, got ${typeof v}`);
  if (!Number.isFinite(v)) throw rangeError(arg, `must be finite, got ${v}`);
  return v;
}

export function checkArray<T extends ArrayBufferView>(
  arg: string,
  v: unknown,
  ctor: { new (n: number): T; name: string },
  length?: number,
): T {
  if (!(v instanceof ctor)) throw typeError(arg, `must be a ${ctor.name}, got ${describe(v)}`);
  const len = (v as unknown as { length: number }).length;
  if (length !== undefined && len !== length) throw rangeError(arg, `length must be ${length}, got ${len}`);
  return v;
}

export function checkEnum<T extends string>(arg: string, v: unknown, allowed: readonly T[]): T {
  if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) {
    throw (typeof v === 'string' ? rangeError : typeError)(arg, `must be one of ${allowed.map((a) => `'${a}'`).join(', ')}, got ${describe(v)}`);
  }
  return v as T;
}

export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (typeof v === 'object') return (v as object).constructor?.name ?? 'object';
  if (typeof v === 'string') return `'${v}'`;
  return typeof v;
}

/**
 * The largest DPO β accepted. The loss is softplus(−β·Δ) and each sequence's gradient weight is up to β, so a huge β
 * overflows them (β·Δ past the double range gives an infinite loss, a weight past the float range ±Inf gradients);
 * useful values are 0.01 – 1, and beyond ~100 DPO is a hard-margin classifier already.
 */
export const DPO_BETA_MAX = 1000;

/** DPO β: a finite number in (0, DPO_BETA_MAX]; `arg` names it in the TypeError / RangeError. */
export function checkDpoBeta(arg: string, v: unknown): number {
  const beta = checkFiniteNumber(arg, v);
  if (!(beta > 0) || beta > DPO_BETA_MAX) throw rangeError(arg, `must be in (0, ${DPO_BETA_MAX}], got ${beta}`);
  return beta;
}
