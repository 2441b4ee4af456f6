// HF checkpoint directories: config validation, expected tensors, single-file and sharded loading, save/load round
// trips, and clear errors for everything the engine cannot compute.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { bf16ToF32, f32ToBf16 } from '../lib/kernels/bf16';
import { DecoderConfig, expectedTensors, loadCheckpoint, parseConfig, saveCheckpoint } from '../lib/engine/checkpoint';
import { readSafetensors, writeSafetensors } from '../lib/engine/safetensors';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rift-ckpt-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
let dirNo = 0;
const newDir = () => fs.mkdtempSync(path.join(tmp, `d${dirNo++}-`));

const QWEN2 = {
  model_type: 'qwen2',
  architectures: ['Qwen2ForCausalLM'],
  hidden_size: 8,
  intermediate_size: 12,
  num_hidden_layers: 2,
  num_attention_heads: 2,
  num_key_value_heads: 1,
  rms_norm_eps: 1e-6,
  rope_theta: 1000000,
  vocab_size: 16,
  tie_word_embeddings: true,
  max_position_embeddings: 64,
  hidden_act: 'silu',
  use_sliding_window: false,
  sliding_window: null,
  torch_dtype: 'float32',
  bos_token_id: 1,
};
const LLAMA = {
  ...QWEN2,
  model_type: 'llama',
  architectures: ['LlamaForCausalLM'],
  tie_word_embeddings: false,
  attention_bias: false,
  mlp_bias: false,
};

function randomTensors(cfg: DecoderConfig, seed = 1): Map<string, { shape: number[]; data: Float32Array }> {
  let s = seed;
  const rnd = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32) * 2 - 1;
  return new Map(
    expectedTensors(cfg).map(({ name, shape }) => [
      name,
      { shape, data: Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, rnd) },
    ]),
  );
}

// A checkpoint directory: config.json + model.safetensors with the given tensors (F32).
function writeDir(config: object, tensors: Map<string, { shape: number[]; data: Float32Array }>): string {
  const dir = newDir();
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config));
  writeSafetensors(
    path.join(dir, 'model.safetensors'),
    [...tensors].map(([name, t]) => ({ name, ...t })),
  );
  return dir;
}

describe('config', () => {
  test('qwen2: defaults, biases, rope_theta at the top level', () => {
    const c = parseConfig({
      ...QWEN2,
      num_key_value_heads: undefined,
      rms_norm_eps: undefined,
      max_position_embeddings: undefined,
    });
    expect(c).toMatchObject({
      model_type: 'qwen2',
      num_key_value_heads: 2,
      head_dim: 4,
      rms_norm_eps: 1e-6,
      rope_theta: 1e6,
      max_position_embeddings: 32768,
      qkv_bias: true,
      o_bias: false,
      tie_word_embeddings: true,
      torch_dtype: 'float32',
    });
    expect(parseConfig({ ...QWEN2, rope_theta: undefined }).rope_theta).toBe(10000);
  });

  test('transformers 5: rope_parameters.rope_theta and dtype', () => {
    const c = parseConfig({
      ...LLAMA,
      rope_theta: undefined,
      torch_dtype: undefined,
      dtype: 'bfloat16',
      rope_parameters: { rope_type: 'default', rope_theta: 500000 },
    });
    expect(c.rope_theta).toBe(500000);
    expect(c.torch_dtype).toBe('bfloat16');
    expect(() => parseConfig({ ...LLAMA, rope_parameters: { rope_type: 'default', rope_theta: 5 } })).toThrow(
      /disagrees/,
    );
  });

  test('llama: attention_bias adds q/k/v/o biases; an explicit head_dim is honoured', () => {
    const c = parseConfig({ ...LLAMA, attention_bias: true, head_dim: 6 });
    expect(c).toMatchObject({ head_dim: 6, qkv_bias: true, o_bias: true });
    const shapes = Object.fromEntries(expectedTensors(c).map((t) => [t.name, t.shape]));
    expect(shapes['model.layers.0.self_attn.q_proj.weight']).toEqual([12, 8]);
    expect(shapes['model.layers.0.self_attn.k_proj.bias']).toEqual([6]);
    expect(shapes['model.layers.1.self_attn.o_proj.weight']).toEqual([8, 12]);
    expect(shapes['model.layers.1.self_attn.o_proj.bias']).toEqual([8]);
    expect(shapes['lm_head.weight']).toEqual([16, 8]);
  });

  test("expected tensors match the parity fixtures' counts (HF names, named_parameters order)", () => {
    const dims = {
      vocab_size: 96,
      hidden_size: 32,
      intermediate_size: 64,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      num_key_value_heads: 2,
    };
    const count = (t: { shape: number[] }[]) => t.reduce((a, x) => a + x.shape.reduce((p, d) => p * d, 1), 0);
    const q = expectedTensors(parseConfig({ ...QWEN2, ...dims, tie_word_embeddings: true }));
    const l = expectedTensors(parseConfig({ ...LLAMA, ...dims }));
    expect([q.length, count(q), l.length, count(l)]).toEqual([26, 21792, 21, 24736]);
    expect(q.slice(0, 8).map((t) => t.name)).toEqual([
      'model.embed_tokens.weight',
      'model.layers.0.self_attn.q_proj.weight',
      'model.layers.0.self_attn.q_proj.bias',
      'model.layers.0.self_attn.k_proj.weight',
      'model.layers.0.self_attn.k_proj.bias',
      'model.layers.0.self_attn.v_proj.weight',
      'model.layers.0.self_attn.v_proj.bias',
      'model.layers.0.self_attn.o_proj.weight',
    ]);
    expect(q[q.length - 1].name).toBe('model.norm.weight');
    expect(l[l.length - 1].name).toBe('lm_head.weight');
  });

  const bad: [string, object, ErrorConstructor, RegExp][] = [
    [
      'unsupported model_type',
      { ...QWEN2, model_type: 'mistral' },
      RangeError,
      /model_type "mistral" is not supported/,
    ],
    ['missing model_type', { ...QWEN2, model_type: undefined }, Error, /model_type is missing/],
    [
      'rope_scaling (linear)',
      { ...LLAMA, rope_scaling: { type: 'linear', factor: 2 } },
      RangeError,
      /rope_scaling = .* is not supported/,
    ],
    [
      'rope_scaling (llama3)',
      { ...LLAMA, rope_scaling: { rope_type: 'llama3', factor: 8 } },
      RangeError,
      /rope_scaling/,
    ],
    [
      'rope_parameters (yarn)',
      { ...LLAMA, rope_parameters: { rope_type: 'yarn', rope_theta: 1e4 } },
      RangeError,
      /rope_parameters/,
    ],
    ['hidden_act gelu', { ...QWEN2, hidden_act: 'gelu' }, RangeError, /hidden_act = "gelu" is not supported/],
    [
      'qwen2 sliding window',
      { ...QWEN2, use_sliding_window: true, sliding_window: 4096 },
      RangeError,
      /use_sliding_window/,
    ],
    [
      'sliding layer_types',
      { ...QWEN2, layer_types: ['full_attention', 'sliding_attention'] },
      RangeError,
      /layer_types/,
    ],
    ['mlp_bias', { ...LLAMA, mlp_bias: true }, RangeError, /mlp_bias/],
    ['quantized', { ...LLAMA, quantization_config: { bits: 4 } }, RangeError, /quantization_config/],
    [
      'hidden not a multiple of heads',
      { ...QWEN2, num_attention_heads: 3, num_key_value_heads: 1 },
      RangeError,
      /hidden_size 8 is not a multiple of num_attention_heads 3/,
    ],
    [
      'heads not a multiple of kv heads',
      { ...QWEN2, num_attention_heads: 4, num_key_value_heads: 3 },
      RangeError,
      /num_key_value_heads 3/,
    ],
    ['odd head_dim', { ...QWEN2, head_dim: 3 }, RangeError, /head_dim 3 must be even/],
    ['missing hidden_size', { ...QWEN2, hidden_size: undefined }, Error, /hidden_size is missing/],
    ['string hidden_size', { ...QWEN2, hidden_size: '8' }, TypeError, /hidden_size must be a number/],
    [
      'fractional layers',
      { ...QWEN2, num_hidden_layers: 1.5 },
      RangeError,
      /num_hidden_layers must be a positive integer/,
    ],
    ['negative eps', { ...QWEN2, rms_norm_eps: -1 }, RangeError, /rms_norm_eps/],
    ['string tie', { ...QWEN2, tie_word_embeddings: 'yes' }, TypeError, /tie_word_embeddings must be true or false/],
  ];
  test.each(bad)('%s', (_, json, ctor, re) => {
    expect(() => parseConfig(JSON.parse(JSON.stringify(json)))).toThrow(ctor);
    expect(() => parseConfig(JSON.parse(JSON.stringify(json)))).toThrow(new RegExp(`^config\\.json: .*${re.source}`));
  });
});

describe('load and save', () => {
  test('F32 save -> load is bit-exact; config.json round-trips; extra files are copied; no temp files left', () => {
    for (const json of [QWEN2, LLAMA]) {
      const cfg = parseConfig(json);
      const tensors = randomTensors(cfg);
      const dir = newDir();
      saveCheckpoint(dir, cfg, tensors, {
        extraFiles: { 'tokenizer.json': '{"x":1}', 'blob.bin': new Uint8Array([1, 2, 3]) },
      });
      const { config, tensors: back } = loadCheckpoint(dir);
      expect({ ...config, raw: undefined }).toEqual({ ...cfg, raw: undefined });
      expect([...back.keys()]).toEqual(expectedTensors(cfg).map((t) => t.name));
      for (const [name, t] of tensors) {
        expect(back.get(name)!.shape).toEqual(t.shape);
        expect(new Uint32Array(back.get(name)!.data.buffer)).toEqual(new Uint32Array(t.data.buffer));
      }
      expect(fs.readFileSync(path.join(dir, 'tokenizer.json'), 'utf8')).toBe('{"x":1}');
      expect([...fs.readFileSync(path.join(dir, 'blob.bin'))]).toEqual([1, 2, 3]);
      const written = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
      expect(written).toMatchObject({ bos_token_id: 1, torch_dtype: 'float32', architectures: json.architectures });
      expect(readSafetensors(path.join(dir, 'model.safetensors')).metadata).toEqual({ format: 'pt' });
      expect(fs.readdirSync(dir).sort()).toEqual(['blob.bin', 'config.json', 'model.safetensors', 'tokenizer.json']);
    }
  });

  test('BF16 save: values rounded to bf16, dtype recorded, rope_parameters kept', () => {
    const cfg = parseConfig({
      ...QWEN2,
      rope_theta: undefined,
      rope_parameters: { rope_type: 'default', rope_theta: 1e6 },
      dtype: 'float32',
    });
    const tensors = randomTensors(cfg, 3);
    const dir = newDir();
    saveCheckpoint(dir, cfg, tensors, { dtype: 'bf16' });
    const { config, tensors: back } = loadCheckpoint(dir);
    expect(config.torch_dtype).toBe('bfloat16'); // config.json keeps the file format's (HF's) name
    expect(config.rope_theta).toBe(1e6);
    const written = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
    expect(written.rope_parameters).toEqual({ rope_type: 'default', rope_theta: 1e6 });
    expect(written.rope_theta).toBeUndefined();
    for (const [name, t] of tensors) {
      expect(back.get(name)!.dtype).toBe('BF16');
      expect(back.get(name)!.data).toEqual(bf16ToF32(f32ToBf16(t.data)));
    }
  });

  test('into: tensors are read into caller-given views', () => {
    const cfg = parseConfig(QWEN2);
    const dir = writeDir(QWEN2, randomTensors(cfg));
    const flat = new Float32Array(expectedTensors(cfg).reduce((a, t) => a + t.shape.reduce((p, d) => p * d, 1), 0));
    let at = 0;
    const { tensors } = loadCheckpoint(dir, {
      into: (_, shape) => {
        const n = shape.reduce((p, d) => p * d, 1);
        at += n;
        return flat.subarray(at - n, at);
      },
    });
    expect(at).toBe(flat.length);
    expect(tensors.get('model.norm.weight')!.data.buffer).toBe(flat.buffer);
  });

  test('sharded index: loads, and every inconsistency is an error naming the file', () => {
    const cfg = parseConfig(LLAMA);
    const tensors = randomTensors(cfg, 5);
    const names = [...tensors.keys()];
    const shard = (dir: string, file: string, list: string[]) =>
      writeSafetensors(
        path.join(dir, file),
        list.map((name) => ({ name, ...tensors.get(name)! })),
      );
    const make = (weightMap: Record<string, string>, shards: Record<string, string[]>) => {
      const dir = newDir();
      fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(LLAMA));
      fs.writeFileSync(
        path.join(dir, 'model.safetensors.index.json'),
        JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }),
      );
      for (const [file, list] of Object.entries(shards)) shard(dir, file, list);
      return dir;
    };
    const half = Math.floor(names.length / 2);
    const [a, b] = ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'];
    const map = Object.fromEntries(names.map((n, i) => [n, i < half ? a : b]));
    const good = make(map, { [a]: names.slice(0, half), [b]: names.slice(half) });
    const { tensors: back } = loadCheckpoint(good);
    for (const [name, t] of tensors) expect(back.get(name)!.data).toEqual(t.data);

    expect(() => loadCheckpoint(make(map, { [a]: names.slice(0, half) }))).toThrow(/ENOENT/);
    expect(() => loadCheckpoint(make({ ...map, [names[0]]: '../evil.safetensors' }, {}))).toThrow(
      /weight_map\[".*"\] = "\.\.\/evil\.safetensors" is not/,
    );
    expect(() => loadCheckpoint(make(map, { [a]: names.slice(1, half), [b]: names.slice(half) }))).toThrow(
      new RegExp(`^${a}: tensor "${names[0]}" \\(listed in`),
    );
    expect(() => loadCheckpoint(make(map, { [a]: names.slice(0, half + 1), [b]: names.slice(half) }))).toThrow(
      /is not listed for this shard/,
    );
    const partial = { ...map };
    delete partial['model.norm.weight'];
    expect(() =>
      loadCheckpoint(
        make(partial, { [a]: names.slice(0, half), [b]: names.slice(half).filter((n) => n !== 'model.norm.weight') }),
      ),
    ).toThrow(/^model\.safetensors\.index\.json: tensor "model\.norm\.weight" is missing/);
  });

  test('tensor errors: missing, extra, mis-shaped, unconvertible dtype; tolerated: inv_freq, tied lm_head copy', () => {
    const cfg = parseConfig(QWEN2);
    const base = () => randomTensors(cfg, 9);
    const missing = base();
    missing.delete('model.layers.1.mlp.up_proj.weight');
    expect(() => loadCheckpoint(writeDir(QWEN2, missing))).toThrow(
      /^model\.safetensors: tensor "model\.layers\.1\.mlp\.up_proj\.weight" is missing \(expected shape \[12, 8\]/,
    );
    const extra = base().set('model.layers.0.mlp.extra.weight', { shape: [1], data: new Float32Array(1) });
    expect(() => loadCheckpoint(writeDir(QWEN2, extra))).toThrow(
      /unexpected tensor "model\.layers\.0\.mlp\.extra\.weight"/,
    );
    const shaped = base().set('model.norm.weight', { shape: [2, 4], data: new Float32Array(8) });
    expect(() => loadCheckpoint(writeDir(QWEN2, shaped))).toThrow(RangeError);
    expect(() => loadCheckpoint(writeDir(QWEN2, shaped))).toThrow(
      /"model\.norm\.weight" has shape \[2, 4\], expected \[8\]/,
    );
    const layers3 = { ...QWEN2, num_hidden_layers: 3 };
    expect(() => loadCheckpoint(writeDir(layers3, base()))).toThrow(/"model\.layers\.2\..*" is missing/);
    const untied = { ...QWEN2, tie_word_embeddings: false };
    expect(() => loadCheckpoint(writeDir(untied, base()))).toThrow(/"lm_head\.weight" is missing/);

    const tolerated = base().set('model.layers.0.self_attn.rotary_emb.inv_freq', {
      shape: [2],
      data: new Float32Array(2),
    });
    tolerated.set('lm_head.weight', tolerated.get('model.embed_tokens.weight')!);
    expect(loadCheckpoint(writeDir(QWEN2, tolerated)).tensors.has('lm_head.weight')).toBe(false);
    const differs = base().set('lm_head.weight', { shape: [16, 8], data: new Float32Array(128) });
    expect(() => loadCheckpoint(writeDir(QWEN2, differs))).toThrow(
      /"lm_head\.weight" differs from model\.embed_tokens\.weight/,
    );

    const dir = writeDir(QWEN2, base());
    const header = JSON.stringify({ 'model.norm.weight': { dtype: 'I32', shape: [8], data_offsets: [0, 32] } });
    const f = Buffer.alloc(8 + header.length + 32);
    f.writeBigUInt64LE(BigInt(header.length));
    f.write(header, 8);
    fs.writeFileSync(path.join(dir, 'model.safetensors'), f);
    expect(() => loadCheckpoint(dir)).toThrow(/"model\.embed_tokens\.weight" is missing/);
    expect(() => loadCheckpoint(newDir())).toThrow(/config\.json/);
    const noWeights = newDir();
    fs.writeFileSync(path.join(noWeights, 'config.json'), JSON.stringify(QWEN2));
    expect(() => loadCheckpoint(noWeights)).toThrow(
      /neither model\.safetensors nor model\.safetensors\.index\.json exists/,
    );
    fs.writeFileSync(path.join(noWeights, 'config.json'), '{"model_type": "qwen2",');
    expect(() => loadCheckpoint(noWeights)).toThrow(/^config\.json: not valid JSON/);
  });

  // Rewrites dir/model.safetensors with each tensor stored in the dtype `pick` chooses (values must be exact in it).
  function rewriteDtypes(dir: string, pick: (name: string) => 'F32' | 'BF16' | 'F16' | 'I32'): void {
    const st = readSafetensors(path.join(dir, 'model.safetensors'));
    const f16 = (x: number) => {
      // exact f32 -> f16 for normal values and zero
      const u = new Uint32Array(new Float32Array([x]).buffer)[0];
      return x === 0
        ? (u >>> 16) & 0x8000
        : ((u >>> 16) & 0x8000) | ((((u >>> 23) & 0xff) - 112) << 10) | ((u >>> 13) & 0x3ff);
    };
    const entries = [...st.tensors].map(([name, t]) => {
      const dtype = pick(name);
      const bytes =
        dtype === 'F16'
          ? Buffer.from(Uint16Array.from(t.data, f16).buffer)
          : dtype === 'BF16'
            ? Buffer.from(f32ToBf16(t.data).buffer)
            : Buffer.from(t.data.buffer);
      return { name, dtype, shape: t.shape, bytes };
    });
    let off = 0;
    const header: Record<string, object> = {};
    for (const e of entries)
      header[e.name] = { dtype: e.dtype, shape: e.shape, data_offsets: [off, (off += e.bytes.length)] };
    const h = Buffer.from(JSON.stringify(header));
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(h.length));
    fs.writeFileSync(path.join(dir, 'model.safetensors'), Buffer.concat([len, h, ...entries.map((e) => e.bytes)]));
  }

  test('mixed F32/BF16/F16 tensors load exactly; an I32 tensor is a TypeError naming it', () => {
    const cfg = parseConfig(QWEN2);
    const tensors = randomTensors(cfg);
    for (const t of tensors.values()) t.data = t.data.map((x) => Math.round(x * 16) / 16); // exact in bf16 and f16
    const dir = writeDir(QWEN2, tensors);
    const kinds = ['F32', 'BF16', 'F16'] as const;
    rewriteDtypes(dir, (name) => kinds[name.length % 3]);
    const { tensors: back } = loadCheckpoint(dir);
    for (const [name, t] of tensors) {
      expect(back.get(name)!.dtype).toBe(kinds[name.length % 3]);
      expect(back.get(name)!.data).toEqual(t.data);
    }
    rewriteDtypes(dir, (name) => (name === 'model.norm.weight' ? 'I32' : 'F32'));
    expect(() => loadCheckpoint(dir)).toThrow(TypeError);
    expect(() => loadCheckpoint(dir)).toThrow(/tensor "model\.norm\.weight" has dtype I32/);
  });

  test('save errors: missing/extra/mis-sized tensors, bad extra file names, bad dtype; a stale shard index is removed', () => {
    const cfg = parseConfig(LLAMA);
    const dir = newDir();
    const t = randomTensors(cfg);
    const without = new Map(t);
    without.delete('lm_head.weight');
    expect(() => saveCheckpoint(dir, cfg, without)).toThrow(/"lm_head\.weight" is missing/);
    expect(() => saveCheckpoint(dir, cfg, new Map(t).set('x', { shape: [1], data: new Float32Array(1) }))).toThrow(
      /unexpected tensor "x"/,
    );
    expect(() =>
      saveCheckpoint(dir, cfg, new Map(t).set('model.norm.weight', { shape: [8], data: new Float32Array(7) })),
    ).toThrow(RangeError);
    expect(() => saveCheckpoint(dir, cfg, t, { extraFiles: { '../x': 'a' } })).toThrow(
      /extraFiles: "\.\.\/x" must be a plain file name/,
    );
    expect(() => saveCheckpoint(dir, cfg, t, { extraFiles: { 'config.json': 'a' } })).toThrow(RangeError);
    expect(() => saveCheckpoint(dir, cfg, t, { dtype: 'float16' as 'fp32' })).toThrow(RangeError);
    expect(() => saveCheckpoint(dir, { ...cfg, num_key_value_heads: 3 }, t)).toThrow(/num_key_value_heads 3/);
    expect(fs.readdirSync(dir)).toEqual([]);

    fs.writeFileSync(
      path.join(dir, 'model.safetensors.index.json'),
      JSON.stringify({ weight_map: { a: 'model-00001-of-00002.safetensors' } }),
    );
    fs.writeFileSync(path.join(dir, 'model-00001-of-00002.safetensors'), 'stale');
    saveCheckpoint(dir, cfg, Object.fromEntries(t));
    expect(fs.readdirSync(dir).sort()).toEqual(['config.json', 'model.safetensors']);
    expect(loadCheckpoint(dir).tensors.size).toBe(t.size);
  });
});

const fixtures = path.join(__dirname, 'fixtures', 'parity');
for (const [name, tensors, params] of [
  ['tiny-qwen2', 26, 21792],
  ['tiny-llama', 21, 24736],
] as const) {
  const dir = path.join(fixtures, name);
  const present = fs.existsSync(path.join(dir, 'config.json'));
  (present ? test : test.skip)(
    `parity fixture ${name} loads with loadCheckpoint${present ? '' : ` (skipped: ${path.relative(process.cwd(), dir)} is absent)`}`,
    () => {
      const { config, tensors: t } = loadCheckpoint(dir);
      expect(config.model_type).toBe(name === 'tiny-qwen2' ? 'qwen2' : 'llama');
      expect(config.head_dim).toBe(8);
      expect(config.rope_theta).toBe(name === 'tiny-qwen2' ? 10000 : 500000);
      expect(t.size).toBe(tensors);
      expect([...t.values()].reduce((a, x) => a + x.data.length, 0)).toBe(params);
      const out = path.join(tmp, `${name}-resaved`);
      saveCheckpoint(out, config, t);
      const back = loadCheckpoint(out);
      for (const [n, x] of t) expect(back.tensors.get(n)!.data).toEqual(x.data);
    },
  );
}
