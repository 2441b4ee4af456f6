// What rift/tfjs costs: riftLoss (one fused kernel call; the logits leave the tfjs backend once, the gradient comes
// back once) against the same loss written in plain tf ops (test/helpers/tfjs-reference.ts) differentiated by
// tfjs, value + gradient w.r.t. the logits, on the backend registered (tfjs-backend-cpu here), in one run.
//
//   npx tsc -p tsconfig.json && node dist/bench/tfjs-adapter.js [--reps 5] [--shapes 256x4096,512x16384,1024x32000] [--out FILE]
import * as fs from 'fs';
import * as os from 'os';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { registerExampleGradients } from '../examples/tfjs-grads';
import { backends } from '../lib/kernels/info';
import { lossAndGrad } from '../lib/kernels/loss';
import { riftLoss, type RiftLossOptions } from '../lib/tfjs';
import { plainTfLoss } from '../test/helpers/tfjs-reference';

interface Row {
  rows: number;
  vocab: number;
  method: string;
  /** lossAndGrad alone on host arrays, the gradient buffer reused (warm): the floor of the adapter's cost. */
  kernelMs: number;
  adapterMs: number;
  plainMs: number;
  speedup: number;
  maxGradDiff: number;
}

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : dflt;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** Wall time of one value + gradient (read back to the host, as a training step would use them). */
function once(f: (x: tf.Tensor2D) => tf.Scalar, x: tf.Tensor2D): { ms: number; grad: Float32Array } {
  const t0 = performance.now();
  let g: Float32Array = new Float32Array(0),
    t1 = 0;
  tf.tidy(() => {
    const { value, grad } = tf.valueAndGrad(f)(x);
    value.dataSync();
    const host = grad.dataSync();
    t1 = performance.now();
    g = Float32Array.from(host); // (not returned: tidy would walk a returned array element by element)
  });
  return { ms: t1 - t0, grad: g };
}

/** Median times of a and b over `reps` calls each, interleaved (a, b, a, b, …) after one warm-up of each. */
function race(a: (x: tf.Tensor2D) => tf.Scalar, b: (x: tf.Tensor2D) => tf.Scalar, x: tf.Tensor2D, reps: number) {
  const ta: number[] = [],
    tb: number[] = [];
  let ga: Float32Array = new Float32Array(0),
    gb: Float32Array = ga;
  for (let i = 0; i <= reps; i++) {
    const ra = once(a, x),
      rb = once(b, x);
    if (i > 0) {
      ta.push(ra.ms);
      tb.push(rb.ms);
    }
    [ga, gb] = [ra.grad, rb.grad];
  }
  return { a: { ms: median(ta), grad: ga }, b: { ms: median(tb), grad: gb } };
}

async function main(): Promise<void> {
  tf.env().set('IS_TEST', true);
  registerExampleGradients(tf);
  await tf.setBackend('cpu');
  const reps = Number(arg('reps', '5'));
  const loadBefore = os.loadavg()[0];
  const shapes = arg('shapes', '256x4096,512x16384,1024x32000')
    .split(',')
    .map((s) => s.split('x').map(Number) as [number, number]);
  const out: Row[] = [];
  for (const [rows, vocab] of shapes) {
    // 8 sequences, the first quarter of each a prompt (−100), rewards alternating +1 / −0.2
    const S = 8,
      len = rows / S;
    const offsets = Int32Array.from({ length: S + 1 }, (_, i) => i * len);
    const targets = Int32Array.from({ length: rows }, (_, t) => (t % len < len / 4 ? -100 : (t * 7919) % vocab));
    const rewards = Float32Array.from({ length: S }, (_, i) => (i % 2 ? -0.2 : 1));
    const x = tf.tensor2d(
      Float32Array.from({ length: rows * vocab }, (_, i) => Math.sin(i * 0.618) * 4),
      [rows, vocab],
    );
    for (const method of ['sft', 'rift'] as const) {
      const opts: RiftLossOptions = { method, negative: 'token' };
      const logits = x.dataSync() as Float32Array,
        g = new Float32Array(rows * vocab),
        ks: number[] = [];
      for (let i = 0; i <= reps; i++) {
        const t0 = performance.now();
        lossAndGrad({ logits, rows, vocab, targets, offsets, rewards, method, negative: 'token', grad: g });
        if (i > 0) ks.push(performance.now() - t0); // the first call is a warm-up
      }
      const { a, b: p } = race(
        (z) => riftLoss(z, targets, offsets, rewards, opts),
        (z) => plainTfLoss(tf, z, { targets, offsets, rewards, method, negative: 'token' }),
        x,
        reps,
      );
      let diff = 0;
      for (let i = 0; i < a.grad.length; i++) diff = Math.max(diff, Math.abs(a.grad[i] - p.grad[i]));
      const row: Row = {
        rows,
        vocab,
        method: method === 'rift' ? 'rift (token)' : method,
        kernelMs: median(ks),
        adapterMs: a.ms,
        plainMs: p.ms,
        speedup: p.ms / a.ms,
        maxGradDiff: diff,
      };
      out.push(row);
      console.error(
        `${rows}×${vocab} ${row.method}: riftLoss ${a.ms.toFixed(1)} ms, plain tf ${p.ms.toFixed(1)} ms (${row.speedup.toFixed(1)}×)`,
      );
    }
    x.dispose();
  }
  const info = backends();
  const result = {
    date: new Date().toISOString().slice(0, 10),
    host: `${os.cpus()[0]?.model ?? 'cpu'} × ${os.cpus().length}`,
    loadBefore,
    loadAfter: os.loadavg()[0],
    tfjs: tf.version_core,
    backend: tf.getBackend(),
    threads: info.cpu.threads,
    reps,
    rows: out,
  };
  console.log(
    '| shape (rows × vocab) | method | kernel alone ms | riftLoss ms | plain tf ops ms | plain / riftLoss | max |Δgrad| |',
  );
  console.log('|---|---|---:|---:|---:|---:|---:|');
  for (const r of out)
    console.log(
      `| ${r.rows} × ${r.vocab} | ${r.method} | ${r.kernelMs.toFixed(1)} | ${r.adapterMs.toFixed(1)} | ${r.plainMs.toFixed(1)} | ${r.speedup.toFixed(1)}× | ${r.maxGradDiff.toExponential(1)} |`,
    );
  const file = arg('out', '');
  if (file) fs.writeFileSync(file, JSON.stringify(result, null, 2) + '\n');
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
