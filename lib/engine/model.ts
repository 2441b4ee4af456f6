// The decoder engine (Qwen2 / Llama, docs/design.md §3) as a TypeScript class over the native Model
// (native/napi/model.cc → native/model/decoder.h): HF checkpoints in and out, inference with and without a KV
// cache, the fused lm_head + loss + backward over flat buffers, gradient accumulation and AdamW.
//
//   const model = Model.load('models/tiny');
//   const out = model.lossAndBackward({ ids, B, T, targets, offsets, method: 'sft' });   // grads += ∂loss/∂θ
//   model.step({ lr: 1e-4, maxGradNorm: 1 }); model.zeroGrad();
//
// Row b·T + t of the logits predicts the token after position t: targets[b·T + t] = ids[b·T + t + 1] for a
// response token, −100 for prompt positions, padding and the last position.
import * as fs from 'fs';
import * as path from 'path';
import {
  addon,
  localError,
  NativeKvCache,
  NativeLossResult,
  NativeMemoryReport,
  NativeModel,
  NativeStepResult,
} from '../native';
import { LossResult, LossSpecOptions, lossSpecArgs, publicResult } from '../kernels/loss';
import { mulberry32 } from '../util/rng';
import {
  checkEnum,
  checkedProduct,
  checkFiniteNumber,
  checkInteger,
  describe,
  rangeError,
  typeError,
} from '../util/validate';
import { DecoderConfig, loadCheckpoint, parseConfig, saveCheckpoint } from './checkpoint';

/** Where a Model runs. */
export const DEVICES = ['cpu', 'cuda'] as const;
export type Device = (typeof DEVICES)[number];
/** A Model's storage and GEMM precision, and its saved activations' dtype (docs/design.md, precision rules). */
export const PRECISIONS = ['fp32', 'bf16'] as const;
export type Precision = (typeof PRECISIONS)[number];

export interface ModelOptions {
  /**
   * Where every buffer lives and every op runs: 'cpu' (default) or 'cuda' (the GPU backend: cuBLAS loaded at run
   * time; Model.devices() tells whether it is usable). The API is the same on both; on 'cuda', params() / grads() /
   * tensor() / optimizerState() return host COPIES — write through setParams() / setTensor() / setOptimizerState().
   */
  device?: Device;
  /**
   * GEMM operand precision: 'fp32', or 'bf16' (operands rounded to bfloat16, fp32 accumulation and output, like
   * torch autocast; master weights, gradients and AdamW state stay fp32). Default: 'fp32' on the CPU, 'bf16' on CUDA.
   */
  precision?: Precision;
  /**
   * How the training forward stores its saved activations (default: the precision): 'bf16' keeps each layer's big
   * saved tensors as bfloat16 (about half the activation bytes, no extra FLOPs; the backward sees them rounded —
   * residual inputs, RMSNorm and attention statistics stay fp32). `recompute` takes precedence.
   */
  activationDtype?: Precision;
  /**
   * Where bf16 activations meet bf16 GEMMs (precision and activationDtype both 'bf16'), the ops that feed a linear
   * layer write bf16 directly and the linear layers read it, skipping the fp32 round trips (default true). false
   * keeps the store-then-widen path: the same results bit for bit, slower on a GPU; for comparisons.
   */
  bf16Direct?: boolean;
  /**
   * Activation recomputation (default false): keep only each layer's input during the forward and rerun each
   * layer's forward just before its backward — one more forward per step for activations of about L·N·C floats plus
   * one layer's worth, instead of ~L × (4C + 3I + …)·N. Same gradients.
   */
  recompute?: boolean;
  /** Rows per lm_head + loss chunk (the (rows, vocab) logits buffer); default: ~64 MB of logits, 64..1024 rows. */
  chunkRows?: number;
  /** A frozen reference model (DPO): its parameters count as 'reference' in memory(), not 'params'. */
  reference?: boolean;
}

export interface InitOptions extends ModelOptions {
  /** Seed of the random initialisation (default 0). */
  seed?: number;
  /** Std of every weight and bias (default 0.02, HF's initializer_range); 0 leaves them at zero. */
  std?: number;
  /** Std of the noise added to the RMSNorm weights around 1 (default 0). */
  normStd?: number;
}

export interface TensorEntry {
  name: string;
  /** Offset in floats into the flat params (and grads) buffer. */
  offset: number;
  shape: number[];
}

/**
 * lossAndGrad's options (lib/kernels/loss.ts) with the model's tokens in place of the logits: row b·T + t of the
 * B·T rows has targets[b·T + t] (the token after that position, −100 = none); offsets run over those rows.
 */
/** Model.forward's options: ids (B·T token ids, row-major), the batch shape B × T, and lastOnly (default false). */
export interface ForwardOptions {
  ids: Int32Array;
  B: number;
  T: number;
  /** Only the last position of each row: logits (B, V) instead of (B·T, V). */
  lastOnly?: boolean;
}

export type ModelLossOptions = LossSpecOptions & {
  /** Token ids (B, T), row-major. */
  ids: Int32Array;
  B: number;
  T: number;
  /** false: loss and log-probs only, gradients untouched (always false for 'logprob'). Default true. */
  backward?: boolean;
};

export interface StepOptions {
  lr: number;
  beta1?: number; // 0.9
  beta2?: number; // 0.999
  eps?: number; // 1e-8
  /** Decoupled weight decay (torch.optim.AdamW), applied to every parameter. Default 0.01. */
  weightDecay?: number;
  /** Clip the global gradient norm to this (torch clip_grad_norm_); 0 or absent: no clipping. */
  maxGradNorm?: number;
}

export type StepResult = NativeStepResult;
export type MemoryReport = NativeMemoryReport;

/** Files copied from the source checkpoint directory on save(), when present. */
export const TOKENIZER_FILES = [
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'added_tokens.json',
  'vocab.json',
  'merges.txt',
  'tokenizer.model',
  'chat_template.jinja',
  'chat_template.json',
  'generation_config.json',
] as const;

function call<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw localError(e);
  }
}

type TypedArrayOf<T> = new (buffer: ArrayBufferLike, byteOffset: number, length: number) => T;

/**
 * The same memory as a typed array of this realm: arrays made by the addon belong to the main context, and
 * `instanceof Float32Array` is false for them in a vm context (jest); a re-wrap is zero-copy.
 */
function rewrap<T extends Float32Array | Float64Array | Int32Array>(a: T, Ctor: TypedArrayOf<T>): T {
  if (a instanceof Ctor) return a;
  const f = a as { buffer: ArrayBufferLike; byteOffset: number; length: number };
  return new Ctor(f.buffer, f.byteOffset, f.length);
}
const local = (a: Float32Array): Float32Array => rewrap(a, Float32Array);
const local32 = (a: Int32Array): Int32Array => rewrap(a, Int32Array);

/** Re-wraps a native loss result's arrays in this realm's typed-array classes (see rewrap()). */
function localResult(r: NativeLossResult): LossResult {
  const out: NativeLossResult = { ...r, seqLogps: rewrap(r.seqLogps, Float64Array) };
  if (r.tokenLogps) out.tokenLogps = local(r.tokenLogps);
  if (r.entropy) out.entropy = local(r.entropy);
  return publicResult(out);
}

/** Elements of a tensor of the table. */
function numel(t: TensorEntry): number {
  return t.shape.reduce((a, b) => a * b, 1);
}

/** Optional cache rows of a prefill / decode: an Int32Array of B rows (their values are checked natively). */
function checkRows(rows: unknown, B: number | undefined): Int32Array | undefined {
  if (rows === undefined) return undefined;
  if (!(rows instanceof Int32Array)) throw typeError('rows', `must be an Int32Array, got ${describe(rows)}`);
  if (B !== undefined && rows.length !== B) throw rangeError('rows', `length must be B = ${B}, got ${rows.length}`);
  if (rows.length === 0) throw rangeError('rows', 'must hold at least one row');
  return rows;
}

function checkIds(arg: string, v: unknown, n: number, label = 'B × T'): Int32Array {
  if (!(v instanceof Int32Array)) throw typeError(arg, `must be an Int32Array, got ${describe(v)}`);
  if (v.length !== n) throw rangeError(arg, `length must be ${label} = ${n}, got ${v.length}`);
  return v;
}

/**
 * A KV cache for prefill/decode: B rows (slots) of `capacity` positions per layer. Each row holds its own number of
 * tokens (lengths()); prefill/decode append to every row or to chosen rows, each at its own next position, so one
 * decode step can run rows of different prompts (continuous batching: resetRows() frees a finished row, copyRows()
 * fills it with the next prompt's prefilled row).
 */
export class KvCache {
  /** @internal */
  constructor(readonly native: NativeKvCache) {}
  /** The longest row's length (every row's, when they agree). */
  get length(): number {
    return this.native.length;
  }
  /** The tokens each row holds (a copy; empty after free()). */
  lengths(): Int32Array {
    return local32(this.native.lengths());
  }
  /** Forgets the tokens of rows [row, row + count) (the memory stays allocated): they are free for copyRows(). */
  resetRows(row: number, count = 1): void {
    checkInteger('row', row, 0);
    checkInteger('count', count, 0);
    call(() => this.native.resetRows(row, count));
  }
  get capacity(): number {
    return this.native.capacity;
  }
  get batch(): number {
    return this.native.batch;
  }
  /** True after free(). */
  get freed(): boolean {
    return this.native.freed;
  }
  /** Forgets every token (the memory stays allocated). */
  reset(): void {
    this.native.reset();
  }
  /**
   * Copies row srcRow of src (same capacity) into rows [dstRow, dstRow + count) (default: every row from dstRow),
   * which then hold src's row's tokens. Those rows must be empty (a fresh cache, reset() or resetRows()): a row in
   * use is a RangeError naming dstRow. Prefill a prompt once, then decode K samples.
   */
  copyRows(src: KvCache, srcRow: number, dstRow = 0, count?: number): void {
    if (!(src instanceof KvCache)) throw typeError('src', `must be a KvCache, got ${describe(src)}`);
    checkInteger('srcRow', srcRow, 0);
    checkInteger('dstRow', dstRow, 0);
    if (count !== undefined) checkInteger('count', count, 0);
    call(() => this.native.copyRows(src.native, srcRow, dstRow, count));
  }
  /** Frees the cache's memory now (otherwise when garbage-collected). */
  free(): void {
    this.native.free();
  }
}

export class Model {
  readonly config: DecoderConfig;
  readonly native: NativeModel;
  /** The checkpoint directory this model was loaded from (tokenizer files are copied from it on save). */
  readonly sourceDir?: string;
  private table?: TensorEntry[];
  private paramsArr?: Float32Array; // the flat buffers never move: one view each
  private gradsArr?: Float32Array;

  private constructor(config: DecoderConfig, opts: ModelOptions, sourceDir?: string) {
    if (opts === null || typeof opts !== 'object')
      throw typeError('options', `must be an object, got ${describe(opts)}`);
    const native: Record<string, unknown> = {};
    for (const k of [
      'vocab_size',
      'hidden_size',
      'intermediate_size',
      'num_hidden_layers',
      'num_attention_heads',
      'num_key_value_heads',
      'head_dim',
      'rms_norm_eps',
      'rope_theta',
      'tie_word_embeddings',
      'qkv_bias',
      'o_bias',
    ] as const)
      native[k] = config[k];
    const o: Record<string, unknown> = {};
    const oneOf = (k: 'device' | 'precision' | 'activationDtype', allowed: readonly string[]) => {
      if (opts[k] !== undefined) o[k] = checkEnum(k, opts[k], allowed);
    };
    const flag = (k: 'recompute' | 'reference' | 'bf16Direct') => {
      const v = opts[k];
      if (v === undefined) return;
      if (typeof v !== 'boolean') throw typeError(k, `must be a boolean, got ${describe(v)}`);
      o[k] = v;
    };
    oneOf('device', DEVICES);
    oneOf('precision', PRECISIONS);
    oneOf('activationDtype', PRECISIONS);
    flag('recompute');
    flag('reference');
    flag('bf16Direct');
    if (opts.chunkRows !== undefined) o.chunkRows = checkInteger('chunkRows', opts.chunkRows, 1, 2 ** 31 - 1);
    this.config = config;
    this.native = call(() => new addon.Model(native, o));
    this.sourceDir = sourceDir;
  }

  /** Loads an HF checkpoint directory (config.json + model.safetensors or sharded) straight into the flat buffer. */
  static load(dir: string, opts: ModelOptions = {}): Model {
    const configFile = path.join(dir, 'config.json');
    let json: unknown;
    try {
      json = JSON.parse(fs.readFileSync(configFile, 'utf8'));
    } catch (e) {
      throw new Error(`${configFile}: ${(e as Error).message}`);
    }
    const model = new Model(parseConfig(json), opts, path.resolve(dir));
    model.loadWeights(dir);
    return model;
  }

  /**
   * Loads the weights of an HF checkpoint directory into this model (same config). A CPU model reads straight into
   * its flat buffer; a CUDA model reads into one host staging buffer and uploads it once.
   */
  loadWeights(dir: string): void {
    this.editParams((tensor) =>
      loadCheckpoint(dir, {
        into: (name) => {
          const v = tensor(name);
          if (!v) throw rangeError('dir', `${dir}: tensor "${name}" is not part of this model`);
          return v;
        },
      }),
    );
  }

  /** The devices a Model can be made on here: always 'cpu'; 'cuda' when a CUDA device and cuBLAS are usable. */
  static devices(): Device[] {
    return addon.Model.devices();
  }

  get device(): Device {
    return this.native.info().device;
  }
  get precision(): Precision {
    return this.native.info().precision;
  }
  get recompute(): boolean {
    return this.native.info().recompute;
  }
  get activationDtype(): Precision {
    return this.native.info().activationDtype;
  }

  /**
   * Runs fn with writable host arrays of this model's tensors (by HF name; undefined for an unknown name), then
   * makes the writes take effect: zero-copy views on the CPU; on CUDA one host copy of the flat params, uploaded
   * once fn returns (not when it throws).
   */
  editParams<T>(fn: (tensor: (name: string) => Float32Array | undefined) => T): T {
    const table = (this.table ??= this.native.tensorTable());
    // params(): the zero-copy view on the CPU, a host copy of the current params on CUDA (a zero-filled array here
    // would upload zeros over every tensor fn does not write).
    const flat = this.params();
    const byName = new Map(table.map((t) => [t.name, t]));
    const out = fn((name) => {
      const t = byName.get(name);
      return t ? flat.subarray(t.offset, t.offset + numel(t)) : undefined;
    });
    if (this.device !== 'cpu') this.setParams(flat);
    return out;
  }

  /** Copies data into the flat params at offset (any device). */
  setParams(data: Float32Array, offset = 0): void {
    if (!(data instanceof Float32Array)) throw typeError('data', `must be a Float32Array, got ${describe(data)}`);
    checkInteger('offset', offset, 0, this.numParams);
    call(() => this.native.writeBuffer('params', data, offset));
  }
  /** Copies data (its exact size) into one tensor of the params (any device). */
  setTensor(name: string, data: Float32Array): void {
    const t = this.entry(name);
    const n = numel(t);
    if (!(data instanceof Float32Array)) throw typeError('data', `must be a Float32Array, got ${describe(data)}`);
    if (data.length !== n)
      throw rangeError('data', `length must be ${n} (${name} ${JSON.stringify(t.shape)}), got ${data.length}`);
    this.setParams(data, t.offset);
  }
  /** Writes the AdamW moments (flat, params layout; exact resume on any device). */
  setOptimizerState(s: { m: Float32Array; v: Float32Array }): void {
    for (const k of ['m', 'v'] as const) {
      const a = s?.[k];
      if (!(a instanceof Float32Array)) throw typeError(k, `must be a Float32Array, got ${describe(a)}`);
      if (a.length !== this.numParams)
        throw rangeError(k, `length must be numParams = ${this.numParams}, got ${a.length}`);
    }
    if (this.device === 'cpu') {
      const views = this.optimizerState();
      if (views.m !== s.m) views.m.set(s.m);
      if (views.v !== s.v) views.v.set(s.v);
      return;
    }
    call(() => this.native.writeBuffer('m', s.m, 0));
    call(() => this.native.writeBuffer('v', s.v, 0));
  }

  private entry(name: string): TensorEntry {
    const t = (this.table ??= this.native.tensorTable()).find((e) => e.name === name);
    if (!t) throw rangeError('name', `no tensor "${name}" in this model`);
    return t;
  }

  /**
   * A model from a config (a config.json object, or a DecoderConfig from parseConfig) with seeded random weights:
   * weights and biases ~ N(0, std), RMSNorm weights 1 + N(0, normStd).
   */
  static fromConfig(config: DecoderConfig | Record<string, unknown>, opts: InitOptions = {}): Model {
    const cfg = 'raw' in config && 'qkv_bias' in config ? (config as DecoderConfig) : parseConfig(config);
    const model = new Model(cfg, opts);
    const std = opts.std === undefined ? 0.02 : checkFiniteNumber('std', opts.std);
    const normStd = opts.normStd === undefined ? 0 : checkFiniteNumber('normStd', opts.normStd);
    const rand = gaussian(opts.seed === undefined ? 0 : checkInteger('seed', opts.seed, 0, 2 ** 32 - 1));
    model.editParams((tensor) => {
      for (const t of model.tensorTable()) {
        const v = tensor(t.name)!;
        const isNorm = t.name.endsWith('layernorm.weight') || t.name === 'model.norm.weight';
        if (isNorm) for (let i = 0; i < v.length; i++) v[i] = 1 + (normStd ? normStd * rand() : 0);
        else if (std) for (let i = 0; i < v.length; i++) v[i] = std * rand();
      }
    });
    return model;
  }

  get numParams(): number {
    return this.native.info().numParams;
  }
  get vocab(): number {
    return this.config.vocab_size;
  }
  /** Steps taken by the optimizer so far. */
  get optimizerSteps(): number {
    return this.native.info().optimizerSteps;
  }

  /** HF tensor names, offsets (floats) into the flat buffers and shapes, in expectedTensors() order. */
  tensorTable(): TensorEntry[] {
    if (this.disposed) call(() => this.native.tensorTable()); // throws "disposed"
    this.table ??= this.native.tensorTable();
    return this.table.map((t) => ({ ...t, shape: [...t.shape] }));
  }
  /** The flat parameter buffer: zero-copy on the CPU (writes change the model); a host copy on CUDA. */
  params(): Float32Array {
    if (this.device !== 'cpu') return local(call(() => this.native.readBuffer('params')));
    return (this.paramsArr ??= local(this.native.paramsView()));
  }
  /** The flat gradient buffer (allocated on first use): zero-copy on the CPU, a host copy on CUDA. */
  grads(): Float32Array {
    if (this.device !== 'cpu') return local(call(() => this.native.readBuffer('grads')));
    return (this.gradsArr ??= local(call(() => this.native.gradsView())));
  }
  /** One tensor of the flat params (or grads: which = 'grad'): a zero-copy view on the CPU, a host copy on CUDA. */
  tensor(name: string, which: 'param' | 'grad' = 'param'): Float32Array {
    const t = this.entry(name);
    const n = numel(t);
    if (this.device !== 'cpu')
      return local(call(() => this.native.readBuffer(which === 'grad' ? 'grads' : 'params', t.offset, n)));
    return (which === 'grad' ? this.grads() : this.params()).subarray(t.offset, t.offset + n);
  }

  /**
   * Writes config.json + model.safetensors (+ the source directory's tokenizer files) into dir, stored as `dtype`
   * (default 'fp32'; SaveOptions.dtype).
   */
  save(dir: string, opts?: { dtype?: Precision }): void;
  /** @deprecated dtype 'float32' / 'bfloat16' are spelled 'fp32' / 'bf16' (still accepted). */
  save(dir: string, opts: { dtype: 'float32' | 'bfloat16' }): void;
  save(dir: string, opts: { dtype?: Precision | 'float32' | 'bfloat16' } = {}): void {
    const tensors = new Map(this.tensorTable().map((t) => [t.name, { shape: t.shape, data: this.tensor(t.name) }]));
    const extraFiles: Record<string, Uint8Array> = {};
    if (this.sourceDir)
      for (const f of TOKENIZER_FILES) {
        const p = path.join(this.sourceDir, f);
        if (fs.existsSync(p)) extraFiles[f] = fs.readFileSync(p);
      }
    saveCheckpoint(dir, this.config, tensors, { dtype: opts.dtype, extraFiles });
  }

  /**
   * Logits (B·T, V) of every position, or (B, V) of the last position of each row (`lastOnly`). No KV cache, no
   * gradient. Takes the options form of lossAndBackward: `forward({ ids, B, T, lastOnly? })`.
   */
  forward(opts: ForwardOptions): Float32Array;
  /** @deprecated the positional form: use `forward({ ids, B, T, lastOnly })` (still accepted, the same result). */
  forward(ids: Int32Array, B: number, T: number, opts?: { lastOnly?: boolean }): Float32Array;
  forward(first: ForwardOptions | Int32Array, B?: number, T?: number, opts: { lastOnly?: boolean } = {}): Float32Array {
    // positional: ids (any array, judged by checkIds) and B, T after it; otherwise the options object
    const positional = B !== undefined || ArrayBuffer.isView(first) || Array.isArray(first);
    const o = (positional ? { ids: first, B, T, lastOnly: opts?.lastOnly } : first) as ForwardOptions;
    if (o === null || typeof o !== 'object')
      throw new TypeError(`opts: must be an object { ids, B, T, lastOnly? }, got ${o === null ? 'null' : typeof o}`);
    checkInteger('B', o.B, 1, 2 ** 31 - 1);
    checkInteger('T', o.T, 1, 2 ** 31 - 1);
    checkIds(
      'ids',
      o.ids,
      checkedProduct('T', [
        ['B', o.B],
        ['T', o.T],
      ]),
    );
    if (!positional && o.lastOnly !== undefined && typeof o.lastOnly !== 'boolean')
      throw new TypeError(`lastOnly: must be a boolean, got ${typeof o.lastOnly}`);
    return local(call(() => this.native.forward(o.ids, o.B, o.T, !!o.lastOnly)));
  }

  /** Forward, fused lm_head + loss, backward: gradients are ADDED to the flat grad buffer (until zeroGrad()). */
  lossAndBackward(opts: ModelLossOptions): LossResult {
    const args = this.toNative(opts);
    return localResult(call(() => this.native.lossAndBackward(args)));
  }

  /**
   * Same on a libuv worker thread; the model refuses other calls (Error "busy") until the promise settles.
   * Argument errors throw synchronously, as lossAndGradAsync's do; token ids and target values are checked by the
   * engine while it runs, and reject the promise.
   */
  lossAndBackwardAsync(opts: ModelLossOptions): Promise<LossResult> {
    const args = this.toNative(opts);
    let p: Promise<NativeLossResult>;
    try {
      p = this.native.lossAndBackwardAsync(args);
    } catch (e) {
      throw localError(e);
    }
    return p.then(localResult, (e) => Promise.reject(localError(e)));
  }

  /**
   * The AdamW moments m and v (flat, in the params layout; zero before the first step): zero-copy views on the CPU,
   * host copies on CUDA (write them back with setOptimizerState()).
   */
  optimizerState(): { m: Float32Array; v: Float32Array } {
    if (this.device !== 'cpu')
      return { m: local(call(() => this.native.readBuffer('m'))), v: local(call(() => this.native.readBuffer('v'))) };
    const s = call(() => this.native.optimizerView());
    return { m: local(s.m), v: local(s.v) };
  }

  /** Sets the AdamW step counter (bias correction), e.g. when restoring a checkpoint's optimizer state. */
  setOptimizerSteps(n: number): void {
    checkInteger('n', n, 0);
    call(() => this.native.setOptimizerSteps(n));
  }

  zeroGrad(): void {
    call(() => this.native.zeroGrad());
  }
  /** sqrt(Σ g²) over every gradient (0 before any backward). */
  gradNorm(): number {
    return call(() => this.native.gradNorm());
  }
  /** Clip (maxGradNorm) + one AdamW step over the whole flat buffer. Returns the norm before clipping. */
  step(opts: StepOptions): StepResult {
    return call(() => this.native.step(stepArgs(opts)));
  }
  stepAsync(opts: StepOptions): Promise<StepResult> {
    const args = stepArgs(opts);
    let p: Promise<StepResult>;
    try {
      p = this.native.stepAsync(args);
    } catch (e) {
      throw localError(e);
    }
    return p.catch((e) => Promise.reject(localError(e)));
  }

  /** A KV cache for B rows of up to Tmax positions. */
  newKvCache(B: number, Tmax: number): KvCache {
    checkInteger('B', B, 1, 2 ** 31 - 1);
    checkInteger('Tmax', Tmax, 1, 2 ** 31 - 1);
    return new KvCache(call(() => this.native.newKvCache(B, Tmax)));
  }
  /** Copies row srcRow of src into every row of dst (the sampler's prefill-once, decode-K-rows pattern). */
  broadcastKvCache(src: KvCache, srcRow: number, dst: KvCache): void {
    if (!(dst instanceof KvCache)) throw typeError('dst', `must be a KvCache, got ${describe(dst)}`);
    dst.copyRows(src, srcRow, 0, dst.batch);
  }
  /**
   * Appends ids (B, T) to the cache and returns the last position's logits (B, V): to every row (B = cache.batch) or,
   * with `rows` (B distinct rows of the cache), to those rows in that order; each row continues from its own length.
   */
  prefill(cache: KvCache, ids: Int32Array, B: number, T: number, rows?: Int32Array): Float32Array {
    const r = this.extendArgs(cache, ids, B, T, rows);
    return local(call(() => this.native.prefill(cache.native, ids, B, T, r)));
  }
  /**
   * One token per row: tokens (cache.batch), or with `rows` one token for each of those cache rows (distinct, any
   * order; other rows are untouched); returns the logits (B, V) of that position, in the order of `tokens`.
   */
  decode(cache: KvCache, tokens: Int32Array, rows?: Int32Array): Float32Array {
    const r = this.decodeArgs(cache, tokens, rows);
    return local(call(() => this.native.decode(cache.native, tokens, r)));
  }
  /** decode() on chosen rows: what generate()'s continuous batching calls (SamplerModel.decodeRows). */
  decodeRows(cache: KvCache, tokens: Int32Array, rows: Int32Array): Float32Array {
    if (rows === undefined) throw typeError('rows', 'must be an Int32Array, got undefined');
    return this.decode(cache, tokens, rows);
  }

  /** prefill() on a libuv worker; the model and the cache refuse other calls (Error "busy") until it settles. */
  prefillAsync(cache: KvCache, ids: Int32Array, B: number, T: number, rows?: Int32Array): Promise<Float32Array> {
    const r = this.extendArgs(cache, ids, B, T, rows);
    return settle(call(() => this.native.prefillAsync(cache.native, ids, B, T, r)));
  }
  /** decode() on a libuv worker. */
  decodeAsync(cache: KvCache, tokens: Int32Array, rows?: Int32Array): Promise<Float32Array> {
    const r = this.decodeArgs(cache, tokens, rows);
    return settle(call(() => this.native.decodeAsync(cache.native, tokens, r)));
  }
  /** decodeRows() on a libuv worker. */
  decodeRowsAsync(cache: KvCache, tokens: Int32Array, rows: Int32Array): Promise<Float32Array> {
    if (rows === undefined) throw typeError('rows', 'must be an Int32Array, got undefined');
    return this.decodeAsync(cache, tokens, rows);
  }

  private extendArgs(
    cache: KvCache,
    ids: Int32Array,
    B: number,
    T: number,
    rows: Int32Array | undefined,
  ): Int32Array | undefined {
    if (!(cache instanceof KvCache)) throw typeError('cache', `must be a KvCache, got ${describe(cache)}`);
    checkInteger('B', B, 1, 2 ** 31 - 1);
    checkInteger('T', T, 1, 2 ** 31 - 1);
    checkIds(
      'ids',
      ids,
      checkedProduct('T', [
        ['B', B],
        ['T', T],
      ]),
    );
    return checkRows(rows, B);
  }
  private decodeArgs(cache: KvCache, tokens: Int32Array, rows: Int32Array | undefined): Int32Array | undefined {
    if (!(cache instanceof KvCache)) throw typeError('cache', `must be a KvCache, got ${describe(cache)}`);
    const r = checkRows(rows, undefined);
    if (r) checkIds('tokens', tokens, r.length, 'rows.length');
    else checkIds('tokens', tokens, cache.batch, 'the cache batch');
    return r;
  }

  /**
   * Frees this model's native memory (params, gradients, optimizer state, activations; host or GPU) now instead of
   * when the garbage collector gets to it. The zero-copy arrays params() / grads() / tensor() / optimizerState()
   * returned on the CPU are detached (length 0). Every later call throws an Error ("Model: disposed"); a second
   * dispose() does nothing. Throws Error "busy" while an async call runs. KvCaches made by the model are separate
   * (free() them).
   */
  dispose(): void {
    call(() => this.native.dispose());
    this.paramsArr = undefined;
    this.gradsArr = undefined;
  }
  /** True after dispose(). */
  get disposed(): boolean {
    return this.native.disposed;
  }

  /**
   * Current and peak bytes per memory category (process-wide: every model and cache), and the total: host memory at
   * the top level, GPU memory under `device`.
   */
  memory(): MemoryReport {
    return this.native.memory();
  }
  /** Resets every peak to the current value (start of a measured region). */
  resetPeaks(): void {
    this.native.resetPeaks();
  }
  static memory(): MemoryReport {
    return addon.Model.memory();
  }
  static resetPeaks(): void {
    addon.Model.resetPeaks();
  }

  private toNative(o: ModelLossOptions): Record<string, unknown> {
    if (o === null || typeof o !== 'object') throw typeError('options', `must be an object, got ${describe(o)}`);
    const B = checkInteger('B', o.B, 1, 2 ** 31 - 1);
    const T = checkInteger('T', o.T, 1, 2 ** 31 - 1);
    if (B * T > 2 ** 31 - 1) throw rangeError('T', `B × T must be < 2^31, got ${B * T}`);
    const ids = checkIds('ids', o.ids, B * T);
    if (o.backward !== undefined && typeof o.backward !== 'boolean')
      throw typeError('backward', `must be a boolean, got ${describe(o.backward)}`);
    // Token ids and target values are checked by the engine itself (ids first), on the worker for async calls.
    const { args } = lossSpecArgs(o, B * T, this.vocab, { targetValues: false, rowsName: 'B × T' });
    return { ids, B, T, ...args, backward: o.backward ?? true };
  }
}

function settle(p: Promise<Float32Array>): Promise<Float32Array> {
  return p.then(local, (e) => Promise.reject(localError(e)));
}

function stepArgs(o: StepOptions): Record<string, number> {
  if (o === null || typeof o !== 'object') throw typeError('options', `must be an object, got ${describe(o)}`);
  const out: Record<string, number> = { lr: checkFiniteNumber('lr', o.lr) };
  if (out.lr < 0) throw rangeError('lr', `must be >= 0, got ${out.lr}`);
  for (const k of ['beta1', 'beta2', 'eps', 'weightDecay', 'maxGradNorm'] as const) {
    if (o[k] === undefined) continue;
    const v = checkFiniteNumber(k, o[k]);
    if (v < 0 || ((k === 'beta1' || k === 'beta2') && v >= 1))
      throw rangeError(k, `must be in ${k.startsWith('beta') ? '[0, 1)' : '[0, ∞)'}, got ${v}`);
    out[k] = v;
  }
  return out;
}

/** Seeded N(0, 1) samples (mulberry32 + Box–Muller). */
function gaussian(seed: number): () => number {
  const next = mulberry32(seed);
  const u = () => next() + 0.5 / 4294967296; // (k + 0.5) / 2^32, exactly: never 0 (log(u) below)
  let spare: number | undefined;
  return () => {
    if (spare !== undefined) {
      const r = spare;
      spare = undefined;
      return r;
    }
    const r = Math.sqrt(-2 * Math.log(u())),
      a = 2 * Math.PI * u();
    spare = r * Math.sin(a);
    return r * Math.cos(a);
  };
}
