// HF checkpoint directories (Qwen2 / Llama): config.json + model.safetensors or model.safetensors.index.json shards.
// Loading validates the config against what the engine computes (docs/design.md §3.1) and the tensors against the
// names and shapes the config implies; every failure names the file and the field or tensor.
import * as fs from 'fs';
import * as path from 'path';
import { checkDtype, Dtype, torchDtype } from '../util/dtype';
import { checkedProduct, checkedSum } from '../util/validate';
import { elementCount, HostTensor, SafetensorsFile, writeBytesAtomic, writeSafetensors } from './safetensors';

/** A validated decoder config. Field names are HF's; `raw` keeps the whole config.json for saving back. */
export interface DecoderConfig {
  model_type: 'qwen2' | 'llama';
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number; // default: num_attention_heads
  head_dim: number; // explicit `head_dim`, else hidden_size / num_attention_heads; always even
  rms_norm_eps: number;
  rope_theta: number; // top-level rope_theta or rope_parameters.rope_theta (transformers 5); default 10000
  vocab_size: number;
  tie_word_embeddings: boolean; // default false; when true there is no lm_head.weight
  max_position_embeddings: number;
  attention_bias: boolean; // llama: biases on q/k/v/o; qwen2: always true (q/k/v only)
  qkv_bias: boolean; // q_proj/k_proj/v_proj have .bias
  o_bias: boolean; // o_proj has .bias (llama with attention_bias)
  torch_dtype?: string; // `dtype` (transformers 5) or `torch_dtype`
  raw: Record<string, unknown>;
}

export interface TensorShape {
  name: string;
  shape: number[];
}

const ARCH = { qwen2: 'Qwen2ForCausalLM', llama: 'LlamaForCausalLM' } as const;
const DEFAULT_MAX_POS = { qwen2: 32768, llama: 2048 } as const;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Validates a parsed config.json (`file` names it in errors). */
export function parseConfig(json: unknown, file = 'config.json'): DecoderConfig {
  if (!isObject(json)) throw new TypeError(`${file}: must hold a JSON object`);
  const c = json;
  const has = (k: string) => c[k] !== undefined && c[k] !== null;
  const int = (k: string, dflt?: number): number => {
    const v = has(k) ? c[k] : dflt;
    if (v === undefined) throw new Error(`${file}: ${k} is missing`);
    if (typeof v !== 'number') throw new TypeError(`${file}: ${k} must be a number, got ${JSON.stringify(v)}`);
    if (!Number.isSafeInteger(v) || v <= 0) throw new RangeError(`${file}: ${k} must be a positive integer, got ${v}`);
    return v;
  };
  const pos = (k: string, v: unknown): number => {
    if (typeof v !== 'number') throw new TypeError(`${file}: ${k} must be a number, got ${JSON.stringify(v)}`);
    if (!Number.isFinite(v) || v <= 0) throw new RangeError(`${file}: ${k} must be a positive finite number, got ${v}`);
    return v;
  };
  const bool = (k: string, dflt: boolean): boolean => {
    if (!has(k)) return dflt;
    if (typeof c[k] !== 'boolean')
      throw new TypeError(`${file}: ${k} must be true or false, got ${JSON.stringify(c[k])}`);
    return c[k] as boolean;
  };
  const unsupported = (k: string, why: string) =>
    new RangeError(`${file}: ${k} = ${JSON.stringify(c[k])} is not supported (${why})`);

  const mt = c.model_type;
  if (mt === undefined) throw new Error(`${file}: model_type is missing`);
  if (mt !== 'qwen2' && mt !== 'llama')
    throw new RangeError(`${file}: model_type ${JSON.stringify(mt)} is not supported (qwen2, llama)`);

  // Fields that would change the math the engine computes.
  if (has('hidden_act') && c.hidden_act !== 'silu' && c.hidden_act !== 'swish')
    throw unsupported('hidden_act', "only 'silu'");
  if (has('quantization_config')) throw unsupported('quantization_config', 'quantized weights');
  if (bool('mlp_bias', false)) throw unsupported('mlp_bias', 'no MLP biases');
  if (mt === 'qwen2' && bool('use_sliding_window', false))
    throw unsupported('use_sliding_window', 'full attention only');
  if (has('layer_types') && (!Array.isArray(c.layer_types) || c.layer_types.some((t) => t !== 'full_attention')))
    throw unsupported('layer_types', "every layer must be 'full_attention'");
  let theta: number | undefined;
  for (const k of ['rope_scaling', 'rope_parameters']) {
    if (!has(k)) continue;
    const r = c[k];
    if (!isObject(r)) throw new TypeError(`${file}: ${k} must be an object or null`);
    const type = r.rope_type ?? r.type ?? 'default';
    if (type !== 'default') throw unsupported(k, 'plain RoPE only, no scaling');
    if (r.partial_rotary_factor !== undefined && r.partial_rotary_factor !== 1)
      throw unsupported(k, 'partial_rotary_factor must be 1');
    if (r.rope_theta !== undefined) theta = pos(`${k}.rope_theta`, r.rope_theta);
  }
  if (has('rope_theta')) {
    const top = pos('rope_theta', c.rope_theta);
    if (theta !== undefined && theta !== top)
      throw new RangeError(`${file}: rope_theta ${top} disagrees with rope_parameters.rope_theta ${theta}`);
    theta = top;
  }

  const hidden = int('hidden_size');
  const heads = int('num_attention_heads');
  const kvHeads = int('num_key_value_heads', heads);
  if (heads % kvHeads !== 0)
    throw new RangeError(`${file}: num_attention_heads ${heads} is not a multiple of num_key_value_heads ${kvHeads}`);
  let headDim: number;
  if (has('head_dim')) headDim = int('head_dim');
  else if (hidden % heads !== 0)
    throw new RangeError(`${file}: hidden_size ${hidden} is not a multiple of num_attention_heads ${heads}`);
  else headDim = hidden / heads;
  if (headDim % 2 !== 0) throw new RangeError(`${file}: head_dim ${headDim} must be even (rotate-half RoPE)`);
  const attentionBias = mt === 'qwen2' ? true : bool('attention_bias', false);
  const dtype = c.dtype ?? c.torch_dtype;
  if (dtype !== undefined && dtype !== null && typeof dtype !== 'string')
    throw new TypeError(`${file}: dtype/torch_dtype must be a string`);

  const cfg: DecoderConfig = {
    model_type: mt,
    hidden_size: hidden,
    intermediate_size: int('intermediate_size'),
    num_hidden_layers: int('num_hidden_layers'),
    num_attention_heads: heads,
    num_key_value_heads: kvHeads,
    head_dim: headDim,
    rms_norm_eps: has('rms_norm_eps') ? pos('rms_norm_eps', c.rms_norm_eps) : 1e-6,
    rope_theta: theta ?? 10000,
    vocab_size: int('vocab_size'),
    tie_word_embeddings: bool('tie_word_embeddings', false),
    max_position_embeddings: int('max_position_embeddings', DEFAULT_MAX_POS[mt]),
    attention_bias: attentionBias,
    qkv_bias: attentionBias,
    o_bias: mt === 'llama' && attentionBias,
    ...(typeof dtype === 'string' ? { torch_dtype: dtype } : {}),
    raw: { ...c },
  };
  modelSize(cfg, file);
  return cfg;
}

/** The engine's cap on a model's tensors (native/model/decoder.h kMaxTensors): num_hidden_layers ≤ 80,659. */
export const MAX_TENSORS = 2 ** 20;
const MAX_DIM = 2 ** 31 - 1; // the engine's int32 sizes

/**
 * Parameters and tensors a config implies, with checked arithmetic (the engine's native/model/decoder.cc
 * model_size, same rules): a RangeError naming the fields and the size when a dimension or heads × head_dim
 * exceeds 2^31 − 1, a parameter count is not an exact JS integer (2^53 − 1), or the tensors exceed MAX_TENSORS.
 * Machine-independent: whether the model fits in memory is the engine's check when it is built.
 */
export function modelSize(cfg: DecoderConfig, file = 'config.json'): { params: number; tensors: number } {
  const H = cfg.hidden_size,
    D = cfg.head_dim,
    L = cfg.num_hidden_layers;
  for (const k of [
    'vocab_size',
    'hidden_size',
    'intermediate_size',
    'num_hidden_layers',
    'num_attention_heads',
    'num_key_value_heads',
    'head_dim',
  ] as const)
    checkedProduct(file, [[k, cfg[k]]], MAX_DIM, `${MAX_DIM} (the engine's int32 sizes)`);
  const QD = checkedProduct(
    file,
    [
      ['num_attention_heads', cfg.num_attention_heads],
      ['head_dim', D],
    ],
    MAX_DIM,
    `${MAX_DIM} (the engine's int32 sizes)`,
  );
  const KD = cfg.num_key_value_heads * D; // <= QD: num_key_value_heads divides num_attention_heads
  const qo = checkedProduct(file, [
    ['2', 2],
    ['num_attention_heads', cfg.num_attention_heads],
    ['head_dim', D],
    ['hidden_size', H],
  ]);
  const kv = checkedProduct(file, [
    ['2', 2],
    ['num_key_value_heads', cfg.num_key_value_heads],
    ['head_dim', D],
    ['hidden_size', H],
  ]);
  const mlp = checkedProduct(file, [
    ['3', 3],
    ['intermediate_size', cfg.intermediate_size],
    ['hidden_size', H],
  ]);
  const embed = checkedProduct(file, [
    [cfg.tie_word_embeddings ? '1' : '2', cfg.tie_word_embeddings ? 1 : 2],
    ['vocab_size', cfg.vocab_size],
    ['hidden_size', H],
  ]);
  const small = (cfg.qkv_bias ? QD + 2 * KD : 0) + (cfg.o_bias ? H : 0) + 2 * H; // biases, the two norms
  const perLayer = checkedSum(file, [
    ['q_proj + o_proj', qo],
    ['k_proj + v_proj', kv],
    ['mlp', mlp],
    ['norms and biases', small],
  ]);
  const layers = checkedProduct(file, [
    ['num_hidden_layers', L],
    ['parameters per layer', perLayer],
  ]);
  const params = checkedSum(file, [
    ['num_hidden_layers × parameters per layer', layers],
    ['embed_tokens + lm_head', embed],
    ['model.norm', H],
  ]);
  const perLayerTensors = 9 + (cfg.qkv_bias ? 3 : 0) + (cfg.o_bias ? 1 : 0);
  const tensors =
    checkedProduct(
      file,
      [
        ['num_hidden_layers', L],
        ['tensors per layer', perLayerTensors],
      ],
      MAX_TENSORS,
      `${MAX_TENSORS} (the engine's limit on a model's tensors)`,
    ) + (cfg.tie_word_embeddings ? 2 : 3);
  return { params, tensors };
}

/** HF tensor names and shapes ([out, in] for Linear weights), in HF's named_parameters() order. */
export function expectedTensors(cfg: DecoderConfig): TensorShape[] {
  const H = cfg.hidden_size,
    I = cfg.intermediate_size,
    D = cfg.head_dim;
  const q = cfg.num_attention_heads * D,
    kv = cfg.num_key_value_heads * D;
  const out: TensorShape[] = [{ name: 'model.embed_tokens.weight', shape: [cfg.vocab_size, H] }];
  for (let i = 0; i < cfg.num_hidden_layers; i++) {
    const p = `model.layers.${i}.`;
    for (const [proj, rows] of [
      ['q', q],
      ['k', kv],
      ['v', kv],
    ] as const) {
      out.push({ name: `${p}self_attn.${proj}_proj.weight`, shape: [rows, H] });
      if (cfg.qkv_bias) out.push({ name: `${p}self_attn.${proj}_proj.bias`, shape: [rows] });
    }
    out.push({ name: `${p}self_attn.o_proj.weight`, shape: [H, q] });
    if (cfg.o_bias) out.push({ name: `${p}self_attn.o_proj.bias`, shape: [H] });
    out.push({ name: `${p}mlp.gate_proj.weight`, shape: [I, H] });
    out.push({ name: `${p}mlp.up_proj.weight`, shape: [I, H] });
    out.push({ name: `${p}mlp.down_proj.weight`, shape: [H, I] });
    out.push({ name: `${p}input_layernorm.weight`, shape: [H] });
    out.push({ name: `${p}post_attention_layernorm.weight`, shape: [H] });
  }
  out.push({ name: 'model.norm.weight', shape: [H] });
  if (!cfg.tie_word_embeddings) out.push({ name: 'lm_head.weight', shape: [cfg.vocab_size, H] });
  return out;
}

function readJson(file: string): unknown {
  const text = fs.readFileSync(file, 'utf8');
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`${path.basename(file)}: not valid JSON (${(e as Error).message})`);
  }
}

const sameShape = (a: readonly number[], b: readonly number[]) =>
  a.length === b.length && a.every((d, i) => d === b[i]);
const fmt = (s: readonly number[]) => `[${s.join(', ')}]`;
// Buffers that old checkpoints saved and transformers recomputes: dropped on load.
const IGNORED = /^model\.(layers\.\d+\.self_attn\.)?rotary_emb\.inv_freq$/;
const SHARD = /^[^/\\]+\.safetensors$/;

/** The weight files, opened, and which one holds each tensor. Sharded: checks the index against each shard's header. */
function openWeights(dir: string): { files: SafetensorsFile[]; where: Map<string, SafetensorsFile>; source: string } {
  const single = path.join(dir, 'model.safetensors');
  const indexFile = path.join(dir, 'model.safetensors.index.json');
  const where = new Map<string, SafetensorsFile>();
  if (fs.existsSync(single) || !fs.existsSync(indexFile)) {
    if (!fs.existsSync(single))
      throw new Error(`${dir}: neither model.safetensors nor model.safetensors.index.json exists`);
    const f = SafetensorsFile.open(single);
    for (const n of f.names) where.set(n, f);
    return { files: [f], where, source: 'model.safetensors' };
  }
  const index = readJson(indexFile);
  const label = 'model.safetensors.index.json';
  if (!isObject(index) || !isObject(index.weight_map)) throw new TypeError(`${label}: weight_map must be an object`);
  const byShard = new Map<string, string[]>();
  for (const [name, shard] of Object.entries(index.weight_map)) {
    if (typeof shard !== 'string' || !SHARD.test(shard) || shard.startsWith('.'))
      throw new RangeError(
        `${label}: weight_map["${name}"] = ${JSON.stringify(shard)} is not a .safetensors file name in the directory`,
      );
    byShard.set(shard, [...(byShard.get(shard) ?? []), name]);
  }
  const files: SafetensorsFile[] = [];
  try {
    for (const [shard, names] of byShard) {
      const f = SafetensorsFile.open(path.join(dir, shard));
      files.push(f);
      const listed = new Set(names);
      for (const n of names)
        if (!f.names.includes(n)) throw new Error(`${shard}: tensor "${n}" (listed in ${label} weight_map) is missing`);
      for (const n of f.names) {
        if (!listed.has(n))
          throw new Error(`${shard}: tensor "${n}" is not listed for this shard in ${label} weight_map`);
        where.set(n, f);
      }
    }
  } catch (e) {
    for (const f of files) f.close();
    throw e;
  }
  return { files, where, source: label };
}

export interface LoadOptions {
  /** Where to put a tensor's float32 values (e.g. a view into the engine's flat buffer); a new array when undefined. */
  into?: (name: string, shape: number[]) => Float32Array | undefined;
}

/** Loads and validates an HF checkpoint directory; tensors come back as float32 in expectedTensors() order. */
export function loadCheckpoint(
  dir: string,
  opts: LoadOptions = {},
): { config: DecoderConfig; tensors: Map<string, HostTensor> } {
  const config = parseConfig(readJson(path.join(dir, 'config.json')));
  const { files, where, source } = openWeights(dir);
  const label = (f: SafetensorsFile) => path.basename(f.file);
  try {
    const expected = expectedTensors(config);
    const want = new Set(expected.map((t) => t.name));
    for (const t of expected) {
      const f = where.get(t.name);
      if (!f)
        throw new Error(`${source}: tensor "${t.name}" is missing (expected shape ${fmt(t.shape)} from config.json)`);
      const got = f.entry(t.name).shape;
      if (!sameShape(got, t.shape))
        throw new RangeError(
          `${label(f)}: tensor "${t.name}" has shape ${fmt(got)}, expected ${fmt(t.shape)} from config.json`,
        );
    }
    const tensors = new Map<string, HostTensor>();
    const read = (f: SafetensorsFile, name: string, shape: number[]) => ({
      dtype: f.entry(name).dtype,
      shape: [...shape],
      data: f.readFloat32(name, opts.into?.(name, shape)),
    });
    for (const t of expected) tensors.set(t.name, read(where.get(t.name)!, t.name, t.shape));
    for (const [name, f] of where) {
      if (want.has(name) || IGNORED.test(name)) continue;
      if (name === 'lm_head.weight' && config.tie_word_embeddings) {
        // Some tied checkpoints also store lm_head.weight: accept it only as an exact copy of the embedding.
        const e = tensors.get('model.embed_tokens.weight')!;
        const shape = f.entry(name).shape;
        const copy = sameShape(shape, e.shape) && f.readFloat32(name).every((x, i) => Object.is(x, e.data[i]));
        if (copy) continue;
        throw new Error(
          `${label(f)}: tensor "lm_head.weight" differs from model.embed_tokens.weight but tie_word_embeddings is true`,
        );
      }
      throw new Error(
        `${label(f)}: unexpected tensor "${name}" (not part of a ${config.model_type} model with this config.json)`,
      );
    }
    return { config, tensors };
  } finally {
    for (const f of files) f.close();
  }
}

export interface SaveOptions {
  /**
   * The stored dtype (default 'fp32'): model.safetensors holds F32 or BF16 tensors and config.json's torch_dtype
   * reads 'float32' / 'bfloat16' (the file format's names). The deprecated 'float32' / 'bfloat16' are still accepted.
   */
  dtype?: Dtype | 'float32' | 'bfloat16';
  /** Other files copied through (tokenizer.json, generation_config.json, ...): plain file names only. */
  extraFiles?: Record<string, string | Uint8Array>;
}

type TensorMap =
  Map<string, { shape?: number[]; data: Float32Array }> | Record<string, { shape?: number[]; data: Float32Array }>;

function sortedJson(v: unknown, indent = ''): string {
  if (!isObject(v)) return Array.isArray(v) ? `[${v.map((x) => sortedJson(x, indent)).join(', ')}]` : JSON.stringify(v);
  const keys = Object.keys(v)
    .filter((k) => v[k] !== undefined)
    .sort();
  if (!keys.length) return '{}';
  const inner = indent + '  ';
  return `{\n${keys.map((k) => `${inner}${JSON.stringify(k)}: ${sortedJson(v[k], inner)}`).join(',\n')}\n${indent}}`;
}

/** config.json as transformers writes it: the original fields with the validated ones applied. */
function configJson(cfg: DecoderConfig, dtype: string): string {
  const out: Record<string, unknown> = { ...cfg.raw };
  if (!Array.isArray(out.architectures)) out.architectures = [ARCH[cfg.model_type]];
  for (const k of [
    'model_type',
    'hidden_size',
    'intermediate_size',
    'num_hidden_layers',
    'num_attention_heads',
    'num_key_value_heads',
    'rms_norm_eps',
    'vocab_size',
    'tie_word_embeddings',
    'max_position_embeddings',
  ] as const)
    out[k] = cfg[k];
  if (cfg.model_type === 'llama' || out.attention_bias !== undefined) out.attention_bias = cfg.attention_bias;
  if (out.head_dim !== undefined || cfg.head_dim * cfg.num_attention_heads !== cfg.hidden_size)
    out.head_dim = cfg.head_dim;
  if (isObject(out.rope_parameters)) out.rope_parameters = { ...out.rope_parameters, rope_theta: cfg.rope_theta };
  if (!isObject(out.rope_parameters) || out.rope_theta !== undefined) out.rope_theta = cfg.rope_theta;
  out.torch_dtype = dtype;
  if (out.dtype !== undefined) out.dtype = dtype;
  return sortedJson(out) + '\n';
}

/**
 * Writes config.json, model.safetensors (F32 or BF16) and extraFiles into `dir`, each file atomically; config.json
 * last. Tensors must be exactly expectedTensors(config). A stale sharded index (and the shards it lists) is removed.
 */
export function saveCheckpoint(dir: string, config: DecoderConfig, tensors: TensorMap, opts: SaveOptions = {}): void {
  const cfg = parseConfig(configJsonObject(config)); // re-validate what we are about to write
  const dtype = checkDtype('dtype', opts.dtype ?? 'fp32', ['float32', 'bfloat16']);
  const map = tensors instanceof Map ? tensors : new Map(Object.entries(tensors));
  const expected = expectedTensors(cfg);
  const want = new Set(expected.map((t) => t.name));
  for (const name of map.keys())
    if (!want.has(name)) throw new Error(`tensors: unexpected tensor "${name}" for this config`);
  const list = expected.map(({ name, shape }) => {
    const t = map.get(name);
    if (!t) throw new Error(`tensors: "${name}" is missing`);
    if (!(t.data instanceof Float32Array)) throw new TypeError(`tensors: "${name}".data must be a Float32Array`);
    if (t.shape && !sameShape(t.shape, shape))
      throw new RangeError(`tensors: "${name}" has shape ${fmt(t.shape)}, expected ${fmt(shape)}`);
    if (t.data.length !== elementCount(shape))
      throw new RangeError(
        `tensors: "${name}" has ${t.data.length} values, expected ${elementCount(shape)} for ${fmt(shape)}`,
      );
    return { name, shape, data: t.data };
  });
  const extra = Object.entries(opts.extraFiles ?? {});
  for (const [name, data] of extra) {
    if (
      !/^[^/\\]+$/.test(name) ||
      name === '.' ||
      name === '..' ||
      name === 'config.json' ||
      name.startsWith('model.safetensors')
    )
      throw new RangeError(
        `extraFiles: "${name}" must be a plain file name other than config.json and model.safetensors*`,
      );
    if (typeof data !== 'string' && !(data instanceof Uint8Array))
      throw new TypeError(`extraFiles["${name}"]: must be a string or Uint8Array`);
  }
  fs.mkdirSync(dir, { recursive: true });
  writeSafetensors(path.join(dir, 'model.safetensors'), list, { dtype, metadata: { format: 'pt' } });
  removeStaleShards(dir);
  for (const [name, data] of extra) writeBytesAtomic(path.join(dir, name), data);
  writeBytesAtomic(path.join(dir, 'config.json'), configJson(cfg, torchDtype(dtype)));
}

// A DecoderConfig back into config.json fields, so that saveCheckpoint validates edited configs too.
function configJsonObject(cfg: DecoderConfig): Record<string, unknown> {
  if (!isObject(cfg)) throw new TypeError('config: must be a DecoderConfig (from loadCheckpoint or parseConfig)');
  return JSON.parse(configJson({ ...cfg, raw: isObject(cfg.raw) ? cfg.raw : {} }, cfg.torch_dtype ?? 'float32'));
}

function removeStaleShards(dir: string): void {
  const indexFile = path.join(dir, 'model.safetensors.index.json');
  if (!fs.existsSync(indexFile)) return;
  let shards: string[] = [];
  try {
    const index = JSON.parse(fs.readFileSync(indexFile, 'utf8'));
    shards = Object.values(isObject(index?.weight_map) ? index.weight_map : {}).filter(
      (s): s is string => typeof s === 'string',
    );
  } catch {
    // an unreadable index is removed all the same
  }
  fs.rmSync(indexFile, { force: true });
  for (const s of new Set(shards))
    if (/^model-\d+-of-\d+\.safetensors$/.test(s)) fs.rmSync(path.join(dir, s), { force: true });
}
