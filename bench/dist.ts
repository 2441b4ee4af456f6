// Data-parallel scaling on this machine (lib/distributed): training tokens/s of the 21M-parameter bench shape
// (bench/train.ts BENCH_CONFIG) at 1 rank and at 2 ranks (one thread each) on the same global batch, the scaling
// efficiency, and MPI all-reduce bandwidth — all in one run of one 2-rank job (mpirun -np 2).
//
//   node dist/bench/dist.js [--quick] [--rounds N] [--B 8] [--T 256] [--mb 4]
//       writes bench/results/dist-cpu-<cpu>-<cores>c-<date>.json and prints a Markdown table
//
// The machine is shared with other engineers' jobs, whose load comes and goes within seconds. So the variants are
// interleaved step by step inside the one job — round r runs one step of each variant, in turn — and each variant's
// tokens/s is the median over the rounds: every variant sees the same conditions on average.
//   solo     rank 0 alone trains the whole global batch (rank 1 waits): the 1-rank baseline
//   control  both ranks train half the batch each, each stepping alone (no collective): the compute scaling the
//            machine allows at the time
//   zero0 / zero0-no-overlap / zero1   both ranks train half the batch, with the gradient sync of DataParallel
// A step = zeroGrad, lossAndBackward over this rank's rows in micro-batches of mb rows (SFT, every position but
// the last with a target, the global normaliser), then the step: the model's own (solo, control) or GradSync.step
// (all-reduce of the gradient buckets — started during the last micro-batch's backward where overlap is on — then
// clipping and AdamW; ZeRO-1: reduce to owners, sharded AdamW, weight broadcast). tokens/s = B·T / rank 0's step
// time. Scaling efficiency = tokens/s ÷ (ranks × solo tokens/s); "of control" = tokens/s ÷ control tokens/s: what
// the gradient sync costs. One model per rank serves every variant (timing does not depend on the weights).
// All-reduce: in-place MPI_Allreduce (sum) of float32 buffers, median of the timed calls; algbw = bytes / time,
// busbw = algbw · 2(n − 1)/n (what each rank moves in a ring all-reduce, NCCL-tests' convention).
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { Model } from '../lib/engine/model';
import { Dist } from '../lib/distributed/comm';
import { DataParallel, type GradSync } from '../lib/distributed/data-parallel';
import { BENCH_CONFIG } from './train';

const now = () => Number(process.hrtime.bigint()) / 1e6;
const round = (x: number, d = 1) => Math.round(x * 10 ** d) / 10 ** d;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

interface Variant {
  name: string;
  ranks: number;
  sync?: GradSync;
}

/** Rank r's part of the interleaved training benchmark; rank 0 prints one JSON line per variant. */
async function rankTrain(a: { B: number; T: number; mb: number; rounds: number }): Promise<void> {
  const dist = Dist.init();
  if (dist.size !== 2) throw new Error('the training benchmark runs as 2 ranks (mpirun -np 2)');
  const model = Model.fromConfig(BENCH_CONFIG, { seed: 1, std: 0.02 });
  const variants: Variant[] = [
    { name: 'solo', ranks: 1 },
    { name: 'control', ranks: 2 },
    { name: 'zero0', ranks: 2, sync: new DataParallel(dist, { zero: 0 }).sync(model) },
    { name: 'zero0-no-overlap', ranks: 2, sync: new DataParallel(dist, { zero: 0, overlap: false }).sync(model) },
    { name: 'zero1', ranks: 2, sync: new DataParallel(dist, { zero: 1 }).sync(model) },
  ];
  const V = model.config.vocab_size,
    T = a.T,
    R = a.mb;
  let s = 7 + dist.rank;
  const ids = Int32Array.from({ length: R * T }, () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) >>> 8) % V);
  const targets = new Int32Array(R * T);
  for (let b = 0; b < R; b++) for (let t = 0; t < T; t++) targets[b * T + t] = t + 1 < T ? ids[b * T + t + 1] : -100;
  const offsets = Int32Array.from({ length: R + 1 }, (_, i) => i * T);
  const normalizer = a.B * (T - 1);
  const times = new Map<string, { total: number; backward: number; load: number }[]>(variants.map((v) => [v.name, []]));
  for (let r = 0; r <= a.rounds; r++) {
    for (const v of variants) {
      await dist.sum(`bench: ${v.name} step`, [0]); // both ranks start each step together
      const t0 = now();
      const micro = v.ranks === 1 ? (dist.isRoot ? a.B / R : 0) : a.B / 2 / R;
      if (micro) {
        model.zeroGrad();
        for (let m = 0; m < micro; m++) {
          const backward = () =>
            model.lossAndBackwardAsync({ ids, B: R, T, targets, offsets, method: 'sft', normalizer });
          await (v.sync && m === micro - 1 ? v.sync.lastBackward(backward) : backward());
        }
      }
      const t1 = now();
      if (v.sync) await v.sync.step({ lr: 1e-4, maxGradNorm: 1 });
      else if (micro) await model.stepAsync({ lr: 1e-4, maxGradNorm: 1 });
      if (r > 0) times.get(v.name)!.push({ total: now() - t0, backward: t1 - t0, load: os.loadavg()[0] }); // round 0 warms up
    }
  }
  if (dist.isRoot)
    for (const v of variants) {
      const ts = times.get(v.name)!;
      const med = median(ts.map((t) => t.total));
      process.stdout.write(
        JSON.stringify({
          variant: v.name,
          ranks: v.ranks,
          backend: v.sync?.backend ?? null,
          buckets: v.sync?.buckets ?? null,
          library: dist.library,
          B: a.B,
          T,
          mb: R,
          stepMs: round(med),
          stepMsAll: ts.map((t) => round(t.total)),
          forwardBackwardMs: round(median(ts.map((t) => t.backward))),
          syncAndStepMs: round(median(ts.map((t) => t.total - t.backward))),
          tokensPerSec: round((a.B * T) / (med / 1e3)),
          loadAverages: ts.map((t) => round(t.load, 2)),
        }) + '\n',
      );
    }
  dist.finalize();
}

/** One rank of the all-reduce benchmark: rank 0 prints one JSON line per size. */
async function rankAllReduce(sizesMB: number[], reps: number): Promise<void> {
  const dist = Dist.init();
  for (const mb of sizesMB) {
    const n = Math.round((mb * 2 ** 20) / 4);
    const buf = new Float32Array(n).fill(1);
    const ms: number[] = [];
    for (let i = 0; i <= reps; i++) {
      await dist.sum('bench: all-reduce start', [0]);
      const t0 = now();
      await dist.allReduce(buf);
      if (i > 0) ms.push(now() - t0);
    }
    const t = median(ms) / 1e3,
      bytes = n * 4;
    if (dist.isRoot)
      process.stdout.write(
        JSON.stringify({
          ranks: dist.size,
          MB: mb,
          ms: round(t * 1e3, 2),
          msAll: ms.map((x) => round(x, 2)),
          algbwGBs: round(bytes / t / 1e9, 2),
          busbwGBs: round(((bytes / t) * 2 * (dist.size - 1)) / dist.size / 1e9, 2),
        }) + '\n',
      );
  }
  dist.finalize();
}

function parseArgs(argv: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    if (!argv[i].startsWith('--')) throw new Error(`unexpected argument ${argv[i]}`);
    const k = argv[i].slice(2);
    out[k] = argv[i + 1] !== undefined && !argv[i + 1].startsWith('--') ? argv[++i] : '1';
  }
  return out;
}

/** Runs this script as `ranks` processes (mpirun for 2+), returns rank 0's JSON lines. */
function launch(ranks: number, args: string[]): Record<string, unknown>[] {
  const env = {
    ...process.env,
    RIFT_NUM_THREADS: '1',
    OMPI_ALLOW_RUN_AS_ROOT: '1',
    OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: '1',
  };
  const me = [process.execPath, __filename, ...args];
  const r =
    ranks === 1
      ? spawnSync(me[0], me.slice(1), { encoding: 'utf8', env })
      : spawnSync(
          'mpirun',
          ['--oversubscribe', '--bind-to', 'core', '-x', 'RIFT_NUM_THREADS=1', '-np', String(ranks), ...me],
          { encoding: 'utf8', env },
        );
  if (r.status !== 0)
    throw new Error(`${ranks} rank(s) ${args.join(' ')} failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout
    .trim()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

async function main(): Promise<void> {
  const a = parseArgs(process.argv.slice(2));
  if (a['rank-train']) return rankTrain({ B: Number(a.B), T: Number(a.T), mb: Number(a.mb), rounds: Number(a.rounds) });
  if (a['rank-allreduce']) return rankAllReduce(a.sizes.split(',').map(Number), Number(a.reps));
  const quick = !!a.quick;
  const B = Number(a.B ?? 8),
    T = Number(a.T ?? (quick ? 64 : 256)),
    mb = Number(a.mb ?? 4),
    rounds = Number(a.rounds ?? (quick ? 2 : 6));
  if (!Number.isInteger(B / 2 / mb)) throw new Error(`--B ${B} must be a multiple of 2 ranks × --mb ${mb}`);
  const load = [round(os.loadavg()[0], 2)];
  const train = launch(2, [
    '--rank-train',
    '--B',
    String(B),
    '--T',
    String(T),
    '--mb',
    String(mb),
    '--rounds',
    String(rounds),
  ]);
  const sizes = quick ? [1, 16] : [1, 16, 84];
  const allreduce = launch(2, ['--rank-allreduce', '--sizes', sizes.join(','), '--reps', quick ? '3' : '7']);
  load.push(round(os.loadavg()[0], 2));
  const solo = train.find((t) => t.variant === 'solo')!.tokensPerSec as number;
  const control = train.find((t) => t.variant === 'control')!.tokensPerSec as number;
  for (const t of train) {
    t.efficiency = round((t.tokensPerSec as number) / ((t.ranks as number) * solo), 3);
    if (t.ranks === 2) t.ofControl = round((t.tokensPerSec as number) / control, 3);
  }
  console.log(
    `\nData parallel, ${BENCH_CONFIG.num_hidden_layers}-layer bench shape (21.1M params), global batch ${B}×${T} in micro-batches of ${mb} rows, ` +
      `1 thread per rank, ${rounds} interleaved rounds (medians); load average ${load.join(' → ')}\n`,
  );
  console.log('| variant | ranks | tokens/s | step ms | fwd+bwd ms | sync + AdamW ms | efficiency | of control |');
  console.log('|---|---:|---:|---:|---:|---:|---:|---:|');
  for (const t of train)
    console.log(
      `| ${t.variant} | ${t.ranks} | ${t.tokensPerSec} | ${t.stepMs} | ${t.forwardBackwardMs} | ${t.syncAndStepMs} | ${t.efficiency} | ${t.ofControl ?? '–'} |`,
    );
  console.log('\n| all-reduce MB | ms | algbw GB/s | busbw GB/s |\n|---:|---:|---:|---:|');
  for (const r of allreduce) console.log(`| ${r.MB} | ${r.ms} | ${r.algbwGBs} | ${r.busbwGBs} |`);
  const cpus = os.cpus();
  const day = new Date().toISOString().slice(0, 10);
  const slug = (x: string) =>
    x
      .toLowerCase()
      .replace(/[^a-z0-9]+/g, '-')
      .replace(/^-|-$/g, '');
  const file = path.resolve(
    __dirname,
    '..',
    '..',
    'bench',
    'results',
    `dist-cpu-${slug(cpus[0]?.model ?? 'unknown')}-${cpus.length}c-${day}${quick ? '-quick' : ''}.json`,
  );
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(
    tmp,
    JSON.stringify(
      {
        machine: {
          cpu: cpus[0]?.model,
          cores: cpus.length,
          node: process.version,
          date: new Date().toISOString(),
          loadAverage: load,
        },
        train,
        allreduce,
      },
      null,
      2,
    ) + '\n',
  );
  fs.renameSync(tmp, file);
  console.error(`wrote ${path.relative(process.cwd(), file)}`);
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exitCode = 1;
});
