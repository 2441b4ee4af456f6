// The memory profile (lib/profile/memory.ts): the predicted bytes per category equal the engine tracker's
// measurement exactly on tiny shapes (params, grads, optimizer, activations, logits chunk, reference), RIFT
// needs less than DPO with a held reference, and the large-config predictions are sane.
import { parseConfig } from '../lib/engine/checkpoint';
import { Model } from '../lib/engine/model';
import {
  inferenceFloats,
  measureMemory,
  numParams,
  PREDICTED_CATEGORIES,
  predictMemory,
  profileMemory,
  PROFILE_METHODS,
  QWEN25_MATH_1_5B,
  QWEN25_MATH_7B,
} from '../lib/profile/memory';

const SHAPES = [
  {
    name: 'qwen2 tied, default chunk',
    config: {
      model_type: 'qwen2',
      vocab_size: 64,
      hidden_size: 32,
      intermediate_size: 48,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      tie_word_embeddings: true,
    },
    B: 4,
    T: 16,
  },
  {
    name: 'llama untied with biases, chunk 7 (odd sizes)',
    config: {
      model_type: 'llama',
      vocab_size: 50,
      hidden_size: 24,
      intermediate_size: 40,
      num_hidden_layers: 3,
      num_attention_heads: 6,
      num_key_value_heads: 3,
      attention_bias: true,
      tie_word_embeddings: false,
    },
    B: 2,
    T: 13,
    chunkRows: 7,
  },
  {
    name: 'qwen2 MHA, more target rows than the chunk',
    config: {
      model_type: 'qwen2',
      vocab_size: 200,
      hidden_size: 16,
      intermediate_size: 24,
      num_hidden_layers: 1,
      num_attention_heads: 2,
      num_key_value_heads: 2,
      tie_word_embeddings: true,
    },
    B: 6,
    T: 9,
    chunkRows: 20,
  },
];

describe.each(SHAPES)('$name', ({ config, B, T, chunkRows }) => {
  test.each(PROFILE_METHODS)('%s: predicted == measured per category', async (method) => {
    const m = await measureMemory({ config, method, B, T, chunkRows, steps: 2 });
    const p = predictMemory(config, { method, B, T, chunkRows, targetRows: m.targetRows });
    expect(m.numParams).toBe(p.numParams);
    for (const k of PREDICTED_CATEGORIES) expect([k, m.bytes[k]]).toEqual([k, p.bytes[k]]);
    expect(m.bytes.total).toBe(p.bytes.total);
    expect(m.bytes.peakTotal).toBeGreaterThanOrEqual(p.bytes.total); // + transient kernel workspace
    expect(m.bytes.kvCache).toBe(0);
  });

  test.each(PROFILE_METHODS)(
    '%s with activation recomputation: predicted == measured, fewer activation bytes',
    async (method) => {
      const m = await measureMemory({ config, method, B, T, chunkRows, steps: 2, recompute: true });
      const p = predictMemory(config, { method, B, T, chunkRows, targetRows: m.targetRows, recompute: true });
      for (const k of PREDICTED_CATEGORIES) expect([k, m.bytes[k]]).toEqual([k, p.bytes[k]]);
      const full = predictMemory(config, { method, B, T, chunkRows, targetRows: m.targetRows });
      if (config.num_hidden_layers > 1) expect(p.bytes.activations).toBeLessThan(full.bytes.activations);
      else expect(p.bytes.activations).toBe(full.bytes.activations);
    },
  );

  test.each(PROFILE_METHODS)(
    '%s with bf16 activation storage: predicted == measured, fewer bytes from three layers on',
    async (method) => {
      const m = await measureMemory({ config, method, B, T, chunkRows, steps: 2, activationDtype: 'bf16' });
      const p = predictMemory(config, { method, B, T, chunkRows, targetRows: m.targetRows, activationDtype: 'bf16' });
      for (const k of PREDICTED_CATEGORIES) expect([k, m.bytes[k]]).toEqual([k, p.bytes[k]]);
      const full = predictMemory(config, {
        method,
        B,
        T,
        chunkRows,
        targetRows: m.targetRows,
        activationDtype: 'fp32',
      });
      // L bf16 copies + one fp32 set vs L fp32 sets: equal at two layers, fewer from three on
      if (config.num_hidden_layers > 2) expect(p.bytes.activations).toBeLessThan(full.bytes.activations);
      else expect(p.bytes.activations).toBeGreaterThanOrEqual(full.bytes.activations);
    },
  );

  test.each(PROFILE_METHODS)(
    '%s with bf16 activations and bf16 GEMMs (the direct path): predicted == measured, without fp32 ln1, ln2, h',
    async (method) => {
      const at = async (bf16Direct: boolean) => {
        const o = { method, B, T, chunkRows, activationDtype: 'bf16' as const, precision: 'bf16' as const, bf16Direct };
        const m = await measureMemory({ config, steps: 2, ...o });
        const p = predictMemory(config, { targetRows: m.targetRows, ...o });
        for (const k of PREDICTED_CATEGORIES) expect([k, bf16Direct, m.bytes[k]]).toEqual([k, bf16Direct, p.bytes[k]]);
        return p.bytes.activations;
      };
      const c = parseConfig(config);
      const r16 = (n: number) => Math.ceil(n / 16) * 16;
      expect((await at(false)) - (await at(true))).toBe(
        4 * (2 * r16(B * T * c.hidden_size) + r16(B * T * c.intermediate_size)),
      );
    },
  );

  test('RIFT < DPO with a held reference; DPO precomputed == RIFT', () => {
    const [rift, held, pre] = PROFILE_METHODS.map((method) => predictMemory(config, { method, B, T, chunkRows }).bytes);
    expect(rift.total).toBeLessThan(held.total);
    expect(held.reference).toBe(rift.params);
    expect(pre).toEqual(rift);
  });
});

test('profileMemory: measured next to predicted, and the Qwen2.5-Math shapes', async () => {
  const prof = await profileMemory({ config: SHAPES[0].config, B: 4, T: 16 });
  expect(prof.measured.map((x) => x.matches)).toEqual([true, true, true]);
  const byName = (name: string, method: string) =>
    prof.predicted.find((x) => x.name === name && x.prediction.method === method)!.prediction;
  // published parameter counts: 1.54B (tied) and 7.62B (untied)
  expect(numParams(parseConfig(QWEN25_MATH_1_5B))).toBe(1543714304);
  expect(numParams(parseConfig(QWEN25_MATH_7B))).toBe(7615616512);
  for (const name of ['Qwen2.5-Math-1.5B', 'Qwen2.5-Math-7B']) {
    const r = byName(name, 'rift'),
      h = byName(name, 'dpo-held');
    expect([r.B, r.T]).toEqual([8, 1024]);
    expect(r.bytes.optimizer).toBe(2 * r.bytes.params);
    // the held reference adds its parameters, its logits chunk and its no-gradient forward's scratch
    const cfg = parseConfig(name === 'Qwen2.5-Math-1.5B' ? QWEN25_MATH_1_5B : QWEN25_MATH_7B);
    expect(h.bytes.total - r.bytes.total).toBe(
      h.bytes.reference + 4 * inferenceFloats(cfg, 8 * 1024) + r.bytes.logitsChunk,
    );
    expect(4 * inferenceFloats(cfg, 8 * 1024)).toBeLessThan(r.bytes.activations / 10); // far below a training forward's
  }
});

test("predictMemory: CUDA at bf16 counts the weights' bf16 copy (params and a held reference: 6 bytes per parameter)", () => {
  const config = SHAPES[0].config;
  const P = numParams(parseConfig(config));
  const at = (device: 'cpu' | 'cuda', precision?: 'fp32' | 'bf16') =>
    predictMemory(config, { method: 'dpo-held', B: 2, T: 8, device, precision }).bytes;
  expect([at('cpu').params, at('cpu', 'bf16').params, at('cuda', 'fp32').params]).toEqual([4 * P, 4 * P, 4 * P]);
  expect([at('cuda').params, at('cuda').reference, at('cuda', 'bf16').params]).toEqual([6 * P, 6 * P, 6 * P]);
  expect(at('cuda').optimizer).toBe(8 * P);
  const noCopy = predictMemory(config, { method: 'dpo-held', B: 2, T: 8, device: 'cuda', weightCopy: false }).bytes;
  expect([noCopy.params, noCopy.reference]).toEqual([4 * P, 4 * P]);
  expect(() => predictMemory(config, { method: 'rift', B: 2, T: 8, weightCopy: 'no' as unknown as boolean })).toThrow(
    /^weightCopy: /,
  );
});

test('bad options → typed errors naming the option', async () => {
  const config = SHAPES[0].config;
  expect(() => predictMemory(config, { method: 'ppo' as 'rift', B: 1, T: 2 })).toThrow(/^method: /);
  expect(() => predictMemory(config, { method: 'rift', B: 0, T: 2 })).toThrow(/^B: /);
  expect(() => predictMemory({ ...config, hidden_size: 'x' }, { method: 'rift', B: 1, T: 2 })).toThrow(/hidden_size/);
  await expect(measureMemory({ config, method: 'dpo-held', B: 3, T: 4 })).rejects.toThrow(/^B: must be even/);
  await expect(measureMemory({ config, method: 'rift', B: 2, T: 4, promptTokens: 4 })).rejects.toThrow(
    /^promptTokens: /,
  );
  expect(Model.memory().total.current).toBeGreaterThan(0);
});
