// Data-parallel training (lib/distributed, native/distributed, native/napi/dist.cc).
// (a) without MPI: launcher variables, the deal of a global batch, ZeRO-1 shards, per-rank memory prediction, the
//     binding's argument errors, a clear error when a launcher asks for ranks and no libmpi loads, and ZeRO-1 in a
//     world of one rank equal to the model's own AdamW bit for bit;
// (b) under `mpirun -np 2` (2 ranks × 1 thread; skipped, saying why, where mpirun or Open MPI's libmpi is missing —
//     .ci/run installs them): 2 ranks equal 1 rank on the same global batches, ZeRO-1 equals plain data parallel,
//     resume under 2 ranks is exact, mismatched options / data stop the job at the start, and a killed or hung
//     rank ends the job with an error naming it.
//
// Bounds for "2 ranks equal 1 rank" (fp32 summation order: each rank sums its micro-batches, then the ranks' sums
// are added, instead of one process summing every micro-batch; the micro-batches also pack differently):
//   the first step's summed gradient   max|Δg| ≤ 1e-5 · max|g|       (measured 2.1e-7)
//   every step's loss                   |Δ| ≤ 1e-5 · |loss|            (measured 3e-8)
//   every step's gradient norm          |Δ| ≤ 1e-4 · norm              (measured 1e-8)
//   the weights after K AdamW steps     max|Δw| ≤ 0.05 · lr · K, and 99.9% of them within 1e-3 · lr · K
//                                       (measured: max 1.7e-4 · lr · K on the worker's model, 1.2e-2 on tiny-base
//                                       through the CLI, where 99.98% are within 1e-4 · lr · K)
// The weights' bound is in units of AdamW's step: its update lr·m̂/(√v̂ + ε) is at most about lr per element and
// barely depends on the gradient's scale, except for the few elements whose gradient is a near-cancellation of
// larger terms (there the rounding difference is a large part of the gradient, and the update moves by a part of lr).
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Model } from '../lib/engine/model';
import { addon } from '../lib/native';
import { Dist, hashString } from '../lib/distributed/comm';
import { DataParallel } from '../lib/distributed/data-parallel';
import { launchInfo, selectCudaDevice } from '../lib/distributed/launch';
import { shardRanges, shardUnits } from '../lib/distributed/shard';
import { predictMemory } from '../lib/profile/memory';
import { Trainer, type StepMetrics } from '../lib/train/trainer';
import type { Example } from '../lib/train/examples';
import { readSafetensors } from '../lib/engine/safetensors';
import { buildCli, cliScratch, root } from './helpers/cli';

const worker = path.join(__dirname, 'helpers', 'dist-worker.js');
const bin = path.join(root, 'bin', 'rift.js');

// ---- (a) without MPI ------------------------------------------------------------------------------------------

describe('launcher variables', () => {
  test('each launcher family gives rank, size and local rank; the first family present wins', () => {
    expect(
      launchInfo({
        OMPI_COMM_WORLD_RANK: '1',
        OMPI_COMM_WORLD_SIZE: '4',
        OMPI_COMM_WORLD_LOCAL_RANK: '1',
        RANK: '3',
        WORLD_SIZE: '8',
      }),
    ).toEqual({ rank: 1, size: 4, localRank: 1, source: 'OMPI_COMM_WORLD_RANK/SIZE' });
    expect(launchInfo({ PMI_RANK: '2', PMI_SIZE: '3' })).toMatchObject({ rank: 2, size: 3, localRank: 2 });
    expect(launchInfo({ SLURM_PROCID: '5', SLURM_NTASKS: '16', SLURM_LOCALID: '1' })).toMatchObject({
      rank: 5,
      size: 16,
      localRank: 1,
    });
    expect(launchInfo({ RANK: '0', WORLD_SIZE: '2', LOCAL_RANK: '0' })).toMatchObject({ rank: 0, size: 2 });
    expect(launchInfo({ RANK: '0' })).toBeUndefined(); // a rank without a size is no launcher
    expect(launchInfo({})).toBeUndefined();
  });
  test('bad values name the variable', () => {
    expect(() => launchInfo({ OMPI_COMM_WORLD_RANK: 'x', OMPI_COMM_WORLD_SIZE: '2' })).toThrow(
      new TypeError('OMPI_COMM_WORLD_RANK: must be a non-negative integer, got "x"'),
    );
    expect(() => launchInfo({ RANK: '2', WORLD_SIZE: '2' })).toThrow(new RangeError('RANK: must be in [0, 1], got 2'));
    expect(() => launchInfo({ PMI_RANK: '0', PMI_SIZE: '0' })).toThrow(RangeError);
  });
  test('one GPU per process: CUDA_VISIBLE_DEVICES from the local rank', () => {
    const env: NodeJS.ProcessEnv = {};
    expect(selectCudaDevice(3, env)).toBe('3');
    expect(env.CUDA_VISIBLE_DEVICES).toBe('3');
    const listed: NodeJS.ProcessEnv = { CUDA_VISIBLE_DEVICES: '4,5,6' };
    expect(selectCudaDevice(1, listed)).toBe('5');
    expect(selectCudaDevice(0, { CUDA_VISIBLE_DEVICES: '7' })).toBe('7');
    expect(() => selectCudaDevice(3, { CUDA_VISIBLE_DEVICES: '0,1' })).toThrow(RangeError);
  });
});

describe('sharding', () => {
  const units = Array.from({ length: 11 }, (_, i) => ({ id: i, tokens: 3 + ((i * 7) % 5) }));
  test('the ranks get disjoint shares that make up the batch, balanced by tokens, in the global order', () => {
    for (const size of [1, 2, 3, 4, 16]) {
      const shares = Array.from({ length: size }, (_, r) => shardUnits(units, (u) => u.tokens, r, size));
      expect(
        shares
          .flat()
          .map((u) => u.id)
          .sort((a, b) => a - b),
      ).toEqual(units.map((u) => u.id));
      for (const s of shares) expect(s.map((u) => u.id)).toEqual([...s.map((u) => u.id)].sort((a, b) => a - b));
      const loads = shares.map((s) => s.reduce((a, u) => a + u.tokens, 0));
      if (size <= units.length)
        expect(Math.max(...loads) - Math.min(...loads)).toBeLessThanOrEqual(Math.max(...units.map((u) => u.tokens)));
      else expect(shares.filter((s) => !s.length).length).toBe(size - units.length);
    }
    expect(() => shardUnits(units, (u) => u.tokens, 2, 2)).toThrow(RangeError);
  });
  test('ZeRO-1 shards: 16-float aligned, covering the buffer; trailing ranks may own nothing', () => {
    expect(shardRanges(100, 3)).toEqual([
      { offset: 0, count: 48 },
      { offset: 48, count: 48 },
      { offset: 96, count: 4 },
    ]);
    expect(shardRanges(20, 4)).toEqual([
      { offset: 0, count: 16 },
      { offset: 16, count: 4 },
      { offset: 20, count: 0 },
      { offset: 20, count: 0 },
    ]);
    expect(shardRanges(7, 1)).toEqual([{ offset: 0, count: 7 }]);
  });
  test('predictMemory per rank: ZeRO-1 shards AdamW m, v (rank 0 holds the largest shard); ZeRO-0 is one process', () => {
    const cfg = {
      model_type: 'qwen2',
      vocab_size: 64,
      hidden_size: 32,
      intermediate_size: 64,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      num_key_value_heads: 2,
    };
    const one = predictMemory(cfg, { method: 'rift', B: 2, T: 8 });
    const z0 = predictMemory(cfg, { method: 'rift', B: 2, T: 8, ranks: 4 });
    const z1 = predictMemory(cfg, { method: 'rift', B: 2, T: 8, ranks: 4, zero: 1 });
    expect(z0.bytes).toEqual(one.bytes);
    expect(z1.bytes.optimizer).toBe(8 * shardRanges(one.numParams, 4)[0].count);
    expect(z1.bytes.params).toBe(one.bytes.params);
    expect(z1.bytes.grads).toBe(one.bytes.grads);
    expect(() => predictMemory(cfg, { method: 'rift', B: 2, T: 8, zero: 2 as 1 })).toThrow(
      new RangeError('zero: must be 0 or 1, got 2'),
    );
    expect(() => predictMemory(cfg, { method: 'rift', B: 2, T: 8, ranks: 0 })).toThrow(RangeError);
  });
});

const CFG = {
  model_type: 'qwen2',
  vocab_size: 40,
  hidden_size: 16,
  intermediate_size: 32,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  rms_norm_eps: 1e-6,
  rope_theta: 10000,
  tie_word_embeddings: true,
};

function examples(): Example[] {
  let s = 5;
  const r = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) >>> 8) / 2 ** 24;
  const ids = (n: number) => Int32Array.from({ length: n }, () => 1 + Math.floor(r() * 39));
  return Array.from({ length: 16 }, (_, i) => ({
    problemId: `p${i >> 2}`,
    sampleIndex: i & 3,
    promptIds: ids(2 + (i % 3)),
    responseIds: ids(2 + (i % 5)),
    reward: i % 3 ? 1 : -0.5,
  }));
}

describe('a world of one rank (no MPI)', () => {
  test('ZeRO-1 in one process equals the model’s own AdamW bit for bit, and its state is a shard of AdamW memory', async () => {
    const dist = Dist.init({ env: {} });
    expect([dist.rank, dist.size, dist.library]).toEqual([0, 1, 'local']);
    const run = async (dp?: DataParallel) => {
      const model = Model.fromConfig(CFG, { seed: 2, std: 0.2 });
      const losses: number[] = [];
      await new Trainer(model, {
        method: 'rift',
        lr: 1e-2,
        examplesPerStep: 6,
        tokenBudget: 32,
        epochs: 2,
        dist: dp,
        onStep: (m: StepMetrics) => void losses.push(m.loss, m.gradNorm),
      }).run(examples());
      return { losses, params: model.params(), model };
    };
    const plain = await run();
    const z1 = await run(new DataParallel(dist, { zero: 1 }));
    expect(z1.losses).toEqual(plain.losses);
    expect(Buffer.from(z1.params.buffer).equals(Buffer.from(plain.params.buffer))).toBe(true);
    const sync = new DataParallel(dist, { zero: 1 }).sync(z1.model);
    expect(sync.shard).toEqual({ offset: 0, count: z1.model.numParams });
    expect(sync.readState().m.length).toBe(z1.model.numParams);
  });
  test('the binding’s bad arguments are typed errors naming them', async () => {
    Dist.init({ env: {} });
    const model = Model.fromConfig(CFG, { seed: 1 });
    expect(() => new addon.dist.GradSync({} as never, { zero: 0, backend: 'mpi' })).toThrow(
      /^model: must be a native Model/,
    );
    expect(() => new addon.dist.GradSync(model.native, { zero: 2 as 0, backend: 'mpi' })).toThrow(
      /^zero: must be an integer in \[0, 1\]/,
    );
    expect(() => new addon.dist.GradSync(model.native, { zero: 0, backend: 'nccl' })).toThrow(
      /^backend: 'nccl' reduces device memory/,
    );
    expect(() => addon.dist.coordinate('x', [1] as never, false)).toThrow(/^values: must be a Float64Array/);
    expect(() => addon.dist.setTimeout(-1)).toThrow(/^timeoutSec: must be > 0/);
    expect(() => new DataParallel(Dist.get()!, { zero: 3 as 0 })).toThrow(
      new RangeError('zero: must be 0 or 1, got 3'),
    );
    expect(() => new Trainer(model, { method: 'sft', lr: 1, dist: {} as DataParallel })).toThrow(
      /^dist: must be a DataParallel/,
    );
    const sync = new DataParallel(Dist.get()!, { zero: 0 }).sync(model);
    expect(() => sync.readState()).toThrow(/zero 0 keeps AdamW's state in the model/);
    expect(await addon.dist.coordinate('sum', Float64Array.of(1.5, 2), false)).toEqual(Float64Array.of(1.5, 2));
    expect(addon.dist.nccl()).toMatch(/^(unavailable: .+|NCCL \d+\.\d+\.\d+ \(.+\))$/);
  });
  test('a launcher that asks for ranks without a loadable libmpi: a clear error', () => {
    buildCli();
    const code = `try { require(${JSON.stringify(path.join(root, 'dist', 'lib', 'distributed', 'comm.js'))}).Dist.init(); } catch (e) { console.log(e.message); }`;
    const r = spawnSync(process.execPath, ['-e', code], {
      encoding: 'utf8',
      env: {
        ...process.env,
        OMPI_COMM_WORLD_RANK: '1',
        OMPI_COMM_WORLD_SIZE: '2',
        RIFT_MPI_LIB: '/nonexistent/libmpi.so.40',
      },
    });
    expect(r.stdout).toMatch(
      /^launched as rank 1 of 2 \(OMPI_COMM_WORLD_RANK\/SIZE\), but libmpi could not be loaded \(.*nonexistent.*\): install Open MPI/,
    );
  });
  test('string fields are compared by hash', () => {
    expect(hashString('abc')).toBe(hashString('abc'));
    expect(hashString('abc')).not.toBe(hashString('abd'));
  });
});

// ---- (b) under mpirun -----------------------------------------------------------------------------------------

const hasMpirun = spawnSync('mpirun', ['--version'], { encoding: 'utf8' }).status === 0;
const lib = addon.dist.mpi();
const skipWhy = !hasMpirun
  ? 'mpirun not found (apt-get install openmpi-bin libopenmpi-dev)'
  : !lib.available
    ? lib.error
    : '';
if (skipWhy) console.warn(`test/dist.test.ts: the mpirun tests are skipped: ${skipWhy}`);
const withMpi = skipWhy ? describe.skip : describe;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
  seconds: number;
}

/** `mpirun -np N node ARGS` (apps: MPMD app contexts), 2 ranks × 1 thread on this machine's cores. */
function mpirun(np: number, args: string[], env: Record<string, string> = {}, apps?: string[][]): Run {
  const xs = Object.entries({ RIFT_NUM_THREADS: '1', ...env }).flatMap(([k, v]) => ['-x', `${k}=${v}`]);
  const ctx = apps
    ? apps.flatMap((a, i) => [...(i ? [':'] : []), '-np', '1', process.execPath, ...a])
    : ['-np', String(np), process.execPath, ...args];
  const t0 = Date.now();
  const r = spawnSync('mpirun', ['--oversubscribe', '--bind-to', 'none', ...xs, ...ctx], {
    encoding: 'utf8',
    timeout: 120_000,
    cwd: tmp,
    env: { ...process.env, OMPI_ALLOW_RUN_AS_ROOT: '1', OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: '1' },
  });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr, seconds: (Date.now() - t0) / 1e3 };
}

interface WorkerOut {
  size: number;
  steps: { step: number; loss: number; gradNorm: number; tokens: number; sequences: number }[];
  params: number[];
  grads?: number[];
  optimizerBytes: number;
  shard: { offset: number; count: number };
}

let tmp = os.tmpdir();
function runWorker(np: number, env: Record<string, string>): WorkerOut {
  const out = path.join(tmp, `w-${np}-${Object.values(env).join('-')}.json`);
  let r: { code: number; stdout: string; stderr: string };
  if (np > 1) r = mpirun(np, [worker, out], env);
  else {
    const s = spawnSync(process.execPath, [worker, out], {
      encoding: 'utf8',
      env: { ...process.env, RIFT_NUM_THREADS: '1', ...env },
    });
    r = { code: s.status ?? -1, stdout: s.stdout, stderr: s.stderr };
  }
  if (r.code !== 0) throw new Error(`worker failed:\n${r.stdout}\n${r.stderr}`);
  return JSON.parse(fs.readFileSync(out, 'utf8')) as WorkerOut;
}

/** max|Δw| ≤ 0.05·lr·K and 99.9% of |Δw| ≤ 1e-3·lr·K (see the file comment). */
function expectWeightsClose(a: ArrayLike<number>, b: ArrayLike<number>, lr: number, steps: number): void {
  expect(a.length).toBe(b.length);
  const unit = lr * steps;
  let far = 0,
    max = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    max = Math.max(max, d);
    if (d > 1e-3 * unit) far++;
  }
  expect(max).toBeLessThanOrEqual(0.05 * unit);
  expect(far).toBeLessThanOrEqual(1e-3 * a.length);
}

const maxAbs = (a: ArrayLike<number>) => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
};
const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
};

withMpi(`data parallel under mpirun -np 2 (Open MPI: ${lib.path || 'none'})`, () => {
  const LR = 1e-3,
    STEPS = 4;
  beforeAll(() => {
    buildCli();
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rift-dist-'));
  });
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

  test('2 ranks equal 1 rank with the same global batches: summed gradient, loss curve, final weights', () => {
    const one = runWorker(1, { W_GRADS: '1', W_LR: String(LR), W_STEPS: String(STEPS) });
    const two = runWorker(2, { W_GRADS: '1', W_LR: String(LR), W_STEPS: String(STEPS) });
    expect(two.size).toBe(2);
    expect(maxDiff(two.grads!, one.grads!)).toBeLessThanOrEqual(1e-5 * maxAbs(one.grads!));
    expect(two.steps.map((s) => [s.tokens, s.sequences])).toEqual(one.steps.map((s) => [s.tokens, s.sequences]));
    two.steps.forEach((s, i) => {
      expect(Math.abs(s.loss - one.steps[i].loss)).toBeLessThanOrEqual(1e-5 * Math.abs(one.steps[i].loss));
      expect(Math.abs(s.gradNorm - one.steps[i].gradNorm)).toBeLessThanOrEqual(1e-4 * one.steps[i].gradNorm);
    });
    expectWeightsClose(two.params, one.params, LR, STEPS);
    expect(one.steps).toHaveLength(STEPS);
  });

  test('ZeRO-1 equals plain data parallel, holding AdamW for its shard only (as predicted)', () => {
    const z0 = runWorker(2, { W_ZERO: '0', W_LR: String(LR), W_STEPS: String(STEPS) });
    const z1 = runWorker(2, { W_ZERO: '1', W_LR: String(LR), W_STEPS: String(STEPS) });
    z1.steps.forEach((s, i) =>
      expect(Math.abs(s.loss - z0.steps[i].loss)).toBeLessThanOrEqual(1e-6 * Math.abs(z0.steps[i].loss)),
    );
    expect(maxDiff(z1.params, z0.params)).toBeLessThanOrEqual(1e-6);
    const P = z0.params.length;
    expect(z1.shard).toEqual(shardRanges(P, 2)[0]);
    expect(z0.optimizerBytes).toBe(8 * P);
    expect(z1.optimizerBytes).toBe(
      predictMemory(WORKER_CFG, { method: 'rift', B: 1, T: 2, ranks: 2, zero: 1 }).bytes.optimizer,
    );
  });

  test('rift train under mpirun: equal to one process; rank 0 alone writes; ZeRO-1 resume under 2 ranks is exact', () => {
    const scratch = cliScratch();
    const modelDir = scratch.modelDir;
    fs.copyFileSync(path.join(scratch.tmp, 'problems.jsonl'), path.join(tmp, 'problems.jsonl'));
    const args = (out: string) => [
      bin,
      'train',
      '--method',
      'sft',
      '--model',
      modelDir,
      '--problems',
      'problems.jsonl',
      '--out',
      out,
      '--steps',
      '4',
      '--examples-per-step',
      '4',
      '--lr',
      String(LR),
    ];
    const single = spawnSync(process.execPath, args('one'), {
      cwd: tmp,
      encoding: 'utf8',
      env: { ...process.env, RIFT_NUM_THREADS: '1' },
    });
    expect(single.status).toBe(0);
    const ckArgs = [...args('two'), '--zero', '1', '--checkpoint-every', '2', '--keep-checkpoints', '0'];
    const two = mpirun(2, ckArgs);
    expect(two.code).toBe(0);
    expect(two.stdout.match(/model saved to two/g)).toHaveLength(1); // one summary line: rank 0's
    const metrics = (dir: string) =>
      fs
        .readFileSync(path.join(tmp, dir, 'metrics.jsonl'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l));
    const weights = (dir: string) => readSafetensors(path.join(tmp, dir, 'model.safetensors')).tensors;
    const m1 = metrics('one'),
      m2 = metrics('two');
    expect(m2.map((m) => m.step)).toEqual([1, 2, 3, 4]);
    m2.forEach((m, i) => expect(Math.abs(m.loss - m1[i].loss)).toBeLessThanOrEqual(1e-5 * m1[i].loss));
    const w1 = weights('one'),
      w2 = weights('two');
    const flat = (w: typeof w1) => Float32Array.from([...w1.keys()].flatMap((k) => Array.from(w.get(k)!.data)));
    expectWeightsClose(flat(w2), flat(w1), LR, 4);
    // resume from step 2 under 2 ranks: the same bytes and curve as the unbroken run
    const full = fs.readFileSync(path.join(tmp, 'two', 'model.safetensors'));
    fs.writeFileSync(
      path.join(tmp, 'two', 'checkpoints', 'latest.json'),
      JSON.stringify({ dir: 'step-000002', step: 2 }),
    );
    const again = mpirun(2, [...ckArgs, '--resume']);
    expect(again.code).toBe(0);
    expect(fs.readFileSync(path.join(tmp, 'two', 'model.safetensors')).equals(full)).toBe(true);
    const strip = (ms: Record<string, number>[]) =>
      ms.map(({ step, loss, gradNorm, tokens, lr }) => ({ step, loss, gradNorm, tokens, lr }));
    expect(strip(metrics('two'))).toEqual(strip(m2));
  });

  test('mismatched options or data across ranks stop the job at the start, naming the rank and what differs', () => {
    const scratch = cliScratch();
    const modelDir = scratch.modelDir;
    const p2 = path.join(tmp, 'problems2.jsonl');
    fs.copyFileSync(path.join(scratch.tmp, 'problems.jsonl'), path.join(tmp, 'problems.jsonl'));
    fs.writeFileSync(p2, fs.readFileSync(path.join(tmp, 'problems.jsonl'), 'utf8').split('\n').slice(1).join('\n'));
    const args = (lr: string, problems = 'problems.jsonl') => [
      bin,
      'train',
      '--method',
      'sft',
      '--model',
      modelDir,
      '--problems',
      problems,
      '--out',
      'mm',
      '--steps',
      '2',
      '--lr',
      lr,
    ];
    const lr = mpirun(2, [], { RIFT_DIST_TIMEOUT: '20' }, [args('1e-3'), args('2e-3')]);
    expect(lr.code).not.toBe(0);
    expect(lr.stderr).toMatch(/rift: rank [01] of 2: rank 1 and rank 0 differ in options at 'start of training'/);
    const data = mpirun(2, [], { RIFT_DIST_TIMEOUT: '20' }, [args('1e-3'), args('1e-3', 'problems2.jsonl')]);
    expect(data.code).not.toBe(0);
    expect(data.stderr).toMatch(/rank 1 and rank 0 differ in (data|steps) at 'start of training'/);
  });

  test('a killed rank ends the job with an error naming it', () => {
    const r = mpirun(2, [worker, path.join(tmp, 'k.json')], { W_FAULT: 'kill:1:2', W_TIMEOUT: '5' });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/rank 1 with PID \d+ on node \S+ exited on signal 9|rank 1 did not reach/);
    expect(r.seconds).toBeLessThan(60);
  });

  test('a hung rank: the others fail within the timeout, naming it (and rank 0 when it is the one that hangs)', () => {
    const r = mpirun(2, [worker, path.join(tmp, 'h.json')], { W_FAULT: 'hang:1:2', W_TIMEOUT: '3' });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(
      /worker rank 0: rank 1 did not reach 'step 3: the loss normaliser' \(call #\d+\) within 3 s/,
    );
    expect(r.seconds).toBeLessThan(40);
    const r0 = mpirun(2, [worker, path.join(tmp, 'h0.json')], { W_FAULT: 'hang:0:2', W_TIMEOUT: '1' });
    expect(r0.code).not.toBe(0);
    expect(r0.stderr).toMatch(
      /worker rank 1: rank 0 did not answer 'step 3: the loss normaliser' \(call #\d+\) within 7 s/,
    );
    expect(r0.seconds).toBeLessThan(40);
  });
});

const WORKER_CFG = {
  model_type: 'qwen2',
  vocab_size: 48,
  hidden_size: 32,
  intermediate_size: 64,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  rms_norm_eps: 1e-6,
  rope_theta: 10000,
  tie_word_embeddings: false,
  qkv_bias: true,
};
