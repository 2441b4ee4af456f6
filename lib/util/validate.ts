// Argument checks shared by the whole library: each failure is a TypeError or RangeError naming the argument,
// and sizes computed from user input are checked to be exact (checkedProduct / checkedSum).

export function typeError(arg: string, what: string): TypeError {
  return new TypeError(`${arg}: ${what}`);
}
export function rangeError(arg: string, what: string): RangeError {
  return new RangeError(`${arg}: ${what}`);
}

export function checkInteger(arg: string, v: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof v !== 'number') throw typeError(arg, `must be a number, got ${typeof v}`);
  if (!Number.isInteger(v) || v < min || v > max)
    throw rangeError(arg, `must be an integer in [${min}, ${max}], got ${v}`);
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
    throw (typeof v === 'string' ? rangeError : typeError)(
      arg,
      `must be one of ${allowed.map((a) => `'${a}'`).join(', ')}, got ${describe(v)}`,
    );
  }
  return v as T;
}

/** checkEnum, with `dflt` for an absent (undefined) value. */
export function checkEnumOr<T extends string>(arg: string, v: unknown, allowed: readonly T[], dflt: T): T {
  return v === undefined ? dflt : checkEnum(arg, v, allowed);
}

export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (typeof v === 'object') return (v as object).constructor?.name ?? 'object';
  if (typeof v === 'string') return `'${v}'`;
  return typeof v;
}

/** One named factor or term of a size computed from user input, e.g. ['num_attention_heads', 28]. */
export type SizeTerm = readonly [name: string, value: number];

const MAX_SAFE_TEXT = '2^53 − 1 (the largest integer a JS number holds exactly)';

function sizeError(
  label: string,
  terms: readonly SizeTerm[],
  op: string,
  value: number,
  exact: boolean,
  max: number,
  maxText?: string,
): RangeError {
  const names = terms.map(([n]) => n).join(op);
  const expr = terms.length > 1 ? `${names} = ${terms.map(([, v]) => v).join(op)}` : names;
  const shown = exact ? ` = ${value}` : ` ≈ ${value.toPrecision(4)}`;
  return new RangeError(
    `${label}: ${expr}${shown} exceeds ${maxText ?? (max === Number.MAX_SAFE_INTEGER ? MAX_SAFE_TEXT : String(max))}`,
  );
}

function combine(label: string, terms: readonly SizeTerm[], product: boolean, max: number, maxText?: string): number {
  let r = product ? 1 : 0;
  for (const [name, v] of terms) {
    if (!Number.isSafeInteger(v) || v < 0) throw rangeError(label, `${name} must be a non-negative integer, got ${v}`);
    if (product && v === 0) return 0; // zero wins over an inexact partial product
  }
  for (const [, v] of terms) r = product ? r * v : r + v;
  const exact = Number.isSafeInteger(r);
  if (!exact || r > max) throw sizeError(label, terms, product ? ' × ' : ' + ', r, exact, max, maxText);
  return r;
}

/**
 * The exact product of sizes from user input: a RangeError "label: a × b = 3 × 5 = 15 exceeds …" when it is not a
 * safe integer (2^53 − 1: beyond it a JS number is no longer exact) or exceeds `max` (`maxText` says what that is).
 */
export function checkedProduct(
  label: string,
  factors: readonly SizeTerm[],
  max = Number.MAX_SAFE_INTEGER,
  maxText?: string,
): number {
  return combine(label, factors, true, max, maxText);
}

/** The exact sum of sizes from user input, checked like checkedProduct. */
export function checkedSum(
  label: string,
  terms: readonly SizeTerm[],
  max = Number.MAX_SAFE_INTEGER,
  maxText?: string,
): number {
  return combine(label, terms, false, max, maxText);
}
