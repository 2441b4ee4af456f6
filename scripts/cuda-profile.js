#!/usr/bin/env node
// Where a CUDA training step and a decode step spend their time, at the Qwen2.5-1.5B layer shape.
//
//   node scripts/cuda-profile.js [--device cuda|cpu] [--phase train|decode|all] [--layers 4] [--T 4096] [--rows 16]   (needs dist/: npx tsc)
//
// Wall-clock parts (JS timers around synchronous engine calls, each of which ends synchronised): the no-gradient
// forward, the forward + fused lm_head/loss + backward, the AdamW step; a KV-cache decode step of `rows` rows and
// the native sampler on its logits. Prints one JSON line per phase.
// Under Nsight Compute (scripts/device-check.sh, step profile) the measured part of each phase sits between
// cuda.profiler(true) and cuda.profiler(false), so `ncu --profile-from-start off` records exactly one training
// step or `decodeSteps` decode steps; per-kernel durations summed by name give the per-part breakdown.
// Fewer layers than the real 28 keep the run short: every per-layer part scales with the layer count, the
// embedding, lm_head + loss and the optimizer's embedding share do not (the JSON says which is which).
'use strict';
const path = require('path');

const root = path.resolve(__dirname, '..');
const { Model } = require(path.join(root, 'dist', 'lib', 'engine', 'model.js'));
const { cuda } = require(path.join(root, 'dist', 'lib', 'kernels', 'device.js'));
const { addon } = require(path.join(root, 'dist', 'lib', 'native.js'));

function parseArgs(argv) {
  const a = { device: 'cuda', phase: 'all', layers: 4, T: 4096, rows: 16, prompt: 32, decodeSteps: 8 };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i].replace(/^--/, '');
    if (!(k in a))
      throw new Error(`unknown argument ${argv[i]} (usage: --phase train|decode|all --layers N --T N --rows N)`);
    a[k] = k === 'phase' || k === 'device' ? argv[++i] : Number(argv[++i]);
    if (k !== 'phase' && k !== 'device' && !(Number.isInteger(a[k]) && a[k] > 0))
      throw new RangeError(`--${k}: expected a positive integer`);
  }
  if (!['train', 'decode', 'all'].includes(a.phase)) throw new RangeError('--phase: expected train, decode or all');
  return a;
}

const now = () => Number(process.hrtime.bigint()) / 1e6;
const round = (x) => Math.round(x * 1000) / 1000;

function lcg(n, V, seed) {
  let s = seed >>> 0;
  return Int32Array.from({ length: n }, () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) >>> 8) % V);
}

function main() {
  const a = parseArgs(process.argv.slice(2));
  if (!Model.devices().includes(a.device))
    throw new Error(`device ${a.device} is not usable here (Model.devices(): ${Model.devices()})`);
  const config = {
    model_type: 'qwen2',
    vocab_size: 151936,
    hidden_size: 1536,
    intermediate_size: 8960,
    num_hidden_layers: a.layers,
    num_attention_heads: 12,
    num_key_value_heads: 2,
    head_dim: 128,
    rms_norm_eps: 1e-6,
    rope_theta: 1e6,
    tie_word_embeddings: true,
    max_position_embeddings: 32768,
  };
  const t0 = now();
  const m = Model.fromConfig(config, { device: a.device, precision: 'bf16', seed: 1, std: 0.02 });
  const initMs = now() - t0;
  const V = config.vocab_size;

  if (a.phase !== 'decode') {
    const T = a.T,
      ids = lcg(T, V, 7);
    const targets = Int32Array.from({ length: T }, (_, i) => (i < T - 1 ? ids[i + 1] : -100));
    const batch = { ids, B: 1, T, targets, offsets: new Int32Array([0, T]), method: 'sft' };
    const once = () => {
      const r = {};
      let t = now();
      m.lossAndBackward({ ...batch, backward: false });
      r.forwardMs = now() - t;
      t = now();
      m.lossAndBackward(batch);
      r.forwardBackwardMs = now() - t;
      t = now();
      m.step({ lr: 1e-5, maxGradNorm: 1 });
      cuda.synchronize();
      r.optimizerMs = now() - t;
      m.zeroGrad();
      return r;
    };
    once(); // warm-up: allocations, cuBLAS heuristics
    const runs = [once(), once()];
    // The profiled step: one forward + loss + backward and one optimizer step, nothing else.
    cuda.profiler(true);
    m.lossAndBackward(batch);
    m.step({ lr: 1e-5, maxGradNorm: 1 });
    cuda.profiler(false);
    m.zeroGrad();
    const best = (k) => Math.min(...runs.map((r) => r[k]));
    console.log(
      JSON.stringify({
        phase: 'train',
        layers: a.layers,
        T,
        initMs: round(initMs),
        forwardMs: round(best('forwardMs')),
        forwardBackwardMs: round(best('forwardBackwardMs')),
        optimizerMs: round(best('optimizerMs')),
        note: 'per-layer parts scale with layers (28 in Qwen2.5-1.5B); embedding, lm_head + loss and their optimizer share do not',
      }),
    );
  }

  if (a.phase !== 'train') {
    const R = a.rows,
      P = a.prompt,
      S = a.decodeSteps;
    const cache = m.newKvCache(R, P + 2 * S + 2);
    let t = now();
    m.prefill(cache, lcg(R * P, V, 9), R, P);
    const prefillMs = now() - t;
    const decodeMs = [],
      sampleMs = [];
    let tokens = lcg(R, V, 11);
    const u = new Float64Array(R).fill(0.5);
    const step = () => {
      let t1 = now();
      const logits = m.decode(cache, tokens);
      decodeMs.push(now() - t1);
      t1 = now();
      const drawn = addon.sampleRows(logits, R, V, 1, 0, 1, u);
      sampleMs.push(now() - t1);
      tokens = Int32Array.from(drawn.tokens ?? tokens);
    };
    for (let i = 0; i < S; i++) step(); // warm-up (and the wall-clock numbers)
    cuda.profiler(true);
    for (let i = 0; i < S; i++) step();
    cuda.profiler(false);
    const med = (xs) => [...xs].sort((x, y) => x - y)[xs.length >> 1];
    console.log(
      JSON.stringify({
        phase: 'decode',
        layers: a.layers,
        rows: R,
        promptLength: P,
        prefillMs: round(prefillMs),
        decodeStepMs: round(med(decodeMs.slice(0, S))),
        sampleRowsMs: round(med(sampleMs.slice(0, S))),
        decodeStepMsProfiled: round(med(decodeMs.slice(S))),
      }),
    );
    cache.free();
  }
}

try {
  main();
} catch (e) {
  console.error(e && e.stack ? e.stack : e);
  process.exit(1);
}
