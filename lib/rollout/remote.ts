// Rollouts from a remote sampler (an OpenAI-compatible server through lib/rollout/remote-openai.ts): the same store,
// the same records and the same resume rules as local rollouts (lib/rollout/rollout.ts), with requests in flight
// concurrently.
//
// Requests. A problem's K samples are asked for in requests of `perRequest` samples (default K: one request with
// n = K); a request is made for every group holding a missing sample, and only the missing samples are kept. Each
// request carries its own seed, derived from (seed, problem id, first sample index), so a deterministic server
// (rift serve; vLLM with per-request seeds) gives the same samples on a rerun. At most `concurrency` requests are
// in flight, over at most `concurrency` problems; a problem's records are appended (one write) once it and every
// problem before it are done, so the file holds problems in order, as a local run writes them: an interrupted run
// resumed against a deterministic server ends with the bytes an unbroken run writes. When a request fails, no new
// one starts, the ones in flight settle, the problems completed before the failed one are appended, and the error
// is thrown.
//
// Records. `text` is what the server returned; `tokens` counts it re-tokenized with the local tokenizer (plus the
// eos token when the server stopped), which is what training puts after the prompt (lib/loop/examples.ts);
// finishReason is the server's when it is 'stop' or 'length'. `remote` keeps what the server said: the served
// model, its finish reason, its stop_reason (vLLM), and, when asked for, its per-token log-probs (and so its own
// token count). Resuming a store whose records come from another served model, or were sampled locally, is an
// error, as are other sampling parameters, another prompt format or other prompt tokens.
import type { ChatMessage } from '../engine/tokenizer';
import { Rng } from '../engine/sampler';
import { checkPromptSpec, promptHash, promptSpecKey, samePromptSpec, type PromptSpec } from '../data/prompt-spec';
import {
  checkK,
  checkProblems,
  checkScore,
  problemKey,
  resolveParams,
  rolloutStats,
  type ProblemLike,
  type RolloutParams,
  type RolloutProgress,
  type RolloutResult,
  type Scorer,
} from './rollout';
import { appendRollouts, openRollouts, sameParams, type RolloutRecord, type RolloutSamplingParams } from './store';

/** What a remote sampler needs of a prompt: its token ids, and the chat messages for a chat API. */
export interface RemotePrompt {
  ids: Int32Array;
  messages?: ChatMessage[];
}

/** One sample as the server returned it. */
export interface RemoteChoice {
  text: string;
  /** The server's finish_reason (null when it gave none). */
  finishReason: string | null;
  /** vLLM's stop_reason: the stop string or token id, null for eos; absent when the server does not say. */
  stopReason?: string | number | null;
  /** Per-token log-probs (when asked for and given). */
  logprobs?: number[];
  /** Tokens the server generated for this sample, when it says. */
  tokens?: number;
}

export interface RemoteRequest {
  problemId: string;
  prompt: RemotePrompt;
  /** Samples wanted. */
  n: number;
  /** The request's seed (31 bits). */
  seed: number;
  params: RolloutSamplingParams;
}

export interface RemoteResponse {
  choices: RemoteChoice[];
  /** The server's count of prompt tokens, when it gives one: checked against the local prompt. */
  promptTokens?: number;
}

export type RemoteSampler = (req: RemoteRequest) => Promise<RemoteResponse>;

/** What a remote record keeps of the server's answer. */
export interface RemoteInfo {
  /** The served model name the sample came from. */
  model: string;
  finishReason: string | null;
  stopReason?: string | number | null;
  tokens?: number;
  logprobs?: number[];
}

export type RemoteRolloutRecord = RolloutRecord & { remote: RemoteInfo };

export interface RemoteRolloutOptions<P extends ProblemLike> {
  sampler: RemoteSampler;
  /** Recorded in each record's `remote.model`; a resumed store must have the same. */
  servedModel: string;
  /** The local tokenizer: re-tokenizes the text (`tokens`). */
  tokenizer: {
    encode(text: string, opts?: { addSpecialTokens?: boolean }): Int32Array;
    readonly eosTokenIds: readonly number[];
  };
  problems: readonly P[];
  k: number;
  params: RolloutParams;
  file: string;
  score: Scorer<P>;
  /** The prompt of a problem (built before anything is requested or written). */
  promptFor: (problem: P) => RemotePrompt;
  promptFormat?: PromptSpec;
  /** Samples per request (default k). */
  perRequest?: number;
  /** Requests in flight (default 8). */
  concurrency?: number;
  onProgress?: (p: RolloutProgress) => void | Promise<void>;
  timestamps?: boolean;
  onWarning?: (message: string) => void;
}

/** The seed of the request for samples first… of a problem: 31 bits of the (seed, problem, first sample) stream. */
export function requestSeed(seed: number, problemId: string, first: number): number {
  return new Rng(seed, problemKey(problemId), first).nextU32() >>> 1;
}

function checkRemoteRecord(r: RolloutRecord, line: number, file: string, servedModel: string): void {
  const at = `${file}: record ${line} (problem ${JSON.stringify(r.problemId)}, sample ${r.sampleIndex})`;
  const remote = (r as Partial<RemoteRolloutRecord>).remote;
  if (remote === undefined || remote === null || typeof remote !== 'object')
    throw new Error(
      `${at} was sampled locally; this run samples from the served model ${JSON.stringify(servedModel)}; use another file`,
    );
  if (remote.model !== servedModel)
    throw new Error(
      `${at} was sampled from the served model ${JSON.stringify(remote.model)}, this run samples from ${JSON.stringify(servedModel)}; use another file`,
    );
}

const positive = (name: string, v: number | undefined, def: number) => {
  const x = v ?? def;
  if (!Number.isSafeInteger(x) || x < 1) throw new RangeError(`${name}: must be an integer ≥ 1, got ${v}`);
  return x;
};

/** Runs remote rollouts into `file` (see the file comment); returns what runRollouts returns. */
export async function runRemoteRollouts<P extends ProblemLike>(opts: RemoteRolloutOptions<P>): Promise<RolloutResult> {
  if (typeof opts !== 'object' || opts === null) throw new TypeError('options: must be an object');
  const { sampler, servedModel, tokenizer, problems, k, file, score, promptFor, onProgress } = opts;
  checkProblems(problems);
  checkK(k);
  if (typeof sampler !== 'function') throw new TypeError('sampler: must be a function (request) => Promise<response>');
  if (typeof servedModel !== 'string' || servedModel === '')
    throw new TypeError('servedModel: must be a non-empty string');
  if (typeof file !== 'string' || file.length === 0) throw new TypeError('file: must be a path');
  if (typeof score !== 'function')
    throw new TypeError('score: must be a function (problem, text) => {reward, correct, extracted}');
  if (typeof promptFor !== 'function')
    throw new TypeError('promptFor: must be a function (problem) => {ids, messages?}');
  const params = resolveParams(opts.params);
  const perRequest = Math.min(positive('perRequest', opts.perRequest, k), k);
  const concurrency = positive('concurrency', opts.concurrency, 8);
  if (opts.promptFormat !== undefined) checkPromptSpec(opts.promptFormat, 'promptFormat');
  const prompts = new Map<string, { prompt: RemotePrompt; hash: string }>();
  for (const p of problems) {
    const prompt = promptFor(p);
    if (typeof prompt !== 'object' || prompt === null || !(prompt.ids instanceof Int32Array))
      throw new TypeError(`promptFor: returned no {ids: Int32Array} for problem ${JSON.stringify(p.id)}`);
    if (prompt.ids.length === 0)
      throw new RangeError(`promptFor: the prompt of problem ${JSON.stringify(p.id)} has no tokens`);
    prompts.set(p.id, { prompt, hash: promptHash(prompt.ids) });
  }

  // what the store holds (same checks as a local run, plus the served model)
  const wanted = new Set(problems.map((p) => p.id));
  const { records: existing, droppedBytes, duplicates } = openRollouts(file, { onWarning: opts.onWarning });
  const done = new Map<string, Map<number, RolloutRecord>>();
  existing.forEach((r, i) => {
    if (!wanted.has(r.problemId) || r.sampleIndex >= k) return;
    const at = `${file}: record ${i + 1} (problem ${JSON.stringify(r.problemId)}, sample ${r.sampleIndex})`;
    if (!sameParams(r.params, params))
      throw new Error(
        `${at} was sampled with ${JSON.stringify(r.params)}, this run uses ${JSON.stringify(params)}; use another file`,
      );
    if (!samePromptSpec(r.promptFormat, opts.promptFormat))
      throw new Error(
        `${at} was sampled with the prompt format ${promptSpecKey(r.promptFormat)}, this run uses ${promptSpecKey(opts.promptFormat)}; use another file`,
      );
    const now = prompts.get(r.problemId)!;
    if (r.promptHash !== undefined && r.promptHash !== now.hash)
      throw new Error(
        `${at} was sampled after another prompt (${r.promptTokens} tokens, hash ${r.promptHash}) than this run builds ` +
          `(${now.prompt.ids.length} tokens, hash ${now.hash}): the problem text, the prompt format or the tokenizer changed; use another file`,
      );
    checkRemoteRecord(r, i + 1, file, servedModel);
    let m = done.get(r.problemId);
    if (!m) done.set(r.problemId, (m = new Map()));
    m.set(r.sampleIndex, r);
  });

  const eos = tokenizer.eosTokenIds.length > 0;
  const record = (
    problem: P,
    i: number,
    c: RemoteChoice,
    sc: Awaited<ReturnType<Scorer<P>>>,
    prompt: { prompt: RemotePrompt; hash: string },
  ): RemoteRolloutRecord => {
    const stopped = c.finishReason === 'stop';
    const remote: RemoteInfo = {
      model: servedModel,
      finishReason: c.finishReason,
      ...(c.stopReason !== undefined ? { stopReason: c.stopReason } : {}),
      ...(c.tokens !== undefined ? { tokens: c.tokens } : {}),
      ...(c.logprobs !== undefined ? { logprobs: c.logprobs } : {}),
    };
    return {
      problemId: problem.id,
      sampleIndex: i,
      text: c.text,
      tokens: tokenizer.encode(c.text, { addSpecialTokens: false }).length + (stopped && eos ? 1 : 0),
      reward: sc.reward,
      correct: sc.correct,
      ...(sc.extracted !== undefined ? { extracted: sc.extracted } : {}),
      ...(stopped || c.finishReason === 'length' ? { finishReason: c.finishReason as 'stop' | 'length' } : {}),
      params: { ...params },
      ...(opts.promptFormat !== undefined ? { promptFormat: opts.promptFormat } : {}),
      promptTokens: prompt.prompt.ids.length,
      promptHash: prompt.hash,
      remote,
      ...(opts.timestamps ? { ts: new Date().toISOString() } : {}),
    };
  };

  // a semaphore over requests
  let free = concurrency;
  const waiters: (() => void)[] = [];
  const acquire = () => (free > 0 ? (free--, Promise.resolve()) : new Promise<void>((r) => waiters.push(r)));
  const releaseSlot = () => {
    const w = waiters.shift();
    if (w) w();
    else free++;
  };
  let failed = false;
  let firstError: unknown;
  const cancelled = new Error('cancelled: an earlier request failed');

  /** The missing samples of one problem: requested, checked and scored (not yet appended). */
  const work = async (problem: P, missing: number[]): Promise<RolloutRecord[]> => {
    const prompt = prompts.get(problem.id)!;
    const groups = new Set(missing.map((i) => Math.floor(i / perRequest)));
    const byIndex = new Map<number, RolloutRecord>();
    await Promise.all(
      [...groups].map(async (g) => {
        await acquire();
        try {
          if (failed) throw cancelled;
          const first = g * perRequest,
            n = Math.min(perRequest, k - first);
          const what = `problem ${JSON.stringify(problem.id)} (samples ${first}…${first + n - 1})`;
          const res = await sampler({
            problemId: problem.id,
            prompt: prompt.prompt,
            n,
            seed: requestSeed(params.seed, problem.id, first),
            params,
          });
          if (!res || !Array.isArray(res.choices) || res.choices.length !== n)
            throw new Error(
              `${what}: the server returned ${res?.choices?.length ?? 'no'} choice(s) for n = ${n}` +
                (n > 1 && res?.choices?.length === 1 ? ' (it ignores n: send one sample per request)' : ''),
            );
          if (res.promptTokens !== undefined && res.promptTokens !== prompt.prompt.ids.length)
            throw new Error(
              `${what}: the server counted ${res.promptTokens} prompt tokens, the local tokenizer and prompt format give ${prompt.prompt.ids.length}: ` +
                `the served model's tokenizer or chat template differs from the local model's`,
            );
          for (let j = 0; j < n; j++) {
            const i = first + j;
            if (!missing.includes(i)) continue;
            const c = res.choices[j];
            if (typeof c?.text !== 'string') throw new Error(`${what}: choice ${j} has no text`);
            const sc = await score(problem, c.text);
            checkScore(sc, `problem ${JSON.stringify(problem.id)} sample ${i}`);
            byIndex.set(i, record(problem, i, c, sc, prompt));
          }
        } catch (e) {
          failed = true;
          if (e !== cancelled) firstError ??= e;
          throw e;
        } finally {
          releaseSlot();
        }
      }),
    );
    return missing.map((i) => byIndex.get(i)!);
  };

  const todo: { index: number; problem: P; missing: number[] }[] = [];
  let reused = 0;
  problems.forEach((problem, index) => {
    const have = done.get(problem.id);
    const missing: number[] = [];
    for (let i = 0; i < k; i++) if (!have?.has(i)) missing.push(i);
    reused += k - missing.length;
    if (missing.length) todo.push({ index, problem, missing });
  });

  // a window of problems in flight, appended in order
  let generated = 0,
    next = 0;
  const pending: { t: (typeof todo)[number]; p: Promise<RolloutRecord[]> }[] = [];
  const launch = () => {
    while (!failed && pending.length < concurrency && next < todo.length) {
      const t = todo[next++];
      const p = work(t.problem, t.missing);
      p.catch(() => undefined); // awaited in order below
      pending.push({ t, p });
    }
  };
  try {
    launch();
    while (pending.length) {
      const { t, p } = pending[0];
      const fresh = await p;
      pending.shift();
      appendRollouts(file, fresh);
      generated += fresh.length;
      let m = done.get(t.problem.id);
      if (!m) done.set(t.problem.id, (m = new Map()));
      for (const r of fresh) m.set(r.sampleIndex, r);
      if (onProgress)
        await onProgress({ problemId: t.problem.id, index: t.index, total: problems.length, records: fresh });
      launch();
    }
  } catch (e) {
    failed = true;
    await Promise.allSettled(pending.map((x) => x.p));
    throw firstError ?? e;
  }
  const all: RolloutRecord[] = [];
  for (const p of problems) for (let i = 0; i < k; i++) all.push(done.get(p.id)!.get(i)!);
  return { records: all, generated, reused, droppedBytes, duplicates, stats: rolloutStats(all) };
}
