// Sampler: sampleToken() on hand-made distributions (exact support of top-k / top-p, empirical frequencies,
// greedy, log-prob values), the seeded RNG, and generate() over a fake model (KV cache broadcast, per-row stops,
// determinism independent of batching), and generate() on the native engine with the tiny-qwen2 fixture.
import * as path from 'path';
import {
  generate,
  Rng,
  sampleRng,
  SamplerScratch,
  samplingProbs,
  sampleToken,
  SamplingParams,
} from '../lib/engine/sampler';
import { sampleTokenReference } from './helpers/sampler-reference';
import { addon } from '../lib/native';
import { Model } from '../lib/engine/model';
import { makeCharTokenizer, Tokenizer } from '../lib/engine/tokenizer';
import { FakeModel, hashLogits } from './helpers/fake-model';

const logitsOfProbs = (p: number[]) => Float32Array.from(p, (x) => (x > 0 ? Math.log(x) : -Infinity));

/** Empirical frequencies of `n` draws. */
function frequencies(logits: Float32Array, params: SamplingParams, n: number, seed = 7): Float64Array {
  const rng = new Rng(seed);
  const f = new Float64Array(logits.length);
  for (let i = 0; i < n; i++) f[sampleToken(logits, params, rng).token] += 1 / n;
  return f;
}

function expectFrequencies(f: Float64Array, q: ArrayLike<number>, n: number): void {
  for (let v = 0; v < f.length; v++) {
    if (q[v] === 0)
      expect(f[v]).toBe(0); // exact support
    else expect(Math.abs(f[v] - q[v])).toBeLessThanOrEqual(5 * Math.sqrt((q[v] * (1 - q[v])) / n) + 1e-9);
  }
}

describe('Rng', () => {
  test('same keys → same stream; any key changed → another stream', () => {
    const a = new Rng(1, 2, 3),
      b = new Rng(1, 2, 3);
    const xs = Array.from({ length: 100 }, () => a.next());
    expect(Array.from({ length: 100 }, () => b.next())).toEqual(xs);
    for (const keys of [
      [1, 2, 4],
      [1, 3, 3],
      [2, 2, 3],
      [1 + 2 ** 32, 2, 3],
      [1, 2],
    ])
      expect(new Rng(...keys).next()).not.toBe(xs[0]);
    expect(sampleRng(5, 0, 1).next()).toBe(new Rng(5, 0, 1).next());
  });

  test('uniform in [0, 1): mean, variance, bucket counts', () => {
    const r = new Rng(42),
      n = 100000,
      buckets = new Float64Array(10);
    let sum = 0,
      sq = 0,
      outside = 0;
    for (let i = 0; i < n; i++) {
      const x = r.next();
      if (!(x >= 0 && x < 1)) outside++;
      sum += x;
      sq += x * x;
      buckets[Math.floor(x * 10)]++;
    }
    expect(outside).toBe(0);
    expect(Math.abs(sum / n - 0.5)).toBeLessThan(0.005);
    expect(Math.abs(sq / n - sum ** 2 / n ** 2 - 1 / 12)).toBeLessThan(0.003);
    for (const c of buckets) expect(Math.abs(c / n - 0.1)).toBeLessThan(0.005);
  });

  test('bad seed', () => {
    expect(() => new Rng(0.5)).toThrow(RangeError);
    expect(() => new Rng(2 ** 60)).toThrow(/seed/);
  });
});

describe('sampleToken', () => {
  const P = [0.05, 0.5, 0.15, 0.3]; // ranks: 1 > 3 > 2 > 0
  const z = logitsOfProbs(P);

  test('temperature 0: argmax (lowest id on ties), no RNG draw, model log-prob', () => {
    const rng = new Rng(1),
      before = new Rng(1);
    const s = sampleToken(z, { temperature: 0, topK: 1, topP: 0.1 }, rng);
    expect(s.token).toBe(1);
    expect(s.logprob).toBeCloseTo(Math.log(0.5), 6);
    expect(s.samplingLogprob).toBe(0);
    expect(rng.next()).toBe(before.next());
    expect(sampleToken(new Float32Array([1, 3, 3, -Infinity]), { temperature: 0 }, rng).token).toBe(1);
  });

  test('temperature 1: frequencies match softmax; logprob = log p, samplingLogprob = log p', () => {
    const n = 20000;
    expectFrequencies(frequencies(z, {}, n), P, n);
    const s = sampleToken(z, {}, new Rng(3));
    expect(s.logprob).toBeCloseTo(Math.log(P[s.token]), 6);
    expect(s.samplingLogprob).toBeCloseTo(Math.log(P[s.token]), 6);
  });

  test("temperature 2 flattens to p^(1/2); logprob stays the model's (temperature 1)", () => {
    const q = P.map((p) => Math.sqrt(p));
    const Z = q.reduce((a, b) => a + b);
    const n = 20000;
    expectFrequencies(
      frequencies(z, { temperature: 2 }, n),
      q.map((x) => x / Z),
      n,
    );
    const rng = new Rng(9);
    for (let i = 0; i < 20; i++) {
      const s = sampleToken(z, { temperature: 2 }, rng);
      expect(s.logprob).toBeCloseTo(Math.log(P[s.token]), 6);
      expect(s.samplingLogprob).toBeCloseTo(Math.log(q[s.token] / Z), 6);
    }
  });

  test('top-k: exact support, renormalised frequencies, ties with the k-th kept', () => {
    const n = 20000;
    expectFrequencies(frequencies(z, { topK: 2 }, n), [0, 0.5 / 0.8, 0, 0.3 / 0.8], n);
    expectFrequencies(frequencies(z, { topK: 1 }, n), [0, 1, 0, 0], n);
    expect(Array.from(samplingProbs(z, { topK: 4 }))).toEqual(Array.from(samplingProbs(z, {})));
    const tied = new Float32Array([2, 1, 2, 0, 2]);
    const q = samplingProbs(tied, { topK: 2 });
    expect(Array.from(q, (x) => x > 0)).toEqual([true, false, true, false, true]);
    expect(q[0]).toBeCloseTo(1 / 3, 12);
  });

  test('top-p: smallest prefix whose mass reaches p (a token is kept iff the mass above it is < p)', () => {
    const support = (params: SamplingParams) => Array.from(samplingProbs(z, params), (x) => x > 0);
    expect(support({ topP: 0.4 })).toEqual([false, true, false, false]); // 0.5 ≥ 0.4
    expect(support({ topP: 0.75 })).toEqual([false, true, false, true]); // 0.5 < 0.75, then 0.8 ≥ 0.75
    expect(support({ topP: 0.85 })).toEqual([false, true, true, true]);
    expect(support({ topP: 0.99 })).toEqual([true, true, true, true]);
    const n = 20000;
    expectFrequencies(frequencies(z, { topP: 0.85 }, n), [0, 0.5 / 0.95, 0.15 / 0.95, 0.3 / 0.95], n);
    const rng = new Rng(11);
    for (let i = 0; i < 20; i++) {
      const s = sampleToken(z, { topP: 0.85 }, rng);
      expect(s.token).not.toBe(0);
      expect(s.logprob).toBeCloseTo(Math.log(P[s.token]), 6);
      expect(s.samplingLogprob).toBeCloseTo(Math.log(P[s.token] / 0.95), 6);
    }
  });

  test('top-p applies after temperature and top-k (HF order)', () => {
    // T = 2: q ∝ √p = [.224, .707, .387, .548] / 1.866 = [.120, .379, .208, .294]; top-k 3 drops token 0:
    // [.431, .236, .334]; top-p 0.7: 1 (.431 < .7), 3 (.765 ≥ .7 → stop) → {1, 3}
    expect(Array.from(samplingProbs(z, { temperature: 2, topK: 3, topP: 0.7 }), (x) => x > 0)).toEqual([
      false,
      true,
      false,
      true,
    ]);
    // without top-k the same top-p keeps {1, 3} too, but with top-p 0.5: {1, 3} (0.379 < 0.5)
    expect(Array.from(samplingProbs(z, { temperature: 2, topP: 0.5 }), (x) => x > 0)).toEqual([
      false,
      true,
      false,
      true,
    ]);
  });

  test('top-p on a large vocabulary equals a brute-force full sort', () => {
    const V = 20000;
    let s = 99;
    const rnd = () => (s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32;
    const flat = Float32Array.from({ length: V }, () => 2 * rnd()); // nucleus of thousands of tokens
    const gumbel = Float32Array.from({ length: V }, () => -Math.log(-Math.log(rnd() * 0.999999 + 1e-7))); // heavy tail
    const cases: [Float32Array, SamplingParams][] = [
      [flat, { topP: 0.9 }],
      [flat, { topP: 0.3, temperature: 0.7 }],
      [flat, { topP: 0.95, topK: 500 }],
      [gumbel, { topP: 0.9 }],
      [gumbel, { topP: 0.5, temperature: 0.7 }],
      [gumbel, { topP: 0.999, temperature: 1.5 }],
    ];
    for (const [logits, params] of cases) {
      const got = samplingProbs(logits, params);
      // brute force: temperature, top-k, then full sort for top-p
      const T = params.temperature ?? 1;
      const m = Math.max(...logits);
      let q = Array.from(logits, (x) => Math.exp((x - m) / T));
      if (params.topK) {
        const kth = [...q].sort((a, b) => b - a)[params.topK - 1];
        q = q.map((x) => (x >= kth ? x : 0));
      }
      const tot = q.reduce((a, b) => a + b);
      const order = q.map((_, i) => i).sort((a, b) => q[b] - q[a] || a - b);
      const keep = new Set<number>();
      let before = 0;
      for (const i of order) {
        if (before >= params.topP! * tot) break;
        keep.add(i);
        before += q[i];
      }
      const kept = q.reduce((a, x, i) => a + (keep.has(i) ? x : 0), 0);
      const bad: string[] = [];
      for (let v = 0; v < V; v++) {
        const want = keep.has(v) ? q[v] / kept : 0;
        if (want === 0 ? got[v] !== 0 : !(Math.abs(got[v] - want) <= 1e-12 + 1e-9 * want))
          bad.push(`[${v}] ${got[v]} vs ${want}`);
      }
      expect(bad.slice(0, 5)).toEqual([]);
      expect(keep.size).toBeGreaterThan(logits === flat ? 400 : 1);
    }
  });

  test('−Inf logits are never sampled; masked rows work with top-k/top-p', () => {
    const zz = new Float32Array([-Infinity, 0, -Infinity, 0]);
    const f = frequencies(zz, { topK: 3, topP: 0.9 }, 2000);
    expect(f[0] + f[2]).toBe(0);
    expect(sampleToken(zz, {}, new Rng(1)).logprob).toBeCloseTo(Math.log(0.5), 6);
  });

  test('same RNG state → same token; a different stream eventually differs', () => {
    const a = new Rng(5, 1),
      b = new Rng(5, 1),
      c = new Rng(5, 2);
    const ta = Array.from({ length: 50 }, () => sampleToken(z, {}, a).token);
    expect(Array.from({ length: 50 }, () => sampleToken(z, {}, b).token)).toEqual(ta);
    expect(Array.from({ length: 50 }, () => sampleToken(z, {}, c).token)).not.toEqual(ta);
  });

  test('bad input', () => {
    const rng = new Rng(0);
    expect(() => sampleToken(new Float32Array([0, NaN]), {}, rng)).toThrow(/logits\[1\] = NaN/);
    expect(() => sampleToken(new Float32Array([0, Infinity]), {}, rng)).toThrow(RangeError);
    expect(() => sampleToken(new Float32Array([-Infinity, -Infinity]), {}, rng)).toThrow(/-Infinity/);
    expect(() => sampleToken(new Float32Array(0), {}, rng)).toThrow(/empty/);
    expect(() => sampleToken(z, { temperature: -1 }, rng)).toThrow(/temperature/);
    expect(() => sampleToken(z, { topK: 1.5 }, rng)).toThrow(/topK/);
    expect(() => sampleToken(z, { topP: 0 }, rng)).toThrow(/topP/);
    expect(() => sampleToken(z, { topP: 1.01 }, rng)).toThrow(/topP/);
    const sc = new SamplerScratch(3); // deprecated export: still constructible, still checked by the reference
    expect(() => sampleTokenReference(z, {}, rng, sc)).toThrow(/scratch/);
  });
});

// ---- generate over the fake model --------------------------------------------------------------------------------

const CHARS = [...'abcdefghij0123456789 =+\n'];
const { tokenizer: TOK_JSON } = makeCharTokenizer(CHARS, ['<eos>'], { eos: '<eos>' });
const tok = new Tokenizer(TOK_JSON, { eos_token: '<eos>' });
const V = tok.vocabSize; // 25
const EOS = 0;
const id = (c: string) => 1 + CHARS.indexOf(c);

describe('the native sampler (addon.sampleRows) against the TypeScript reference', () => {
  function row(V: number, seed: number, kind: number): Float32Array {
    const r = new Rng(seed, kind);
    const z = Float32Array.from({ length: V }, () => (r.next() * 2 - 1) * (kind === 0 ? 3 : 12));
    if (kind === 1) for (let v = 3; v < V; v += 7) z[v] = -Infinity; // masked tokens
    if (kind === 2) for (let v = 0; v < V; v++) z[v] = Math.round(z[v]); // many exact ties
    if (kind === 3) z.fill(0.5); // one value everywhere
    return z;
  }
  const PARAMS: SamplingParams[] = [
    { temperature: 0 },
    { temperature: 1 },
    { temperature: 0.6 },
    { temperature: 1.7, topK: 5 },
    { temperature: 1, topK: 1 },
    { temperature: 1, topP: 0.9 },
    { temperature: 0.8, topK: 40, topP: 0.95 },
    { temperature: 1, topP: 1e-9 },
    { temperature: 2, topP: 0.5, topK: 3 },
  ];
  test('same token for every row, parameter set and draw; log-probs equal to float64 rounding', () => {
    let rows = 0;
    for (const V of [1, 2, 17, 1000, 50000])
      for (let kind = 0; kind < 4; kind++) {
        const z = row(V, V, kind);
        for (const p of PARAMS)
          for (let d = 0; d < 6; d++) {
            const a = sampleToken(z, p, new Rng(V, kind, d)),
              b = sampleTokenReference(z, p, new Rng(V, kind, d));
            expect([V, kind, p, d, a.token]).toEqual([V, kind, p, d, b.token]);
            expect(Math.abs(a.logprob - b.logprob)).toBeLessThanOrEqual(1e-12 * (1 + Math.abs(b.logprob)));
            expect(Math.abs(a.samplingLogprob - b.samplingLogprob)).toBeLessThanOrEqual(
              1e-12 * (1 + Math.abs(b.samplingLogprob)),
            );
            rows++;
          }
      }
    expect(rows).toBe(5 * 4 * PARAMS.length * 6);
  });

  test('rows of one call are independent: each equals its own single-row call', () => {
    const V = 300,
      B = 9;
    const z = new Float32Array(B * V);
    for (let b = 0; b < B; b++) z.set(row(V, 40 + b, b % 3), b * V);
    const u = Float64Array.from({ length: B }, (_, b) => (b + 0.5) / B);
    const all = addon.sampleRows(z, B, V, 0.9, 20, 0.9, u);
    for (let b = 0; b < B; b++) {
      const one = addon.sampleRows(z.subarray(b * V, (b + 1) * V), 1, V, 0.9, 20, 0.9, u.subarray(b, b + 1));
      expect([b, all.tokens[b], all.logprobs[b]]).toEqual([b, one.tokens[0], one.logprobs[0]]);
    }
  });

  test('bad arguments: typed errors naming them, the row of a bad logit', () => {
    const z = new Float32Array(8);
    const u = new Float64Array(2);
    expect(() => addon.sampleRows(z as unknown as Float32Array, 2, 3, 1, 0, 1, u)).toThrow(
      /^logits: length must be B × V = 6/,
    );
    expect(() => addon.sampleRows(Array.from(z) as unknown as Float32Array, 2, 4, 1, 0, 1, u)).toThrow(
      /^logits: must be a Float32Array/,
    );
    expect(() => addon.sampleRows(z, 2, 4, -1, 0, 1, u)).toThrow(/^temperature: /);
    expect(() => addon.sampleRows(z, 2, 4, 1, 0.5, 1, u)).toThrow(/^topK: /);
    expect(() => addon.sampleRows(z, 2, 4, 1, 0, 0, u)).toThrow(/^topP: /);
    expect(() => addon.sampleRows(z, 2, 4, 1, 0, 1, new Float64Array([0, 1]))).toThrow(
      /^u: u\[1\] must be in \[0, 1\)/,
    );
    expect(() => addon.sampleRows(z, 2, 4, 1, 0, 1, new Float64Array(3))).toThrow(/^u: length must be B = 2/);
    const bad = new Float32Array(8);
    bad[6] = NaN;
    expect(() => addon.sampleRows(bad, 2, 4, 1, 0, 1, u)).toThrow(/^logits: row 1: logits\[2\] = NaN/);
  });
});

describe('generate (fake model)', () => {
  test('prefill once per prompt (B=1), broadcast to K rows, one decode per step; shapes and finish reasons', async () => {
    const m = new FakeModel(V);
    const res = await generate(m, tok, ['ab', 'c=1'], { k: 3, maxNewTokens: 6, seed: 1, stopTokens: [] });
    expect(res.length).toBe(2);
    expect(Array.from(res[1].promptIds)).toEqual([id('c'), id('='), id('1')]);
    expect(m.calls).toEqual([
      'new(1,8)',
      'prefill(1,2)',
      'new(3,8)',
      'broadcast(0→3)',
      ...Array(5).fill('decode'),
      'new(1,9)',
      'prefill(1,3)',
      'new(3,9)',
      'broadcast(0→3)',
      ...Array(5).fill('decode'),
    ]);
    expect(m.caches.every((c) => c.freed)).toBe(true);
    for (const r of res)
      for (const s of r.samples) {
        expect(s.ids.length).toBe(6);
        expect(s.logprobs.length).toBe(6);
        expect(s.samplingLogprobs.length).toBe(6);
        expect(s.finishReason).toBe('length');
        expect(s.text).toBe(tok.decode(s.ids, { skipSpecialTokens: true }));
      }
  });

  test("per-token logprobs are log_softmax of the model's logits for the row's own history", async () => {
    const m = new FakeModel(V);
    const [r] = await generate(m, tok, ['a1'], {
      k: 4,
      maxNewTokens: 8,
      seed: 3,
      temperature: 0.8,
      topK: 10,
      stopTokens: [],
    });
    for (const s of r.samples) {
      const hist = Array.from(r.promptIds);
      s.ids.forEach((t, i) => {
        const z = m.logitsOf(hist);
        const mx = Math.max(...z);
        const lse = mx + Math.log(z.reduce((a, x) => a + Math.exp(x - mx), 0));
        expect(s.logprobs[i]).toBeCloseTo(z[t] - lse, 5);
        expect(Math.exp(s.samplingLogprobs[i])).toBeCloseTo(samplingProbs(z, { temperature: 0.8, topK: 10 })[t], 5);
        hist.push(t);
      });
    }
  });

  test('greedy equals step-by-step argmax over full histories; all K rows identical', async () => {
    const m = new FakeModel(V);
    const [r] = await generate(m, tok, ['ab'], { k: 3, maxNewTokens: 10, temperature: 0, stopTokens: [] });
    const hist = [id('a'), id('b')];
    for (let i = 0; i < 10; i++) {
      const z = m.logitsOf(hist);
      hist.push(z.indexOf(Math.max(...z)));
    }
    for (const s of r.samples) {
      expect(Array.from(s.ids)).toEqual(hist.slice(2));
      expect(Array.from(s.samplingLogprobs)).toEqual(Array(10).fill(0));
    }
  });

  test('deterministic for a seed; another seed differs; samples within a prompt differ', async () => {
    const opts = { k: 4, maxNewTokens: 12, seed: 123, stopTokens: [] };
    const a = await generate(new FakeModel(V), tok, ['ab', 'cd'], opts);
    const b = await generate(new FakeModel(V), tok, ['ab', 'cd'], opts);
    expect(b).toEqual(a);
    const c = await generate(new FakeModel(V), tok, ['ab', 'cd'], { ...opts, seed: 124 });
    expect(c.map((r) => r.samples.map((s) => s.text))).not.toEqual(a.map((r) => r.samples.map((s) => s.text)));
    expect(new Set(a[0].samples.map((s) => s.text)).size).toBeGreaterThan(1);
  });

  test('a sample does not depend on K, the other prompts, broadcast vs repeated prefill, or async models', async () => {
    const opts = { maxNewTokens: 10, seed: 77, topP: 0.9, stopTokens: [EOS] };
    const full = await generate(new FakeModel(V), tok, ['ab', 'cd', 'ef'], { ...opts, k: 4 });
    const one = await generate(new FakeModel(V), tok, ['ef'], { ...opts, k: 2, promptKeys: [2] });
    expect(one[0].samples).toEqual(full[2].samples.slice(0, 2));
    const noBroadcast = new FakeModel(V, undefined, { broadcast: false });
    const nb = await generate(noBroadcast, tok, ['ab', 'cd', 'ef'], { ...opts, k: 4 });
    expect(nb).toEqual(full);
    expect(noBroadcast.calls.slice(0, 3)).toEqual(['new(1,12)', 'new(4,12)', 'prefill(4,2)']); // the 1-row cache only probes for copyRows
    expect(
      await generate(new FakeModel(V, undefined, { async: true }), tok, ['ab', 'cd', 'ef'], { ...opts, k: 4 }),
    ).toEqual(full);
    const native = new FakeModel(V, undefined, { cacheMethods: true });
    expect(await generate(native, tok, ['ab', 'cd', 'ef'], { ...opts, k: 4 })).toEqual(full);
    expect(native.calls.slice(0, 4)).toEqual(['new(1,12)', 'prefill(1,2)', 'new(4,12)', 'copyRows(0→0+4)']);
    const ids = await generate(new FakeModel(V), tok, [tok.encode('cd')], { ...opts, k: 4, promptKeys: [1] });
    expect(ids[0].samples).toEqual(full[1].samples);
  });

  test('stop tokens end rows individually; the others keep decoding', async () => {
    // 'a' can only be the 2nd new token, and EOS (almost surely) follows 'a': rows that draw 'a' stop one step
    // later with ids [x, 'a', EOS]; the others never see EOS and run to maxNewTokens.
    const base = hashLogits(V);
    const logitsOf = (h: readonly number[]) => {
      const z = base(h);
      if (h[h.length - 1] === id('a')) {
        z.fill(-20);
        z[EOS] = 20;
      } // after 'a' → EOS
      else {
        z[EOS] = -20;
        z[id('a')] = h.length === 3 ? 3.5 : -20;
      } // 'a' possible only as the 2nd new token
      return z;
    };
    const m = new FakeModel(V, logitsOf);
    const [r] = await generate(m, tok, ['bc'], { k: 8, maxNewTokens: 6, seed: 5 }); // stopTokens default: tokenizer eos
    const stopped = r.samples.filter((s) => s.finishReason === 'stop');
    const ran = r.samples.filter((s) => s.finishReason === 'length');
    expect(stopped.length).toBeGreaterThan(0);
    expect(ran.length).toBeGreaterThan(0);
    for (const s of stopped) {
      expect(Array.from(s.ids.slice(1))).toEqual([id('a'), EOS]);
      expect(s.stop).toBe(EOS);
      expect(s.text).toBe(tok.decode(s.ids.slice(0, 2)));
      expect(s.logprobs[2]).toBeGreaterThan(-1e-6); // p(EOS) ≈ 1
    }
    for (const s of ran) {
      expect(s.ids.length).toBe(6);
      expect(s.ids).not.toContain(EOS);
      expect(s.stop).toBeUndefined();
    }
    expect(m.calls.filter((c) => c === 'decode').length).toBe(5);
  });

  test('all rows stopping early ends the loop', async () => {
    const m = new FakeModel(V, (h) => {
      const z = new Float32Array(V).fill(-5);
      z[h.length >= 4 ? EOS : id('1')] = 5;
      return z;
    });
    const [r] = await generate(m, tok, ['ab'], { k: 2, maxNewTokens: 50, temperature: 0 });
    for (const s of r.samples) {
      expect(Array.from(s.ids)).toEqual([id('1'), id('1'), EOS]);
      expect(s.finishReason).toBe('stop');
      expect(s.text).toBe('11');
    }
    expect(m.calls.filter((c) => c === 'decode').length).toBe(2);
  });

  test('stop strings: the row stops at the token that completes the string, text includes it', async () => {
    const seq = [...'12+3=45'].map(id);
    const m = new FakeModel(V, (h) => {
      const z = new Float32Array(V).fill(-5);
      z[seq[(h.length - 2) % seq.length]] = 5;
      return z;
    });
    const [r] = await generate(m, tok, ['ab'], { k: 1, maxNewTokens: 20, temperature: 0, stopStrings: ['3=', 'zz'] });
    expect(r.samples[0].text).toBe('12+3=');
    expect(r.samples[0].finishReason).toBe('stop');
    expect(r.samples[0].stop).toBe('3=');
    const [r2] = await generate(m, tok, ['ab'], { k: 1, maxNewTokens: 4, temperature: 0, stopStrings: ['3='] });
    expect(r2.samples[0]).toMatchObject({ text: '12+3', finishReason: 'length' });
  });

  test('caches are released when the model throws (model-level and cache-level free)', async () => {
    for (const opts of [{}, { cacheMethods: true }, { broadcast: false }]) {
      let n = 0;
      const m = new FakeModel(
        V,
        (h) => {
          if (++n === 4) throw new Error('boom');
          return hashLogits(V)(h);
        },
        opts,
      );
      await expect(generate(m, tok, ['ab'], { k: 2, maxNewTokens: 8, stopTokens: [] })).rejects.toThrow('boom');
      expect(m.caches.length).toBeGreaterThan(0);
      expect(m.caches.every((c) => c.freed)).toBe(true);
    }
  });

  test('bad arguments', async () => {
    const m = new FakeModel(V, undefined, { maxPos: 10 });
    await expect(generate(m, tok, ['ab'], { maxNewTokens: 9 })).rejects.toThrow(/max_position_embeddings 10/);
    await expect(generate(m, tok, [''], { maxNewTokens: 2 })).rejects.toThrow(/prompts\[0\] has no tokens/);
    await expect(generate(m, tok, [new Int32Array([V])], { maxNewTokens: 2 })).rejects.toThrow(
      /outside \[0, vocab_size/,
    );
    await expect(generate(m, tok, ['ab'], { maxNewTokens: 0 })).rejects.toThrow(/maxNewTokens/);
    await expect(generate(m, tok, ['ab'], { maxNewTokens: 2, k: 0 })).rejects.toThrow(/k:/);
    await expect(generate(m, tok, ['ab'], { maxNewTokens: 2, topP: 2 })).rejects.toThrow(/topP/);
    await expect(generate(m, tok, ['ab'], { maxNewTokens: 2, stopStrings: [''] })).rejects.toThrow(/stopStrings/);
    await expect(generate(m, tok, ['ab'], { maxNewTokens: 2, promptKeys: [1, 2] })).rejects.toThrow(/promptKeys/);
    await expect(generate(m, tok, [[1, 2] as never], { maxNewTokens: 2 })).rejects.toThrow(TypeError);
  });
});

describe('generate: continuous batching (fake model with decodeRows)', () => {
  // EOS after '7' (and never otherwise): rows stop at different steps, so slots free up and refill mid-run.
  const base = hashLogits(V);
  const stopping = (h: readonly number[]) => {
    const z = base(h);
    if (h[h.length - 1] === id('7')) {
      z.fill(-20);
      z[EOS] = 20;
    } else z[EOS] = -20;
    return z;
  };
  const prompts = ['ab', 'c=12', 'd', '3+4 5', 'ee', 'j'];
  const opts = { k: 3, maxNewTokens: 9, seed: 31, topP: 0.95, stopStrings: ['5='] };

  test('the same samples as one prompt at a time, for any maxBatchRows, sync or async; finished rows are refilled', async () => {
    const ref = await generate(new FakeModel(V, stopping), tok, prompts, { ...opts, batching: 'per-prompt' });
    expect(ref.flatMap((r) => r.samples.map((x) => x.finishReason))).toContain('stop');
    expect(ref.flatMap((r) => r.samples.map((x) => x.finishReason))).toContain('length');
    for (const maxBatchRows of [1, 2, 4, 7, 18, 100]) {
      for (const async of [false, true]) {
        const m = new FakeModel(V, stopping, { rows: true, async });
        const got = await generate(m, tok, prompts, { ...opts, maxBatchRows });
        expect(got).toEqual(ref);
        const rows = Math.min(maxBatchRows, prompts.length * 3);
        expect(m.calls[0]).toBe(`new(${rows},14)`); // the batch cache first: the longest prompt (5) + maxNewTokens
        expect(m.calls.filter((c) => c.startsWith('new(')).slice(1)).toEqual(Array(prompts.length).fill('new(1,14)'));
        expect(m.calls.filter((c) => c.startsWith('prefill(1,')).length).toBe(prompts.length); // each prompt prefilled once
        expect(m.calls.filter((c) => c.startsWith('decode'))).not.toContain('decode'); // never the one-prompt decode
        expect(Math.max(...m.rowCalls.map((r) => r.length))).toBeLessThanOrEqual(rows);
        expect(m.caches.every((c) => c.freed)).toBe(true);
      }
    }
    // With 4 rows the 18 samples share slots: a freed slot is reset and then takes a later sample, and rows of
    // different prompts are decoded in one call.
    const m = new FakeModel(V, stopping, { rows: true });
    await generate(m, tok, prompts, { ...opts, maxBatchRows: 4 });
    const resets = m.calls.filter((c) => c.startsWith('resetRows('));
    expect(resets).toHaveLength(18);
    const firstReset = m.calls.findIndex((c) => c.startsWith('resetRows('));
    expect(m.calls.slice(firstReset).some((c) => c.startsWith('copyRows('))).toBe(true);
    const batch = m.caches.find((c) => c.B === 4)!;
    expect(batch.rows.every((r) => r.length === 0)).toBe(true); // every slot freed at the end
    expect(m.rowCalls.some((r) => r.length === 4)).toBe(true);
  });

  test('onToken reports every token with the logits row it was drawn from; onPromptDone once per prompt', async () => {
    for (const batching of ['continuous', 'per-prompt'] as const) {
      const m = new FakeModel(V, stopping, { rows: true });
      const seen = prompts.map(() => [[], [], []] as number[][]);
      const done: number[] = [];
      const res = await generate(m, tok, prompts, {
        ...opts,
        batching,
        maxBatchRows: 5,
        onToken: (e) => {
          const hist = [...tok.encode(prompts[e.prompt]), ...seen[e.prompt][e.sample]];
          expect(Array.from(e.logits)).toEqual(Array.from(stopping(hist)));
          seen[e.prompt][e.sample].push(e.token);
        },
        onPromptDone: async (p, r) => {
          expect(r.samples.every((x) => x !== undefined)).toBe(true);
          await new Promise((ok) => setImmediate(ok));
          done.push(p);
        },
      });
      expect(seen).toEqual(res.map((r) => r.samples.map((x) => Array.from(x.ids))));
      expect([...done].sort()).toEqual([0, 1, 2, 3, 4, 5]);
    }
  });

  test('caches are released when the model or a callback throws; bad options are typed errors naming them', async () => {
    let n = 0;
    const m = new FakeModel(
      V,
      (h) => {
        if (++n === 20) throw new Error('boom');
        return base(h);
      },
      { rows: true },
    );
    await expect(generate(m, tok, prompts, { ...opts, maxBatchRows: 4 })).rejects.toThrow('boom');
    expect(m.caches.length).toBeGreaterThan(1);
    expect(m.caches.every((c) => c.freed)).toBe(true);
    const m2 = new FakeModel(V, stopping, { rows: true });
    await expect(
      generate(m2, tok, prompts, {
        ...opts,
        maxBatchRows: 4,
        onPromptDone: () => {
          throw new Error('stop here');
        },
      }),
    ).rejects.toThrow('stop here');
    expect(m2.caches.every((c) => c.freed)).toBe(true);
    const plain = new FakeModel(V);
    await expect(generate(plain, tok, ['ab'], { maxNewTokens: 2, batching: 'continuous' })).rejects.toThrow(
      /^batching: 'continuous' needs a model with decodeRows/,
    );
    await expect(generate(m2, tok, ['ab'], { maxNewTokens: 2, batching: 'yes' as never })).rejects.toThrow(RangeError);
    for (const bad of [0, 1.5, -1, 2 ** 31])
      await expect(generate(m2, tok, ['ab'], { maxNewTokens: 2, maxBatchRows: bad })).rejects.toThrow(
        /^maxBatchRows: /,
      );
    await expect(generate(m2, tok, ['ab'], { maxNewTokens: 2, maxKvBytes: 0 })).rejects.toThrow(/^maxKvBytes: /);
    await expect(generate(m2, tok, ['ab'], { maxNewTokens: 2, onToken: 1 as never })).rejects.toThrow(
      /^onToken: must be a function/,
    );
    // a model whose caches cannot move rows
    const noRows = new FakeModel(V);
    (noRows as { decodeRows?: unknown }).decodeRows = () => new Float32Array(V);
    await expect(generate(noRows, tok, ['ab'], { maxNewTokens: 2 })).rejects.toThrow(/copyRows\(\) and resetRows\(\)/);
    expect(noRows.caches.every((c) => c.freed)).toBe(true);
  });

  test('maxKvBytes bounds the rows from the config (2 · layers · kv heads · head_dim · 4 bytes a position)', async () => {
    const m = new FakeModel(V, stopping, { rows: true });
    Object.assign(m.config, { num_hidden_layers: 2, num_key_value_heads: 1, head_dim: 8 }); // 128 bytes a position
    const capacity = 5 + 9; // the longest prompt + maxNewTokens
    await generate(m, tok, prompts, { ...opts, maxKvBytes: 3 * capacity * 128 });
    expect(m.calls[0]).toBe(`new(3,${capacity})`);
    const m1 = new FakeModel(V, stopping, { rows: true });
    Object.assign(m1.config, { num_hidden_layers: 2, num_key_value_heads: 1, head_dim: 8 });
    await generate(m1, tok, prompts, { ...opts, maxKvBytes: 1 });
    expect(m1.calls[0]).toBe(`new(1,${capacity})`); // never below one row
    expect(m1.rowCalls.every((r) => r.length === 1)).toBe(true);
  });
});

// ---- the native engine ---------------------------------------------------------------------------------------------

describe('generate on the native engine (tiny-qwen2)', () => {
  // tiny-qwen2 has vocab 96 and no tokenizer: 95 printable ASCII characters + one special.
  const ascii = Array.from({ length: 95 }, (_, i) => String.fromCharCode(32 + i));
  const qtok = new Tokenizer(makeCharTokenizer(ascii, ['<eos>'], { eos: '<eos>' }).tokenizer, { eos_token: '<eos>' });
  const model = Model.load(path.join(__dirname, 'fixtures', 'parity', 'tiny-qwen2'));

  test('deterministic for a seed; K samples differ; caches broadcast with copyRows', async () => {
    expect(qtok.vocabSize).toBe(model.config.vocab_size);
    const opts = { k: 4, maxNewTokens: 16, seed: 2024, temperature: 1, topP: 0.95, stopTokens: [] };
    const a = await generate(model, qtok, ['What is 2+2?', 'x'], opts);
    const b = await generate(model, qtok, ['What is 2+2?', 'x'], opts);
    expect(b).toEqual(a);
    expect(new Set(a[0].samples.map((s) => s.text)).size).toBeGreaterThan(1);
    const alone = await generate(model, qtok, ['x'], { ...opts, k: 2, promptKeys: [1] });
    expect(alone[0].samples.map((s) => Array.from(s.ids))).toEqual(
      a[1].samples.slice(0, 2).map((s) => Array.from(s.ids)),
    );
  });

  test('continuous batching gives the tokens of one prompt at a time (log-probs to float rounding)', async () => {
    const prompts = ['What is 2+2?', 'x', 'The quick brown fox', '7*8=', 'Hello, world', 'a'];
    const opts = { k: 4, maxNewTokens: 24, seed: 99, temperature: 1.1, topK: 40, stopTokens: [qtok.encode('.')[0]] };
    const ref = await generate(model, qtok, prompts, { ...opts, batching: 'per-prompt' });
    expect(ref.flatMap((r) => r.samples.map((x) => x.finishReason))).toEqual(
      expect.arrayContaining(['stop', 'length']),
    );
    for (const maxBatchRows of [3, 10, 64]) {
      const got = await generate(model, qtok, prompts, { ...opts, maxBatchRows });
      expect(got.map((r) => r.samples.map((x) => x.text))).toEqual(ref.map((r) => r.samples.map((x) => x.text)));
      got.forEach((r, p) =>
        r.samples.forEach((x, i) => {
          expect(Array.from(x.ids)).toEqual(Array.from(ref[p].samples[i].ids));
          x.logprobs.forEach((lp, j) => expect(Math.abs(lp - ref[p].samples[i].logprobs[j])).toBeLessThan(1e-5));
        }),
      );
    }
  });

  test('greedy with the KV cache equals argmax of full forwards; logprobs match full-forward log_softmax', async () => {
    const V = model.config.vocab_size;
    const [r] = await generate(model, qtok, ['The quick brown'], {
      k: 2,
      maxNewTokens: 20,
      temperature: 0,
      stopTokens: [],
    });
    const s = r.samples[0];
    expect(Array.from(r.samples[1].ids)).toEqual(Array.from(s.ids));
    const all = Int32Array.from([...r.promptIds, ...s.ids.subarray(0, s.ids.length - 1)]);
    const logits = model.forward({ ids: all, B: 1, T: all.length });
    const L = r.promptIds.length;
    for (let i = 0; i < s.ids.length; i++) {
      const row = logits.subarray((L - 1 + i) * V, (L + i) * V);
      let mx = -Infinity;
      for (const x of row) mx = Math.max(mx, x);
      // the cached path's choice is the full forward's argmax (up to float32 noise on near-ties)
      expect(row[s.ids[i]]).toBeGreaterThanOrEqual(mx - 1e-4);
      let z = 0;
      for (const x of row) z += Math.exp(x - mx);
      expect(Math.abs(s.logprobs[i] - (row[s.ids[i]] - mx - Math.log(z)))).toBeLessThan(1e-4);
    }
  });
});
