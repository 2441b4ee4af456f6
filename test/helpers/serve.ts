// `rift serve` in tests: the embedded tiny model (or a copy with a chat template) served on 127.0.0.1 at an
// ephemeral port, the official openai client pointed at it, and a proxy in front of a server that can answer a
// request itself (a 429, a 500, a dropped connection) before passing the others through.
import * as fs from 'fs';
import * as http from 'http';
import * as os from 'os';
import * as path from 'path';
import OpenAI from 'openai';
import { Model } from '../../lib/engine/model';
import { Tokenizer } from '../../lib/engine/tokenizer';
import { startServer, type RiftServer, type ServeOptions } from '../../lib/serve';

export const TINY_DIR = path.join(__dirname, '..', '..', 'models', 'tiny-base');

/** A chat template in the tiny model's character vocabulary: system text, then user text, then '='. */
export const TINY_CHAT_TEMPLATE =
  "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}{{ m['content'] }};{% elif m['role'] == 'user' %}{{ m['content'] }}\n" +
  "{% else %}{{ raise_exception('only system and user messages') }}{% endif %}{% endfor %}{% if add_generation_prompt %}={% endif %}";

/** A copy of models/tiny-base whose tokenizer_config.json holds `template` (in a fresh temp directory). */
export function tinyChatDir(template = TINY_CHAT_TEMPLATE): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rift-serve-model-'));
  for (const f of fs.readdirSync(TINY_DIR))
    if (f !== 'prompt_format.json') fs.copyFileSync(path.join(TINY_DIR, f), path.join(dir, f));
  const cfgFile = path.join(dir, 'tokenizer_config.json');
  const cfg = JSON.parse(fs.readFileSync(cfgFile, 'utf8'));
  fs.writeFileSync(cfgFile, JSON.stringify({ ...cfg, chat_template: template }, null, 2));
  return dir;
}

export interface Served {
  server: RiftServer;
  model: Model;
  tokenizer: Tokenizer;
  baseURL: string;
  client: (o?: { maxRetries?: number }) => OpenAI;
}

/** Serves `dir` (default the tiny model) as `name` on 127.0.0.1:0. */
export async function serveDir(dir = TINY_DIR, name = 'tiny', o: Partial<ServeOptions> = {}): Promise<Served> {
  const model = (o.model as Model | undefined) ?? Model.load(dir);
  const tokenizer = o.tokenizer ?? Tokenizer.load(dir);
  const server = await startServer({ model, tokenizer, servedModelName: name, port: 0, ...o });
  const baseURL = `${server.url}/v1`;
  return {
    server,
    model,
    tokenizer,
    baseURL,
    client: (c = {}) => new OpenAI({ baseURL, apiKey: 'test', maxRetries: c.maxRetries ?? 0 }),
  };
}

export type ProxyAction =
  'pass' | 'drop' | 'hold' | { status: number; headers?: Record<string, string>; body?: unknown };

export interface Proxy {
  url: string;
  /** Requests seen, in order: "METHOD /path". */
  seen: string[];
  /** Request bodies (parsed JSON) of the POSTs passed through. */
  bodies: unknown[];
  close(): Promise<void>;
}

/**
 * A proxy to `target` (http://host:port): `plan(i, method, path, body)` decides for the i-th request (0-based) whether
 * it passes, gets a canned answer, has its connection dropped, or is held (never answered).
 */
export async function proxy(
  target: string,
  plan: (i: number, method: string, path: string, body: unknown) => ProxyAction,
): Promise<Proxy> {
  const seen: string[] = [];
  const bodies: unknown[] = [];
  const t = new URL(target);
  const srv = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (d) => chunks.push(d));
    req.on('end', () => {
      const i = seen.length;
      seen.push(`${req.method} ${req.url}`);
      const body = Buffer.concat(chunks);
      const a = plan(
        i,
        req.method ?? 'GET',
        req.url ?? '/',
        body.length ? JSON.parse(body.toString('utf8')) : undefined,
      );
      if (a === 'drop') return req.socket.destroy();
      if (a === 'hold') return;
      if (a !== 'pass') {
        const data = JSON.stringify(
          a.body ?? { error: { message: `proxy: ${a.status}`, type: 'server_error', param: null, code: null } },
        );
        res.writeHead(a.status, { 'content-type': 'application/json', ...a.headers });
        return res.end(data);
      }
      if (body.length) bodies.push(JSON.parse(body.toString('utf8')));
      const up = http.request(
        { host: t.hostname, port: t.port, method: req.method, path: req.url, headers: req.headers },
        (ur) => {
          res.writeHead(ur.statusCode ?? 502, ur.headers);
          ur.pipe(res);
        },
      );
      up.on('error', () => res.destroy());
      up.end(body);
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const port = (srv.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}`,
    seen,
    bodies,
    close: () =>
      new Promise<void>((r) => {
        srv.closeAllConnections();
        srv.close(() => r());
      }),
  };
}

/** A port nothing listens on (taken and released). */
export async function closedPort(): Promise<number> {
  const s = http.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}
