// Trainer option maxSteps: an exact update budget whose LR schedule (cosine + warm-up) spans exactly those updates.
import { Model } from '../lib/engine/model';
import { lrAt } from '../lib/train/schedule';
import { Example } from '../lib/train/examples';
import { Trainer, TrainerOptions } from '../lib/train/trainer';

const CFG = {
  model_type: 'qwen2',
  vocab_size: 32,
  hidden_size: 16,
  intermediate_size: 32,
  num_hidden_layers: 1,
  num_attention_heads: 2,
  num_key_value_heads: 1,
  rms_norm_eps: 1e-6,
  rope_theta: 10000,
  tie_word_embeddings: true,
};
const data: Example[] = Array.from({ length: 10 }, (_, i) => ({
  problemId: `p${i}`,
  sampleIndex: 0,
  promptIds: Int32Array.from([1 + i, 2]),
  responseIds: Int32Array.from([3, 4 + i]),
  reward: 1,
}));
const BASE: TrainerOptions = {
  method: 'rift',
  lr: 1e-3,
  schedule: 'cosine',
  warmupSteps: 2,
  examplesPerStep: 3,
  tokenBudget: 64,
  seed: 1,
};

test('maxSteps ends the run after exactly that many updates, the cosine schedule spanning them', async () => {
  // 10 examples, 3 per update: 4 updates per epoch; 3 epochs planned, cut at 7
  const m = await new Trainer(Model.fromConfig(CFG, { seed: 1 }), { ...BASE, epochs: 3, maxSteps: 7 }).run(data);
  expect(m.map((x) => x.step)).toEqual([1, 2, 3, 4, 5, 6, 7]);
  expect(m.every((x) => x.totalSteps === 7)).toBe(true);
  expect(m.map((x) => x.epoch)).toEqual([0, 0, 0, 0, 1, 1, 1]);
  m.forEach((x, i) =>
    expect(x.lr).toBeCloseTo(lrAt(i, { kind: 'cosine', baseLr: 1e-3, warmupSteps: 2, totalSteps: 7 }), 15),
  );
  // more than the epochs give: the epochs' steps
  const all = await new Trainer(Model.fromConfig(CFG, { seed: 1 }), { ...BASE, epochs: 1, maxSteps: 50 }).run(data);
  expect(all).toHaveLength(4);
});

test('maxSteps must be an integer ≥ 1', () => {
  const m = Model.fromConfig(CFG, { seed: 1 });
  expect(() => new Trainer(m, { ...BASE, maxSteps: 0 })).toThrow(/^maxSteps:/);
  expect(() => new Trainer(m, { ...BASE, maxSteps: 2.5 })).toThrow(/^maxSteps:/);
});
