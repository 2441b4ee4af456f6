// One rank of a data-parallel test job (test/dist.test.ts), run as `mpirun -np N node dist-worker.js OUT.json`
// or alone (a world of one rank), against the compiled dist/. A Trainer on a tiny random Qwen2 (the same seed on
// every rank) over seeded synthetic examples; rank 0 writes OUT.json: per-step metrics, the final weights, and the
// first step's summed gradient. Environment:
//   W_METHOD (rift)  W_STEPS (4)  W_LR (1e-3)  W_ZERO (0)  W_TIMEOUT (dist timeout, s)  W_OVERLAP (1)
//   W_FAULT 'kill:R:S' / 'hang:R:S' — rank R kills itself (SIGKILL) / stops answering (a 120 s busy wait) after step S
'use strict';
const fs = require('fs');
const path = require('path');
const lib = path.join(__dirname, '..', '..', 'dist', 'lib');
const { Model } = require(path.join(lib, 'engine', 'model'));
const { Trainer } = require(path.join(lib, 'train', 'trainer'));
const { Dist } = require(path.join(lib, 'distributed', 'comm'));
const { DataParallel } = require(path.join(lib, 'distributed', 'data-parallel'));

const CFG = {
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
const env = process.env;
const out = process.argv[2];

function rng(seed) {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) >>> 8) / 2 ** 24;
}

function examples() {
  const r = rng(7);
  const ids = (n) => Int32Array.from({ length: n }, () => 1 + Math.floor(r() * (CFG.vocab_size - 1)));
  const xs = [];
  for (let p = 0; p < 10; p++) {
    const promptIds = ids(2 + (p % 4));
    for (let k = 0; k < 4; k++)
      xs.push({
        problemId: `p${p}`,
        sampleIndex: k,
        promptIds,
        responseIds: ids(2 + ((p + 3 * k) % 7)),
        reward: [1, -0.5, 1, -1][(p + k) % 4],
      });
  }
  return xs;
}

async function main() {
  const dist = Dist.init({ timeoutSec: env.W_TIMEOUT ? Number(env.W_TIMEOUT) : undefined });
  const dp = new DataParallel(dist, { zero: Number(env.W_ZERO ?? 0), overlap: env.W_OVERLAP !== '0' });
  const model = Model.fromConfig(CFG, { seed: 11, std: 0.2 });
  const [kind, faultRank, faultStep] = (env.W_FAULT ?? '').split(':');
  const steps = [];
  let grads;
  const trainer = new Trainer(model, {
    method: env.W_METHOD ?? 'rift',
    lr: Number(env.W_LR ?? 1e-3),
    examplesPerStep: 12,
    tokenBudget: 64,
    epochs: 2,
    seed: 3,
    dist: dp,
    onStep: async (m) => {
      steps.push({
        step: m.step,
        loss: m.loss,
        gradNorm: m.gradNorm,
        tokens: m.tokens,
        sequences: m.sequences,
        microBatches: m.microBatches,
      });
      if (kind && dist.rank === Number(faultRank) && m.step === Number(faultStep)) {
        if (kind === 'kill') process.kill(process.pid, 'SIGKILL');
        const until = Date.now() + 120_000; // a hang: this rank stops calling MPI
        while (Date.now() < until);
      }
      if (m.step >= Number(env.W_STEPS ?? 4)) throw Object.assign(new Error('stop'), { stop: true });
    },
  });
  // the first step's summed gradient: a pass over the same first global batch on a copy, stopped after the reduction
  if (env.W_GRADS === '1') {
    const probe = Model.fromConfig(CFG, { seed: 11, std: 0.2 });
    const pdp = new DataParallel(dist, { zero: 0 });
    const psync = pdp.sync(probe);
    psync.step = async () => {
      await psync.reduceGrads();
      grads = Array.from(probe.grads());
      return { gradNorm: 0, clipScale: 1, step: 1 };
    };
    const t = new Trainer(probe, {
      method: env.W_METHOD ?? 'rift',
      lr: 0,
      examplesPerStep: 12,
      tokenBudget: 64,
      epochs: 1,
      seed: 3,
      dist: pdp,
      onStep: () => {
        throw Object.assign(new Error('stop'), { stop: true });
      },
    });
    await t.run(examples()).catch((e) => {
      if (!e.stop) throw e;
    });
  }
  await trainer.run(examples()).catch((e) => {
    if (!e.stop) throw e;
  });
  const optimizerBytes = Model.memory().optimizer.current;
  const shard = dp.sync(model).shard;
  if (dist.isRoot)
    fs.writeFileSync(
      out,
      JSON.stringify({ size: dist.size, steps, params: Array.from(model.params()), grads, optimizerBytes, shard }),
    );
  dist.finalize();
}

main().catch((e) => {
  process.stderr.write(`worker rank ${process.env.OMPI_COMM_WORLD_RANK ?? 0}: ${e.message}\n`);
  process.exitCode = 1;
});
