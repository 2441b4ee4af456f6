// Device memory from outside (DeviceTensor.fromPointer, lib/kernels/device.ts + napi/device.cc): a script holding
// a raw CUDA pointer (another addon's buffer, its own kernels' output) runs the loss kernels on it with no host
// round trip. Argument checks run everywhere; the CUDA paths (the driver-side checks, the loss on a view, views of
// part of an allocation, detaching) skip without a device.
import { cuda, DeviceTensor, f32ToBf16, lossAndGrad } from '../lib';
import { maxAbsDiff } from './helpers/reference';

const gpu = cuda.isAvailable();
const onGpu = gpu ? test : test.skip;

describe('fromPointer: bad arguments name themselves (before any CUDA call)', () => {
  test.each([
    [
      'a string address',
      () => DeviceTensor.fromPointer('0x1000' as never, 4, 'fp32'),
      TypeError,
      /^address: must be a bigint \(a device address\), got string/,
    ],
    [
      'a null address',
      () => DeviceTensor.fromPointer(null as never, 4, 'fp32'),
      TypeError,
      /^address: must be a bigint/,
    ],
    ['address 0', () => DeviceTensor.fromPointer(0n, 4, 'fp32'), RangeError, /^address: is null/],
    [
      'a negative address',
      () => DeviceTensor.fromPointer(-4096n, 4, 'fp32'),
      RangeError,
      /^address: must be in \[1, 2\^64\)/,
    ],
    [
      'an address ≥ 2^64',
      () => DeviceTensor.fromPointer(2n ** 64n, 4, 'fp32'),
      RangeError,
      /^address: must be in \[1, 2\^64\)/,
    ],
    [
      'an unsafe number address',
      () => DeviceTensor.fromPointer(2 ** 60, 4, 'fp32'),
      RangeError,
      /^address: a number address must be a safe integer \(use a bigint\)/,
    ],
    [
      'an fp32 address not 4-aligned',
      () => DeviceTensor.fromPointer(0x1002n, 4, 'fp32'),
      RangeError,
      /^address: 0x1002 is not aligned to the element size 4/,
    ],
    [
      'a bf16 address not 2-aligned',
      () => DeviceTensor.fromPointer(0x1001n, 4, 'bf16'),
      RangeError,
      /^address: 0x1001 is not aligned to the element size 2/,
    ],
    [
      'a fractional length',
      () => DeviceTensor.fromPointer(0x1000n, 2.5, 'fp32'),
      RangeError,
      /^length: must be a non-negative integer, got 2.5/,
    ],
    [
      'a negative length',
      () => DeviceTensor.fromPointer(0x1000n, -1, 'fp32'),
      RangeError,
      /^length: must be a non-negative integer/,
    ],
    [
      'a string length',
      () => DeviceTensor.fromPointer(0x1000n, '4' as never, 'fp32'),
      TypeError,
      /^length: must be a number, got string/,
    ],
    [
      'past the end of the address space',
      () => DeviceTensor.fromPointer(2n ** 64n - 8n, 4, 'fp32'),
      RangeError,
      /^length: runs past the end of the address space/,
    ],
    [
      'an unknown dtype',
      () => DeviceTensor.fromPointer(0x1000n, 4, 'f16' as never),
      RangeError,
      /^dtype: must be 'fp32' or 'bf16' \(or the deprecated 'f32'\), got 'f16'/,
    ],
    [
      'a non-string dtype',
      () => DeviceTensor.fromPointer(0x1000n, 4, 4 as never),
      TypeError,
      /^dtype: must be 'fp32' or 'bf16'/,
    ],
    // the deprecated spelling 'f32' still works and means 'fp32' (4-byte elements)
    [
      'a deprecated-f32 address not 4-aligned',
      () => DeviceTensor.fromPointer(0x1002n, 4, 'f32'),
      RangeError,
      /^address: 0x1002 is not aligned to the element size 4/,
    ],
  ] as [string, () => unknown, ErrorConstructor, RegExp][])('%s', (_n, f, Ctor, message) => {
    expect(f).toThrow(Ctor);
    expect(f).toThrow(message);
  });

  test('well-formed arguments reach CUDA: without it, the reason; with it, the driver-side check of the address', () => {
    const f = () => DeviceTensor.fromPointer(0x1000n, 4, 'fp32');
    if (gpu) expect(f).toThrow(/^address: 0x1000 is not memory CUDA knows/);
    else expect(f).toThrow(/^rift: CUDA is not available/);
  });
});

describe('fromPointer on a device', () => {
  const rows = 6,
    vocab = 40;
  const logits = Float32Array.from({ length: rows * vocab }, (_, i) => Math.sin(i * 0.37) * 3);
  const opts = {
    rows,
    vocab,
    targets: Int32Array.from([-100, 3, 7, 39, -100, 0]),
    offsets: Int32Array.from([0, 3, 6]),
    rewards: Float32Array.from([1, -0.5]),
    method: 'rift' as const,
  };

  onGpu('a view of memory someone else owns: the same loss and gradient as the host, in place, no copy', () => {
    const host = new Float32Array(rows * vocab);
    const want = lossAndGrad({ ...opts, logits, grad: host });
    // "someone else": the buffers are rift allocations here, but the views know them only by their addresses
    const owner = DeviceTensor.fromArray(logits),
      gradOwner = DeviceTensor.empty(rows * vocab, 'fp32');
    const view = DeviceTensor.fromPointer(owner.address, rows * vocab, 'fp32');
    const gview = DeviceTensor.fromPointer(gradOwner.address, rows * vocab, 'fp32');
    expect([view.borrowed, owner.borrowed]).toEqual([true, false]);
    expect(view.address).toBe(owner.address);
    const got = lossAndGrad({ ...opts, logits: view, grad: gview });
    expect(got.loss).toBeCloseTo(want.loss, 5);
    expect(maxAbsDiff(gradOwner.download(), host)).toBeLessThanOrEqual(1e-6);
    // in place through a view of the logits themselves
    lossAndGrad({ ...opts, logits: view, grad: view });
    expect(maxAbsDiff(owner.download(), host)).toBeLessThanOrEqual(1e-6);
    // free() detaches the view; the owner's memory is untouched and still usable
    view.free();
    expect(view.freed).toBe(true);
    expect(() => view.address).toThrow(/used after free/);
    expect(owner.download().length).toBe(rows * vocab);
    gview.free();
    owner.free();
    gradOwner.free();
  });

  onGpu('part of an allocation: an offset view works; a view running past the allocation is refused', () => {
    const owner = DeviceTensor.fromArray(f32ToBf16(logits));
    const rowBytes = BigInt(vocab * 2);
    const tail = DeviceTensor.fromPointer(owner.address + 2n * rowBytes, (rows - 2) * vocab, 'bf16');
    const r = lossAndGrad({
      rows: rows - 2,
      vocab,
      logits: tail,
      targets: Int32Array.from([7, 39, 1, 0]),
      offsets: Int32Array.from([0, 4]),
      method: 'sft',
    });
    const h = lossAndGrad({
      rows: rows - 2,
      vocab,
      logits: f32ToBf16(logits.subarray(2 * vocab)),
      targets: Int32Array.from([7, 39, 1, 0]),
      offsets: Int32Array.from([0, 4]),
      method: 'sft',
    });
    expect(r.loss).toBeCloseTo(h.loss, 5);
    expect(() => DeviceTensor.fromPointer(owner.address + 2n * rowBytes, rows * vocab, 'bf16')).toThrow(
      /^length: \d+ elements \(\d+ bytes\) from 0x[0-9a-f]+ run past the end of its allocation/,
    );
    tail.free();
    owner.free();
  });
});
