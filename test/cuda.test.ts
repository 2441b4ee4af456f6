// CUDA device tensors (and, when present, the CUDA loss against the CPU loss). Runs its GPU part only where the
// addon was built with CUDA and a device is present; elsewhere it checks that CUDA reports itself unavailable.
import * as fs from 'fs';
import * as path from 'path';
import { cuda, DeviceTensor } from '../lib/kernels/device';
import { addon } from '../lib/native';
import { f32ToBf16, bf16ToF32 } from '../lib/kernels/bf16';

const gpu = cuda.isAvailable();
const d = gpu ? describe : describe.skip;

test('cuda.isAvailable() is consistent with DeviceTensor construction', () => {
  if (gpu) {
    expect(cuda.devices().length).toBeGreaterThan(0);
    const t = DeviceTensor.empty(4, 'fp32');
    t.free();
    const old = DeviceTensor.empty(4, 'f32'); // deprecated spelling: the same tensor, its dtype read as 'fp32'
    expect([old.dtype, old.length]).toEqual(['fp32', 4]);
    old.free();
  } else {
    expect(cuda.isAvailable()).toBe(false);
    expect(cuda.devices()).toEqual([]);
    expect(() => cuda.synchronize()).not.toThrow();
    expect(() => DeviceTensor.empty(4, 'fp32')).toThrow(
      /CUDA is not available: (the native addon was built without CUDA|no CUDA device)/,
    );
    // the deprecated 'f32' passes the dtype check too (and reaches the same CUDA check); a bad dtype fails before it
    expect(() => DeviceTensor.empty(4, 'f32')).toThrow(/CUDA is not available/);
    expect(() => DeviceTensor.empty(4, 'float32' as never)).toThrow(RangeError);
    expect(() => DeviceTensor.fromArray(new Float32Array(4))).toThrow(Error);
  }
});

d('DeviceTensor', () => {
  test('devices() describes each device', () => {
    for (const dev of cuda.devices()) {
      expect(typeof dev.name).toBe('string');
      expect(dev.totalMemory).toBeGreaterThan(0);
      expect(dev.computeCapability).toMatch(/^\d+\.\d+$/);
      expect(dev.multiProcessors).toBeGreaterThan(0);
    }
  });

  test('f32 round trip', () => {
    const a = Float32Array.from({ length: 1000 }, (_, i) => Math.sin(i) * 100);
    const t = DeviceTensor.fromArray(a);
    expect(t.dtype).toBe('fp32');
    expect(t.length).toBe(1000);
    expect(t.native.bytes).toBe(4000);
    const b = t.download();
    expect(b).toBeInstanceOf(Float32Array);
    expect(Array.from(b)).toEqual(Array.from(a));
    t.free();
  });

  test('bf16 round trip', () => {
    const a = f32ToBf16(Float32Array.from({ length: 777 }, (_, i) => Math.cos(i) * 10));
    const t = DeviceTensor.fromArray(a);
    expect(t.dtype).toBe('bf16');
    expect(t.length).toBe(777);
    const b = t.download();
    expect(b).toBeInstanceOf(Uint16Array);
    expect(Array.from(b)).toEqual(Array.from(a));
    t.free();
  });

  test('empty tensors and upload', () => {
    const t = DeviceTensor.empty(8, 'bf16');
    t.upload(new Uint16Array(8).fill(0x3f80));
    expect(Array.from(bf16ToF32(t.download() as Uint16Array))).toEqual(new Array(8).fill(1));
    t.free();
    const z = DeviceTensor.empty(0, 'fp32');
    expect(z.download().length).toBe(0);
    z.free();
  });

  test('use after free throws; free is idempotent', () => {
    const t = DeviceTensor.fromArray(new Float32Array(16));
    t.free();
    t.free();
    expect(t.freed).toBe(true);
    expect(() => t.download()).toThrow('DeviceTensor: used after free');
    expect(() => t.upload(new Float32Array(16))).toThrow('DeviceTensor: used after free');
  });

  test('wrong array kind is a TypeError, wrong length a RangeError', () => {
    const t = DeviceTensor.empty(16, 'fp32');
    expect(() => t.upload(new Uint16Array(16))).toThrow(TypeError);
    expect(() => t.upload(new Uint16Array(16))).toThrow(/array/);
    expect(() => t.upload(new Float32Array(15))).toThrow(RangeError);
    expect(() => t.native.download(new Float64Array(16) as unknown as Float32Array)).toThrow(/array/);
    expect(() => DeviceTensor.fromArray(new Int32Array(4) as unknown as Float32Array)).toThrow(TypeError);
    t.free();
  });

  test('bad sizes are RangeErrors naming bytes / length', () => {
    const probe = DeviceTensor.empty(4, 'fp32');
    const Native = probe.native.constructor as new (bytes: number, dtype: number) => unknown;
    probe.free();
    expect(() => new Native(1.5, 0)).toThrow(/bytes/);
    expect(() => new Native(-4, 0)).toThrow(/bytes/);
    expect(() => new Native(2 ** 60, 0)).toThrow(/bytes/);
    expect(() => new Native(6, 0)).toThrow(/bytes/);
    expect(() => new Native(4, 3)).toThrow(/dtype/);
    expect(() => DeviceTensor.empty(-1, 'fp32')).toThrow(RangeError);
  });

  test('the native loss accepts only live DeviceTensors made by the addon', () => {
    const t = DeviceTensor.fromArray(new Float32Array(8));
    const Native = t.native.constructor as { prototype: object };
    const base = {
      rows: 1,
      vocab: 8,
      targets: Int32Array.from([1]),
      offsets: Int32Array.from([0, 1]),
      method: 0,
      negative: 0,
      reduction: 0,
    };
    expect(() => addon.lossAndGrad({ ...base, logits: Object.create(Native.prototype) })).toThrow(/logits/);
    t.free();
    expect(() => addon.lossAndGrad({ ...base, logits: t.native })).toThrow(/logits/);
  });

  test('a tensor left to the garbage collector does not break later allocations', () => {
    for (let i = 0; i < 64; i++) DeviceTensor.empty(1 << 20, 'fp32');
    (globalThis as { gc?: () => void }).gc?.();
    const t = DeviceTensor.fromArray(new Float32Array(4).fill(2));
    expect(Array.from(t.download())).toEqual([2, 2, 2, 2]);
    t.free();
  });
});

// CPU vs CUDA agreement of the fused loss, when the loss API is present in this checkout.
const lossModule = path.resolve(__dirname, '..', 'lib', 'kernels', 'loss.ts');
const dl = gpu && fs.existsSync(lossModule) ? describe : describe.skip;

dl('lossAndGrad: CUDA matches CPU', () => {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { lossAndGrad } = require('../lib/kernels/loss') as typeof import('../lib/kernels/loss');

  function lcg(seed: number): () => number {
    let s = seed >>> 0;
    return () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
  }
  // rows split into 3 sequences; a few ignored rows; vocab sizes hit the vector and the scalar paths.
  function makeCase(rows: number, vocab: number, seed: number) {
    const r = lcg(seed);
    const logits = Float32Array.from({ length: rows * vocab }, () => (r() - 0.5) * 8);
    const targets = Int32Array.from({ length: rows }, (_, t) => (t % 5 === 3 ? -100 : Math.floor(r() * vocab)));
    const a = Math.floor(rows / 3),
      b = Math.floor((2 * rows) / 3);
    return { logits, targets, offsets: Int32Array.from([0, a, b, rows]), rewards: Float32Array.from([1, -0.5, 0]) };
  }
  const maxDiff = (x: ArrayLike<number>, y: ArrayLike<number>) => {
    let m = 0;
    for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i] - y[i]));
    return m;
  };

  const cases = [
    { method: 'sft', negative: 'token', vocab: 1000 },
    { method: 'dft', negative: 'token', vocab: 4096 },
    { method: 'rift', negative: 'token', vocab: 1001 },
    { method: 'rift', negative: 'sequence', vocab: 32000 },
    { method: 'naive', negative: 'token', vocab: 4096 },
    { method: 'sft', negative: 'token', vocab: 151936 },
  ] as const;
  test.each(cases)('$method/$negative V=$vocab f32 and bf16, in place and not', ({ method, negative, vocab }) => {
    const rows = vocab > 100000 ? 24 : 48;
    const c = makeCase(rows, vocab, vocab);
    for (const dtype of ['fp32', 'bf16'] as const) {
      const host = dtype === 'fp32' ? c.logits : f32ToBf16(c.logits);
      const toF = (g: Float32Array | Uint16Array) => (g instanceof Float32Array ? g : bf16ToF32(g));
      const gradCpu = dtype === 'fp32' ? new Float32Array(host.length) : new Uint16Array(host.length);
      const opts = {
        rows,
        vocab,
        targets: c.targets,
        offsets: c.offsets,
        rewards: c.rewards,
        method,
        negative,
        tokenLogps: true,
        entropy: true,
      };
      const cpu = lossAndGrad({ ...opts, logits: host, grad: gradCpu });
      for (const inPlace of [false, true]) {
        const dl = DeviceTensor.fromArray(host);
        const dg = inPlace ? dl : DeviceTensor.empty(host.length, dtype);
        const gpuOut = lossAndGrad({ ...opts, logits: dl, grad: dg });
        const g = toF(dg.download());
        expect(Math.abs(gpuOut.loss - cpu.loss)).toBeLessThan(1e-4 * Math.max(1, Math.abs(cpu.loss)));
        expect(maxDiff(gpuOut.tokenLogps!, cpu.tokenLogps!)).toBeLessThan(1e-4);
        expect(maxDiff(gpuOut.entropy!, cpu.entropy!)).toBeLessThan(1e-4);
        const gc = toF(gradCpu);
        let scale = 0;
        for (let i = 0; i < gc.length; i++) scale = Math.max(scale, Math.abs(gc[i]));
        expect(maxDiff(g, gc)).toBeLessThanOrEqual((dtype === 'fp32' ? 1e-5 : 1e-2) * scale + 1e-12);
        dl.free();
        dg.free();
      }
    }
  });

  test('NaN logits are reported with their row', () => {
    const c = makeCase(8, 640, 3);
    c.logits[5 * 640 + 17] = NaN;
    const t = DeviceTensor.fromArray(c.logits);
    expect(() =>
      lossAndGrad({ rows: 8, vocab: 640, targets: c.targets, offsets: c.offsets, method: 'sft', logits: t, grad: t }),
    ).toThrow(/row 5/);
    t.free();
  });

  test('a DeviceTensor in use by lossAndGradAsync cannot be freed or overwritten until the promise settles', async () => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { lossAndGradAsync } = require('../lib/kernels/loss') as typeof import('../lib/kernels/loss');
    const c = makeCase(64, 32000, 4);
    const t = DeviceTensor.fromArray(c.logits);
    const p = lossAndGradAsync({
      rows: 64,
      vocab: 32000,
      targets: c.targets,
      offsets: c.offsets,
      method: 'sft',
      logits: t,
      grad: t,
    });
    expect(() => t.free()).toThrow(/in use/);
    expect(() => t.upload(c.logits)).toThrow(/in use/);
    await p;
    expect(() => t.free()).not.toThrow();
    expect(t.freed).toBe(true);
  });
});
