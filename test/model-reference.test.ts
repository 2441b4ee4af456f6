// The float64 TypeScript reference decoder (test/helpers/model-reference.ts) against HF transformers' numbers
// (test/fixtures/parity/*.bin), and the native engine's forward and KV-cache decode against the reference on the
// same checkpoints (several B and T).
import * as path from 'path';
import { loadCheckpoint } from '../lib/engine/checkpoint';
import { Model } from '../lib/engine/model';
import { logSoftmaxRow, referenceForward } from './helpers/model-reference';
import { expectWithin as expectClose, ParityRecord, readParity } from './helpers/parity';

const FIX = path.join(__dirname, 'fixtures', 'parity');
const MODELS = ['tiny-qwen2', 'tiny-llama'] as const;

/** Typed access to a fixture's records (reader: test/helpers/parity.ts). */
function fixture(file: string) {
  const recs = readParity(file);
  const get = (name: string, dtype: ParityRecord['dtype']) => {
    const r = recs.get(name);
    if (!r) throw new Error(`${file}: no record "${name}"`);
    if (r.dtype !== dtype) throw new Error(`${file}: record "${name}" is ${r.dtype}, want ${dtype}`);
    return r;
  };
  return {
    f32: (name: string) => get(name, 'f32').data as Float32Array,
    i32: (name: string) => get(name, 'i32').data as Int32Array,
    f64: (name: string) => get(name, 'f64').data as Float64Array,
    shape: (name: string) => [...(recs.get(name)?.shape ?? [])],
  };
}

describe.each(MODELS)('reference forward vs HF transformers: %s', (name) => {
  const { config, tensors } = loadCheckpoint(path.join(FIX, name));
  const par = fixture(path.join(FIX, `${name}.bin`));
  const [B, T] = par.shape('input_ids');
  const ids = par.i32('input_ids');
  const ref = referenceForward(config, tensors, ids, B, T);

  test('fixture shapes', () => {
    expect([B, T]).toEqual([2, 12]);
    expect(par.shape('logits')).toEqual([B, T, config.vocab_size]);
    expect(par.shape('hidden_last')).toEqual([B, T, config.hidden_size]);
  });

  test('logits within abs 1e-4', () => expectClose(`${name} logits`, ref.logits, par.f32('logits'), 1e-4));

  test('final hidden state (after model.norm) within abs 1e-4', () =>
    expectClose(`${name} hidden_last`, ref.hidden, par.f32('hidden_last'), 1e-4));

  test('loss from the reference logits (shifted, prompt-masked mean) within rel 1e-5', () => {
    const labels = par.i32('labels');
    const V = config.vocab_size;
    let sum = 0,
      n = 0;
    for (let b = 0; b < B; b++)
      for (let t = 0; t < T - 1; t++) {
        const y = labels[b * T + t + 1];
        if (y === -100) continue;
        sum -= logSoftmaxRow(ref.logits, b * T + t, V)[y];
        n++;
      }
    expect(n).toBe(18);
    const want = par.f64('loss')[0];
    expect(Math.abs(sum / n - want) / Math.abs(want)).toBeLessThan(1e-5);
  });

  test('the reference is causal: a prefix gives the same logits as the full sequence', () => {
    const Tp = 5,
      V = config.vocab_size;
    const prefix = new Int32Array(B * Tp);
    for (let b = 0; b < B; b++) prefix.set(ids.subarray(b * T, b * T + Tp), b * Tp);
    const short = referenceForward(config, tensors, prefix, B, Tp);
    for (let b = 0; b < B; b++)
      expectClose(
        `prefix row ${b}`,
        short.logits.subarray(b * Tp * V, (b + 1) * Tp * V),
        ref.logits.subarray(b * T * V, (b * T + Tp) * V),
        1e-12,
      );
  });
});

// ---- native engine vs the reference ---------------------------------------------------------------------------

describe.each(MODELS)('native Model.forward vs the float64 reference: %s', (name) => {
  const dir = path.join(FIX, name);
  const { config, tensors } = loadCheckpoint(dir);
  const V = config.vocab_size;
  const model = Model.load(dir);

  test.each([
    [1, 1],
    [1, 7],
    [2, 12],
    [3, 20],
  ])('B=%i, T=%i: all logits within abs 1e-4', (B, T) => {
    let s = 12345 + 7 * B + T;
    const ids = Int32Array.from({ length: B * T }, () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) >>> 8) % V);
    const ref = referenceForward(config, tensors, ids, B, T);
    const got = model.forward({ ids, B, T });
    expect(Object.prototype.toString.call(got)).toBe('[object Float32Array]'); // made by the addon: another realm under jest
    expectClose(`${name} B=${B} T=${T} logits`, got, ref.logits, 1e-4);
  });

  test('lastOnly: (B, V) logits of the last position', () => {
    const B = 2,
      T = 9;
    const ids = Int32Array.from({ length: B * T }, (_, i) => (i * 37 + 11) % V);
    const ref = referenceForward(config, tensors, ids, B, T);
    const got = model.forward({ ids, B, T, lastOnly: true });
    const want = new Float64Array(B * V);
    for (let b = 0; b < B; b++) want.set(ref.logits.subarray(((b + 1) * T - 1) * V, (b + 1) * T * V), b * V);
    expectClose(`${name} lastOnly logits`, got, want, 1e-4);
  });

  test('KV cache: prefill + decode one token at a time equals the reference at every position', () => {
    const B = 2,
      T0 = 4,
      steps = 6;
    const ids = Int32Array.from({ length: B * (T0 + steps) }, (_, i) => (i * 29 + 5) % V); // (B, T0 + steps)
    const T = T0 + steps;
    const ref = referenceForward(config, tensors, ids, B, T);
    const cache = model.newKvCache(B, T);
    const prompt = new Int32Array(B * T0);
    for (let b = 0; b < B; b++) prompt.set(ids.subarray(b * T, b * T + T0), b * T0);
    const rowAt = (t: number) => {
      const w = new Float64Array(B * V);
      for (let b = 0; b < B; b++) w.set(ref.logits.subarray((b * T + t) * V, (b * T + t + 1) * V), b * V);
      return w;
    };
    expectClose(`${name} prefill logits`, model.prefill(cache, prompt, B, T0), rowAt(T0 - 1), 1e-4);
    for (let t = T0; t < T; t++) {
      const tokens = Int32Array.from({ length: B }, (_, b) => ids[b * T + t]);
      expectClose(`${name} decode position ${t}`, model.decode(cache, tokens), rowAt(t), 1e-4);
    }
    cache.free();
  });

  test('the HF fixture batch within abs 1e-4 of HF itself', () => {
    const par = fixture(path.join(FIX, `${name}.bin`));
    const [B, T] = par.shape('input_ids');
    expectClose(
      `${name} native logits vs HF`,
      model.forward({ ids: par.i32('input_ids'), B, T }),
      par.f32('logits'),
      1e-4,
    );
  });
});
