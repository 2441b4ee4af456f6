// Training and sampling throughput of the CPU decoder engine (lib/engine/model.ts) on a ~21M-parameter
// Qwen2-shaped random model, with MFU against the sgemm peak measured in the same run.
//
//   node dist/bench/train.js [--quick]      prints the JSON rows
//   import { benchTrain } from './train'     returns them (for bench/run.ts)
//
// Conventions (also in the JSON):
// - A training step = lossAndBackward (forward, fused lm_head + loss, backward) + step (clip + AdamW) + zeroGrad,
//   on B × T tokens, every position with a target (SFT; the lm_head runs on all B·T rows).
// - FLOPs per token: 6·P_matmul (P_matmul = every Linear weight + the lm_head matrix, which is the embedding
//   when tied; the embedding lookup is not a matmul) + attention 6·L·Hq·D·(T+1) (causal: QKᵀ and PV over
//   (T+1)/2 keys on average, 4·D flops per query-key pair forward, twice that backward).
// - MFU = achieved FLOP/s ÷ the sgemm peak: the best of a few calls of addon.ops.gemm on a 2048³ square problem
//   (the same GEMM implementation and thread count the model uses). Reported with and without attention FLOPs.
// - Sampling: P prompts × K samples per prompt (default 64 × 8) through lib/engine/sampler.ts generate(), no stop
//   tokens, in the same run both ways: one prompt at a time (batching 'per-prompt': prefill each prompt once,
//   broadcast its KV cache to K rows, decode the K rows together — the path before continuous batching) and
//   continuous batching (the default: rows of all prompts decoded together, up to maxBatchRows = 256). tokens/s
//   counts the P·K·maxNewTokens generated tokens; sameTokens says whether both paths drew the same tokens.
//
// benchTrainCuda (node dist/bench/run.js --only engine-cuda): the same step on the GPU for the Qwen2.5-1.5B shape
// (hidden 1536, 28 layers, 12/2 heads, V 151936, tied) at B = 1, T = 4096, precision 'bf16' (GEMM operands
// rounded to bf16, fp32 accumulation, fp32 master weights and AdamW): step time, tokens/s, MFU against 989e12
// FLOP/s (H100/H200 SXM dense bf16 datasheet; the same FLOP convention as above), sampling tokens/s with the KV
// cache (64 prompts × K = 8, 64 new tokens, one prompt at a time and with continuous batching: benchSampling), and
// the peak device memory of one RIFT step vs one DPO step with a held reference model (lib/profile/memory.ts's
// 'dpo-held') at the same batch of 2 × 2048 tokens. Weights come from --model-dir (an HF checkpoint of that shape,
// e.g. scripts/hf_parity.py's model/) or a seeded random init.
import * as os from 'os';

import { DecoderConfig } from '../lib/engine/checkpoint';
import { Model } from '../lib/engine/model';
import { generate } from '../lib/engine/sampler';
import { addon } from '../lib/native';
import { collectGarbage, predictMemory } from '../lib/profile/memory';

export interface TrainBenchOptions {
  quick?: boolean;
  /** Tokens per step B × T (default 8 × 256; quick: 4 × 128). */
  B?: number;
  T?: number;
  /** Timed steps after one warm-up step (default 4; quick: 2). */
  steps?: number;
  /** Sampling: prompts × k samples, prompt length and new tokens (default 64 × 8, 32 + 64; quick: 16 × 8, 32 new tokens). */
  prompts?: number;
  k?: number;
  promptLength?: number;
  maxNewTokens?: number;
  sampling?: boolean;
}

export interface TrainBenchRow {
  name: string;
  [key: string]: unknown;
}

export const BENCH_CONFIG = {
  model_type: 'qwen2',
  vocab_size: 8192,
  hidden_size: 512,
  intermediate_size: 1408,
  num_hidden_layers: 6,
  num_attention_heads: 8,
  num_key_value_heads: 2,
  rms_norm_eps: 1e-6,
  rope_theta: 10000,
  tie_word_embeddings: true,
  max_position_embeddings: 4096,
};

const now = () => Number(process.hrtime.bigint()) / 1e6; // ms

/**
 * The sgemm peak: the best GFLOP/s of addon.ops.gemm on an n³ square problem over the NN, NT and TN layouts
 * (the three the model uses), `reps` timed calls each after one warm-up call.
 */
export function sgemmPeak(
  n = 2048,
  reps = 3,
): { gflops: number; n: number; impl: string; threads: number; byLayout: Record<string, number> } {
  const ops = addon.ops;
  const A = new Float32Array(n * n).map((_, i) => ((i * 2654435761) % 1000) / 1000 - 0.5);
  const B = A.slice().reverse();
  const C = new Float32Array(n * n);
  const byLayout: Record<string, number> = {};
  for (const [transA, transB] of [
    [false, false],
    [false, true],
    [true, false],
  ]) {
    let best = Infinity;
    for (let r = 0; r < reps + 1; r++) {
      const t0 = now();
      ops.gemm({ transA, transB, M: n, N: n, K: n, A, B, C });
      const ms = now() - t0;
      if (r > 0) best = Math.min(best, ms);
    }
    byLayout[`${transA ? 'T' : 'N'}${transB ? 'T' : 'N'}`] = round((2 * n ** 3) / (best * 1e6));
  }
  const info = ops.info();
  return { gflops: Math.max(...Object.values(byLayout)), n, impl: info.gemm, threads: info.threads, byLayout };
}

/**
 * P_matmul: every parameter of a *_proj module (weights and their biases) + the lm_head matrix (tied: the
 * embedding, V·C); the embedding lookup is not a matmul. scripts/hf_train_bench.py computes the same sum.
 */
export function matmulParams(model: Model): number {
  const c = model.config;
  return (
    model.numParams -
    model
      .tensorTable()
      .filter((t) => !t.name.includes('_proj.') && !t.name.startsWith('lm_head'))
      .reduce((s, t) => s + t.shape.reduce((a, b) => a * b, 1), 0) +
    (c.tie_word_embeddings ? c.vocab_size * c.hidden_size : 0)
  );
}

/** Causal attention FLOPs per token of a training step at sequence length T: 6·L·Hq·D·(T+1). */
export function attentionFlopsPerToken(c: DecoderConfig, T: number): number {
  return 6 * c.num_hidden_layers * c.num_attention_heads * c.head_dim * (T + 1);
}

function lcgIds(n: number, V: number, seed: number): Int32Array {
  let s = seed >>> 0;
  return Int32Array.from({ length: n }, () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) >>> 8) % V);
}

/** The benchmarks' batch: B rows of T seeded tokens, every position but the last predicting the next token. */
function sftBatch(vocab: number, B: number, T: number): { ids: Int32Array; targets: Int32Array; offsets: Int32Array } {
  const ids = lcgIds(B * T, vocab, 7);
  const targets = new Int32Array(B * T);
  for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) targets[b * T + t] = t + 1 < T ? ids[b * T + t + 1] : -100;
  return { ids, targets, offsets: Int32Array.from({ length: B + 1 }, (_, i) => i * T) };
}

export async function benchTrain(opts: TrainBenchOptions = {}): Promise<TrainBenchRow[]> {
  const quick = !!opts.quick;
  const B = opts.B ?? (quick ? 4 : 8),
    T = opts.T ?? (quick ? 128 : 256),
    steps = opts.steps ?? (quick ? 2 : 4);
  const peakBefore = sgemmPeak(2048, quick ? 1 : 3);

  const model = Model.fromConfig(BENCH_CONFIG, { seed: 1, std: 0.02 });
  const c = model.config;
  const P = model.numParams;
  const pMatmul = matmulParams(model);
  const attnPerToken = attentionFlopsPerToken(c, T);
  const N = B * T;
  const { ids, targets, offsets } = sftBatch(c.vocab_size, B, T);
  const tokens = N - B; // rows with a target
  const stepOnce = async () => {
    const t0 = now();
    await model.lossAndBackwardAsync({ ids, B, T, targets, offsets, method: 'sft' });
    const t1 = now();
    await model.stepAsync({ lr: 1e-4, maxGradNorm: 1 });
    model.zeroGrad();
    return { total: now() - t0, lossBackward: t1 - t0 };
  };
  await stepOnce(); // warm-up: allocates grads, optimizer state, activations, the logits chunk
  const times: { total: number; lossBackward: number; load1: number }[] = [];
  for (let i = 0; i < steps; i++) times.push({ ...(await stepOnce()), load1: os.loadavg()[0] });
  times.sort((a, b) => a.total - b.total);
  const med = times[Math.floor(times.length / 2)];
  const peakAfter = sgemmPeak(2048, quick ? 1 : 3);
  // Other processes on the machine slow down some calls: the higher of the two measurements is the peak.
  const peak = peakAfter.gflops > peakBefore.gflops ? peakAfter : peakBefore;
  const tokPerSec = N / (med.total / 1e3);
  const flopsModel = 6 * pMatmul * tokPerSec,
    flopsAll = (6 * pMatmul + attnPerToken) * tokPerSec;
  const mem = model.memory();
  const rows: TrainBenchRow[] = [
    {
      name: 'sgemm peak',
      gflops: round(peak.gflops),
      n: peak.n,
      impl: peak.impl,
      threads: peak.threads,
      before: peakBefore.byLayout,
      after: peakAfter.byLayout,
    },
    {
      name: 'train step (sft)',
      config: `qwen2 V=${c.vocab_size} C=${c.hidden_size} I=${c.intermediate_size} L=${c.num_hidden_layers} H=${c.num_attention_heads}/${c.num_key_value_heads} tied`,
      params: P,
      matmulParams: pMatmul,
      B,
      T,
      tokensPerStep: N,
      targetTokens: tokens,
      stepMs: round(med.total),
      stepMsAll: times.map((t) => round(t.total)),
      loadAverage: round(os.loadavg()[0]),
      lossBackwardMs: round(med.lossBackward),
      optimizerMs: round(med.total - med.lossBackward),
      tokensPerSec: round(tokPerSec),
      gflops6P: round(flopsModel / 1e9),
      gflopsWithAttention: round(flopsAll / 1e9),
      mfu6P: round(flopsModel / 1e9 / peak.gflops, 3),
      mfuWithAttention: round(flopsAll / 1e9 / peak.gflops, 3),
      flops: '6·P_matmul per token (+ causal attention 6·L·Hq·D·(T+1))',
      chunkRows: model.native.info().chunkRows,
      memoryMB: Object.fromEntries(
        Object.entries(mem)
          .filter(([k]) => k !== 'device')
          .map(([k, v]) => [k, round((v as { peak: number }).peak / 2 ** 20, 1)]),
      ),
    },
  ];

  if (opts.sampling !== false)
    rows.push(
      ...(await benchSampling(model, {
        prompts: opts.prompts ?? (quick ? 16 : 64),
        k: opts.k ?? 8,
        promptLength: opts.promptLength ?? 32,
        maxNewTokens: opts.maxNewTokens ?? (quick ? 32 : 64),
      })),
    );
  return rows;
}

/**
 * Sampling tokens/s of P prompts × K samples, one prompt at a time and with continuous batching, in the same run
 * (see the file comment). Rows: 'sampling (one prompt at a time)', 'sampling (continuous batching)' with the speedup
 * and whether the tokens agree. `name` prefixes the row names (e.g. the device).
 */
export async function benchSampling(
  model: Model,
  o: { prompts: number; k: number; promptLength: number; maxNewTokens: number; maxBatchRows?: number; name?: string },
): Promise<TrainBenchRow[]> {
  const c = model.config;
  const prompts = Array.from({ length: o.prompts }, (_, i) => lcgIds(o.promptLength, c.vocab_size, 100 + i));
  const tokenizer = { encode: () => new Int32Array(0), decode: () => '', eosTokenIds: [] as number[] };
  const run = async (batching: 'per-prompt' | 'continuous') => {
    const t0 = now();
    const out = await generate(model, tokenizer, prompts, {
      k: o.k,
      maxNewTokens: o.maxNewTokens,
      temperature: 1,
      seed: 1,
      stopTokens: [],
      batching,
      maxBatchRows: o.maxBatchRows,
    });
    const ms = now() - t0;
    const generated = out.reduce((s, p) => s + p.samples.reduce((a, x) => a + x.ids.length, 0), 0);
    return { out, ms, generated, tokensPerSec: generated / (ms / 1e3), loadAverage: os.loadavg()[0] };
  };
  const pre = (n: string) => (o.name ? `${o.name} ${n}` : n);
  const base = { prompts: o.prompts, k: o.k, promptLength: o.promptLength, maxNewTokens: o.maxNewTokens };
  const one = await run('per-prompt');
  const cont = await run('continuous');
  const same = one.out.every((p, i) =>
    p.samples.every(
      (x, j) =>
        x.ids.length === cont.out[i].samples[j].ids.length &&
        x.ids.every((t, n) => t === cont.out[i].samples[j].ids[n]),
    ),
  );
  return [
    {
      name: pre('sampling (one prompt at a time)'),
      ...base,
      generatedTokens: one.generated,
      ms: round(one.ms),
      tokensPerSec: round(one.tokensPerSec),
      loadAverage: round(one.loadAverage),
    },
    {
      name: pre('sampling (continuous batching)'),
      ...base,
      maxBatchRows: o.maxBatchRows ?? 256,
      generatedTokens: cont.generated,
      ms: round(cont.ms),
      tokensPerSec: round(cont.tokensPerSec),
      loadAverage: round(cont.loadAverage),
      speedup: round(cont.tokensPerSec / one.tokensPerSec),
      sameTokens: same,
    },
  ];
}

// ---------------------------------------------------------------------------------------------------------
// CUDA: the Qwen2.5-1.5B shape at B = 1, T = 4096 in precision 'bf16'

/** Qwen2.5-1.5B's shape (Qwen2.5-Math-1.5B's config.json; rope_theta of Qwen2.5-1.5B). */
export const QWEN25_1_5B_CONFIG = {
  model_type: 'qwen2',
  vocab_size: 151936,
  hidden_size: 1536,
  intermediate_size: 8960,
  num_hidden_layers: 28,
  num_attention_heads: 12,
  num_key_value_heads: 2,
  head_dim: 128,
  rms_norm_eps: 1e-6,
  rope_theta: 1000000,
  tie_word_embeddings: true,
  max_position_embeddings: 32768,
};

/** Dense bf16 tensor-core peak from the datasheet (H100 SXM5: 989.4 TFLOP/s; the H200 has the same SMs and clocks). */
export const GPU_BF16_PEAK = 989e12;

export interface CudaBenchOptions {
  /** An HF checkpoint directory of the benchmark's shape (random init of QWEN25_1_5B_CONFIG when absent). */
  modelDir?: string;
  /** Training batch (default 1 × 4096) and timed steps after one warm-up step (default 3). */
  B?: number;
  T?: number;
  steps?: number;
  /** RIFT vs DPO memory batch (default 2 × 2048: DPO needs a (chosen, rejected) pair; same tokens as 1 × 4096). */
  memB?: number;
  memT?: number;
  /** Sampling: prompts × k, prompt length, new tokens (default 64 × 8, 32, 64). */
  prompts?: number;
  k?: number;
  promptLength?: number;
  maxNewTokens?: number;
  /** Skip parts (default: all run). */
  sampling?: boolean;
  memory?: boolean;
  /** The same training step with bf16Direct: false (stored then widened bf16 activations), timed after it. */
  storeThenWiden?: boolean;
  log?: (s: string) => void;
  /** Smoke runs of this code on the CPU with a small config (tests): default 'cuda' and QWEN25_1_5B_CONFIG. */
  device?: 'cuda' | 'cpu';
  config?: Record<string, unknown>;
}

export interface CudaBenchResult {
  /** Why nothing ran (no CUDA device or an addon without CUDA). */
  skipped?: string;
  gpu?: string;
  peakFlops?: number;
  rows: TrainBenchRow[];
}

/** An Error's message, and whether it looks like an out-of-memory failure. */
function failure(e: unknown): { error: string; oom: boolean } {
  const msg = e instanceof Error ? e.message : String(e);
  return {
    error: msg.slice(0, 500),
    oom: /out of memory|CUDA_ERROR_OUT_OF_MEMORY|cudaErrorMemoryAllocation|bad_alloc/i.test(msg),
  };
}

const GB = 2 ** 30;

/** The first CUDA device's name, or null when the engine cannot run on CUDA here (Model.devices()). */
export function cudaDeviceName(): string | null {
  if (!Model.devices().includes('cuda')) return null;
  return addon.cuda?.devices()[0]?.name ?? 'CUDA device';
}

/**
 * The engine on CUDA (see the file comment). Every part is bounded (1 + steps training steps, one sampling call,
 * one step per memory variant) and catches its own errors (an out-of-memory is recorded in its row, and the later
 * parts still run). Returns { skipped } without CUDA.
 */
/** One warm-up and `steps` timed SFT training steps (loss + backward, then AdamW); the median by total time. */
async function timedSteps(
  m: Model,
  batch: { ids: Int32Array; B: number; T: number; targets: Int32Array; offsets: Int32Array },
  steps: number,
) {
  let loss = NaN;
  const stepOnce = async () => {
    const a = now();
    loss = (await m.lossAndBackwardAsync({ ...batch, method: 'sft' })).loss;
    const b = now();
    await m.stepAsync({ lr: 1e-5, maxGradNorm: 1 });
    m.zeroGrad();
    return { total: now() - a, lossBackward: b - a };
  };
  const warm = await stepOnce();
  const times: { total: number; lossBackward: number }[] = [];
  for (let i = 0; i < steps; i++) times.push(await stepOnce());
  const sorted = [...times].sort((a, b) => a.total - b.total);
  return { warm, times, med: sorted[Math.floor(sorted.length / 2)], loss };
}

export async function benchTrainCuda(opts: CudaBenchOptions = {}): Promise<CudaBenchResult> {
  const log = opts.log ?? ((s: string) => process.stderr.write(s + '\n'));
  const device = opts.device ?? 'cuda';
  const config = opts.config ?? QWEN25_1_5B_CONFIG;
  let gpu: string;
  if (device === 'cuda') {
    if (!addon.buildInfo.cuda) return { skipped: 'the addon was built without CUDA (no nvcc at build time)', rows: [] };
    const name = cudaDeviceName();
    if (!name)
      return {
        skipped: 'no usable CUDA device (Model.devices() has no cuda: no device, or cuBLAS not loadable)',
        rows: [],
      };
    gpu = name;
  } else gpu = `cpu (${os.cpus()[0]?.model ?? 'unknown'})`;
  const peakFlops = /H100|H200/i.test(gpu) ? GPU_BF16_PEAK : undefined;
  const B = opts.B ?? 1,
    T = opts.T ?? 4096,
    steps = opts.steps ?? 3;
  const rows: TrainBenchRow[] = [];
  const dev = { device, precision: 'bf16' } as const;
  const checkDevice = (m: Model) => {
    if (m.device !== device || m.precision !== 'bf16')
      throw new Error(`the engine runs on ${m.device}/${m.precision}, not ${device}/bf16`);
  };
  // The tracker's space that holds this device's buffers (memory.ts does the same).
  const space = (r: ReturnType<typeof Model.memory>) => (device === 'cuda' ? r.device : r);

  // 1. Training step time, tokens/s, MFU.
  let model: Model | undefined;
  try {
    const t0 = now();
    log(
      `engine-cuda: ${opts.modelDir ? `loading ${opts.modelDir}` : 'random init of the Qwen2.5-1.5B shape'} on ${gpu} (bf16)`,
    );
    model = opts.modelDir ? Model.load(opts.modelDir, dev) : Model.fromConfig(config, { ...dev, seed: 1, std: 0.02 });
    const loadSeconds = (now() - t0) / 1e3;
    checkDevice(model);
    const c = model.config;
    const pMatmul = matmulParams(model);
    const attnPerToken = attentionFlopsPerToken(c, T);
    const N = B * T;
    const { ids, targets, offsets } = sftBatch(c.vocab_size, B, T);
    Model.resetPeaks();
    const { warm: w, times, med, loss } = await timedSteps(model, { ids, B, T, targets, offsets }, steps);
    log(`  warm-up step ${round(w.total)} ms (loss ${loss})`);
    const tokPerSec = N / (med.total / 1e3);
    const f6p = 6 * pMatmul * tokPerSec,
      fAll = (6 * pMatmul + attnPerToken) * tokPerSec;
    const devMem = space(Model.memory());
    const row: TrainBenchRow = {
      name: `${device} train step (sft)`,
      gpu,
      device: model.device,
      precision: model.precision,
      recompute: model.recompute,
      bf16Direct: model.native.info().bf16Direct,
      config: `qwen2 V=${c.vocab_size} C=${c.hidden_size} I=${c.intermediate_size} L=${c.num_hidden_layers} H=${c.num_attention_heads}/${c.num_key_value_heads} D=${c.head_dim} tied`,
      weights: opts.modelDir ? `loaded from ${opts.modelDir}` : 'random N(0, 0.02), seed 1',
      loadSeconds: round(loadSeconds),
      params: model.numParams,
      matmulParams: pMatmul,
      B,
      T,
      tokensPerStep: N,
      stepMs: round(med.total),
      stepMsAll: times.map((t) => round(t.total)),
      warmupMs: round(w.total),
      lossBackwardMs: round(med.lossBackward),
      optimizerMs: round(med.total - med.lossBackward),
      loss,
      tokensPerSec: round(tokPerSec),
      tflops6P: round(f6p / 1e12),
      tflopsWithAttention: round(fAll / 1e12),
      peakTflops: peakFlops ? peakFlops / 1e12 : null,
      mfu6P: peakFlops ? round(f6p / peakFlops, 4) : null,
      mfuWithAttention: peakFlops ? round(fAll / peakFlops, 4) : null,
      flops:
        '6·P_matmul per token (+ causal attention 6·L·Hq·D·(T+1)); peak: 989e12 FLOP/s dense bf16 (H100/H200 SXM datasheet)',
      chunkRows: model.native.info().chunkRows,
      memoryPeakGB: Object.fromEntries(
        Object.entries(devMem)
          .filter(([k]) => k !== 'device')
          .map(([k, v]) => [k, round((v as { peak: number }).peak / GB, 2)]),
      ),
    };
    rows.push(row);
    log(
      `  train: ${row.stepMs} ms/step, ${row.tokensPerSec} tok/s, MFU ${row.mfuWithAttention ?? '—'} (with attention)`,
    );

    // 2. Sampling with the KV cache: one prompt at a time vs continuous batching.
    if (opts.sampling !== false) {
      try {
        const so = {
          prompts: opts.prompts ?? 64,
          k: opts.k ?? 8,
          promptLength: opts.promptLength ?? 32,
          maxNewTokens: opts.maxNewTokens ?? 64,
          name: device,
        };
        const r = await benchSampling(model, so);
        rows.push(...r);
        log(`  sampling: ${r.map((x) => `${x.name} ${x.tokensPerSec} tok/s`).join(', ')}`);
      } catch (e) {
        rows.push({ name: `${device} sampling (KV cache)`, ...failure(e) });
        log(`  sampling failed: ${failure(e).error}`);
      }
    }
  } catch (e) {
    rows.push({ name: `${device} train step (sft)`, gpu, B, T, ...failure(e) });
    log(`  training failed: ${failure(e).error}`);
  }
  const directMs = (rows[0] as { stepMs?: number } | undefined)?.stepMs;
  model?.dispose();
  model = undefined;

  // 2b. The same step with bf16 activations stored then widened (bf16Direct: false) instead of written by their
  //     producers: the time the direct path saves, measured in the same run (the results are the same bit for bit).
  if (opts.storeThenWiden !== false && directMs !== undefined) {
    const name = `${device} train step (sft), bf16 store-then-widen`;
    try {
      const m = opts.modelDir
        ? Model.load(opts.modelDir, { ...dev, bf16Direct: false })
        : Model.fromConfig(config, { ...dev, bf16Direct: false, seed: 1, std: 0.02 });
      const { ids, targets, offsets } = sftBatch(m.config.vocab_size, B, T);
      const r = await timedSteps(m, { ids, B, T, targets, offsets }, steps);
      m.dispose();
      rows.push({
        name,
        B,
        T,
        bf16Direct: false,
        stepMs: round(r.med.total),
        stepMsAll: r.times.map((t) => round(t.total)),
        directStepMs: directMs,
        directOverStoreThenWiden: round(directMs / r.med.total, 3),
        loss: r.loss,
      });
      log(`  store-then-widen: ${round(r.med.total)} ms/step (direct ${directMs} ms)`);
    } catch (e) {
      rows.push({ name, B, T, ...failure(e) });
      log(`  store-then-widen failed: ${failure(e).error}`);
    }
  }

  // 3. Peak device memory of one RIFT step vs one DPO step with a held reference model (the 'rift' and 'dpo-held'
  //    of lib/profile/memory.ts, measured the same way: peak during the step − current before), same batch, without
  //    and with activation recomputation; predictMemory's numbers next to them.
  if (opts.memory !== false) {
    const mB = opts.memB ?? 2,
      mT = opts.memT ?? 2048;
    const mem: TrainBenchRow & Record<string, unknown> = {
      name: `${device} memory: rift vs dpo-held`,
      B: mB,
      T: mT,
      target: 'rift ≤ 0.55 × dpo-held',
    };
    for (const recompute of [false, true]) {
      const peaks: Partial<Record<'rift' | 'dpo-held', number>> = {};
      for (const method of ['rift', 'dpo-held'] as const) {
        const key = `${method}${recompute ? '+recompute' : ''}`;
        let policy: Model | undefined, held: Model | undefined;
        try {
          collectGarbage();
          await new Promise((r) => setImmediate(r));
          const before = space(Model.memory());
          Model.resetPeaks();
          // Zero weights (std 0): the same buffers and the same work, without seconds of random init in JS.
          policy = Model.fromConfig(config, { ...dev, recompute, seed: 1, std: 0 });
          checkDevice(policy);
          const c = policy.config;
          const N = mB * mT;
          const ids = lcgIds(N, c.vocab_size, 5);
          const targets = new Int32Array(N).fill(-100);
          for (let b = 0; b < mB; b++) for (let t = 0; t < mT - 1; t++) targets[b * mT + t] = ids[b * mT + t + 1];
          const offsets = Int32Array.from({ length: mB + 1 }, (_, i) => i * mT);
          const batch = { ids, B: mB, T: mT, targets, offsets };
          if (method === 'rift') {
            await policy.lossAndBackwardAsync({
              ...batch,
              method: 'rift',
              rewards: Float32Array.from({ length: mB }, (_, i) => (i % 2 ? -0.5 : 1)),
            });
          } else {
            held = Model.fromConfig(config, { ...dev, recompute, seed: 1, std: 0, reference: true });
            const refLogps = Float64Array.from(
              (await held.lossAndBackwardAsync({ ...batch, method: 'logprob', backward: false })).seqLogprobs,
            );
            const pairs = Int32Array.from({ length: mB - (mB % 2) }, (_, i) => i);
            await policy.lossAndBackwardAsync({
              ...batch,
              method: 'dpo',
              dpo: { refLogprobs: refLogps, pairs, beta: 0.1 },
            });
          }
          await policy.stepAsync({ lr: 1e-5, maxGradNorm: 1 });
          const after = space(Model.memory());
          const byCategory = Object.fromEntries(
            Object.entries(after)
              .filter(([k]) => k !== 'device')
              .map(([k, v]) => [
                k,
                round(
                  ((v as { peak: number }).peak - (before[k as keyof typeof before] as { current: number }).current) /
                    2 ** 20,
                  2,
                ),
              ]),
          );
          const peak = after.total.peak - before.total.current;
          peaks[method] = peak;
          const predicted = predictMemory(config, {
            method,
            B: mB,
            T: mT,
            recompute,
            chunkRows: policy.native.info().chunkRows,
            device: 'cuda',
            precision: policy.precision,
            activationDtype: policy.activationDtype,
          });
          // baselineGB: what was still allocated before this variant (the earlier models should have been freed)
          mem[key] = {
            peakGB: round(peak / GB, 3),
            peakBytes: peak,
            baselineGB: round(before.total.current / GB, 3),
            byCategoryMB: byCategory,
            predictedGB: round(predicted.bytes.total / GB, 3),
            predictedBytes: predicted.bytes.total,
          };
          log(`  memory ${key}: ${round(peak / GB, 2)} GB peak (predicted ${round(predicted.bytes.total / GB, 2)} GB)`);
        } catch (e) {
          mem[key] = failure(e);
          log(`  memory ${key} failed: ${failure(e).error}`);
        }
        policy = held = undefined;
      }
      if (peaks.rift && peaks['dpo-held']) {
        const ratio = peaks.rift / peaks['dpo-held'];
        mem[recompute ? 'ratioRecompute' : 'ratio'] = round(ratio, 3);
        mem[recompute ? 'passRecompute' : 'pass'] = ratio <= 0.55;
      }
    }
    rows.push(mem);
  }
  return { gpu, peakFlops, rows };
}

function round(x: number, d = 2): number {
  const f = 10 ** d;
  return Math.round(x * f) / f;
}

if (require.main === module) {
  benchTrain({ quick: process.argv.includes('--quick') })
    .then((rows) =>
      console.log(
        JSON.stringify(
          {
            kind: 'train',
            date: new Date().toISOString(),
            machine: { cpu: os.cpus()[0]?.model, cores: os.cpus().length },
            rows,
          },
          null,
          2,
        ),
      ),
    )
    .catch((e) => {
      console.error(e);
      process.exit(1);
    });
}
