// Native memory of Models and KV caches: reported to V8 (napi_adjust_external_memory; addon._externalMemory() reads
// V8's count back) while it lives and taken back when freed — by dispose(), free(), or the garbage collector's
// finaliser for a dropped model — and Model.dispose() frees it at once, after which every call throws.
import { Model } from '../lib/engine/model';
import { addon } from '../lib/native';
import { gc } from './helpers/memory-race';

// ~2.3M parameters (9 MB of fp32): big enough to stand out from the test runner's own allocations.
const CFG = {
  model_type: 'qwen2',
  vocab_size: 2048,
  hidden_size: 256,
  intermediate_size: 512,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  rms_norm_eps: 1e-6,
  rope_theta: 10000,
  tie_word_embeddings: false,
};
const B = 2,
  T = 16;
const batch = () => ({
  ids: Int32Array.from({ length: B * T }, (_, i) => (i * 37) % 2048),
  B,
  T,
  targets: Int32Array.from({ length: B * T }, (_, i) => (i % T === T - 1 ? -100 : (i * 11) % 2048)),
  offsets: new Int32Array([0, T, 2 * T]),
  method: 'sft' as const,
});
const external = () => (addon as unknown as { _externalMemory(): number })._externalMemory();
const settle = () => new Promise((r) => setImmediate(r)); // view finalisers run on the next turn of the loop
/** Collects what earlier tests (or test files: jest reuses its workers) dropped, finalisers included. */
async function drain(): Promise<void> {
  for (let i = 0; i < 3; i++) {
    gc();
    await settle();
  }
}
const TRACKED = ['params', 'grads', 'optimizer', 'activations', 'logitsChunk'] as const;

/** A model with gradients, AdamW state and activations: what training leaves behind. */
function trained(): Model {
  const m = Model.fromConfig(CFG, { std: 0 }); // zero weights: no 2.3M-sample init loop;
  m.lossAndBackward(batch());
  m.step({ lr: 1e-3 });
  return m;
}

describe('Model.dispose()', () => {
  test('frees params, grads, optimizer state and activations at once; views are detached', async () => {
    await drain();
    const before = Model.memory();
    const m = trained();
    const P = m.numParams * 4;
    const params = m.params(),
      grads = m.grads();
    const during = Model.memory();
    expect(during.params.current - before.params.current).toBe(P);
    expect(during.grads.current - before.grads.current).toBe(P);
    expect(during.optimizer.current - before.optimizer.current).toBe(2 * P);
    m.dispose();
    expect(params.length).toBe(0);
    expect(grads.length).toBe(0);
    await settle();
    const after = Model.memory();
    // <= : a model dropped by an earlier test file in this worker may be finalised meanwhile
    for (const k of TRACKED) expect([k, after[k].current <= before[k].current]).toEqual([k, true]);
  });

  test('every later call throws a clear Error; a second dispose() does nothing', async () => {
    const m = trained();
    const cache = m.newKvCache(1, 8);
    m.dispose();
    expect(m.disposed).toBe(true);
    expect(() => m.dispose()).not.toThrow();
    const { ids, targets, offsets } = batch();
    const calls: [string, () => unknown][] = [
      ['forward', () => m.forward(ids, B, T)],
      ['lossAndBackward', () => m.lossAndBackward(batch())],
      ['lossAndBackwardAsync', () => m.lossAndBackwardAsync({ ids, B, T, targets, offsets, method: 'sft' })],
      ['step', () => m.step({ lr: 1e-3 })],
      ['stepAsync', () => m.stepAsync({ lr: 1e-3 })],
      ['zeroGrad', () => m.zeroGrad()],
      ['gradNorm', () => m.gradNorm()],
      ['params', () => m.params()],
      ['grads', () => m.grads()],
      ['tensor', () => m.tensor('lm_head.weight')],
      ['optimizerState', () => m.optimizerState()],
      ['setParams', () => m.setParams(new Float32Array(4))],
      ['tensorTable', () => m.tensorTable()],
      ['numParams', () => m.numParams],
      ['device', () => m.device],
      ['newKvCache', () => m.newKvCache(1, 8)],
      ['prefill', () => m.prefill(cache, new Int32Array([1]), 1, 1)],
      ['prefillAsync', () => m.prefillAsync(cache, new Int32Array([1]), 1, 1)],
      ['memory', () => m.memory()],
      ['save', () => m.save('/nonexistent-rift-dir')],
    ];
    for (const [name, f] of calls) {
      let err: unknown;
      try {
        f();
      } catch (e) {
        err = e;
      }
      expect([name, err instanceof Error ? `${err.name}: ${err.message}` : String(err)]).toEqual([
        name,
        expect.stringMatching(/^Error: Model: disposed/),
      ]);
    }
    cache.free();
  });

  test('while an async call runs: Error "busy"; after it settles, dispose() works', async () => {
    const m = trained();
    const p = m.lossAndBackwardAsync(batch());
    expect(() => m.dispose()).toThrow(/^Model: busy/);
    await p;
    m.dispose();
    expect(m.disposed).toBe(true);
  });
});

describe('native memory as V8 sees it (napi_adjust_external_memory)', () => {
  test('a trained model reports params + grads + AdamW state; dispose() takes it back', async () => {
    await drain();
    const e0 = external();
    const m = trained();
    const P = m.numParams * 4;
    expect(external() - e0).toBeGreaterThanOrEqual(4 * P);
    m.dispose();
    expect(external() - e0).toBeLessThan(P / 2);
  });

  test('a dropped model is taken back by its finaliser', async () => {
    await drain();
    const e0 = external();
    let P = 0;
    (() => {
      const m = trained();
      P = m.numParams * 4;
      expect(external() - e0).toBeGreaterThanOrEqual(4 * P);
    })();
    await drain();
    expect(external() - e0).toBeLessThan(P / 2);
  });

  test('a KvCache reports its buffer until free() (or its finaliser)', async () => {
    const m = Model.fromConfig(CFG, { std: 0 });
    await drain();
    const e0 = external();
    const bytes =
      2 * CFG.num_hidden_layers * 4 * 2048 * CFG.num_key_value_heads * (CFG.hidden_size / CFG.num_attention_heads) * 4;
    const cache = m.newKvCache(4, 2048);
    expect(external() - e0).toBeGreaterThanOrEqual(bytes);
    cache.free();
    expect(external() - e0).toBeLessThan(bytes / 2);
    (() => m.newKvCache(4, 2048))();
    expect(external() - e0).toBeGreaterThanOrEqual(bytes);
    await drain();
    expect(external() - e0).toBeLessThan(bytes / 2);
    m.dispose();
  });
});
