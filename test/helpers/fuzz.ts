// Seeded fuzzers of the parsers that turn untrusted bytes and numbers into sizes: safetensors headers
// (native/core/safetensors.cc) and config.json (lib/engine/checkpoint.ts parseConfig → the engine's
// model_size and memory estimate in native/model/decoder.cc, and its KV cache sizes). Each input must either parse
// self-consistently or be refused with a typed error; a crash or an ASan/UBSan report ends the process.
// CI runs a short slice inside jest (test/safetensors.test.ts, test/sizes.test.ts); scripts/fuzz.sh runs millions
// against the ASan + UBSan build. Each returns counts; a broken invariant throws (with the input in the message).
import * as os from 'os';
import { MAX_TENSORS, modelSize, parseConfig } from '../../lib/engine/checkpoint';
import { elementCount, parseHeader, SafetensorsHeader } from '../../lib/engine/safetensors';
import { addon, localError, NativeModel } from '../../lib/native';
import { mulberry32 } from '../../lib/util/rng';
import { collectGarbage } from '../../lib/profile/memory';

export { mulberry32 };

// A file from a header given as text (any bytes) and a data section.
export function rawFile(header: string | Uint8Array, data: Uint8Array | number = 0, lengthField?: bigint): Uint8Array {
  const h = typeof header === 'string' ? Buffer.from(header, 'utf8') : header;
  const d = typeof data === 'number' ? new Uint8Array(data) : data;
  const out = new Uint8Array(8 + h.length + d.length);
  new DataView(out.buffer).setBigUint64(0, lengthField ?? BigInt(h.length), true);
  out.set(h, 8);
  out.set(d, 8 + h.length);
  return out;
}

class Broken extends Error {}
function check(ok: boolean, what: string, input: unknown): void {
  if (!ok)
    throw new Broken(
      `fuzz invariant broken: ${what}; input ${JSON.stringify(input, (_, v) => (typeof v === 'bigint' ? `${v}n` : v))}`,
    );
}

// ---- safetensors headers ---------------------------------------------------------------------------------------

const DTYPE_SIZE: Record<string, number> = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E5M2: 1,
  F8_E4M3: 1,
  F8_E8M0: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  I64: 8,
  U64: 8,
  F64: 8,
  C64: 8,
};

// A successful parse checked independently of the parser: JSON.parse agrees and the tensors tile the data exactly.
function checkConsistent(buf: Uint8Array, size: number, h: SafetensorsHeader): void {
  const input = { size, header: Buffer.from(buf.subarray(8, Math.min(buf.length, 8 + 300))).toString('latin1') };
  check(
    h.dataStart === 8 + h.headerBytes && h.dataStart + h.dataBytes === size,
    'header/data bytes add up to the file size',
    input,
  );
  const json = JSON.parse(Buffer.from(buf.subarray(8, h.dataStart)).toString('utf8'));
  check(
    Object.keys(json).filter((k) => k !== '__metadata__').length === h.tensors.length,
    'tensor count matches JSON.parse',
    input,
  );
  let at = 0;
  for (const t of [...h.tensors].sort((a, b) => a.begin - b.begin || a.end - b.end)) {
    const j = json[t.name];
    check(
      j.dtype === t.dtype &&
        JSON.stringify(j.shape) === JSON.stringify(t.shape) &&
        j.data_offsets[0] === t.begin &&
        j.data_offsets[1] === t.end,
      `tensor "${t.name}" matches JSON.parse`,
      input,
    );
    check(t.begin === at, 'tensors tile the data section', input);
    const bytes = BigInt(DTYPE_SIZE[t.dtype]) * t.shape.reduce((a, d) => a * BigInt(d), 1n);
    check(
      bytes === BigInt(t.end - t.begin) && elementCount(t.shape) * DTYPE_SIZE[t.dtype] === t.end - t.begin,
      'shape × dtype size = end − begin, exactly',
      input,
    );
    at = t.end;
  }
  check(at === h.dataBytes, 'the tensors end where the data section ends', input);
}

// Sizes near the limits the parser and JS care about.
const EDGE = [
  '0',
  '1',
  '2',
  '3',
  '7',
  '8',
  '255',
  '4096',
  '65535',
  '2147483647',
  '2147483648',
  '4294967295',
  '4294967296',
  '4611686018427387904',
  '9007199254740991',
  '9007199254740992',
  '9007199254740993',
  '9223372036854775807',
  '9223372036854775808',
  '18446744073709551615',
  '18446744073709551616',
  '-1',
  '-9223372036854775808',
];

/** A header made of size edge cases: shapes and offsets near 2^31, 2^32, 2^53, 2^63, 2^64, tiled or not. */
function sizeHeader(int: (n: number) => number, rnd: () => number): { buf: Uint8Array; size: number } {
  const dtypes = Object.keys(DTYPE_SIZE);
  const edge = () => (rnd() < 0.7 ? EDGE[int(EDGE.length)] : String(int(64)));
  const parts: string[] = [];
  let at = 0n;
  for (let i = 0, n = int(4); i < n; i++) {
    const dt = dtypes[int(dtypes.length)];
    const shape = Array.from({ length: int(5) }, () => (rnd() < 0.5 ? edge() : String(1 + int(8))));
    const valid = shape.every((d) => !d.startsWith('-') && BigInt(d) < 2n ** 63n);
    const bytes = valid ? BigInt(DTYPE_SIZE[dt]) * shape.reduce((a, d) => a * BigInt(d), 1n) : 0n;
    const begin = rnd() < 0.8 ? at.toString() : edge();
    const end = rnd() < 0.8 ? (BigInt(begin.startsWith('-') ? 0 : begin) + bytes).toString() : edge();
    parts.push(`"t${i}":{"dtype":"${dt}","shape":[${shape.join(',')}],"data_offsets":[${begin},${end}]}`);
    if (!end.startsWith('-')) at = BigInt(end);
  }
  const header = `{${parts.join(',')}}`;
  const h = Buffer.from(header, 'utf8');
  const data = at <= 64n && rnd() < 0.5 ? Number(at) : 0;
  const buf = rawFile(h, data);
  // The file size: exactly the bytes, or the header plus a huge data section the buffer does not hold.
  const big = [at, at + 1n, at - 1n, 2n ** 32n, 2n ** 53n - 1n - 8n - BigInt(h.length)][int(5)];
  const size = rnd() < 0.5 ? buf.length : Number(BigInt(8 + h.length) + (big < 0n ? 0n : big));
  return { buf, size: Math.min(size, Number.MAX_SAFE_INTEGER) };
}

export interface FuzzCounts {
  inputs: number;
  accepted: number;
  rejected: number;
  ms: number;
}

/** n mutated or size-edge safetensors headers through parseHeader; every parse is checked by checkConsistent. */
export function fuzzSafetensors(n: number, seed: number): FuzzCounts {
  const rnd = mulberry32(seed);
  const int = (k: number) => Math.floor(rnd() * k);
  const seeds = [
    rawFile(
      '{"__metadata__":{"format":"pt","k":"v\\"q"},"a.b":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"c":{"dtype":"BF16","shape":[4],"data_offsets":[24,32]},"d":{"dtype":"I64","shape":[],"data_offsets":[32,40]}}  ',
      40,
    ),
    rawFile(
      '{"\\u00fc\\ud83d\\ude00":{"dtype":"U8","shape":[0,5],"data_offsets":[0,0]},"e":{"dtype":"F16","shape":[1,1,3],"data_offsets":[0,6]}}',
      6,
    ),
    rawFile('{}', 0),
  ];
  const tokens = [
    '{',
    '}',
    '[',
    ']',
    ',',
    ':',
    '"',
    '"__metadata__"',
    '"dtype"',
    '"shape"',
    '"data_offsets"',
    '"F32"',
    '"BF16"',
    '"X"',
    '0',
    '-1',
    '1.5',
    '1e9',
    '007',
    '18446744073709551616',
    '9007199254740993',
    'true',
    'null',
    '"\\ud800"',
    '"\\u0000"',
    '"\\x"',
    '[[[[[[[[',
    ']]]]',
    '{{{{',
    ' ',
    '\\',
    '\u0000',
    '\u00ff',
    '😀',
    ...EDGE,
  ];
  let accepted = 0,
    rejected = 0;
  const t0 = Date.now();
  for (let i = 0; i < n; i++) {
    let buf: Uint8Array, size: number;
    if (rnd() < 0.25) ({ buf, size } = sizeHeader(int, rnd));
    else {
      const seedFile = seeds[int(seeds.length)];
      buf = seedFile.slice();
      size = buf.length;
      const hn = Number(new DataView(seedFile.buffer).getBigUint64(0, true));
      for (let m = 1 + int(3); m > 0; m--) {
        const kind = int(6);
        if (kind === 0) {
          // bit flips, mostly in the header
          const pos = rnd() < 0.8 ? 8 + int(Math.max(1, hn)) : int(buf.length);
          if (pos < buf.length) buf[pos] ^= 1 << int(8);
        } else if (kind === 1) {
          // truncation (of the file, or of the bytes given)
          buf = buf.slice(0, int(buf.length + 1));
          size = rnd() < 0.5 ? buf.length : size;
        } else if (kind === 2) {
          // random bytes
          for (let k = 1 + int(8), pos = int(buf.length); k > 0 && pos < buf.length; k--, pos++) buf[pos] = int(256);
        } else if (kind === 3 || kind === 4) {
          // splice JSON tokens, then fix the length field (half the time)
          const text = Buffer.from(buf.subarray(8, Math.min(buf.length, 8 + hn))).toString('latin1');
          const at = int(text.length + 1),
            cut = int(6);
          const tok = Array.from({ length: 1 + int(2) }, () => tokens[int(tokens.length)]).join('');
          const body = Buffer.concat([
            Buffer.from(text.slice(0, at), 'latin1'),
            Buffer.from(tok, 'utf8'),
            Buffer.from(text.slice(at + cut), 'latin1'),
          ]);
          const data = buf.subarray(Math.min(buf.length, 8 + hn));
          buf = rawFile(body, data, rnd() < 0.5 ? BigInt(body.length) : BigInt(hn));
          size = buf.length;
        } else {
          // the length field or the file size
          if (rnd() < 0.5 && buf.length >= 8)
            new DataView(buf.buffer, buf.byteOffset).setBigUint64(
              0,
              [0n, 1n, BigInt(hn + int(5) - 2), 2n ** 32n, 2n ** 63n, 2n ** 64n - 1n][int(6)],
              true,
            );
          else size = Math.max(0, size + int(9) - 4);
        }
      }
    }
    let h: SafetensorsHeader;
    try {
      h = parseHeader(buf, size, 'fuzz.safetensors');
    } catch (e) {
      check(
        e instanceof Error && /^(fuzz\.safetensors|buf|fileSize): /.test(e.message),
        `a typed error naming the file (${String(e)})`,
        { size, bytes: Buffer.from(buf.subarray(0, 300)).toString('latin1') },
      );
      rejected++;
      continue;
    }
    accepted++;
    checkConsistent(buf, size, h);
  }
  return { inputs: n, accepted, rejected, ms: Date.now() - t0 };
}

// ---- config.json → parseConfig, the engine's model size, KV caches ----------------------------------------------

const INT_FIELDS = [
  'vocab_size',
  'hidden_size',
  'intermediate_size',
  'num_hidden_layers',
  'num_attention_heads',
  'num_key_value_heads',
  'head_dim',
] as const;
const I32 = 2 ** 31 - 1;

/** The sizes the engine should compute, in BigInt, from the raw fields as new addon.Model reads them; null: refused on a field. */
function engineSizes(
  f: Record<string, unknown>,
): { QD: bigint; KD: bigint; params: bigint; tensors: bigint; L: bigint } | null {
  const n = (k: string, dflt?: number): number | null => {
    const v = f[k] === undefined && dflt !== undefined ? dflt : f[k];
    return typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= I32 ? v : null;
  };
  const V = n('vocab_size'),
    C = n('hidden_size'),
    I = n('intermediate_size'),
    L = n('num_hidden_layers'),
    Hq = n('num_attention_heads');
  if (V === null || C === null || I === null || L === null || Hq === null) return null;
  const Hkv = n('num_key_value_heads', Hq);
  const D = f.head_dim === undefined || f.head_dim === null ? (C % Hq ? null : C / Hq) : n('head_dim');
  if (Hkv === null || D === null || Hq % Hkv || D % 2) return null;
  for (const k of ['tie_word_embeddings', 'qkv_bias', 'o_bias'])
    if (f[k] !== undefined && typeof f[k] !== 'boolean') return null;
  const b = (x: number) => BigInt(x);
  const QD = b(Hq) * b(D),
    KD = b(Hkv) * b(D);
  const perLayer =
    2n * QD * b(C) +
    2n * KD * b(C) +
    3n * b(I) * b(C) +
    2n * b(C) +
    (f.qkv_bias ? QD + 2n * KD : 0n) +
    (f.o_bias ? b(C) : 0n);
  const params = b(L) * perLayer + (f.tie_word_embeddings ? 1n : 2n) * b(V) * b(C) + b(C);
  const tensors = b(L) * b(9 + (f.qkv_bias ? 3 : 0) + (f.o_bias ? 1 : 0));
  return { QD, KD, params, tensors, L: b(L) };
}

// Values near the limits: int32, 2^53, products that overflow int64 or land just past it.
const CONFIG_EDGE: unknown[] = [
  0,
  1,
  2,
  3,
  4,
  6,
  8,
  64,
  1000,
  1e6,
  2 ** 15,
  2 ** 16,
  2 ** 20,
  2 ** 30,
  2 ** 31 - 1,
  2 ** 31,
  2 ** 32,
  2 ** 53 - 1,
  2 ** 53,
  2 ** 63,
  1e300,
  -1,
  -(2 ** 31),
  1.5,
  NaN,
  Infinity,
  '8',
  null,
  true,
  [],
  {},
];

function randomConfig(int: (n: number) => number, rnd: () => number): Record<string, unknown> {
  const base: Record<string, unknown> =
    rnd() < 0.5
      ? {
          model_type: 'qwen2',
          hidden_size: 16,
          intermediate_size: 24,
          num_hidden_layers: 2,
          num_attention_heads: 4,
          num_key_value_heads: 2,
          vocab_size: 32,
        }
      : {
          model_type: 'llama',
          hidden_size: 16,
          intermediate_size: 24,
          num_hidden_layers: 2,
          num_attention_heads: 2,
          vocab_size: 32,
          head_dim: 8,
          attention_bias: rnd() < 0.3,
          tie_word_embeddings: rnd() < 0.5,
        };
  const value = (): unknown => {
    const r = rnd();
    if (r < 0.35) return CONFIG_EDGE[int(CONFIG_EDGE.length)];
    if (r < 0.7) return 2 ** int(32) + [0, 0, 1, -1, 2][int(5)]; // powers of two: products that hit 2^53 / 2^63 / 2^64 exactly
    return 1 + int(2 ** (1 + int(31))); // any int32
  };
  for (let m = 1 + int(4); m > 0; m--) {
    const k = INT_FIELDS[int(INT_FIELDS.length)];
    base[k] = rnd() < 0.05 ? undefined : value();
  }
  if (rnd() < 0.05) base.model_type = ['mistral', 7, undefined][int(3)];
  if (rnd() < 0.05) base.tie_word_embeddings = ['yes', 1, null][int(3)];
  return base;
}

/** The raw fields the engine's constructor reads (what Model hands it, without parseConfig's checks). */
function engineConfig(j: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of INT_FIELDS) out[k] = j[k];
  out.tie_word_embeddings = j.tie_word_embeddings;
  out.qkv_bias = j.model_type === 'qwen2' || j.attention_bias === true;
  out.o_bias = j.model_type === 'llama' && j.attention_bias === true;
  return out;
}

export interface ConfigFuzzCounts extends FuzzCounts {
  parsed: number; // accepted by parseConfig
  built: number; // engine models made
  caches: number; // KV caches made
  skipped: number; // engine calls skipped: over BUILD_CAP bytes with no RIFT_MEMORY_LIMIT to refuse them
}

/** Without RIFT_MEMORY_LIMIT, nothing bigger than this is built (a fuzz run must not take the machine's memory). */
const BUILD_CAP = 4e6;

/**
 * n random config.json objects through parseConfig + modelSize, checked against a BigInt oracle, and the same
 * fields through the engine's constructor (new addon.Model): it must build exactly the oracle's parameter count or
 * refuse with a TypeError / RangeError — never a plain "out of memory", never a crash. Built models get KV caches
 * of random sizes. RIFT_MEMORY_LIMIT (set by scripts/fuzz.sh) makes the engine refuse everything above it; without
 * it, engine calls that would allocate more than BUILD_CAP bytes are skipped. Models have no free(): the engine's
 * memory goes back when they are garbage-collected and their finalizers run, so the loop collects and yields to the
 * event loop whenever the engine holds more than 64 MB (the engine's buffers are invisible to V8's heuristics).
 */
export async function fuzzConfigs(n: number, seed: number): Promise<ConfigFuzzCounts> {
  const rnd = mulberry32(seed);
  const int = (k: number) => Math.floor(rnd() * k);
  const envLimit = Number(process.env.RIFT_MEMORY_LIMIT ?? NaN);
  const limit = Number.isSafeInteger(envLimit) && envLimit > 0 ? Math.min(envLimit, os.totalmem()) : os.totalmem();
  // The most a call may allocate here: RIFT_MEMORY_LIMIT when set (the engine refuses the rest), else BUILD_CAP.
  const cap = BigInt(Number.isSafeInteger(envLimit) && envLimit > 0 ? limit : Math.min(BUILD_CAP, limit));
  const near = (bytes: bigint) => !Number.isSafeInteger(envLimit) && Math.abs(Number(bytes) / limit - 1) < 0.02; // os.totalmem() vs sysconf
  const c: ConfigFuzzCounts = {
    inputs: n,
    accepted: 0,
    rejected: 0,
    ms: 0,
    parsed: 0,
    built: 0,
    caches: 0,
    skipped: 0,
  };
  const t0 = Date.now();
  for (let i = 0; i < n; i++) {
    const json = randomConfig(int, rnd);
    const ecfg = engineConfig(json);
    const oracle = engineSizes(ecfg);
    const sizeOk =
      oracle !== null &&
      oracle.QD <= I32 &&
      oracle.params <= BigInt(Number.MAX_SAFE_INTEGER) &&
      oracle.tensors <= BigInt(MAX_TENSORS);
    // parseConfig: a config, checked against the oracle, or an error naming config.json. (Its fields as the engine
    // gets them: null means the default for parseConfig.)
    const ts = engineSizes({
      ...Object.fromEntries(Object.entries(ecfg).map(([k, v]) => [k, v ?? undefined])),
      tie_word_embeddings: json.tie_word_embeddings === true,
    });
    const tsOk =
      ts !== null && ts.QD <= I32 && ts.params <= BigInt(Number.MAX_SAFE_INTEGER) && ts.tensors <= BigInt(MAX_TENSORS);
    try {
      const cfg = parseConfig(json);
      c.parsed++;
      const size = modelSize(cfg);
      check(
        tsOk &&
          BigInt(size.params) === ts!.params &&
          BigInt(size.tensors) === ts!.tensors + (cfg.tie_word_embeddings ? 2n : 3n),
        'parseConfig accepts only what the oracle sizes, with its sizes',
        json,
      );
    } catch (e) {
      if (e instanceof Broken) throw e;
      check(
        e instanceof Error && e.message.startsWith('config.json: '),
        `parseConfig: an error naming config.json (${String(e)})`,
        json,
      );
      if (/ exceeds /.test((e as Error).message))
        check(
          !tsOk || INT_FIELDS.some((k) => typeof json[k] === 'number' && (json[k] as number) > I32),
          `a size error only past a limit (${(e as Error).message})`,
          json,
        );
    }
    // The engine, on the raw fields: exactly the oracle's parameters, or a typed refusal.
    const bytes = sizeOk ? 4n * oracle!.params + 256n * (oracle!.tensors + (ecfg.tie_word_embeddings ? 2n : 3n)) : 0n;
    const fits = bytes <= BigInt(limit);
    if (sizeOk && fits && bytes > cap) {
      c.skipped++;
      continue;
    }
    let model: NativeModel;
    try {
      model = new addon.Model(ecfg);
    } catch (raw) {
      const e = localError(raw) as Error;
      check(
        e instanceof TypeError || e instanceof RangeError,
        `the engine refuses with a TypeError / RangeError (${String(e)})`,
        ecfg,
      );
      check(!sizeOk || !fits || near(bytes), `the engine refuses only what the oracle refuses (${e.message})`, ecfg);
      if (sizeOk && !near(bytes))
        check(
          /more than (this machine's memory|RIFT_MEMORY_LIMIT)/.test(e.message),
          `a memory refusal (${e.message})`,
          ecfg,
        );
      c.rejected++;
      continue;
    }
    check(
      sizeOk && (fits || near(bytes)) && BigInt(model.info().numParams) === oracle!.params,
      "the engine builds exactly the oracle's parameters",
      ecfg,
    );
    if (addon.Model.memory().total.current > 64e6) {
      collectGarbage();
      await new Promise((r) => setImmediate(r));
    }
    c.accepted++;
    c.built++;
    // A KV cache of random size: made (and freed) or refused with a typed error, as predicted.
    const B = rnd() < 0.5 ? 1 + int(8) : CONFIG_EDGE[int(CONFIG_EDGE.length)];
    const T = rnd() < 0.5 ? 1 + int(64) : rnd() < 0.5 ? 2 ** int(32) : CONFIG_EDGE[int(CONFIG_EDGE.length)];
    const arg = (v: unknown) => typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= I32;
    const kvBytes = arg(B) && arg(T) ? 8n * oracle!.L * BigInt(B as number) * BigInt(T as number) * oracle!.KD : -1n;
    const kvOk = kvBytes > 0n && kvBytes / 4n <= 100000000000n && kvBytes <= BigInt(limit);
    if (kvOk && kvBytes > cap) {
      c.skipped++;
      continue;
    }
    try {
      model.newKvCache(B as number, T as number).free();
      c.caches++;
      check(kvOk || near(kvBytes), 'a KV cache only of valid sizes within the memory limit', { ecfg, B, T });
    } catch (raw) {
      const e = localError(raw) as Error;
      check(
        e instanceof TypeError || e instanceof RangeError,
        `newKvCache refuses with a TypeError / RangeError (${String(e)})`,
        { ecfg, B, T },
      );
      check(!kvOk || near(kvBytes), `newKvCache refuses only what the oracle refuses (${e.message})`, { ecfg, B, T });
    }
  }
  c.ms = Date.now() - t0;
  return c;
}
