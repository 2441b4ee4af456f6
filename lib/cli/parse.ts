// Option-argument parsers for commander: a bad value throws InvalidArgumentError, which commander reports as
// "option '--k <n>' argument 'x' is invalid. <reason>" (the option named).
import { InvalidArgumentError } from 'commander';

export function int(min = Number.MIN_SAFE_INTEGER, max = Number.MAX_SAFE_INTEGER): (v: string) => number {
  return (v) => {
    if (!/^-?\d+$/.test(v.trim())) throw new InvalidArgumentError(`expected an integer`);
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n < min || n > max)
      throw new InvalidArgumentError(`expected an integer in [${min}, ${max === Number.MAX_SAFE_INTEGER ? '∞' : max}]`);
    return n;
  };
}

export function num(min = -Infinity, max = Infinity): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n)) throw new InvalidArgumentError('expected a finite number');
    if (n < min || n > max) throw new InvalidArgumentError(`expected a number in [${min}, ${max}]`);
    return n;
  };
}

export function intList(v: string): number[] {
  const parts = v
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (!parts.length) throw new InvalidArgumentError('expected a comma-separated list of integers');
  return parts.map((p) => {
    if (!/^\d+$/.test(p)) throw new InvalidArgumentError(`expected integers ≥ 0, got ${JSON.stringify(p)}`);
    return Number(p);
  });
}
