// Remote rollouts (lib/rollout/remote.ts + remote-openai.ts) against `rift serve` on 127.0.0.1 through the official
// openai client: records like local ones (plus what the server said), re-tokenized for training; an interrupted
// run, a torn last line, a 429 / 500 / dropped connection (a proxy in front of the server) and a refused request
// all end in the file an unbroken run writes; resuming with another served model or over local records is an
// error; the chat API's prompt must count the local prompt's tokens.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import type { Problem } from '../lib/data/problems';
import { generate } from '../lib/engine/sampler';
import { Tokenizer } from '../lib/engine/tokenizer';
import { demoProblems } from '../lib/demo/demo';
import { buildPrompts, exampleFromRecord, makeScorer, PromptFormat, readPromptFormatFile } from '../lib/loop';
import {
  requestSeed,
  runRemoteRollouts,
  type RemoteRolloutOptions,
  type RemoteRolloutRecord,
} from '../lib/rollout/remote';
import { checkServedModel, openAIClient, openAISampler } from '../lib/rollout/remote-openai';
import { runRollouts } from '../lib/rollout/rollout';
import { readRollouts } from '../lib/rollout/store';
import { closedPort, proxy, serveDir, tinyChatDir, TINY_CHAT_TEMPLATE, TINY_DIR, type Served } from './helpers/serve';

const K = 4;
const problems = demoProblems(6, 0).train;
const score = makeScorer();
const params = { temperature: 1.2, maxNewTokens: 40, seed: 3 };
let s: Served;
let tok: Tokenizer;
let format: PromptFormat;
let prompts: Map<string, Int32Array>;
let dir: string;
let n = 0;
const fileName = () => path.join(dir, `r${n++}.jsonl`);

/** A sampler through the openai client at `server` (a base URL), with its counters. */
const remote = (
  server: string,
  o: { maxRetries?: number; api?: 'completions' | 'chat'; logprobs?: boolean; model?: string } = {},
) => {
  const ro = { server, model: o.model ?? 'tiny', maxRetries: o.maxRetries ?? 0, api: o.api, logprobs: o.logprobs };
  const c = openAIClient(ro);
  return { sampler: openAISampler(c.client, ro), counters: c.counters, client: c.client };
};

const opts = (over: Partial<RemoteRolloutOptions<Problem>> = {}): RemoteRolloutOptions<Problem> => ({
  sampler: remote(s.baseURL).sampler,
  servedModel: 'tiny',
  tokenizer: tok,
  problems,
  k: K,
  params,
  file: fileName(),
  score,
  promptFor: (p) => ({ ids: prompts.get(p.id)! }),
  promptFormat: format.spec,
  concurrency: 3,
  ...over,
});

let reference: { text: string; records: RemoteRolloutRecord[] };
beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rift-remote-'));
  s = await serveDir(TINY_DIR, 'tiny');
  tok = s.tokenizer;
  format = new PromptFormat(readPromptFormatFile(TINY_DIR)!, tok);
  prompts = buildPrompts(format, problems);
  const o = opts();
  const r = await runRemoteRollouts(o);
  expect(r).toMatchObject({ generated: problems.length * K, reused: 0 });
  reference = { text: fs.readFileSync(o.file, 'utf8'), records: r.records as RemoteRolloutRecord[] };
}, 60_000);
afterAll(async () => {
  await s?.server.close({ graceMs: 0 });
  fs.rmSync(dir, { recursive: true, force: true });
});

test("records: the server's samples for the request seeds, in problem order, re-tokenized for training", async () => {
  const lines = reference.text
    .trimEnd()
    .split('\n')
    .map((l) => JSON.parse(l) as RemoteRolloutRecord);
  expect(lines).toEqual(reference.records);
  expect(lines.map((r) => `${r.problemId}:${r.sampleIndex}`)).toEqual(
    problems.flatMap((p) => [0, 1, 2, 3].map((i) => `${p.id}:${i}`)),
  );
  expect(Object.keys(lines[0])).toEqual([
    'problemId',
    'sampleIndex',
    'text',
    'tokens',
    'reward',
    'correct',
    'extracted',
    'finishReason',
    'params',
    'promptFormat',
    'promptTokens',
    'promptHash',
    'remote',
  ]);
  expect(lines[0].params).toEqual({ temperature: 1.2, topK: 0, topP: 1, maxNewTokens: 40, seed: 3 });
  for (const p of problems.slice(0, 2)) {
    // rift serve samples choice i with the stream (request seed, prompt 0, i)
    const [ref] = await generate(s.model, tok, [prompts.get(p.id)!], {
      k: K,
      maxNewTokens: 40,
      temperature: 1.2,
      seed: requestSeed(3, p.id, 0),
      promptKeys: [0],
    });
    expect(lines.filter((r) => r.problemId === p.id).map((r) => r.text)).toEqual(ref.samples.map((x) => x.text));
  }
  for (const r of lines) {
    expect(r.remote).toEqual({ model: 'tiny', finishReason: r.finishReason, stopReason: null });
    const p = problems.find((x) => x.id === r.problemId)!;
    const e = exampleFromRecord(r, p, format)!;
    expect(e.responseIds.length).toBe(r.tokens); // what training puts after the prompt
    expect(r.promptTokens).toBe(prompts.get(p.id)!.length);
  }
  expect(new Set(lines.map((r) => r.text)).size).toBeGreaterThan(lines.length / 2);
});

test('an interrupted run resumes to the bytes of an unbroken one (only the missing problems are requested)', async () => {
  const o = opts();
  let calls = 0;
  await expect(
    runRemoteRollouts({
      ...o,
      onProgress: () => {
        if (++calls === 2) throw new Error('killed');
      },
    }),
  ).rejects.toThrow('killed');
  expect(fs.readFileSync(o.file, 'utf8')).toBe(
    reference.text
      .split('\n')
      .slice(0, 2 * K)
      .join('\n') + '\n',
  );
  const px = await proxy(s.server.url, () => 'pass');
  try {
    const seen: string[] = [];
    const r = await runRemoteRollouts({
      ...o,
      sampler: remote(`${px.url}/v1`).sampler,
      onProgress: (p) => {
        seen.push(p.problemId);
      },
    });
    expect(seen).toEqual(problems.slice(2).map((p) => p.id));
    expect(px.seen).toHaveLength(4);
    expect(r).toMatchObject({ generated: 4 * K, reused: 2 * K });
    expect(fs.readFileSync(o.file, 'utf8')).toBe(reference.text);
  } finally {
    await px.close();
  }
});

test('requests that finish out of order are appended in problem order, at most `concurrency` in flight', async () => {
  const real = remote(s.baseURL).sampler;
  let inFlight = 0,
    most = 0;
  const finished: string[] = [];
  const o = opts({
    sampler: async (r) => {
      most = Math.max(most, ++inFlight);
      if (r.problemId === problems[0].id || r.problemId === problems[3].id)
        await new Promise((w) => setTimeout(w, 150));
      try {
        return await real(r);
      } finally {
        inFlight--;
        finished.push(r.problemId);
      }
    },
  });
  await runRemoteRollouts(o);
  expect(finished[0]).not.toBe(problems[0].id);
  expect(most).toBe(3);
  expect(fs.readFileSync(o.file, 'utf8')).toBe(reference.text);
});

test('a torn last line is cut off and its problem completed; a complete file reruns to nothing', async () => {
  const o = opts();
  const lines = reference.text.split('\n');
  const torn = lines[6].slice(0, 40);
  fs.writeFileSync(o.file, lines.slice(0, 6).join('\n') + '\n' + torn);
  const r = await runRemoteRollouts(o);
  expect(r).toMatchObject({ droppedBytes: Buffer.byteLength(torn), reused: 6 });
  expect(fs.readFileSync(o.file, 'utf8')).toBe(reference.text);
  expect(readRollouts(o.file)).toEqual(reference.records);
  expect(await runRemoteRollouts(o)).toMatchObject({ generated: 0, reused: problems.length * K });
});

test('a 429, a 500 and a dropped connection are retried (backoff, Retry-After) and change nothing', async () => {
  let posts = 0;
  const px = await proxy(s.server.url, (_i, method) => {
    if (method !== 'POST') return 'pass';
    posts++;
    if (posts === 1)
      return {
        status: 429,
        headers: { 'retry-after-ms': '5' },
        body: { error: { message: 'slow down', type: 'rate_limit_error', param: null, code: null } },
      };
    if (posts === 3) return { status: 500, headers: { 'retry-after-ms': '5' } };
    if (posts === 5) return 'drop';
    return 'pass';
  });
  try {
    const rm = remote(`${px.url}/v1`, { maxRetries: 3 });
    const o = opts({ sampler: rm.sampler });
    await runRemoteRollouts(o);
    expect(fs.readFileSync(o.file, 'utf8')).toBe(reference.text);
    expect(rm.counters).toEqual({
      attempts: problems.length + 3,
      rateLimited: 1,
      serverErrors: 1,
      connectionErrors: 1,
    });
  } finally {
    await px.close();
  }
});

test("a refused request stops the run: the problems before it are kept, the error names it and the server's message", async () => {
  const bad = problems[2];
  const px = await proxy(s.server.url, (_i, method, _p, body) =>
    method === 'POST' &&
    JSON.stringify((body as { prompt: number[] }).prompt) === JSON.stringify(Array.from(prompts.get(bad.id)!))
      ? {
          status: 400,
          body: {
            error: {
              message: "This model's maximum context length is 8 tokens.",
              type: 'invalid_request_error',
              param: null,
              code: 'context_length_exceeded',
            },
          },
        }
      : 'pass',
  );
  try {
    const o = opts({ sampler: remote(`${px.url}/v1`, { maxRetries: 3 }).sampler });
    await expect(runRemoteRollouts(o)).rejects.toThrow(
      `--server ${px.url}/v1: problem ${JSON.stringify(bad.id)}: the server answered 400 This model's maximum context length is 8 tokens.`,
    );
    expect(fs.readFileSync(o.file, 'utf8')).toBe(
      reference.text
        .split('\n')
        .slice(0, 2 * K)
        .join('\n') + '\n',
    );
    expect(px.seen.filter((x) => x.startsWith('POST'))).toHaveLength(3); // not retried; nothing new started after it
    await runRemoteRollouts({ ...o, sampler: remote(s.baseURL).sampler });
    expect(fs.readFileSync(o.file, 'utf8')).toBe(reference.text);
  } finally {
    await px.close();
  }
});

test('resuming from another served model, or over local samples, is an error and leaves the file alone', async () => {
  const o = opts();
  fs.writeFileSync(o.file, reference.text);
  await expect(runRemoteRollouts({ ...o, servedModel: 'tiny-2', k: K + 1 })).rejects.toThrow(
    `${o.file}: record 1 (problem ${JSON.stringify(problems[0].id)}, sample 0) was sampled from the served model "tiny", this run samples from "tiny-2"; use another file`,
  );
  expect(fs.readFileSync(o.file, 'utf8')).toBe(reference.text);
  const local = fileName();
  await runRollouts({
    model: s.model,
    tokenizer: tok,
    problems: problems.slice(0, 1),
    k: 1,
    params,
    file: local,
    score,
    promptFor: (p) => prompts.get(p.id)!,
    promptFormat: format.spec,
  });
  const before = fs.readFileSync(local, 'utf8');
  await expect(runRemoteRollouts({ ...o, file: local })).rejects.toThrow(
    /record 1 \(problem .*, sample 0\) was sampled locally; this run samples from the served model "tiny"; use another file/,
  );
  expect(fs.readFileSync(local, 'utf8')).toBe(before);
  await expect(runRemoteRollouts({ ...o, params: { ...params, seed: 4 } })).rejects.toThrow(
    /was sampled with .*"seed":3.*this run uses .*"seed":4/,
  );
});

test('one sample per request (servers that ignore n); a server that ignores n is named', async () => {
  const rm = remote(s.baseURL);
  const o = opts({ perRequest: 1, sampler: rm.sampler });
  const r = await runRemoteRollouts(o);
  expect(rm.counters.attempts).toBe(problems.length * K);
  expect(r.records.map((x) => x.sampleIndex)).toEqual(problems.flatMap(() => [0, 1, 2, 3]));
  // a record lost from the middle: only its sample is asked for again, with its own seed, and comes back the same
  const lines = fs.readFileSync(o.file, 'utf8').split('\n');
  const dropped = lines.splice(5, 1)[0];
  fs.writeFileSync(o.file, lines.join('\n'));
  const again = remote(s.baseURL);
  const r2 = await runRemoteRollouts({ ...o, sampler: again.sampler });
  expect(again.counters.attempts).toBe(1);
  expect(r2.generated).toBe(1);
  expect(fs.readFileSync(o.file, 'utf8').trimEnd().split('\n').pop()).toBe(dropped);

  const one = opts({ sampler: async () => ({ choices: [{ text: '1', finishReason: 'stop' }] }) });
  await expect(runRemoteRollouts(one)).rejects.toThrow(
    `problem ${JSON.stringify(problems[0].id)} (samples 0…3): the server returned 1 choice(s) for n = 4 (it ignores n: send one sample per request)`,
  );
  expect(fs.existsSync(one.file)).toBe(false);
});

test("the server's log-probs are recorded when asked for", async () => {
  const o = opts({ sampler: remote(s.baseURL, { logprobs: true }).sampler, problems: problems.slice(0, 2) });
  const r = await runRemoteRollouts(o);
  for (const rec of r.records as RemoteRolloutRecord[]) {
    expect(rec.remote.logprobs!.length).toBe(rec.remote.tokens);
    expect(rec.remote.tokens).toBe(rec.tokens);
    expect(rec.remote.logprobs!.every((x) => x <= 0 && Number.isFinite(x))).toBe(true);
  }
  // the same samples as without log-probs
  expect(r.records.map((x) => x.text)).toEqual(reference.records.slice(0, 2 * K).map((x) => x.text));
});

describe('the chat API', () => {
  let chatDir: string, otherDir: string;
  let chat: Served, other: Served;
  beforeAll(async () => {
    chatDir = tinyChatDir();
    otherDir = tinyChatDir(TINY_CHAT_TEMPLATE.replace("{{ m['content'] }};", "{{ m['content'] }};;"));
    chat = await serveDir(chatDir, 'tiny-chat');
    other = await serveDir(otherDir, 'tiny-chat');
  });
  afterAll(async () => {
    await chat?.server.close({ graceMs: 0 });
    await other?.server.close({ graceMs: 0 });
    for (const d of [chatDir, otherDir]) fs.rmSync(d, { recursive: true, force: true });
  });

  test("messages rendered by the server's template; its prompt token count must be the local one", async () => {
    const ctok = Tokenizer.load(chatDir);
    const cf = new PromptFormat({ format: 'chat', template: '{problem}', system: '1+1=2' }, ctok);
    const cp = buildPrompts(cf, problems);
    const base = opts({
      tokenizer: ctok,
      servedModel: 'tiny-chat',
      promptFormat: cf.spec,
      problems: problems.slice(0, 3),
      promptFor: (p) => ({ ids: cp.get(p.id)!, messages: cf.messages(p) }),
    });
    const r = await runRemoteRollouts({
      ...base,
      sampler: remote(chat.baseURL, { api: 'chat', model: 'tiny-chat' }).sampler,
    });
    // the same samples as the completions API with the local prompt ids
    const viaIds = await runRemoteRollouts({
      ...base,
      file: fileName(),
      sampler: remote(chat.baseURL, { model: 'tiny-chat' }).sampler,
    });
    expect(r.records.map((x) => x.text)).toEqual(viaIds.records.map((x) => x.text));
    const o = {
      ...base,
      file: fileName(),
      sampler: remote(other.baseURL, { api: 'chat', model: 'tiny-chat' }).sampler,
    };
    await expect(runRemoteRollouts(o)).rejects.toThrow(
      `problem ${JSON.stringify(problems[0].id)} (samples 0…3): the server counted ${cp.get(problems[0].id)!.length + 1} prompt tokens, the local tokenizer and prompt format give ` +
        `${cp.get(problems[0].id)!.length}: the served model's tokenizer or chat template differs from the local model's`,
    );
    expect(fs.existsSync(o.file)).toBe(false);
  });
});

describe('checking the server first', () => {
  test('the served model is listed with its context; another name, a wrong base URL and no server are errors naming them', async () => {
    const { client } = remote(s.baseURL);
    expect(await checkServedModel(client, { server: s.baseURL, model: 'tiny' })).toEqual({
      models: ['tiny'],
      maxModelLen: 256,
    });
    await expect(checkServedModel(client, { server: s.baseURL, model: 'Qwen/Qwen2.5-Math-1.5B' })).rejects.toThrow(
      `--served-model: "Qwen/Qwen2.5-Math-1.5B" is not served by ${s.baseURL} (it serves "tiny")`,
    );
    const wrong = `${s.server.url}/api`;
    await expect(checkServedModel(remote(wrong).client, { server: wrong, model: 'tiny' })).rejects.toThrow(
      /GET .*\/api\/models answered 404: not an OpenAI base URL\?/,
    );
    const none = `http://127.0.0.1:${await closedPort()}/v1`;
    await expect(
      checkServedModel(remote(none, { maxRetries: 1 }).client, { server: none, model: 'tiny' }),
    ).rejects.toThrow(
      `--server ${none}: listing the served models: cannot reach the server (ECONNREFUSED; after 1 retries)`,
    );
  });

  test('bad options', async () => {
    await expect(runRemoteRollouts({ ...opts(), concurrency: 0 })).rejects.toThrow(
      'concurrency: must be an integer ≥ 1, got 0',
    );
    await expect(runRemoteRollouts({ ...opts(), sampler: undefined as unknown as never })).rejects.toThrow(TypeError);
    await expect(runRemoteRollouts({ ...opts(), servedModel: '' })).rejects.toThrow(
      'servedModel: must be a non-empty string',
    );
    expect(() => openAIClient({ server: 'no url', model: 'm' })).toThrow('--server: "no url" is not a URL');
    expect(() => openAIClient({ server: 'localhost:8000', model: 'm' })).toThrow(
      '--server: localhost:8000: must be an http:// or https:// URL',
    );
    expect(() => openAIClient({ server: 'ftp://x/v1', model: 'm' })).toThrow('must be an http:// or https:// URL');
    expect(openAIClient({ server: 'http://127.0.0.1:8000', model: 'm' }).baseURL).toBe('http://127.0.0.1:8000/v1');
  });
});
