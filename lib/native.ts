// Loads the compiled addon and declares, by hand and in this one file, everything it exports.
// RIFT_ADDON=/path/to/rift.node overrides the default build/Release/rift.node.
import * as path from 'path';
import type { SafetensorsHeader } from './engine/safetensors';

export interface NativeLossResult {
  loss: number;
  normalizer: number;
  tokens: number;
  seqLogps: Float64Array;
  tokenLogps?: Float32Array;
  entropy?: Float32Array;
}

export interface NativeDeviceInfo {
  name: string;
  totalMemory: number;
  computeCapability: string;
  multiProcessors: number;
}

export interface NativeDeviceTensor {
  readonly bytes: number;
  readonly dtype: number;
  readonly freed: boolean;
  /** The device address of the first byte. */
  readonly address: bigint;
  /** True for a view of memory other code owns (made with an address): free() releases nothing. */
  readonly borrowed: boolean;
  upload(src: Float32Array | Uint16Array): void;
  download(dst: Float32Array | Uint16Array): void;
  free(): void;
}

export interface NativeCuda {
  deviceCount(): number;
  devices(): NativeDeviceInfo[];
  synchronize(): void;
  profiler(on: boolean): void;
  /** `address` given: a checked view of device memory owned elsewhere (native/napi/device.cc). */
  DeviceTensor: new (bytes: number, dtype: number, address?: bigint) => NativeDeviceTensor;
}

/** Host memory of one tracker category (core/memory.h), in bytes. */
export interface NativeMemStats {
  current: number;
  peak: number;
}
export type NativeMemCategory =
  'params' | 'grads' | 'optimizer' | 'activations' | 'logitsChunk' | 'kvCache' | 'reference' | 'workspace' | 'total';
/** Host memory per category at the top level; device (GPU) memory per category under `device`. */
export type NativeMemoryReport = Record<NativeMemCategory, NativeMemStats> & {
  device: Record<NativeMemCategory, NativeMemStats>;
};

export interface NativeKvCache {
  readonly length: number;
  readonly capacity: number;
  readonly batch: number;
  readonly freed: boolean;
  reset(): void;
  resetRows(row: number, count?: number): void;
  lengths(): Int32Array;
  copyRows(src: NativeKvCache, srcRow: number, dstRow?: number, count?: number): void;
  free(): void;
}

export interface NativeStepResult {
  gradNorm: number;
  clipScale: number;
  step: number;
}

/** The decoder engine (native/napi/model.cc); the config holds HF config.json field names. */
export interface NativeModel {
  paramsView(): Float32Array;
  gradsView(): Float32Array;
  readBuffer(which: 'params' | 'grads' | 'm' | 'v', offset?: number, n?: number): Float32Array;
  writeBuffer(which: 'params' | 'grads' | 'm' | 'v', data: Float32Array, offset?: number): void;
  tensorTable(): { name: string; offset: number; shape: number[] }[];
  info(): {
    numParams: number;
    chunkRows: number;
    optimizerSteps: number;
    hasGrads: boolean;
    busy: boolean;
    device: 'cpu' | 'cuda';
    precision: 'fp32' | 'bf16';
    recompute: boolean;
    activationDtype: 'fp32' | 'bf16';
    /** A training step now writes its bf16 activations from their producers (bf16 activations and bf16 GEMMs). */
    bf16Direct: boolean;
    config: Record<string, number | boolean>;
  };
  forward(ids: Int32Array, B: number, T: number, lastOnly?: boolean): Float32Array;
  lossAndBackward(opts: object): NativeLossResult;
  lossAndBackwardAsync(opts: object): Promise<NativeLossResult>;
  zeroGrad(): void;
  gradNorm(): number;
  step(opts: object): NativeStepResult;
  stepAsync(opts: object): Promise<NativeStepResult>;
  newKvCache(B: number, Tmax: number): NativeKvCache;
  prefill(cache: NativeKvCache, ids: Int32Array, B: number, T: number, rows?: Int32Array): Float32Array;
  decode(cache: NativeKvCache, tokens: Int32Array, rows?: Int32Array): Float32Array;
  prefillAsync(cache: NativeKvCache, ids: Int32Array, B: number, T: number, rows?: Int32Array): Promise<Float32Array>;
  decodeAsync(cache: NativeKvCache, tokens: Int32Array, rows?: Int32Array): Promise<Float32Array>;
  memory(): NativeMemoryReport;
  resetPeaks(): void;
  /** AdamW m and v: zero-copy views on the CPU, host copies on CUDA. */
  optimizerView(): { m: Float32Array; v: Float32Array };
  setOptimizerSteps(n: number): void;
  /** Frees the native memory now (no-op when already disposed); later calls throw. */
  dispose(): void;
  readonly disposed: boolean;
}

export interface NativeModelClass {
  new (
    config: object,
    options?: {
      chunkRows?: number;
      reference?: boolean;
      device?: 'cpu' | 'cuda';
      precision?: 'fp32' | 'bf16';
      recompute?: boolean;
      activationDtype?: 'fp32' | 'bf16';
    },
  ): NativeModel;
  devices(): ('cpu' | 'cuda')[];
  memory(): NativeMemoryReport;
  resetPeaks(): void;
}

/** The safetensors header parser and writer (native/napi/safetensors.cc). */
export interface NativeSafetensors {
  parseHeader(buf: Uint8Array, fileSize: number, fileName?: string): SafetensorsHeader;
  buildHeader(
    tensors: { name: string; dtype: string; shape: number[] }[],
    metadata?: Record<string, string>,
  ): {
    header: Uint8Array;
    dataBytes: number;
    placement: { name: string; index: number; begin: number; end: number }[];
  };
}

/** The data-parallel layer (native/napi/dist.cc; lib/dist wraps it). */
export interface NativeDistInfo {
  initialized: boolean;
  rank: number;
  size: number;
  mpi: boolean;
  library: string;
  timeoutSec: number;
  broken: boolean;
  failure: string;
}

export interface NativeGradSync {
  info(): { zero: 0 | 1; backend: 'mpi' | 'local' | 'nccl'; shardOffset: number; shardCount: number; buckets: number };
  arm(): void;
  disarm(): void;
  stepAsync(opts: object): Promise<NativeStepResult>;
  reduceGradsAsync(): Promise<void>;
  readState(): { m: Float32Array; v: Float32Array };
  writeState(m: Float32Array, v: Float32Array): void;
  gatherStateAsync(): Promise<{ m: Float32Array; v: Float32Array } | null>;
}

export interface NativeDist {
  mpi(): { available: boolean; path: string; error: string };
  nccl(): string;
  init(opts: { mpi: boolean; timeoutSec?: number }): NativeDistInfo;
  info(): NativeDistInfo;
  setTimeout(sec: number): void;
  coordinate(label: string, values: Float64Array, same: boolean): Promise<Float64Array>;
  allReduce(buf: Float32Array | Float64Array): Promise<void>;
  paramsHash(model: NativeModel): Promise<string>;
  finalize(): void;
  abandon(why?: string): void;
  GradSync: new (
    model: NativeModel,
    opts: { zero: 0 | 1; backend: 'mpi' | 'nccl'; bucketMB?: number },
  ) => NativeGradSync;
}

/**
 * The decoder ops one by one (native/napi/ops.cc over native/model/ops.h): the low-level ops API. It ships in the
 * one addon (the same build the engine uses; `rift bench` measures gemm through it) and the tests check each op
 * against a float64 reference through it. It is not re-exported by the package: a caller reaches it as
 * `addon.ops` from lib/native and gets no stability promise beyond this declaration.
 */
export type OpsDevice = 'cpu' | 'cuda';
/** The ops' precision: the Model's word and spellings (lib/util/dtype.ts). */
export type OpsPrecision = 'fp32' | 'bf16';
/** @deprecated the ops' `gemmDtype` option is now `precision` ('fp32' | 'bf16'). */
export type GemmDtype = 'f32' | 'bf16';
/** Backend selection accepted by every addon.ops call. */
export interface OpsSelect {
  device?: OpsDevice;
  /**
   * 'bf16': the BF16 instance (model/ops.h): gemm / matmulForward / matmulBackward round both GEMM operands to
   * bfloat16 with fp32 accumulation; attention's products also take bf16 operands; the other ops are fp32
   * (default 'fp32'). The same word as a Model's precision.
   */
  precision?: OpsPrecision;
  /**
   * @deprecated the old name of `precision` ('f32' | 'bf16'; 'fp32' accepted too). Still accepted; given with
   * `precision`, the two must agree (RangeError naming gemmDtype).
   */
  gemmDtype?: GemmDtype | 'fp32';
}

type F32 = Float32Array;
type I32 = Int32Array;
export interface NativeOps {
  /** The selected backend (default: device 'cpu', precision 'fp32'). */
  info(sel?: OpsSelect): {
    backend: OpsDevice;
    gemm: string;
    precision: OpsPrecision;
    threads: number;
    blasAvailable: boolean;
    blasPath: string;
  };
  /** The devices an op may name: ['cpu'] or ['cpu', 'cuda'] (a CUDA device with a loadable cuBLAS). */
  devices(): OpsDevice[];
  /** 'builtin' | 'openblas' on the CPU, 'cublas' | 'cublas-tf32' on CUDA; false when unavailable. */
  setGemm(impl: string, sel?: OpsSelect): boolean;
  gemm(
    o: {
      transA?: boolean;
      transB?: boolean;
      M: number;
      N: number;
      K: number;
      alpha?: number;
      beta?: number;
      A: F32;
      lda?: number;
      B: F32;
      ldb?: number;
      C: F32;
      ldc?: number;
    } & OpsSelect,
  ): void;
  matmulForward(
    o: {
      out: F32;
      inp: F32;
      weight: F32;
      bias?: F32;
      M: number;
      N: number;
      K: number;
      accumulate?: boolean;
    } & OpsSelect,
  ): void;
  matmulBackward(
    o: {
      dinp?: F32;
      dweight?: F32;
      dbias?: F32;
      dout: F32;
      inp?: F32;
      weight?: F32;
      M: number;
      N: number;
      K: number;
      accumulate?: boolean;
    } & OpsSelect,
  ): void;
  embeddingForward(o: { out: F32; ids: I32; wte: F32; T: number; V: number; C: number } & OpsSelect): void;
  embeddingBackward(o: { dwte: F32; dout: F32; ids: I32; T: number; V: number; C: number } & OpsSelect): void;
  rmsnormForward(
    o: { out: F32; rstd: F32; inp: F32; weight: F32; T: number; C: number; eps: number } & OpsSelect,
  ): void;
  rmsnormBackward(
    o: {
      dinp?: F32;
      dweight?: F32;
      dout: F32;
      inp: F32;
      weight: F32;
      rstd: F32;
      T: number;
      C: number;
      accumulate?: boolean;
    } & OpsSelect,
  ): void;
  ropeForward(
    o: { out: F32; inp: F32; positions: I32; T: number; H: number; D: number; theta: number } & OpsSelect,
  ): void;
  ropeBackward(
    o: {
      dinp: F32;
      dout: F32;
      positions: I32;
      T: number;
      H: number;
      D: number;
      theta: number;
      accumulate?: boolean;
    } & OpsSelect,
  ): void;
  attentionForward(
    o: {
      out: F32;
      lse?: F32;
      q: F32;
      k: F32;
      v: F32;
      B: number;
      Tq: number;
      Tkv?: number;
      past?: number;
      rowPast?: I32;
      rowSlot?: I32;
      Hq: number;
      Hkv: number;
      D: number;
    } & OpsSelect,
  ): void;
  kvWrite(
    o: { cache: F32; x: F32; slot: I32; positions: I32; B: number; T: number; Tmax: number; width: number } & OpsSelect,
  ): void;
  attentionBackward(
    o: {
      dq: F32;
      dk: F32;
      dv: F32;
      dout: F32;
      q: F32;
      k: F32;
      v: F32;
      out: F32;
      lse: F32;
      B: number;
      T: number;
      Hq: number;
      Hkv: number;
      D: number;
      accumulate?: boolean;
    } & OpsSelect,
  ): void;
  swigluForward(o: { out: F32; gate: F32; up: F32 } & OpsSelect): void;
  swigluBackward(o: { dgate: F32; dup: F32; dout: F32; gate: F32; up: F32; accumulate?: boolean } & OpsSelect): void;
  add(o: { out: F32; a: F32; b: F32 } & OpsSelect): void;
  scale(o: { x: F32; s: number } & OpsSelect): void;
  zero(o: { x: F32 } & OpsSelect): void;
  sumsq(o: { x: F32 } & OpsSelect): number;
  /** The saved-activation storage conversions (OpsBackend::to_bf16 / from_bf16): n values each way. */
  toBf16(o: { out: Uint16Array; x: F32 } & OpsSelect): void;
  fromBf16(o: { out: F32; x: Uint16Array } & OpsSelect): void;
  /**
   * bf16 activations written by their producers and read by the linear layers (model/ops.h): each equals the fp32
   * op composed with toBf16 / fromBf16, bit for bit, on the same backend. bf16 arrays are Uint16Array bit patterns.
   */
  rmsnormForwardBf16(
    o: { out: Uint16Array; rstd: F32; inp: F32; weight: F32; T: number; C: number; eps: number } & OpsSelect,
  ): void;
  swigluForwardBf16(o: { out: Uint16Array; gate: F32; up: F32 } & OpsSelect): void;
  matmulForwardBf16(
    o: {
      out: F32;
      inp: Uint16Array;
      weight: F32;
      bias?: F32;
      M: number;
      N: number;
      K: number;
      accumulate?: boolean;
    } & OpsSelect,
  ): void;
  matmulBackwardBf16(
    o: {
      dinp?: F32;
      dweight?: F32;
      dbias?: F32;
      dout: F32;
      inp?: Uint16Array;
      weight?: F32;
      M: number;
      N: number;
      K: number;
      accumulate?: boolean;
    } & OpsSelect,
  ): void;
  adamw(
    o: {
      param: F32;
      grad: F32;
      m: F32;
      v: F32;
      lr?: number;
      beta1?: number;
      beta2?: number;
      eps?: number;
      weightDecay?: number;
      step: number;
      gradScale?: number;
    } & OpsSelect,
  ): void;
}

/** The unfused baselines `rift bench` compares the fused loss with (native/napi/bench.cc). */
export interface NativeBench {
  unfusedSft(
    logits: Float32Array | Uint16Array,
    rows: number,
    vocab: number,
    targets: Int32Array,
    grad: Float32Array | Uint16Array,
    vectorExp?: boolean,
  ): number;
  /** A threaded memcpy (the copy-bandwidth yardstick). */
  copy(dst: ArrayBufferView, src: ArrayBufferView): void;
}

export interface NativeAddon {
  sampleRows(
    logits: Float32Array,
    B: number,
    V: number,
    temperature: number,
    topK: number,
    topP: number,
    u: Float64Array,
  ): {
    tokens: Int32Array;
    logprobs: Float64Array;
    samplingLogprobs: Float64Array;
  };
  lossAndGrad(opts: object): NativeLossResult;
  lossAndGradAsync(opts: object): Promise<NativeLossResult>;
  setNumThreads(n: number): number;
  numThreads(): number;
  buildInfo: { cuda: boolean; simd: string; napiVersion: number; compiler: string };
  cuda: NativeCuda | null;
  Model: NativeModelClass;
  dist: NativeDist;
  KvCache: { prototype: NativeKvCache };
  safetensors: NativeSafetensors;
  /**
   * The names of native/core/loss.h's enums, each at its value: the lists the TypeScript side passes indices into
   * (kernels/loss.ts METHODS, NEGATIVE_FORMS, REDUCTIONS; kernels/device.ts DEVICE_DTYPES) must equal these.
   */
  enums: { method: string[]; negative: string[]; reduction: string[]; dtype: string[] };
  ops: NativeOps;
  bench: NativeBench;
  /** Test hook: throws the JS error an engine exception with this message becomes (native/napi/addon.cc). */
  _engineError(message: string): never;
}

function load(): NativeAddon {
  // This file runs from lib/ (ts-jest) or dist/lib/ (compiled): the package root is one or two levels up.
  const up = path.basename(path.resolve(__dirname, '..')) === 'dist' ? '../..' : '..';
  const file = process.env.RIFT_ADDON ?? path.resolve(__dirname, up, 'build', 'Release', 'rift.node');
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require(file) as NativeAddon;
  } catch (e) {
    throw new Error(
      `rift: cannot load the native addon at ${file} (run \`npm install\` or \`npm run build:native\`): ${(e as Error).message}`,
    );
  }
}

export const addon: NativeAddon = load();

/**
 * Re-creates an error thrown by the addon with this realm's constructor (TypeError/RangeError/Error), so that
 * `instanceof` works in every JS context (vm contexts such as jest's see the addon's errors as foreign).
 */
export function localError(e: unknown): unknown {
  if (typeof e !== 'object' || e === null || typeof (e as Error).message !== 'string') return e;
  const { name, message } = e as Error;
  const ctor = name === 'TypeError' ? TypeError : name === 'RangeError' ? RangeError : Error;
  if (e instanceof ctor) return e;
  const out = new ctor(message);
  if ((e as Error).stack)
    out.stack = `${name}: ${message}\n${((e as Error).stack ?? '').split('\n').slice(1).join('\n')}`;
  return out;
}
