// bench/gpu-parity.ts: the engine-vs-HF comparison that scripts/device-check.sh runs on the GPU against
// scripts/hf_parity.py's output. Here it runs on a reference made from the checked-in HF fixtures
// (test/fixtures/parity, referenceFromFixture) on the CPU — and on CUDA too when a device is present — and must
// fail when a gradient (engine side or reference side), the loss or a logit is wrong.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import {
  compareTensor,
  DEFAULT_TOLERANCES,
  parityTable,
  readReferenceMeta,
  referenceFromFixture,
  runParity,
  writeParityResult,
} from '../bench/gpu-parity';
import { benchTrainCuda, BENCH_CONFIG } from '../bench/train';
import { Model } from '../lib/engine/model';
import { readSafetensors, writeSafetensors } from '../lib/engine/safetensors';

const FIX = path.join(__dirname, 'fixtures', 'parity');
const hasCuda = Model.devices().includes('cuda');
const silent = () => undefined;

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rift-gpu-parity-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function makeRef(name: string): string {
  const dir = path.join(tmp, name);
  if (!fs.existsSync(path.join(dir, 'ref.json'))) referenceFromFixture(path.join(FIX, name), dir);
  return dir;
}

/** A copy of a reference directory with ref.safetensors rewritten through `edit`. */
function editedRef(src: string, dst: string, edit: (name: string, data: Float32Array) => void): string {
  fs.mkdirSync(path.join(dst, 'model'), { recursive: true });
  for (const f of ['config.json', 'model.safetensors'])
    fs.copyFileSync(path.join(src, 'model', f), path.join(dst, 'model', f));
  fs.copyFileSync(path.join(src, 'ref.json'), path.join(dst, 'ref.json'));
  const { tensors, metadata } = readSafetensors(path.join(src, 'ref.safetensors'));
  const list = [...tensors].map(([name, t]) => {
    const data = Float32Array.from(t.data);
    edit(name, data);
    return { name, shape: t.shape, data };
  });
  writeSafetensors(path.join(dst, 'ref.safetensors'), list, { metadata });
  return dst;
}

describe('the reference made from the HF fixture', () => {
  test('holds the fixture batch with the engine target convention', () => {
    const dir = makeRef('tiny-qwen2');
    const meta = readReferenceMeta(dir);
    expect(meta).toMatchObject({ B: 2, T: 12, prompt: 3 });
    const { tensors } = readSafetensors(path.join(dir, 'ref.safetensors'));
    const ids = tensors.get('ids')!.data,
      targets = tensors.get('targets')!.data;
    // targets[b, t] = ids[b, t+1] for t ≥ prompt − 1, −100 before and at t = T − 1
    for (let b = 0; b < 2; b++)
      for (let t = 0; t < 12; t++) expect(targets[b * 12 + t]).toBe(t >= 2 && t < 11 ? ids[b * 12 + t + 1] : -100);
    expect(tensors.get('grad.model.embed_tokens.weight')!.shape).toEqual([96, 32]);
    expect(tensors.has('grad.lm_head.weight')).toBe(false); // tied
  });

  test('rejects a ref.json of another format or version', () => {
    const dir = makeRef('tiny-qwen2');
    const bad = path.join(tmp, 'bad-meta');
    fs.mkdirSync(bad, { recursive: true });
    const meta = JSON.parse(fs.readFileSync(path.join(dir, 'ref.json'), 'utf8'));
    fs.writeFileSync(path.join(bad, 'ref.json'), JSON.stringify({ ...meta, version: 2 }));
    expect(() => readReferenceMeta(bad)).toThrow(/version 2 is not supported/);
    fs.writeFileSync(path.join(bad, 'ref.json'), JSON.stringify({ ...meta, format: 'other' }));
    expect(() => readReferenceMeta(bad)).toThrow(/format is "other"/);
    fs.writeFileSync(path.join(bad, 'ref.json'), JSON.stringify({ ...meta, tolerances: { grad: -1 } }));
    expect(() => readReferenceMeta(bad)).toThrow(/tolerances.grad must be a positive number/);
  });
});

describe.each(['tiny-qwen2', 'tiny-llama'])('%s: engine vs HF', (name) => {
  const devices: ('cpu' | 'cuda')[] = hasCuda ? ['cpu', 'cuda'] : ['cpu'];

  test.each(devices)('passes on %s in fp32 with every tensor checked', (device) => {
    const dir = makeRef(name);
    const r = runParity({ dir, device, precision: 'fp32', log: silent });
    if (!r.pass) throw new Error(parityTable(r));
    expect(r.engineDevice).toBe(device);
    const grads = r.checks.filter((c) => c.kind === 'grad');
    expect(grads.length).toBe(name === 'tiny-qwen2' ? 26 : 21);
    expect(r.checks.map((c) => c.kind).sort()).toEqual(
      [...grads.map(() => 'grad'), 'logits', 'loss', 'tokenLogps'].sort(),
    );
    for (const c of r.checks) expect(c.maxAbsErr).toBeLessThanOrEqual(c.bound);
    expect(Math.abs(r.loss.engine - r.loss.reference)).toBeLessThan(1e-5 * r.loss.reference);
  });

  test('fails when one element of one engine gradient is off by 1% of its scale', () => {
    const dir = makeRef(name);
    const target = 'model.layers.1.mlp.down_proj.weight';
    const r = runParity({
      dir,
      log: silent,
      mutateGrad: (n, g) => {
        if (n !== target) return g;
        const copy = Float32Array.from(g);
        const scale = copy.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
        copy[17] += 0.01 * scale;
        return copy;
      },
    });
    expect(r.pass).toBe(false);
    expect(r.failures).toBe(1);
    const bad = r.checks.find((c) => !c.pass)!;
    expect(bad).toMatchObject({ name: target, kind: 'grad', worstIndex: 17 });
    expect(parityTable(r)).toMatch(new RegExp(`\\| ${target.replace(/\./g, '\\.')} \\| grad .* FAIL at \\[17\\]`));
  });

  test('fails when a gradient carries bf16-sized relative error (fp32 runs must not use bf16 GEMMs)', () => {
    const dir = makeRef(name);
    // a systematic error of one bf16 ulp (2^-8 relative) on every element; the bound is 1e-3 of the tensor's max
    const r = runParity({
      dir,
      log: silent,
      mutateGrad: (n, g) => (n === 'model.layers.0.self_attn.q_proj.weight' ? g.map((x) => x * (1 + 3.9e-3)) : g),
    });
    expect(r.checks.filter((c) => !c.pass).map((c) => c.name)).toEqual(['model.layers.0.self_attn.q_proj.weight']);
  });

  test('fails when the reference gradient file is corrupted', () => {
    const dir = makeRef(name);
    const bad = editedRef(dir, path.join(tmp, `${name}-bad-grad`), (n, d) => {
      if (n === 'grad.model.norm.weight') d[3] += 0.05;
    });
    const r = runParity({ dir: bad, log: silent });
    expect(r.checks.filter((c) => !c.pass).map((c) => c.name)).toEqual(['model.norm.weight']);
  });

  test('fails on a wrong logit row, a wrong loss and a missing gradient', () => {
    const dir = makeRef(name);
    const bad = editedRef(dir, path.join(tmp, `${name}-bad-rows`), (n, d) => {
      if (n === 'logits_rows') d[5 * 96 + 7] += 0.01;
    });
    expect(
      runParity({ dir: bad, log: silent })
        .checks.filter((c) => !c.pass)
        .map((c) => c.kind),
    ).toEqual(['logits']);

    const lossDir = editedRef(dir, path.join(tmp, `${name}-bad-loss`), () => undefined);
    const meta = JSON.parse(fs.readFileSync(path.join(lossDir, 'ref.json'), 'utf8'));
    fs.writeFileSync(path.join(lossDir, 'ref.json'), JSON.stringify({ ...meta, loss: meta.loss * (1 + 1e-4) }));
    expect(
      runParity({ dir: lossDir, log: silent })
        .checks.filter((c) => !c.pass)
        .map((c) => c.kind),
    ).toEqual(['loss']);

    // a reference without one gradient: that tensor fails as "missing"
    const missing = path.join(tmp, `${name}-missing`);
    editedRef(dir, missing, () => undefined);
    const { tensors } = readSafetensors(path.join(missing, 'ref.safetensors'));
    tensors.delete('grad.model.norm.weight');
    writeSafetensors(
      path.join(missing, 'ref.safetensors'),
      [...tensors].map(([n, t]) => ({ name: n, shape: t.shape, data: t.data })),
    );
    const r = runParity({ dir: missing, log: silent });
    expect(r.checks.filter((c) => !c.pass)).toEqual([
      expect.objectContaining({ name: 'model.norm.weight', note: expect.stringMatching(/missing/) }),
    ]);
  });
});

describe('compareTensor', () => {
  test('relative to the tensor max, with the floor for tiny tensors', () => {
    const want = Float32Array.of(1e-6, -2e-6, 3e-6);
    const got = Float32Array.of(1.5e-6, -2e-6, 3e-6); // 17% of its own scale
    expect(compareTensor('t', 'grad', got, want, 1e-3).pass).toBe(false);
    // judged against a model gradient scale of 1: the floor 1e-3 · 1 makes the bound 1e-6
    const c = compareTensor('t', 'grad', got, want, 1e-3, 1e-3);
    expect(c).toMatchObject({ pass: true, worstIndex: 0, bound: 1e-6 });
    expect(compareTensor('t', 'grad', Float32Array.of(2.5e-6, 0, 0), want, 1e-3, 1e-3).pass).toBe(false);
  });

  test('NaN, Inf and a length mismatch fail', () => {
    const want = Float32Array.of(1, 2, 3);
    expect(compareTensor('t', 'grad', Float32Array.of(1, NaN, 3), want, 1)).toMatchObject({
      pass: false,
      worstIndex: 1,
    });
    expect(compareTensor('t', 'grad', Float32Array.of(1, 2, Infinity), want, 1)).toMatchObject({
      pass: false,
      worstIndex: 2,
    });
    expect(compareTensor('t', 'grad', Float32Array.of(1, 2), want, 1)).toMatchObject({
      pass: false,
      note: 'length 2 != reference 3',
    });
  });

  test('relL2 and rel are reported', () => {
    const c = compareTensor('t', 'logits', Float32Array.of(3, 4.001), Float32Array.of(3, 4), 1e-3);
    expect(c.rel).toBeCloseTo(0.001 / 4, 6);
    expect(c.relL2).toBeCloseTo(0.001 / 5, 6);
    expect(c.pass).toBe(true);
  });

  test('the default tolerances separate fp32 noise from one bf16 rounding', () => {
    expect(DEFAULT_TOLERANCES.grad).toBeLessThan(2 ** -8 / 2);
  });
});

test('writeParityResult merges runs into one file per device and day', () => {
  const dir = makeRef('tiny-qwen2');
  const results = path.join(tmp, 'results');
  const r = runParity({ dir, log: silent });
  const file = writeParityResult(r, results);
  expect(path.basename(file)).toMatch(/^parity-.*-\d{4}-\d{2}-\d{2}\.json$/);
  writeParityResult({ ...r, shape: 'other' }, results);
  const doc = JSON.parse(fs.readFileSync(file, 'utf8'));
  expect(Object.keys(doc.runs).sort()).toEqual(['other/cpu/fp32', 'tiny-qwen2/cpu/fp32']);
  expect(doc.runs['tiny-qwen2/cpu/fp32']).toMatchObject({ pass: true, failures: 0, B: 2, T: 12 });
  expect(doc.runs['tiny-qwen2/cpu/fp32'].table).toMatch(/PASS/);
});

describe('the engine-cuda benchmark (bench/train.ts benchTrainCuda)', () => {
  (hasCuda ? test.skip : test)('skips cleanly without CUDA', async () => {
    const r = await benchTrainCuda({ log: silent });
    expect(r.rows).toEqual([]);
    expect(r.skipped).toMatch(/CUDA/);
  });

  test('runs its whole path on the CPU with a small config: step, sampling, RIFT vs DPO-held memory', async () => {
    const config = {
      ...BENCH_CONFIG,
      vocab_size: 512,
      hidden_size: 64,
      intermediate_size: 128,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      num_key_value_heads: 2,
    };
    const r = await benchTrainCuda({
      device: 'cpu',
      config,
      T: 64,
      steps: 2,
      memT: 32,
      prompts: 2,
      k: 2,
      maxNewTokens: 8,
      log: silent,
    });
    expect(r.skipped).toBeUndefined();
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- the rows are heterogeneous JSON records
    const [train, one, sampling, widen, mem] = r.rows as Record<string, any>[];
    expect(train).toMatchObject({
      name: 'cpu train step (sft)',
      device: 'cpu',
      precision: 'bf16',
      B: 1,
      T: 64,
      tokensPerStep: 64,
    });
    expect(train.stepMsAll).toHaveLength(2);
    expect(Number.isFinite(train.loss) && train.tokensPerSec > 0).toBe(true);
    expect(train.mfu6P).toBeNull(); // no datasheet peak for a CPU
    expect(one).toMatchObject({ name: 'cpu sampling (one prompt at a time)', generatedTokens: 2 * 2 * 8 });
    expect(sampling).toMatchObject({
      name: 'cpu sampling (continuous batching)',
      generatedTokens: 2 * 2 * 8,
      sameTokens: true,
    });
    expect(sampling.speedup).toBeGreaterThan(0);
    expect(train.bf16Direct).toBe(true); // bf16 GEMMs and bf16 activations: the producers write bf16
    expect(widen).toMatchObject({ name: 'cpu train step (sft), bf16 store-then-widen', bf16Direct: false });
    expect(widen.stepMsAll).toHaveLength(2);
    expect(widen.loss).toBe(train.loss); // the same steps, bit for bit
    expect(widen.directOverStoreThenWiden).toBeGreaterThan(0);
    expect(mem.name).toBe('cpu memory: rift vs dpo-held');
    for (const k of ['rift', 'dpo-held', 'rift+recompute', 'dpo-held+recompute']) {
      expect(mem[k].error).toBeUndefined();
      expect(mem[k].peakBytes).toBeGreaterThan(0);
      expect(mem[k].predictedBytes).toBeGreaterThan(0);
    }
    // the held reference model's parameters alone make DPO-held bigger
    expect(mem.ratio).toBeGreaterThan(0);
    expect(mem.ratio).toBeLessThan(1);
    expect(mem['dpo-held'].byCategoryMB.reference).toBeGreaterThan(0);
    expect(mem.rift.byCategoryMB.reference).toBe(0);
    expect(mem['rift+recompute'].byCategoryMB.activations).toBeLessThan(mem.rift.byCategoryMB.activations);
  });
});
