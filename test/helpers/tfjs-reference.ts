// Every loss of rift/tfjs written in plain tfjs ops (autodiff gives the gradient), from ENGINEERING.md §1 and
// test/helpers/reference.ts directly (no shared code with lib/tfjs.ts or the kernels). Used by test/tfjs.test.ts
// (value and tf.grad against the adapter) and bench/tfjs-adapter.ts (the speed of the same loss in tf ops).
import type * as tfc from '@tensorflow/tfjs-core';
import type { TfjsMethod } from '../../lib/tfjs';

export interface PlainCase {
  targets: Int32Array;
  offsets: Int32Array;
  rewards?: Float32Array;
  method: TfjsMethod;
  negative?: 'token' | 'sequence';
  reduction?: 'token-mean' | 'sequence-mean' | 'sum';
  normalizer?: number;
  dpo?: { refLogps: Float64Array; pairs: Int32Array; beta?: number };
}

/** The loss of `c` on `logits` (rows, vocab) as tf ops: differentiate it with tf.grad. */
export function plainTfLoss(tf: typeof tfc, logits: tfc.Tensor2D, c: PlainCase): tfc.Scalar {
  const [N, V] = logits.shape;
  const S = c.offsets.length - 1;
  const reduction = c.reduction ?? 'token-mean';
  const reward = (i: number) => (c.rewards ? c.rewards[i] : 0);
  // host constants: the row's sequence, its mask (1 = has a target, and for RFT a positive sequence), a safe index
  const seqOf = new Int32Array(N),
    mask = new Float32Array(N),
    safe = new Int32Array(N);
  const count = new Array<number>(S).fill(0);
  for (let i = 0; i < S; i++)
    for (let t = c.offsets[i]; t < c.offsets[i + 1]; t++) {
      seqOf[t] = i;
      if (c.targets[t] === -100 || (c.method === 'rft' && !(reward(i) > 0))) continue;
      mask[t] = 1;
      safe[t] = c.targets[t];
      count[i]++;
    }
  const tokens = count.reduce((a, b) => a + b, 0);
  const nonEmpty = count.filter((n) => n > 0).length;
  const scale = (i: number) =>
    count[i] === 0
      ? 0
      : reduction === 'sum'
        ? 1
        : reduction === 'token-mean'
          ? 1 / (c.normalizer ?? tokens)
          : 1 / (count[i] * (c.normalizer ?? nonEmpty));
  const stopGradient = tf.customGrad((...a: (tfc.Tensor | tfc.GradSaveFunc)[]) => ({
    value: tf.mul(a[0] as tfc.Tensor, 1),
    gradFunc: (dy: tfc.Tensor) => tf.zerosLike(dy),
  }));

  const lp = tf.mul(
    tf.sum(tf.mul(tf.logSoftmax(logits), tf.oneHot(tf.tensor1d(safe, 'int32'), V, 1, 0, 'float32')), 1),
    tf.tensor1d(mask),
  ); // ℓ_t, 0 off-mask
  const seqLogps = () => tf.unsortedSegmentSum(lp, tf.tensor1d(seqOf, 'int32'), S); // S_i
  if (c.method === 'dpo') {
    const d = c.dpo!;
    const P = d.pairs.length / 2;
    const ch = Int32Array.from({ length: P }, (_, k) => d.pairs[2 * k]);
    const rj = Int32Array.from({ length: P }, (_, k) => d.pairs[2 * k + 1]);
    const ref = Float32Array.from({ length: P }, (_, k) => d.refLogps[ch[k]] - d.refLogps[rj[k]]);
    const Si = seqLogps();
    const margin = tf.sub(
      tf.sub(tf.gather(Si, tf.tensor1d(ch, 'int32')), tf.gather(Si, tf.tensor1d(rj, 'int32'))),
      tf.tensor1d(ref),
    );
    const x = tf.mul(margin, d.beta ?? 0.1);
    return tf.mul(tf.sum(tf.softplus(tf.neg(x))), reduction === 'sum' ? 1 : 1 / (c.normalizer ?? P)); // −log σ(x) = softplus(−x)
  }
  const wLog = new Float32Array(N),
    wP = new Float32Array(N),
    wSeq = new Float32Array(S);
  for (let t = 0; t < N; t++) {
    if (!mask[t]) continue;
    const i = seqOf[t],
      ci = scale(i),
      r = reward(i);
    if (c.method === 'sft' || c.method === 'rft')
      wLog[t] = ci; // −ci·ℓ
    else if (c.method === 'dft')
      wLog[t] = ci; // −ci·sg(p)·ℓ, p applied below
    else if (r > 0)
      wLog[t] = r * ci; // −r·ci·ℓ
    else if (r < 0 && (c.negative ?? 'token') === 'token')
      wP[t] = -r * ci; // −r·ci·p
    else if (r < 0) wSeq[i] = -r * ci; // −r·ci·exp(S_i)
  }
  let terms = tf.mul(lp, tf.tensor1d(wLog));
  if (c.method === 'dft') terms = tf.mul(terms, stopGradient(tf.exp(lp)));
  let loss = tf.neg(tf.sum(terms));
  if (wP.some((w) => w !== 0))
    loss = tf.add(loss, tf.sum(tf.mul(tf.mul(tf.exp(lp), tf.tensor1d(mask)), tf.tensor1d(wP))));
  if (wSeq.some((w) => w !== 0)) loss = tf.add(loss, tf.sum(tf.mul(tf.exp(seqLogps()), tf.tensor1d(wSeq))));
  return loss as tfc.Scalar;
}
