// One request on the engine: one generate() call (lib/engine/sampler.ts) for all its prompts with K = n rows each
// (continuous batching), observed token by token through generate()'s onToken so that tokens, log-probs and
// streamed text leave as they are sampled. generate() stays the one sampler: a thin SamplerModel wrapper only
// forwards the engine's calls (on libuv workers when the model has the async variants, so the event loop keeps
// serving) and checks for an abort before each.
//
// A Choice applies the stop rules to decide when its row is finished (later tokens are ignored): a stop token (the
// eos tokens and stop_token_ids: generate() stops on the same set), max_tokens (the same count), or a stop string,
// found in the whole decoded text (generate() looks in a window of recent tokens, so the Choice finds a stop string
// no later than generate() stops the row). At the end the Choice is checked against generate()'s samples: its
// tokens must be a prefix of the sample's, and it must have finished.
//
// OpenAI semantics: the text ends before the first stop string and never holds a stop token (text is decoded with
// special tokens skipped); finish_reason is 'stop' for a stop token or string, 'length' at max_tokens; the stop
// token or string is reported as stop_reason (vLLM's field; null for an eos token). Streamed text holds back a tail
// that could still become a stop string, a trailing U+FFFD (an incomplete UTF-8 sequence) and trailing whitespace
// (a later token may change how it decodes), so the chunks always add up to the final text.
import { randomInt } from 'crypto';
import { generate, type FinishReason, type SamplerModel } from '../engine/sampler';
import type { Tokenizer } from '../engine/tokenizer';
import { ApiError } from './errors';
import { rowLogSumExp, tokenLogprob, type TokenLogprob } from './logprobs';
import type { GenerationRequest } from './validate';

/** The engine model: a SamplerModel, preferably with the engine's async calls. */
export interface ServeModel<Cache = unknown> extends SamplerModel<Cache> {
  prefillAsync?(cache: Cache, ids: Int32Array, B: number, T: number): Promise<Float32Array>;
  decodeAsync?(cache: Cache, tokens: Int32Array): Promise<Float32Array>;
  decodeRowsAsync?(cache: Cache, tokens: Int32Array, rows: Int32Array): Promise<Float32Array>;
}

/** What a finished choice reports. */
export interface ChoiceResult {
  index: number;
  /** Generated token ids (the stop token included). */
  ids: number[];
  text: string;
  finishReason: FinishReason;
  /** The stop string, or a stop token that is not an eos token; null otherwise. */
  stopReason: string | number | null;
  /** Per token (when the request asked for log-probs). */
  logprobs?: TokenLogprob[];
  promptIds: Int32Array;
}

/** A streamed piece of one choice: new text and the log-probs of the tokens not reported before. */
export interface ChoiceDelta {
  index: number;
  text: string;
  logprobs?: TokenLogprob[];
  /** Set on the choice's last delta. */
  finish?: { reason: FinishReason; stopReason: string | number | null };
}

export interface GenerationResult {
  choices: ChoiceResult[];
  promptTokens: number;
  completionTokens: number;
  seed: number;
}

export interface RunOptions {
  /** Called as text is produced (streaming); each choice's deltas add up to its final text. */
  onDelta?: (d: ChoiceDelta) => void;
  /** Aborts the generation at its next engine call (a client that went away, a shutdown). */
  signal?: AbortSignal;
}

/** Thrown by an aborted generation. */
export class GenerationAborted extends Error {
  constructor(reason?: unknown) {
    super(
      `generation aborted${reason instanceof Error ? `: ${reason.message}` : typeof reason === 'string' ? `: ${reason}` : ''}`,
    );
    this.name = 'GenerationAborted';
  }
}

class Choice {
  ids: number[] = [];
  logprobs: TokenLogprob[] = [];
  done = false;
  finish: FinishReason = 'length';
  stopReason: string | number | null = null;
  /** Chars of the text and tokens already streamed. */
  emitted = '';
  reported = 0;
  /** Visible text when finished. */
  text = '';

  constructor(
    readonly index: number,
    private readonly g: Generation,
  ) {}

  /** The text of the tokens so far, without a stop token that ended the row. */
  private decoded(): string {
    const ids =
      this.done && this.finish === 'stop' && typeof this.stopReason !== 'string' ? this.ids.slice(0, -1) : this.ids;
    return this.g.tok.decode(ids, { skipSpecialTokens: true });
  }

  /** One more token of this row (with the logits row it was drawn from, for log-probs). */
  push(id: number, row: Float32Array | undefined, lse: number | undefined): void {
    if (this.done) return;
    const g = this.g;
    this.ids.push(id);
    if (g.req.logprobs !== null) this.logprobs.push(tokenLogprob(row!, id, g.req.logprobs, lse));
    if (g.stopTokens.has(id)) {
      this.done = true;
      this.finish = 'stop';
      this.stopReason = g.eos.has(id) ? null : id;
    }
    let text: string | undefined;
    if (!this.done && g.req.stop.length) {
      text = this.decoded();
      let at = -1,
        hit = '';
      for (const s of g.req.stop) {
        const i = text.indexOf(s);
        if (i >= 0 && (at < 0 || i < at)) {
          at = i;
          hit = s;
        }
      }
      if (at >= 0) {
        this.done = true;
        this.finish = 'stop';
        this.stopReason = hit;
        text = text.slice(0, at);
      }
    }
    if (!this.done && this.ids.length >= g.req.maxTokens) this.done = true;
    if (this.done) this.text = text !== undefined && typeof this.stopReason === 'string' ? text : this.decoded();
    if (g.streaming) this.stream(this.done ? this.text : this.holdBack(text ?? this.decoded()));
  }

  /** The part of `text` that cannot change any more. */
  private holdBack(text: string): string {
    let end = text.length;
    for (const s of this.g.req.stop)
      for (let l = Math.min(s.length - 1, end); l > 0; l--)
        if (text.endsWith(s.slice(0, l))) {
          end = Math.min(end, text.length - l);
          break;
        }
    let t = text.slice(0, end);
    t = t.replace(/\uFFFD+$/, '').replace(/\s+$/, '');
    return t;
  }

  private stream(visible: string): void {
    const on = this.g.opts.onDelta!;
    const more = visible.startsWith(this.emitted) ? visible.slice(this.emitted.length) : '';
    const lps = this.g.req.logprobs !== null ? this.logprobs.slice(this.reported) : undefined;
    if (more === '' && !lps?.length && !this.done) return;
    this.emitted += more;
    this.reported = this.logprobs.length;
    on({
      index: this.index,
      text: more,
      ...(lps ? { logprobs: lps } : {}),
      ...(this.done ? { finish: { reason: this.finish, stopReason: this.stopReason } } : {}),
    });
  }
}

/** One prompt's n choices, observed. */
class Generation {
  readonly streaming: boolean;
  readonly eos: Set<number>;
  readonly stopTokens: Set<number>;
  readonly choices: Choice[];

  constructor(
    readonly req: GenerationRequest,
    readonly tok: Tokenizer,
    readonly opts: RunOptions,
    first: number,
  ) {
    this.streaming = typeof opts.onDelta === 'function';
    this.eos = new Set(req.ignoreEos ? [] : tok.eosTokenIds);
    this.stopTokens = new Set([...this.eos, ...req.stopTokenIds]);
    this.choices = Array.from({ length: req.n }, (_, i) => new Choice(first + i, this));
  }

  /** A token drawn for choice `sample` from the logits row `logits`. */
  push(sample: number, token: number, logits: Float32Array): void {
    const c = this.choices[sample];
    if (c.done) return;
    const want = this.req.logprobs !== null;
    c.push(token, want ? logits : undefined, want ? rowLogSumExp(logits) : undefined);
  }
}

function tap<Cache>(inner: ServeModel<Cache>, signal?: AbortSignal): SamplerModel<Cache> {
  const check = () => {
    if (signal?.aborted)
      throw signal.reason instanceof GenerationAborted ? signal.reason : new GenerationAborted(signal.reason);
  };
  const m: SamplerModel<Cache> = {
    config: inner.config,
    newKvCache: (B, T) => inner.newKvCache(B, T),
    prefill: async (cache, ids, B, T) => {
      check();
      return inner.prefillAsync ? inner.prefillAsync(cache, ids, B, T) : inner.prefill(cache, ids, B, T);
    },
    decode: async (cache, tokens) => {
      check();
      return inner.decodeAsync ? inner.decodeAsync(cache, tokens) : inner.decode(cache, tokens);
    },
  };
  if (inner.decodeRows)
    m.decodeRows = async (cache, tokens, rows) => {
      check();
      return inner.decodeRowsAsync
        ? inner.decodeRowsAsync(cache, tokens, rows)
        : inner.decodeRows!(cache, tokens, rows);
    };
  if (inner.broadcastKvCache) m.broadcastKvCache = (s, r, d) => inner.broadcastKvCache!(s, r, d);
  if (inner.freeKvCache) m.freeKvCache = (c) => inner.freeKvCache!(c);
  return m;
}

/**
 * Runs a request: every prompt's n choices from one generate() call with the RNG streams (seed, prompt index,
 * choice), so a request with a seed gives the same choices whether streamed or not. Engine access must be
 * serialised by the caller (lib/serve/queue.ts).
 */
export async function runGeneration<Cache>(
  model: ServeModel<Cache>,
  tok: Tokenizer,
  req: GenerationRequest,
  opts: RunOptions = {},
): Promise<GenerationResult> {
  const seed = req.seed ?? randomInt(2 ** 31);
  const gens = req.prompts.map((_, p) => new Generation(req, tok, opts, p * req.n));
  const out = await generate(tap(model, opts.signal), tok, req.prompts, {
    k: req.n,
    maxNewTokens: req.maxTokens,
    temperature: req.temperature,
    topP: req.topP,
    topK: req.topK,
    seed,
    promptKeys: req.prompts.map((_, p) => p),
    stopTokens: [...gens[0].stopTokens],
    ...(req.stop.length ? { stopStrings: req.stop } : {}),
    onToken: (e) => gens[e.prompt].push(e.sample, e.token, e.logits),
  });
  const choices: ChoiceResult[] = [];
  let completionTokens = 0,
    promptTokens = 0;
  out.forEach((r, p) => {
    const g = gens[p];
    r.samples.forEach((s, i) => {
      const c = g.choices[i];
      if (c.ids.length > s.ids.length || c.ids.some((t, j) => t !== s.ids[j]))
        throw new Error(
          `sampler and server disagree on choice ${c.index}: the server's ${c.ids.length} tokens are not a prefix of the sample's ${s.ids.length}`,
        );
      if (!c.done) throw new Error(`choice ${c.index} ended (${s.finishReason}) where the server's stop rules do not`);
    });
    promptTokens += r.promptIds.length;
    for (const c of g.choices) {
      completionTokens += c.ids.length;
      choices.push({
        index: c.index,
        ids: c.ids,
        text: c.text,
        finishReason: c.finish,
        stopReason: c.stopReason,
        ...(req.logprobs !== null ? { logprobs: c.logprobs } : {}),
        promptIds: r.promptIds,
      });
    }
  });
  return { choices, promptTokens, completionTokens, seed };
}

/** An aborted or failed generation as an ApiError (an abort is the client's or the shutdown's doing). */
export function generationError(e: unknown): ApiError | GenerationAborted {
  if (e instanceof GenerationAborted || e instanceof ApiError) return e;
  const msg = e instanceof Error ? e.message : String(e);
  return new ApiError(500, `generation failed: ${msg}`, 'server_error', null, 'generation_failed');
}
