// safetensors reader/writer: round trips, the exact header layout, hostile files (typed errors, never a crash)
// and a seeded fuzz run of the native header parser.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { bf16ToF32, f32ToBf16 } from '../lib/kernels/bf16';
import { parseHeader, readSafetensors, SafetensorsFile, writeFileAtomic, writeSafetensors } from '../lib/engine/safetensors';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rift-st-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
let fileNo = 0;
const tmpFile = () => path.join(tmp, `t${fileNo++}.safetensors`);

// A file from a header given as text (any bytes) and a data section.
function rawFile(header: string | Uint8Array, data: Uint8Array | number = 0, lengthField?: bigint): Uint8Array {
  const h = typeof header === 'string' ? Buffer.from(header, 'utf8') : header;
  const d = typeof data === 'number' ? new Uint8Array(data) : data;
  const out = new Uint8Array(8 + h.length + d.length);
  new DataView(out.buffer).setBigUint64(0, lengthField ?? BigInt(h.length), true);
  out.set(h, 8);
  out.set(d, 8 + h.length);
  return out;
}
const parse = (buf: Uint8Array, size = buf.length) => parseHeader(buf, size, 'x.safetensors');

function mulberry32(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('round trip', () => {
  test('F32 is bit-exact (NaN payloads, -0, Inf, subnormals) and the header is what the reference writer emits', () => {
    const a = new Float32Array([1.5, -0, Infinity, -Infinity, 1e-45, 3.4e38, Math.PI]);
    const bits = new Uint32Array(a.buffer);
    bits[0] = 0x7fc12345; // NaN with a payload
    const b = Float32Array.from({ length: 6 }, (_, i) => i - 2.25);
    const file = tmpFile();
    writeSafetensors(file, [{ name: 'b', shape: [2, 3], data: b }, { name: 'a', shape: [7], data: a }], { metadata: { format: 'pt' } });
    const bytes = fs.readFileSync(file);
    const n = Number(bytes.readBigUInt64LE(0));
    expect(n % 8).toBe(0);
    expect(bytes.subarray(8, 8 + n).toString()).toBe(
      ('{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[7],"data_offsets":[0,28]},' +
        '"b":{"dtype":"F32","shape":[2,3],"data_offsets":[28,52]}}').padEnd(n, ' '),
    );
    const { metadata, tensors } = readSafetensors(file);
    expect(metadata).toEqual({ format: 'pt' });
    expect(Array.from(new Uint32Array(tensors.get('a')!.data.buffer))).toEqual(Array.from(bits));
    expect(tensors.get('b')).toEqual({ dtype: 'F32', shape: [2, 3], data: b });
    expect(fs.readdirSync(tmp).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  test('BF16: exact for bf16-representable values, round-to-nearest-even otherwise', () => {
    const rnd = mulberry32(7);
    const exact = bf16ToF32(f32ToBf16(Float32Array.from({ length: 1000 }, () => (rnd() - 0.5) * 1e3)));
    const inexact = Float32Array.from({ length: 1000 }, () => (rnd() - 0.5) * 7);
    const file = tmpFile();
    writeSafetensors(file, [{ name: 'e', shape: [10, 100], data: exact }, { name: 'i', shape: [1000], data: inexact }], { dtype: 'bfloat16' });
    const { tensors } = readSafetensors(file);
    expect(tensors.get('e')!.dtype).toBe('BF16');
    expect(tensors.get('e')!.data).toEqual(exact);
    expect(tensors.get('i')!.data).toEqual(bf16ToF32(f32ToBf16(inexact)));
  });

  test('F16 widens exactly (normals, subnormals, max, Inf, NaN); other dtypes are a TypeError naming the tensor', () => {
    const h = new Uint16Array([0x3c00, 0xc000, 0x7bff, 0x0001, 0x8400, 0x7c00, 0xfc00, 0x7e00]);
    const header = JSON.stringify({ h: { dtype: 'F16', shape: [8], data_offsets: [0, 16] }, i: { dtype: 'I64', shape: [1], data_offsets: [16, 24] } });
    const file = tmpFile();
    fs.writeFileSync(file, rawFile(header, Buffer.concat([Buffer.from(h.buffer), Buffer.alloc(8)])));
    const f = SafetensorsFile.open(file);
    expect(Array.from(f.readFloat32('h'))).toEqual([1, -2, 65504, 2 ** -24, -(2 ** -14), Infinity, -Infinity, NaN]);
    expect(() => f.readFloat32('i')).toThrow(TypeError);
    expect(() => f.readFloat32('i')).toThrow(/tensor "i" has dtype I64/);
    expect(Array.from(f.readBytes('i'))).toEqual(new Array(8).fill(0));
    const into = new Float32Array(8);
    expect(f.readFloat32('h', into)).toBe(into);
    expect(() => f.readFloat32('h', new Float32Array(3))).toThrow(RangeError);
    expect(() => f.entry('nope')).toThrow(/no tensor "nope"/);
    f.close();
    expect(() => f.readBytes('h')).toThrow(/closed/);
  });

  test('names with quotes, escapes and non-ASCII, empty tensors and an empty file round-trip', () => {
    const names = ['a"b\\c', 'tab\there', 'ünï€😀', 'ctl\u0001', 'z'];
    const file = tmpFile();
    writeSafetensors(file, names.map((name, i) => ({ name, shape: i === 4 ? [0, 3] : [i + 1], data: new Float32Array(i === 4 ? 0 : i + 1).fill(i) })));
    const { tensors } = readSafetensors(file);
    expect([...tensors.keys()].sort()).toEqual([...names].sort());
    expect(tensors.get('z')!.shape).toEqual([0, 3]);
    const empty = tmpFile();
    writeSafetensors(empty, []);
    expect(readSafetensors(empty).tensors.size).toBe(0);
  });

  test('a failed write leaves the previous file and no temporary file', () => {
    const file = tmpFile();
    fs.writeFileSync(file, 'old');
    expect(() => writeFileAtomic(file, (fd) => { fs.writeSync(fd, 'half'); throw new Error('disk full'); })).toThrow('disk full');
    expect(fs.readFileSync(file, 'utf8')).toBe('old');
    expect(() => writeSafetensors(file, [{ name: 'a', shape: [3], data: new Float32Array(2) }])).toThrow(RangeError);
    expect(() => writeSafetensors(file, [{ name: 'a', shape: [1], data: [1] as unknown as Float32Array }])).toThrow(TypeError);
    expect(() => writeSafetensors(file, [{ name: 'a', shape: [1], data: new Float32Array(1) }, { name: 'a', shape: [1], data: new Float32Array(1) }])).toThrow(/duplicate tensor "a"/);
    expect(() => writeSafetensors(file, [], { dtype: 'float16' as 'float32' })).toThrow(RangeError);
    expect(fs.readFileSync(file, 'utf8')).toBe('old');
    expect(fs.readdirSync(tmp).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });
});

describe('hostile files: typed errors naming the file and the problem', () => {
  const T = (o: object) => JSON.stringify(o);
  const ok = T({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } });
  const cases: [string, Uint8Array, number | undefined, ErrorConstructor, RegExp][] = [
    ['file shorter than 8 bytes', new Uint8Array(5), undefined, RangeError, /5 bytes, too short/],
    ['header length beyond the file', rawFile(ok, 8, 1000n), undefined, RangeError, /header length 1000 exceeds the file/],
    ['huge header length 2^60', rawFile(ok, 8, 2n ** 60n), undefined, RangeError, /1152921504606846976 exceeds the 100000000-byte limit/],
    ['empty header', rawFile('', 0), undefined, Error, /must start with '\{'/],
    ['not JSON', rawFile('hello world', 0), undefined, Error, /must start with '\{'/],
    ['broken JSON', rawFile('{"a": }', 0), undefined, Error, /header byte 6: tensor "a": expected '\{', got '\}'/],
    ['leading space', rawFile(' {}', 0), undefined, Error, /must start with/],
    ['trailing garbage', rawFile('{} x', 0), undefined, Error, /after the header object/],
    ['data truncated', rawFile(ok, 4), undefined, RangeError, /tensor "a" data_offsets \[0, 8\] exceed the data section \(4 bytes\)/],
    ['out-of-range offsets', rawFile(T({ a: { dtype: 'F32', shape: [2], data_offsets: [92, 100] } }), 64), undefined, RangeError, /\[92, 100\] exceed the data section \(64 bytes\)/],
    ['offsets end before begin', rawFile(T({ a: { dtype: 'F32', shape: [0], data_offsets: [8, 0] } }), 8), undefined, RangeError, /end before they begin/],
    ['overlapping offsets', rawFile(T({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }), 12), undefined, RangeError, /"b" data_offsets \[4, 12\] overlap tensor "a"/],
    ['hole in the data', rawFile(T({ a: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }), 8), undefined, RangeError, /bytes \[0, 4\) .* belong to no tensor/],
    ['trailing data bytes', rawFile(ok, 12), undefined, RangeError, /holds 12 bytes but the tensors cover only 8/],
    ['byte count != shape product', rawFile(T({ a: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }), 8), undefined, RangeError, /shape \[3\] x F32 \(4 bytes\) = 12 bytes, but data_offsets \[0, 8\] hold 8/],
    ['shape product overflow', rawFile(T({ a: { dtype: 'F32', shape: [2 ** 40, 2 ** 40], data_offsets: [0, 8] } }), 8), undefined, RangeError, /overflows/],
    ['unknown dtype', rawFile(T({ a: { dtype: 'F33', shape: [2], data_offsets: [0, 8] } }), 8), undefined, Error, /unknown dtype "F33"/],
    ['negative dim', rawFile(T({ a: { dtype: 'F32', shape: [-2], data_offsets: [0, 8] } }), 8), undefined, RangeError, /negative dimension/],
    ['negative offset', rawFile(T({ a: { dtype: 'F32', shape: [2], data_offsets: [-8, 0] } }), 8), undefined, RangeError, /negative data_offsets/],
    ['float offset', rawFile('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8.0]}}', 8), undefined, Error, /non-integer number/],
    ['exponent offset', rawFile('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8e0]}}', 8), undefined, Error, /non-integer number/],
    ['string offset', rawFile('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,"8"]}}', 8), undefined, Error, /expected an integer, got a string/],
    ['integer beyond 64 bits', rawFile('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,99999999999999999999]}}', 8), undefined, RangeError, /64-bit range/],
    ['three offsets', rawFile('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8,8]}}', 8), undefined, Error, /more than 2 elements/],
    ['duplicate tensor', rawFile('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', 8), undefined, Error, /duplicate tensor "a"/],
    ['duplicate field', rawFile('{"a":{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]}}', 8), undefined, Error, /duplicate field "dtype"/],
    ['unknown field', rawFile('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}}', 8), undefined, Error, /unknown field "x"/],
    ['missing field', rawFile('{"a":{"dtype":"F32","data_offsets":[0,8]}}', 8), undefined, Error, /missing field "shape"/],
    ['boolean value', rawFile('{"a":{"dtype":true}}', 0), undefined, Error, /expected a string, got a boolean/],
    ['null tensor', rawFile('{"a":null}', 0), undefined, Error, /expected '\{', got null/],
    ['deep nesting', rawFile(`{"a":${'['.repeat(100000)}${']'.repeat(100000)}}`, 0), undefined, Error, /tensor "a": expected '\{', got an array/],
    ['deep nesting in shape', rawFile(`{"a":{"dtype":"F32","shape":${'['.repeat(50000)}}}`, 0), undefined, Error, /expected an integer, got an array/],
    ['metadata value not a string', rawFile('{"__metadata__":{"k":1}}', 0), undefined, Error, /__metadata__ "k" value: expected a string/],
    ['duplicate metadata', rawFile('{"__metadata__":{},"__metadata__":{}}', 0), undefined, Error, /duplicate key "__metadata__"/],
    ['invalid UTF-8', rawFile(new Uint8Array([0x7b, 0x22, 0xc3, 0x28, 0x22, 0x7d]), 0), undefined, Error, /header byte 2: invalid UTF-8/],
    ['overlong UTF-8', rawFile(new Uint8Array([0x7b, 0x22, 0xc0, 0xaf, 0x22, 0x7d]), 0), undefined, Error, /invalid UTF-8/],
    ['lone surrogate escape', rawFile('{"\\ud800":{}}', 0), undefined, Error, /lone high surrogate/],
    ['control character in a string', rawFile('{"a\u0001":{}}', 0), undefined, Error, /unescaped control character/],
    ['unterminated string', rawFile('{"abc', 0), undefined, Error, /unterminated string/],
    ['too many dims', rawFile(T({ a: { dtype: 'F32', shape: new Array(65).fill(1), data_offsets: [0, 4] } }), 4), undefined, Error, /more than 64 elements/],
    ['buffer shorter than the header', rawFile(ok, 8).subarray(0, 20), 1000, RangeError, /only 20 bytes given; the header needs/],
    ['buffer longer than fileSize', rawFile(ok, 8), 10, RangeError, /more than the file size 10/],
  ];
  test.each(cases)('%s', (_, buf, size, ctor, re) => {
    let err: unknown;
    try {
      parse(buf, size);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ctor);
    if (ctor === Error) expect(err).not.toBeInstanceOf(RangeError);
    expect((err as Error).message).toMatch(/^x\.safetensors: /);
    expect((err as Error).message).toMatch(re);
  });

  test('argument errors are TypeError/RangeError naming the argument', () => {
    expect(() => parseHeader('abc' as unknown as Uint8Array, 3)).toThrow(TypeError);
    expect(() => parseHeader(new Uint16Array(8) as unknown as Uint8Array, 16)).toThrow(/^buf: /);
    expect(() => parseHeader(new Uint8Array(8), '8' as unknown as number)).toThrow(TypeError);
    expect(() => parseHeader(new Uint8Array(8), -1)).toThrow(RangeError);
    expect(() => parseHeader(new Uint8Array(8), 1.5)).toThrow(/^fileSize: /);
    expect(() => parseHeader(new Uint8Array(8), 8, 5 as unknown as string)).toThrow(/^fileName: /);
  });

  test('files on disk: truncated in the header, in the data, and empty', () => {
    const whole = rawFile(ok, 8);
    for (const [len, re] of [[0, /0 bytes, too short/], [12, /header length \d+ exceeds the file \(12 bytes\)/], [whole.length - 1, /exceed the data section \(7 bytes\)/]] as const) {
      const file = tmpFile();
      fs.writeFileSync(file, whole.subarray(0, len));
      expect(() => SafetensorsFile.open(file)).toThrow(RangeError);
      expect(() => SafetensorsFile.open(file)).toThrow(new RegExp(`^${path.basename(file)}: .*${re.source}`));
    }
  });
});

// Structural check of a successful parse, independent of the parser: JSON.parse agrees and the tensors tile the data.
function checkConsistent(buf: Uint8Array, size: number, h: ReturnType<typeof parse>): void {
  const sizes: Record<string, number> = { BOOL: 1, U8: 1, I8: 1, F8_E5M2: 1, F8_E4M3: 1, F8_E8M0: 1, I16: 2, U16: 2, F16: 2, BF16: 2, I32: 4, U32: 4, F32: 4, I64: 8, U64: 8, F64: 8, C64: 8 };
  expect(h.dataStart).toBe(8 + h.headerBytes);
  expect(h.dataStart + h.dataBytes).toBe(size);
  const json = JSON.parse(Buffer.from(buf.subarray(8, h.dataStart)).toString('utf8'));
  expect(Object.keys(json).filter((k) => k !== '__metadata__').length).toBe(h.tensors.length);
  let at = 0;
  for (const t of [...h.tensors].sort((a, b) => a.begin - b.begin || a.end - b.end)) {
    expect(json[t.name]).toEqual({ dtype: t.dtype, shape: t.shape, data_offsets: [t.begin, t.end] });
    expect(t.begin).toBe(at);
    expect(t.end - t.begin).toBe(t.shape.reduce((a, b) => a * b, 1) * sizes[t.dtype]);
    at = t.end;
  }
  expect(at).toBe(h.dataBytes);
}

// RIFT_FUZZ_N / RIFT_FUZZ_SEED run a longer or different campaign (e.g. under scripts/test-asan.sh).
const FUZZ_N = Number(process.env.RIFT_FUZZ_N ?? 20000);
const FUZZ_SEED = Number(process.env.RIFT_FUZZ_SEED ?? 20240611);
test(`fuzz: ${FUZZ_N} mutated headers (seed ${FUZZ_SEED}) parse self-consistently or throw an Error, never crash`, () => {
  const rnd = mulberry32(FUZZ_SEED);
  const int = (n: number) => Math.floor(rnd() * n);
  const seeds = [
    rawFile('{"__metadata__":{"format":"pt","k":"v\\"q"},"a.b":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"c":{"dtype":"BF16","shape":[4],"data_offsets":[24,32]},"d":{"dtype":"I64","shape":[],"data_offsets":[32,40]}}  ', 40),
    rawFile('{"\\u00fc\\ud83d\\ude00":{"dtype":"U8","shape":[0,5],"data_offsets":[0,0]},"e":{"dtype":"F16","shape":[1,1,3],"data_offsets":[0,6]}}', 6),
    rawFile('{}', 0),
  ];
  const tokens = ['{', '}', '[', ']', ',', ':', '"', '"__metadata__"', '"dtype"', '"shape"', '"data_offsets"', '"F32"', '"BF16"', '"X"', '0', '-1', '1.5', '1e9', '007', '18446744073709551616', '9007199254740993', 'true', 'null', '"\\ud800"', '"\\u0000"', '"\\x"', '[[[[[[[[', ']]]]', '{{{{', ' ', '\\', '\u0000', '\u00ff', '😀'];
  const N = FUZZ_N;
  let parsed = 0, rejected = 0;
  const t0 = Date.now();
  for (let i = 0; i < N; i++) {
    const seed = seeds[int(seeds.length)];
    let buf: Uint8Array = seed.slice();
    let size = buf.length;
    const n = Number(new DataView(seed.buffer).getBigUint64(0, true));
    for (let m = 1 + int(3); m > 0; m--) {
      const kind = int(6);
      if (kind === 0) { // bit flips, mostly in the header
        const pos = rnd() < 0.8 ? 8 + int(Math.max(1, n)) : int(buf.length);
        if (pos < buf.length) buf[pos] ^= 1 << int(8);
      } else if (kind === 1) { // truncation (of the file, or of the bytes given)
        buf = buf.slice(0, int(buf.length + 1));
        size = rnd() < 0.5 ? buf.length : size;
      } else if (kind === 2) { // random bytes
        for (let k = 1 + int(8), pos = int(buf.length); k > 0 && pos < buf.length; k--, pos++) buf[pos] = int(256);
      } else if (kind === 3 || kind === 4) { // splice JSON tokens, then fix the length field (half the time)
        const text = Buffer.from(buf.subarray(8, Math.min(buf.length, 8 + n))).toString('latin1');
        const at = int(text.length + 1), cut = int(6);
        const tok = Array.from({ length: 1 + int(2) }, () => tokens[int(tokens.length)]).join('');
        const body = Buffer.concat([Buffer.from(text.slice(0, at), 'latin1'), Buffer.from(tok, 'utf8'), Buffer.from(text.slice(at + cut), 'latin1')]);
        const data = buf.subarray(Math.min(buf.length, 8 + n));
        buf = rawFile(body, data, rnd() < 0.5 ? BigInt(body.length) : BigInt(n));
        size = buf.length;
      } else { // the length field or the file size
        if (rnd() < 0.5 && buf.length >= 8) new DataView(buf.buffer, buf.byteOffset).setBigUint64(0, [0n, 1n, BigInt(n + int(5) - 2), 2n ** 32n, 2n ** 63n, 2n ** 64n - 1n][int(6)], true);
        else size = Math.max(0, size + int(9) - 4);
      }
    }
    try {
      const h = parseHeader(buf, size, 'fuzz.safetensors');
      parsed++;
      checkConsistent(buf, size, h);
    } catch (e) {
      if (!(e instanceof Error) || !/^(fuzz\.safetensors|buf|fileSize): /.test(e.message)) throw e; // a test failure, reported with its input
      rejected++;
    }
  }
  console.log(`safetensors fuzz (seed ${FUZZ_SEED}): ${N} inputs (${parsed} parsed self-consistently, ${rejected} rejected with an Error), 0 crashes, ${Date.now() - t0} ms`);
  expect(parsed + rejected).toBe(N);
  expect(parsed).toBeGreaterThan(N / 400);
  expect(rejected).toBeGreaterThan(N / 2);
});
