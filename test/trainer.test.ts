// The training harness (lib/train/{examples,batching,trainer}.ts) on a tiny random Qwen2:
// (a) what each method selects, DPO pairing; (b) the micro-batch layout and the token budget;
// (c) every method's loss decreases on a tiny overfit set; (d) the global normaliser: 2 micro-batches == 1 batch;
// (e) resume from a mid-run checkpoint reproduces the unbroken run's losses; (f) DPO precomputed == held;
// (g) bad options → typed errors naming the option.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Model } from '../lib/engine/model';
import { buildMicroBatch, globalNormalizer, packMicroBatches, planEpoch, Unit } from '../lib/train/batching';
import { Example, selectExamples } from '../lib/train/examples';
import { optimizerAccess, StepMetrics, Trainer, TrainerOptions } from '../lib/train/trainer';

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
const V = CFG.vocab_size;

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) >>> 8) / 2 ** 24;
}
const randIds = (n: number, r: () => number) => Int32Array.from({ length: n }, () => 1 + Math.floor(r() * (V - 1)));

/** 3 problems × 4 samples (rewards 1, −1, 1, 0 rotated per problem) + a problem with positives only. */
function makeData(seed = 1): { samples: Example[]; refs: Example[] } {
  const r = rng(seed);
  const samples: Example[] = [];
  const refs: Example[] = [];
  const rewards = [1, -1, 1, 0, -0.5, 1];
  for (let p = 0; p < 3; p++) {
    const promptIds = randIds(3 + p, r);
    refs.push({ problemId: `p${p}`, sampleIndex: -1, promptIds, responseIds: randIds(4, r), reward: 1 });
    for (let k = 0; k < 4; k++)
      samples.push({
        problemId: `p${p}`,
        sampleIndex: k,
        promptIds,
        responseIds: randIds(3 + ((k + p) % 4), r),
        reward: rewards[(k + p) % rewards.length],
      });
  }
  const lone = randIds(4, r);
  samples.push({ problemId: 'p3', sampleIndex: 0, promptIds: lone, responseIds: randIds(5, r), reward: 1 });
  return { samples, refs };
}

const newModel = (seed = 3) => Model.fromConfig(CFG, { seed, std: 0.1 });

/** Mean negative log-likelihood per response token of examples under a model. */
function nll(model: Model, examples: Example[]): number {
  const mb = buildMicroBatch(examples.map((e) => [e]));
  const r = model.lossAndBackward({
    ids: mb.ids,
    B: mb.B,
    T: mb.T,
    targets: mb.targets,
    offsets: mb.offsets,
    method: 'logprob',
    backward: false,
  });
  return -r.seqLogps.reduce((a, b) => a + b, 0) / mb.tokens;
}

async function expectReject(
  p: () => Promise<unknown> | unknown,
  name: 'TypeError' | 'RangeError' | 'Error',
  arg: string,
): Promise<void> {
  let err: Error | undefined;
  try {
    await p();
  } catch (e) {
    err = e as Error;
  }
  if (!err) throw new Error(`expected a ${name} about ${arg}, nothing was thrown`);
  expect(`${err.name}: ${err.message}`).toMatch(new RegExp(`^${name}: ${arg}`));
}

describe('selectExamples', () => {
  const { samples, refs } = makeData();
  test('sft = references, rft/dft = positives, rift = non-zero rewards', () => {
    expect(selectExamples('sft', samples, { refSolutions: refs }).examples).toEqual(refs);
    const pos = samples.filter((e) => e.reward > 0);
    expect(selectExamples('rft', samples).examples).toEqual(pos);
    expect(selectExamples('dft', samples).examples).toEqual(pos);
    expect(selectExamples('dft', samples, { refSolutions: refs, dftData: 'reference' }).examples).toEqual(refs);
    const rift = selectExamples('rift', samples);
    expect(rift.examples.every((e) => e.reward !== 0)).toBe(true);
    expect(rift.stats.zeroReward).toBe(samples.filter((e) => e.reward === 0).length);
  });

  test('dpo: every positive paired with a negative of the same problem, round-robin; one-sided problems dropped', () => {
    const s = selectExamples('dpo', samples);
    expect(s.stats.problemsDropped).toBe(1); // p3 has only a positive
    expect(s.pairs!.length).toBe(samples.filter((e) => e.reward > 0 && e.problemId !== 'p3').length);
    for (const { chosen, rejected } of s.pairs!) {
      expect(chosen.problemId).toBe(rejected.problemId);
      expect(chosen.reward).toBeGreaterThan(0);
      expect(rejected.reward).toBeLessThanOrEqual(0);
    }
    // p0: positives k = 0, 2 (rewards 1, 1); negatives k = 1, 3 → (0,1), (2,3)
    const p0 = s
      .pairs!.filter((p) => p.chosen.problemId === 'p0')
      .map((p) => [p.chosen.sampleIndex, p.rejected.sampleIndex]);
    expect(p0).toEqual([
      [0, 1],
      [2, 3],
    ]);
    expect(selectExamples('dpo', samples)).toEqual(s); // deterministic
  });
});

describe('batching', () => {
  const e = (P: number[], R: number[], reward = 1): Example => ({
    problemId: 'x',
    sampleIndex: 0,
    promptIds: Int32Array.from(P),
    responseIds: Int32Array.from(R),
    reward,
  });

  test('layout: ids padded, targets on the positions before each response token, one sequence per row', () => {
    const mb = buildMicroBatch([[e([5, 6], [7, 8, 9], 1)], [e([4], [3], -1)]], { padId: 0 });
    expect([mb.B, mb.T]).toEqual([2, 5]);
    expect(Array.from(mb.ids)).toEqual([5, 6, 7, 8, 9, 4, 3, 0, 0, 0]);
    expect(Array.from(mb.targets)).toEqual([-100, 7, 8, 9, -100, 3, -100, -100, -100, -100]);
    expect(Array.from(mb.offsets)).toEqual([0, 5, 10]);
    expect(Array.from(mb.rewards)).toEqual([1, -1]);
    expect(mb.tokens).toBe(4);
  });

  test('token budget: B × T ≤ budget, DPO pairs never split; global normalisers', () => {
    const { samples } = makeData();
    const units: Unit[] = selectExamples('dpo', samples).pairs!.map((p) => [p.chosen, p.rejected]);
    const mbs = packMicroBatches(units, { tokenBudget: 40, pairs: true });
    expect(mbs.length).toBeGreaterThan(1);
    for (const mb of mbs) {
      expect(mb.B * mb.T).toBeLessThanOrEqual(40);
      expect(mb.B % 2).toBe(0);
      for (let k = 0; k < mb.pairs!.length; k += 2)
        expect(mb.examples[mb.pairs![k]].problemId).toBe(mb.examples[mb.pairs![k + 1]].problemId);
    }
    expect(globalNormalizer(mbs, 'dpo', 'token-mean')).toBe(units.length);
    expect(globalNormalizer(mbs, 'dpo', 'sum')).toBeUndefined();
    const rift = packMicroBatches(
      samples.map((x) => [x]),
      { tokenBudget: 30 },
    );
    expect(globalNormalizer(rift, 'rift', 'token-mean')).toBe(samples.reduce((s, x) => s + x.responseIds.length, 0));
    expect(globalNormalizer(rift, 'rift', 'sequence-mean')).toBe(samples.length);
    // a plan over 2 epochs: every unit once per epoch, examplesPerStep respected
    for (const epoch of [0, 1]) {
      const steps = planEpoch(units, epoch, { tokenBudget: 40, seed: 5, examplesPerStep: 3 });
      expect(steps.map((s) => s.flat().length)).toEqual(
        Array.from({ length: Math.ceil(units.length / 3) }, (_, i) => Math.min(3, units.length - 3 * i)),
      );
      expect(
        steps
          .flat()
          .flat()
          .every((u) => u.length === 2),
      ).toBe(true);
      expect(new Set(steps.flat(2)).size).toBe(units.length);
    }
  });
});

// ---------------------------------------------------------------------------------------------------------
const BASE: TrainerOptions = { method: 'rift', lr: 1e-2, tokenBudget: 64, maxGradNorm: 1, weightDecay: 0, seed: 7 };

describe('Trainer', () => {
  const { samples, refs } = makeData();

  test.each([
    ['sft', {}],
    ['rft', {}],
    ['dft', {}],
    ['rift', { negative: 'token' }],
    ['rift', { negative: 'sequence' }],
    ['dpo', { dpoReference: 'precomputed' }],
  ] as const)('%s %j: the loss decreases on a tiny overfit set', async (method, extra) => {
    const model = newModel();
    const seen: StepMetrics[] = [];
    const trainer = new Trainer(model, {
      ...BASE,
      method,
      ...extra,
      examplesPerStep: 100,
      epochs: 12,
      lr: 2e-2,
      onStep: (m) => void seen.push(m),
    });
    const metrics = await trainer.run(samples, { refSolutions: refs });
    expect(metrics.length).toBe(12);
    expect(seen).toEqual(metrics);
    const first = metrics[0].loss,
      last = metrics[metrics.length - 1].loss;
    expect(Number.isFinite(first)).toBe(true);
    if (method === 'dft') {
      // DFT's loss −p·log p rises while p < 1/e: check what it optimises instead, the positives' likelihood
      const pos = samples.filter((e) => e.reward > 0);
      expect(nll(model, pos)).toBeLessThan(0.9 * nll(newModel(), pos));
    } else expect(last).toBeLessThan(first - 0.05 * Math.abs(first));
    for (const m of metrics) {
      expect(m.tokens).toBeGreaterThan(0);
      expect(m.tokensPerSec).toBeGreaterThan(0);
      expect(m.memoryPeak).toBeGreaterThan(0);
      expect(m.gradNorm).toBeGreaterThan(0);
    }
    expect(model.optimizerSteps).toBe(12);
  });

  test.each(['rift', 'dpo'] as const)(
    '%s: 2+ micro-batches with the global normaliser == 1 big batch (grads and loss curve)',
    async (method) => {
      // gradients of one step, by hand
      const sel = selectExamples(method, samples);
      const units: Unit[] =
        method === 'dpo' ? sel.pairs!.map((p) => [p.chosen, p.rejected]) : sel.examples.map((x) => [x]);
      const small = packMicroBatches(units, { tokenBudget: 40, pairs: method === 'dpo' });
      const big = packMicroBatches(units, { tokenBudget: 10000, pairs: method === 'dpo' });
      expect(small.length).toBeGreaterThanOrEqual(2);
      expect(big.length).toBe(1);
      const ref = newModel(4);
      const grads = (mbs: typeof small) => {
        const model = newModel(3);
        const N = globalNormalizer(mbs, method, 'token-mean');
        let loss = 0;
        for (const mb of mbs) {
          const refLogps =
            method === 'dpo'
              ? Float64Array.from(ref.lossAndBackward({ ...mb, method: 'logprob', backward: false }).seqLogps)
              : undefined;
          loss += model.lossAndBackward({
            ids: mb.ids,
            B: mb.B,
            T: mb.T,
            targets: mb.targets,
            offsets: mb.offsets,
            rewards: method === 'rift' ? mb.rewards : undefined,
            method,
            normalizer: N,
            dpo: refLogps ? { refLogps, pairs: mb.pairs!, beta: 0.1 } : undefined,
          }).loss;
        }
        return { loss, g: Float32Array.from(model.grads()) };
      };
      const a = grads(small),
        b = grads(big);
      expect(Math.abs(a.loss - b.loss)).toBeLessThanOrEqual(1e-6 * Math.abs(b.loss) + 1e-9);
      let gmax = 0,
        worst = 0;
      for (let i = 0; i < b.g.length; i++) gmax = Math.max(gmax, Math.abs(b.g[i]));
      for (let i = 0; i < b.g.length; i++) worst = Math.max(worst, Math.abs(a.g[i] - b.g[i]));
      expect(gmax).toBeGreaterThan(0);
      expect(worst).toBeLessThanOrEqual(2e-6 * gmax);
      // through the trainer: token budgets 40 and 10000, same examples per step → the same loss curve
      const run = async (tokenBudget: number) =>
        (
          await new Trainer(newModel(), { ...BASE, method, tokenBudget, examplesPerStep: 5, epochs: 2 }).run(samples)
        ).map((m) => [m.loss, m.microBatches]);
      const [c1, c2] = [await run(40), await run(10000)];
      expect(c1.some(([, n]) => n > 1)).toBe(true);
      c1.forEach(([l], i) => expect(Math.abs(l - c2[i][0])).toBeLessThanOrEqual(1e-5 * Math.abs(c2[i][0]) + 1e-7));
    },
  );

  test("DPO reference log-probs: 'precomputed' and 'held' give the same losses; held counts 'reference' memory", async () => {
    const opts = { ...BASE, method: 'dpo' as const, examplesPerStep: 3, epochs: 2, lr: 1e-2 };
    const pre = await new Trainer(newModel(), { ...opts, dpoReference: 'precomputed' }).run(samples);
    const before = Model.memory().reference.current;
    const heldTrainer = new Trainer(newModel(), { ...opts, dpoReference: 'held' });
    const held = await heldTrainer.run(samples);
    expect(Model.memory().reference.current - before).toBeGreaterThanOrEqual(heldTrainer.model.numParams * 4);
    expect(held.length).toBe(pre.length);
    held.forEach((m, i) =>
      expect(Math.abs(m.loss - pre[i].loss)).toBeLessThanOrEqual(1e-6 * Math.abs(pre[i].loss) + 1e-9),
    );
    expect(held.some((m) => m.referenceSeconds > 0)).toBe(true);
    // an explicit reference Model (the initial weights) is the same as 'held'
    const given = await new Trainer(newModel(), { ...opts, dpoReference: { model: newModel() } }).run(samples);
    given.forEach((m, i) => expect(m.loss).toBe(held[i].loss));
  });

  describe('checkpoints and resume', () => {
    let dir: string;
    beforeAll(() => {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rift-trainer-'));
    });
    afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

    test.each([
      ['rift', { negative: 'sequence' }],
      ['dpo', { dpoReference: 'held' }],
      ['dpo', { dpoReference: 'precomputed' }],
    ] as const)("%s %j: resuming at step 3 gives the unbroken run's loss curve", async (method, extra) => {
      const ck = path.join(dir, `${method}-${Object.values(extra).join('')}`);
      const opts: TrainerOptions = {
        ...BASE,
        method,
        ...extra,
        schedule: 'cosine',
        warmupSteps: 2,
        minLr: 1e-3,
        microBatchesPerStep: 1,
        tokenBudget: 48,
        epochs: 2,
        weightDecay: 0.05,
        checkpointDir: ck,
        checkpointEvery: 3,
      };
      const full = await new Trainer(newModel(), opts).run(samples);
      expect(full.length).toBeGreaterThan(4);
      expect(fs.existsSync(path.join(ck, 'step-000003', 'trainer-state.json'))).toBe(true);
      expect(JSON.parse(fs.readFileSync(path.join(ck, 'latest.json'), 'utf8')).step).toBe(full.length); // the end
      const fresh = newModel(99); // other weights: resume must overwrite them
      const t = new Trainer(fresh, { ...opts, checkpointDir: path.join(ck, 'again') });
      expect(optimizerAccess(fresh).m.every((x) => x === 0)).toBe(true); // no step yet: zero moments
      await t.resume(path.join(ck, 'step-000003'));
      expect(t.step).toBe(3);
      expect(fresh.optimizerSteps).toBe(3);
      const restored = optimizerAccess(fresh); // the checkpoint's moments, read into the model's AdamW state
      expect(restored.m.length).toBe(fresh.numParams);
      expect(restored.m.some((x) => x !== 0) && restored.v.some((x) => x > 0)).toBe(true);
      const rest = await t.run(samples);
      expect(rest.map((m) => m.step)).toEqual(full.slice(3).map((m) => m.step));
      rest.forEach((m, i) => {
        expect(m.lr).toBe(full[3 + i].lr);
        expect(m.loss).toBe(full[3 + i].loss); // bitwise
      });
      expect(t.history.map((m) => m.loss)).toEqual(full.map((m) => m.loss));
      // Trainer.load: the model, the options and the position from the checkpoint
      const t2 = await Trainer.load(path.join(ck, 'step-000003'), {
        checkpointDir: undefined,
        checkpointEvery: undefined,
      });
      expect((await t2.run(samples)).map((m) => m.loss)).toEqual(full.slice(3).map((m) => m.loss));
    });

    test('resume checks the options and the data', async () => {
      const ck = path.join(dir, 'checks');
      const opts: TrainerOptions = { ...BASE, examplesPerStep: 4, checkpointDir: ck, checkpointEvery: 1 };
      await new Trainer(newModel(), opts).run(samples);
      await expectReject(
        () => new Trainer(newModel(), { ...opts, seed: 8 }).resume(ck, { allowInexact: true }),
        'RangeError',
        'seed',
      );
      await expectReject(
        () => new Trainer(newModel(), { ...opts, lr: 0.5 }).resume(ck, { allowInexact: true }),
        'RangeError',
        'lr',
      );
      const t = new Trainer(newModel(), opts);
      await t.resume(path.join(ck, 'step-000001'), { allowInexact: true });
      await expectReject(() => t.run(samples.slice(1)), 'RangeError', 'examples');
      await expectReject(
        () => new Trainer(newModel(), opts).resume(path.join(dir, 'nope')),
        'Error',
        '.*trainer-state.json',
      );
    });
  });

  test('bad options → typed errors naming the option', async () => {
    const m = newModel();
    const bad = (o: Record<string, unknown>, name: 'TypeError' | 'RangeError', arg: string) =>
      expectReject(() => new Trainer(m, { ...BASE, ...o } as TrainerOptions), name, arg);
    await bad({ method: 'ppo' }, 'RangeError', 'method');
    await bad({ method: undefined }, 'TypeError', 'method');
    await bad({ lr: undefined }, 'TypeError', 'lr');
    await bad({ lr: -1 }, 'RangeError', 'lr');
    await bad({ lr: 'x' }, 'TypeError', 'lr');
    await bad({ beta1: 1 }, 'RangeError', 'beta1');
    await bad({ beta2: -0.1 }, 'RangeError', 'beta2');
    await bad({ tokenBudget: 0 }, 'RangeError', 'tokenBudget');
    await bad({ tokenBudget: 2.5 }, 'RangeError', 'tokenBudget');
    await bad({ examplesPerStep: 2, microBatchesPerStep: 2 }, 'RangeError', 'examplesPerStep');
    await bad({ epochs: 0 }, 'RangeError', 'epochs');
    await bad({ negative: 'seq' }, 'RangeError', 'negative');
    await bad({ reduction: 'mean' }, 'RangeError', 'reduction');
    await bad({ schedule: 'exp' }, 'RangeError', 'schedule');
    await bad({ dpoBeta: 0 }, 'RangeError', 'dpoBeta');
    await bad({ dpoReference: 'cached' }, 'RangeError', 'dpoReference');
    await bad({ dpoReference: { model: 1 } }, 'TypeError', 'dpoReference');
    await bad({ checkpointEvery: 5 }, 'TypeError', 'checkpointDir');
    await bad({ onStep: 3 }, 'TypeError', 'onStep');
    await bad({ minLr: 1 }, 'RangeError', 'minLr');
    await expectReject(() => new Trainer({} as Model, BASE), 'TypeError', 'model');
    const t = (o: Partial<TrainerOptions>) => new Trainer(m, { ...BASE, ...o });
    await expectReject(() => t({ tokenBudget: 8 }).run(samples), 'RangeError', 'tokenBudget');
    await expectReject(() => t({ method: 'sft' }).run(samples), 'TypeError', 'refSolutions');
    await expectReject(() => t({ schedule: 'cosine', warmupSteps: 50 }).run(samples), 'RangeError', 'warmupSteps');
    await expectReject(
      () => t({}).run([{ ...samples[0], promptIds: [1, 2] as unknown as Int32Array }]),
      'TypeError',
      'examples\\[0\\]\\.promptIds',
    );
    await expectReject(
      () => t({}).run([{ ...samples[0], responseIds: new Int32Array(0) }]),
      'RangeError',
      'examples\\[0\\]\\.responseIds',
    );
    await expectReject(() => t({}).run([{ ...samples[0], reward: NaN }]), 'RangeError', 'examples\\[0\\]\\.reward');
    await expectReject(() => t({ method: 'dpo' }).run(samples.filter((e) => e.reward > 0)), 'RangeError', 'examples');
    await expectReject(() => t({}).run([{ ...samples[0], responseIds: Int32Array.of(V) }]), 'RangeError', 'ids');
  });
});
