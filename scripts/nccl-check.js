#!/usr/bin/env node
// The NCCL path of data-parallel training (native/distributed/nccl_comm.cu) on one GPU, in a world of one rank (no
// MPI needed): NCCL is loaded (RIFT_NCCL_LIB, else libnccl.so.2), its communicator made, and a tiny model trained
// on the GPU three ways — the model's own step, DataParallel ZeRO-0 (ncclAllReduce of the gradient buckets) and
// ZeRO-1 (ncclReduce to the shard's owner, sharded AdamW, ncclBroadcast of the weights, the bf16 weight copy marked
// stale) — in fp32 and bf16; then a ZeRO-1 checkpoint (AdamW state gathered) and an exact resume from it. In a
// world of one rank every collective is the identity, so all three must give the same weights bit for bit.
// Prints one JSON line per check; exit 0 when every check passed, 1 otherwise, 3 when NCCL or CUDA is unusable.
//   node scripts/nccl-check.js            (from the project root, after `npx tsc -p tsconfig.json`)
// Under mpirun -np N on N GPUs (one process per GPU) the same script checks N ranks against the local step.
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const lib = path.join(__dirname, '..', 'dist', 'lib');
const { addon } = require(path.join(lib, 'native'));
const { Model } = require(path.join(lib, 'engine', 'model'));
const { Trainer } = require(path.join(lib, 'train', 'trainer'));
const { Dist } = require(path.join(lib, 'distributed', 'comm'));
const { DataParallel } = require(path.join(lib, 'distributed', 'data-parallel'));
const { launchInfo, selectCudaDevice } = require(path.join(lib, 'distributed', 'launch'));

const CFG = {
  model_type: 'qwen2',
  vocab_size: 256,
  hidden_size: 64,
  intermediate_size: 128,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  rms_norm_eps: 1e-6,
  rope_theta: 10000,
  tie_word_embeddings: false,
  qkv_bias: true,
};

function examples() {
  let s = 9;
  const r = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) >>> 8) / 2 ** 24;
  const ids = (n) => Int32Array.from({ length: n }, () => 1 + Math.floor(r() * 255));
  return Array.from({ length: 24 }, (_, i) => ({
    problemId: `p${i >> 2}`,
    sampleIndex: i & 3,
    promptIds: ids(3 + (i % 4)),
    responseIds: ids(4 + (i % 6)),
    reward: i % 3 ? 1 : -0.5,
  }));
}

let failed = 0;
function report(name, ok, extra = {}) {
  if (!ok) failed++;
  console.log(JSON.stringify({ check: name, ok, ...extra }));
}

// --device cpu: the same checks over MPI / a local world (a dry run of this script on a machine without a GPU)
const device = process.argv.includes('--device') ? process.argv[process.argv.indexOf('--device') + 1] : 'cuda';

async function train(precision, dp, opts = {}) {
  const { resumeFrom, ...topts } = opts;
  const model = Model.fromConfig(CFG, { seed: 4, std: 0.2, device, precision });
  const losses = [];
  const t = new Trainer(model, {
    method: 'rift',
    lr: 1e-2,
    examplesPerStep: 8,
    tokenBudget: 96,
    epochs: 2,
    dist: dp,
    ...topts,
    onStep: (m) => void losses.push(m.loss),
  });
  if (resumeFrom) await t.resume(resumeFrom);
  await t.run(examples());
  return { losses, params: model.params() };
}

const same = (a, b) =>
  a.length === b.length &&
  Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
const maxDiff = (a, b) => a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i])), 0);

async function main() {
  const launch = launchInfo();
  if (device === 'cuda' && launch && launch.size > 1) selectCudaDevice(launch.localRank);
  console.log(
    JSON.stringify({
      device,
      nccl: addon.dist.nccl(),
      mpi: addon.dist.mpi(),
      devices: Model.devices(),
      build: addon.buildInfo,
    }),
  );
  if (!Model.devices().includes(device)) return void (process.exitCode = 3);
  if (device === 'cuda' && !addon.dist.nccl().startsWith('NCCL ')) return void (process.exitCode = 3);
  const dist = Dist.init({ timeoutSec: 120 });
  for (const precision of ['fp32', 'bf16']) {
    const plain = await train(precision, undefined);
    for (const zero of [0, 1]) {
      const t0 = Date.now();
      const dp = await train(precision, new DataParallel(dist, { zero }));
      const exact = same(dp.params, plain.params);
      // world size 1: bit for bit. N ranks, fp32: the reduction-order bound of test/dist.test.ts (0.05 · lr · steps);
      // bf16: weights a rounding apart round their GEMM operands to neighbouring bf16 values, so only the loss curve
      // is compared (within 5%)
      const ok =
        dist.size === 1
          ? exact && JSON.stringify(dp.losses) === JSON.stringify(plain.losses)
          : precision === 'fp32'
            ? maxDiff(dp.params, plain.params) <= 0.05 * 1e-2 * plain.losses.length
            : dp.losses.every((l, i) => Math.abs(l - plain.losses[i]) <= 0.05 * Math.abs(plain.losses[i]));
      report(`${precision} zero ${zero} vs the model's own step`, ok, {
        ranks: dist.size,
        exact,
        maxDiff: maxDiff(dp.params, plain.params),
        steps: dp.losses.length,
        ms: Date.now() - t0,
      });
    }
  }
  // ZeRO-1 checkpoint (AdamW state gathered from the device shards) and resume from its middle: the unbroken run's weights
  const dir = path.join(os.tmpdir(), `rift-nccl-check-${process.env.USER ?? 'user'}`); // the same on every rank of a node
  if (dist.isRoot) fs.rmSync(dir, { recursive: true, force: true });
  await dist.same('nccl-check: checkpoint directory', { dir });
  const full = await train('bf16', new DataParallel(dist, { zero: 1 }), {
    checkpointDir: dir,
    checkpointEvery: 2,
    keepCheckpoints: 0,
  });
  if (dist.isRoot) fs.writeFileSync(path.join(dir, 'latest.json'), JSON.stringify({ dir: 'step-000002', step: 2 }));
  await dist.same('nccl-check: checkpoint written', { ready: 1 });
  const resumed = await train('bf16', new DataParallel(dist, { zero: 1 }), {
    checkpointDir: dir,
    checkpointEvery: 2,
    keepCheckpoints: 0,
    resumeFrom: dir,
  });
  report(
    'bf16 zero 1 resume from a checkpoint',
    same(resumed.params, full.params) && JSON.stringify(resumed.losses) === JSON.stringify(full.losses.slice(2)),
    { steps: full.losses.length, maxDiff: maxDiff(resumed.params, full.params) },
  );
  if (dist.isRoot) fs.rmSync(dir, { recursive: true, force: true });
  console.log(JSON.stringify({ verdict: failed ? 'FAIL' : 'PASS', failed }));
  process.exitCode = failed ? 1 : 0;
  if (!failed) dist.finalize();
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : e);
  process.exitCode = 1;
});
