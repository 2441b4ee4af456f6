// safetensors reader/writer: round trips, the exact header layout, hostile files (typed errors, never a crash)
// and a seeded fuzz run of the native header parser.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { bf16ToF32, f32ToBf16 } from '../lib/kernels/bf16';
import {
  parseHeader,
  readSafetensors,
  SafetensorsFile,
  writeFileAtomic,
  writeSafetensors,
} from '../lib/engine/safetensors';
import { fuzzSafetensors, mulberry32, rawFile } from './helpers/fuzz';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rift-st-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
let fileNo = 0;
const tmpFile = () => path.join(tmp, `t${fileNo++}.safetensors`);

const parse = (buf: Uint8Array, size = buf.length) => parseHeader(buf, size, 'x.safetensors');

describe('round trip', () => {
  test('F32 is bit-exact (NaN payloads, -0, Inf, subnormals) and the header is what the reference writer emits', () => {
    const a = new Float32Array([1.5, -0, Infinity, -Infinity, 1e-45, 3.4e38, Math.PI]);
    const bits = new Uint32Array(a.buffer);
    bits[0] = 0x7fc12345; // NaN with a payload
    const b = Float32Array.from({ length: 6 }, (_, i) => i - 2.25);
    const file = tmpFile();
    writeSafetensors(
      file,
      [
        { name: 'b', shape: [2, 3], data: b },
        { name: 'a', shape: [7], data: a },
      ],
      { metadata: { format: 'pt' } },
    );
    const bytes = fs.readFileSync(file);
    const n = Number(bytes.readBigUInt64LE(0));
    expect(n % 8).toBe(0);
    expect(bytes.subarray(8, 8 + n).toString()).toBe(
      (
        '{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[7],"data_offsets":[0,28]},' +
        '"b":{"dtype":"F32","shape":[2,3],"data_offsets":[28,52]}}'
      ).padEnd(n, ' '),
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
    const list = [
      { name: 'e', shape: [10, 100], data: exact },
      { name: 'i', shape: [1000], data: inexact },
    ];
    writeSafetensors(file, list, { dtype: 'bf16' });
    const { tensors } = readSafetensors(file);
    expect(tensors.get('e')!.dtype).toBe('BF16');
    expect(tensors.get('e')!.data).toEqual(exact);
    expect(tensors.get('i')!.data).toEqual(bf16ToF32(f32ToBf16(inexact)));
    // the deprecated HF spellings still work and write the same bytes as 'bf16' / 'fp32'
    const old = tmpFile();
    writeSafetensors(old, list, { dtype: 'bfloat16' });
    expect(fs.readFileSync(old)).toEqual(fs.readFileSync(file));
    const [f32New, f32Old] = [tmpFile(), tmpFile()];
    writeSafetensors(f32New, list, { dtype: 'fp32' });
    writeSafetensors(f32Old, list, { dtype: 'float32' });
    expect(readSafetensors(f32New).tensors.get('i')!.dtype).toBe('F32');
    expect(fs.readFileSync(f32Old)).toEqual(fs.readFileSync(f32New));
  });

  test('F16 widens exactly (normals, subnormals, max, Inf, NaN); other dtypes are a TypeError naming the tensor', () => {
    const h = new Uint16Array([0x3c00, 0xc000, 0x7bff, 0x0001, 0x8400, 0x7c00, 0xfc00, 0x7e00]);
    const header = JSON.stringify({
      h: { dtype: 'F16', shape: [8], data_offsets: [0, 16] },
      i: { dtype: 'I64', shape: [1], data_offsets: [16, 24] },
    });
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
    writeSafetensors(
      file,
      names.map((name, i) => ({
        name,
        shape: i === 4 ? [0, 3] : [i + 1],
        data: new Float32Array(i === 4 ? 0 : i + 1).fill(i),
      })),
    );
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
    expect(() =>
      writeFileAtomic(file, (fd) => {
        fs.writeSync(fd, 'half');
        throw new Error('disk full');
      }),
    ).toThrow('disk full');
    expect(fs.readFileSync(file, 'utf8')).toBe('old');
    expect(() => writeSafetensors(file, [{ name: 'a', shape: [3], data: new Float32Array(2) }])).toThrow(RangeError);
    expect(() => writeSafetensors(file, [{ name: 'a', shape: [1], data: [1] as unknown as Float32Array }])).toThrow(
      TypeError,
    );
    expect(() =>
      writeSafetensors(file, [
        { name: 'a', shape: [1], data: new Float32Array(1) },
        { name: 'a', shape: [1], data: new Float32Array(1) },
      ]),
    ).toThrow(/duplicate tensor "a"/);
    expect(() => writeSafetensors(file, [], { dtype: 'float16' as 'fp32' })).toThrow(
      /^dtype: must be 'fp32' or 'bf16'/,
    );
    expect(fs.readFileSync(file, 'utf8')).toBe('old');
    expect(fs.readdirSync(tmp).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });
});

describe('hostile files: typed errors naming the file and the problem', () => {
  const T = (o: object) => JSON.stringify(o);
  const ok = T({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } });
  const cases: [string, Uint8Array, number | undefined, ErrorConstructor, RegExp][] = [
    ['file shorter than 8 bytes', new Uint8Array(5), undefined, RangeError, /5 bytes, too short/],
    [
      'header length beyond the file',
      rawFile(ok, 8, 1000n),
      undefined,
      RangeError,
      /header length 1000 exceeds the file/,
    ],
    [
      'huge header length 2^60',
      rawFile(ok, 8, 2n ** 60n),
      undefined,
      RangeError,
      /1152921504606846976 exceeds the 100000000-byte limit/,
    ],
    ['empty header', rawFile('', 0), undefined, Error, /must start with '\{'/],
    ['not JSON', rawFile('hello world', 0), undefined, Error, /must start with '\{'/],
    ['broken JSON', rawFile('{"a": }', 0), undefined, Error, /header byte 6: tensor "a": expected '\{', got '\}'/],
    ['leading space', rawFile(' {}', 0), undefined, Error, /must start with/],
    ['trailing garbage', rawFile('{} x', 0), undefined, Error, /after the header object/],
    [
      'data truncated',
      rawFile(ok, 4),
      undefined,
      RangeError,
      /tensor "a" data_offsets \[0, 8\] exceed the data section \(4 bytes\)/,
    ],
    [
      'out-of-range offsets',
      rawFile(T({ a: { dtype: 'F32', shape: [2], data_offsets: [92, 100] } }), 64),
      undefined,
      RangeError,
      /\[92, 100\] exceed the data section \(64 bytes\)/,
    ],
    [
      'offsets end before begin',
      rawFile(T({ a: { dtype: 'F32', shape: [0], data_offsets: [8, 0] } }), 8),
      undefined,
      RangeError,
      /end before they begin/,
    ],
    [
      'overlapping offsets',
      rawFile(
        T({
          a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
          b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] },
        }),
        12,
      ),
      undefined,
      RangeError,
      /"b" data_offsets \[4, 12\] overlap tensor "a"/,
    ],
    [
      'hole in the data',
      rawFile(T({ a: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }), 8),
      undefined,
      RangeError,
      /bytes \[0, 4\) .* belong to no tensor/,
    ],
    ['trailing data bytes', rawFile(ok, 12), undefined, RangeError, /holds 12 bytes but the tensors cover only 8/],
    [
      'byte count != shape product',
      rawFile(T({ a: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }), 8),
      undefined,
      RangeError,
      /shape \[3\] x F32 \(4 bytes\) = 12 bytes, but data_offsets \[0, 8\] hold 8/,
    ],
    [
      'shape product overflow',
      rawFile(T({ a: { dtype: 'F32', shape: [2 ** 40, 2 ** 40], data_offsets: [0, 8] } }), 8),
      undefined,
      RangeError,
      /overflows/,
    ],
    [
      'unknown dtype',
      rawFile(T({ a: { dtype: 'F33', shape: [2], data_offsets: [0, 8] } }), 8),
      undefined,
      Error,
      /unknown dtype "F33"/,
    ],
    [
      'negative dim',
      rawFile(T({ a: { dtype: 'F32', shape: [-2], data_offsets: [0, 8] } }), 8),
      undefined,
      RangeError,
      /negative dimension/,
    ],
    [
      'negative offset',
      rawFile(T({ a: { dtype: 'F32', shape: [2], data_offsets: [-8, 0] } }), 8),
      undefined,
      RangeError,
      /negative data_offsets/,
    ],
    [
      'float offset',
      rawFile('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8.0]}}', 8),
      undefined,
      Error,
      /non-integer number/,
    ],
    [
      'exponent offset',
      rawFile('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8e0]}}', 8),
      undefined,
      Error,
      /non-integer number/,
    ],
    [
      'string offset',
      rawFile('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,"8"]}}', 8),
      undefined,
      Error,
      /expected an integer, got a string/,
    ],
    [
      'integer beyond 64 bits',
      rawFile('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,99999999999999999999]}}', 8),
      undefined,
      RangeError,
      /64-bit range/,
    ],
    [
      'three offsets',
      rawFile('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8,8]}}', 8),
      undefined,
      Error,
      /more than 2 elements/,
    ],
    [
      'duplicate tensor',
      rawFile(
        '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}',
        8,
      ),
      undefined,
      Error,
      /duplicate tensor "a"/,
    ],
    [
      'duplicate field',
      rawFile('{"a":{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]}}', 8),
      undefined,
      Error,
      /duplicate field "dtype"/,
    ],
    [
      'unknown field',
      rawFile('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}}', 8),
      undefined,
      Error,
      /unknown field "x"/,
    ],
    [
      'missing field',
      rawFile('{"a":{"dtype":"F32","data_offsets":[0,8]}}', 8),
      undefined,
      Error,
      /missing field "shape"/,
    ],
    ['boolean value', rawFile('{"a":{"dtype":true}}', 0), undefined, Error, /expected a string, got a boolean/],
    ['null tensor', rawFile('{"a":null}', 0), undefined, Error, /expected '\{', got null/],
    [
      'deep nesting',
      rawFile(`{"a":${'['.repeat(100000)}${']'.repeat(100000)}}`, 0),
      undefined,
      Error,
      /tensor "a": expected '\{', got an array/,
    ],
    [
      'deep nesting in shape',
      rawFile(`{"a":{"dtype":"F32","shape":${'['.repeat(50000)}}}`, 0),
      undefined,
      Error,
      /expected an integer, got an array/,
    ],
    [
      'metadata value not a string',
      rawFile('{"__metadata__":{"k":1}}', 0),
      undefined,
      Error,
      /__metadata__ "k" value: expected a string/,
    ],
    [
      'duplicate metadata',
      rawFile('{"__metadata__":{},"__metadata__":{}}', 0),
      undefined,
      Error,
      /duplicate key "__metadata__"/,
    ],
    [
      'invalid UTF-8',
      rawFile(new Uint8Array([0x7b, 0x22, 0xc3, 0x28, 0x22, 0x7d]), 0),
      undefined,
      Error,
      /header byte 2: invalid UTF-8/,
    ],
    [
      'overlong UTF-8',
      rawFile(new Uint8Array([0x7b, 0x22, 0xc0, 0xaf, 0x22, 0x7d]), 0),
      undefined,
      Error,
      /invalid UTF-8/,
    ],
    ['lone surrogate escape', rawFile('{"\\ud800":{}}', 0), undefined, Error, /lone high surrogate/],
    ['control character in a string', rawFile('{"a\u0001":{}}', 0), undefined, Error, /unescaped control character/],
    ['unterminated string', rawFile('{"abc', 0), undefined, Error, /unterminated string/],
    [
      'too many dims',
      rawFile(T({ a: { dtype: 'F32', shape: new Array(65).fill(1), data_offsets: [0, 4] } }), 4),
      undefined,
      Error,
      /more than 64 elements/,
    ],
    [
      'buffer shorter than the header',
      rawFile(ok, 8).subarray(0, 20),
      1000,
      RangeError,
      /only 20 bytes given; the header needs/,
    ],
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
    for (const [len, re] of [
      [0, /0 bytes, too short/],
      [12, /header length \d+ exceeds the file \(12 bytes\)/],
      [whole.length - 1, /exceed the data section \(7 bytes\)/],
    ] as const) {
      const file = tmpFile();
      fs.writeFileSync(file, whole.subarray(0, len));
      expect(() => SafetensorsFile.open(file)).toThrow(RangeError);
      expect(() => SafetensorsFile.open(file)).toThrow(new RegExp(`^${path.basename(file)}: .*${re.source}`));
    }
  });
});

// RIFT_FUZZ_N / RIFT_FUZZ_SEED run a longer or different campaign (scripts/fuzz.sh: millions under ASan + UBSan).
const FUZZ_N = Number(process.env.RIFT_FUZZ_N ?? 20000);
const FUZZ_SEED = Number(process.env.RIFT_FUZZ_SEED ?? 20240611);
test(`fuzz: ${FUZZ_N} mutated and size-edge headers (seed ${FUZZ_SEED}) parse self-consistently or throw an Error, never crash`, () => {
  const r = fuzzSafetensors(FUZZ_N, FUZZ_SEED);
  console.log(
    `safetensors fuzz (seed ${FUZZ_SEED}): ${r.inputs} inputs (${r.accepted} parsed self-consistently, ${r.rejected} rejected with an Error), 0 crashes, ${r.ms} ms`,
  );
  expect(r.accepted + r.rejected).toBe(FUZZ_N);
  expect(r.accepted).toBeGreaterThan(FUZZ_N / 400);
  expect(r.rejected).toBeGreaterThan(FUZZ_N / 2);
});
