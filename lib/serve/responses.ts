// OpenAI response bodies of `rift serve`: text_completion and chat.completion objects, their stream chunks, and
// the log-probs in each API's shape (completions: tokens / token_logprobs / top_logprobs / text_offset; chat:
// content[{token, logprob, bytes, top_logprobs}]). A token's string is its own decoding (special tokens kept).
// vLLM's extensions are added where rift has the data: stop_reason on each choice, and prompt_token_ids /
// token_ids when the request set return_token_ids.
import { randomUUID } from 'crypto';
import type { Tokenizer } from '../engine/tokenizer';
import type { ChoiceDelta, ChoiceResult, GenerationResult } from './generation';
import type { TokenLogprob } from './logprobs';
import type { GenerationRequest } from './validate';

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

/** Fields every body of one response shares. */
export interface ResponseHead {
  id: string;
  created: number;
  model: string;
}

export function responseHead(req: GenerationRequest): ResponseHead {
  return {
    id: `${req.kind === 'chat' ? 'chatcmpl' : 'cmpl'}-${randomUUID().replace(/-/g, '')}`,
    created: Math.floor(Date.now() / 1000),
    model: req.model,
  };
}

export function usageOf(r: Pick<GenerationResult, 'promptTokens' | 'completionTokens'>): Usage {
  return {
    prompt_tokens: r.promptTokens,
    completion_tokens: r.completionTokens,
    total_tokens: r.promptTokens + r.completionTokens,
  };
}

const tokenText = (tok: Tokenizer, id: number) => tok.decode([id]);

function completionLogprobs(tok: Tokenizer, lps: readonly TokenLogprob[], top: number, offset0 = 0) {
  const tokens = lps.map((l) => tokenText(tok, l.id));
  const text_offset: number[] = [];
  let at = offset0;
  for (const t of tokens) {
    text_offset.push(at);
    at += t.length;
  }
  return {
    tokens,
    token_logprobs: lps.map((l) => l.logprob),
    top_logprobs:
      top > 0 ? lps.map((l) => Object.fromEntries(l.top.map((a) => [tokenText(tok, a.id), a.logprob]))) : null,
    text_offset,
  };
}

function chatLogprobs(tok: Tokenizer, lps: readonly TokenLogprob[]) {
  const entry = (id: number, logprob: number) => {
    const token = tokenText(tok, id);
    return { token, logprob, bytes: Array.from(Buffer.from(token, 'utf8')) };
  };
  return {
    content: lps.map((l) => ({ ...entry(l.id, l.logprob), top_logprobs: l.top.map((a) => entry(a.id, a.logprob)) })),
    refusal: null,
  };
}

function tokenIds(req: GenerationRequest, c: ChoiceResult) {
  return req.returnTokenIds ? { prompt_token_ids: Array.from(c.promptIds), token_ids: c.ids } : {};
}

/** The whole (non-streamed) response body. */
export function responseBody(
  req: GenerationRequest,
  head: ResponseHead,
  tok: Tokenizer,
  r: GenerationResult,
): Record<string, unknown> {
  const top = req.logprobs ?? 0;
  const choices = r.choices.map((c) =>
    req.kind === 'chat'
      ? {
          index: c.index,
          message: { role: 'assistant', content: c.text, refusal: null },
          logprobs: c.logprobs ? chatLogprobs(tok, c.logprobs) : null,
          finish_reason: c.finishReason,
          stop_reason: c.stopReason,
          ...tokenIds(req, c),
        }
      : {
          index: c.index,
          text: c.text,
          logprobs: c.logprobs ? completionLogprobs(tok, c.logprobs, top) : null,
          finish_reason: c.finishReason,
          stop_reason: c.stopReason,
          ...tokenIds(req, c),
        },
  );
  return {
    ...head,
    object: req.kind === 'chat' ? 'chat.completion' : 'text_completion',
    system_fingerprint: null,
    choices,
    usage: usageOf(r),
  };
}

/** Builds a streamed response's chunks (one per delta), keeping each choice's text offset for completions log-probs. */
export class ChunkWriter {
  private readonly offsets = new Map<number, number>();
  private readonly started = new Set<number>();

  constructor(
    private readonly req: GenerationRequest,
    private readonly head: ResponseHead,
    private readonly tok: Tokenizer,
  ) {}

  private wrap(choices: unknown[], extra: Record<string, unknown> = {}): Record<string, unknown> {
    return {
      ...this.head,
      object: this.req.kind === 'chat' ? 'chat.completion.chunk' : 'text_completion',
      system_fingerprint: null,
      choices,
      ...extra,
    };
  }

  /** The chat stream's opening chunk of a choice: the assistant role. */
  opening(index: number): Record<string, unknown> | undefined {
    if (this.req.kind !== 'chat' || this.started.has(index)) return undefined;
    this.started.add(index);
    return this.wrap([{ index, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }]);
  }

  chunk(d: ChoiceDelta): Record<string, unknown> {
    const finish = d.finish
      ? { finish_reason: d.finish.reason, stop_reason: d.finish.stopReason }
      : { finish_reason: null };
    if (this.req.kind === 'chat') {
      const lp = d.logprobs ? chatLogprobs(this.tok, d.logprobs) : null;
      return this.wrap([
        { index: d.index, delta: d.text || !d.finish ? { content: d.text } : {}, logprobs: lp, ...finish },
      ]);
    }
    const at = this.offsets.get(d.index) ?? 0;
    const lp = d.logprobs ? completionLogprobs(this.tok, d.logprobs, this.req.logprobs ?? 0, at) : null;
    if (lp) this.offsets.set(d.index, at + lp.tokens.reduce((a, t) => a + t.length, 0));
    return this.wrap([{ index: d.index, text: d.text, logprobs: lp, ...finish }]);
  }

  /** The usage chunk (stream_options.include_usage): no choices. */
  usage(r: GenerationResult): Record<string, unknown> {
    return this.wrap([], { usage: usageOf(r) });
  }
}
