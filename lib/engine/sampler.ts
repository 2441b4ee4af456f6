// Sampling: one token from a row of logits (temperature, top-k, top-p, seeded RNG), and generate(): prompts × K
// samples with a KV cache, stop tokens / strings, per-token log-probs, over a small model interface
// (SamplerModel) that the engine's Model implements; tests drive it with a fake model.
//
// Where it runs. fillSamplingDistribution() below is the TypeScript specification (test/helpers/sampler-reference.ts
// draws from it: sampleTokenReference); the tokens
// are drawn by its native twin (cpu/sampler.cc through addon.sampleRows: the same float64 steps in the same order,
// all rows of a decode step in parallel) — at a vocabulary of 151936 the TypeScript takes 4.5–25 ms per row, the
// native one 1.9–7.9 (one thread; 2-core VM, 2026-11-26), and a GPU decode step would otherwise wait on it. The
// RNG streams stay here: one uniform per non-greedy token, drawn in TypeScript and handed to the native sampler.
//
// Log-probs. Every sampled token carries two numbers:
//   logprob          log p(token) under the MODEL's distribution: log_softmax(logits) at temperature 1, no top-k /
//                    top-p filtering. This is what RL fine-tuning needs (RIFT / DPO reference log-probs, the
//                    importance ratio of the policy that produced the sample), and what the loss kernels compute
//                    from the same logits.
//   samplingLogprob  log q(token) under the distribution actually sampled from (temperature-scaled, filtered,
//                    renormalised); 0 for greedy decoding.
// Both are computed in float64 from the float32 logits.
//
// Randomness. Each (prompt, sample) pair has its own xoshiro128** stream, seeded from (seed, prompt key, sample
// index), so a sample does not change when K, the prompt order within a call, or the batching change. Draws
// happen only for non-greedy steps, one 53-bit uniform per token.

import { addon, localError } from '../native';
import { runContinuous, SampleRow, type DrawRows, type StopRules } from './continuous';

// ---- RNG ------------------------------------------------------------------------------------------------------

function splitmix32(state: { s: number }): number {
  state.s = (state.s + 0x9e3779b9) | 0;
  let t = state.s ^ (state.s >>> 16);
  t = Math.imul(t, 0x21f0aaad);
  t ^= t >>> 15;
  t = Math.imul(t, 0x735a2d97);
  return (t ^ (t >>> 15)) >>> 0;
}

/** xoshiro128** (Blackman & Vigna), seeded through splitmix32 from any number of integer keys. */
export class Rng {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  /** `keys`: safe integers (e.g. seed, prompt index, sample index); each is folded in with both 32-bit halves. */
  constructor(...keys: number[]) {
    const st = { s: 0x2545f491 };
    for (const k of keys) {
      if (!Number.isSafeInteger(k)) throw new RangeError(`seed: ${k} is not a safe integer`);
      const lo = k >>> 0,
        hi = Math.floor(k / 2 ** 32) >>> 0;
      st.s ^= splitmix32(st) ^ lo;
      st.s ^= splitmix32(st) ^ hi;
    }
    this.s0 = splitmix32(st) | 0;
    this.s1 = splitmix32(st) | 0;
    this.s2 = splitmix32(st) | 0;
    this.s3 = splitmix32(st) | 0;
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1;
  }

  /** Uniform 32-bit unsigned integer. */
  nextU32(): number {
    const s1 = this.s1;
    const m = Math.imul(s1, 5);
    const r = Math.imul((m << 7) | (m >>> 25), 9) >>> 0;
    const t = s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = (this.s3 << 11) | (this.s3 >>> 21);
    return r;
  }

  /** Uniform double in [0, 1) with 53 random bits. */
  next(): number {
    const a = this.nextU32() >>> 5,
      b = this.nextU32() >>> 6;
    return (a * 67108864 + b) / 9007199254740992;
  }
}

/** The stream of sample `sample` of the prompt with key `prompt` (its index by default) under `seed`. */
export function sampleRng(seed: number, prompt: number, sample: number): Rng {
  return new Rng(seed, prompt, sample);
}

// ---- one token ------------------------------------------------------------------------------------------------

export interface SamplingParams {
  /** Softmax temperature; 0 = greedy (argmax, lowest id on ties; topK/topP unused). Default 1. */
  temperature?: number;
  /** Keep the k highest-scoring tokens (plus any tied with the k-th, as HF's TopKLogitsWarper); 0 = off. Default 0. */
  topK?: number;
  /**
   * Nucleus: after temperature and top-k, keep the smallest set of most probable tokens whose probability (renormalised
   * over the top-k survivors) reaches topP — a token is kept iff the mass of the tokens ranked above it is < topP
   * (HF's TopPLogitsWarper, which always keeps the most probable token). 1 = off. Default 1.
   */
  topP?: number;
}

export interface SampledToken {
  token: number;
  /** log p(token) under the model: log_softmax(logits), temperature 1, unfiltered. */
  logprob: number;
  /** log q(token) under the sampling distribution (temperature, top-k, top-p applied); 0 when greedy. */
  samplingLogprob: number;
}

export interface CheckedParams {
  temperature: number;
  topK: number;
  topP: number;
}

export function checkSamplingParams(p: SamplingParams = {}): CheckedParams {
  const temperature = p.temperature ?? 1;
  const topK = p.topK ?? 0;
  const topP = p.topP ?? 1;
  if (typeof temperature !== 'number' || !Number.isFinite(temperature) || temperature < 0)
    throw new RangeError(`temperature: must be a finite number ≥ 0, got ${p.temperature}`);
  if (!Number.isSafeInteger(topK) || topK < 0)
    throw new RangeError(`topK: must be an integer ≥ 0 (0 = off), got ${p.topK}`);
  if (typeof topP !== 'number' || !(topP > 0 && topP <= 1))
    throw new RangeError(`topP: must be in (0, 1] (1 = off), got ${p.topP}`);
  return { temperature, topK, topP };
}

/**
 * Buffers of the TypeScript sampling distribution over a vocabulary of V (samplingProbs(); the tests' reference
 * sampler reuses one across draws).
 * @deprecated No public function takes it any more (sampleToken() draws natively and lost its unused scratch
 * parameter); it stays exported for code that constructs one, and will be removed from the package's exports.
 */
export class SamplerScratch {
  readonly prob: Float64Array; // (V) unnormalised probabilities of the sampling distribution, 0 = removed
  readonly work: Float64Array; // (V) selection / sorting workspace
  readonly order: Int32Array; // (V) candidate ids for top-p
  readonly keep: Uint8Array; // (V) top-p survivors
  constructor(readonly vocab: number) {
    if (!Number.isSafeInteger(vocab) || vocab < 1)
      throw new RangeError(`vocab: must be a positive integer, got ${vocab}`);
    this.prob = new Float64Array(vocab);
    this.work = new Float64Array(vocab);
    this.order = new Int32Array(vocab);
    this.keep = new Uint8Array(vocab);
  }
}

/** The k-th largest of a[0..n) (1-based k), by quickselect; reorders a. */
function kthLargest(a: Float64Array, n: number, k: number): number {
  let lo = 0,
    hi = n - 1;
  const target = k - 1; // index in descending order
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    // median of three as the pivot
    const x = a[lo],
      y = a[mid],
      z = a[hi];
    const pivot = x > y ? (y > z ? y : x > z ? z : x) : x > z ? x : y > z ? z : y;
    let i = lo,
      j = hi;
    while (i <= j) {
      while (a[i] > pivot) i++;
      while (a[j] < pivot) j--;
      if (i <= j) {
        const t = a[i];
        a[i] = a[j];
        a[j] = t;
        i++;
        j--;
      }
    }
    if (target <= j) hi = j;
    else if (target >= i) lo = i;
    else return a[target];
  }
  return a[target];
}

/** Row max, its first index and log-sum-exp of float32 logits, in float64; NaN / +Inf / all −Inf are RangeErrors. */
export function rowStats(logits: Float32Array): { argmax: number; lse: number } {
  const V = logits.length;
  if (V === 0) throw new RangeError('logits: empty row');
  let m = -Infinity,
    argmax = -1;
  for (let v = 0; v < V; v++) {
    const z = logits[v];
    if (Number.isNaN(z) || z === Infinity) throw new RangeError(`logits: logits[${v}] = ${z}`);
    if (z > m) {
      m = z;
      argmax = v;
    }
  }
  if (argmax < 0) throw new RangeError('logits: every value is -Infinity');
  let sum = 0;
  for (let v = 0; v < V; v++) sum += Math.exp(logits[v] - m);
  return { argmax, lse: m + Math.log(sum) };
}

/**
 * Fills sc.prob with the unnormalised sampling distribution (temperature > 0, then top-k, then top-p; removed
 * tokens are 0) and returns its total.
 */
export function fillSamplingDistribution(
  logits: Float32Array,
  p: CheckedParams,
  m: number,
  sc: SamplerScratch,
): number {
  const V = logits.length;
  const prob = sc.prob;
  // temperature: q_v ∝ exp((z_v − m) / T)
  const invT = 1 / p.temperature;
  for (let v = 0; v < V; v++) prob[v] = Math.exp((logits[v] - m) * invT);

  // top-k: keep values ≥ the k-th largest (ties kept, as HF)
  if (p.topK > 0 && p.topK < V) {
    const w = sc.work;
    for (let v = 0; v < V; v++) w[v] = prob[v];
    const kth = kthLargest(w, V, p.topK);
    for (let v = 0; v < V; v++) if (prob[v] < kth) prob[v] = 0;
  }

  let total = 0;
  for (let v = 0; v < V; v++) total += prob[v];

  // top-p over the (renormalised) survivors: sort only the candidates that can be in the nucleus. Every token
  // outside {q ≥ t} ranks below every token inside, so once the candidates' mass reaches topP the nucleus lies
  // inside them.
  if (p.topP < 1) {
    const target = p.topP * total;
    const order = sc.order;
    let n = 0;
    for (let t = total * 1e-2; ; t = t > total * 1e-12 ? t / 16 : 0) {
      n = 0;
      let mass = 0;
      for (let v = 0; v < V; v++)
        if (prob[v] > 0 && prob[v] >= t) {
          order[n++] = v;
          mass += prob[v];
        }
      if (mass >= target || t === 0) break;
    }
    const cand = Array.from(order.subarray(0, n)).sort((a, b) => prob[b] - prob[a] || a - b);
    const keep = sc.keep;
    keep.fill(0);
    let before = 0;
    for (const v of cand) {
      if (before >= target) break;
      keep[v] = 1;
      before += prob[v];
    }
    total = 0;
    for (let v = 0; v < V; v++) {
      if (!keep[v]) prob[v] = 0;
      total += prob[v];
    }
  }
  return total;
}

/**
 * The distribution sampleToken() draws from, normalised (float64, length V): one-hot at the argmax when greedy.
 * For tests and for callers that want the whole sampling distribution.
 */
export function samplingProbs(logits: Float32Array, params: SamplingParams = {}): Float64Array {
  const p = checkSamplingParams(params);
  const { argmax } = rowStats(logits);
  const out = new Float64Array(logits.length);
  if (p.temperature === 0) {
    out[argmax] = 1;
    return out;
  }
  const sc = new SamplerScratch(logits.length);
  const total = fillSamplingDistribution(logits, p, logits[argmax], sc);
  for (let v = 0; v < out.length; v++) out[v] = sc.prob[v] / total;
  return out;
}

/**
 * Samples one token from `logits` (V float32 values; −Inf allowed for masked tokens). NaN or +Inf, or a row with
 * no finite value, is a RangeError. Deterministic given the RNG state; greedy decoding does not draw from `rng`.
 */
export function sampleToken(logits: Float32Array, params: SamplingParams, rng: Rng): SampledToken {
  const p = checkSamplingParams(params);
  const V = logits.length;
  if (V === 0) throw new RangeError('logits: empty row');
  const u = new Float64Array(1);
  if (p.temperature > 0) u[0] = rng.next();
  const r = nativeSample(logits, 1, V, p, u);
  return { token: r.tokens[0], logprob: r.logprobs[0], samplingLogprob: r.samplingLogprobs[0] };
}

function nativeSample(logits: Float32Array, B: number, V: number, p: CheckedParams, u: Float64Array) {
  try {
    return addon.sampleRows(logits, B, V, p.temperature, p.topK, p.topP, u);
  } catch (e) {
    throw localError(e);
  }
}

// ---- generate -------------------------------------------------------------------------------------------------

/**
 * What generate() needs from a model. Logits come back as (B, V) row-major float32; they are read before the next
 * call, so the model may reuse the buffer. Calls may return values or Promises.
 *
 * Continuous batching (the default when the model has decodeRows and its caches have copyRows and resetRows, as
 * the engine's Model and KvCache do): the samples of all prompts share one cache of up to maxBatchRows rows; each
 * prompt is prefilled once (B = 1) and copied into a free row per sample (`cache.copyRows(src, 0, row, 1)`); rows
 * are decoded together at their own positions (`decodeRows`), and a finished row is freed (`cache.resetRows(row)`)
 * for the next sample.
 *
 * One prompt at a time (batching 'per-prompt', or a model without decodeRows): broadcasting a prompt's cache to K
 * rows uses `model.broadcastKvCache(src, srcRow, dst)` when the model has it, else `dst.copyRows(src, srcRow)` when
 * the cache has it (the native KvCache: copyRows(src, srcRow, dstRow = 0, count = batch − dstRow)), else generate()
 * prefills the K rows with K copies of the prompt. Caches are released with `model.freeKvCache(cache)` or else
 * `cache.free()` when either exists.
 */
export interface SamplerModel<Cache = unknown> {
  readonly config: {
    readonly vocab_size: number;
    readonly max_position_embeddings?: number;
    /** With these three, maxKvBytes bounds the batch cache (2 · layers · kv heads · head_dim · 4 bytes a position). */
    readonly num_hidden_layers?: number;
    readonly num_key_value_heads?: number;
    readonly head_dim?: number;
  };
  /** A KV cache of B rows with room for Tmax positions each, empty. */
  newKvCache(B: number, Tmax: number): Cache;
  /** Runs `ids` (B, T) from position 0 into the empty `cache`; returns the last position's logits (B, V). */
  prefill(cache: Cache, ids: Int32Array, B: number, T: number): Float32Array | Promise<Float32Array>;
  /** Appends one token per row (tokens: (B)) at the next position; returns its logits (B, V). */
  decode(cache: Cache, tokens: Int32Array): Float32Array | Promise<Float32Array>;
  /**
   * Continuous batching (optional): appends tokens[i] to cache row rows[i] (distinct rows, each at its own next
   * position; other rows untouched) and returns the logits (rows.length, V) in that order.
   */
  decodeRows?(cache: Cache, tokens: Int32Array, rows: Int32Array): Float32Array | Promise<Float32Array>;
  /** Copies row `srcRow` of `src` (all positions filled so far) into every row of the empty `dst`. Optional. */
  broadcastKvCache?(src: Cache, srcRow: number, dst: Cache): void | Promise<void>;
  /** Releases a cache early (optional; otherwise `cache.free()` if it has one, else the GC). */
  freeKvCache?(cache: Cache): void;
}

/** Methods a cache object may carry itself (the native KvCache does). */
interface CacheMethods<Cache> {
  copyRows?(src: Cache, srcRow: number, dstRow?: number, count?: number): void;
  free?(): void;
}

function cacheMethods<Cache>(c: Cache): CacheMethods<Cache> {
  return typeof c === 'object' && c !== null ? (c as CacheMethods<Cache>) : {};
}

function broadcaster<Cache>(
  model: SamplerModel<Cache>,
  probe: Cache,
): ((src: Cache, row: number, dst: Cache) => void | Promise<void>) | undefined {
  if (typeof model.broadcastKvCache === 'function') return (s, r, d) => model.broadcastKvCache!(s, r, d);
  if (typeof cacheMethods(probe).copyRows === 'function') return (s, r, d) => cacheMethods(d).copyRows!(s, r);
  return undefined;
}

function release<Cache>(model: SamplerModel<Cache>, c: Cache): void {
  if (typeof model.freeKvCache === 'function') model.freeKvCache(c);
  else if (typeof cacheMethods(c).free === 'function') cacheMethods(c).free!();
}

/** What generate() needs from a tokenizer (lib/engine/tokenizer.ts's Tokenizer satisfies it). */
export interface SamplerTokenizer {
  encode(text: string, opts?: { addSpecialTokens?: boolean }): Int32Array;
  decode(ids: ArrayLike<number>, opts?: { skipSpecialTokens?: boolean }): string;
  readonly eosTokenIds: readonly number[];
}

/** One drawn token, as generate() reports it to onToken. */
export interface TokenEvent {
  /** Index of the prompt in `prompts`, and of the sample (0 .. k−1). */
  prompt: number;
  sample: number;
  token: number;
  logprob: number;
  samplingLogprob: number;
  /** The logits row (V) the token was drawn from; valid only during the callback. */
  logits: Float32Array;
}

export interface GenerateOptions extends SamplingParams {
  /** Samples per prompt (default 1). */
  k?: number;
  /** Most tokens generated per sample (stop token included). */
  maxNewTokens: number;
  /** Default 0. Same seed, prompts and options → the same samples. */
  seed?: number;
  /** Token ids that end a sample (kept as its last token); default: the tokenizer's eosTokenIds. [] = none. */
  stopTokens?: readonly number[];
  /**
   * Strings that end a sample once the generated text contains one; the sample keeps the token that completed it
   * (text includes the stop string, as in HF's stop_strings).
   */
  stopStrings?: readonly string[];
  /** For string prompts: run the tokenizer's post-processor (BOS etc.). Default true, as HF; pass false for chat-templated text. */
  addSpecialTokens?: boolean;
  /** RNG key of each prompt (default: its index in `prompts`): keeps samples stable when prompts are split across calls. */
  promptKeys?: readonly number[];
  /**
   * 'continuous' (the default when the model supports it, see SamplerModel): the samples of all prompts decoded
   * together, a finished row refilled by the next waiting sample; 'per-prompt': one prompt after another, its K
   * rows decoded together. Both give the same tokens for the same seed.
   */
  batching?: 'continuous' | 'per-prompt';
  /** Continuous batching: most rows decoded together (default 256). */
  maxBatchRows?: number;
  /**
   * Continuous batching: most bytes of the batch KV cache (default 2 GiB), when the model's config gives its
   * size (num_hidden_layers, num_key_value_heads, head_dim); at least one row is always used.
   */
  maxKvBytes?: number;
  /** Called for every drawn token (also tokens drawn after its row stopped are never reported). A throw stops generate(). */
  onToken?: (e: TokenEvent) => void;
  /**
   * Called once a prompt's K samples are all finished (continuous batching finishes prompts roughly, not
   * exactly, in order); generate() waits for a returned Promise. A throw stops generate().
   */
  onPromptDone?: (prompt: number, result: PromptSamples) => void | Promise<void>;
}

export type FinishReason = 'stop' | 'length';

export interface Sample {
  /** Generated token ids (a stop token, when hit, is the last one). */
  ids: Int32Array;
  /** decode(ids) with special tokens skipped. */
  text: string;
  /** Per-token log-probs under the model (temperature 1, unfiltered): what RL losses use. */
  logprobs: Float32Array;
  /** Per-token log-probs under the sampling distribution (0 when greedy). */
  samplingLogprobs: Float32Array;
  finishReason: FinishReason;
  /** The stop token id or stop string that ended the sample. */
  stop?: number | string;
}

export interface PromptSamples {
  promptIds: Int32Array;
  samples: Sample[];
}

// Typed arrays made by the native addon (or in another vm context, e.g. under jest) fail `instanceof`: check the tag.
const isTyped = (v: unknown, tag: string) =>
  ArrayBuffer.isView(v) && Object.prototype.toString.call(v) === `[object ${tag}]`;

function checkOptions(o: GenerateOptions, nPrompts: number) {
  if (typeof o !== 'object' || o === null) throw new TypeError('options: must be an object');
  const k = o.k ?? 1;
  if (!Number.isSafeInteger(k) || k < 1) throw new RangeError(`k: must be an integer ≥ 1, got ${o.k}`);
  if (!Number.isSafeInteger(o.maxNewTokens) || o.maxNewTokens < 1)
    throw new RangeError(`maxNewTokens: must be an integer ≥ 1, got ${o.maxNewTokens}`);
  const seed = o.seed ?? 0;
  if (!Number.isSafeInteger(seed)) throw new RangeError(`seed: must be a safe integer, got ${o.seed}`);
  for (const [name, list] of [
    ['stopTokens', o.stopTokens],
    ['stopStrings', o.stopStrings],
    ['promptKeys', o.promptKeys],
  ] as const)
    if (list !== undefined && !Array.isArray(list)) throw new TypeError(`${name}: must be an array`);
  o.stopStrings?.forEach((s, i) => {
    if (typeof s !== 'string' || s.length === 0)
      throw new RangeError(`stopStrings: stopStrings[${i}] must be a non-empty string`);
  });
  if (o.promptKeys !== undefined) {
    if (o.promptKeys.length !== nPrompts)
      throw new RangeError(`promptKeys: ${o.promptKeys.length} keys for ${nPrompts} prompts`);
    o.promptKeys.forEach((x, i) => {
      if (!Number.isSafeInteger(x)) throw new RangeError(`promptKeys: promptKeys[${i}] = ${x} is not a safe integer`);
    });
  }
  if (o.batching !== undefined && o.batching !== 'continuous' && o.batching !== 'per-prompt')
    throw new RangeError(`batching: must be 'continuous' or 'per-prompt', got ${String(o.batching)}`);
  const maxBatchRows = o.maxBatchRows ?? 256;
  if (!Number.isSafeInteger(maxBatchRows) || maxBatchRows < 1 || maxBatchRows > 2 ** 31 - 1)
    throw new RangeError(`maxBatchRows: must be an integer in [1, 2^31), got ${o.maxBatchRows}`);
  const maxKvBytes = o.maxKvBytes ?? 2 ** 31;
  if (typeof maxKvBytes !== 'number' || !(maxKvBytes > 0))
    throw new RangeError(`maxKvBytes: must be a number > 0, got ${o.maxKvBytes}`);
  for (const name of ['onToken', 'onPromptDone'] as const)
    if (o[name] !== undefined && typeof o[name] !== 'function') throw new TypeError(`${name}: must be a function`);
  return { k, seed, params: checkSamplingParams(o), maxBatchRows, maxKvBytes };
}

/** Bytes of one cached position (k and v of every layer, fp32), or undefined when the config does not say. */
function kvBytesPerPosition(config: SamplerModel['config']): number | undefined {
  const { num_hidden_layers: L, num_key_value_heads: H, head_dim: D } = config;
  return [L, H, D].every((x) => Number.isSafeInteger(x) && (x as number) > 0) ? 2 * L! * H! * D! * 4 : undefined;
}

/**
 * K samples for each prompt (see SamplerModel for how they are batched). A row that hits a stop token or string
 * (or maxNewTokens) is finished while the others go on. Results are in prompt order.
 */
export async function generate<Cache>(
  model: SamplerModel<Cache>,
  tokenizer: SamplerTokenizer,
  prompts: readonly (string | Int32Array)[],
  opts: GenerateOptions,
): Promise<PromptSamples[]> {
  if (!Array.isArray(prompts)) throw new TypeError('prompts: must be an array of strings or Int32Arrays');
  const { k: K, seed, params, maxBatchRows, maxKvBytes } = checkOptions(opts, prompts.length);
  const V = model.config.vocab_size;
  const maxPos = model.config.max_position_embeddings;
  const stopTokens = new Set(opts.stopTokens ?? tokenizer.eosTokenIds);
  for (const t of stopTokens) if (!Number.isSafeInteger(t)) throw new RangeError(`stopTokens: ${t} is not a token id`);
  const stopStrings = opts.stopStrings ?? [];
  // A stop string of L characters is produced by at most L tokens that decode to ≥ 1 character, plus tokens that
  // decode to nothing on their own (byte-level pieces of one character: at most 3 per character).
  const window = stopStrings.length ? 4 * Math.max(...stopStrings.map((s) => s.length)) + 4 : 0;
  const rules: StopRules = { maxNewTokens: opts.maxNewTokens, stopTokens, stopStrings, window, tokenizer };

  const promptIds = prompts.map((p, i) => {
    const ids = typeof p === 'string' ? tokenizer.encode(p, { addSpecialTokens: opts.addSpecialTokens ?? true }) : p;
    if (!isTyped(ids, 'Int32Array')) throw new TypeError(`prompts: prompts[${i}] must be a string or an Int32Array`);
    if (ids.length === 0) throw new RangeError(`prompts: prompts[${i}] has no tokens`);
    for (let j = 0; j < ids.length; j++)
      if (ids[j] < 0 || ids[j] >= V)
        throw new RangeError(`prompts: prompts[${i}][${j}] = ${ids[j]} is outside [0, vocab_size = ${V})`);
    if (maxPos !== undefined && ids.length + opts.maxNewTokens > maxPos)
      throw new RangeError(
        `prompts: prompts[${i}] has ${ids.length} tokens; with maxNewTokens ${opts.maxNewTokens} that exceeds max_position_embeddings ${maxPos}`,
      );
    return ids;
  });

  const newRow = (p: number, s: number) => new SampleRow(p, s, sampleRng(seed, opts.promptKeys?.[p] ?? p, s));
  // One uniform per live row (non-greedy), then every row in one native call.
  const draw: DrawRows = (logits, rows) => {
    const u = new Float64Array(rows.length);
    if (params.temperature > 0) rows.forEach((row, r) => (u[r] = row.rng.next()));
    const drawn = nativeSample(logits.subarray(0, rows.length * V), rows.length, V, params, u);
    rows.forEach((row, r) => row.push(drawn.tokens[r], drawn.logprobs[r], drawn.samplingLogprobs[r], rules));
  };

  const continuous =
    opts.batching === 'continuous' || (opts.batching === undefined && typeof model.decodeRows === 'function');
  if (continuous) {
    if (typeof model.decodeRows !== 'function')
      throw new TypeError("batching: 'continuous' needs a model with decodeRows (as the engine's Model)");
    const capacity = Math.max(0, ...promptIds.map((ids) => ids.length)) + opts.maxNewTokens;
    const perPos = kvBytesPerPosition(model.config);
    const byBytes = perPos === undefined ? Infinity : Math.max(1, Math.floor(maxKvBytes / (capacity * perPos)));
    const rows = Math.max(1, Math.min(maxBatchRows, byBytes, promptIds.length * K));
    return runContinuous({
      model,
      promptIds,
      k: K,
      rows,
      capacity,
      vocab: V,
      rules,
      newRow,
      draw,
      release: (c) => release(model, c),
      onToken: opts.onToken,
      onPromptDone: opts.onPromptDone,
    });
  }
  const out: PromptSamples[] = [];
  for (let p = 0; p < promptIds.length; p++) {
    const rows = await samplePrompt(model, promptIds[p], p, K, opts, V, newRow, draw);
    out.push({ promptIds: promptIds[p], samples: rows.map((row) => row.toSample(tokenizer)) });
    await opts.onPromptDone?.(p, out[p]);
  }
  return out;
}

/**
 * One prompt's K rows: prefilled once (B = 1) and broadcast to K rows, or — when neither the model nor its cache
 * can broadcast — K copies of the prompt prefilled; then decoded together one token per step (finished rows are fed
 * their last token again, their logits ignored).
 */
async function samplePrompt<Cache>(
  model: SamplerModel<Cache>,
  ids: Int32Array,
  p: number,
  K: number,
  opts: GenerateOptions,
  V: number,
  newRow: (p: number, s: number) => SampleRow,
  draw: DrawRows,
): Promise<SampleRow[]> {
  const L = ids.length;
  const Tmax = L + opts.maxNewTokens;
  let cache: Cache;
  let logits: Float32Array; // (rows, V): rows = 1 after a B = 1 prefill (`shared`: every row reads row 0), else K
  let shared = true;
  const one = model.newKvCache(1, Tmax);
  const broadcast = K === 1 ? undefined : broadcaster(model, one);
  try {
    if (K === 1) {
      logits = await model.prefill(one, ids, 1, L);
      cache = one;
    } else if (broadcast) {
      logits = await model.prefill(one, ids, 1, L);
      cache = model.newKvCache(K, Tmax);
      try {
        await broadcast(one, 0, cache);
      } catch (e) {
        release(model, cache);
        throw e;
      }
    } else {
      cache = model.newKvCache(K, Tmax);
      const rep = new Int32Array(K * L);
      for (let r = 0; r < K; r++) rep.set(ids, r * L);
      try {
        logits = await model.prefill(cache, rep, K, L);
      } catch (e) {
        release(model, cache);
        throw e;
      }
      shared = false;
    }
  } catch (e) {
    release(model, one);
    throw e;
  }
  if (K !== 1) release(model, one);

  const rows = Array.from({ length: K }, (_, r) => newRow(p, r));
  const feed = new Int32Array(K);
  try {
    for (let step = 0; ; step++) {
      const expect = shared ? V : K * V;
      if (!isTyped(logits, 'Float32Array') || logits.length < expect)
        throw new Error(
          `model: ${step === 0 ? 'prefill' : 'decode'} returned ${logits?.length} logits, want ${expect} ((${shared ? 1 : K}, ${V}))`,
        );
      // Every live row in one native call (the first step's logits are one row shared by all K samples).
      const live = rows.map((row, r) => ({ row, r })).filter((x) => !x.row.done);
      let rowLogits = logits.subarray(0, K * V);
      if (shared || live.length < K) {
        rowLogits = new Float32Array(live.length * V);
        live.forEach(({ r }, i) => rowLogits.set(logits.subarray(shared ? 0 : r * V, (shared ? 0 : r * V) + V), i * V));
      }
      draw(
        rowLogits,
        live.map((x) => x.row),
      );
      let active = 0;
      live.forEach(({ row, r }, i) => {
        feed[r] = row.ids[row.ids.length - 1];
        opts.onToken?.({
          prompt: p,
          sample: r,
          token: feed[r],
          logprob: row.lp[row.lp.length - 1],
          samplingLogprob: row.slp[row.slp.length - 1],
          logits: rowLogits.subarray(i * V, (i + 1) * V),
        });
        if (!row.done) active++;
      });
      if (active === 0) break;
      logits = await model.decode(cache, feed); // finished rows get their last token again; their logits are unused
      shared = false;
    }
  } finally {
    release(model, cache);
  }
  return rows;
}
