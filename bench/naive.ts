// The "naive TS" baseline: SFT loss and gradient in plain TypeScript loops, op by op as a straightforward port
// would write it — materialise log-softmax into a Float32Array, gather, then the gradient. Math.exp/Math.log.

/**
 * SFT over (rows, vocab) fp32 logits: returns mean −ℓ_t over rows whose target is not −100 (0 when none) and
 * writes grad = (softmax − onehot) / n_tokens (0 on ignored rows). grad may be logits itself.
 * logp: optional scratch of at least rows·vocab floats (reused so the benchmark times compute, not allocation).
 */
export function naiveSft(
  logits: Float32Array,
  rows: number,
  vocab: number,
  targets: Int32Array,
  grad: Float32Array,
  logp: Float32Array = new Float32Array(rows * vocab),
): number {
  // 1. logp = log_softmax(z), row by row.
  for (let r = 0; r < rows; r++) {
    const base = r * vocab;
    let m = -Infinity;
    for (let v = 0; v < vocab; v++) if (logits[base + v] > m) m = logits[base + v];
    let d = 0;
    for (let v = 0; v < vocab; v++) d += Math.exp(logits[base + v] - m);
    const lse = m + Math.log(d);
    for (let v = 0; v < vocab; v++) logp[base + v] = logits[base + v] - lse;
  }
  // 2. Gather ℓ_t = logp[t, y_t] and average over the rows with a target.
  let sum = 0;
  let tokens = 0;
  for (let r = 0; r < rows; r++) {
    const y = targets[r];
    if (y === -100) continue;
    sum -= logp[r * vocab + y];
    tokens++;
  }
  // 3. grad = (exp(logp) − onehot) / n_tokens.
  const scale = tokens > 0 ? 1 / tokens : 0;
  for (let r = 0; r < rows; r++) {
    const base = r * vocab;
    const y = targets[r];
    if (y === -100) {
      grad.fill(0, base, base + vocab);
      continue;
    }
    for (let v = 0; v < vocab; v++) grad[base + v] = Math.exp(logp[base + v]) * scale;
    grad[base + y] = (Math.exp(logp[base + y]) - 1) * scale;
  }
  return tokens > 0 ? sum / tokens : 0;
}
