// .safetensors files: a reader that parses the header natively (strict checks, native/core/safetensors.h) and reads
// tensors one at a time at their offsets (multi-GB files are never read whole), and an atomic writer.
//
//   file = [u64 LE header length N][N bytes JSON header][data section]; tensor bytes are little-endian, row-major.
//   F32, BF16 and F16 tensors convert to Float32Array; other dtypes are reported by name (TypeError).
import { constants as bufferConstants } from 'buffer';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { addon, localError, type NativeSafetensors } from '../native';
import { writeFileAtomic, writeFully } from '../util/atomic';
import { checkDtype, Dtype } from '../util/dtype';
import { f32ToBf16 } from '../kernels/bf16';

export interface SafetensorsEntry {
  name: string;
  dtype: string; // 'F32' | 'BF16' | 'F16' | 'I64' | ... as in the header
  shape: number[];
  begin: number; // byte range in the data section
  end: number;
}

export interface SafetensorsHeader {
  headerBytes: number; // N
  dataStart: number; // 8 + N: file offset of the data section
  dataBytes: number;
  tensors: SafetensorsEntry[]; // in header order
  metadata: Record<string, string>;
}

export interface HostTensor {
  dtype: string; // the dtype stored in the file
  shape: number[];
  data: Float32Array; // prod(shape) values, row-major
}

function native(): NativeSafetensors {
  const st: NativeSafetensors | undefined = addon.safetensors;
  if (!st) throw new Error('rift: the native addon has no safetensors binding (rebuild it: npm run build:native)');
  return st;
}

/** Parses a header from the first bytes of a file (at least 8 + N) or the whole file. Throws TypeError/RangeError/Error. */
export function parseHeader(buf: Uint8Array, fileSize: number, fileName?: string): SafetensorsHeader {
  try {
    return native().parseHeader(buf, fileSize, fileName);
  } catch (e) {
    throw localError(e);
  }
}

const CHUNK = 1 << 26; // bytes per read/write call (64 MiB)

function readFully(fd: number, dst: Uint8Array, position: number, file: string): void {
  for (let off = 0; off < dst.length;) {
    const n = fs.readSync(fd, dst, off, Math.min(CHUNK, dst.length - off), position + off);
    if (n === 0)
      throw new Error(`${file}: unexpected end of file at byte ${position + off} (was it truncated while being read?)`);
    off += n;
  }
}

let f16Table: Float32Array | undefined;
/** f16 bit pattern -> f32 value for all 65536 patterns (subnormals, ±Inf and NaN included). */
function f16ToF32Table(): Float32Array {
  if (f16Table) return f16Table;
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const e = (h >> 10) & 0x1f;
    const m = h & 0x3ff;
    t[h] =
      e === 0 ? sign * m * 2 ** -24 : e === 31 ? (m ? NaN : sign * Infinity) : sign * (1 + m / 1024) * 2 ** (e - 15);
  }
  return (f16Table = t);
}

/** prod(shape); 0 when a dimension is 0 (also when the others' product is not finite: no Infinity × 0 = NaN). */
export const elementCount = (shape: readonly number[]): number =>
  shape.includes(0) ? 0 : shape.reduce((a, b) => a * b, 1);

/** An open .safetensors file: the header is parsed and checked at open; tensors are read on request. */
export class SafetensorsFile {
  readonly header: SafetensorsHeader;
  private readonly byName = new Map<string, SafetensorsEntry>();
  private fd: number | null;

  private constructor(
    readonly file: string,
    fd: number,
    readonly fileSize: number,
  ) {
    this.fd = fd;
    const label = path.basename(file);
    const prefix = new Uint8Array(Math.min(8, fileSize));
    readFully(fd, prefix, 0, label);
    let want = prefix.length;
    if (prefix.length === 8) {
      const n = new DataView(prefix.buffer).getBigUint64(0, true);
      if (n <= BigInt(Math.min(100_000_000, fileSize - 8))) want = 8 + Number(n); // else parseHeader reports it
    }
    const buf = new Uint8Array(want);
    buf.set(prefix);
    readFully(fd, buf.subarray(prefix.length), prefix.length, label);
    this.header = parseHeader(buf, fileSize, label);
    for (const t of this.header.tensors) this.byName.set(t.name, t);
  }

  static open(file: string): SafetensorsFile {
    if (os.endianness() !== 'LE') throw new Error('rift: safetensors reading needs a little-endian host');
    const fd = fs.openSync(file, 'r');
    try {
      return new SafetensorsFile(file, fd, fs.fstatSync(fd).size);
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
  }

  get names(): string[] {
    return this.header.tensors.map((t) => t.name);
  }

  entry(name: string): SafetensorsEntry {
    const t = this.byName.get(name);
    if (!t) throw new Error(`${path.basename(this.file)}: no tensor "${name}"`);
    return t;
  }

  private handle(): number {
    if (this.fd === null) throw new Error(`${path.basename(this.file)}: file is closed`);
    return this.fd;
  }

  /** The tensor's raw little-endian bytes. */
  readBytes(name: string): Uint8Array {
    const t = this.entry(name);
    const out = new Uint8Array(t.end - t.begin);
    readFully(this.handle(), out, this.header.dataStart + t.begin, path.basename(this.file));
    return out;
  }

  /**
   * The tensor as float32 (F32 bit-exact; BF16/F16 widened exactly), into `out` when given (its length must be
   * prod(shape)). Reads in chunks: a BF16 tensor never exists twice in memory.
   */
  readFloat32(name: string, out?: Float32Array): Float32Array {
    const t = this.entry(name);
    const label = path.basename(this.file);
    const n = elementCount(t.shape);
    if (t.dtype !== 'F32' && t.dtype !== 'BF16' && t.dtype !== 'F16')
      throw new TypeError(`${label}: tensor "${name}" has dtype ${t.dtype}; only F32, BF16 and F16 convert to float32`);
    if (out && out.length !== n) throw new RangeError(`out: length ${out.length} != ${n} elements of tensor "${name}"`);
    if (!out && n * 4 > bufferConstants.MAX_LENGTH)
      throw new RangeError(`${label}: tensor "${name}" (${n} elements) is too large for one Float32Array`);
    const dst = out ?? new Float32Array(n);
    const pos = this.header.dataStart + t.begin;
    if (t.dtype === 'F32') {
      readFully(this.handle(), new Uint8Array(dst.buffer, dst.byteOffset, dst.byteLength), pos, label);
      return dst;
    }
    const step = Math.min(n, CHUNK / 2);
    const scratch = new Uint16Array(step);
    const bits = new Uint32Array(dst.buffer, dst.byteOffset, dst.length);
    const table = t.dtype === 'F16' ? f16ToF32Table() : undefined;
    for (let i = 0; i < n; i += step) {
      const m = Math.min(step, n - i);
      readFully(this.handle(), new Uint8Array(scratch.buffer, 0, 2 * m), pos + 2 * i, label);
      if (table) for (let k = 0; k < m; k++) dst[i + k] = table[scratch[k]];
      else for (let k = 0; k < m; k++) bits[i + k] = scratch[k] << 16;
    }
    return dst;
  }

  close(): void {
    if (this.fd !== null) fs.closeSync(this.fd);
    this.fd = null;
  }
}

/** Reads a whole .safetensors file (or the named tensors) as float32. */
export function readSafetensors(
  file: string,
  names?: readonly string[],
): { metadata: Record<string, string>; tensors: Map<string, HostTensor> } {
  const f = SafetensorsFile.open(file);
  try {
    const tensors = new Map<string, HostTensor>();
    for (const name of names ?? f.names) {
      const e = f.entry(name);
      tensors.set(name, { dtype: e.dtype, shape: [...e.shape], data: f.readFloat32(name) });
    }
    return { metadata: { ...f.header.metadata }, tensors };
  } finally {
    f.close();
  }
}

// Atomic file writes live in lib/util/atomic.ts; re-exported here for code that imported them from this module.
export { writeBytesAtomic, writeFileAtomic } from '../util/atomic';

export interface TensorToWrite {
  name: string;
  shape: number[];
  data: Float32Array; // prod(shape) values
}

/**
 * Writes float32 tensors as F32 (bit-exact; dtype 'fp32', the default) or BF16 (round to nearest even; 'bf16'),
 * atomically. The deprecated 'float32' / 'bfloat16' are still accepted.
 */
export function writeSafetensors(
  file: string,
  tensors: readonly TensorToWrite[],
  opts: { dtype?: Dtype | 'float32' | 'bfloat16'; metadata?: Record<string, string> } = {},
): void {
  const dtype = checkDtype('dtype', opts.dtype ?? 'fp32', ['float32', 'bfloat16']);
  if (os.endianness() !== 'LE') throw new Error('rift: safetensors writing needs a little-endian host');
  tensors.forEach((t, i) => {
    if (!(t.data instanceof Float32Array))
      throw new TypeError(`tensors[${i}] ("${t.name}").data: must be a Float32Array`);
    if (!Array.isArray(t.shape)) throw new TypeError(`tensors[${i}] ("${t.name}").shape: must be an array`);
    if (t.data.length !== elementCount(t.shape))
      throw new RangeError(
        `tensors[${i}] ("${t.name}"): data length ${t.data.length} != prod(shape [${t.shape.join(', ')}])`,
      );
  });
  const st = dtype === 'fp32' ? 'F32' : 'BF16';
  let layout: ReturnType<NativeSafetensors['buildHeader']>;
  try {
    layout = native().buildHeader(
      tensors.map((t) => ({ name: t.name, dtype: st, shape: t.shape })),
      opts.metadata,
    );
  } catch (e) {
    throw localError(e);
  }
  writeFileAtomic(file, (fd) => {
    writeFully(fd, layout.header);
    for (const p of layout.placement) {
      const d = tensors[p.index].data;
      if (st === 'F32') writeFully(fd, new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
      else
        for (let i = 0; i < d.length; i += CHUNK / 2) {
          const bf = f32ToBf16(d.subarray(i, i + CHUNK / 2));
          writeFully(fd, new Uint8Array(bf.buffer, bf.byteOffset, bf.byteLength));
        }
    }
  });
}
