// `rift serve` and `rift rollout --server` as commands: a `rift serve --port 0` process on 127.0.0.1, rollouts from
// it that `rift train` takes, a run killed mid-way (kill -9 while a request hangs at a proxy) resumed to the bytes
// of an unbroken run, a 429 retried, bad options and servers named in one-line errors with --out untouched, and
// SIGTERM ending the server cleanly.
import { spawn, type ChildProcessWithoutNullStreams } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { buildCli, cliScratch, riftAsync, riftSync, root } from './helpers/cli';
import { closedPort, proxy, tinyChatDir } from './helpers/serve';

const bin = path.join(root, 'bin', 'rift.js');
let tmp: string;
let modelDir: string;

interface ServeProc {
  child: ChildProcessWithoutNullStreams;
  url: string;
  baseURL: string;
  stdout: () => string;
  exit: Promise<number>;
}

/** Starts `rift serve --port 0 --json …` and waits for its listening event. */
async function serve(args: string[] = []): Promise<ServeProc> {
  const child = spawn(process.execPath, [bin, 'serve', '--model', modelDir, '--port', '0', '--json', ...args], {
    cwd: tmp,
  });
  let out = '',
    err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  const exit = new Promise<number>((r) => child.on('close', (code) => r(code ?? -1)));
  const listening = await new Promise<{ url: string; baseURL: string }>((resolve, reject) => {
    const t = setInterval(() => {
      const line = out.split('\n').find((l) => l.includes('"listening"'));
      if (line) {
        clearInterval(t);
        resolve(JSON.parse(line));
      }
    }, 20);
    void exit.then((code) => {
      clearInterval(t);
      reject(new Error(`rift serve exited (${code}): ${err}`));
    });
  });
  return { child, ...listening, stdout: () => out, exit };
}

const lastJson = (stdout: string) => JSON.parse(stdout.trim().split('\n').pop()!);

let srv: ServeProc;
let unbroken: string;
const rolloutArgs = (server: string, out: string, extra: string[] = []) => [
  'rollout',
  '--model',
  modelDir,
  '--problems',
  'problems.jsonl',
  '--k',
  '4',
  '--seed',
  '3',
  '--max-new-tokens',
  '40',
  '--server',
  server,
  '--served-model',
  'tiny-base',
  '--out',
  out,
  ...extra,
];

beforeAll(async () => {
  buildCli();
  ({ tmp, modelDir } = cliScratch());
  srv = await serve();
}, 120_000);
afterAll(async () => {
  if (srv && srv.child.exitCode === null) {
    srv.child.kill('SIGKILL');
    await srv.exit;
  }
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

test('rift rollout --server: samples from rift serve that rift train takes; a rerun adds nothing', () => {
  const r = riftSync(tmp, [...rolloutArgs(srv.baseURL, 'remote.jsonl'), '--json']);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  expect(lastJson(r.stdout)).toMatchObject({
    event: 'result',
    generated: 24,
    reused: 0,
    servedModel: 'tiny-base',
    requests: { attempts: 7, rateLimited: 0 },
  }); // GET /models, then one POST per problem
  unbroken = fs.readFileSync(path.join(tmp, 'remote.jsonl'), 'utf8');
  expect(
    unbroken
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l).remote.model),
  ).toEqual(Array(24).fill('tiny-base'));
  const again = riftSync(tmp, rolloutArgs(srv.baseURL, 'remote.jsonl'));
  expect(again.code).toBe(0);
  expect(again.stdout).toMatch(
    /^remote\.jsonl: 24 samples for 6 problems from tiny-base at http:\/\/127\.0\.0\.1:\d+\/v1 \(0 generated, 24 already there\)/,
  );
  expect(fs.readFileSync(path.join(tmp, 'remote.jsonl'), 'utf8')).toBe(unbroken);
  const tr = riftSync(tmp, [
    'train',
    '--method',
    'rift',
    '--model',
    modelDir,
    '--rollouts',
    'remote.jsonl',
    '--problems',
    'problems.jsonl',
    '--steps',
    '1',
    '--examples-per-step',
    '8',
    '--out',
    'trained',
  ]);
  expect(tr.stderr).toBe('');
  expect(tr.code).toBe(0);
  expect(fs.existsSync(path.join(tmp, 'trained', 'model.safetensors'))).toBe(true);
}, 120_000);

test('a run killed while a request hangs resumes to the bytes of an unbroken run', async () => {
  let posts = 0;
  const px = await proxy(srv.url, (_i, method) => (method === 'POST' && ++posts === 3 ? 'hold' : 'pass'));
  try {
    const run = riftAsync(tmp, rolloutArgs(px.url, 'killed.jsonl', ['--concurrency', '1']));
    while (posts < 3) await new Promise((r) => setTimeout(r, 10));
    process.kill(run.pid, 'SIGKILL');
    expect((await run.done).code).not.toBe(0);
    const file = path.join(tmp, 'killed.jsonl');
    expect(fs.readFileSync(file, 'utf8')).toBe(unbroken.split('\n').slice(0, 8).join('\n') + '\n');
    expect(fs.existsSync(`${file}.lock`)).toBe(true); // a dead holder's lock: taken over
    const r = riftSync(tmp, rolloutArgs(srv.baseURL, 'killed.jsonl'));
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/\(16 generated, 8 already there\)/);
    expect(fs.readFileSync(file, 'utf8')).toBe(unbroken);
    expect(fs.existsSync(`${file}.lock`)).toBe(false);
  } finally {
    await px.close();
  }
}, 60_000);

test('a 429 is retried', async () => {
  let posts = 0;
  const px = await proxy(srv.url, (_i, method) =>
    method === 'POST' && ++posts === 2 ? { status: 429, headers: { 'retry-after': '0.01' } } : 'pass',
  );
  try {
    const r = await riftAsync(tmp, rolloutArgs(px.url, 'retried.jsonl')).done;
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/; 8 HTTP requests \(1 × 429, 0 × 5xx, 0 failed connections, retried\)/);
    expect(fs.readFileSync(path.join(tmp, 'retried.jsonl'), 'utf8')).toBe(unbroken);
  } finally {
    await px.close();
  }
}, 60_000);

describe('one-line errors; --out is not created', () => {
  let raising: string;
  beforeAll(() => {
    raising = tinyChatDir(
      "{% if messages[0]['role'] != 'system' %}{{ raise_exception('a system message first') }}{% endif %}{{ messages[0]['content'] }}",
    );
  });
  afterAll(() => fs.rmSync(raising, { recursive: true, force: true }));

  test.each([
    [['--server', 'URL'], /^rift: --server: needs --served-model NAME/],
    [['--served-model', 'x'], /^rift: --served-model: only with --server\n$/],
    [['--concurrency', '2'], /^rift: --concurrency: only with --server\n$/],
    [
      ['--server', 'URL', '--served-model', 'tiny-base', '--device', 'cpu'],
      /^rift: --device: not used with --server \(the server runs the model\)\n$/,
    ],
    [
      ['--server', 'URL', '--served-model', 'nope'],
      /^rift: --served-model: "nope" is not served by http:\/\/127\.0\.0\.1:\d+\/v1 \(it serves "tiny-base"\)\n$/,
    ],
    [
      ['--server', 'URL', '--served-model', 'tiny-base', '--server-api', 'chat'],
      /^rift: --server-api chat: needs the chat prompt format/,
    ],
    [
      ['--server', 'URL', '--served-model', 'tiny-base', '--max-new-tokens', '250'],
      /^rift: --problems: problem "[^"]+": its prompt is \d+ tokens; with --max-new-tokens 250 it exceeds the model's context of 256 positions/,
    ],
    [
      ['--server', 'ftp://x', '--served-model', 'tiny-base'],
      /^rift: --server: ftp:\/\/x: must be an http:\/\/ or https:\/\/ URL\n$/,
    ],
    [
      ['--server', 'URL', '--served-model', 'tiny-base', '--prompt-format', 'chat'],
      /^rift: --prompt-format chat: .*tiny-base has no chat template/,
    ],
    [
      ['--server', 'URL', '--served-model', 'tiny-base', '--model', 'RAISING', '--prompt-format', 'chat'],
      /^rift: problem "[^"]+": .*tokenizer_config\.json \(chat_template\): the chat template failed to render: a system message first\n$/,
    ],
  ])('%j', (args, msg) => {
    const a = args.map((x) => (x === 'URL' ? srv.baseURL : x === 'RAISING' ? raising : x));
    const r = riftSync(tmp, [
      'rollout',
      '--model',
      modelDir,
      '--problems',
      'problems.jsonl',
      '--out',
      'bad.jsonl',
      ...a,
    ]);
    expect(r.stderr).toMatch(msg);
    expect(r.code).toBe(1);
    expect(fs.existsSync(path.join(tmp, 'bad.jsonl'))).toBe(false);
    expect(fs.existsSync(path.join(tmp, 'bad.jsonl.lock'))).toBe(false);
  });

  test('no server at the URL; a served context too short for the prompts', async () => {
    const none = `http://127.0.0.1:${await closedPort()}/v1`;
    const r = riftSync(tmp, rolloutArgs(none, 'bad.jsonl', ['--max-retries', '0']));
    expect(r.stderr).toBe(
      `rift: --server ${none}: listing the served models: cannot reach the server (ECONNREFUSED; after 0 retries)\n`,
    );
    const short = await serve(['--max-model-len', '30']);
    try {
      const s = riftSync(tmp, rolloutArgs(short.baseURL, 'bad.jsonl'));
      expect(s.stderr).toMatch(
        new RegExp(
          `^rift: --server ${short.baseURL.replace(/[./]/g, '\\$&')} \\(max_model_len 30\\): problem "[^"]+": its prompt is \\d+ tokens; with --max-new-tokens 40 it exceeds the model's context of 30 positions`,
        ),
      );
    } finally {
      short.child.kill('SIGTERM');
      expect(await short.exit).toBe(0);
    }
    expect(fs.existsSync(path.join(tmp, 'bad.jsonl'))).toBe(false);
  }, 60_000);
});

test('rift serve: bad options are one-line errors; SIGTERM stops it with a summary and exit code 0', async () => {
  const big = riftSync(tmp, ['serve', '--model', modelDir, '--port', '0', '--max-model-len', '1000']);
  expect(big.stderr).toBe("rift: --max-model-len: 1000 is more than the model's max_position_embeddings (256)\n");
  const port = new URL(srv.url).port;
  const taken = riftSync(tmp, ['serve', '--model', modelDir, '--port', port]);
  expect(taken.stderr).toMatch(/^rift: listen EADDRINUSE: address already in use 127\.0\.0\.1:\d+\n$/);
  expect(taken.code).toBe(1);
  srv.child.kill('SIGTERM');
  expect(await srv.exit).toBe(0);
  const result = lastJson(srv.stdout());
  expect(result).toMatchObject({
    event: 'result',
    command: 'serve',
    model: 'tiny-base',
    failed: 0,
    waiting: 0,
    running: false,
  });
  expect(result.completed).toBe(result.requests);
  expect(result.completed).toBeGreaterThanOrEqual(12);
}, 60_000);
