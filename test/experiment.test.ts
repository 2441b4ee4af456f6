// `rift experiment` on its tiny sizing (correctness only, not results): every part runs, the protocol is what the
// report declares (the grid never sees the test split, budgets are epoch- or update-matched, seeds are paired), an
// interrupted run resumes from runs.jsonl, and bad options are typed errors.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { runExperiment } from '../lib/experiment/experiment';
import { EXPERIMENT_SIZINGS, MAIN_METHODS } from '../lib/experiment/protocol';
import type { RunRecord } from '../lib/experiment/runner';
import { buildCli, riftSync } from './helpers/cli';

const S = EXPERIMENT_SIZINGS.tiny;
let tmp: string;
let out: string;
let runs: RunRecord[];
let results: { updateBudget: number; memory: { source: string; matchesPrediction?: boolean; ratio: number }[] };

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rift-exp-'));
  out = path.join(tmp, 'exp');
  await runExperiment({ out, size: 'tiny' });
  results = JSON.parse(fs.readFileSync(path.join(out, 'results.json'), 'utf8'));
  runs = (results as unknown as { runs: RunRecord[] }).runs;
}, 300_000);

afterAll(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

const of = (part: string) => runs.filter((r) => r.spec.part === part && !r.skipped);

test('every part ran and the report holds its sections and plots', () => {
  for (const part of ['base', 'grid', 'main', 'updates', 'ablations', 'difficulty', 'collapse'])
    expect(runs.some((r) => r.spec.part === part)).toBe(true);
  const md = fs.readFileSync(path.join(out, 'report', 'report.md'), 'utf8');
  for (const h of [
    "### The paper's claims at this scale",
    '### Epoch-matched',
    '### Update-matched',
    '### Paired comparisons',
    '## Learning rates (validation split)',
    '## Ablations (test split)',
    '## Gain against the share of mixed problems',
    '## The naive loss: when and how it collapses',
    '## Memory: RIFT vs DPO (held reference)',
    '## What ran',
  ])
    expect(md).toContain(h);
  for (const m of MAIN_METHODS)
    if (of('main').some((r) => r.spec.method.name === m.name))
      expect(md).toMatch(new RegExp(`^\\| ${m.name} \\|`, 'm'));
  for (const f of ['accuracy', 'loss', 'collapse-logprobs', 'collapse-accuracy', 'memory'])
    expect(
      fs
        .readFileSync(path.join(out, 'report', `${f}.png`))
        .subarray(1, 4)
        .toString(),
    ).toBe('PNG');
});

test('the protocol: the grid sees only validation, main runs every seed on test + OOD, budgets as declared', () => {
  expect(of('grid').length).toBeGreaterThan(0);
  for (const r of of('grid')) {
    expect(Object.keys(r.evals)).toEqual(['val']);
    expect(r.spec.seed).toBe(S.gridSeed);
    expect(S.seeds).not.toContain(r.spec.seed);
  }
  for (const m of MAIN_METHODS) {
    const rs = of('main').filter((r) => r.spec.method.name === m.name);
    if (!rs.length) continue;
    expect(rs.map((r) => r.spec.seed).sort()).toEqual(S.seeds);
    for (const r of rs) {
      expect(Object.keys(r.evals).sort()).toEqual(['ood', 'test']);
      expect(r.spec.budget).toEqual({ kind: 'epochs', epochs: S.epochs });
      expect(r.epochs).toBe(S.epochs);
      expect(r.spec.schedule).toBe('cosine');
      expect(r.steps.length).toBe(r.plannedUpdates); // no divergence at this size
      expect(r.steps[0].lr).toBe(0); // linear warm-up from 0
      // the same lr for every seed: the grid's choice
      expect(r.spec.lr).toBe(rs[0].spec.lr);
    }
  }
  for (const r of of('updates')) expect(r.updates).toBe(results.updateBudget);
  const rift = of('main').filter((r) => r.spec.method.name === 'RIFT-token');
  expect(rift[0].updates).toBe(results.updateBudget);
  for (const r of of('ablations')) expect(S.ablationSeeds).toContain(r.spec.seed);
  const collapse = of('collapse');
  expect(collapse.map((r) => r.spec.method.name).sort()).toEqual(['RIFT-token', 'naive']);
  for (const r of collapse) {
    expect(r.epochEvals.map((e) => e.epoch)).toEqual(Array.from({ length: S.collapseEpochs }, (_, i) => i + 1));
    expect(r.probes.length).toBeGreaterThan(2);
    expect(r.spec.schedule).toBe('constant');
  }
  // per-problem counts are kept for every evaluation
  for (const r of of('main')) expect(r.evals.test.c.length).toBe(S.testProblems);
  const measured = results.memory.filter((m) => m.source === 'measured');
  expect(measured.length).toBe(2);
  expect(measured.every((m) => m.matchesPrediction)).toBe(true);
});

test('a rerun reuses every finished run; a torn last line of runs.jsonl is repaired', async () => {
  const file = path.join(out, 'runs.jsonl');
  const lines = fs.readFileSync(file, 'utf8').trim().split('\n');
  // drop the last finished run and leave half of it, as a kill mid-append would
  fs.writeFileSync(file, lines.slice(0, -1).join('\n') + '\n' + lines[lines.length - 1].slice(0, 50));
  const r = await runExperiment({ out, size: 'tiny', parts: ['collapse'] });
  expect(r.newRuns).toBe(1);
  expect(r.runs).toBe(lines.length);
  const again = await runExperiment({ out, size: 'tiny', parts: [] });
  expect(again.newRuns).toBe(0);
}, 300_000);

test("a call with fewer parts reports earlier calls' runs whole (their rollouts too) and lists every call", async () => {
  const report = () => fs.readFileSync(path.join(out, 'report', 'report.md'), 'utf8');
  const section = (md: string, heading: string) => md.split(`## ${heading}`)[1].split('\n## ')[0];
  const before = section(report(), 'Gain against the share of mixed problems');
  expect(before.split('\n').filter((l) => l.startsWith('| d')).length).toBe(2); // d1, d2long rows
  const calls0 = JSON.parse(fs.readFileSync(path.join(out, 'calls.json'), 'utf8')) as { parts: string[] }[];
  const r = await runExperiment({ out, size: 'tiny', parts: ['memory'] });
  expect(r.newRuns).toBe(0);
  expect(section(report(), 'Gain against the share of mixed problems')).toBe(before);
  const rollouts = JSON.parse(fs.readFileSync(path.join(out, 'results.json'), 'utf8')).rollouts;
  expect(Object.keys(rollouts).sort()).toEqual(['d1', 'd2long', 'main']);
  expect(Object.keys(rollouts.main.byK).sort()).toEqual([String(S.k), ...S.kAblation.map(String)].sort());
  const calls = JSON.parse(fs.readFileSync(path.join(out, 'calls.json'), 'utf8')) as { parts: string[] }[];
  expect(calls.length).toBe(calls0.length + 1);
  expect(calls[calls.length - 1].parts).toEqual(['memory']);
  expect(report()).toMatch(new RegExp(`The runs come from ${calls.length} calls, \\d+ s in all: 1\\. `));
}, 300_000);

test('bad options: typed errors naming the option; the CLI refuses an unknown part before any work', async () => {
  await expect(runExperiment({ out, size: 'huge' as never })).rejects.toThrow(/^size:/);
  await expect(runExperiment({ out, size: 'tiny', parts: ['nope' as never] })).rejects.toThrow(/^parts:/);
  buildCli();
  const c = riftSync(tmp, ['experiment', '--parts', 'main,bogus', '--out', 'x']);
  expect(c.code).toBe(1);
  expect(c.stderr).toMatch(/^rift: --parts: unknown part "bogus"/m);
  expect(fs.existsSync(path.join(tmp, 'x'))).toBe(false);
}, 120_000);
