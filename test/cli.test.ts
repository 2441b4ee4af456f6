// The `rift` CLI end to end on tiny settings: `node bin/rift.js …` as a user runs it (after tsc), malformed inputs.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Model } from '../lib/engine/model';
import { baseModelConfig, writeBaseTokenizer } from '../lib/demo/base-model';
import { demoProblems } from '../lib/demo/demo';
import { writeProblems } from '../lib/data/problems';
import { buildCli } from './helpers/cli';

const root = path.join(__dirname, '..');
const bin = path.join(root, 'bin', 'rift.js');
const realBase = path.join(root, 'models', 'tiny-base');
let tmp: string;
let modelDir: string; // the embedded base model when it exists, else a random one with its tokenizer

function rift(args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [bin, ...args], { cwd: tmp, encoding: 'utf8', timeout: 120_000 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

beforeAll(() => {
  buildCli();
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rift-cli-'));
  if (fs.existsSync(path.join(realBase, 'config.json'))) modelDir = realBase;
  else {
    modelDir = path.join(tmp, 'random-base');
    Model.fromConfig(baseModelConfig({ hidden: 32, layers: 1, intermediate: 64 }), { seed: 1 }).save(modelDir);
    writeBaseTokenizer(modelDir);
  }
  const { train } = demoProblems(6, 0);
  writeProblems(path.join(tmp, 'problems.jsonl'), train);
}, 120_000);

afterAll(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

test('demo --quick: table on stdout, results and report (SVG + PNG) on disk', () => {
  const r = rift(['demo', '--quick', '--out', 'demo', '--model', modelDir]);
  expect(r.stderr).not.toMatch(/^rift: /m);
  expect(r.code).toBe(0);
  for (const m of ['base', 'SFT', 'RFT', 'DFT', 'DPO', 'RIFT-token', 'RIFT-sequence', 'naive'])
    expect(r.stdout).toMatch(new RegExp(`^\\| ${m} \\|`, 'm'));
  expect(r.stdout).toMatch(/\| method \| Mean@4 \| Pass@4 \| peak memory/);
  const out = path.join(tmp, 'demo');
  for (const f of [
    'results.json',
    'table.md',
    'rollouts.jsonl',
    'report/report.md',
    'report/loss.svg',
    'report/loss.png',
    'report/accuracy.svg',
    'report/accuracy.png',
    'report/memory.svg',
    'report/memory.png',
  ])
    expect(fs.existsSync(path.join(out, f))).toBe(true);
  const res = JSON.parse(fs.readFileSync(path.join(out, 'results.json'), 'utf8'));
  expect(res.summary).toHaveLength(8);
  expect(fs.readFileSync(path.join(out, 'report', 'report.md'), 'utf8')).toContain('| RIFT-sequence |');
  expect(
    fs
      .readFileSync(path.join(out, 'report', 'loss.png'))
      .subarray(1, 4)
      .toString(),
  ).toBe('PNG');
}, 120_000);

test('rollout is resumable: a rerun generates nothing and leaves the file as it was; train, eval, --json', () => {
  const args = [
    'rollout',
    '--model',
    modelDir,
    '--problems',
    'problems.jsonl',
    '--k',
    '2',
    '--out',
    'r.jsonl',
    '--max-new-tokens',
    '32',
    '--seed',
    '3',
  ];
  const a = rift(args);
  expect(a.code).toBe(0);
  expect(a.stdout).toMatch(/12 samples for 6 problems \(12 generated, 0 already there\)/);
  const bytes = fs.readFileSync(path.join(tmp, 'r.jsonl'));
  const b = rift([...args, '--json']);
  expect(b.code).toBe(0);
  const lines = b.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  const result = lines.find((l) => l.event === 'result');
  expect(result).toMatchObject({ command: 'rollout', generated: 0, reused: 12 });
  expect(fs.readFileSync(path.join(tmp, 'r.jsonl')).equals(bytes)).toBe(true);

  // other sampling parameters on the same file: an error, exit 1
  const c = rift([...args.slice(0, -2), '--seed', '4']);
  expect(c.code).toBe(1);
  expect(c.stderr).toMatch(/^rift: .*r\.jsonl: record 1 .*use another file/m);

  const t = rift([
    'train',
    '--method',
    'rift',
    '--negative',
    'sequence',
    '--model',
    modelDir,
    '--rollouts',
    'r.jsonl',
    '--problems',
    'problems.jsonl',
    '--out',
    'trained',
    '--steps',
    '2',
    '--examples-per-step',
    '4',
    '--json',
  ]);
  expect(t.code).toBe(0);
  const tl = t.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  expect(tl.filter((l) => l.event === 'progress')).toHaveLength(2);
  expect(tl.find((l) => l.event === 'result')).toMatchObject({
    command: 'train',
    method: 'rift',
    negative: 'sequence',
    steps: 2,
  });
  for (const f of ['config.json', 'model.safetensors', 'tokenizer.json', 'metrics.jsonl', 'train.json'])
    expect(fs.existsSync(path.join(tmp, 'trained', f))).toBe(true);

  const e = rift([
    'eval',
    '--model',
    'trained',
    '--problems',
    'problems.jsonl',
    '--k',
    '2',
    '--max-new-tokens',
    '32',
    '--json',
    'eval.json',
  ]);
  expect(e.code).toBe(0);
  const er = JSON.parse(e.stdout.trim().split('\n').pop()!);
  expect(er).toMatchObject({ event: 'result', command: 'eval', k: 2, problems: 6 });
  expect(JSON.parse(fs.readFileSync(path.join(tmp, 'eval.json'), 'utf8')).perProblem).toHaveLength(6);
}, 120_000);

test('malformed inputs: exit 1 with a one-line message naming the file:line or the option', () => {
  fs.writeFileSync(
    path.join(tmp, 'bad.jsonl'),
    '{"id":"a","problem":"1+1=?","answer":"2"}\n{"id":"b","problem":"2+2=?"\n',
  );
  const a = rift(['rollout', '--model', modelDir, '--problems', 'bad.jsonl', '--out', 'x.jsonl']);
  expect(a.code).toBe(1);
  expect(a.stderr.trim().split('\n')).toHaveLength(1);
  expect(a.stderr).toMatch(/^rift: bad\.jsonl:2: invalid JSON/);

  fs.writeFileSync(
    path.join(tmp, 'bad2.jsonl'),
    '{"id":"a","problem":"1+1=?","answer":"2"}\n\n{"id":"b","problem":"2+2=?","answer":4}\n',
  );
  const b = rift(['eval', '--model', modelDir, '--problems', 'bad2.jsonl']);
  expect(b.code).toBe(1);
  expect(b.stderr).toMatch(/^rift: bad2\.jsonl:3: field "answer" must be a string/);

  const c = rift(['train', '--method', 'ppo', '--problems', 'problems.jsonl', '--out', 'o']);
  expect(c.code).toBe(1);
  expect(c.stderr).toMatch(/--method/);
  expect(c.stderr).toMatch(/ppo/);

  const d = rift(['rollout', '--problems', 'problems.jsonl', '--out', 'x.jsonl', '--k', '0']);
  expect(d.code).toBe(1);
  expect(d.stderr).toMatch(/--k/);

  const e = rift(['train', '--method', 'rift', '--problems', 'problems.jsonl', '--out', 'o']);
  expect(e.code).toBe(1);
  expect(e.stderr).toMatch(/^rift: --rollouts: required for --method rift/);

  const f = rift(['eval', '--model', path.join(tmp, 'nope'), '--problems', 'problems.jsonl']);
  expect(f.code).toBe(1);
  expect(f.stderr).toMatch(/^rift: --model: .*nope: no such directory/);

  const dev = rift(['eval', '--model', modelDir, '--problems', 'problems.jsonl', '--device', 'tpu']);
  expect(dev.code).toBe(1);
  expect(dev.stderr).toMatch(/--device/);
  if (!Model.devices().includes('cuda')) {
    const cu = rift(['eval', '--model', modelDir, '--problems', 'problems.jsonl', '--device', 'cuda']);
    expect(cu.code).toBe(1);
    expect(cu.stderr).toMatch(/^rift: --device: cuda: no CUDA device/);
  }

  const g = rift(['frobnicate']);
  expect(g.code).toBe(1);
  expect(g.stderr).toMatch(/unknown command 'frobnicate'/);

  const h = rift(['profile-memory', '--config', 'qwen2.5-math-7b', '--json']);
  expect(h.code).toBe(0);
  expect(JSON.parse(h.stdout.trim().split('\n').pop()!)).toMatchObject({
    event: 'result',
    command: 'profile-memory',
    B: 8,
    T: 1024,
  });
}, 120_000);
