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
// - Sampling: P prompts × K samples per prompt through lib/engine/sampler.ts generate() (prefill each prompt
//   once, broadcast its KV cache to K rows, decode the K rows together), no stop tokens: tokens/s counts the
//   P·K·maxNewTokens generated tokens.
import * as os from 'os';

import { Model } from '../lib/engine/model';
import { generate } from '../lib/engine/sampler';
import { addon } from '../lib/native';

interface OpsAddon {
  info(): { gemm: string; threads: number; blasAvailable: boolean; blasPath: string };
  gemm(o: { transA: boolean; transB: boolean; M: number; N: number; K: number; A: Float32Array; B: Float32Array; C: Float32Array }): void;
}

export interface TrainBenchOptions {
  quick?: boolean;
  /** Tokens per step B × T (default 8 × 256; quick: 4 × 128). */
  B?: number;
  T?: number;
  /** Timed steps after one warm-up step (default 4; quick: 2). */
  steps?: number;
  /** Sampling: prompts × k samples, prompt length and new tokens (default 8 × 8, 32 + 64; quick: 32 new tokens). */
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
  model_type: 'qwen2', vocab_size: 8192, hidden_size: 512, intermediate_size: 1408, num_hidden_layers: 6,
  num_attention_heads: 8, num_key_value_heads: 2, rms_norm_eps: 1e-6, rope_theta: 10000, tie_word_embeddings: true,
  max_position_embeddings: 4096,
};

const now = () => Number(process.hrtime.bigint()) / 1e6; // ms

/**
 * The sgemm peak: the best GFLOP/s of addon.ops.gemm on an n³ square problem over the NN, NT and TN layouts
 * (the three the model uses), `reps` timed calls each after one warm-up call.
 */
export function sgemmPeak(n = 2048, reps = 3): { gflops: number; n: number; impl: string; threads: number; byLayout: Record<string, number> } {
  const ops = (addon as unknown as { ops: OpsAddon }).ops;
  const A = new Float32Array(n * n).map((_, i) => ((i * 2654435761) % 1000) / 1000 - 0.5);
  const B = A.slice().reverse();
  const C = new Float32Array(n * n);
  const byLayout: Record<string, number> = {};
  for (const [transA, transB] of [[false, false], [false, true], [true, false]]) {
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

function lcgIds(n: number, V: number, seed: number): Int32Array {
  let s = seed >>> 0;
  return Int32Array.from({ length: n }, () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) >>> 8) % V);
}

export async function benchTrain(opts: TrainBenchOptions = {}): Promise<TrainBenchRow[]> {
  const quick = !!opts.quick;
  const B = opts.B ?? (quick ? 4 : 8), T = opts.T ?? (quick ? 128 : 256), steps = opts.steps ?? (quick ? 2 : 4);
  const peakBefore = sgemmPeak(2048, quick ? 1 : 3);

  const model = Model.fromConfig(BENCH_CONFIG, { seed: 1, std: 0.02 });
  const c = model.config;
  const P = model.numParams;
  const pMatmul = P - model.tensorTable().filter((t) => !t.name.includes('_proj.') && !t.name.startsWith('lm_head')).reduce((s, t) => s + t.shape.reduce((a, b) => a * b, 1), 0)
    + (c.tie_word_embeddings ? c.vocab_size * c.hidden_size : 0); // Linear weights + the lm_head matrix (tied: the embedding)
  const attnPerToken = 6 * c.num_hidden_layers * c.num_attention_heads * c.head_dim * (T + 1);
  const N = B * T;
  const ids = lcgIds(N, c.vocab_size, 7);
  const targets = new Int32Array(N);
  for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) targets[b * T + t] = t + 1 < T ? ids[b * T + t + 1] : -100;
  const offsets = Int32Array.from({ length: B + 1 }, (_, i) => i * T);
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
  const flopsModel = 6 * pMatmul * tokPerSec, flopsAll = (6 * pMatmul + attnPerToken) * tokPerSec;
  const mem = model.memory();
  const rows: TrainBenchRow[] = [
    { name: 'sgemm peak', gflops: round(peak.gflops), n: peak.n, impl: peak.impl, threads: peak.threads, before: peakBefore.byLayout, after: peakAfter.byLayout },
    {
      name: 'train step (sft)',
      config: `qwen2 V=${c.vocab_size} C=${c.hidden_size} I=${c.intermediate_size} L=${c.num_hidden_layers} H=${c.num_attention_heads}/${c.num_key_value_heads} tied`,
      params: P, matmulParams: pMatmul, B, T, tokensPerStep: N, targetTokens: tokens,
      stepMs: round(med.total), stepMsAll: times.map((t) => round(t.total)), loadAverage: round(os.loadavg()[0]), lossBackwardMs: round(med.lossBackward), optimizerMs: round(med.total - med.lossBackward),
      tokensPerSec: round(tokPerSec),
      gflops6P: round(flopsModel / 1e9), gflopsWithAttention: round(flopsAll / 1e9),
      mfu6P: round(flopsModel / 1e9 / peak.gflops, 3), mfuWithAttention: round(flopsAll / 1e9 / peak.gflops, 3),
      flops: '6·P_matmul per token (+ causal attention 6·L·Hq·D·(T+1))',
      chunkRows: model.native.info().chunkRows,
      memoryMB: Object.fromEntries(Object.entries(mem).map(([k, v]) => [k, round(v.peak / 2 ** 20, 1)])),
    },
  ];

  if (opts.sampling !== false) {
    const nPrompts = opts.prompts ?? 8, K = opts.k ?? 8, Lp = opts.promptLength ?? 32, maxNew = opts.maxNewTokens ?? (quick ? 32 : 64);
    const prompts = Array.from({ length: nPrompts }, (_, i) => lcgIds(Lp, c.vocab_size, 100 + i));
    const tokenizer = { encode: () => new Int32Array(0), decode: () => '', eosTokenIds: [] as number[] };
    const t0 = now();
    const out = await generate(model, tokenizer, prompts, { k: K, maxNewTokens: maxNew, temperature: 1, seed: 1, stopTokens: [] });
    const ms = now() - t0;
    const generated = out.reduce((s, p) => s + p.samples.reduce((a, x) => a + x.ids.length, 0), 0);
    rows.push({ name: 'sampling', prompts: nPrompts, k: K, promptLength: Lp, maxNewTokens: maxNew, generatedTokens: generated, ms: round(ms), tokensPerSec: round(generated / (ms / 1e3)) });
  }
  return rows;
}

function round(x: number, d = 2): number {
  const f = 10 ** d;
  return Math.round(x * f) / f;
}

if (require.main === module) {
  benchTrain({ quick: process.argv.includes('--quick') })
    .then((rows) => console.log(JSON.stringify({ kind: 'train', date: new Date().toISOString(), machine: { cpu: os.cpus()[0]?.model, cores: os.cpus().length }, rows }, null, 2)))
    .catch((e) => {
      console.error(e);
      process.exit(1);
    });
}
