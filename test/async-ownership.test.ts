// Async calls own what they read (native/napi/loss.cc, model.cc): JS may change, detach (transfer) or free the
// caller's arrays while the worker runs, and the worker must neither crash nor read the changed or freed memory.
// blockThreadPool() keeps every libuv thread blocked until release(), so the call is still queued while the code
// after it runs: the changes below happen before the worker reads anything (under ASan, scripts/test-asan.sh, a read of freed memory
// is a report, not luck).
import { addon, NativeLossResult } from '../lib/native';
import { lossAndGrad, lossAndGradAsync } from '../lib';
import { Model } from '../lib/engine/model';
import { makeCase } from './helpers/cases';
import { detach, blockThreadPool, shared } from './helpers/memory-race';

const QWEN = {
  model_type: 'qwen2',
  vocab_size: 40,
  hidden_size: 32,
  intermediate_size: 48,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  rms_norm_eps: 1e-6,
  rope_theta: 10000,
  tie_word_embeddings: true,
};

type Args = {
  logits: Float32Array;
  grad?: Float32Array;
  rows: number;
  vocab: number;
  targets: Int32Array;
  offsets: Int32Array;
  rewards?: Float32Array;
  method: number;
  negative: number;
  reduction: number;
  tokenLogps: boolean;
  refLogps?: Float64Array;
  pairs?: Int32Array;
};

/**
 * Native-level loss arguments (V = 4096, four sequences, some rows masked), RIFT with sequence-form negatives or
 * DPO: 2 MB of logits, or with `big` 36 MB — more than glibc's largest mmap threshold, so that freeing them unmaps
 * them and a stale read faults even without ASan.
 */
function lossArgs(method: 'rift' | 'dpo' = 'rift', big = false): Args {
  const V = 4096,
    lengths = big ? [600, 500, 700, 400] : [40, 24, 36, 28];
  const rows = lengths.reduce((x, y) => x + y, 0);
  let s = 13;
  const next = () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0);
  const block = Float32Array.from({ length: 7 * V }, () => (next() >>> 8) / 2 ** 22 - 2); // 7 rows, tiled
  const logits = new Float32Array(rows * V);
  for (let r = 0; r < rows; r += 7) logits.set(block.subarray(0, Math.min(7, rows - r) * V), r * V);
  const targets = Int32Array.from({ length: rows }, () => (next() % 5 === 0 ? -100 : next() % V));
  const offsets = new Int32Array(lengths.length + 1);
  lengths.forEach((n, i) => (offsets[i + 1] = offsets[i] + n));
  const a: Args = {
    logits,
    grad: new Float32Array(logits.length),
    rows,
    vocab: V,
    targets,
    offsets,
    rewards: new Float32Array([1, -0.2, 0.5, -1]),
    method: method === 'rift' ? 2 : 3,
    negative: 1,
    reduction: 0,
    tokenLogps: true,
  };
  if (method === 'dpo')
    Object.assign(a, { refLogps: new Float64Array([-3, -4, -2, -5]), pairs: new Int32Array([0, 1, 2, 3]) });
  return a;
}

/** The synchronous result and gradient for copies of a's arrays. */
function reference(a: Args): { r: NativeLossResult; grad: Float32Array } {
  const grad = new Float32Array(a.logits.length);
  const r = addon.lossAndGrad({
    ...a,
    logits: a.logits.slice(),
    grad,
    targets: a.targets.slice(),
    offsets: a.offsets.slice(),
    rewards: a.rewards?.slice(),
    refLogps: a.refLogps?.slice(),
    pairs: a.pairs?.slice(),
  });
  return { r, grad };
}

/** Bitwise equality of two typed arrays (a fast toEqual for megabyte arrays). */
function expectBits(got: ArrayBufferView, want: ArrayBufferView): void {
  expect(got.byteLength).toBe(want.byteLength);
  const bytes = (v: ArrayBufferView) => Buffer.from(v.buffer as ArrayBuffer, v.byteOffset, v.byteLength);
  expect(Buffer.compare(bytes(got), bytes(want))).toBe(0);
}

function expectSame(got: NativeLossResult, want: NativeLossResult): void {
  expect(got.loss).toBe(want.loss);
  expect(got.tokens).toBe(want.tokens);
  expectBits(got.seqLogps, want.seqLogps);
  expectBits(got.tokenLogps!, want.tokenLogps!);
}

/** Overwrites the small arrays with values that index far out of bounds if a reader trusted them. */
function scramble(a: Args): void {
  a.targets.fill(1 << 30);
  a.offsets.fill(1 << 30);
  a.offsets[0] = -(1 << 30);
  a.rewards?.fill(NaN);
  a.refLogps?.fill(NaN);
  a.pairs?.fill(1 << 30);
}

describe('lossAndGradAsync owns its inputs', () => {
  test.each(['rift', 'dpo'] as const)(
    '%s: targets / offsets / rewards / pairs changed after the call do not reach the worker',
    async (method) => {
      const a = lossArgs(method);
      const want = reference(a);
      const pool = blockThreadPool();
      const p = addon.lossAndGradAsync(a);
      scramble(a);
      await pool.release();
      expectSame(await p, want.r);
      expectBits(a.grad!, want.grad);
    },
  );

  test('the logits ArrayBuffer transferred away and collected while the call is queued: same result', async () => {
    const a = lossArgs('rift', true);
    const want = reference(a);
    const pool = blockThreadPool();
    const p = addon.lossAndGradAsync(a);
    detach(a.logits.buffer);
    expect(a.logits.length).toBe(0);
    await pool.release();
    expectSame(await p, want.r);
    expectBits(a.grad!, want.grad);
  });

  test('grad = logits (in place) transferred away: the promise rejects naming grad, nothing is written', async () => {
    const a = lossArgs();
    a.grad = a.logits;
    const pool = blockThreadPool();
    const p = addon.lossAndGradAsync(a);
    detach(a.logits.buffer);
    const rejected = expect(p).rejects.toThrow(
      /^grad: its ArrayBuffer was detached, transferred or resized while lossAndGradAsync ran/,
    );
    await pool.release();
    await rejected;
  });

  test('a separate grad transferred away: rejects naming grad; the logits are untouched', async () => {
    const a = lossArgs();
    const before = a.logits.slice();
    const pool = blockThreadPool();
    const p = lossAndGradAsync({
      logits: a.logits,
      grad: a.grad,
      rows: a.rows,
      vocab: a.vocab,
      targets: a.targets,
      offsets: a.offsets,
      rewards: a.rewards,
      method: 'rift',
      negative: 'sequence',
    });
    detach(a.grad!.buffer);
    const rejected = expect(p).rejects.toThrow(/^grad: /);
    await pool.release();
    await rejected;
    expectBits(a.logits, before);
  });

  test('logits and grad backed by a SharedArrayBuffer are used in place; the small arrays are still copied', async () => {
    const a = lossArgs();
    const want = reference(a);
    const s: Args = {
      ...a,
      logits: shared(a.logits),
      grad: shared(a.grad!),
      targets: shared(a.targets),
      offsets: shared(a.offsets),
      rewards: shared(a.rewards!),
    };
    const pool = blockThreadPool();
    const p = addon.lossAndGradAsync(s);
    scramble(s);
    await pool.release();
    expectSame(await p, want.r);
    expectBits(s.grad!, want.grad);
  });

  test('shared logits with an ordinary grad, and ordinary logits with a shared grad', async () => {
    const a = lossArgs();
    const want = reference(a);
    const g1 = new Float32Array(a.logits.length).fill(NaN);
    expectSame(await addon.lossAndGradAsync({ ...a, logits: shared(a.logits), grad: g1 }), want.r);
    expectBits(g1, want.grad);
    const g2 = shared(new Float32Array(a.logits.length).fill(NaN));
    expectSame(await addon.lossAndGradAsync({ ...a, grad: g2 }), want.r);
    expectBits(g2, want.grad);
  });

  test("a failed call (NaN logits) leaves the caller's arrays untouched, even with grad = logits", async () => {
    const c = makeCase({ method: 'sft', seed: 3 });
    const logits = Float32Array.from(c.logits32);
    const row = c.opts.targets.findIndex((y, i) => i > 2 && y !== -100);
    logits[row * c.opts.vocab] = NaN;
    const before = logits.slice();
    await expect(lossAndGradAsync({ ...c.opts, logits, grad: logits })).rejects.toThrow(
      /^logits: row \d+ holds NaN or Inf/,
    );
    expectBits(logits, before);
    expect(() => lossAndGrad({ ...c.opts, logits: logits.slice(), grad: new Float32Array(logits.length) })).toThrow(
      RangeError,
    );
  });
});

describe("the Model's async calls own their inputs", () => {
  const B = 3,
    T = 10;
  const ids = () => Int32Array.from({ length: B * T }, (_, i) => (i * 11 + 3) % 40);
  const targets = () =>
    Int32Array.from({ length: B * T }, (_, i) => (i % T < 3 || i % T === T - 1 ? -100 : (i * 7) % 40));
  const offsets = () => new Int32Array([0, T, 2 * T, 3 * T]);

  test('lossAndBackwardAsync: ids / targets / offsets / rewards changed after the call', async () => {
    const model = Model.fromConfig(QWEN, { seed: 4 });
    const o = {
      ids: ids(),
      B,
      T,
      targets: targets(),
      offsets: offsets(),
      rewards: new Float32Array([1, -0.5, 0.25]),
      method: 'rift' as const,
      tokenLogps: true,
    };
    const want = model.lossAndBackward({ ...o, backward: false });
    const gradsBefore = model.gradNorm();
    const pool = blockThreadPool();
    const p = model.lossAndBackwardAsync(o);
    o.ids.fill(1 << 30);
    o.targets.fill(1 << 30);
    o.offsets.fill(1 << 30);
    o.rewards.fill(NaN);
    await pool.release();
    const got = await p;
    expect(got.loss).toBe(want.loss);
    expectBits(got.tokenLogps!, want.tokenLogps!);
    expect(model.gradNorm()).toBeGreaterThan(gradsBefore);
  });

  test('lossAndBackwardAsync: the ids and targets ArrayBuffers transferred away while queued', async () => {
    const model = Model.fromConfig(QWEN, { seed: 5 });
    const o = { ids: ids(), B, T, targets: targets(), offsets: offsets(), method: 'sft' as const, backward: false };
    const want = model.lossAndBackward(o);
    const pool = blockThreadPool();
    const p = model.lossAndBackwardAsync(o);
    detach(o.ids.buffer);
    detach(o.targets.buffer);
    await pool.release();
    expect((await p).loss).toBe(want.loss);
  });

  test('prefillAsync / decodeAsync: ids changed or transferred after the call', async () => {
    const model = Model.fromConfig(QWEN, { seed: 6 });
    const ref = model.newKvCache(B, 16),
      cache = model.newKvCache(B, 16);
    const prompt = ids();
    const wantPrefill = model.prefill(ref, prompt, B, T);
    const wantDecode = model.decode(ref, new Int32Array([1, 2, 3]));
    let pool = blockThreadPool();
    const ids1 = prompt.slice();
    const p1 = model.prefillAsync(cache, ids1, B, T);
    ids1.fill(1 << 30);
    await pool.release();
    expectBits(await p1, wantPrefill);
    pool = blockThreadPool();
    const tokens = new Int32Array([1, 2, 3]);
    const p2 = model.decodeAsync(cache, tokens);
    detach(tokens.buffer);
    await pool.release();
    expectBits(await p2, wantDecode);
  });
});
