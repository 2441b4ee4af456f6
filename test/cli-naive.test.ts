// `rift train --method naive`, and a diverged `rift train`: exit 1 with one line naming the update and the reason,
// no model saved, train.json recording the divergence and the metrics so far.
import * as fs from 'fs';
import * as path from 'path';
import { Model } from '../lib/engine/model';
import { buildCli, cliScratch, riftSync } from './helpers/cli';

let tmp: string;
let modelDir: string;

beforeAll(() => {
  buildCli();
  ({ tmp, modelDir } = cliScratch());
  const r = riftSync(tmp, [
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
  ]);
  if (r.code !== 0) throw new Error(r.stderr);
}, 120_000);

afterAll(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

const train = (model: string, out: string) =>
  riftSync(tmp, [
    'train',
    '--method',
    'naive',
    '--model',
    model,
    '--rollouts',
    'r.jsonl',
    '--problems',
    'problems.jsonl',
    '--out',
    out,
    '--steps',
    '2',
    '--examples-per-step',
    '4',
    '--json',
  ]);

test('train --method naive trains and saves like the other methods', () => {
  const t = train(modelDir, 'naive-out');
  expect(t.stderr).not.toMatch(/^rift: /m);
  expect(t.code).toBe(0);
  const result = t.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l))
    .find((l) => l.event === 'result');
  expect(result).toMatchObject({ command: 'train', method: 'naive', steps: 2 });
  expect(fs.existsSync(path.join(tmp, 'naive-out', 'model.safetensors'))).toBe(true);
}, 120_000);

test('a diverged run: exit 1, the update and the reason on one line, train.json records it, no model saved', () => {
  // a base model holding a NaN weight: its first update meets NaN logits
  const bad = path.join(tmp, 'nan-model');
  const m = Model.load(modelDir);
  m.setParams(new Float32Array([NaN]), 3);
  m.save(bad);
  for (const f of fs.readdirSync(modelDir))
    if (!fs.existsSync(path.join(bad, f))) fs.copyFileSync(path.join(modelDir, f), path.join(bad, f));
  const t = train(bad, 'diverged');
  expect(t.code).toBe(1);
  const err = t.stderr.split('\n').filter((l) => l.startsWith('rift: '));
  expect(err).toHaveLength(1);
  expect(err[0]).toMatch(
    /^rift: training diverged at update 1 of \d+ \(method 'naive'\): non-finite logits \(logits: row \d+ holds NaN or Inf\).*no model saved/,
  );
  const rec = JSON.parse(fs.readFileSync(path.join(tmp, 'diverged', 'train.json'), 'utf8'));
  expect(rec.diverged).toMatchObject({ step: 1, reason: 'non-finite logits', method: 'naive' });
  expect(rec.metrics).toEqual([]);
  expect(fs.existsSync(path.join(tmp, 'diverged', 'model.safetensors'))).toBe(false);
}, 120_000);
