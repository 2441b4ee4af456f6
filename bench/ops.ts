// SGEMM throughput of the decoder ops (addon.ops.gemm): the builtin packed kernel vs OpenBLAS (when it loads),
// measured in the same run on the GEMM shapes of a ~20M-parameter Qwen2-like model (hidden 384 / 512,
// 512 / 2048 tokens per step): the forward Linear products (NT: x·Wᵀ), the input-gradient products (NN) and
// the weight-gradient products (TN: doutᵀ·x).
//
//   node dist/bench/ops.js [--quick]       prints a Markdown table and the JSON result
//   import { benchOps } from './ops'        returns the JSON object (for bench/run.ts)
//
// GFLOP/s = 2·M·N·K / time; time = median of the timed calls of a round (after warm-up), best of 3 rounds
// in which builtin and OpenBLAS alternate; every call on the same buffers.
import * as os from 'os';

import { addon } from '../lib/native';

interface GemmArgs {
  transA: boolean;
  transB: boolean;
  M: number;
  N: number;
  K: number;
  A: Float32Array;
  B: Float32Array;
  C: Float32Array;
  alpha?: number;
  beta?: number;
}

export interface GemmTiming {
  ms: number;
  gflops: number;
  bestGflops: number;
  samples: number;
}

export interface GemmShapeResult {
  model: string;
  tokens: number;
  op: string;
  trans: 'NN' | 'NT' | 'TN';
  M: number;
  N: number;
  K: number;
  builtin: GemmTiming;
  openblas?: GemmTiming;
  /** builtin GFLOP/s ÷ OpenBLAS GFLOP/s (median times), when OpenBLAS loaded. */
  ratio?: number;
}

export interface OpsBenchResult {
  kind: 'ops-gemm';
  date: string;
  machine: { cpu: string; cores: number; threads: number };
  blas: { available: boolean; path: string };
  shapes: GemmShapeResult[];
  summary: {
    builtinGeomeanGflops: number;
    openblasGeomeanGflops?: number;
    geomeanRatio?: number;
    builtinPeakGflops: number;
    openblasPeakGflops?: number;
  };
}

interface Model {
  name: string;
  hidden: number;
  inter: number;
  kvDim: number; // num_key_value_heads · head_dim
  vocab: number;
}

const MODELS: Model[] = [
  { name: 'h384', hidden: 384, inter: 1024, kvDim: 128, vocab: 8192 },
  { name: 'h512', hidden: 512, inter: 1408, kvDim: 128, vocab: 8192 },
];

/** The GEMMs of one decoder step: [op, trans, M, N, K] with T tokens (Linear weight W is (out, in)). */
function shapesOf(m: Model, T: number): [string, 'NN' | 'NT' | 'TN', number, number, number][] {
  const { hidden: H, inter: I, kvDim: KV, vocab: V } = m;
  return [
    ['q/o proj fwd', 'NT', T, H, H],
    ['k/v proj fwd', 'NT', T, KV, H],
    ['gate/up fwd', 'NT', T, I, H],
    ['down fwd', 'NT', T, H, I],
    ['lm_head fwd', 'NT', T, V, H],
    ['gate/up dinp', 'NN', T, H, I],
    ['down dinp', 'NN', T, I, H],
    ['gate/up dW', 'TN', I, H, T],
    ['down dW', 'TN', H, I, T],
  ];
}

function fill(n: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = s / 2 ** 32 - 0.5;
  }
  return a;
}

function time(fn: () => void, minSamples: number, budgetMs: number): { median: number; best: number; samples: number } {
  fn();
  fn(); // warm-up: pack buffers, OpenBLAS threads
  const t: number[] = [];
  const start = performance.now();
  while (t.length < minSamples || (performance.now() - start < budgetMs && t.length < 200)) {
    const t0 = performance.now();
    fn();
    t.push(performance.now() - t0);
  }
  t.sort((a, b) => a - b);
  return { median: t[t.length >> 1], best: t[0], samples: t.length };
}

const geomean = (xs: number[]) => Math.exp(xs.reduce((s, x) => s + Math.log(x), 0) / xs.length);

export async function benchOps(opts: { quick?: boolean; log?: (s: string) => void } = {}): Promise<OpsBenchResult> {
  const ops = addon.ops;
  const log = opts.log ?? ((s: string) => console.log(s));
  const info = ops.info();
  const impls: ('builtin' | 'openblas')[] = info.blasAvailable ? ['builtin', 'openblas'] : ['builtin'];
  const models = opts.quick ? MODELS.slice(1) : MODELS;
  const tokens = opts.quick ? [2048] : [512, 2048];
  const minSamples = opts.quick ? 3 : 5;
  const budget = opts.quick ? 100 : 150;
  const rounds = opts.quick ? 1 : 3;
  const shapes: GemmShapeResult[] = [];
  try {
    for (const m of models)
      for (const T of tokens)
        for (const [op, trans, M, N, K] of shapesOf(m, T)) {
          const ta = trans === 'TN',
            tb = trans === 'NT';
          const args: GemmArgs = {
            transA: ta,
            transB: tb,
            M,
            N,
            K,
            A: fill(M * K, 1),
            B: fill(K * N, 2),
            C: new Float32Array(M * N),
          };
          const flop = 2 * M * N * K;
          const row: Partial<GemmShapeResult> = { model: m.name, tokens: T, op, trans, M, N, K };
          // Implementations alternate over `rounds` rounds; each keeps its best round (load on a shared machine
          // comes and goes, and both sides get the same chances).
          for (let round = 0; round < rounds; round++)
            for (const impl of impls) {
              ops.setGemm(impl);
              const r = time(() => ops.gemm(args), minSamples, budget);
              const prev = row[impl];
              const t: GemmTiming = {
                ms: r.median,
                gflops: flop / r.median / 1e6,
                bestGflops: flop / r.best / 1e6,
                samples: r.samples,
              };
              if (!prev) row[impl] = t;
              else
                row[impl] = {
                  ms: Math.min(prev.ms, t.ms),
                  gflops: Math.max(prev.gflops, t.gflops),
                  bestGflops: Math.max(prev.bestGflops, t.bestGflops),
                  samples: prev.samples + t.samples,
                };
            }
          if (row.openblas) row.ratio = row.builtin!.gflops / row.openblas.gflops;
          shapes.push(row as GemmShapeResult);
        }
  } finally {
    ops.setGemm(info.gemm);
  }
  const result: OpsBenchResult = {
    kind: 'ops-gemm',
    date: new Date().toISOString(),
    machine: { cpu: os.cpus()[0]?.model ?? 'unknown', cores: os.cpus().length, threads: info.threads },
    blas: { available: info.blasAvailable, path: info.blasPath },
    shapes,
    summary: {
      builtinGeomeanGflops: geomean(shapes.map((s) => s.builtin.gflops)),
      builtinPeakGflops: Math.max(...shapes.map((s) => s.builtin.bestGflops)),
    },
  };
  if (info.blasAvailable) {
    result.summary.openblasGeomeanGflops = geomean(shapes.map((s) => s.openblas!.gflops));
    result.summary.openblasPeakGflops = Math.max(...shapes.map((s) => s.openblas!.bestGflops));
    result.summary.geomeanRatio = geomean(shapes.map((s) => s.ratio!));
  }
  log(table(result));
  return result;
}

export function table(r: OpsBenchResult): string {
  const f = (x: number | undefined) => (x === undefined ? '—' : x.toFixed(1));
  const lines = [
    `SGEMM on ${r.machine.cpu} (${r.machine.threads} threads); OpenBLAS: ${r.blas.available ? r.blas.path : 'not loadable'}`,
    '',
    '| model | tokens | op | trans | M×N×K | builtin GFLOP/s | OpenBLAS GFLOP/s | builtin / OpenBLAS |',
    '|---|---:|---|---|---|---:|---:|---:|',
    ...r.shapes.map(
      (s) =>
        `| ${s.model} | ${s.tokens} | ${s.op} | ${s.trans} | ${s.M}×${s.N}×${s.K} | ${f(s.builtin.gflops)} | ${f(s.openblas?.gflops)} | ${s.ratio === undefined ? '—' : s.ratio.toFixed(2)} |`,
    ),
    `| **geomean** | | | | | ${f(r.summary.builtinGeomeanGflops)} | ${f(r.summary.openblasGeomeanGflops)} | ${r.summary.geomeanRatio === undefined ? '—' : r.summary.geomeanRatio.toFixed(2)} |`,
  ];
  return lines.join('\n');
}

if (require.main === module) {
  benchOps({ quick: process.argv.includes('--quick') })
    .then((r) => console.log(JSON.stringify(r, null, 2)))
    .catch((e) => {
      console.error(e);
      process.exit(1);
    });
}
