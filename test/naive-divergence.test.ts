// The 'naive' method (−r·log π on every sample) in the Trainer, and how a diverged run is reported
// (lib/train/divergence.ts): a DivergenceError naming the update and the reason, parameters of the last good update,
// no checkpoint of the failed one.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Model } from '../lib/engine/model';
import { buildMicroBatch } from '../lib/train/batching';
import { DivergenceError, divergenceReason } from '../lib/train/divergence';
import { Example, selectExamples } from '../lib/train/examples';
import { Trainer, TrainerOptions } from '../lib/train/trainer';

const CFG = {
  model_type: 'qwen2',
  vocab_size: 32,
  hidden_size: 16,
  intermediate_size: 32,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  rms_norm_eps: 1e-6,
  rope_theta: 10000,
  tie_word_embeddings: true,
};
const newModel = () => Model.fromConfig(CFG, { seed: 3, std: 0.1 });

/** 4 problems × 4 samples, half of them negative (r = −0.5), sharing their prompt. */
function samples(): Example[] {
  let s = 11;
  const r = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) >>> 8) / 2 ** 24;
  const ids = (n: number) => Int32Array.from({ length: n }, () => 1 + Math.floor(r() * 31));
  const out: Example[] = [];
  for (let p = 0; p < 4; p++) {
    const promptIds = ids(3);
    for (let k = 0; k < 4; k++)
      out.push({ problemId: `p${p}`, sampleIndex: k, promptIds, responseIds: ids(4), reward: k % 2 ? -0.5 : 1 });
  }
  return out;
}

/** Mean token log-prob of examples under a model. */
function meanLogp(model: Model, ex: Example[]): number {
  const mb = buildMicroBatch(ex.map((e) => [e]));
  const out = model.lossAndBackward({
    ids: mb.ids,
    B: mb.B,
    T: mb.T,
    targets: mb.targets,
    offsets: mb.offsets,
    method: 'logprob',
    backward: false,
  });
  return out.seqLogps.reduce((a, b) => a + b, 0) / mb.tokens;
}

const BASE: TrainerOptions = {
  method: 'naive',
  lr: 2e-2,
  tokenBudget: 256,
  maxGradNorm: 1,
  weightDecay: 0,
  seed: 7,
  examplesPerStep: 100,
};

describe("method 'naive'", () => {
  const data = samples();
  const neg = data.filter((e) => e.reward < 0);

  test('trains on the same samples as rift (every non-zero reward)', () => {
    const withZero = [...data, { ...data[0], sampleIndex: 9, reward: 0 }];
    expect(selectExamples('naive', withZero).examples).toEqual(selectExamples('rift', withZero).examples);
    expect(selectExamples('naive', withZero).stats.zeroReward).toBe(1);
  });

  test("its loss goes below 0 and keeps falling while the negatives' log-probs sink; RIFT's loss stays ≥ 0", async () => {
    const naive = newModel(),
      rift = newModel();
    const before = meanLogp(naive, neg);
    const a = await new Trainer(naive, { ...BASE, epochs: 40 }).run(data);
    const b = await new Trainer(rift, { ...BASE, method: 'rift', epochs: 40 }).run(data);
    const la = a.map((m) => m.loss);
    expect(la[0]).toBeGreaterThan(0);
    expect(la[39]).toBeLessThan(0);
    expect(la[39]).toBeLessThan(la[29]); // still falling at the end: unbounded below
    expect(meanLogp(naive, neg)).toBeLessThan(before - 3);
    expect(b.every((m) => m.loss >= 0)).toBe(true);
    expect(meanLogp(naive, neg)).toBeLessThan(meanLogp(rift, neg) - 1);
  });
});

describe('a diverged run', () => {
  const data = samples();
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rift-diverge-'));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('NaN weights after update 2: DivergenceError at update 3, parameters of update 2, no checkpoint of update 3', async () => {
    const model = newModel();
    let good: Float32Array | undefined;
    const ck = path.join(dir, 'ck');
    const trainer = new Trainer(model, {
      ...BASE,
      examplesPerStep: 4,
      epochs: 2,
      checkpointDir: ck,
      checkpointEvery: 1,
      onStep: (m) => {
        if (m.step !== 2) return;
        good = Float32Array.from(model.params());
        model.setParams(new Float32Array([NaN]), 5); // as a blown-up update would leave them
      },
    });
    let err: unknown;
    try {
      await trainer.run(data);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(DivergenceError);
    const d = (err as DivergenceError).divergence;
    expect(d).toMatchObject({ step: 3, totalSteps: 8, method: 'naive', reason: 'non-finite logits' });
    expect(d.detail).toMatch(/^logits: row \d+ holds NaN or Inf/);
    expect(Number.isFinite(d.lastLoss)).toBe(true);
    expect((err as Error).message).toMatch(
      /^training diverged at update 3 of 8 \(method 'naive'\): non-finite logits .*the parameters are those after update 2/,
    );
    expect((err as DivergenceError).history.map((m) => m.step)).toEqual([1, 2]);
    expect(trainer.diverged).toEqual(d);
    // the optimizer did not step on update 3: only the poisoned value differs from update 2's weights
    const now = model.params();
    expect(Number.isNaN(now[5])).toBe(true);
    now[5] = good![5];
    expect(Array.from(now)).toEqual(Array.from(good!));
    expect(model.optimizerSteps).toBe(2);
    expect(
      fs
        .readdirSync(ck)
        .filter((n) => n.startsWith('step-'))
        .sort(),
    ).toEqual(['step-000001', 'step-000002']);
  });

  test("the engine's NaN gradient norm is recognised as a divergence; other errors are not", () => {
    const model = newModel();
    const mb = buildMicroBatch(
      samples()
        .slice(0, 2)
        .map((e) => [e]),
    );
    model.lossAndBackward({ ids: mb.ids, B: mb.B, T: mb.T, targets: mb.targets, offsets: mb.offsets, method: 'sft' });
    model.grads()[0] = NaN;
    let err: unknown;
    try {
      model.step({ lr: 1e-3 });
    } catch (e) {
      err = e;
    }
    expect(divergenceReason(err)).toBe('non-finite gradient norm');
    expect(
      divergenceReason(new RangeError('targets: targets[3] = 40 is outside [0, vocab) and not -100')),
    ).toBeUndefined();
    expect(divergenceReason(new Error('logits: row 1 holds NaN or Inf'))).toBeUndefined(); // not the engine's RangeError
  });
});
