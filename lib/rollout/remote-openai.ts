// The remote sampler over any OpenAI-compatible server (vLLM, SGLang, llama.cpp's server, `rift serve`), through
// the official `openai` client: its retries (exponential backoff with jitter, Retry-After honoured) on 408, 409,
// 429, 5xx, timeouts and dropped connections, `maxRetries` times per request.
//
//   completions  POST /v1/completions with the prompt as token ids: the server samples after exactly the tokens the
//                record's promptHash names (needs the served model's tokenizer to be the local one).
//   chat         POST /v1/chat/completions with the prompt format's messages: the server renders its own chat
//                template; its prompt token count (usage.prompt_tokens) must equal the local one.
//
// top_k is sent only when set (a vLLM/SGLang/llama.cpp extension that OpenAI itself refuses). Errors name the
// server and what failed: unreachable, a served model that is not there, a refused request (the server's status
// and message).
import OpenAI, { APIConnectionError, APIConnectionTimeoutError, APIError } from 'openai';
import type { RemoteChoice, RemoteRequest, RemoteResponse, RemoteSampler } from './remote';

export type RemoteApi = 'completions' | 'chat';

export interface OpenAIRemoteOptions {
  /** The server: its OpenAI base URL (http://host:8000/v1), or its root (then /v1 is added). */
  server: string;
  /** The served model name (vLLM's --served-model-name; the model path by default). */
  model: string;
  /** Default 'completions'. */
  api?: RemoteApi;
  /** Default: $OPENAI_API_KEY, else 'EMPTY' (what vLLM's examples use for a server without --api-key). */
  apiKey?: string;
  /** Retries per request (default 5). */
  maxRetries?: number;
  /** Per attempt, in ms (default 600 000). */
  timeoutMs?: number;
  /** Ask for and return per-token log-probs. */
  logprobs?: boolean;
  /** Names the server option in errors (default '--server'). */
  name?: string;
}

/** Counts of what the client did (for progress reports). */
export interface RemoteCounters {
  /** HTTP requests sent, retries included. */
  attempts: number;
  /** Responses with status 429 / ≥ 500, and attempts that got no response. */
  rateLimited: number;
  serverErrors: number;
  connectionErrors: number;
}

/** The base URL: /v1 is added to a bare server root. */
export function baseUrlOf(server: string, name = '--server'): string {
  let u: URL;
  try {
    u = new URL(server);
  } catch {
    throw new TypeError(`${name}: ${JSON.stringify(server)} is not a URL (e.g. http://127.0.0.1:8000/v1)`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:')
    throw new TypeError(`${name}: ${server}: must be an http:// or https:// URL`);
  if (u.pathname === '/' || u.pathname === '') u.pathname = '/v1';
  return u.toString().replace(/\/+$/, '');
}

/** A client for `o.server` that counts its attempts. */
export function openAIClient(o: OpenAIRemoteOptions): { client: OpenAI; counters: RemoteCounters; baseURL: string } {
  const baseURL = baseUrlOf(o.server, o.name);
  const counters: RemoteCounters = { attempts: 0, rateLimited: 0, serverErrors: 0, connectionErrors: 0 };
  const maxRetries = o.maxRetries ?? 5;
  if (!Number.isSafeInteger(maxRetries) || maxRetries < 0)
    throw new RangeError(`maxRetries: must be an integer ≥ 0, got ${o.maxRetries}`);
  const timeout = o.timeoutMs ?? 600_000;
  if (!Number.isSafeInteger(timeout) || timeout < 1)
    throw new RangeError(`timeoutMs: must be an integer ≥ 1, got ${o.timeoutMs}`);
  const counting: typeof fetch = async (input, init) => {
    counters.attempts++;
    try {
      const r = await fetch(input, init);
      if (r.status === 429) counters.rateLimited++;
      else if (r.status >= 500) counters.serverErrors++;
      return r;
    } catch (e) {
      counters.connectionErrors++;
      throw e;
    }
  };
  const client = new OpenAI({
    baseURL,
    apiKey: o.apiKey ?? process.env.OPENAI_API_KEY ?? 'EMPTY',
    maxRetries,
    timeout,
    fetch: counting,
  });
  return { client, counters, baseURL };
}

/** Why a connection failed, from the fetch error's causes (ECONNREFUSED, ENOTFOUND, …, else the innermost message). */
function connectionCause(e: unknown): string {
  let c: unknown = e,
    last = e instanceof Error ? e.message : String(e);
  for (let i = 0; i < 5 && c; i++) {
    const x = c as { code?: unknown; message?: unknown; cause?: unknown };
    if (typeof x.code === 'string' && /^E[A-Z]+$/.test(x.code)) return x.code;
    if (typeof x.message === 'string' && x.message) last = x.message;
    c = x.cause;
  }
  return last;
}

/** An error of the client as one line naming the server (and `what` was asked). */
export function describeRemoteError(
  e: unknown,
  server: string,
  what: string,
  retries: number,
  name = '--server',
): Error {
  if (e instanceof APIConnectionTimeoutError)
    return new Error(`${name} ${server}: ${what}: timed out (after ${retries} retries)`, { cause: e });
  if (e instanceof APIConnectionError)
    return new Error(
      `${name} ${server}: ${what}: cannot reach the server (${connectionCause(e)}; after ${retries} retries)`,
      { cause: e },
    );
  if (e instanceof APIError) {
    const retried =
      e.status === 429 || (e.status !== undefined && e.status >= 500) ? ` (after ${retries} retries)` : '';
    return new Error(`${name} ${server}: ${what}: the server answered ${e.message}${retried}`, { cause: e });
  }
  return e instanceof Error ? e : new Error(String(e));
}

/**
 * Checks that the server is up and serves `o.model` (GET /models); returns the model's context (vLLM's and rift
 * serve's max_model_len) when the server gives one.
 */
export async function checkServedModel(
  client: OpenAI,
  o: OpenAIRemoteOptions,
): Promise<{ maxModelLen?: number; models: string[] }> {
  const name = o.name ?? '--server';
  let list: { id: string; max_model_len?: unknown }[];
  try {
    list = (await client.models.list()).data as typeof list;
  } catch (e) {
    if (e instanceof APIError && e.status === 404)
      throw new Error(
        `${name} ${o.server}: GET ${client.baseURL}/models answered 404: not an OpenAI base URL? (e.g. http://127.0.0.1:8000/v1)`,
        { cause: e },
      );
    throw describeRemoteError(e, o.server, 'listing the served models', client.maxRetries, name);
  }
  const models = list.map((m) => m.id);
  const card = list.find((m) => m.id === o.model);
  if (!card)
    throw new Error(
      `--served-model: ${JSON.stringify(o.model)} is not served by ${o.server} (it serves ${models.map((m) => JSON.stringify(m)).join(', ') || 'no model'})`,
    );
  const len = card.max_model_len;
  return { models, ...(Number.isSafeInteger(len) && (len as number) > 0 ? { maxModelLen: len as number } : {}) };
}

const finish = (v: unknown): string | null => (typeof v === 'string' ? v : null);

function choiceOf(c: Record<string, unknown>, text: unknown, lps: number[] | undefined, what: string): RemoteChoice {
  if (typeof text !== 'string') throw new Error(`${what}: choice ${String(c.index)} has no text`);
  const stop = c.stop_reason;
  return {
    text,
    finishReason: finish(c.finish_reason),
    ...(stop === null || typeof stop === 'string' || typeof stop === 'number' ? { stopReason: stop } : {}),
    ...(lps ? { logprobs: lps, tokens: lps.length } : {}),
  };
}

/** In index order (servers may return choices in any order). */
const byIndex = <T extends { index: number }>(cs: T[]) => [...cs].sort((a, b) => a.index - b.index);

/** The RemoteSampler of lib/rollout/remote.ts over `client`. */
export function openAISampler(client: OpenAI, o: OpenAIRemoteOptions): RemoteSampler {
  const api = o.api ?? 'completions';
  return async (r: RemoteRequest): Promise<RemoteResponse> => {
    const what = `problem ${JSON.stringify(r.problemId)}`;
    const common = {
      model: o.model,
      n: r.n,
      temperature: r.params.temperature,
      top_p: r.params.topP,
      max_tokens: r.params.maxNewTokens,
      seed: r.seed,
      ...(r.params.topK > 0 ? { top_k: r.params.topK } : {}),
    };
    try {
      if (api === 'chat') {
        if (!r.prompt.messages)
          throw new TypeError(`${what}: the chat API needs the prompt's chat messages (use the chat prompt format)`);
        const res = await client.chat.completions.create({
          ...common,
          messages: r.prompt.messages as OpenAI.Chat.ChatCompletionMessageParam[],
          ...(o.logprobs ? { logprobs: true } : {}),
        });
        return {
          choices: byIndex(res.choices).map((c) =>
            choiceOf(
              c as unknown as Record<string, unknown>,
              c.message?.content,
              o.logprobs ? c.logprobs?.content?.map((t) => t.logprob) : undefined,
              what,
            ),
          ),
          ...(typeof res.usage?.prompt_tokens === 'number' ? { promptTokens: res.usage.prompt_tokens } : {}),
        };
      }
      const res = await client.completions.create({
        ...common,
        prompt: Array.from(r.prompt.ids),
        ...(o.logprobs ? { logprobs: 0 } : {}),
      });
      return {
        choices: byIndex(res.choices).map((c) =>
          choiceOf(
            c as unknown as Record<string, unknown>,
            c.text,
            o.logprobs ? c.logprobs?.token_logprobs?.filter((x): x is number => typeof x === 'number') : undefined,
            what,
          ),
        ),
        ...(typeof res.usage?.prompt_tokens === 'number' ? { promptTokens: res.usage.prompt_tokens } : {}),
      };
    } catch (e) {
      throw describeRemoteError(e, o.server, what, client.maxRetries, o.name);
    }
  };
}
