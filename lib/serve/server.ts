// `rift serve`: an OpenAI-compatible HTTP server on the engine, on node:http (no framework: three routes, SSE and a
// graceful shutdown need direct control of the sockets more than routing or schema plug-ins).
//
//   GET  /v1/models, /v1/models/{name}     the served model (with max_model_len, as vLLM)
//   POST /v1/completions                   lib/serve/validate.ts lists the parameters
//   POST /v1/chat/completions              messages rendered with the model's chat template (PromptFormat's way)
//   GET  /health                           200 while serving, 503 while shutting down
//
// Every request is validated (prompts tokenized, templates rendered, lengths checked) before it queues; the queue
// (lib/serve/queue.ts) runs one generation at a time and answers 429 with Retry-After when `maxQueue` requests
// already wait. Bodies are read up to `maxBodyBytes` (413 beyond). A client that disconnects aborts its request,
// waiting or running. close(): no new requests (503, Connection: close), the running and waiting ones finish
// within `graceMs`, then whatever is left is aborted and every socket closed.
import * as http from 'http';
import type { AddressInfo } from 'net';
import type { Tokenizer } from '../engine/tokenizer';
import { ApiError, asApiError } from './errors';
import { GenerationAborted, generationError, runGeneration, type ServeModel } from './generation';
import { EngineQueue, QueueClosedError, QueueFullError } from './queue';
import { ChunkWriter, responseBody, responseHead } from './responses';
import { parseRequest, type ServeContext } from './validate';

export interface ServeOptions {
  model: ServeModel;
  tokenizer: Tokenizer;
  /** The name clients pass as `model` (vLLM's --served-model-name). */
  servedModelName: string;
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 8000; 0 picks a free port. */
  port?: number;
  /** Requests that may wait while one runs (default 16); more get 429. */
  maxQueue?: number;
  /** Most choices per prompt (default 64). */
  maxN?: number;
  /** Most prompts per completions request (default 64). */
  maxPrompts?: number;
  /** Largest request body (default 8 MiB). */
  maxBodyBytes?: number;
  /** Default: the model's max_position_embeddings. */
  contextLength?: number;
  /** Told about failed generations and shutdown. */
  log?: (line: string) => void;
}

export interface ServerStats {
  requests: number;
  completed: number;
  rejected429: number;
  failed: number;
  /** Generations stopped because their client went away or the server shut down. */
  aborted: number;
  waiting: number;
  running: boolean;
}

export interface RiftServer {
  /** http://host:port (the OpenAI base URL is url + '/v1'). */
  readonly url: string;
  readonly port: number;
  readonly host: string;
  stats(): ServerStats;
  /** Graceful shutdown (see the file comment); resolves when every socket is closed. */
  close(opts?: { graceMs?: number }): Promise<void>;
}

const positiveInt = (name: string, v: number | undefined, def: number, min = 1) => {
  const x = v ?? def;
  if (!Number.isSafeInteger(x) || x < min) throw new RangeError(`${name}: must be an integer ≥ ${min}, got ${v}`);
  return x;
};

function send(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent) return;
  const data = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data), ...headers });
  res.end(data);
}

function readBody(req: http.IncomingMessage, limit: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > limit)
      return reject(
        new ApiError(
          413,
          `the request body is ${declared} bytes; this server takes at most ${limit}`,
          'invalid_request_error',
          null,
          'body_too_large',
        ),
      );
    const parts: Buffer[] = [];
    let n = 0,
      over = false;
    req.on('data', (d: Buffer) => {
      n += d.length;
      if (n > limit) over = true;
      else parts.push(d);
    });
    req.on('error', reject);
    req.on('end', () => {
      if (over)
        return reject(
          new ApiError(
            413,
            `the request body is larger than ${limit} bytes`,
            'invalid_request_error',
            null,
            'body_too_large',
          ),
        );
      const text = Buffer.concat(parts).toString('utf8');
      try {
        resolve(JSON.parse(text));
      } catch (e) {
        reject(
          new ApiError(
            400,
            `the request body is not valid JSON (${(e as Error).message})`,
            'invalid_request_error',
            null,
            'invalid_json',
          ),
        );
      }
    });
  });
}

/** Starts the server; resolves once it listens. */
export async function startServer(o: ServeOptions): Promise<RiftServer> {
  if (typeof o !== 'object' || o === null) throw new TypeError('options: must be an object');
  if (typeof o.servedModelName !== 'string' || o.servedModelName === '')
    throw new TypeError('servedModelName: must be a non-empty string');
  if (
    typeof o.model !== 'object' ||
    o.model === null ||
    typeof o.model.newKvCache !== 'function' ||
    !Number.isSafeInteger(o.model.config?.vocab_size)
  )
    throw new TypeError('model: must be an engine Model (or a SamplerModel with config.vocab_size)');
  if (
    typeof o.tokenizer !== 'object' ||
    o.tokenizer === null ||
    typeof o.tokenizer.encode !== 'function' ||
    typeof o.tokenizer.decode !== 'function'
  )
    throw new TypeError('tokenizer: must be a Tokenizer');
  const contextLength = positiveInt('contextLength', o.contextLength ?? o.model.config.max_position_embeddings, NaN);
  const ctx: ServeContext = {
    servedModelName: o.servedModelName,
    tokenizer: o.tokenizer,
    vocabSize: o.model.config.vocab_size,
    contextLength,
    maxN: positiveInt('maxN', o.maxN, 64),
    maxPrompts: positiveInt('maxPrompts', o.maxPrompts, 64),
  };
  const maxBody = positiveInt('maxBodyBytes', o.maxBodyBytes, 8 * 2 ** 20);
  const queue = new EngineQueue(o.maxQueue ?? 16);
  const log = o.log ?? (() => undefined);
  const created = Math.floor(Date.now() / 1000);
  const stats = { requests: 0, completed: 0, rejected429: 0, failed: 0, aborted: 0 };
  const running = new Set<AbortController>();
  const inFlight = new Set<Promise<void>>();
  let closing = false;

  const modelCard = {
    id: o.servedModelName,
    object: 'model',
    created,
    owned_by: 'rift',
    root: o.servedModelName,
    parent: null,
    max_model_len: contextLength,
  };

  async function generation(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    kind: 'completion' | 'chat',
  ): Promise<void> {
    stats.requests++;
    const gen = parseRequest(await readBody(req, maxBody), kind, ctx);
    const abort = new AbortController();
    res.on('close', () => {
      if (!res.writableFinished) abort.abort(new GenerationAborted('the client closed the connection'));
    });
    const head = responseHead(gen);
    const job = async () => {
      running.add(abort);
      try {
        if (!gen.stream)
          return send(
            res,
            200,
            responseBody(
              gen,
              head,
              o.tokenizer,
              await runGeneration(o.model, o.tokenizer, gen, { signal: abort.signal }),
            ),
          );
        res.writeHead(200, {
          'content-type': 'text/event-stream',
          'cache-control': 'no-cache',
          connection: closing ? 'close' : 'keep-alive',
        });
        const w = new ChunkWriter(gen, head, o.tokenizer);
        const event = (obj: unknown) => res.write(`data: ${JSON.stringify(obj)}\n\n`);
        try {
          const r = await runGeneration(o.model, o.tokenizer, gen, {
            signal: abort.signal,
            onDelta: (d) => {
              const open = w.opening(d.index);
              if (open) event(open);
              event(w.chunk(d));
            },
          });
          if (gen.includeUsage) event(w.usage(r));
          res.end('data: [DONE]\n\n');
        } catch (e) {
          const err = generationError(e);
          if (!(err instanceof GenerationAborted)) log(`rift serve: ${err.message}`);
          if (!res.destroyed) {
            event(
              err instanceof GenerationAborted
                ? new ApiError(503, err.message, 'server_error', null, 'aborted').body()
                : err.body(),
            );
            res.end();
          }
          throw err;
        }
      } finally {
        running.delete(abort);
      }
    };
    try {
      await queue.submit(job, abort.signal);
      stats.completed++;
    } catch (e) {
      if (e instanceof QueueFullError) {
        stats.rejected429++;
        throw new ApiError(429, e.message, 'rate_limit_error', null, 'queue_full');
      }
      if (e instanceof QueueClosedError) throw new ApiError(503, e.message, 'server_error', null, 'shutting_down');
      const err = generationError(e);
      if (err instanceof GenerationAborted) {
        stats.aborted++;
        throw new ApiError(503, err.message, 'server_error', null, 'aborted');
      }
      stats.failed++;
      if (err.status >= 500) log(`rift serve: ${err.message}`);
      throw err;
    }
  }

  async function route(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://x');
    const p = url.pathname.replace(/\/+$/, '') || '/';
    const only = (method: string) => {
      if (req.method !== method)
        throw Object.assign(
          new ApiError(405, `${req.method} ${p}: use ${method}`, 'invalid_request_error', null, 'method_not_allowed'),
          { allow: method },
        );
    };
    if (p === '/health') {
      only('GET');
      return send(res, closing ? 503 : 200, closing ? { status: 'shutting down' } : { status: 'ok' });
    }
    if (closing) throw new ApiError(503, 'the server is shutting down', 'server_error', null, 'shutting_down');
    if (p === '/v1/models') {
      only('GET');
      return send(res, 200, { object: 'list', data: [modelCard] });
    }
    if (p.startsWith('/v1/models/')) {
      only('GET');
      const id = decodeURIComponent(p.slice('/v1/models/'.length));
      if (id !== o.servedModelName)
        throw new ApiError(
          404,
          `The model \`${id}\` does not exist. This server serves ${JSON.stringify(o.servedModelName)}.`,
          'not_found_error',
          'model',
          'model_not_found',
        );
      return send(res, 200, modelCard);
    }
    if (p === '/v1/completions' || p === '/v1/chat/completions') {
      only('POST');
      return generation(req, res, p === '/v1/completions' ? 'completion' : 'chat');
    }
    throw new ApiError(
      404,
      `no route ${req.method} ${p} (this server has /v1/models, /v1/completions, /v1/chat/completions, /health)`,
      'not_found_error',
      null,
      'unknown_route',
    );
  }

  const server = http.createServer((req, res) => {
    if (closing) res.setHeader('connection', 'close');
    const done = route(req, res)
      .catch((e) => {
        const err = asApiError(e);
        if (err.status === 500) log(`rift serve: ${err.message}`);
        const headers: Record<string, string> = {};
        if (err.status === 429) headers['retry-after'] = '1';
        const allow = (e as { allow?: string }).allow;
        if (allow) headers.allow = allow;
        if (!res.headersSent) {
          req.resume(); // an unread body must not hold the socket
          send(res, err.status, err.body(), headers);
        } else if (!res.writableEnded) res.end();
      })
      .finally(() => inFlight.delete(done));
    inFlight.add(done);
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port ?? 8000, o.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;

  let closed: Promise<void> | undefined;
  let hurry: (() => void) | undefined;
  return {
    url: `http://${host}:${addr.port}`,
    port: addr.port,
    host: addr.address,
    stats: () => ({ ...stats, waiting: queue.size, running: queue.running }),
    close(opts = {}) {
      const grace = opts.graceMs ?? 30_000;
      if (closed) {
        // a second close() can only shorten the grace period
        if (grace === 0) hurry?.();
        return closed;
      }
      closed = (async () => {
        closing = true;
        queue.close();
        const stopped = new Promise<void>((r) => server.close(() => r()));
        server.closeIdleConnections();
        let timer: NodeJS.Timeout | undefined;
        const late = new Promise<'late'>((r) => {
          hurry = () => r('late');
          timer = setTimeout(hurry, grace);
        });
        if ((await Promise.race([queue.idle().then(() => 'idle' as const), late])) === 'late') {
          log(`rift serve: ${queue.size + (queue.running ? 1 : 0)} request(s) still open; aborting them`);
          queue.dropWaiting(new QueueClosedError());
          for (const a of running) a.abort(new GenerationAborted('the server is shutting down'));
          await queue.idle();
        }
        clearTimeout(timer);
        await Promise.allSettled([...inFlight]);
        server.closeAllConnections();
        await stopped;
      })();
      return closed;
    },
  };
}
