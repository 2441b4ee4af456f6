// Reader of the HF parity fixtures (test/fixtures/parity/FORMAT.md, "RIFTPAR1" version 1): named records of
// f32 / i32 / f64 arrays with shapes. Data offsets are unaligned, so every record is copied out.
import * as fs from 'fs';

export interface ParityRecord {
  name: string;
  dtype: 'f32' | 'i32' | 'f64';
  shape: number[];
  data: Float32Array | Int32Array | Float64Array;
}

const DTYPES = ['f32', 'i32', 'f64'] as const;

export function readParity(file: string): Map<string, ParityRecord> {
  const buf = fs.readFileSync(file);
  let off = 0;
  const need = (n: number, what: string) => {
    if (off + n > buf.length) throw new Error(`${file}: truncated while reading ${what} at byte ${off}`);
  };
  need(16, 'the header');
  const magic = buf.toString('latin1', 0, 8);
  if (magic !== 'RIFTPAR1') throw new Error(`${file}: bad magic ${JSON.stringify(magic)}`);
  const version = buf.readUInt32LE(8);
  if (version !== 1) throw new Error(`${file}: unsupported version ${version}`);
  const count = buf.readUInt32LE(12);
  off = 16;
  const out = new Map<string, ParityRecord>();
  for (let r = 0; r < count; r++) {
    need(2, `record ${r}`);
    const nameLen = buf.readUInt16LE(off);
    off += 2;
    need(nameLen + 2, `record ${r}'s name`);
    const name = buf.toString('utf8', off, off + nameLen);
    off += nameLen;
    const dt = buf.readUInt8(off);
    const ndim = buf.readUInt8(off + 1);
    off += 2;
    if (dt > 2) throw new Error(`${file}: record "${name}" has unknown dtype ${dt}`);
    need(4 * ndim, `"${name}" dims`);
    const shape: number[] = [];
    for (let i = 0; i < ndim; i++, off += 4) shape.push(buf.readUInt32LE(off));
    const n = shape.reduce((a, b) => a * b, 1);
    const dtype = DTYPES[dt];
    const bytes = n * (dtype === 'f64' ? 8 : 4);
    need(bytes, `"${name}" data`);
    const copy = new Uint8Array(bytes);
    buf.copy(copy, 0, off, off + bytes);
    off += bytes;
    const data =
      dtype === 'f32'
        ? new Float32Array(copy.buffer)
        : dtype === 'i32'
          ? new Int32Array(copy.buffer)
          : new Float64Array(copy.buffer);
    out.set(name, { name, dtype, shape, data });
  }
  if (off !== buf.length) throw new Error(`${file}: ${buf.length - off} bytes after the last record`);
  return out;
}

/**
 * Elementwise |got − want| <= bound; on failure throws naming the tensor, the worst element's index, both
 * values and the bound (FORMAT.md, "Tolerances").
 */
export function expectWithin(label: string, got: ArrayLike<number>, want: ArrayLike<number>, bound: number): void {
  if (got.length !== want.length) throw new Error(`${label}: length ${got.length}, expected ${want.length}`);
  let worst = -1;
  let at = -1;
  for (let i = 0; i < want.length; i++) {
    const d = Math.abs(got[i] - want[i]);
    if (!(d <= worst)) {
      worst = Number.isNaN(d) ? Infinity : d;
      at = i;
    }
  }
  if (worst > bound)
    throw new Error(`${label}: element ${at}: got ${got[at]}, want ${want[at]} (|diff| ${worst} > bound ${bound})`);
}

export function maxAbs(x: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i]));
  return m;
}
