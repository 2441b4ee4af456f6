// Checkpoint hygiene (lib/train/checkpoints.ts through the Trainer): orphan temps of a killed checkpoint write are
// removed on start, old checkpoints pruned, every path a checkpoint file names stays inside the checkpoint folder,
// bad checkpoint files are errors naming the file, metrics files are cut back to a checkpoint, DPO β is bounded.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { spawnSync } from 'child_process';
import { Model } from '../lib/engine/model';
import { readSafetensors, writeSafetensors } from '../lib/engine/safetensors';
import { checkDpoBeta, DPO_BETA_MAX } from '../lib/kernels/loss';
import {
  cleanCheckpointTemps,
  listCheckpoints,
  parseLatest,
  parseTrainerState,
  pruneCheckpoints,
  truncateMetricsFile,
} from '../lib/train/checkpoints';
import type { Example } from '../lib/train/examples';
import { Trainer, type TrainerOptions } from '../lib/train/trainer';

const CFG = {
  model_type: 'qwen2',
  vocab_size: 32,
  hidden_size: 16,
  intermediate_size: 32,
  num_hidden_layers: 1,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  rms_norm_eps: 1e-6,
  rope_theta: 10000,
  tie_word_embeddings: true,
};
const newModel = (seed = 3) => Model.fromConfig(CFG, { seed, std: 0.1 });
const ids = (...xs: number[]) => Int32Array.from(xs);
const samples: Example[] = [0, 1, 2].flatMap((p) => [
  { problemId: `p${p}`, sampleIndex: 0, promptIds: ids(1, 2 + p), responseIds: ids(3, 4, 5 + p), reward: 1 },
  { problemId: `p${p}`, sampleIndex: 1, promptIds: ids(1, 2 + p), responseIds: ids(6 + p, 7), reward: -0.5 },
]);
const BASE: TrainerOptions = { method: 'rift', lr: 1e-2, examplesPerStep: 1, shuffle: false };

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rift-resume-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const deadPid = () => spawnSync(process.execPath, ['-e', '0']).pid!;

async function errorOf(f: () => unknown): Promise<Error> {
  try {
    await f();
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected an error, nothing was thrown');
}

describe('checkpoint folder hygiene', () => {
  test('keepCheckpoints: the N newest stay (default 3, 0 keeps all); latest.json names the newest', async () => {
    const runWith = async (name: string, keep?: number) => {
      const ck = path.join(dir, name);
      await new Trainer(newModel(), {
        ...BASE,
        checkpointDir: ck,
        checkpointEvery: 1,
        ...(keep === undefined ? {} : { keepCheckpoints: keep }),
      }).run(samples);
      return listCheckpoints(ck).map((c) => c.step);
    };
    expect(await runWith('keep-default')).toEqual([4, 5, 6]);
    expect(await runWith('keep-1', 1)).toEqual([6]);
    expect(await runWith('keep-all', 0)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(JSON.parse(fs.readFileSync(path.join(dir, 'keep-1', 'latest.json'), 'utf8'))).toEqual({
      dir: 'step-000006',
      step: 6,
    });
    // an older, longer run's directories past the current step are left alone
    const ck = path.join(dir, 'keep-all');
    expect(pruneCheckpoints(ck, 2, 3)).toEqual(['step-000001']);
    expect(listCheckpoints(ck).map((c) => c.step)).toEqual([2, 3, 4, 5, 6]);
    expect(() => new Trainer(newModel(), { ...BASE, keepCheckpoints: -1 })).toThrow(/^keepCheckpoints: /);
  });

  test('a kill during a checkpoint write leaves temps: the next start removes them (dead writers only, unless exclusive)', async () => {
    const ck = path.join(dir, 'orphans');
    fs.mkdirSync(ck, { recursive: true });
    const dead = deadPid();
    const orphanDir = path.join(ck, `.step-000002.${dead}.k3x9.tmp`);
    fs.mkdirSync(orphanDir);
    fs.writeFileSync(path.join(orphanDir, 'model.safetensors'), 'half a file');
    const orphanFile = path.join(ck, `.latest.json.${dead}.q1.tmp`);
    fs.writeFileSync(orphanFile, '{"dir":');
    const live = path.join(ck, '.step-000003.1.z.tmp'); // pid 1 is alive: maybe another writer's
    fs.mkdirSync(live);
    await new Trainer(newModel(), { ...BASE, checkpointDir: ck, checkpointEvery: 2 }).run(samples);
    expect(fs.existsSync(orphanDir)).toBe(false);
    expect(fs.existsSync(orphanFile)).toBe(false);
    expect(fs.existsSync(live)).toBe(true);
    expect(cleanCheckpointTemps(ck, { exclusive: true })).toEqual(['.step-000003.1.z.tmp']);
    expect(fs.readdirSync(ck).filter((n) => n.startsWith('.'))).toEqual([]);
  });

  test('a kill between the two renames of a replacement: the .old directory is put back', () => {
    const ck = path.join(dir, 'old');
    fs.mkdirSync(path.join(ck, `.step-000004.${deadPid()}.ab.tmp.old`), { recursive: true });
    expect(cleanCheckpointTemps(ck)).toHaveLength(1);
    expect(fs.readdirSync(ck)).toEqual(['step-000004']);
  });
});

describe('reading checkpoints: contained paths, errors that name the file', () => {
  let ck: string;
  const opts = (): TrainerOptions => ({ ...BASE, checkpointDir: path.join(dir, 'unused'), checkpointEvery: 2 });
  beforeAll(async () => {
    ck = path.join(dir, 'strict');
    await new Trainer(newModel(), { ...BASE, checkpointDir: ck, checkpointEvery: 2 }).run(samples);
  });
  const copy = (name: string) => {
    const to = path.join(dir, name);
    fs.cpSync(ck, to, { recursive: true });
    return to;
  };
  const editState = (root: string, edit: (s: Record<string, unknown>) => void) => {
    const f = path.join(root, 'step-000006', 'trainer-state.json');
    const s = JSON.parse(fs.readFileSync(f, 'utf8'));
    edit(s);
    fs.writeFileSync(f, JSON.stringify(s));
    return f;
  };

  test('latest.json naming a directory outside the folder, or something that is not a step directory', async () => {
    const root = copy('escape-latest');
    const latest = path.join(root, 'latest.json');
    for (const d of ['../strict/step-000006', '/etc', 'step-000006/../../strict/step-000006']) {
      fs.writeFileSync(latest, JSON.stringify({ dir: d, step: 6 }));
      const e = await errorOf(() => new Trainer(newModel(), opts()).resume(root));
      expect(e.message).toMatch(
        new RegExp(`^${latest.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: dir .* is not a step directory name`),
      );
    }
    fs.writeFileSync(latest, JSON.stringify({ dir: 'step-000008', step: 8 }));
    expect((await errorOf(() => new Trainer(newModel(), opts()).resume(root))).message).toMatch(
      /latest\.json: dir "step-000008": no such checkpoint directory/,
    );
    fs.writeFileSync(latest, '{"dir":"step-000006","st');
    const e = await errorOf(() => new Trainer(newModel(), opts()).resume(root));
    expect(e).toBeInstanceOf(SyntaxError);
    expect(e.message).toContain(`${latest}: not valid JSON`);
  });

  test('a step directory that is a symlink out of the folder is refused', async () => {
    const root = copy('escape-link');
    fs.rmSync(path.join(root, 'step-000006'), { recursive: true });
    fs.symlinkSync(path.join(ck, 'step-000006'), path.join(root, 'step-000006'));
    expect((await errorOf(() => new Trainer(newModel(), opts()).resume(root))).message).toMatch(
      /latest\.json: dir "step-000006" resolves outside the checkpoint folder/,
    );
  });

  test('trainer-state.json: an optimizer file or reference directory outside the folder, truncated JSON, bad fields', async () => {
    const root = copy('escape-state');
    let f = editState(
      root,
      (s) => ((s.optimizer as { file: string }).file = '../../strict/step-000006/optimizer.safetensors'),
    );
    expect((await errorOf(() => new Trainer(newModel(), opts()).resume(root))).message).toBe(
      `${f}: optimizer.file must be a file name inside the checkpoint directory, got "../../strict/step-000006/optimizer.safetensors"`,
    );
    f = editState(root, (s) => {
      (s.optimizer as { file: string }).file = 'optimizer.safetensors';
      s.referenceDir = path.join(ck, 'step-000006');
    });
    expect((await errorOf(() => new Trainer(newModel(), opts()).resume(root))).message).toMatch(
      `${f}: referenceDir "${path.join(ck, 'step-000006')}" resolves outside the checkpoint folder`,
    );
    f = editState(root, (s) => {
      delete s.referenceDir;
      s.history = (s.history as unknown[]).slice(1);
    });
    expect((await errorOf(() => new Trainer(newModel(), opts()).resume(root))).message).toBe(
      `${f}: history holds 5 steps, want step = 6`,
    );
    fs.writeFileSync(f, fs.readFileSync(f, 'utf8').slice(0, 100));
    const e = await errorOf(() => Trainer.load(root));
    expect(e).toBeInstanceOf(SyntaxError);
    expect(e.message).toContain(`${f}: not valid JSON`);
  });

  test('optimizer state: NaN moments and a truncated file are errors naming the file', async () => {
    const root = copy('bad-optimizer');
    const f = path.join(root, 'step-000006', 'optimizer.safetensors');
    const { tensors } = readSafetensors(f);
    const names = [...tensors.keys()].sort();
    const all = names.map((name) => ({
      name,
      shape: tensors.get(name)!.shape,
      data: Float32Array.from(tensors.get(name)!.data as Float32Array),
    }));
    all[1].data[3] = NaN;
    writeSafetensors(f, all);
    const e = await errorOf(() => new Trainer(newModel(), opts()).resume(root));
    expect(e).toBeInstanceOf(RangeError);
    expect(e.message).toBe(`${f}: tensor "${names[1]}" holds NaN at element 3 (a corrupt optimizer state)`);
    fs.truncateSync(f, fs.statSync(f).size - 10);
    expect((await errorOf(() => new Trainer(newModel(), opts()).resume(root))).message).toMatch(
      new RegExp(`^${f.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: `),
    );
  });

  test('truncated model weights: the error names the checkpoint file by its path', async () => {
    const root = copy('bad-weights');
    const f = path.join(root, 'step-000006', 'model.safetensors');
    fs.truncateSync(f, 64);
    for (const go of [() => new Trainer(newModel(), opts()).resume(root), () => Trainer.load(root)])
      expect((await errorOf(go)).message).toMatch(new RegExp(`^${f.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: `));
  });

  test("DPO 'held': the reference weights live in each checkpoint folder, so a moved folder still resumes", async () => {
    const dpo: TrainerOptions = { ...BASE, method: 'dpo', dpoReference: 'held', examplesPerStep: 1, epochs: 2 };
    const a = path.join(dir, 'dpo-a');
    const full = await new Trainer(newModel(), {
      ...dpo,
      checkpointDir: a,
      checkpointEvery: 2,
      keepCheckpoints: 0,
    }).run(samples);
    const state = JSON.parse(fs.readFileSync(path.join(a, 'step-000002', 'trainer-state.json'), 'utf8'));
    expect(state.referenceDir).toBe('reference');
    const b = path.join(dir, 'dpo-b');
    fs.renameSync(a, b);
    const t = new Trainer(newModel(7), { ...dpo, checkpointDir: path.join(dir, 'dpo-c'), checkpointEvery: 2 });
    await t.resume(path.join(b, 'step-000002'));
    const rest = await t.run(samples);
    expect(rest.map((m) => m.loss)).toEqual(full.slice(2).map((m) => m.loss));
    expect(fs.existsSync(path.join(dir, 'dpo-c', 'reference', 'model.safetensors'))).toBe(true); // its own copy
  });
});

describe('parsers and helpers', () => {
  test('parseLatest / parseTrainerState reject every malformed field with the file named', () => {
    expect(parseLatest('{"dir":"step-000012","step":12}', 'L')).toEqual({ dir: 'step-000012', step: 12 });
    for (const [text, re] of [
      ['[]', /^L: must hold a JSON object/],
      ['{"dir":3,"step":1}', /^L: dir must be a string/],
      ['{"dir":"step-000001","step":2}', /^L: step 2 disagrees/],
      ['{"dir":"step-000001","step":1.5}', /^L: step must be an integer/],
      ['{"dir":"..","step":1}', /^L: dir "\.\." is not a step directory name/],
    ] as const)
      expect(() => parseLatest(text, 'L')).toThrow(re);
    expect(() => parseTrainerState('{"format":"x"}', 'S')).toThrow(/^S: format x version undefined/);
    expect(() => parseTrainerState('{"format":"rift-trainer-state","version":1,"step":0}', 'S')).toThrow(
      /^S: step must be an integer ≥ 1/,
    );
  });

  test('truncateMetricsFile keeps the steps up to the checkpoint and drops a torn tail', () => {
    const f = path.join(dir, 'metrics.jsonl');
    fs.writeFileSync(
      f,
      [1, 2, 3, 4, 5].map((s) => JSON.stringify({ step: s, loss: 1 / s })).join('\n') + '\n{"step":6,"lo',
    );
    expect(truncateMetricsFile(f, 3)).toBe(2);
    expect(
      fs
        .readFileSync(f, 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l).step),
    ).toEqual([1, 2, 3]);
    expect(truncateMetricsFile(f, 3)).toBe(0);
    expect(truncateMetricsFile(path.join(dir, 'none.jsonl'), 3)).toBe(0);
    fs.writeFileSync(f, '{"loss":1}\n');
    expect(() => truncateMetricsFile(f, 3)).toThrow(`${f}:1: expected a metrics record`);
  });

  test(`DPO β is bounded: (0, ${DPO_BETA_MAX}] (a huge β overflows the loss and gradients to ±Inf)`, async () => {
    expect(checkDpoBeta('beta', 0.1)).toBe(0.1);
    expect(checkDpoBeta('beta', DPO_BETA_MAX)).toBe(DPO_BETA_MAX);
    for (const b of [0, -1, 1e6, 1e308]) expect(() => checkDpoBeta('beta', b)).toThrow(RangeError);
    expect(() => checkDpoBeta('beta', '1')).toThrow(TypeError);
    for (const b of [1e6, 1e308])
      expect(() => new Trainer(newModel(), { ...BASE, method: 'dpo', dpoBeta: b })).toThrow(
        `dpoBeta: must be in (0, ${DPO_BETA_MAX}], got ${b}`,
      );
  });
});
