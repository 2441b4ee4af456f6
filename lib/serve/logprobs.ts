// Per-token log-probs of `rift serve`: log p(token) under the model (log_softmax of the logits at temperature 1,
// no top-k/top-p filtering: the sampler's `logprob`, lib/engine/sampler.ts) and the most likely alternatives, in
// float64 from a row of float32 logits.

export interface TokenLogprob {
  id: number;
  logprob: number;
  /** The `top` most likely tokens, most likely first (ties: lower id first). */
  top: { id: number; logprob: number }[];
}

/** log-sum-exp of a row (max-shifted, float64). */
export function rowLogSumExp(row: Float32Array): number {
  let m = -Infinity;
  for (let v = 0; v < row.length; v++) if (row[v] > m) m = row[v];
  if (!(m > -Infinity) || !Number.isFinite(m)) throw new RangeError(`logits: the row's maximum is ${m}`);
  let s = 0;
  for (let v = 0; v < row.length; v++) s += Math.exp(row[v] - m);
  return m + Math.log(s);
}

/** The `k` highest logits of a row as ids, highest first (ties: lower id first). */
export function topIds(row: Float32Array, k: number): number[] {
  const out: number[] = [];
  if (k <= 0) return out;
  for (let v = 0; v < row.length; v++) {
    const z = row[v];
    if (out.length === k && !(z > row[out[k - 1]])) continue;
    let i = out.length === k ? k - 1 : out.length;
    while (i > 0 && z > row[out[i - 1]]) i--;
    out.splice(i, 0, v);
    if (out.length > k) out.pop();
  }
  return out;
}

/** A token's log-prob under a logits row, with the `top` most likely alternatives. */
export function tokenLogprob(row: Float32Array, id: number, top: number, lse = rowLogSumExp(row)): TokenLogprob {
  return { id, logprob: row[id] - lse, top: topIds(row, top).map((t) => ({ id: t, logprob: row[t] - lse })) };
}
