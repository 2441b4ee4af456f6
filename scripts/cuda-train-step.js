#!/usr/bin/env node
// A short, complete pass over the engine's device code paths, small enough to run under
// `compute-sanitizer --tool memcheck` (scripts/device-check.sh, step memcheck): a tiny random Qwen2 on the given
// device, 2 training steps (SFT, then RIFT with a negative sample: forward, fused lm_head + loss, backward, clip +
// AdamW), a DPO step against a held reference model, a forward, and KV-cache prefill + decode of a few tokens.
// Checks that every loss is finite, the parameters changed, and the KV-cache logits match the full forward.
//
//   node scripts/cuda-train-step.js [--device cuda|cpu] [--precision bf16|fp32]     (needs dist/: npx tsc)
//
// Without --precision it runs the whole pass twice, bf16 then fp32 (different GEMM and attention kernels).
// Prints one JSON line per pass; exits 1 on any failure (an engine error, a non-finite loss, a mismatch).
'use strict';
const path = require('path');

const root = path.resolve(__dirname, '..');
const { Model } = require(path.join(root, 'dist', 'lib', 'engine', 'model.js'));

const CONFIG = {
  model_type: 'qwen2',
  vocab_size: 256,
  hidden_size: 64,
  intermediate_size: 128,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  rms_norm_eps: 1e-6,
  rope_theta: 10000,
  tie_word_embeddings: true,
  max_position_embeddings: 128,
};

function parseArgs(argv) {
  const a = { device: 'cuda', precision: undefined };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--device') a.device = argv[++i];
    else if (argv[i] === '--precision') a.precision = argv[++i];
    else throw new Error(`unknown argument ${argv[i]} (usage: --device cuda|cpu --precision bf16|fp32)`);
  }
  if (a.device !== 'cuda' && a.device !== 'cpu') throw new Error(`--device: expected cuda or cpu, got ${a.device}`);
  if (a.precision !== undefined && a.precision !== 'bf16' && a.precision !== 'fp32')
    throw new Error(`--precision: expected bf16 or fp32, got ${a.precision}`);
  return a;
}

function lcg(n, V, seed) {
  let s = seed >>> 0;
  return Int32Array.from({ length: n }, () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) >>> 8) % V);
}

function finite(label, x) {
  if (!Number.isFinite(x)) throw new Error(`${label} is not finite: ${x}`);
  return x;
}

function pass(device, precision) {
  const opts = { seed: 3, std: 0.05, device, precision };
  const t0 = Date.now();
  const model = Model.fromConfig(CONFIG, opts);
  const info = model.native.info();
  if (info.device !== device || info.precision !== precision)
    throw new Error(`the model runs on ${info.device}/${info.precision}, not ${device}/${precision}`);
  const B = 2,
    T = 24,
    V = CONFIG.vocab_size;
  const ids = lcg(B * T, V, 11);
  const targets = new Int32Array(B * T).fill(-100);
  for (let b = 0; b < B; b++) for (let t = 4; t < T - 1; t++) targets[b * T + t] = ids[b * T + t + 1];
  const offsets = Int32Array.of(0, T, 2 * T);
  const before = Float32Array.from(model.tensor('model.layers.0.mlp.down_proj.weight'));

  const losses = [];
  model.zeroGrad();
  losses.push(finite('sft loss', model.lossAndBackward({ ids, B, T, targets, offsets, method: 'sft' }).loss));
  finite('step 1 grad norm', model.step({ lr: 1e-3, maxGradNorm: 1 }).gradNorm);
  model.zeroGrad();
  losses.push(
    finite(
      'rift loss',
      model.lossAndBackward({ ids, B, T, targets, offsets, method: 'rift', rewards: Float32Array.of(1, -0.5) }).loss,
    ),
  );
  finite('step 2 grad norm', model.step({ lr: 1e-3, maxGradNorm: 1 }).gradNorm);
  model.zeroGrad();

  // DPO against a held reference model (its 'logprob' pass runs the training path without a gradient).
  const ref = Model.fromConfig(CONFIG, { ...opts, reference: true });
  const refLogps = Float64Array.from(
    ref.lossAndBackward({ ids, B, T, targets, offsets, method: 'logprob', backward: false }).seqLogprobs,
  );
  losses.push(
    finite(
      'dpo loss',
      model.lossAndBackward({
        ids,
        B,
        T,
        targets,
        offsets,
        method: 'dpo',
        dpo: { refLogps, pairs: Int32Array.of(0, 1), beta: 0.1 },
      }).loss,
    ),
  );
  model.zeroGrad();

  const after = model.tensor('model.layers.0.mlp.down_proj.weight');
  let changed = 0;
  for (let i = 0; i < after.length; i++) if (after[i] !== before[i]) changed++;
  if (changed === 0) throw new Error('two optimizer steps left model.layers.0.mlp.down_proj.weight unchanged');

  // KV cache: prefill T-4 tokens of row 0, decode 4 more; the last logits must match the full forward's row.
  const full = model.forward(ids.subarray(0, T), 1, T);
  const cache = model.newKvCache(1, T);
  model.prefill(cache, ids.subarray(0, T - 4), 1, T - 4);
  let last;
  for (let t = T - 4; t < T; t++) last = model.decode(cache, ids.subarray(t, t + 1));
  cache.free();
  let maxDiff = 0,
    maxRef = 0;
  for (let v = 0; v < V; v++) {
    maxDiff = Math.max(maxDiff, Math.abs(last[v] - full[(T - 1) * V + v]));
    maxRef = Math.max(maxRef, Math.abs(full[(T - 1) * V + v]));
  }
  // bf16 GEMMs round differently for a (1, C) decode row and a (T, C) block: allow a few bf16 ulps of the scale.
  const bound = (precision === 'bf16' ? 3e-2 : 1e-4) * Math.max(1, maxRef);
  if (!(maxDiff <= bound))
    throw new Error(`KV-cache decode logits differ from the full forward by ${maxDiff} (bound ${bound})`);

  const mem = model.memory();
  console.log(
    JSON.stringify({
      ok: true,
      device,
      precision,
      losses,
      changed,
      kvMaxDiff: maxDiff,
      deviceBytesPeak: mem.device ? mem.device.total.peak : null,
      ms: Date.now() - t0,
    }),
  );
}

function main() {
  const args = parseArgs(process.argv.slice(2));
  for (const precision of args.precision ? [args.precision] : ['bf16', 'fp32']) pass(args.device, precision);
}

try {
  main();
} catch (e) {
  console.error(`cuda-train-step: ${e instanceof Error ? e.stack || e.message : e}`);
  process.exitCode = 1;
}
