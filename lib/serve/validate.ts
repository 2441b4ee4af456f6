// Request validation of `rift serve`: an OpenAI /v1/completions or /v1/chat/completions body → a GenerationRequest
// (prompt token ids and checked sampling parameters), or an ApiError (400/404) naming the field.
//
// Prompts. Completions take text (encoded with the tokenizer's post-processor, as transformers' tokenizer(text) and
// vLLM do; `add_special_tokens: false` turns it off) or token ids, one prompt or a list. Chat messages are rendered
// with the model's chat template exactly as lib/loop/prompt.ts's PromptFormat renders chat prompts: the template
// over the messages with the generation prompt, encoded without the post-processor (the template writes its own
// special tokens).
//
// Parameters: n, temperature, top_p, max_tokens (chat: also max_completion_tokens), stop, seed, logprobs
// (completions: the number of alternatives, 0–20; chat: logprobs + top_logprobs), stream, stream_options, and the
// vLLM extensions top_k, stop_token_ids, ignore_eos, add_special_tokens, return_token_ids. Parameters that would
// change the output and that the engine does not implement (penalties, logit_bias, echo, suffix, best_of ≠ n,
// tools, response formats other than text) are refused; unknown fields are ignored, as vLLM does.
import type { ChatMessage, Tokenizer } from '../engine/tokenizer';
import { ApiError, badParam } from './errors';

/** What validation needs to know about the served model. */
export interface ServeContext {
  /** The name clients pass as `model`. */
  servedModelName: string;
  tokenizer: Tokenizer;
  /** The model's vocab_size (token ids must be below it). */
  vocabSize: number;
  /** max_position_embeddings: prompt + max_tokens must fit. */
  contextLength: number;
  /** Most choices per prompt (n). */
  maxN: number;
  /** Most prompts in one completions request. */
  maxPrompts: number;
}

export interface GenerationRequest {
  kind: 'completion' | 'chat';
  model: string;
  /** One prompt for chat; one or more for completions (choice index = prompt × n + i). */
  prompts: Int32Array[];
  n: number;
  temperature: number;
  topP: number;
  /** 0: off. */
  topK: number;
  maxTokens: number;
  /** Strings that end a choice (excluded from its text, as OpenAI does). */
  stop: string[];
  /** Token ids that end a choice besides the eos tokens (vLLM's stop_token_ids). */
  stopTokenIds: number[];
  /** Do not stop on the eos tokens (vLLM's ignore_eos). */
  ignoreEos: boolean;
  /** undefined: the server draws one. */
  seed?: number;
  /** null: no log-probs; else the number of most likely alternatives per token (0–20). */
  logprobs: number | null;
  stream: boolean;
  includeUsage: boolean;
  /** Add prompt_token_ids and token_ids to each choice (vLLM's return_token_ids). */
  returnTokenIds: boolean;
}

const MAX_TOP_LOGPROBS = 20;
const MAX_STOP = 16;
/** OpenAI's default max_tokens of /v1/completions. */
export const COMPLETION_DEFAULT_MAX_TOKENS = 16;

type Body = Record<string, unknown>;
const isObj = (v: unknown): v is Body => typeof v === 'object' && v !== null && !Array.isArray(v);
const kind = (v: unknown) => (v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v);

function number(
  b: Body,
  key: string,
  def: number,
  min: number,
  max: number,
  opts: { int?: boolean; openMin?: boolean } = {},
): number {
  const v = b[key];
  if (v === undefined || v === null) return def;
  if (typeof v !== 'number' || !Number.isFinite(v))
    throw badParam(key, `must be a number, got ${kind(v)}`, 'invalid_type');
  if (opts.int && !Number.isSafeInteger(v)) throw badParam(key, `must be an integer, got ${v}`);
  if (v < min || v > max || (opts.openMin && v === min))
    throw badParam(key, `must be in ${opts.openMin ? '(' : '['}${min}, ${max}], got ${v}`);
  return v;
}

function bool(b: Body, key: string, def: boolean): boolean {
  const v = b[key];
  if (v === undefined || v === null) return def;
  if (typeof v !== 'boolean') throw badParam(key, `must be a boolean, got ${kind(v)}`, 'invalid_type');
  return v;
}

/** Fields that would change the output and are not implemented: refused unless at their neutral value. */
function refuseUnsupported(b: Body): void {
  const neutral: [string, (v: unknown) => boolean][] = [
    ['presence_penalty', (v) => v === 0],
    ['frequency_penalty', (v) => v === 0],
    ['repetition_penalty', (v) => v === 1],
    ['min_p', (v) => v === 0],
    ['logit_bias', (v) => isObj(v) && Object.keys(v).length === 0],
    ['echo', (v) => v === false],
    ['suffix', (v) => v === ''],
    ['tools', (v) => Array.isArray(v) && v.length === 0],
    ['functions', (v) => Array.isArray(v) && v.length === 0],
    ['response_format', (v) => isObj(v) && v.type === 'text'],
  ];
  for (const [key, ok] of neutral) {
    const v = b[key];
    if (v !== undefined && v !== null && !ok(v))
      throw badParam(key, 'is not supported by rift serve', 'unsupported_parameter');
  }
}

function checkModel(b: Body, ctx: ServeContext): string {
  const m = b.model;
  if (typeof m !== 'string' || m === '')
    throw badParam('model', `must be the served model's name (${JSON.stringify(ctx.servedModelName)})`, 'invalid_type');
  if (m !== ctx.servedModelName)
    throw new ApiError(
      404,
      `The model \`${m}\` does not exist. This server serves ${JSON.stringify(ctx.servedModelName)}.`,
      'not_found_error',
      'model',
      'model_not_found',
    );
  return m;
}

function checkIds(ids: unknown[], where: string, ctx: ServeContext): Int32Array {
  ids.forEach((t, j) => {
    if (!Number.isSafeInteger(t) || (t as number) < 0 || (t as number) >= ctx.vocabSize)
      throw badParam(where, `token ${j} = ${JSON.stringify(t)} is not a token id in [0, ${ctx.vocabSize})`);
  });
  return Int32Array.from(ids as number[]);
}

function encodePrompts(b: Body, ctx: ServeContext): Int32Array[] {
  const p = b.prompt;
  const addSpecial = bool(b, 'add_special_tokens', true);
  const text = (s: string) => ctx.tokenizer.encode(s, { addSpecialTokens: addSpecial });
  const isIds = (v: unknown): v is unknown[] =>
    Array.isArray(v) && v.length > 0 && v.every((x) => typeof x === 'number');
  let out: Int32Array[];
  if (typeof p === 'string') out = [text(p)];
  else if (isIds(p)) out = [checkIds(p, 'prompt', ctx)];
  else if (Array.isArray(p) && p.length > 0 && p.every((x) => typeof x === 'string')) out = (p as string[]).map(text);
  else if (Array.isArray(p) && p.length > 0 && p.every(isIds))
    out = (p as unknown[][]).map((x, i) => checkIds(x, `prompt[${i}]`, ctx));
  else
    throw badParam(
      'prompt',
      'must be a string, a list of strings, a list of token ids or a list of such lists (none empty)',
      'invalid_type',
    );
  if (out.length > ctx.maxPrompts)
    throw badParam('prompt', `holds ${out.length} prompts; this server takes at most ${ctx.maxPrompts} per request`);
  out.forEach((ids, i) => {
    if (ids.length === 0) throw badParam(out.length > 1 ? `prompt[${i}]` : 'prompt', 'has no tokens');
  });
  return out;
}

function messageText(m: Body, i: number): string {
  const c = m.content;
  if (typeof c === 'string') return c;
  if (Array.isArray(c)) {
    return c
      .map((part, j) => {
        if (!isObj(part) || part.type !== 'text' || typeof part.text !== 'string')
          throw badParam(
            `messages[${i}].content[${j}]`,
            'only {type: "text", text} parts are supported (this model reads text)',
            'unsupported_parameter',
          );
        return part.text;
      })
      .join('\n');
  }
  throw badParam(`messages[${i}].content`, `must be a string or a list of text parts, got ${kind(c)}`, 'invalid_type');
}

/** The chat prompt: the model's chat template over the messages with the generation prompt (PromptFormat's rendering). */
export function renderChat(tokenizer: Tokenizer, messages: readonly ChatMessage[]): Int32Array {
  if (tokenizer.chatTemplate === undefined)
    throw new ApiError(
      400,
      'messages: this model has no chat template (no chat_template in tokenizer_config.json, no chat_template.jinja); use /v1/completions',
      'invalid_request_error',
      'messages',
      'no_chat_template',
    );
  let text: string;
  try {
    text = tokenizer.applyChatTemplate(messages, { addGenerationPrompt: true });
  } catch (e) {
    throw new ApiError(
      400,
      `messages: ${(e as Error).message}`,
      'invalid_request_error',
      'messages',
      'chat_template_error',
    );
  }
  return tokenizer.encode(text, { addSpecialTokens: false });
}

function chatPrompt(b: Body, ctx: ServeContext): Int32Array {
  const ms = b.messages;
  if (!Array.isArray(ms) || ms.length === 0)
    throw badParam('messages', 'must be a non-empty list of {role, content}', 'invalid_type');
  const messages: ChatMessage[] = ms.map((m, i) => {
    if (!isObj(m) || typeof m.role !== 'string' || m.role === '')
      throw badParam(`messages[${i}]`, 'must be {role: string, content}', 'invalid_type');
    return { role: m.role, content: messageText(m, i) };
  });
  const ids = renderChat(ctx.tokenizer, messages);
  if (ids.length === 0) throw badParam('messages', 'the rendered prompt has no tokens');
  return ids;
}

function stopStrings(b: Body): string[] {
  const s = b.stop;
  if (s === undefined || s === null) return [];
  const list = typeof s === 'string' ? [s] : s;
  if (
    !Array.isArray(list) ||
    list.length > MAX_STOP ||
    !list.every((x) => typeof x === 'string' && x.length > 0 && !x.includes('\uFFFD'))
  )
    throw badParam('stop', `must be a non-empty string or a list of at most ${MAX_STOP} of them`, 'invalid_type');
  return list as string[];
}

function stopTokenIds(b: Body, ctx: ServeContext): number[] {
  const s = b.stop_token_ids;
  if (s === undefined || s === null) return [];
  if (!Array.isArray(s))
    throw badParam('stop_token_ids', `must be a list of token ids, got ${kind(s)}`, 'invalid_type');
  return Array.from(checkIds(s, 'stop_token_ids', ctx));
}

function logprobs(b: Body, kindOf: 'completion' | 'chat'): number | null {
  if (kindOf === 'completion') {
    const v = b.logprobs;
    if (v === undefined || v === null) return null;
    return number(b, 'logprobs', 0, 0, MAX_TOP_LOGPROBS, { int: true });
  }
  const on = bool(b, 'logprobs', false);
  const top =
    b.top_logprobs === undefined || b.top_logprobs === null
      ? undefined
      : number(b, 'top_logprobs', 0, 0, MAX_TOP_LOGPROBS, { int: true });
  if (top !== undefined && !on) throw badParam('top_logprobs', 'needs logprobs: true');
  return on ? (top ?? 0) : null;
}

function includeUsage(so: unknown): boolean {
  if (!isObj(so) || so.include_usage === undefined || so.include_usage === null) return false;
  if (typeof so.include_usage !== 'boolean')
    throw badParam('stream_options.include_usage', `must be a boolean, got ${kind(so.include_usage)}`, 'invalid_type');
  return so.include_usage;
}

/** Checks a /v1/completions (kind 'completion') or /v1/chat/completions ('chat') body. */
export function parseRequest(body: unknown, kindOf: 'completion' | 'chat', ctx: ServeContext): GenerationRequest {
  if (!isObj(body))
    throw new ApiError(
      400,
      `the request body must be a JSON object, got ${kind(body)}`,
      'invalid_request_error',
      null,
      'invalid_body',
    );
  const model = checkModel(body, ctx);
  refuseUnsupported(body);
  const prompts = kindOf === 'chat' ? [chatPrompt(body, ctx)] : encodePrompts(body, ctx);
  const n = number(body, 'n', 1, 1, ctx.maxN, { int: true });
  const bestOf = body.best_of;
  if (bestOf !== undefined && bestOf !== null && bestOf !== n)
    throw badParam('best_of', 'is not supported by rift serve (only best_of = n)', 'unsupported_parameter');
  const longest = Math.max(...prompts.map((p) => p.length));
  const room = ctx.contextLength - longest;
  const key =
    kindOf === 'chat' && body.max_completion_tokens !== undefined && body.max_completion_tokens !== null
      ? 'max_completion_tokens'
      : 'max_tokens';
  const defMax = kindOf === 'chat' ? room : COMPLETION_DEFAULT_MAX_TOKENS;
  const what = kindOf === 'chat' ? 'messages' : 'prompt';
  if (room < 1)
    throw new ApiError(
      400,
      `This model's maximum context length is ${ctx.contextLength} tokens. However, the ${what} ${kindOf === 'chat' ? 'are' : 'is'} ${longest} tokens, which leaves no room for a completion.`,
      'invalid_request_error',
      what,
      'context_length_exceeded',
    );
  const maxTokens = number(body, key, defMax, 1, Number.MAX_SAFE_INTEGER, { int: true });
  if (longest + maxTokens > ctx.contextLength)
    throw new ApiError(
      400,
      `This model's maximum context length is ${ctx.contextLength} tokens. However, you requested ${longest + maxTokens} tokens ` +
        `(${longest} in the ${what}, ${maxTokens} for the completion). Please reduce the length of the ${what} or ${key}.`,
      'invalid_request_error',
      key,
      'context_length_exceeded',
    );
  const topK = number(body, 'top_k', 0, -1, Number.MAX_SAFE_INTEGER, { int: true });
  const seed =
    body.seed === undefined || body.seed === null
      ? undefined
      : number(body, 'seed', 0, Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER, { int: true });
  const stream = bool(body, 'stream', false);
  const so = body.stream_options;
  if (so !== undefined && so !== null) {
    if (!stream) throw badParam('stream_options', 'is only allowed with stream: true');
    if (!isObj(so)) throw badParam('stream_options', `must be an object, got ${kind(so)}`, 'invalid_type');
  }
  return {
    kind: kindOf,
    model,
    prompts,
    n,
    temperature: number(body, 'temperature', 1, 0, 2),
    topP: number(body, 'top_p', 1, 0, 1, { openMin: true }),
    topK: topK === -1 ? 0 : topK,
    maxTokens,
    stop: stopStrings(body),
    stopTokenIds: stopTokenIds(body, ctx),
    ignoreEos: bool(body, 'ignore_eos', false),
    ...(seed !== undefined ? { seed } : {}),
    logprobs: logprobs(body, kindOf),
    stream,
    includeUsage: includeUsage(so),
    returnTokenIds: bool(body, 'return_token_ids', false),
  };
}
