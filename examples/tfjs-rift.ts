// Training a TensorFlow.js model with the RIFT loss (rift/tfjs riftLoss): a tiny character-level model built from
// tfjs-core variables and ops, on the synthetic arithmetic task (lib/data). Each problem contributes its worked
// solution and a copy with a wrong final answer; verify() scores them (+1 / −0.2), packSamples lays them out, and
// optimizer.minimize(() => riftLoss(...)) trains: RIFT raises the correct solutions' likelihood and lowers the
// probability of the wrong ones' tokens.
//
//   npx tsc -p tsconfig.json && node dist/examples/tfjs-rift.js          (CI runs it: test/examples.test.ts)
//
// In your own project: import { riftLoss } from 'rift/tfjs' and the rest from 'rift'. With @tensorflow/tfjs or
// @tensorflow/tfjs-node (which register every kernel gradient) drop registerExampleGradients.
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { generateProblems, packSamples, rewardFor, verify, type BatchSample } from '../lib';
import { riftLoss } from '../lib/tfjs';
import { registerExampleGradients } from './tfjs-grads';

export interface TfjsRiftOptions {
  problems?: number;
  steps?: number;
  hidden?: number;
  lr?: number;
  seed?: number;
  log?: (line: string) => void;
}

export interface TfjsRiftResult {
  /** The RIFT loss of every step (before its update). */
  losses: number[];
  samples: number;
  positives: number;
  /** Problems whose correct solution the model finds more likely than the wrong one, before and after training. */
  before: Preference;
  after: Preference;
}

export interface Preference {
  preferred: number;
  problems: number;
  /** Mean log-probability per token of the correct and of the wrong solutions. */
  correct: number;
  wrong: number;
}

/** The solution with its boxed answer changed (a wrong final answer). */
function wrongAnswer(solution: string): string {
  return solution.replace(
    /\\boxed\{([^}]*)\}$/,
    (_, a: string) => `\\boxed{${/^\d+$/.test(a) ? String(Number(a) + 1) : `${a}1`}}`,
  );
}

export async function tfjsRift(o: TfjsRiftOptions = {}): Promise<TfjsRiftResult> {
  const { problems: count = 16, steps = 40, hidden = 32, lr = 0.02, seed = 1, log = () => {} } = o;
  registerExampleGradients(tf);
  await tf.setBackend('cpu');

  // data: each problem's worked solution and a wrong variant, rewards from the verifier
  const problems = generateProblems({ count, seed, style: 'tiny', difficulty: 1 });
  const texts = problems.flatMap((p) => [p.problem + '\n', p.solution!, wrongAnswer(p.solution!)]);
  const chars = [...new Set(texts.join(''))].sort();
  const PAD = 0,
    EOS = 1,
    V = chars.length + 2;
  const encode = (s: string) => Int32Array.from([...s], (c) => chars.indexOf(c) + 2);
  const samples: BatchSample[] = problems.flatMap((p) =>
    [p.solution!, wrongAnswer(p.solution!)].map((resp) => ({
      promptIds: encode(p.problem + '\n'),
      responseIds: Int32Array.from([...encode(resp), EOS]),
      reward: rewardFor(verify(resp, p.answer).correct),
    })),
  );
  const packed = packSamples(samples, { tokenBudget: 1 << 16, padId: PAD, vocab: V });
  const [mb] = packed.microBatches; // one micro-batch: the whole set
  const rows = mb.B * mb.T;
  const prevIds = new Int32Array(rows); // the token before each position (PAD at a row's start)
  for (let i = 0; i < rows; i++) prevIds[i] = i % mb.T === 0 ? PAD : mb.ids[i - 1];

  // the model: logits_t = tanh(E[x_t] + F[x_{t−1}]) · W + b
  let s = seed >>> 0;
  const rand = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32 - 0.5) * 0.2;
  const param = (shape: number[]) =>
    tf.variable(tf.tensor(Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, rand), shape));
  const E = param([V, hidden]),
    F = param([V, hidden]),
    W = param([hidden, V]),
    b = tf.variable(tf.zeros([V]));
  const x = tf.tensor1d(mb.ids, 'int32'),
    xPrev = tf.tensor1d(prevIds, 'int32');
  const logits = () => tf.add(tf.matMul(tf.tanh(tf.add(tf.gather(E, x), tf.gather(F, xPrev))), W), b) as tf.Tensor2D;
  const rift = () =>
    riftLoss(logits(), mb.targets, mb.offsets, mb.rewards, {
      method: 'rift',
      negative: 'token',
      normalizer: packed.normalizer,
    });

  // the kernel's per-sequence log-probs (onResult): which of each problem's two solutions the model prefers
  const preference = (): Preference => {
    let seqLogps: Float64Array = new Float64Array(0);
    tf.tidy(
      () =>
        void riftLoss(logits(), mb.targets, mb.offsets, mb.rewards, {
          method: 'rift',
          onResult: (r) => (seqLogps = r.seqLogprobs),
        }),
    );
    const out: Preference = { preferred: 0, problems: 0, correct: 0, wrong: 0 };
    let nc = 0,
      nw = 0;
    for (let i = 0; i + 1 < mb.B; i += 2) {
      // rows 2p, 2p+1: problem p's correct and wrong solution
      out.problems++;
      if (seqLogps[i] > seqLogps[i + 1]) out.preferred++;
      out.correct += seqLogps[i];
      out.wrong += seqLogps[i + 1];
      nc += mb.examples[i].responseIds.length;
      nw += mb.examples[i + 1].responseIds.length;
    }
    out.correct /= nc;
    out.wrong /= nw;
    return out;
  };

  const before = preference();
  const optimizer = tf.train.adam(lr);
  const losses: number[] = [];
  for (let step = 0; step < steps; step++) {
    const cost = optimizer.minimize(rift, true, [E, F, W, b])!;
    losses.push(cost.dataSync()[0]);
    cost.dispose();
    if (step % 10 === 0 || step === steps - 1) log(`step ${step + 1}: RIFT loss ${losses[step].toFixed(4)}`);
  }
  const after = preference();
  log(
    `prefers the correct solution on ${before.preferred}/${before.problems} problems before, ${after.preferred}/${after.problems} after` +
      ` (mean log-prob per token: correct ${before.correct.toFixed(3)} → ${after.correct.toFixed(3)}, wrong ${before.wrong.toFixed(3)} → ${after.wrong.toFixed(3)})`,
  );
  optimizer.dispose();
  tf.dispose([E, F, W, b, x, xPrev]);
  return { losses, samples: samples.length, positives: samples.filter((e) => e.reward > 0).length, before, after };
}

if (require.main === module) {
  tfjsRift({ log: console.log }).catch((e) => {
    console.error(e);
    process.exitCode = 1;
  });
}
