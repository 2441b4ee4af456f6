// CUDA device queries and DeviceTensor: a buffer in GPU memory that lossAndGrad reads (logits) and writes (grad)
// without copying through the host. Wraps the addon's exports.cuda (null when built without CUDA).
import { addon, localError, NativeCuda, NativeDeviceInfo, NativeDeviceTensor } from '../native';
import { checkDtype, Dtype } from '../util/dtype';

export type DeviceInfo = NativeDeviceInfo;
/**
 * Device tensor dtypes, in the native DType enum's order (native/core/loss.h; addon.enums.dtype): the library's one
 * dtype spelling (lib/util/dtype.ts). fromPointer and empty still accept the deprecated 'f32' for 'fp32'.
 */
export const DEVICE_DTYPES = ['fp32', 'bf16'] as const satisfies readonly Dtype[];
export type DeviceDtype = (typeof DEVICE_DTYPES)[number];

const DTYPE_CODE: Record<DeviceDtype, number> = {
  fp32: DEVICE_DTYPES.indexOf('fp32'),
  bf16: DEVICE_DTYPES.indexOf('bf16'),
};
const ELEMENT_BYTES: Record<DeviceDtype, number> = { fp32: 4, bf16: 2 };
const MAX_ADDRESS = 2n ** 64n;

function native(): NativeCuda | null {
  return addon.cuda ?? null;
}

/** Throws (in this realm's Error classes) the reason device tensors cannot be made, if there is one. */
function requireCuda(): NativeCuda {
  const c = native();
  if (c === null) throw new Error('rift: CUDA is not available: the native addon was built without CUDA');
  if (c.deviceCount() === 0) throw new Error('rift: CUDA is not available: no CUDA device is present (or no driver)');
  return c;
}

/** Runs a native call and re-creates its error with this realm's constructors (see localError). */
function call<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw localError(e);
  }
}

export const cuda = {
  /** True when the addon was built with CUDA and at least one device is present. */
  isAvailable(): boolean {
    const c = native();
    return c !== null && c.deviceCount() > 0;
  },
  /** The CUDA devices ([] when none, or when built without CUDA). */
  devices(): DeviceInfo[] {
    const c = native();
    return c === null ? [] : call(() => c.devices());
  },
  /** Waits until all queued GPU work has finished (no-op without CUDA). */
  synchronize(): void {
    const c = native();
    if (c !== null) call(() => c.synchronize());
  },
  /**
   * Starts (true) or stops (false) the CUDA profiler's capture range after a synchronise, so that
   * `ncu --profile-from-start off` or `nsys profile --capture-range=cudaProfilerApi` record only the work in
   * between. No-op without CUDA.
   */
  profiler(on: boolean): void {
    if (typeof on !== 'boolean') throw new TypeError(`on: must be a boolean, got ${typeof on}`);
    const c = native();
    if (c !== null && c.deviceCount() > 0) call(() => c.profiler(on));
  },
};

/** A 1-D array of fp32 or bf16 (bit patterns, as Uint16Array) values in device memory. Free it with free(). */
export class DeviceTensor {
  readonly #native: NativeDeviceTensor;
  readonly #dtype: DeviceDtype;
  readonly #length: number;

  private constructor(length: number, dtype: DeviceDtype, address?: bigint) {
    const c = requireCuda();
    if (!Number.isSafeInteger(length) || length < 0)
      throw new RangeError(`length: must be a non-negative integer, got ${String(length)}`);
    this.#native = call(() => new c.DeviceTensor(length * ELEMENT_BYTES[dtype], DTYPE_CODE[dtype], address));
    this.#dtype = dtype;
    this.#length = length;
  }

  /** A device copy of arr: Float32Array gives an 'fp32' tensor, Uint16Array (bf16 bits) a 'bf16' tensor. */
  static fromArray(arr: Float32Array | Uint16Array): DeviceTensor {
    let dtype: DeviceDtype;
    if (arr instanceof Float32Array) dtype = 'fp32';
    else if (arr instanceof Uint16Array) dtype = 'bf16';
    else throw new TypeError('arr: must be a Float32Array (fp32) or a Uint16Array (bf16 bits)');
    const t = new DeviceTensor(arr.length, dtype);
    try {
      t.upload(arr);
    } catch (e) {
      t.free();
      throw e;
    }
    return t;
  }

  /**
   * A view of `length` elements of device memory that other code owns, at the raw device `address` (a CUDA
   * pointer from another addon or the caller's own CUDA code, as a bigint). Nothing is copied or allocated; lossAndGrad
   * reads and writes that memory directly. Checked first (TypeError/RangeError naming the argument): the address
   * must be non-null, aligned to the element size, device or managed memory of rift's CUDA device and of its primary
   * context (what the CUDA runtime uses), and the `length` elements must lie inside one allocation. The owner keeps
   * the memory alive while the view is used; free() on a view only detaches it (the memory is not freed).
   */
  static fromPointer(address: bigint | number, length: number, dtype: DeviceDtype): DeviceTensor;
  /** @deprecated dtype 'f32' is spelled 'fp32' (still accepted; the tensor's dtype reads 'fp32'). */
  static fromPointer(address: bigint | number, length: number, dtype: 'f32'): DeviceTensor;
  static fromPointer(address: bigint | number, length: number, dtype: DeviceDtype | 'f32'): DeviceTensor {
    const dt = checkDtype('dtype', dtype, ['f32']);
    if (typeof length !== 'number') throw new TypeError(`length: must be a number, got ${typeof length}`);
    if (!Number.isSafeInteger(length) || length < 0)
      throw new RangeError(`length: must be a non-negative integer, got ${String(length)}`);
    let a: bigint;
    if (typeof address === 'bigint') a = address;
    else if (typeof address === 'number') {
      if (!Number.isSafeInteger(address))
        throw new RangeError(`address: a number address must be a safe integer (use a bigint), got ${address}`);
      a = BigInt(address);
    } else
      throw new TypeError(
        `address: must be a bigint (a device address), got ${address === null ? 'null' : typeof address}`,
      );
    if (a === 0n) throw new RangeError('address: is null');
    if (a < 0n || a >= MAX_ADDRESS) throw new RangeError(`address: must be in [1, 2^64), got ${a}`);
    const elem = BigInt(ELEMENT_BYTES[dt]);
    if (a % elem !== 0n)
      throw new RangeError(`address: 0x${a.toString(16)} is not aligned to the element size ${elem}`);
    if (a + BigInt(length) * elem > MAX_ADDRESS) throw new RangeError('length: runs past the end of the address space');
    return new DeviceTensor(length, dt, a);
  }

  /** An uninitialised tensor of length elements. */
  static empty(length: number, dtype: DeviceDtype): DeviceTensor;
  /** @deprecated dtype 'f32' is spelled 'fp32' (still accepted; the tensor's dtype reads 'fp32'). */
  static empty(length: number, dtype: 'f32'): DeviceTensor;
  static empty(length: number, dtype: DeviceDtype | 'f32'): DeviceTensor {
    return new DeviceTensor(length, checkDtype('dtype', dtype, ['f32']));
  }

  get length(): number {
    return this.#length;
  }
  get dtype(): DeviceDtype {
    return this.#dtype;
  }
  get freed(): boolean {
    return this.#native.freed;
  }
  /** The device address of the first element (a bigint), for other CUDA code; throws after free(). */
  get address(): bigint {
    return call(() => this.#native.address);
  }
  /** True for a view made by fromPointer (memory owned elsewhere). */
  get borrowed(): boolean {
    return this.#native.borrowed;
  }
  /** The addon's handle (what the native lossAndGrad takes). */
  get native(): NativeDeviceTensor {
    return this.#native;
  }

  /** Copies arr (same kind and length as this tensor) into device memory. */
  upload(arr: Float32Array | Uint16Array): void {
    call(() => this.#native.upload(arr));
  }

  /** A host copy: Float32Array for 'fp32', Uint16Array (bf16 bits) for 'bf16'. */
  download(): Float32Array | Uint16Array {
    const out = this.#dtype === 'fp32' ? new Float32Array(this.#length) : new Uint16Array(this.#length);
    call(() => this.#native.download(out));
    return out;
  }

  /**
   * Releases the device memory now (idempotent); otherwise the garbage collector does it eventually. A view
   * (fromPointer) is only detached: its memory stays its owner's.
   */
  free(): void {
    call(() => this.#native.free());
  }
}
