// `rift experiment --setting tiny|hard`: the settings' declared protocol (problem sets disjoint from each base
// model's SFT problems, hard sets on difficulty 4), the setting marker of an output directory and the refusal to
// resume another setting's directory, bad --setting values, and the hard setting's CI-size slice (models/hard-base).
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { generateProblems } from '../lib/data/synthetic';
import { readProblems } from '../lib/data/problems';
import { experimentProblems } from '../lib/experiment/data';
import { outSetting, runExperiment } from '../lib/experiment/experiment';
import type { RunRecord } from '../lib/experiment/runner';
import {
  EXPERIMENT_SETTINGS,
  EXPERIMENT_SIZINGS,
  PROBLEM_SETS,
  SETTINGS,
  settingSpec,
} from '../lib/experiment/protocol';
import { buildCli, riftSync, root } from './helpers/cli';

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rift-setting-'));
  buildCli();
});
afterAll(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

const steps = (solution: string) => solution.split(';').length - 1;

describe('settings', () => {
  test('declared: tiny is the original protocol, hard uses difficulty 4 and models/hard-base', () => {
    expect(EXPERIMENT_SETTINGS).toEqual(['tiny', 'hard']);
    expect(SETTINGS.tiny.sizings).toBe(EXPERIMENT_SIZINGS);
    expect(SETTINGS.tiny.problemSets).toBe(PROBLEM_SETS);
    expect(SETTINGS.hard.model).toBe('hard-base');
    for (const s of Object.values(SETTINGS.hard.problemSets)) expect(s.difficulty).toBe(4);
    for (const z of Object.values(SETTINGS.hard.sizings)) expect(z.maxNewTokens).toBeGreaterThanOrEqual(129); // solutions ≤ 128 + eos
    expect(SETTINGS.hard.sizings.quick.lrGrid).toEqual([1e-4, 3e-4]);
    expect(SETTINGS.hard.sizings.full.lrGrid).toEqual([3e-5, 1e-4, 3e-4]);
    expect(() => settingSpec('medium')).toThrow(RangeError);
    expect(() => settingSpec('medium')).toThrow(/^setting:/);
    expect(() => settingSpec(undefined)).toThrow(/^setting:/);
  });

  test("problem sets: tiny unchanged by default, hard ones long and disjoint from its base model's SFT problems", () => {
    const S = EXPERIMENT_SIZINGS.quick;
    expect(experimentProblems(S, 'tiny')).toEqual(experimentProblems(S));
    const H = SETTINGS.hard.sizings.quick;
    const h = experimentProblems(H, 'hard');
    expect(h.train).toHaveLength(H.trainProblems);
    expect(h.val).toHaveLength(H.valProblems);
    expect(h.test).toHaveLength(H.testProblems);
    expect(h.ood).toHaveLength(H.oodProblems);
    expect(SETTINGS.hard.baseSft.map((b) => b.difficulty)).toEqual([2, 4]); // grown from tiny-base: its SFT problems too
    const sft = new Set(
      SETTINGS.hard.baseSft.flatMap((b) => generateProblems({ ...b, style: 'tiny' }).map((p) => p.problem)),
    );
    const all = [h.train, h.val, h.test, h.ood, h.d1Train, h.d1Test, h.d2longTrain, h.d2longTest].flat();
    expect(all.filter((p) => sft.has(p.problem))).toEqual([]);
    expect(new Set(all.map((p) => p.problem)).size).toBe(all.length);
    for (const p of [...h.train, ...h.test]) expect(steps(p.solution!)).toBeGreaterThanOrEqual(5);
    for (const p of h.ood) expect(steps(p.solution!)).toBe(8);
    for (const p of h.d1Test) expect(steps(p.solution!)).toBeLessThanOrEqual(5);
    expect(experimentProblems(H, 'hard')).toEqual(h); // deterministic
  });

  test('the setting marker: written on first use; another setting is refused (also an older OUT with runs: tiny)', async () => {
    const out = path.join(tmp, 'marked');
    fs.mkdirSync(out);
    expect(outSetting(out)).toBeUndefined();
    fs.writeFileSync(path.join(out, 'setting.json'), JSON.stringify({ setting: 'tiny' }));
    expect(outSetting(out)).toBe('tiny');
    const tinyModel = path.join(root, 'models', 'tiny-base');
    await expect(runExperiment({ out, size: 'tiny', setting: 'hard', modelDir: tinyModel })).rejects.toThrow(
      /^setting: .*'tiny' setting's runs, not 'hard'.*--setting tiny/,
    );
    const legacy = path.join(tmp, 'legacy');
    fs.mkdirSync(legacy);
    fs.writeFileSync(path.join(legacy, 'runs.jsonl'), '');
    expect(outSetting(legacy)).toBe('tiny');
    await expect(runExperiment({ out: legacy, size: 'tiny', setting: 'hard', modelDir: tinyModel })).rejects.toThrow(
      /^setting:/,
    );
    fs.writeFileSync(path.join(out, 'setting.json'), JSON.stringify({ setting: 'nope' }));
    expect(() => outSetting(out)).toThrow(/^setting:/);
    await expect(runExperiment({ out: path.join(tmp, 'x'), size: 'tiny', setting: 'easy' as never })).rejects.toThrow(
      /^setting:/,
    );
  });

  test('CLI: --setting is validated, and a directory of the other setting is refused with a clear message', () => {
    const bad = riftSync(tmp, ['experiment', '--setting', 'medium', '--out', path.join(tmp, 'cli-bad')]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/--setting: must be one of tiny, hard/);
    const out = path.join(tmp, 'cli-tiny');
    fs.mkdirSync(out);
    fs.writeFileSync(path.join(out, 'setting.json'), JSON.stringify({ setting: 'tiny' }));
    const r = riftSync(tmp, [
      'experiment',
      '--setting',
      'hard',
      '--out',
      out,
      '--model',
      path.join(root, 'models', 'tiny-base'),
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/holds the 'tiny' setting's runs, not 'hard'; rerun with --setting tiny/);
    expect(fs.existsSync(path.join(out, 'runs.jsonl'))).toBe(false);
    const help = riftSync(tmp, ['experiment', '--help']);
    expect(help.stdout).toMatch(/--setting <name>/);
  });
});

describe('hard setting, CI size (models/hard-base)', () => {
  const out = () => path.join(tmp, 'hard');
  let runs: RunRecord[];
  beforeAll(async () => {
    await runExperiment({ out: out(), size: 'tiny', setting: 'hard', parts: ['grid', 'main'] });
    runs = (JSON.parse(fs.readFileSync(path.join(out(), 'results.json'), 'utf8')) as { runs: RunRecord[] }).runs;
  }, 600_000);

  test('runs on the hard model and problems; the report names the setting; the marker says hard', () => {
    expect(JSON.parse(fs.readFileSync(path.join(out(), 'setting.json'), 'utf8'))).toEqual({ setting: 'hard' });
    const md = fs.readFileSync(path.join(out(), 'report', 'report.md'), 'utf8');
    expect(md).toContain('hard setting');
    expect(md).toContain(SETTINGS.hard.label);
    const results = JSON.parse(fs.readFileSync(path.join(out(), 'results.json'), 'utf8'));
    expect(results.setting).toBe('hard');
    expect(results.modelDir).toBe(path.join(root, 'models', 'hard-base'));
    for (const p of readProblems(path.join(out(), 'data', 'test.jsonl')))
      expect(steps(p.solution!)).toBeGreaterThanOrEqual(5);
    expect(runs.some((r) => r.spec.part === 'grid')).toBe(true);
    const main = runs.filter((r) => r.spec.part === 'main' && !r.skipped);
    expect(main.length).toBeGreaterThan(0);
    for (const r of main) {
      expect(r.spec.lr).toBe(r.spec.method.method === 'dpo' ? 1e-5 : 1e-4);
      expect(Number.isFinite(r.evals.test.meanAtK)).toBe(true);
    }
  });
});
