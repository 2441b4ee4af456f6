// The decoder engine (lib/engine/model.ts → native/model/decoder*.cc) end to end:
// (a) parity with HF transformers (test/fixtures/parity: logits, loss, every parameter gradient);
// (b) whole-model finite differences against the float64 reference decoder (test/helpers/model-reference.ts)
//     for SFT, RIFT (token and sequence form) and DPO, with a small lm_head chunk so sequences span chunks;
// (c) KV-cache prefill + decode == the full forward, incl. one prompt broadcast to K rows;
// (d) gradient accumulation; (e) AdamW vs a float64 torch-formula reference; (f) memory(); (g) save → load;
// (h) bad input → typed errors naming the argument; async calls and the busy guard.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { bf16ToF32, f32ToBf16 } from '../lib/kernels/bf16';
import { parseConfig } from '../lib/engine/checkpoint';
import { Model } from '../lib/engine/model';
import { referenceForward } from './helpers/model-reference';
import { adamwRef } from './helpers/ops-reference';
import { expectWithin, maxAbs, readParity } from './helpers/parity';
import { reference, RefCase } from './helpers/reference';

const FIX = path.join(__dirname, 'fixtures', 'parity');

/** targets[b·T + t] = labels[b·T + t + 1] (HF's shift), −100 at t = T − 1. */
function shiftedTargets(labels: Int32Array, B: number, T: number): Int32Array {
  const out = new Int32Array(B * T).fill(-100);
  for (let b = 0; b < B; b++) for (let t = 0; t + 1 < T; t++) out[b * T + t] = labels[b * T + t + 1];
  return out;
}

/** Deterministic ids in [0, V) (LCG). */
function makeIds(n: number, V: number, seed: number): Int32Array {
  let s = seed >>> 0;
  return Int32Array.from({ length: n }, () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) >>> 8) % V);
}

/** Next-token targets for (B, T) ids with the first `prompt` positions of each row masked. */
function lmTargets(ids: Int32Array, B: number, T: number, prompt: number): Int32Array {
  const out = new Int32Array(B * T).fill(-100);
  for (let b = 0; b < B; b++) for (let t = prompt; t + 1 < T; t++) out[b * T + t] = ids[b * T + t + 1];
  return out;
}

function expectError(
  fn: () => unknown,
  name: 'TypeError' | 'RangeError' | 'Error',
  arg: string,
  sameRealm = true,
): void {
  let err: Error | undefined;
  try {
    fn();
  } catch (e) {
    err = e as Error;
  }
  if (!err) throw new Error(`expected a ${name} about ${arg}, nothing was thrown`);
  expect(`${err.name}: ${err.message}`).toMatch(new RegExp(`^${name}: ${arg}`));
  if (name !== 'Error' && sameRealm) expect(err).toBeInstanceOf(name === 'TypeError' ? TypeError : RangeError);
}

// Every test below runs once per usable device (Model.devices(): 'cpu' here; 'cpu' and 'cuda' on a GPU machine)
// with fp32 GEMMs, so the CUDA engine is held to the same references and tolerances as its CPU twin.
type Dev = { device: 'cpu' | 'cuda'; precision: 'fp32' };
const DEVICES: Dev[] = Model.devices().map((device) => ({ device, precision: 'fp32' }));
/** The memory report's categories of the device the model runs on (host at the top level, GPU under .device). */
const space = (m: ReturnType<Model['memory']>, dev: Dev) => (dev.device === 'cuda' ? m.device : m);

function suite(DEV: Dev): void {
  describe.each(['tiny-qwen2', 'tiny-llama'])('parity with HF transformers: %s', (name) => {
    const fx = readParity(path.join(FIX, `${name}.bin`));
    const model = Model.load(path.join(FIX, name), DEV);
    const ids = fx.get('input_ids')!.data as Int32Array;
    const [B, T] = fx.get('input_ids')!.shape;

    test('forward logits within abs 1e-4', () => {
      expectWithin(`${name} logits`, model.forward({ ids, B, T }), fx.get('logits')!.data, 1e-4);
    });

    test('SFT loss within rel 1e-5 and every parameter gradient within 1e-3 × max|ref|', () => {
      const targets = shiftedTargets(fx.get('labels')!.data as Int32Array, B, T);
      model.zeroGrad();
      const r = model.lossAndBackward({ ids, B, T, targets, offsets: new Int32Array([0, B * T]), method: 'sft' });
      const want = fx.get('loss')!.data[0];
      expect(r.tokens).toBe(18);
      expect(Math.abs(r.loss - want) / Math.abs(want)).toBeLessThan(1e-5);
      const grads = [...fx.keys()].filter((k) => k.startsWith('grad.'));
      expect(grads.length).toBe(model.tensorTable().length); // every parameter, tied lm_head included in the embedding
      for (const k of grads) {
        const ref = fx.get(k)!;
        const pname = k.slice('grad.'.length);
        expect(model.tensorTable().find((t) => t.name === pname)!.shape).toEqual(ref.shape);
        expectWithin(k, model.tensor(pname, 'grad'), ref.data, 1e-3 * maxAbs(ref.data));
      }
    });

    test("the training path's log-probs equal log-softmax of the inference forward", () => {
      const targets = shiftedTargets(fx.get('labels')!.data as Int32Array, B, T);
      const r = model.lossAndBackward({
        ids,
        B,
        T,
        targets,
        offsets: new Int32Array([0, 12, 24]),
        method: 'logprob',
        tokenLogps: true,
      });
      const logits = model.forward({ ids, B, T });
      const V = model.vocab;
      for (let row = 0; row < B * T; row++) {
        if (targets[row] === -100) {
          expect(r.tokenLogps![row]).toBe(0);
          continue;
        }
        let m = -Infinity,
          z = 0;
        for (let v = 0; v < V; v++) m = Math.max(m, logits[row * V + v]);
        for (let v = 0; v < V; v++) z += Math.exp(logits[row * V + v] - m);
        expect(Math.abs(r.tokenLogps![row] - (logits[row * V + targets[row]] - m - Math.log(z)))).toBeLessThan(1e-4);
      }
    });
  });

  // ---------------------------------------------------------------------------------------------------------
  // A tiny Llama with every bias (q/k/v/o) and tied embeddings; random weights large enough to be non-linear.
  const TINY = {
    model_type: 'llama',
    vocab_size: 24,
    hidden_size: 16,
    intermediate_size: 24,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    tie_word_embeddings: true,
    attention_bias: true,
  };

  describe('finite differences of the whole model (float64 reference decoder)', () => {
    const cfg = parseConfig(TINY);
    const model = Model.fromConfig(cfg, { ...DEV, seed: 7, std: 0.3, normStd: 0.2, chunkRows: 5 });
    const B = 2,
      T = 7,
      N = B * T;
    const ids = makeIds(N, cfg.vocab_size, 3);
    const table = model.tensorTable();
    const views = new Map(table.map((t) => [t.name, { shape: t.shape, data: model.tensor(t.name) }]));

    // A few coordinates of every tensor (embedding rows of tokens in the batch and of unused ones).
    const coords: { name: string; i: number }[] = [];
    for (const t of table) {
      const n = t.shape.reduce((a, b) => a * b, 1);
      const picks =
        t.name === 'model.embed_tokens.weight' ? [ids[3] * 16 + 5, ids[9] * 16 + 11, n - 1] : [0, (n * 0.618) | 0];
      for (const i of picks) coords.push({ name: t.name, i });
    }

    function check(
      label: string,
      opts: Omit<Parameters<Model['lossAndBackward']>[0], 'ids' | 'B' | 'T'>,
      loss: Omit<RefCase, 'logits' | 'N' | 'V'>,
    ) {
      const refLoss = () =>
        reference({ ...loss, logits: referenceForward(cfg, views, ids, B, T).logits, N, V: cfg.vocab_size }).loss;
      model.zeroGrad();
      const r = model.lossAndBackward({ ids, B, T, ...opts });
      const want = refLoss();
      expect(Math.abs(r.loss - want)).toBeLessThanOrEqual(2e-5 * Math.abs(want) + 1e-9);
      let worst = 0,
        at = '';
      for (const { name, i } of coords) {
        const p = views.get(name)!.data; // the reference's copy (a zero-copy view on the CPU)
        const g = model.tensor(name, 'grad')[i];
        const gmax = maxAbs(model.tensor(name, 'grad'));
        const p0 = p[i];
        const h = 2e-3 * Math.max(1, Math.abs(p0));
        p[i] = p0 + h;
        const up = p[i],
          lup = refLoss();
        p[i] = p0 - h;
        const dn = p[i],
          ldn = refLoss();
        p[i] = p0;
        const fd = (lup - ldn) / (up - dn); // exact fp32 step: the reference itself is float64
        const err = Math.abs(g - fd) / (2e-4 * gmax + 2e-4 * Math.abs(fd) + 1e-12); // worst seen: ~0.03 of this
        if (err > worst) [worst, at] = [err, `${name}[${i}]: engine ${g}, finite difference ${fd}, tensor max ${gmax}`];
      }
      if (worst > 1) throw new Error(`${label}: ${at} (error ${worst.toFixed(2)}× the tolerance)`);
      expect(model.gradNorm()).toBeGreaterThan(0);
    }

    const targets = lmTargets(ids, B, T, 2);
    test('SFT (token-mean, one fused pass)', () => {
      check(
        'sft',
        { targets, offsets: new Int32Array([0, 7, 14]), method: 'sft' },
        { targets, offsets: new Int32Array([0, 7, 14]), method: 'sft' },
      );
    });

    test('RIFT token form, mixed rewards, sequence-mean', () => {
      const o = {
        targets,
        offsets: new Int32Array([0, 7, 14]),
        rewards: new Float32Array([0.8, -1.5]),
        method: 'rift' as const,
        reduction: 'sequence-mean' as const,
      };
      check('rift token', o, o);
    });

    test('RIFT sequence form, negative rewards (two-pass lm_head, sequences split across chunks)', () => {
      // few targets per sequence so that exp(S_i) is not negligible
      const tg = new Int32Array(N).fill(-100);
      for (const row of [3, 4, 9, 11]) tg[row] = ids[row + 1];
      const o = {
        targets: tg,
        offsets: new Int32Array([0, 7, 14]),
        rewards: new Float32Array([-1, -2]),
        method: 'rift' as const,
        negative: 'sequence' as const,
      };
      check('rift sequence', o, o);
    });

    test('DPO (two-pass lm_head, pairs across batch rows)', () => {
      const offsets = new Int32Array([0, 4, 7, 11, 14]);
      const refLogps = new Float64Array([-9.5, -10.2, -8.1, -11.3]);
      const pairs = new Int32Array([0, 1, 2, 3, 0, 3]);
      check(
        'dpo',
        { targets, offsets, method: 'dpo', dpo: { refLogps, pairs, beta: 0.5 } },
        { targets, offsets, method: 'dpo', refLogps, pairs, beta: 0.5 },
      );
    });

    test('the chunk size does not change the result', () => {
      const other = Model.fromConfig(cfg, { ...DEV, seed: 7, std: 0.3, normStd: 0.2, chunkRows: 1024 });
      const o = {
        ids,
        B,
        T,
        targets,
        offsets: new Int32Array([0, 4, 7, 11, 14]),
        method: 'dpo' as const,
        dpo: { refLogps: new Float64Array([-9.5, -10.2, -8.1, -11.3]), pairs: new Int32Array([0, 1, 2, 3]) },
      };
      model.zeroGrad();
      const a = model.lossAndBackward(o),
        b = other.lossAndBackward(o);
      expect(Math.abs(a.loss - b.loss)).toBeLessThan(1e-6);
      expectWithin('grads', model.grads(), other.grads(), 1e-5 * maxAbs(other.grads()));
    });
  });

  // ---------------------------------------------------------------------------------------------------------
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

  describe('KV cache', () => {
    const model = Model.fromConfig(QWEN, { ...DEV, seed: 11, std: 0.2, normStd: 0.1 });
    const V = QWEN.vocab_size;

    test('prefill + decode steps give the full forward logits', () => {
      const B = 2,
        T = 12,
        P = 5;
      const ids = makeIds(B * T, V, 5);
      const full = model.forward({ ids, B, T });
      const cache = model.newKvCache(B, 16);
      const prompt = new Int32Array(B * P);
      for (let b = 0; b < B; b++) prompt.set(ids.subarray(b * T, b * T + P), b * P);
      const check = (logits: Float32Array, t: number) => {
        for (let b = 0; b < B; b++)
          expectWithin(
            `row ${b} position ${t}`,
            logits.subarray(b * V, (b + 1) * V),
            full.subarray((b * T + t) * V, (b * T + t + 1) * V),
            1e-4,
          );
      };
      check(model.prefill(cache, prompt, B, P), P - 1);
      expect(cache.length).toBe(P);
      for (let t = P; t < T; t++)
        check(
          model.decode(
            cache,
            Int32Array.from({ length: B }, (_, b) => ids[b * T + t]),
          ),
          t,
        );
      expect(cache.length).toBe(T);
      const last = model.forward({ ids, B, T, lastOnly: true });
      check(last, T - 1);
      expectError(() => model.prefill(cache, new Int32Array(B * 5), B, 5), 'RangeError', 'cache');
      cache.reset();
      expect(cache.length).toBe(0);
      check(model.prefill(cache, ids, B, T), T - 1);
    });

    test('one prompt prefilled once, broadcast to K rows, decoded together (sync and async)', async () => {
      const P = 6,
        K = 3,
        steps = 4,
        T = P + steps;
      const prompt = makeIds(P, V, 9);
      const one = model.newKvCache(1, T);
      model.prefill(one, prompt, 1, P);
      const many = model.newKvCache(K, T);
      many.copyRows(one, 0);
      expect(many.length).toBe(P);
      const cont = makeIds(K * steps, V, 13);
      const seqs = new Int32Array(K * T);
      for (let k = 0; k < K; k++) {
        seqs.set(prompt, k * T);
        seqs.set(cont.subarray(k * steps, (k + 1) * steps), k * T + P);
      }
      const full = model.forward({ ids: seqs, B: K, T });
      for (let s = 0; s < steps; s++) {
        const logits = model.decode(
          many,
          Int32Array.from({ length: K }, (_, k) => cont[k * steps + s]),
        );
        for (let k = 0; k < K; k++) {
          const t = P + s;
          expectWithin(
            `sample ${k} position ${t}`,
            logits.subarray(k * V, (k + 1) * V),
            full.subarray((k * T + t) * V, (k * T + t + 1) * V),
            1e-4,
          );
        }
      }
      // the async variants give the same logits, and the cache is busy while they run
      const again = model.newKvCache(K, T);
      const l0 = await model.prefillAsync(
        again,
        Int32Array.from({ length: K * P }, (_, i) => prompt[i % P]),
        K,
        P,
      );
      const p1 = model.decodeAsync(
        again,
        Int32Array.from({ length: K }, (_, k) => cont[k * steps]),
      );
      expectError(() => again.reset(), 'Error', 'cache: busy');
      expectError(() => model.decode(again, new Int32Array(K)), 'Error', 'Model: busy');
      const l1 = await p1;
      expectWithin('prefillAsync', l0.subarray(0, V), full.subarray((P - 1) * V, P * V), 1e-4);
      expectWithin('decodeAsync', l1.subarray(V, 2 * V), full.subarray((T + P) * V, (T + P + 1) * V), 1e-4);
      one.free();
      expect(one.freed).toBe(true);
      expectError(() => model.prefill(one, prompt, 1, P), 'TypeError', 'cache');
    });

    test('rows of different lengths in one cache (continuous batching): chosen rows decoded at their own positions', async () => {
      // Three sequences prefilled into slots 3, 0, 2 of a 4-row cache (slot 1 stays empty), then decoded in varying
      // subsets and orders: each row's logits equal the full forward of its own sequence; other rows are untouched.
      const seqs = [makeIds(11, V, 31), makeIds(8, V, 32), makeIds(14, V, 33)];
      const slots = [3, 0, 2],
        pos = [4, 2, 7];
      const cache = model.newKvCache(4, 16);
      const fullAt = (i: number, t: number) => model.forward(seqs[i].subarray(0, t + 1), 1, t + 1, { lastOnly: true });
      seqs.forEach((q, i) => {
        const l = model.prefill(cache, q.subarray(0, pos[i]), 1, pos[i], Int32Array.of(slots[i]));
        expectWithin(`prefill ${i}`, l, fullAt(i, pos[i] - 1), 1e-4);
      });
      expect(Array.from(cache.lengths())).toEqual([2, 0, 7, 4]);
      expect(cache.length).toBe(7);
      for (const order of [[0, 1, 2], [2, 0], [1], [2, 1, 0], [0, 2]]) {
        const tokens = Int32Array.from(order, (i) => seqs[i][pos[i]]);
        const rows = Int32Array.from(order, (i) => slots[i]);
        const logits =
          order.length === 2 ? await model.decodeAsync(cache, tokens, rows) : model.decode(cache, tokens, rows);
        order.forEach((i, r) =>
          expectWithin(`sequence ${i} at ${pos[i]}`, logits.subarray(r * V, (r + 1) * V), fullAt(i, pos[i]), 1e-4),
        );
        order.forEach((i) => pos[i]++);
        expect(Array.from(cache.lengths())).toEqual([pos[1], 0, pos[2], pos[0]]);
      }
      // A finished row is freed and refilled with another prompt from a 1-row cache; the others go on unchanged.
      cache.resetRows(2);
      expectError(() => cache.copyRows(cache, 0, 3, 1), 'RangeError', 'dstRow: row 3 holds');
      const fresh = model.newKvCache(1, 16);
      const other = makeIds(9, V, 34);
      model.prefill(fresh, other.subarray(0, 5), 1, 5);
      cache.copyRows(fresh, 0, 2, 1);
      expect(Array.from(cache.lengths())).toEqual([pos[1], 0, 5, pos[0]]);
      const l = model.decodeRows(cache, Int32Array.of(other[5], seqs[0][pos[0]]), Int32Array.of(2, 3));
      expectWithin(
        'refilled row',
        l.subarray(0, V),
        model.forward({ ids: other.subarray(0, 6), B: 1, T: 6, lastOnly: true }),
        1e-4,
      );
      expectWithin('row 3 went on', l.subarray(V, 2 * V), fullAt(0, pos[0]), 1e-4);
      // every row at once, at different lengths (no `rows`): row 1 starts its sequence
      cache.resetRows(0, 4);
      cache.copyRows(fresh, 0, 0, 2);
      expect(Array.from(cache.lengths())).toEqual([5, 5, 0, 0]);
      model.prefill(cache, Int32Array.of(other[5], other[5], other[0], other[0]), 4, 1);
      expect(Array.from(cache.lengths())).toEqual([6, 6, 1, 1]);
    });

    test("a row's logits do not depend on the rows decoded with it (row-invariant GEMMs; bitwise on the CPU)", () => {
      // The wider QWEN model here has K > 256 (two K blocks of the packed GEMM) only in the MLP; row counts 1..9 and 40
      // cover the small-M sizes (M <= 4), partial and full row tiles.
      const big = Model.fromConfig({ ...QWEN, hidden_size: 64, intermediate_size: 320 }, { ...DEV, seed: 5, std: 0.2 });
      const seqs = Array.from({ length: 40 }, (_, i) => makeIds(6 + (i % 5), V, 60 + i));
      const alone = seqs.map((q) => {
        const c = big.newKvCache(1, 16);
        big.prefill(c, q.subarray(0, q.length - 1), 1, q.length - 1);
        return big.decode(c, q.subarray(q.length - 1)).slice();
      });
      for (const n of [1, 2, 3, 4, 5, 8, 9, 40]) {
        const c = big.newKvCache(n, 16);
        seqs
          .slice(0, n)
          .forEach((q, i) => big.prefill(c, q.subarray(0, q.length - 1), 1, q.length - 1, Int32Array.of(i)));
        const logits = big.decode(
          c,
          Int32Array.from(seqs.slice(0, n), (q) => q[q.length - 1]),
        );
        for (let i = 0; i < n; i++) {
          const row = logits.subarray(i * V, (i + 1) * V);
          if (DEV.device === 'cpu') expect([n, i, Array.from(row)]).toEqual([n, i, Array.from(alone[i])]);
          else expectWithin(`${n} rows, row ${i}`, row, alone[i], 1e-4);
        }
      }
    });

    test('per-row cache errors: typed, naming the argument, nothing changed', async () => {
      const cache = model.newKvCache(3, 6);
      model.prefill(cache, makeIds(2, V, 41), 1, 2, Int32Array.of(1));
      model.prefill(cache, makeIds(6, V, 42), 1, 6, Int32Array.of(2));
      const before = Array.from(cache.lengths());
      expectError(
        () => model.decode(cache, Int32Array.of(1, 2), Int32Array.of(1, 1)),
        'RangeError',
        'rows: rows\\[1\\] = 1 appears twice',
      );
      expectError(
        () => model.decode(cache, Int32Array.of(1), Int32Array.of(3)),
        'RangeError',
        'rows: rows\\[0\\] = 3 is outside',
      );
      expectError(() => model.decode(cache, Int32Array.of(1), Int32Array.of(-1)), 'RangeError', 'rows');
      expectError(() => model.decode(cache, Int32Array.of(1, 2), Int32Array.of(1)), 'RangeError', 'tokens');
      expectError(() => model.decode(cache, Int32Array.of(1), new Int32Array(0)), 'RangeError', 'rows');
      expectError(() => model.decode(cache, Int32Array.of(1), [1] as never), 'TypeError', 'rows');
      expectError(() => model.decode(cache, Int32Array.of(V), Int32Array.of(1)), 'RangeError', 'tokens');
      expectError(
        () => model.decode(cache, Int32Array.of(1), Int32Array.of(2)),
        'RangeError',
        'cache: row 2 holds 6 of 6 positions',
      );
      expectError(() => model.decodeRows(cache, Int32Array.of(1), undefined as never), 'TypeError', 'rows');
      expectError(() => model.prefill(cache, makeIds(4, V, 43), 2, 2, Int32Array.of(0)), 'RangeError', 'rows');
      expectError(() => model.prefill(cache, makeIds(8, V, 43), 4, 2, Int32Array.of(0, 1, 2, 0)), 'RangeError', 'rows');
      expectError(() => model.decode(cache, new Int32Array(3)), 'RangeError', 'cache: row 2 holds 6 of 6');
      await expect(model.decodeAsync(cache, Int32Array.of(1, 2), Int32Array.of(0, 0))).rejects.toThrow(/^rows: /);
      expectError(() => cache.resetRows(3), 'RangeError', 'row');
      expectError(() => cache.resetRows(1, 3), 'RangeError', 'count');
      expectError(() => cache.resetRows(-1), 'RangeError', 'row');
      const src = model.newKvCache(1, 6);
      model.prefill(src, makeIds(3, V, 44), 1, 3);
      expectError(() => cache.copyRows(src, 0, 1), 'RangeError', 'dstRow: row 1 holds 2 tokens');
      expectError(() => cache.copyRows(src, 0, 0, 2), 'RangeError', 'dstRow: row 1');
      expect(Array.from(cache.lengths())).toEqual(before);
      cache.copyRows(src, 0, 0, 1);
      expect(Array.from(cache.lengths())).toEqual([3, 2, 6]);
      cache.free();
      expect(Array.from(cache.lengths())).toEqual([]);
      expectError(() => cache.resetRows(0), 'TypeError', 'cache');
    });
  });

  // ---------------------------------------------------------------------------------------------------------
  describe('training state', () => {
    const B = 4,
      T = 8;
    const V = QWEN.vocab_size;
    const ids = makeIds(B * T, V, 21);
    const targets = lmTargets(ids, B, T, 3);
    const offsets = new Int32Array([0, 8, 16, 24, 32]);
    const tokens = targets.filter((y) => y !== -100).length;
    const half = (h: number) => ({
      ids: ids.subarray(h * 16, h * 16 + 16),
      B: 2,
      T,
      targets: targets.subarray(h * 16, h * 16 + 16),
      offsets: new Int32Array([0, 8, 16]),
    });

    test('gradient accumulation: two half batches with the global normaliser equal the full batch', () => {
      const model = Model.fromConfig(QWEN, { ...DEV, seed: 1, std: 0.2 });
      const full = model.lossAndBackward({ ids, B, T, targets, offsets, method: 'sft', normalizer: tokens });
      const g = Float32Array.from(model.grads());
      model.zeroGrad();
      expect(model.gradNorm()).toBe(0);
      const a = model.lossAndBackward({ ...half(0), method: 'sft', normalizer: tokens });
      const b = model.lossAndBackward({ ...half(1), method: 'sft', normalizer: tokens });
      expect(Math.abs(a.loss + b.loss - full.loss)).toBeLessThan(1e-6);
      expectWithin('accumulated grads', model.grads(), g, 2e-6 * maxAbs(g));
      // RIFT, sequence-mean: the normaliser is the global number of sequences
      model.zeroGrad();
      const rewards = new Float32Array([1, -0.5, 0.25, -2]);
      model.lossAndBackward({
        ids,
        B,
        T,
        targets,
        offsets,
        rewards,
        method: 'rift',
        reduction: 'sequence-mean',
        normalizer: 4,
      });
      const g2 = Float32Array.from(model.grads());
      model.zeroGrad();
      model.lossAndBackward({
        ...half(0),
        rewards: rewards.subarray(0, 2),
        method: 'rift',
        reduction: 'sequence-mean',
        normalizer: 4,
      });
      model.lossAndBackward({
        ...half(1),
        rewards: rewards.subarray(2),
        method: 'rift',
        reduction: 'sequence-mean',
        normalizer: 4,
      });
      expectWithin('accumulated RIFT grads', model.grads(), g2, 2e-6 * maxAbs(g2));
    });

    test('AdamW steps move the parameters as torch.optim.AdamW (+ clip_grad_norm_) would', () => {
      const model = Model.fromConfig(QWEN, { ...DEV, seed: 2, std: 0.2 });
      const n = model.numParams;
      const p = Float64Array.from(model.params());
      const m = new Float64Array(n),
        v = new Float64Array(n);
      const hyper = { lr: 0.01, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 };
      for (let t = 1; t <= 3; t++) {
        model.zeroGrad();
        model.lossAndBackward({ ids, B, T, targets, offsets, method: 'sft' });
        const g = Float64Array.from(model.grads());
        const norm = Math.sqrt(g.reduce((s, x) => s + x * x, 0));
        expect(Math.abs(model.gradNorm() - norm) / norm).toBeLessThan(1e-9);
        const maxGradNorm = t === 3 ? norm / 4 : 0; // the third step clips
        const r = model.step({ ...hyper, maxGradNorm });
        expect(r.step).toBe(t);
        expect(Math.abs(r.gradNorm - norm) / norm).toBeLessThan(1e-9);
        const scale = maxGradNorm ? Math.min(1, maxGradNorm / (norm + 1e-6)) : 1;
        expect(r.clipScale).toBeCloseTo(scale, 12);
        adamwRef(
          p,
          g.map((x) => x * scale),
          m,
          v,
          t,
          hyper,
        );
        const got = model.params();
        let worst = 0;
        for (let i = 0; i < n; i++) worst = Math.max(worst, Math.abs(got[i] - p[i]) / (1e-6 + 1e-5 * Math.abs(p[i])));
        expect(worst).toBeLessThanOrEqual(1);
      }
      expect(model.optimizerSteps).toBe(3);
    });

    test('memory(): every category the training step uses is non-zero; resetPeaks() sets peaks to current', () => {
      const model = Model.fromConfig(QWEN, { ...DEV, seed: 3 });
      model.lossAndBackward({ ids, B, T, targets, offsets, method: 'sft' });
      model.step({ lr: 1e-3 });
      const cache = model.newKvCache(2, 32);
      const mem = space(model.memory(), DEV);
      const bytes = model.numParams * 4;
      for (const k of ['params', 'grads', 'activations', 'logitsChunk', 'kvCache'] as const)
        expect(mem[k].current).toBeGreaterThan(0);
      expect(mem.params.current).toBeGreaterThanOrEqual(bytes);
      expect(mem.grads.current).toBeGreaterThanOrEqual(bytes);
      expect(mem.optimizer.current).toBeGreaterThanOrEqual(2 * bytes);
      expect(mem.kvCache.current).toBeGreaterThanOrEqual(2 * 2 * 2 * 32 * 2 * 8 * 4); // 2 (k,v) × L × B × Tmax × Hkv × D × 4
      const sum = Object.entries(mem)
        .filter(([k]) => k !== 'total' && k !== 'device')
        .reduce((s, [, x]) => s + (x as { current: number }).current, 0);
      expect(mem.total.current).toBe(sum);
      // a bigger batch regrows the activations (the old buffer is freed first)
      const big = makeIds(8 * 16, QWEN.vocab_size, 5);
      model.lossAndBackward({
        ids: big,
        B: 8,
        T: 16,
        targets: lmTargets(big, 8, 16, 0),
        offsets: new Int32Array([0, 128]),
        method: 'sft',
      });
      const after = space(Model.memory(), DEV);
      expect(after.activations.current).toBeGreaterThan(mem.activations.current);
      expect(after.activations.peak).toBeGreaterThanOrEqual(after.activations.current);
      cache.free();
      const freed = space(Model.memory(), DEV);
      expect(freed.kvCache.current).toBe(mem.kvCache.current - 2 * 2 * 2 * 32 * 2 * 8 * 4);
      expect(freed.kvCache.peak).toBeGreaterThan(freed.kvCache.current);
      const ref = Model.fromConfig(QWEN, { ...DEV, seed: 3, reference: true }); // a DPO reference model
      expect(space(Model.memory(), DEV).reference.current).toBeGreaterThanOrEqual(ref.numParams * 4);
      model.resetPeaks();
      const reset = Model.memory();
      for (const [k, s] of [...Object.entries(reset), ...Object.entries(reset.device)])
        if (k !== 'device') expect([k, (s as { peak: number }).peak]).toEqual([k, (s as { current: number }).current]);
    });

    test('save → load round trip is bit-exact (float32) and copies tokenizer files through', () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rift-model-'));
      try {
        const model = Model.fromConfig(QWEN, { ...DEV, seed: 4, std: 0.2, normStd: 0.1 });
        model.save(path.join(dir, 'a'));
        const loaded = Model.load(path.join(dir, 'a'), DEV);
        expect(loaded.config.tie_word_embeddings).toBe(true);
        expect(Buffer.from(loaded.params().buffer).equals(Buffer.from(model.params().buffer))).toBe(true);
        const ids2 = makeIds(10, QWEN.vocab_size, 1);
        expect(
          Buffer.from(loaded.forward({ ids: ids2, B: 2, T: 5 }).buffer).equals(
            Buffer.from(model.forward({ ids: ids2, B: 2, T: 5 }).buffer),
          ),
        ).toBe(true);
        fs.writeFileSync(path.join(dir, 'a', 'tokenizer.json'), '{"model":{}}');
        const withTok = Model.load(path.join(dir, 'a'), DEV);
        withTok.save(path.join(dir, 'b'), { dtype: 'bf16' });
        expect(fs.readFileSync(path.join(dir, 'b', 'tokenizer.json'), 'utf8')).toBe('{"model":{}}');
        const bf = Model.load(path.join(dir, 'b'), DEV);
        expect(Array.from(bf.params())).toEqual(Array.from(bf16ToF32(f32ToBf16(model.params()))));
        withTok.save(path.join(dir, 'c'), { dtype: 'bfloat16' }); // the deprecated spelling: the same checkpoint
        expect(fs.readFileSync(path.join(dir, 'c', 'model.safetensors'))).toEqual(
          fs.readFileSync(path.join(dir, 'b', 'model.safetensors')),
        );
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });

    test('lossAndBackwardAsync matches the sync call; the model refuses other calls until it settles', async () => {
      const model = Model.fromConfig(QWEN, { ...DEV, seed: 5, std: 0.2 });
      const o = {
        ids,
        B,
        T,
        targets,
        offsets,
        method: 'rift' as const,
        rewards: new Float32Array([1, -1, 0.5, -0.5]),
        negative: 'sequence' as const,
        tokenLogps: true,
      };
      const sync = model.lossAndBackward(o);
      // o asks with the deprecated tokenLogps: the result carries the new names and the deprecated aliases, same arrays
      expect(sync.tokenLogprobs!.length).toBe(B * T);
      expect([sync.seqLogps, sync.tokenLogps]).toEqual([sync.seqLogprobs, sync.tokenLogprobs]);
      expect(sync.seqLogps).toBe(sync.seqLogprobs);
      const g = Float32Array.from(model.grads());
      model.zeroGrad();
      const p = model.lossAndBackwardAsync(o);
      expectError(() => model.zeroGrad(), 'Error', 'Model: busy');
      expectError(() => model.forward({ ids, B, T }), 'Error', 'Model: busy');
      const r = await p;
      expect(r.loss).toBe(sync.loss);
      expect(Array.from(r.tokenLogps!)).toEqual(Array.from(sync.tokenLogps!));
      expect(Array.from(model.grads())).toEqual(Array.from(g));
      const s = await model.stepAsync({ lr: 1e-3, maxGradNorm: 1 });
      expect(s.step).toBe(1);
      await expect(
        model.lossAndBackwardAsync({ ...o, ids: new Int32Array(B * T).fill(QWEN.vocab_size) }),
      ).rejects.toThrow(/^ids: /);
    });
  });

  // ---------------------------------------------------------------------------------------------------------
  describe('bad input → typed errors naming the argument', () => {
    const model = Model.fromConfig(QWEN, { ...DEV, seed: 6 });
    const B = 2,
      T = 4;
    const ids = makeIds(B * T, QWEN.vocab_size, 2);
    const base = {
      ids,
      B,
      T,
      targets: lmTargets(ids, B, T, 0),
      offsets: new Int32Array([0, 8]),
      method: 'sft' as const,
    };

    test('ids', () => {
      expectError(
        () =>
          model.forward(
            Int32Array.from(ids, (x, i) => (i === 3 ? 40 : x)),
            B,
            T,
          ),
        'RangeError',
        'ids: ids\\[3\\] = 40 is outside',
      );
      expectError(
        () => model.lossAndBackward({ ...base, ids: Int32Array.from(ids, (x, i) => (i === 5 ? -1 : x)) }),
        'RangeError',
        'ids: ids\\[5\\] = -1',
      );
      expectError(() => model.forward({ ids, B, T: T + 1 }), 'RangeError', 'ids: length must be B × T');
      expectError(() => model.forward(Float32Array.from(ids) as unknown as Int32Array, B, T), 'TypeError', 'ids');
      expectError(() => model.lossAndBackward({ ...base, B: 3 }), 'RangeError', 'ids: length');
      // a Model batch names its row count B × T (the kernel API's lossAndGrad names the same count `rows`)
      expectError(
        () => model.lossAndBackward({ ...base, targets: new Int32Array(3) }),
        'RangeError',
        `targets: length must be B × T = ${B * T}, got 3`,
      );
      expectError(
        () => model.lossAndBackward({ ...base, offsets: new Int32Array([0, 3]) }),
        'RangeError',
        `offsets: last offset must equal B × T = ${B * T}, got 3`,
      );
      expectError(() => model.forward({ ids, B: 0, T }), 'RangeError', 'B');
      expectError(() => model.forward(ids, B, 2.5), 'RangeError', 'T');
      // the options form names its arguments the same way
      expectError(
        () => model.forward({ ids: Float32Array.from(ids) as unknown as Int32Array, B, T }),
        'TypeError',
        'ids',
      );
      expectError(() => model.forward({ ids, B, T: 2.5 }), 'RangeError', 'T');
      expectError(() => model.forward({ ids, T } as never), 'TypeError', 'B');
      expectError(() => model.forward({ ids, B, T, lastOnly: 1 as unknown as boolean }), 'TypeError', 'lastOnly');
      expectError(() => model.forward(null as never), 'TypeError', 'opts');
    });

    test('forward: the options form and the deprecated positional form give the same logits', () => {
      const full = model.forward({ ids, B, T });
      expect(full.length).toBe(B * T * QWEN.vocab_size);
      expect(Array.from(model.forward(ids, B, T))).toEqual(Array.from(full));
      const last = model.forward({ ids, B, T, lastOnly: true });
      expect(last.length).toBe(B * QWEN.vocab_size);
      expect(Array.from(model.forward(ids, B, T, { lastOnly: true }))).toEqual(Array.from(last));
      expect(Array.from(model.forward({ ids, B, T, lastOnly: false }))).toEqual(Array.from(full));
    });

    test('loss arguments', () => {
      expectError(() => model.lossAndBackward({ ...base, targets: new Int32Array(7) }), 'RangeError', 'targets');
      expectError(
        () => model.lossAndBackward({ ...base, targets: new Int32Array(8).fill(40) }),
        'RangeError',
        'targets: targets\\[0\\] = 40',
      );
      expectError(() => model.lossAndBackward({ ...base, offsets: new Int32Array([0, 7]) }), 'RangeError', 'offsets');
      expectError(
        () => model.lossAndBackward({ ...base, offsets: [0, 8] as unknown as Int32Array }),
        'TypeError',
        'offsets',
      );
      expectError(() => model.lossAndBackward({ ...base, method: 'ppo' as 'sft' }), 'RangeError', 'method');
      expectError(() => model.lossAndBackward({ ...base, method: 'rift' }), 'TypeError', 'rewards');
      expectError(
        () => model.lossAndBackward({ ...base, method: 'rift', rewards: new Float32Array([NaN]) }),
        'RangeError',
        'rewards',
      );
      expectError(() => model.lossAndBackward({ ...base, method: 'dpo' }), 'TypeError', 'dpo');
      expectError(
        () =>
          model.lossAndBackward({
            ...base,
            method: 'dpo',
            dpo: { refLogps: new Float64Array(1), pairs: new Int32Array([0, 1]) },
          }),
        'RangeError',
        'pairs',
      );
      expectError(() => model.lossAndBackward({ ...base, normalizer: -1 }), 'RangeError', 'normalizer');
    });

    test('the native binding checks what it is given directly', () => {
      const n = model.native;
      expectError(() => n.forward(new Float32Array(8) as unknown as Int32Array, 2, 4), 'TypeError', 'ids', false);
      expectError(() => n.lossAndBackward({ ...base, method: 0, ids: undefined }), 'TypeError', 'ids', false);
      expectError(() => n.lossAndBackward({ ...base, method: 9 }), 'RangeError', 'method', false);
      expectError(() => n.lossAndBackward({ ...base, method: 0, T: -1 }), 'RangeError', 'T', false);
      expectError(() => n.step({}), 'TypeError', 'lr', false);
      expectError(() => n.decode({} as never, new Int32Array(1)), 'TypeError', 'cache', false);
      expectError(
        () => new (Object.getPrototypeOf(n).constructor)({ ...QWEN, num_key_value_heads: 3 }),
        'RangeError',
        'num_key_value_heads',
        false,
      );
      expectError(
        () => new (Object.getPrototypeOf(n).constructor)({ ...QWEN, hidden_size: 'x' }),
        'TypeError',
        'hidden_size',
        false,
      );
      expectError(
        () => new (Object.getPrototypeOf(n).constructor)({ ...QWEN, head_dim: 7 }),
        'RangeError',
        'head_dim',
        false,
      );
    });

    test('state and cache errors', () => {
      const fresh = Model.fromConfig(QWEN, { ...DEV, seed: 6 });
      expectError(() => fresh.step({ lr: 1e-3 }), 'Error', 'step: no gradients');
      expectError(() => fresh.step({ lr: -1 }), 'RangeError', 'lr');
      expectError(() => fresh.step({ lr: 1e-3, beta1: 1 }), 'RangeError', 'beta1');
      const cache = model.newKvCache(2, 4);
      expectError(() => model.decode(cache, new Int32Array(3)), 'RangeError', 'tokens');
      expectError(() => model.prefill(cache, new Int32Array(10), 2, 5), 'RangeError', 'cache: holds 0 of 4');
      expectError(() => model.prefill(cache, new Int32Array(3), 3, 1), 'RangeError', 'B');
      expectError(() => model.newKvCache(0, 4), 'RangeError', 'B');
      const other = model.newKvCache(2, 8);
      expectError(() => cache.copyRows(other, 0), 'RangeError', 'src');
      expectError(() => cache.copyRows(cache, 2), 'RangeError', 'srcRow');
      expectError(() => Model.fromConfig({ ...QWEN, num_attention_heads: 5 }), 'RangeError', 'config.json');
      expectError(() => Model.load(path.join(FIX, 'does-not-exist')), 'Error', '.*config.json');
    });
  });
}

describe.each(DEVICES)('device $device', (dev) => suite(dev));
