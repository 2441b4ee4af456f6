// Public batch packing (lib/train/pack.ts): the Trainer's own batching code behind a checked API. (a) the same
// micro-batches as the Trainer's packMicroBatches; (b) the layout; (c) accumulation with the returned normaliser
// equals one big batch on a real Model for every reduction, RIFT and DPO; (d) bad input → errors naming it.
import { Model } from '../lib/engine/model';
import { globalNormalizer, packMicroBatches } from '../lib/train/batching';
import { Example } from '../lib/train/examples';
import { packPairs, packSamples, PackSamplesOptions, type ModelLossOptions } from '../lib';

type LossArgs = Omit<ModelLossOptions, 'ids' | 'B' | 'T' | 'targets' | 'offsets'>;

const CFG = {
  model_type: 'qwen2',
  vocab_size: 24,
  hidden_size: 16,
  intermediate_size: 32,
  num_hidden_layers: 1,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  rms_norm_eps: 1e-6,
  rope_theta: 10000,
  tie_word_embeddings: true,
};
const V = CFG.vocab_size;

function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) >>> 8) / 2 ** 24;
}

/** n samples: prompts of 2–5 tokens, responses of 1–7, rewards cycling through +1, −0.2, 0.5, −1. */
function samples(n: number, seed = 1): { promptIds: Int32Array; responseIds: Int32Array; reward: number }[] {
  const r = lcg(seed);
  const ids = (k: number) => Int32Array.from({ length: k }, () => 1 + Math.floor(r() * (V - 1)));
  return Array.from({ length: n }, (_, i) => ({
    promptIds: ids(2 + Math.floor(r() * 4)),
    responseIds: ids(1 + Math.floor(r() * 7)),
    reward: [1, -0.2, 0.5, -1][i % 4],
  }));
}

describe('packSamples / packPairs', () => {
  test("the Trainer's micro-batches and normaliser (packMicroBatches + globalNormalizer), for Examples and plain samples", () => {
    const ex: Example[] = samples(11).map((s, i) => ({ ...s, problemId: `p${i >> 2}`, sampleIndex: i & 3 }));
    for (const reduction of ['token-mean', 'sequence-mean', 'sum'] as const) {
      const a = packSamples(ex, { tokenBudget: 30, padId: 2, reduction });
      const b = packMicroBatches(
        ex.map((e) => [e]),
        { tokenBudget: 30, padId: 2 },
      );
      expect(a.microBatches).toEqual(b);
      expect(a.microBatches.length).toBeGreaterThan(2);
      expect(a.normalizer).toBe(globalNormalizer(b, 'rift', reduction));
      expect(a.tokens).toBe(ex.reduce((s, e) => s + e.responseIds.length, 0));
      expect(a.sequences).toBe(11);
      const pairs = [0, 2, 4, 6, 8].map((i) => ({ chosen: ex[i], rejected: ex[i + 1] }));
      const p = packPairs(pairs, { tokenBudget: 40, reduction });
      expect(p.microBatches).toEqual(
        packMicroBatches(
          pairs.map((q) => [q.chosen, q.rejected]),
          { tokenBudget: 40, pairs: true },
        ),
      );
      expect(p.normalizer).toBe(reduction === 'sum' ? undefined : 5);
      expect(p.pairs).toBe(5);
    }
  });

  test('layout: prompt rows −100, targets shifted by one, offsets b·T, rewards; sortByLength packs longest first', () => {
    const s = [
      { promptIds: Int32Array.from([5, 6]), responseIds: Int32Array.from([7, 8, 9]), reward: 1 },
      { promptIds: Int32Array.from([4]), responseIds: Int32Array.from([3]), reward: -0.5 },
    ];
    const [mb] = packSamples(s, { tokenBudget: 100, padId: 1 }).microBatches;
    expect([mb.B, mb.T]).toEqual([2, 5]);
    expect(Array.from(mb.ids)).toEqual([5, 6, 7, 8, 9, 4, 3, 1, 1, 1]);
    expect(Array.from(mb.targets)).toEqual([-100, 7, 8, 9, -100, 3, -100, -100, -100, -100]);
    expect(Array.from(mb.offsets)).toEqual([0, 5, 10]);
    expect(Array.from(mb.rewards)).toEqual([1, -0.5]);
    expect(mb.examples[0]).toBe(s[0]); // the caller's objects
    const sorted = packSamples([s[1], s[0]], { tokenBudget: 100, sortByLength: true }).microBatches[0];
    expect(sorted.examples).toEqual([s[0], s[1]]);
  });

  // The gradient of a step packed into several micro-batches, each passed the step's normaliser, equals the
  // gradient of all samples as one batch (one micro-batch): the accumulation is exact.
  const grads = (mbs: ReturnType<typeof packSamples>['microBatches'], extra: LossArgs, ref?: Model) => {
    const model = Model.fromConfig(CFG, { seed: 3, std: 0.1 });
    let loss = 0;
    for (const mb of mbs) {
      const dpo = ref
        ? {
            refLogps: Float64Array.from(ref.lossAndBackward({ ...mb, method: 'logprob', backward: false }).seqLogps),
            pairs: mb.pairs!,
            beta: 0.2,
          }
        : undefined;
      loss += model.lossAndBackward({ ...mb, ...extra, dpo: dpo ?? extra.dpo }).loss;
    }
    return { loss, g: Float32Array.from(model.grads()) };
  };
  const expectSame = (a: { loss: number; g: Float32Array }, b: { loss: number; g: Float32Array }) => {
    expect(Math.abs(a.loss - b.loss)).toBeLessThanOrEqual(1e-6 * Math.abs(b.loss) + 1e-9);
    let gmax = 0,
      worst = 0;
    b.g.forEach((x, i) => {
      gmax = Math.max(gmax, Math.abs(x));
      worst = Math.max(worst, Math.abs(a.g[i] - x));
    });
    expect(gmax).toBeGreaterThan(0);
    expect(worst).toBeLessThanOrEqual(2e-6 * gmax);
  };

  test.each([
    ['rift token', 'token-mean', { method: 'rift', negative: 'token' }],
    ['rift sequence', 'sequence-mean', { method: 'rift', negative: 'sequence' }],
    ['sft', 'sum', { method: 'sft' }],
    ['dft', 'token-mean', { method: 'dft' }],
  ] as const)(
    '%s, %s: micro-batches with the returned normaliser == one batch (loss and gradient)',
    (_n, reduction, method) => {
      const s = samples(10, 4);
      const small = packSamples(s, { tokenBudget: 24, reduction });
      const big = packSamples(s, { tokenBudget: 10_000, reduction });
      expect(small.microBatches.length).toBeGreaterThanOrEqual(3);
      expect(big.microBatches.length).toBe(1);
      expect(small.normalizer).toBe(big.normalizer);
      expectSame(
        grads(small.microBatches, { ...method, reduction, normalizer: small.normalizer }),
        grads(big.microBatches, { ...method, reduction, normalizer: big.normalizer }),
      );
    },
  );

  test('dpo: pairs never split, normaliser = pairs, accumulation exact', () => {
    const s = samples(12, 5);
    const pairs = Array.from({ length: 6 }, (_, k) => ({ chosen: s[2 * k], rejected: s[2 * k + 1] }));
    const small = packPairs(pairs, { tokenBudget: 30 });
    const big = packPairs(pairs, { tokenBudget: 10_000 });
    expect(small.microBatches.length).toBeGreaterThanOrEqual(2);
    for (const mb of small.microBatches) {
      expect(mb.B % 2).toBe(0);
      expect(Array.from(mb.pairs!)).toEqual(Array.from({ length: mb.B }, (_, i) => i));
    }
    const ref = Model.fromConfig(CFG, { seed: 9, std: 0.1 });
    expectSame(
      grads(small.microBatches, { method: 'dpo', normalizer: small.normalizer }, ref),
      grads(big.microBatches, { method: 'dpo', normalizer: big.normalizer }, ref),
    );
  });

  const good = samples(3);
  const opts: PackSamplesOptions = { tokenBudget: 64 };
  test.each([
    ['samples not an array', () => packSamples({} as never, opts), TypeError, /^samples: must be an array/],
    ['no samples', () => packSamples([], opts), RangeError, /^samples: nothing to pack/],
    [
      'a sample not an object',
      () => packSamples([good[0], 3 as never], opts),
      TypeError,
      /^samples\[1\]: must be an object/,
    ],
    [
      'promptIds a plain array',
      () => packSamples([{ ...good[0], promptIds: [1, 2] as never }], opts),
      TypeError,
      /^samples\[0\]\.promptIds: must be an Int32Array, got Array/,
    ],
    [
      'empty responseIds',
      () => packSamples([{ ...good[0], responseIds: new Int32Array(0) }], opts),
      RangeError,
      /^samples\[0\]\.responseIds: must hold at least one token/,
    ],
    [
      'a negative token id',
      () => packSamples([good[0], { ...good[1], responseIds: Int32Array.from([3, -100]) }], opts),
      RangeError,
      /^samples\[1\]\.responseIds: responseIds\[1\] = -100 is not a token id/,
    ],
    [
      'a token id ≥ vocab',
      () => packSamples(good, { ...opts, vocab: 4 }),
      RangeError,
      /^samples\[0\]\.promptIds: promptIds\[\d\] = \d+ is not a token id in \[0, 4\)/,
    ],
    [
      'reward NaN',
      () => packSamples([{ ...good[0], reward: NaN }], opts),
      RangeError,
      /^samples\[0\]\.reward: must be finite/,
    ],
    [
      'reward a string',
      () => packSamples([{ ...good[0], reward: '1' as never }], opts),
      TypeError,
      /^samples\[0\]\.reward: must be a number/,
    ],
    ['tokenBudget missing', () => packSamples(good, {} as never), TypeError, /^tokenBudget: is required/],
    [
      'tokenBudget too small',
      () => packSamples(good, { tokenBudget: 3 }),
      RangeError,
      /^tokenBudget: 3 is too small for an example at index 0: 1 × \d+ tokens/,
    ],
    [
      'padId ≥ vocab',
      () => packSamples(good, { ...opts, vocab: 30, padId: 30 }),
      RangeError,
      /^padId: must be an integer in \[0, 29\]/,
    ],
    [
      'unknown reduction',
      () => packSamples(good, { ...opts, reduction: 'mean' as never }),
      RangeError,
      /^reduction: must be one of/,
    ],
    [
      'sortByLength not boolean',
      () => packSamples(good, { ...opts, sortByLength: 1 as never }),
      TypeError,
      /^sortByLength: must be a boolean/,
    ],
    [
      'a pair without rejected',
      () => packPairs([{ chosen: good[0] } as never], opts),
      TypeError,
      /^pairs\[0\]\.rejected: must be an object/,
    ],
    [
      'a pair too long',
      () => packPairs([{ chosen: good[0], rejected: good[1] }], { tokenBudget: 8 }),
      RangeError,
      /^tokenBudget: 8 is too small for a DPO pair at index 0/,
    ],
    ['options not an object', () => packSamples(good, null as never), TypeError, /^options: must be an object/],
  ] as [string, () => unknown, ErrorConstructor, RegExp][])('bad input: %s', (_n, f, Ctor, message) => {
    expect(f).toThrow(Ctor);
    expect(f).toThrow(message);
  });
});
