// Size arithmetic on user input (issue #11 item 2): every size, offset and count computed from a config, a batch
// shape, a KV cache or a token budget is checked (RangeError naming the field and the size) instead of wrapping,
// and requests that cannot fit are refused up front instead of after seconds of allocation.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { DecoderConfig, MAX_TENSORS, modelSize, parseConfig } from '../lib/engine/checkpoint';
import { Model } from '../lib/engine/model';
import { SafetensorsFile } from '../lib/engine/safetensors';
import { lossAndGrad } from '../lib/kernels/loss';
import { checkedProduct, checkedSum } from '../lib/util/validate';
import { packUnits, planEpoch } from '../lib/train/batching';
import { Trainer } from '../lib/train/trainer';
import { fuzzConfigs } from './helpers/fuzz';

const TINY = {
  model_type: 'qwen2',
  hidden_size: 64,
  intermediate_size: 128,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  vocab_size: 100,
};

// Passes every per-field check, and its parameter count is 2^64 + 2^23: it wraps to 8,388,608 in int64, so the
// engine used to allocate a 32 MB buffer for it and write far past it (a segfault in Model.fromConfig).
const WRAPS = {
  model_type: 'llama',
  hidden_size: 4194304,
  intermediate_size: 262139,
  num_hidden_layers: 1023,
  num_attention_heads: 537297410,
  num_key_value_heads: 537297410,
  head_dim: 2,
  vocab_size: 514,
};

/** A DecoderConfig as parseConfig would build it, without its checks: what Model.fromConfig hands to the engine. */
function unchecked(json: Record<string, unknown>): DecoderConfig {
  const heads = json.num_attention_heads as number;
  return {
    model_type: 'llama',
    rms_norm_eps: 1e-6,
    rope_theta: 10000,
    tie_word_embeddings: false,
    max_position_embeddings: 64,
    attention_bias: false,
    qkv_bias: false,
    o_bias: false,
    num_key_value_heads: heads,
    head_dim: (json.head_dim as number) ?? (json.hidden_size as number) / heads,
    ...json,
    raw: {},
  } as DecoderConfig;
}

function thrown(f: () => unknown): Error {
  try {
    f();
  } catch (e) {
    return e as Error;
  }
  throw new Error('nothing was thrown');
}

describe('config.json: parseConfig checks every size it implies', () => {
  test('a parameter count past 2^53 is a RangeError naming the fields (it used to reach the engine and wrap)', () => {
    const e = thrown(() => parseConfig(WRAPS));
    expect(e).toBeInstanceOf(RangeError);
    expect(e.message).toBe(
      'config.json: 2 × num_attention_heads × head_dim × hidden_size = 2 × 537297410 × 2 × 4194304 ≈ 9.014e+15 ' +
        'exceeds 2^53 − 1 (the largest integer a JS number holds exactly)',
    );
    expect(() => Model.fromConfig(WRAPS)).toThrow(/^config\.json: 2 × num_attention_heads × head_dim × hidden_size/);
  });

  test("dimensions and heads × head_dim beyond the engine's int32 sizes", () => {
    expect(() => parseConfig({ ...TINY, hidden_size: 2 ** 32, num_attention_heads: 1 })).toThrow(
      new RangeError("config.json: hidden_size = 4294967296 exceeds 2147483647 (the engine's int32 sizes)"),
    );
    expect(() => parseConfig({ ...TINY, vocab_size: 2 ** 31 })).toThrow(
      /^config\.json: vocab_size = 2147483648 exceeds 2147483647/,
    );
    expect(() => parseConfig({ ...TINY, num_attention_heads: 65536, head_dim: 65536 })).toThrow(
      /^config\.json: num_attention_heads × head_dim = 65536 × 65536 = 4294967296 exceeds 2147483647/,
    );
  });

  test('1e6 layers are refused at once by the tensor count, not after seconds of allocation', () => {
    const t0 = Date.now();
    const e = thrown(() => Model.fromConfig({ ...TINY, num_hidden_layers: 1e6 }));
    expect(e).toBeInstanceOf(RangeError);
    expect(e.message).toBe(
      `config.json: num_hidden_layers × tensors per layer = 1000000 × 12 = 12000000 exceeds ${MAX_TENSORS} (the engine's limit on a model's tensors)`,
    );
    expect(Date.now() - t0).toBeLessThan(1000);
  });

  test("modelSize agrees with the engine's layout; big real models still parse (no machine-dependent check here)", () => {
    for (const json of [TINY, { ...TINY, model_type: 'llama', attention_bias: true, tie_word_embeddings: true }]) {
      const cfg = parseConfig(json);
      const m = Model.fromConfig(cfg, { std: 0 });
      expect(modelSize(cfg)).toEqual({ params: m.numParams, tensors: m.tensorTable().length });
    }
    // Llama-3.1-405B's shape: 4 × 4.1e11 bytes of fp32 parameters, more than most machines hold, still a valid config.
    const big = parseConfig({
      model_type: 'llama',
      hidden_size: 16384,
      intermediate_size: 53248,
      num_hidden_layers: 126,
      num_attention_heads: 128,
      num_key_value_heads: 8,
      vocab_size: 128256,
    });
    expect(modelSize(big).params).toBe(405853388800);
  });
});

describe('the engine: checked sizes and an up-front memory estimate', () => {
  test('an int64 overflow of the parameter count is a RangeError naming the fields, not a segfault', () => {
    const e = thrown(() => Model.fromConfig(unchecked(WRAPS)));
    expect(e).toBeInstanceOf(RangeError);
    expect(e.message).toMatch(
      /^num_hidden_layers × parameters per layer = 1023 × \d+ ≈ 1\.845e\+19 exceeds 2\^63 − 1 \(64-bit sizes\)$/,
    );
  });

  test('1e6 layers: refused by the tensor count at once (it used to allocate for 15 s, then "out of memory")', () => {
    const t0 = Date.now();
    const e = thrown(() => Model.fromConfig(unchecked({ ...TINY, num_hidden_layers: 1e6 })));
    expect(e).toBeInstanceOf(RangeError);
    expect(e.message).toBe(
      "num_hidden_layers × tensors per layer = 1000000 × 9 = 9000000 exceeds 1048576 (the engine's limit on a model's tensors)",
    );
    expect(Date.now() - t0).toBeLessThan(1000);
  });

  test("a model larger than this machine's memory is refused before any allocation", () => {
    const cfg = {
      ...TINY,
      hidden_size: 65536,
      num_attention_heads: 64,
      intermediate_size: 262144,
      num_hidden_layers: 1000,
    };
    const before = Model.memory().params.current;
    const e = thrown(() => Model.fromConfig(cfg));
    expect(e).toBeInstanceOf(RangeError);
    expect(e.message).toMatch(
      /^num_hidden_layers: a model of 68719817588736 parameters \(fp32\) in 12003 tensors needs 274\.9 TB, more than (this machine's memory|RIFT_MEMORY_LIMIT) \(\d+(\.\d)? (bytes|[kMGTPE]B)\)$/,
    );
    expect(Model.memory().params.current).toBe(before);
  });

  // RIFT_MEMORY_LIMIT lowers the limit; jest's process.env is a copy, so these run the addon in a child process.
  test('RIFT_MEMORY_LIMIT: models, KV caches, training activations and the inference scratch over it are refused', () => {
    const addonPath = process.env.RIFT_ADDON ?? path.resolve(__dirname, '..', 'build', 'Release', 'rift.node');
    const script = `
      const a = require(${JSON.stringify(addonPath)});
      const cfg = { vocab_size: 100, hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 4 };
      const out = {};
      const run = (k, f) => { try { f(); out[k] = 'ok'; } catch (e) { out[k] = e.name + ': ' + e.message; } };
      run('model', () => new a.Model({ ...cfg, num_hidden_layers: 40 }));
      const m = new a.Model(cfg);
      run('kv', () => m.newKvCache(64, 1024));
      run('kvSmall', () => m.newKvCache(1, 16));
      const B = 4, T = 512, ids = new Int32Array(B * T), targets = new Int32Array(B * T).fill(1);
      const offsets = Int32Array.from({ length: B + 1 }, (_, i) => i * T);
      run('train', () => m.lossAndBackward({ ids, B, T, targets, offsets, method: 0, negative: 0, reduction: 0, normalizer: 0 }));
      run('forward', () => m.forward(ids, B, T, true));
      run('trainSmall', () => m.lossAndBackward({ ids: ids.subarray(0, 8), B: 1, T: 8, targets: targets.subarray(0, 8),
        offsets: new Int32Array([0, 8]), method: 0, negative: 0, reduction: 0, normalizer: 0 }));
      console.log(JSON.stringify(out));`;
    const r = spawnSync(process.execPath, ['-e', script], {
      env: { ...process.env, RIFT_MEMORY_LIMIT: '2000000' },
      encoding: 'utf8',
    });
    expect(r.stderr).toBe('');
    const out = JSON.parse(r.stdout);
    expect(out.model).toMatch(
      /^RangeError: num_hidden_layers: a model of 1656384 parameters \(fp32\) in 363 tensors needs 6\.7 MB, more than RIFT_MEMORY_LIMIT \(2\.0 MB\)$/,
    );
    expect(out.kv).toBe(
      'RangeError: Tmax: a KV cache of B × Tmax = 64 × 1024 positions needs 67.1 MB, more than RIFT_MEMORY_LIMIT (2.0 MB)',
    );
    expect(out.train).toMatch(
      /^RangeError: T: the training activations for B × T = 2048 tokens needs \d+\.\d MB, more than RIFT_MEMORY_LIMIT \(2\.0 MB\)$/,
    );
    expect(out.forward).toMatch(
      /^RangeError: T: the inference scratch for B × T = 2048 tokens needs \d+\.\d MB, more than RIFT_MEMORY_LIMIT/,
    );
    expect([out.kvSmall, out.trainSmall]).toEqual(['ok', 'ok']);
  });
});

describe('batch shapes, loss shapes, token budgets', () => {
  test('rows × vocab past 2^53 is named, not compared as an inexact number', () => {
    const e = thrown(() =>
      lossAndGrad({
        logits: new Float32Array(4),
        rows: 2 ** 31 - 1,
        vocab: 2 ** 31 - 1,
        targets: new Int32Array(0),
        offsets: new Int32Array([0]),
        method: 'sft',
      }),
    );
    expect(e).toBeInstanceOf(RangeError);
    expect(e.message).toBe(
      'logits: rows × vocab = 2147483647 × 2147483647 ≈ 4.612e+18 exceeds 2^53 − 1 (the largest integer a JS number holds exactly)',
    );
  });

  test('Model.forward / prefill: B × T past 2^53 is named', () => {
    const m = Model.fromConfig(TINY, { std: 0 });
    expect(() => m.forward(new Int32Array(4), 2 ** 31 - 1, 2 ** 31 - 1)).toThrow(
      /^T: B × T = 2147483647 × 2147483647 ≈ 4\.612e\+18 exceeds 2\^53 − 1/,
    );
    const cache = m.newKvCache(1, 8);
    expect(() => m.prefill(cache, new Int32Array(4), 2 ** 31 - 1, 2 ** 31 - 1)).toThrow(
      /^T: B × T = .* exceeds 2\^53 − 1/,
    );
    cache.free();
  });

  test("tokenBudget beyond the engine's 2^31 − 1 rows is refused up front (packUnits, planEpoch, Trainer)", () => {
    const e = {
      problemId: 'p',
      sampleIndex: 0,
      promptIds: new Int32Array([1, 2]),
      responseIds: new Int32Array([3]),
      reward: 1,
    };
    const units = [[e]] as unknown as Parameters<typeof packUnits>[0];
    expect(packUnits(units, { tokenBudget: 2 ** 31 - 1 })).toHaveLength(1);
    expect(() => packUnits(units, { tokenBudget: 2 ** 31 })).toThrow(
      new RangeError('tokenBudget: must be an integer in [1, 2147483647], got 2147483648'),
    );
    expect(() =>
      planEpoch(units as unknown as Parameters<typeof planEpoch>[0], 0, { tokenBudget: 2 ** 40, seed: 1 }),
    ).toThrow(/^tokenBudget: must be an integer in \[1, 2147483647\]/);
    expect(
      () => new Trainer(Model.fromConfig(TINY, { std: 0 }), { method: 'rift', lr: 1e-3, tokenBudget: 2 ** 53 }),
    ).toThrow(/^tokenBudget: /);
  });
});

describe('helpers', () => {
  test('checkedProduct / checkedSum: exact results, a zero factor wins, inexact or too large is a RangeError', () => {
    expect(
      checkedProduct('x', [
        ['a', 3],
        ['b', 5],
      ]),
    ).toBe(15);
    expect(
      checkedProduct('x', [
        ['a', 2 ** 52],
        ['b', 0],
        ['c', 2 ** 52],
      ]),
    ).toBe(0);
    expect(
      checkedSum('x', [
        ['a', 2 ** 52],
        ['b', 2 ** 52 - 1],
      ]),
    ).toBe(2 ** 53 - 1);
    expect(() =>
      checkedSum('x', [
        ['a', 2 ** 52],
        ['b', 2 ** 52],
      ]),
    ).toThrow(/^x: a \+ b = 4503599627370496 \+ 4503599627370496 ≈ 9\.007e\+15 exceeds 2\^53 − 1/);
    expect(() =>
      checkedProduct(
        'x',
        [
          ['a', 3],
          ['b', 5],
        ],
        14,
        'fourteen',
      ),
    ).toThrow(new RangeError('x: a × b = 3 × 5 = 15 exceeds fourteen'));
    expect(() => checkedProduct('x', [['a', -1]])).toThrow(/^x: a must be a non-negative integer/);
  });

  test('safetensors: a zero dimension next to dimensions whose product is not finite has 0 elements (not NaN)', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rift-sizes-'));
    try {
      const header = JSON.stringify({
        z: { dtype: 'F32', shape: [...new Array(20).fill(2 ** 53 - 1), 0], data_offsets: [0, 0] },
      });
      const file = path.join(dir, 'z.safetensors');
      const buf = Buffer.alloc(8 + header.length);
      buf.writeBigUInt64LE(BigInt(header.length), 0);
      buf.write(header, 8);
      fs.writeFileSync(file, buf);
      const f = SafetensorsFile.open(file);
      const out = new Float32Array(0);
      expect(f.readFloat32('z', out)).toBe(out);
      f.close();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

// RIFT_FUZZ_N / RIFT_FUZZ_SEED run a longer campaign (scripts/fuzz.sh: millions under ASan + UBSan, with
// RIFT_MEMORY_LIMIT so that every engine call is made); CI runs this slice.
const FUZZ_N = Number(process.env.RIFT_FUZZ_N ?? 5000);
const FUZZ_SEED = Number(process.env.RIFT_FUZZ_SEED ?? 20261211);
test(`fuzz: ${FUZZ_N} config.json objects (seed ${FUZZ_SEED}) through parseConfig and the engine match a BigInt oracle, never crash`, async () => {
  const r = await fuzzConfigs(FUZZ_N, FUZZ_SEED);
  console.log(
    `config fuzz (seed ${FUZZ_SEED}): ${r.inputs} inputs (${r.parsed} parsed; engine: ${r.built} built with the oracle's sizes, ` +
      `${r.rejected} refused with a typed error, ${r.caches} KV caches, ${r.skipped} calls skipped as too big to run here), 0 crashes, ${r.ms} ms`,
  );
  expect(r.parsed).toBeGreaterThan(FUZZ_N / 50);
  expect(r.built).toBeGreaterThan(FUZZ_N / 50);
  expect(r.rejected).toBeGreaterThan(FUZZ_N / 4);
});
