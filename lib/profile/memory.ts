// Memory profile of one training step, RIFT vs DPO (the RIFT loop's step 6): measured from the engine's memory
// tracker (native/core/memory.h, Model.memory()) and predicted with the same accounting for any config.
//
//   measureMemory({config, method, B, T})   builds the model(s) at that shape (random init), runs real training
//                                           steps and returns the bytes each tracker category reached
//   predictMemory(config, {method, B, T})   the same numbers from the shapes alone (exact for the CPU engine)
//   profileMemory({...})                    both, for the three methods, plus predictions for large configs
//
// Methods (same model, same batch of B sequences × T tokens):
//   rift              the policy only: params, grads, AdamW m and v, activations, the lm_head logits chunk
//   dpo-precomputed   the same buffers: S_ref was computed beforehand by the initial policy ('logprob' on the same
//                     buffers), so the step itself holds no reference model
//   dpo-held          + a reference Model held in memory (`reference: true`): its parameters ('reference'), its
//                     logits chunk, and while its 'logprob' pass runs, the no-gradient forward's one temporary
//                     inference scratch (under 'activations'; from the second step on the policy's activations are
//                     allocated at that moment, so the steady-state peak holds both)
//
// The accounting, in floats (bytes = 4 × floats; fp32 everywhere), from native/model/decoder*.cc:
//   P        Σ expectedTensors(config) sizes (tied: no lm_head.weight)
//   params = P, grads = P, optimizer = 2P (AdamW m, v), reference (held) = P
//   data parallel over R ranks (per rank; lib/distributed): ZeRO-0 the same; ZeRO-1 optimizer = 2S, S = ⌈P / R⌉
//            rounded up to 16 (rank 0's shard, the largest: lib/distributed/shard.ts shardRanges)
//   + on CUDA at precision bf16: the weights' bf16 copy the GEMMs read, P/2 more under params (and reference)
//   activations (Decoder::ensure_acts, N = B·T, r(n) = n rounded up to 16 floats):
//     L · r(N·C) + S · [3 r(N·C) + 2 r(N) + 2 r(N·Hq·D) + 2 r(N·Hkv·D) + r(N·Hq) + 3 r(N·I)]
//                                         saved: each layer's input, and S = L sets of the rest (S = 1: recompute);
//     activationDtype bf16: L · [r(N·C) + 2 r(N) + r(N·Hq) + Σ r(⌈N·w/2⌉)] + Σ r(N·w) over the ten big tensors'
//                           widths w = C, Hq·D, Hkv·D, Hkv·D, Hq·D, C, C, I, I, I (bf16 copies + one fp32 set);
//                           with bf16 GEMMs too (the direct path, Model option bf16Direct, default on) the fp32 set
//                           leaves out ln1, ln2 and h: 2 r(N·C) + r(N·I) fewer
//     + 2 r(N·C) + r(N)                                                             final norm in/out, rstd
//     + 2 r(N·C) + 2 r(N·Hq·D) + 2 r(N·Hkv·D) + 2 r(N·I)                             backward scratch
//   the no-gradient forward (Decoder::loss_forward_only, freed on return):
//     2 r(N·C) + r(N) + 2 r(N·Hq·D) + 2 r(N·Hkv·D) + 2 r(N·I)
//   logitsChunk (LmHeadLoss): r(R·V) + 2 r(R·C), R = min(chunkRows, rows with a target),
//     chunkRows default = clamp(⌊2^24 / V⌋, 64, 1024) on the CPU, clamp(⌊2^28 / V⌋, 64, 4096) on CUDA
// Not predicted: 'workspace' (the CPU kernels' grow-only per-thread scratch — GEMM packs, RoPE tables, attention
// tiles — shared by every model in the process; measured and reported, not compared) and 'kvCache' (sampling).
//
// Measured bytes of a category = its peak during the measurement − its current bytes just before (peaks reset,
// unreachable models garbage-collected first), i.e. what this measurement added on top of the process.
import * as v8 from 'v8';
import * as vm from 'vm';
import { DecoderConfig, expectedTensors, parseConfig } from '../engine/checkpoint';
import { Device, MemoryReport, Model, Precision } from '../engine/model';
import { NativeMemCategory } from '../native';
import { checkInteger, describe, rangeError, typeError } from '../util/validate';
import { shardRanges } from '../distributed/shard';

export type ProfileMethod = 'rift' | 'dpo-held' | 'dpo-precomputed';
export const PROFILE_METHODS: readonly ProfileMethod[] = ['rift', 'dpo-held', 'dpo-precomputed'];

/** The categories the prediction covers (and the test compares exactly). */
export const PREDICTED_CATEGORIES = [
  'params',
  'grads',
  'optimizer',
  'activations',
  'logitsChunk',
  'reference',
] as const;
export type PredictedCategory = (typeof PREDICTED_CATEGORIES)[number];

export interface MemoryBytes extends Record<PredictedCategory, number> {
  /** Σ of the predicted categories. */
  total: number;
}

export interface MeasuredBytes extends MemoryBytes {
  workspace: number;
  kvCache: number;
  /** Peak of the tracker's total (all categories at once, workspace included) − its current value before. */
  peakTotal: number;
}

export interface MemoryMeasurement {
  method: ProfileMethod;
  B: number;
  T: number;
  chunkRows: number;
  numParams: number;
  /** Rows with a target in the batch. */
  targetRows: number;
  bytes: MeasuredBytes;
  seconds: number;
}

export interface MemoryPrediction {
  method: ProfileMethod;
  B: number;
  T: number;
  chunkRows: number;
  numParams: number;
  targetRows: number;
  bytes: MemoryBytes;
}

/** Qwen2.5-Math-1.5B's config.json shape (docs/design.md §3.1). */
export const QWEN25_MATH_1_5B = {
  model_type: 'qwen2',
  hidden_size: 1536,
  intermediate_size: 8960,
  num_hidden_layers: 28,
  num_attention_heads: 12,
  num_key_value_heads: 2,
  vocab_size: 151936,
  tie_word_embeddings: true,
  rms_norm_eps: 1e-6,
  rope_theta: 10000,
  max_position_embeddings: 4096,
} as const;
/** Qwen2.5-Math-7B's config.json shape. */
export const QWEN25_MATH_7B = {
  model_type: 'qwen2',
  hidden_size: 3584,
  intermediate_size: 18944,
  num_hidden_layers: 28,
  num_attention_heads: 28,
  num_key_value_heads: 4,
  vocab_size: 152064,
  tie_word_embeddings: false,
  rms_norm_eps: 1e-6,
  rope_theta: 10000,
  max_position_embeddings: 4096,
} as const;

function toConfig(config: unknown): DecoderConfig {
  if (config === null || typeof config !== 'object')
    throw typeError('config', `must be a config.json object or a DecoderConfig, got ${describe(config)}`);
  const c = config as Record<string, unknown>;
  return 'raw' in c && 'qkv_bias' in c ? (c as unknown as DecoderConfig) : parseConfig(c, 'config');
}

function checkMethod(m: unknown): ProfileMethod {
  if (typeof m !== 'string' || !PROFILE_METHODS.includes(m as ProfileMethod))
    throw (typeof m === 'string' ? rangeError : typeError)(
      'method',
      `must be one of ${PROFILE_METHODS.map((x) => `'${x}'`).join(', ')}, got ${describe(m)}`,
    );
  return m as ProfileMethod;
}

const r16 = (n: number) => Math.ceil(n / 16) * 16;

/** Floats of the decoder's training activation buffer for N = B·T tokens (Decoder::ensure_acts). */
/** Floats of the no-gradient forward's temporary scratch (Decoder::loss_forward_only) for N tokens. */
export function inferenceFloats(c: DecoderConfig, N: number): number {
  const C = c.hidden_size,
    I = c.intermediate_size,
    QD = c.num_attention_heads * c.head_dim,
    KD = c.num_key_value_heads * c.head_dim;
  return 2 * r16(N * C) + r16(N) + 2 * r16(N * QD) + 2 * r16(N * KD) + 2 * r16(N * I);
}

/**
 * Floats of the training forward's saved activations for N tokens (Decoder::ensure_acts): every layer's own fp32
 * set ('full'), one shared set (recompute), or bf16 copies per layer plus one shared fp32 set (activationDtype bf16;
 * `direct`: the direct bf16 path's shared set, without ln1, ln2 and h).
 */
export function activationFloats(
  c: DecoderConfig,
  N: number,
  recompute = false,
  activationDtype: Precision = 'fp32',
  direct = false,
): number {
  const C = c.hidden_size,
    I = c.intermediate_size,
    QD = c.num_attention_heads * c.head_dim,
    KD = c.num_key_value_heads * c.head_dim;
  const widths = [C, QD, KD, KD, QD, C, C, I, I, I]; // the ten big saved tensors, per token
  const small = 2 * r16(N) + r16(N * c.num_attention_heads); // rstd1, rstd2, lse
  const big = widths.reduce((s, w) => s + r16(N * w), 0);
  const z = widths.reduce((s, w) => s + r16(Math.ceil((N * w) / 2)), 0); // bf16 copies
  const tail = 2 * r16(N * C) + r16(N);
  const bwd = 2 * r16(N * C) + 2 * r16(N * QD) + 2 * r16(N * KD) + 2 * r16(N * I);
  const L = c.num_hidden_layers;
  const layers = recompute
    ? L * r16(N * C) + small + big
    : activationDtype === 'bf16'
      ? L * (r16(N * C) + small + z) + big - (direct ? 2 * r16(N * C) + r16(N * I) : 0)
      : L * (r16(N * C) + small + big);
  return layers + tail + bwd;
}

/** The engine's default lm_head chunk rows for a vocabulary on a device (native default_chunk_rows). */
export function defaultChunkRows(vocab: number, device: Device = 'cpu'): number {
  return device === 'cpu'
    ? Math.min(1024, Math.max(64, Math.floor(2 ** 24 / vocab)))
    : Math.min(4096, Math.max(64, Math.floor(2 ** 28 / vocab)));
}

/** Floats of the lm_head + loss chunk buffer (LmHeadLoss::pass). */
export function logitsChunkFloats(c: DecoderConfig, chunkRows: number, targetRows: number): number {
  const R = Math.min(chunkRows, targetRows);
  return R > 0 ? r16(R * c.vocab_size) + 2 * r16(R * c.hidden_size) : 0;
}

export function numParams(c: DecoderConfig): number {
  return expectedTensors(c).reduce((s, t) => s + t.shape.reduce((a, b) => a * b, 1), 0);
}

export interface PredictOptions {
  method: ProfileMethod;
  B: number;
  T: number;
  /** lm_head chunk rows (default: the engine's default for the vocabulary). */
  chunkRows?: number;
  /** Rows with a target (default B·(T − 1): every position but the last of each row). */
  targetRows?: number;
  /** Activation recomputation (Model option recompute; default false). */
  recompute?: boolean;
  /** The device whose default chunk rows apply (default 'cpu'). */
  device?: Device;
  /** Saved-activation storage (Model option activationDtype; default: the precision). */
  activationDtype?: Precision;
  /** GEMM precision (Model option precision; default: the device's, bf16 on CUDA, fp32 on the CPU). */
  precision?: Precision;
  /** Data-parallel ranks (default 1): the prediction is per rank. */
  ranks?: number;
  /** ZeRO stage of the data-parallel job (default 0; 1: AdamW m and v sharded over the ranks). */
  zero?: 0 | 1;
  /** CUDA bf16 only: the weights' bf16 copy the GEMMs read (default true; RIFT_CUDA_WEIGHT_COPY=0 turns it off). */
  weightCopy?: boolean;
  /** The direct bf16 path where it applies (Model option bf16Direct; default true). */
  bf16Direct?: boolean;
}

/**
 * Peak bytes per category of a training step at (B, T) in steady state (the second step on), from the engine's
 * buffer layout (see the file comment).
 */
export function predictMemory(config: DecoderConfig | Record<string, unknown>, o: PredictOptions): MemoryPrediction {
  const c = toConfig(config);
  if (o === null || typeof o !== 'object') throw typeError('options', `must be an object, got ${describe(o)}`);
  const method = checkMethod(o.method);
  const B = checkInteger('B', o.B, 1),
    T = checkInteger('T', o.T, 1);
  const chunkRows =
    o.chunkRows === undefined ? defaultChunkRows(c.vocab_size, o.device) : checkInteger('chunkRows', o.chunkRows, 1);
  const targetRows = o.targetRows === undefined ? B * (T - 1) : checkInteger('targetRows', o.targetRows, 0, B * T);
  const P = numParams(c);
  const models = method === 'dpo-held' ? 2 : 1; // the held reference keeps its own logits chunk
  const refForward = method === 'dpo-held' ? inferenceFloats(c, B * T) : 0; // its 'logprob' pass, during the step
  const precision = o.precision ?? (o.device === 'cuda' ? 'bf16' : 'fp32');
  const ranks = o.ranks === undefined ? 1 : checkInteger('ranks', o.ranks, 1);
  if (o.zero !== undefined && o.zero !== 0 && o.zero !== 1)
    throw rangeError('zero', `must be 0 or 1, got ${JSON.stringify(o.zero)}`);
  const optimizerFloats = o.zero === 1 ? shardRanges(P, ranks)[0].count : P;
  // CUDA bf16 keeps a bf16 copy of the weights for its GEMMs (native/cuda/cuda_ops.cu register_weights).
  if (o.weightCopy !== undefined && typeof o.weightCopy !== 'boolean')
    throw typeError('weightCopy', `must be a boolean, got ${describe(o.weightCopy)}`);
  const weights = o.device === 'cuda' && precision === 'bf16' && o.weightCopy !== false ? 6 * P : 4 * P;
  if (o.bf16Direct !== undefined && typeof o.bf16Direct !== 'boolean')
    throw typeError('bf16Direct', `must be a boolean, got ${describe(o.bf16Direct)}`);
  const activationDtype = o.activationDtype ?? precision;
  // the direct bf16 path (Decoder::direct_bf16): bf16 storage and bf16 GEMMs, no recomputation
  const direct = o.bf16Direct !== false && activationDtype === 'bf16' && precision === 'bf16' && !o.recompute;
  const bytes: MemoryBytes = {
    params: weights,
    grads: 4 * P,
    optimizer: 8 * optimizerFloats,
    activations: 4 * (activationFloats(c, B * T, !!o.recompute, activationDtype, direct) + refForward),
    logitsChunk: 4 * models * logitsChunkFloats(c, chunkRows, targetRows),
    reference: method === 'dpo-held' ? weights : 0,
    total: 0,
  };
  bytes.total = PREDICTED_CATEGORIES.reduce((s, k) => s + bytes[k], 0);
  return { method, B, T, chunkRows, numParams: P, targetRows, bytes };
}

export interface MeasureOptions {
  config: DecoderConfig | Record<string, unknown>;
  method: ProfileMethod;
  B: number;
  T: number;
  chunkRows?: number;
  /** Prompt positions per row without a target (default 1: rows with a target = B·(T − 1)). */
  promptTokens?: number;
  /** Training steps run (default 2: the steady state predictMemory gives). */
  steps?: number;
  /** Seed of the random weights and token ids (default 0). */
  seed?: number;
  /** RIFT negatives (default 'token'). */
  negative?: 'token' | 'sequence';
  /** Activation recomputation for the models (default false). */
  recompute?: boolean;
  /** Saved-activation storage for the models (the Model default when absent). */
  activationDtype?: Precision;
  /** Where the models run (default 'cpu'); 'cuda' measures GPU memory (MemoryReport.device). */
  device?: Device;
  /** GEMM precision (the Model default for the device when absent). */
  precision?: Precision;
  /** The direct bf16 path for the models (Model option bf16Direct; the Model default when absent). */
  bf16Direct?: boolean;
}

let gcFn: (() => void) | undefined;
/** A full GC, so that models nobody references free their tracked buffers before a memory baseline is taken. */
export function collectGarbage(): void {
  if (!gcFn) {
    const g = (globalThis as { gc?: () => void }).gc;
    if (typeof g === 'function') gcFn = g;
    else {
      v8.setFlagsFromString('--expose-gc');
      gcFn = vm.runInNewContext('gc') as () => void;
    }
  }
  gcFn();
}

function lcgIds(n: number, V: number, seed: number): Int32Array {
  let s = (seed * 2654435761 + 12345) >>> 0;
  return Int32Array.from({ length: n }, () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) >>> 8) % V);
}

/**
 * Runs `steps` real training steps of `method` at (B, T) on a fresh random model (plus a held reference for
 * dpo-held) and returns the bytes each tracker category reached above its value before the measurement.
 * Everything runs synchronously after one event-loop turn (finalisers of garbage-collected models run there).
 */
export async function measureMemory(o: MeasureOptions): Promise<MemoryMeasurement> {
  if (o === null || typeof o !== 'object') throw typeError('options', `must be an object, got ${describe(o)}`);
  const c = toConfig(o.config);
  const method = checkMethod(o.method);
  const B = checkInteger('B', o.B, 1),
    T = checkInteger('T', o.T, 2);
  if (method !== 'rift' && B % 2) throw rangeError('B', `must be even for DPO (chosen, rejected) pairs, got ${B}`);
  const chunkRows =
    o.chunkRows === undefined ? defaultChunkRows(c.vocab_size, o.device) : checkInteger('chunkRows', o.chunkRows, 1);
  const prompt = o.promptTokens === undefined ? 1 : checkInteger('promptTokens', o.promptTokens, 1, T - 1);
  const steps = o.steps === undefined ? 2 : checkInteger('steps', o.steps, 1);
  const seed = o.seed === undefined ? 0 : checkInteger('seed', o.seed, 0, 2 ** 32 - 1);
  const negative = o.negative ?? 'token';
  if (negative !== 'token' && negative !== 'sequence')
    throw rangeError('negative', `must be 'token' or 'sequence', got ${describe(negative)}`);

  // the batch: B rows of T random tokens; positions prompt−1 .. T−2 predict the next token
  const N = B * T;
  const ids = lcgIds(N, c.vocab_size, seed);
  const targets = new Int32Array(N).fill(-100);
  for (let b = 0; b < B; b++) for (let t = prompt - 1; t < T - 1; t++) targets[b * T + t] = ids[b * T + t + 1];
  const offsets = Int32Array.from({ length: B + 1 }, (_, i) => i * T);
  const rewards = Float32Array.from({ length: B }, (_, i) => (i % 2 ? -0.5 : 1));
  const pairs = Int32Array.from({ length: B }, (_, i) => i);
  const batch = { ids, B, T, targets, offsets };

  collectGarbage();
  await new Promise((r) => setImmediate(r));
  const before: MemoryReport = Model.memory();
  Model.resetPeaks();
  const t0 = performance.now();
  const dev = {
    device: o.device,
    precision: o.precision,
    recompute: o.recompute,
    activationDtype: o.activationDtype,
    bf16Direct: o.bf16Direct,
  };
  const policy = Model.fromConfig(c, { seed, chunkRows, ...dev });
  const held = method === 'dpo-held' ? Model.fromConfig(c, { seed, chunkRows, reference: true, ...dev }) : undefined;
  let refLogps: Float64Array | undefined;
  if (method === 'dpo-precomputed')
    refLogps = Float64Array.from(policy.lossAndBackward({ ...batch, method: 'logprob', backward: false }).seqLogprobs);
  for (let s = 0; s < steps; s++) {
    policy.zeroGrad();
    if (method === 'rift') policy.lossAndBackward({ ...batch, method: 'rift', rewards, negative });
    else {
      const ref = held
        ? Float64Array.from(held.lossAndBackward({ ...batch, method: 'logprob', backward: false }).seqLogprobs)
        : refLogps!;
      policy.lossAndBackward({ ...batch, method: 'dpo', dpo: { refLogprobs: ref, pairs, beta: 0.1 } });
    }
    policy.step({ lr: 1e-4, maxGradNorm: 1 });
  }
  const after = Model.memory();
  const seconds = (performance.now() - t0) / 1e3;
  const space = (r: MemoryReport) => (o.device === 'cuda' ? r.device : r);
  const d = (k: NativeMemCategory) => space(after)[k].peak - space(before)[k].current;
  const bytes: MeasuredBytes = {
    params: d('params'),
    grads: d('grads'),
    optimizer: d('optimizer'),
    activations: d('activations'),
    logitsChunk: d('logitsChunk'),
    reference: d('reference'),
    total: 0,
    workspace: d('workspace'),
    kvCache: d('kvCache'),
    peakTotal: d('total'),
  };
  bytes.total = PREDICTED_CATEGORIES.reduce((s, k) => s + bytes[k], 0);
  const result: MemoryMeasurement = {
    method,
    B,
    T,
    chunkRows,
    numParams: policy.numParams,
    targetRows: B * (T - prompt),
    bytes,
    seconds,
  };
  void held; // both models stay alive until here
  return result;
}

export interface ProfileOptions {
  /** The measured model (small enough to train here). */
  config: DecoderConfig | Record<string, unknown>;
  B: number;
  T: number;
  chunkRows?: number;
  methods?: readonly ProfileMethod[];
  /** Large configs to predict at (predictB × predictT): default Qwen2.5-Math-1.5B and 7B shapes. */
  predictFor?: Record<string, DecoderConfig | Record<string, unknown>>;
  predictB?: number;
  predictT?: number;
}

export interface MemoryProfile {
  measured: { measurement: MemoryMeasurement; prediction: MemoryPrediction; matches: boolean }[];
  predicted: { name: string; prediction: MemoryPrediction }[];
}

/** Measures each method at (B, T) next to its prediction, and predicts the large configs. */
export async function profileMemory(o: ProfileOptions): Promise<MemoryProfile> {
  const methods = o.methods ?? PROFILE_METHODS;
  const measured: MemoryProfile['measured'] = [];
  for (const method of methods) {
    const measurement = await measureMemory({ config: o.config, method, B: o.B, T: o.T, chunkRows: o.chunkRows });
    const prediction = predictMemory(o.config, {
      method,
      B: o.B,
      T: o.T,
      chunkRows: o.chunkRows,
      targetRows: measurement.targetRows,
    });
    const matches = PREDICTED_CATEGORIES.every((k) => measurement.bytes[k] === prediction.bytes[k]);
    measured.push({ measurement, prediction, matches });
  }
  const big = o.predictFor ?? { 'Qwen2.5-Math-1.5B': QWEN25_MATH_1_5B, 'Qwen2.5-Math-7B': QWEN25_MATH_7B };
  const predicted: MemoryProfile['predicted'] = [];
  for (const [name, cfg] of Object.entries(big))
    for (const method of methods)
      predicted.push({ name, prediction: predictMemory(cfg, { method, B: o.predictB ?? 8, T: o.predictT ?? 1024 }) });
  return { measured, predicted };
}
