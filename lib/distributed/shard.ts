// How a global batch is split over the ranks of a data-parallel job, and how the flat parameter buffer is split
// into ZeRO-1 shards (the same rule as native/distributed/comm.cc shard_ranges).
import { checkInteger, typeError } from '../util/validate';

/**
 * This rank's share of one global batch: units are dealt longest first (stable), each to the rank with the fewest
 * tokens so far (ties: the lowest rank); a rank keeps its units in their global order. Every rank computes the
 * same deal, so the shares are disjoint and together are the whole batch. A rank may get nothing (fewer units
 * than ranks): it still joins every collective with a zero gradient.
 */
export function shardUnits<T>(units: readonly T[], tokens: (u: T) => number, rank: number, size: number): T[] {
  checkInteger('size', size, 1);
  checkInteger('rank', rank, 0, size - 1);
  if (typeof tokens !== 'function') throw typeError('tokens', 'must be a function');
  const order = units.map((u, i) => ({ i, w: tokens(u) })).sort((a, b) => b.w - a.w || a.i - b.i);
  const load = new Array<number>(size).fill(0);
  const mine: number[] = [];
  for (const { i, w } of order) {
    let best = 0;
    for (let r = 1; r < size; r++) if (load[r] < load[best]) best = r;
    load[best] += w;
    if (best === rank) mine.push(i);
  }
  return mine.sort((a, b) => a - b).map((i) => units[i]);
}

export interface ShardRange {
  offset: number;
  count: number;
}

/** ZeRO-1 shards of n floats over `ranks`: S = ⌈n / ranks⌉ rounded up to 16 floats; rank r owns [r·S, min(n, (r+1)·S)). */
export function shardRanges(n: number, ranks: number): ShardRange[] {
  checkInteger('n', n, 0);
  checkInteger('ranks', ranks, 1);
  const S = Math.ceil(Math.ceil(n / ranks) / 16) * 16;
  return Array.from({ length: ranks }, (_, r) => {
    const lo = Math.min(n, r * S);
    return { offset: lo, count: Math.min(n, lo + S) - lo };
  });
}
