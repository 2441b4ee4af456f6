#!/usr/bin/env node
// Writes .hfcheck/{qwen2,llama}-{float32,bfloat16}: checkpoints saved by rift plus rift's logits, for
// scripts/check_hf_load.py on a machine with transformers (after `npx tsc -p tsconfig.json`).
// Makes checkpoints with rift (random init + one SFT step, saved by Model.save) and rift's logits for them.
const { Model } = require('../dist/lib');
const fs = require('fs');
const cfgs = {
  qwen2: {
    model_type: 'qwen2',
    vocab_size: 64,
    hidden_size: 32,
    intermediate_size: 48,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    rms_norm_eps: 1e-6,
    rope_theta: 10000,
    tie_word_embeddings: true,
    max_position_embeddings: 64,
  },
  llama: {
    model_type: 'llama',
    vocab_size: 64,
    hidden_size: 32,
    intermediate_size: 48,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 1,
    rms_norm_eps: 1e-5,
    rope_theta: 500000,
    tie_word_embeddings: false,
    max_position_embeddings: 64,
  },
};
for (const [name, cfg] of Object.entries(cfgs)) {
  for (const dtype of ['float32', 'bfloat16']) {
    const m = Model.fromConfig(cfg, { seed: 3, std: 0.2 });
    const B = 2,
      T = 10;
    const ids = new Int32Array(B * T).map((_, i) => (i * 7 + 3) % 64);
    const targets = new Int32Array(B * T).map((_, i) => (i % T === T - 1 ? -100 : ids[i + 1]));
    m.lossAndBackward({ ids, B, T, targets, offsets: new Int32Array([0, T, 2 * T]), method: 'sft' });
    m.step({ lr: 1e-2 });
    const dir = `${__dirname}/../.hfcheck/${name}-${dtype}`;
    m.save(dir, { dtype });
    const back = Model.load(dir);
    const logits = back.forward(ids, B, T);
    const V = cfg.vocab_size,
      out = [];
    for (let b = 0; b < B; b++) {
      const rows = [];
      for (let t = 0; t < T; t++) rows.push(Array.from(logits.subarray((b * T + t) * V, (b * T + t + 1) * V)));
      out.push(rows);
    }
    const idsArr = [Array.from(ids.subarray(0, T)), Array.from(ids.subarray(T))];
    fs.writeFileSync(`${dir}/rift-logits.json`, JSON.stringify({ ids: idsArr, logits: out }));
    console.log(dir, fs.readdirSync(dir));
  }
}
