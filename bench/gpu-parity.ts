// Engine vs HF transformers parity on any device: loads a checkpoint written by scripts/hf_parity.py, runs the
// same batch through the engine in fp32 and compares logits rows, per-token log-probs, the loss and the gradient
// of every parameter with the reference that PyTorch computed (fp32, TF32 off).
//
//   node dist/bench/gpu-parity.js <dir> [--device cpu|cuda] [--precision fp32] [--no-write]
//       <dir> = hf_parity.py's output: <dir>/model/ (config.json + model.safetensors), <dir>/ref.safetensors,
//       <dir>/ref.json. Prints a table, merges the result into bench/results/parity-<device>-<date>.json,
//       exits 1 when any check fails or the run cannot start.
//   node dist/bench/gpu-parity.js --from-fixture test/fixtures/parity/tiny-qwen2 <dir>
//       writes <dir> in the same format from the checked-in HF fixture (RIFTPAR1), for CPU runs without PyTorch.
//
// Reference format (version 1). ref.safetensors, every tensor F32 (token ids are integers < 2^24, exact in F32,
// so the project's float reader reads everything):
//   ids            [B, T]     input token ids
//   targets        [B, T]     the engine's per-row targets: targets[b, t] = ids[b, t+1] for response positions,
//                             -100 for prompt positions and t = T-1 (HF's shifted labels, unshifted)
//   logits_index   [R]        flat row indices b·T + t of the stored logits rows
//   logits_rows    [R, V]     those rows of HF's logits
//   token_logps    [B·T]      log softmax(logits)[target] per row, 0 where the target is -100
//   loss           [1]        token-mean SFT loss (float32; the float64 value is ref.json's "loss")
//   grad.<name>    shape      ∂loss/∂param for every HF parameter (tied: embed_tokens' grad sums both uses)
// ref.json: { format: "rift-hf-parity", version: 1, shape, B, T, prompt, loss, gradAbsMax, tolerances, ... }.
//
// Checks (per tensor; the bounds come from ref.json, defaults below):
//   rel = max|engine − ref| / max|ref| (the worst element against the tensor's scale), and for gradients
//   max|engine − ref| ≤ tol.grad · max(max|ref|, tol.gradFloor · gradAbsMax), so a tensor whose gradient is
//   tiny (e.g. k_proj.bias, non-zero only through RoPE) is judged against the model's gradient scale, not its own.
//   The loss: |engine − ref| / |ref| ≤ tol.loss. Relative L2 error is reported for every tensor too.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { Model } from '../lib/engine/model';
import { SafetensorsFile, writeSafetensors } from '../lib/engine/safetensors';
import { addon } from '../lib/native';

export const REF_FORMAT = 'rift-hf-parity';
export const REF_VERSION = 1;

export interface ParityTolerances {
  /** Logits rows: max|Δ| / max|ref| over the stored rows. */
  logits: number;
  /** Per-token log-probs: max|Δ| / max|ref|. */
  tokenLogps: number;
  /** Loss: |Δ| / |ref|. */
  loss: number;
  /** Gradients: max|Δ| ≤ grad · max(max|ref|, gradFloor · gradAbsMax). */
  grad: number;
  gradFloor: number;
}

/**
 * Defaults for an fp32 engine against fp32 PyTorch with TF32 off. Different summation orders (blocked GEMMs,
 * tree vs sequential reductions) give ~√K·2⁻²⁴ relative error per dot product (≈ 6e-6 for K = 8960), growing
 * through the layers to ~1e-5..1e-4 relative in the gradients. 1e-3 keeps a 10× margin over that and still sits
 * 4× below one bf16 rounding (2⁻⁸ ≈ 3.9e-3): a bf16 GEMM leaking into an fp32 run fails, a wrong op fails by O(1).
 */
export const DEFAULT_TOLERANCES: ParityTolerances = {
  logits: 2e-4,
  tokenLogps: 2e-4,
  loss: 2e-5,
  grad: 1e-3,
  gradFloor: 1e-3,
};

export interface ReferenceMeta {
  format: string;
  version: number;
  shape: string;
  B: number;
  T: number;
  prompt: number;
  /** HF's loss in float64 (JSON keeps the full double). */
  loss: number;
  /** max over every gradient tensor of max|grad| (the gradient scale for gradFloor). */
  gradAbsMax: number;
  tolerances: Partial<ParityTolerances>;
  [key: string]: unknown;
}

export interface ReferenceData {
  meta: ReferenceMeta;
  ids: Int32Array;
  targets: Int32Array;
  logitsIndex: Int32Array;
  /** (R, V) */
  logitsRows: Float32Array;
  tokenLogps: Float32Array;
  grads: Map<string, { shape: number[]; data: Float32Array }>;
}

/** Writes <dir>/ref.safetensors + <dir>/ref.json (the model itself goes to <dir>/model/). */
export function writeReference(dir: string, ref: ReferenceData): void {
  const { meta, ids, targets, logitsIndex, logitsRows, tokenLogps, grads } = ref;
  const N = meta.B * meta.T;
  if (ids.length !== N || targets.length !== N || tokenLogps.length !== N)
    throw new RangeError(`reference: ids, targets and tokenLogps must hold B·T = ${N} values`);
  if (logitsIndex.length === 0 || logitsRows.length % logitsIndex.length)
    throw new RangeError(
      `reference: logitsRows length ${logitsRows.length} is not a multiple of ${logitsIndex.length} rows`,
    );
  const V = logitsRows.length / logitsIndex.length;
  const f32 = (a: ArrayLike<number>) => Float32Array.from(a);
  const tensors = [
    { name: 'ids', shape: [meta.B, meta.T], data: f32(ids) },
    { name: 'targets', shape: [meta.B, meta.T], data: f32(targets) },
    { name: 'logits_index', shape: [logitsIndex.length], data: f32(logitsIndex) },
    { name: 'logits_rows', shape: [logitsIndex.length, V], data: logitsRows },
    { name: 'token_logps', shape: [N], data: tokenLogps },
    { name: 'loss', shape: [1], data: Float32Array.of(meta.loss) },
    ...[...grads].map(([name, g]) => ({ name: `grad.${name}`, shape: g.shape, data: g.data })),
  ];
  fs.mkdirSync(dir, { recursive: true });
  writeSafetensors(path.join(dir, 'ref.safetensors'), tensors, {
    metadata: { format: REF_FORMAT, version: String(REF_VERSION) },
  });
  fs.writeFileSync(path.join(dir, 'ref.json'), JSON.stringify(meta, null, 2) + '\n');
}

function readJson(file: string): unknown {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`${file}: ${(e as Error).message}`);
  }
}

/** Reads and validates ref.json. */
export function readReferenceMeta(dir: string): ReferenceMeta {
  const file = path.join(dir, 'ref.json');
  const m = readJson(file) as Partial<ReferenceMeta> | null;
  if (m === null || typeof m !== 'object') throw new TypeError(`${file}: must hold a JSON object`);
  if (m.format !== REF_FORMAT)
    throw new Error(`${file}: format is ${JSON.stringify(m.format)}, expected "${REF_FORMAT}"`);
  if (m.version !== REF_VERSION)
    throw new Error(`${file}: version ${m.version} is not supported (expected ${REF_VERSION})`);
  for (const k of ['B', 'T', 'prompt'] as const)
    if (!Number.isSafeInteger(m[k]) || (m[k] as number) < (k === 'prompt' ? 0 : 1))
      throw new RangeError(`${file}: ${k} must be a positive integer, got ${m[k]}`);
  for (const k of ['loss', 'gradAbsMax'] as const)
    if (typeof m[k] !== 'number' || !Number.isFinite(m[k]))
      throw new TypeError(`${file}: ${k} must be a finite number, got ${m[k]}`);
  if (m.tolerances !== undefined && (m.tolerances === null || typeof m.tolerances !== 'object'))
    throw new TypeError(`${file}: tolerances must be an object`);
  for (const [k, v] of Object.entries(m.tolerances ?? {})) {
    if (!(k in DEFAULT_TOLERANCES)) throw new RangeError(`${file}: unknown tolerance "${k}"`);
    if (typeof v !== 'number' || !(v > 0))
      throw new RangeError(`${file}: tolerances.${k} must be a positive number, got ${v}`);
  }
  return m as ReferenceMeta;
}

/** A float tensor of integers (ids, targets, row indices) back to Int32Array; throws on a non-integer. */
function toInt32(file: SafetensorsFile, name: string): Int32Array {
  const f = file.readFloat32(name);
  const out = new Int32Array(f.length);
  for (let i = 0; i < f.length; i++) {
    if (!Number.isInteger(f[i])) throw new RangeError(`ref.safetensors: "${name}"[${i}] = ${f[i]} is not an integer`);
    out[i] = f[i];
  }
  return out;
}

export interface TensorCheck {
  name: string;
  kind: 'loss' | 'logits' | 'tokenLogps' | 'grad';
  elements: number;
  maxAbsErr: number;
  maxAbsRef: number;
  /** maxAbsErr / maxAbsRef (for the loss: |Δ| / |ref|). */
  rel: number;
  /** ‖engine − ref‖₂ / ‖ref‖₂ (0/0 = 0). */
  relL2: number;
  /** The allowed maxAbsErr. */
  bound: number;
  worstIndex: number;
  got: number;
  want: number;
  pass: boolean;
  note?: string;
}

/**
 * Compares one tensor: passes when every element is finite and max|got − want| ≤ bound, where
 * bound = tol · max(max|want|, scaleFloor). NaN or Inf in `got` fails (reported at its index).
 */
export function compareTensor(
  name: string,
  kind: TensorCheck['kind'],
  got: ArrayLike<number>,
  want: ArrayLike<number>,
  tol: number,
  scaleFloor = 0,
): TensorCheck {
  if (got.length !== want.length) {
    return {
      name,
      kind,
      elements: want.length,
      maxAbsErr: Infinity,
      maxAbsRef: NaN,
      rel: Infinity,
      relL2: Infinity,
      bound: 0,
      worstIndex: -1,
      got: NaN,
      want: NaN,
      pass: false,
      note: `length ${got.length} != reference ${want.length}`,
    };
  }
  let maxErr = 0,
    maxRef = 0,
    worst = 0,
    err2 = 0,
    ref2 = 0,
    badIndex = -1;
  for (let i = 0; i < want.length; i++) {
    const g = got[i],
      w = want[i];
    if (!Number.isFinite(g)) {
      if (badIndex < 0) badIndex = i;
      continue;
    }
    const d = Math.abs(g - w);
    const a = Math.abs(w);
    if (d > maxErr) {
      maxErr = d;
      worst = i;
    }
    if (a > maxRef) maxRef = a;
    err2 += d * d;
    ref2 += w * w;
  }
  const bound = tol * Math.max(maxRef, scaleFloor);
  const relL2 = ref2 > 0 ? Math.sqrt(err2 / ref2) : err2 > 0 ? Infinity : 0;
  if (badIndex >= 0) {
    return {
      name,
      kind,
      elements: want.length,
      maxAbsErr: Infinity,
      maxAbsRef: maxRef,
      rel: Infinity,
      relL2: Infinity,
      bound,
      worstIndex: badIndex,
      got: got[badIndex],
      want: want[badIndex],
      pass: false,
      note: `non-finite engine value at ${badIndex}`,
    };
  }
  const rel = maxRef > 0 ? maxErr / maxRef : maxErr > 0 ? Infinity : 0;
  return {
    name,
    kind,
    elements: want.length,
    maxAbsErr: maxErr,
    maxAbsRef: maxRef,
    rel,
    relL2,
    bound,
    worstIndex: worst,
    got: got[worst],
    want: want[worst],
    pass: maxErr <= bound,
  };
}

export interface ParityOptions {
  dir: string;
  device?: 'cpu' | 'cuda';
  precision?: 'fp32' | 'bf16';
  /** Progress lines (default: stderr). */
  log?: (s: string) => void;
  /**
   * Called with each engine gradient before it is compared (tests use it to corrupt one and check that the
   * comparison fails); returns the array to compare.
   */
  mutateGrad?: (name: string, grad: Float32Array) => Float32Array;
}

export interface ParityReport {
  shape: string;
  dir: string;
  device: string;
  precision: string;
  /** What the engine says it runs on (Model.native.info()); must equal `device`. */
  engineDevice: string | null;
  B: number;
  T: number;
  numParams: number;
  tolerances: ParityTolerances;
  loss: { engine: number; reference: number };
  checks: TensorCheck[];
  failures: number;
  pass: boolean;
  seconds: { load: number; forward: number; lossAndBackward: number; compare: number };
  reference: Record<string, unknown>;
}

const now = () => performance.now() / 1e3;

/** Loads <dir>/model on `device`, runs the reference batch and compares everything (see the file comment). */
export function runParity(o: ParityOptions): ParityReport {
  const log = o.log ?? ((s: string) => process.stderr.write(s + '\n'));
  const device = o.device ?? 'cpu';
  const precision = o.precision ?? 'fp32';
  if (device !== 'cpu' && device !== 'cuda')
    throw new RangeError(`device: must be 'cpu' or 'cuda', got ${JSON.stringify(device)}`);
  if (precision !== 'fp32' && precision !== 'bf16')
    throw new RangeError(`precision: must be 'fp32' or 'bf16', got ${JSON.stringify(precision)}`);
  const meta = readReferenceMeta(o.dir);
  const tol: ParityTolerances = { ...DEFAULT_TOLERANCES, ...meta.tolerances };
  const { B, T } = meta;
  const N = B * T;

  const ref = SafetensorsFile.open(path.join(o.dir, 'ref.safetensors'));
  try {
    const ids = toInt32(ref, 'ids');
    const targets = toInt32(ref, 'targets');
    if (ids.length !== N || targets.length !== N)
      throw new RangeError(
        `ref.safetensors: ids/targets hold ${ids.length}/${targets.length} values, ref.json says B·T = ${N}`,
      );
    const rowIndex = toInt32(ref, 'logits_index');
    const refRows = ref.readFloat32('logits_rows');
    const refTokenLogps = ref.readFloat32('token_logps');

    const t0 = now();
    log(`loading ${path.join(o.dir, 'model')} on ${device} (${precision})`);
    // device/precision: the engine's ModelOptions (native/napi/model.cc reads them).
    const loadOpts = { device, precision } as Parameters<typeof Model.load>[1];
    const model = Model.load(path.join(o.dir, 'model'), loadOpts);
    const info = model.native.info() as ReturnType<typeof model.native.info> & { device?: string; precision?: string };
    const engineDevice = info.device ?? null;
    if (engineDevice !== null && engineDevice !== device)
      throw new Error(`the engine loaded the model on '${engineDevice}', not '${device}'`);
    if (info.precision !== undefined && info.precision !== precision)
      throw new Error(`the engine runs precision '${info.precision}', not '${precision}'`);
    const V = model.vocab;
    if (refRows.length !== rowIndex.length * V)
      throw new RangeError(
        `ref.safetensors: logits_rows holds ${refRows.length} values, expected ${rowIndex.length} × V = ${rowIndex.length * V}`,
      );
    const t1 = now();

    // Logits rows (forward without cache).
    const logits = model.forward({ ids, B, T });
    const gotRows = new Float32Array(refRows.length);
    rowIndex.forEach((r, i) => {
      if (r < 0 || r >= N) throw new RangeError(`ref.safetensors: logits_index[${i}] = ${r} is outside [0, ${N})`);
      gotRows.set(logits.subarray(r * V, (r + 1) * V), i * V);
    });
    const t2 = now();

    // Loss + backward (gradients start at zero).
    model.zeroGrad();
    const offsets = Int32Array.of(...Array.from({ length: B + 1 }, (_, b) => b * T));
    const out = model.lossAndBackward({
      ids,
      B,
      T,
      targets,
      offsets,
      method: 'sft',
      reduction: 'token-mean',
      tokenLogprobs: true,
    });
    const t3 = now();

    const checks: TensorCheck[] = [];
    const lossRel = Math.abs(out.loss - meta.loss) / Math.abs(meta.loss);
    checks.push({
      name: 'loss',
      kind: 'loss',
      elements: 1,
      maxAbsErr: Math.abs(out.loss - meta.loss),
      maxAbsRef: Math.abs(meta.loss),
      rel: lossRel,
      relL2: lossRel,
      bound: tol.loss * Math.abs(meta.loss),
      worstIndex: 0,
      got: out.loss,
      want: meta.loss,
      pass: Number.isFinite(out.loss) && lossRel <= tol.loss,
    });
    const rowLabel = rowIndex.length <= 8 ? `[${Array.from(rowIndex).join(', ')}]` : `(${rowIndex.length} rows)`;
    checks.push(compareTensor(`logits rows ${rowLabel}`, 'logits', gotRows, refRows, tol.logits));
    checks.push(
      compareTensor(
        'token log-probs',
        'tokenLogps',
        out.tokenLogprobs ?? new Float32Array(0),
        refTokenLogps,
        tol.tokenLogps,
      ),
    );

    const floor = tol.gradFloor * meta.gradAbsMax;
    const refGrads = new Set(ref.names.filter((n) => n.startsWith('grad.')).map((n) => n.slice(5)));
    for (const t of model.tensorTable()) {
      if (!refGrads.has(t.name)) {
        checks.push({
          name: t.name,
          kind: 'grad',
          elements: 0,
          maxAbsErr: Infinity,
          maxAbsRef: NaN,
          rel: Infinity,
          relL2: Infinity,
          bound: 0,
          worstIndex: -1,
          got: NaN,
          want: NaN,
          pass: false,
          note: 'no reference gradient (grad.' + t.name + ' is missing from ref.safetensors)',
        });
        continue;
      }
      refGrads.delete(t.name);
      const want = ref.readFloat32(`grad.${t.name}`);
      let got = model.tensor(t.name, 'grad');
      if (o.mutateGrad) got = o.mutateGrad(t.name, got);
      checks.push(compareTensor(t.name, 'grad', got, want, tol.grad, floor));
    }
    for (const name of refGrads)
      checks.push({
        name,
        kind: 'grad',
        elements: 0,
        maxAbsErr: Infinity,
        maxAbsRef: NaN,
        rel: Infinity,
        relL2: Infinity,
        bound: 0,
        worstIndex: -1,
        got: NaN,
        want: NaN,
        pass: false,
        note: 'the reference has a gradient for a tensor the engine does not have',
      });
    const t4 = now();

    const failures = checks.filter((c) => !c.pass).length;
    const { format: _f, version: _v, tolerances: _t, ...rest } = meta;
    return {
      shape: meta.shape,
      dir: path.resolve(o.dir),
      device,
      precision,
      engineDevice,
      B,
      T,
      numParams: model.numParams,
      tolerances: tol,
      loss: { engine: out.loss, reference: meta.loss },
      checks,
      failures,
      pass: failures === 0,
      seconds: {
        load: round(t1 - t0, 3),
        forward: round(t2 - t1, 3),
        lossAndBackward: round(t3 - t2, 3),
        compare: round(t4 - t3, 3),
      },
      reference: rest,
    };
  } finally {
    ref.close();
  }
}

function round(x: number, d = 2): number {
  const f = 10 ** d;
  return Math.round(x * f) / f;
}

const e = (x: number) => (Number.isFinite(x) ? x.toExponential(2) : String(x));

/** The report as a Markdown table: failures first, then the worst passing tensors by rel/bound. */
export function parityTable(r: ParityReport, maxRows = 40): string {
  const head = [
    `${r.shape} on ${r.device} (${r.precision}): ${r.pass ? 'PASS' : `FAIL (${r.failures} of ${r.checks.length} checks)`}; ` +
      `loss engine ${r.loss.engine.toFixed(7)} vs HF ${r.loss.reference.toFixed(7)}; ${r.numParams.toLocaleString('en-US')} params; ` +
      `B=${r.B} T=${r.T}; load ${r.seconds.load} s, forward ${r.seconds.forward} s, loss+backward ${r.seconds.lossAndBackward} s`,
    `tolerances: ${JSON.stringify(r.tolerances)} (grads: max|Δ| ≤ grad·max(max|ref|, gradFloor·gradAbsMax))`,
    '',
    '| tensor | kind | elements | max abs err | max abs ref | rel (max) | rel L2 | bound | result |',
    '|---|---|---:|---:|---:|---:|---:|---:|---|',
  ];
  const margin = (c: TensorCheck) => (c.bound > 0 ? c.maxAbsErr / c.bound : Infinity);
  const sorted = [...r.checks].sort(
    (a, b) =>
      Number(a.pass) - Number(b.pass) ||
      (a.kind === 'grad' ? 1 : 0) - (b.kind === 'grad' ? 1 : 0) ||
      margin(b) - margin(a),
  );
  const shown = sorted.slice(0, Math.max(maxRows, r.failures + 3));
  for (const c of shown) {
    const res = c.pass
      ? 'ok'
      : `FAIL${c.note ? `: ${c.note}` : c.worstIndex >= 0 ? ` at [${c.worstIndex}]: ${c.got} vs ${c.want}` : ''}`;
    head.push(
      `| ${c.name} | ${c.kind} | ${c.elements} | ${e(c.maxAbsErr)} | ${e(c.maxAbsRef)} | ${e(c.rel)} | ${e(c.relL2)} | ${e(c.bound)} | ${res} |`,
    );
  }
  if (shown.length < sorted.length)
    head.push(`| … ${sorted.length - shown.length} more gradient tensors, all within bounds | | | | | | | | ok |`);
  return head.join('\n');
}

function slug(s: string): string {
  return s
    .toLowerCase()
    .replace(/\(r\)|\(tm\)/g, '')
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 40);
}

/** The machine's name for result files: the GPU's for 'cuda', the CPU model and core count for 'cpu'. */
export function deviceName(device: 'cpu' | 'cuda'): string {
  if (device === 'cuda') return addon.cuda?.devices()[0]?.name ?? 'cuda';
  const cpus = os.cpus();
  return `${cpus[0]?.model ?? 'cpu'} ${cpus.length}c`;
}

/** Merges the report into bench/results/parity-<device>-<date>.json under runs[<shape>]. Returns the file. */
export function writeParityResult(
  r: ParityReport,
  resultsDir = path.resolve(__dirname, '..', '..', 'bench', 'results'),
): string {
  const name = deviceName(r.device as 'cpu' | 'cuda');
  const day = new Date().toISOString().slice(0, 10);
  const file = path.join(resultsDir, `parity-${slug(name)}-${day}.json`);
  let doc: { machine?: unknown; runs: Record<string, unknown> } = { runs: {} };
  if (fs.existsSync(file)) {
    const old = readJson(file) as { runs?: Record<string, unknown> } | null;
    if (old && typeof old === 'object' && old.runs && typeof old.runs === 'object')
      doc = { ...old, runs: { ...old.runs } };
  }
  doc.machine = {
    device: name,
    node: process.version,
    platform: `${os.platform()} ${os.arch()}`,
    date: new Date().toISOString(),
  };
  doc.runs[`${r.shape}/${r.device}/${r.precision}`] = { ...r, table: parityTable(r) };
  fs.mkdirSync(resultsDir, { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(doc, null, 2) + '\n');
  fs.renameSync(tmp, file);
  return file;
}

// ---------------------------------------------------------------------------------------------------------
// A reference from the checked-in HF fixtures (test/fixtures/parity, RIFTPAR1, FORMAT.md), for CPU runs here.

interface FixtureRecord {
  shape: number[];
  data: Float32Array | Int32Array | Float64Array;
}

/** Reads a RIFTPAR1 file (test/fixtures/parity/FORMAT.md). */
export function readRiftpar(file: string): Map<string, FixtureRecord> {
  const buf = fs.readFileSync(file);
  if (buf.length < 16 || buf.toString('latin1', 0, 8) !== 'RIFTPAR1') throw new Error(`${file}: not a RIFTPAR1 file`);
  if (buf.readUInt32LE(8) !== 1) throw new Error(`${file}: version ${buf.readUInt32LE(8)} is not supported`);
  const count = buf.readUInt32LE(12);
  const out = new Map<string, FixtureRecord>();
  let off = 16;
  const need = (n: number) => {
    if (off + n > buf.length) throw new Error(`${file}: truncated at byte ${off}`);
  };
  for (let r = 0; r < count; r++) {
    need(2);
    const len = buf.readUInt16LE(off);
    need(2 + len + 2);
    const name = buf.toString('utf8', off + 2, off + 2 + len);
    off += 2 + len;
    const dt = buf.readUInt8(off),
      ndim = buf.readUInt8(off + 1);
    off += 2;
    if (dt > 2) throw new Error(`${file}: "${name}" has unknown dtype code ${dt}`);
    need(4 * ndim);
    const shape = Array.from({ length: ndim }, (_, i) => buf.readUInt32LE(off + 4 * i));
    off += 4 * ndim;
    const n = shape.reduce((a, b) => a * b, 1),
      bytes = n * (dt === 2 ? 8 : 4);
    need(bytes);
    const copy = new Uint8Array(bytes);
    buf.copy(copy, 0, off, off + bytes);
    off += bytes;
    out.set(name, {
      shape,
      data:
        dt === 0
          ? new Float32Array(copy.buffer)
          : dt === 1
            ? new Int32Array(copy.buffer)
            : new Float64Array(copy.buffer),
    });
  }
  if (off !== buf.length) throw new Error(`${file}: ${buf.length - off} trailing bytes`);
  return out;
}

/**
 * Converts fixture <name> (test/fixtures/parity/<name>/ + <name>.bin) into the reference format in outDir:
 * outDir/model/ gets the fixture's config.json and model.safetensors; targets are the fixture's labels shifted
 * (targets[b, t] = labels[b, t+1]), token_logps are computed in float64 from the fixture's logits.
 */
export function referenceFromFixture(fixtureDir: string, outDir: string): ReferenceMeta {
  const rec = readRiftpar(`${fixtureDir.replace(/[/\\]+$/, '')}.bin`);
  const get = (n: string) => {
    const r = rec.get(n);
    if (!r) throw new Error(`${fixtureDir}.bin: no record "${n}"`);
    return r;
  };
  const idsRec = get('input_ids'),
    labels = get('labels').data,
    logits = get('logits').data;
  const [B, T] = idsRec.shape;
  const V = get('logits').shape[2];
  const N = B * T;
  const targets = new Int32Array(N).fill(-100);
  for (let b = 0; b < B; b++) for (let t = 0; t + 1 < T; t++) targets[b * T + t] = labels[b * T + t + 1];
  let prompt = 0;
  while (prompt < T && labels[prompt] === -100) prompt++;
  const tokenLogps = new Float32Array(N);
  for (let r = 0; r < N; r++) {
    if (targets[r] === -100) continue;
    let m = -Infinity;
    for (let v = 0; v < V; v++) m = Math.max(m, logits[r * V + v]);
    let s = 0;
    for (let v = 0; v < V; v++) s += Math.exp(logits[r * V + v] - m);
    tokenLogps[r] = logits[r * V + targets[r]] - m - Math.log(s);
  }
  const grads = new Map<string, { shape: number[]; data: Float32Array }>();
  let gradAbsMax = 0;
  for (const [name, r] of rec) {
    if (!name.startsWith('grad.')) continue;
    const data = r.data as Float32Array;
    for (let i = 0; i < data.length; i++) gradAbsMax = Math.max(gradAbsMax, Math.abs(data[i]));
    grads.set(name.slice(5), { shape: r.shape, data });
  }
  const meta: ReferenceMeta = {
    format: REF_FORMAT,
    version: REF_VERSION,
    shape: path.basename(fixtureDir),
    B,
    T,
    prompt,
    loss: get('loss').data[0],
    gradAbsMax,
    // the fixture's own bounds (FORMAT.md): logits 1e-4 absolute on values of a few units, loss 1e-5 relative
    tolerances: { logits: 1e-4, tokenLogps: 1e-4, loss: 1e-5, grad: 1e-3, gradFloor: 1e-3 },
    producer: { from: `${path.basename(fixtureDir)}.bin (test/fixtures/parity, HF transformers on CPU)` },
    logitsRows: 'all',
  };
  fs.mkdirSync(path.join(outDir, 'model'), { recursive: true });
  for (const f of ['config.json', 'model.safetensors'])
    fs.copyFileSync(path.join(fixtureDir, f), path.join(outDir, 'model', f));
  writeReference(outDir, {
    meta,
    ids: Int32Array.from(idsRec.data),
    targets,
    logitsIndex: Int32Array.from({ length: N }, (_, i) => i),
    logitsRows: Float32Array.from(logits),
    tokenLogps,
    grads,
  });
  return meta;
}

// ---------------------------------------------------------------------------------------------------------
// CLI

function usage(): string {
  return (
    'usage: node dist/bench/gpu-parity.js <dir> [--device cpu|cuda] [--precision fp32|bf16] [--no-write]\n' +
    '       node dist/bench/gpu-parity.js --from-fixture <test/fixtures/parity/tiny-qwen2> <dir>'
  );
}

function main(argv: string[]): number {
  if (argv[0] === '--from-fixture') {
    if (argv.length !== 3) throw new Error(usage());
    const meta = referenceFromFixture(argv[1], argv[2]);
    console.log(`wrote ${argv[2]}: ${meta.shape} B=${meta.B} T=${meta.T} loss ${meta.loss}`);
    return 0;
  }
  let dir: string | undefined,
    device: 'cpu' | 'cuda' = 'cpu',
    precision: 'fp32' | 'bf16' = 'fp32',
    write = true;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--device') {
      const v = argv[++i];
      if (v !== 'cpu' && v !== 'cuda') throw new Error(`--device: expected cpu or cuda, got ${v}`);
      device = v;
    } else if (a === '--precision') {
      const v = argv[++i];
      if (v !== 'fp32' && v !== 'bf16') throw new Error(`--precision: expected fp32 or bf16, got ${v}`);
      precision = v;
    } else if (a === '--no-write') write = false;
    else if (a === '--help' || a === '-h') {
      console.log(usage());
      return 0;
    } else if (a.startsWith('-') || dir !== undefined) throw new Error(`unexpected argument ${a}\n${usage()}`);
    else dir = a;
  }
  if (!dir) throw new Error(usage());
  const report = runParity({ dir, device, precision });
  console.log(parityTable(report));
  if (write) console.error(`wrote ${path.relative(process.cwd(), writeParityResult(report))}`);
  return report.pass ? 0 : 1;
}

if (require.main === module) {
  let code: number;
  try {
    code = main(process.argv.slice(2));
  } catch (err) {
    console.error(err instanceof Error ? err.message : err);
    code = 1;
  }
  process.exitCode = code;
}
