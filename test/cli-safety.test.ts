// The CLI's reliability guards end to end (`node bin/rift.js …`): outputs that would overwrite an input are refused
// (symlinks and hard links included), one writer per output (a second `rift train` / `rift rollout` is refused, a
// stale lock is taken over), resume after a kill (metrics cut back, orphan temps removed, old checkpoints pruned),
// bounded readers, clear errors for a directory as --out and a bad tokenizer.json, positives by the reward's sign.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { buildCli, cliScratch, riftAsync, riftSync, type CliRun } from './helpers/cli';

let tmp: string;
let modelDir: string;
const rift = (args: string[], env: Record<string, string> = {}) => riftSync(tmp, args, env);
const at = (...p: string[]) => path.join(tmp, ...p);
const oneLine = (r: CliRun) => {
  expect(r.code).toBe(1);
  expect(r.stderr.trim().split('\n')).toHaveLength(1);
  return r.stderr;
};
const deadPid = () => spawnSync(process.execPath, ['-e', '0']).pid!;

beforeAll(() => {
  buildCli();
  ({ tmp, modelDir } = cliScratch());
}, 120_000);
afterAll(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

describe('outputs that would overwrite inputs', () => {
  test('eval --json onto the problems file (directly, through a symlink) is refused and the file kept', () => {
    const before = fs.readFileSync(at('problems.jsonl'));
    expect(
      oneLine(rift(['eval', '--model', modelDir, '--problems', 'problems.jsonl', '--json', 'problems.jsonl'])),
    ).toMatch(
      /^rift: --json: problems\.jsonl is the same file as --problems problems\.jsonl \(refusing to overwrite an input\)/,
    );
    fs.symlinkSync(at('problems.jsonl'), at('link.json'));
    expect(oneLine(rift(['eval', '--model', modelDir, '--problems', 'problems.jsonl', '--json', 'link.json']))).toMatch(
      /^rift: --json: link\.json is the same file as --problems/,
    );
    expect(fs.readFileSync(at('problems.jsonl')).equals(before)).toBe(true);
    fs.mkdirSync(at('adir'));
    expect(oneLine(rift(['eval', '--model', modelDir, '--problems', 'problems.jsonl', '--json', 'adir']))).toMatch(
      /^rift: --json: adir: is a directory/,
    );
  });

  test('rollout --out onto a hard link of the problems, a model file, or a directory is refused', () => {
    fs.linkSync(at('problems.jsonl'), at('hard.jsonl'));
    expect(
      oneLine(rift(['rollout', '--model', modelDir, '--problems', 'problems.jsonl', '--out', 'hard.jsonl'])),
    ).toMatch(/^rift: --out: hard\.jsonl is the same file as --problems/);
    const tok = path.join(modelDir, 'tokenizer.json');
    expect(oneLine(rift(['rollout', '--model', modelDir, '--problems', 'problems.jsonl', '--out', tok]))).toMatch(
      /is the same file as --model .*tokenizer\.json/,
    );
    expect(oneLine(rift(['rollout', '--model', modelDir, '--problems', 'problems.jsonl', '--out', 'adir']))).toMatch(
      /^rift: --out: adir: is a directory \(expected a file path\)/,
    );
  });

  test('train --out = --model is refused without --overwrite; an input where train writes is refused', () => {
    fs.cpSync(modelDir, at('mine'), { recursive: true });
    const args = [
      'train',
      '--method',
      'sft',
      '--model',
      'mine',
      '--problems',
      'problems.jsonl',
      '--steps',
      '1',
      '--examples-per-step',
      '2',
    ];
    const weights = fs.readFileSync(at('mine', 'model.safetensors'));
    expect(oneLine(rift([...args, '--out', 'mine']))).toMatch(
      /^rift: --out: mine is the --model directory: .*pass --overwrite/,
    );
    expect(oneLine(rift([...args, '--out', `./mine/../mine`]))).toMatch(/is the --model directory/);
    expect(fs.readFileSync(at('mine', 'model.safetensors')).equals(weights)).toBe(true);
    const ok = rift([...args, '--out', 'mine', '--overwrite']);
    expect(ok.stderr).toBe('');
    expect(fs.readFileSync(at('mine', 'model.safetensors')).equals(weights)).toBe(false);
    fs.mkdirSync(at('t-in'));
    fs.copyFileSync(at('problems.jsonl'), at('t-in', 'train.json'));
    expect(oneLine(rift([...args.slice(0, 6), 't-in/train.json', ...args.slice(7), '--out', 't-in']))).toMatch(
      /^rift: --out: t-in\/train\.json is the same file as --problems/,
    );
    fs.mkdirSync(at('t-in', 'checkpoints', 'step-000001'), { recursive: true });
    fs.copyFileSync(at('problems.jsonl'), at('t-in', 'checkpoints', 'step-000001', 'p.jsonl')); // pruning would delete it
    expect(
      oneLine(rift([...args.slice(0, 6), 't-in/checkpoints/step-000001/p.jsonl', ...args.slice(7), '--out', 't-in'])),
    ).toMatch(
      /^rift: --problems: t-in\/checkpoints\/step-000001\/p\.jsonl lies inside t-in\/checkpoints, which --out replaces/,
    );
    fs.writeFileSync(at('t-in', 'file'), '');
    expect(oneLine(rift([...args, '--out', 't-in/file']))).toMatch(
      /^rift: --out: t-in\/file: exists and is not a directory/,
    );
  });
});

describe('one writer per output', () => {
  test('a second rift train into the same --out is refused while the first runs; the first is not disturbed', async () => {
    const args = [
      'train',
      '--method',
      'sft',
      '--model',
      modelDir,
      '--problems',
      'problems.jsonl',
      '--out',
      'race',
      '--steps',
      '30',
      '--examples-per-step',
      '2',
      '--checkpoint-every',
      '20',
    ];
    const first = riftAsync(tmp, args);
    const lock = at('race', '.rift.lock');
    const t0 = Date.now();
    while (!fs.existsSync(lock) && Date.now() - t0 < 60_000) await new Promise((r) => setTimeout(r, 20));
    process.kill(first.pid, 'SIGSTOP'); // hold the first mid-run (deterministic overlap), then let it finish
    let second: CliRun;
    try {
      second = rift(args);
    } finally {
      process.kill(first.pid, 'SIGCONT');
    }
    const a = await first.done;
    expect(a.code).toBe(0);
    expect(oneLine(second)).toMatch(
      new RegExp(
        `^rift: --out: race: in use by rift train \\(pid ${first.pid} on host ${os.hostname().replace(/\./g, '\\.')}, since `,
      ),
    );
    const steps = fs
      .readFileSync(at('race', 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l).step);
    expect(steps).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
    expect(fs.existsSync(lock)).toBe(false); // released
  }, 120_000);

  test('rollout: a live holder refuses, a dead holder’s lock is taken over', async () => {
    const holder = riftAsync(tmp, ['profile-memory', '--config', 'qwen2.5-math-7b']); // any live process
    const lock = at('r-lock.jsonl.lock');
    const info = (pid: number) =>
      JSON.stringify({ pid, host: os.hostname(), started: 'x', command: 'rift rollout', token: 't' });
    fs.writeFileSync(lock, info(holder.pid));
    const args = [
      'rollout',
      '--model',
      modelDir,
      '--problems',
      'problems.jsonl',
      '--k',
      '1',
      '--max-new-tokens',
      '8',
      '--out',
      'r-lock.jsonl',
    ];
    expect(oneLine(rift(args))).toMatch(
      new RegExp(`^rift: --out: r-lock\\.jsonl: in use by rift rollout \\(pid ${holder.pid} `),
    );
    await holder.done;
    fs.writeFileSync(lock, info(deadPid()));
    const r = rift(args);
    expect(r.code).toBe(0);
    expect(fs.existsSync(lock)).toBe(false);
  }, 120_000);
});

test('resume after kill -9: metrics cut back to the checkpoint, orphan temps removed, old checkpoints pruned', () => {
  const args = [
    'train',
    '--method',
    'sft',
    '--model',
    modelDir,
    '--problems',
    'problems.jsonl',
    '--out',
    'res',
    '--steps',
    '6',
    '--examples-per-step',
    '2',
    '--checkpoint-every',
    '2',
    '--keep-checkpoints',
    '2',
  ];
  expect(rift(args).code).toBe(0);
  const ck = at('res', 'checkpoints');
  expect(fs.readdirSync(ck).sort()).toEqual(['latest.json', 'step-000004', 'step-000006']);
  // the state a kill -9 during step 6's checkpoint write leaves: latest = step 4, metrics up to step 5 + a torn
  // line, the half-written checkpoint in a temp directory
  fs.writeFileSync(path.join(ck, 'latest.json'), JSON.stringify({ dir: 'step-000004', step: 4 }));
  fs.renameSync(path.join(ck, 'step-000006'), path.join(ck, `.step-000006.${deadPid()}.x1.tmp`));
  const metrics = at('res', 'metrics.jsonl');
  const lines = fs.readFileSync(metrics, 'utf8').trim().split('\n');
  fs.writeFileSync(metrics, lines.slice(0, 5).join('\n') + '\n{"step":6,"ep');
  const r = rift([...args, '--resume']);
  expect(r.code).toBe(0);
  expect(r.stderr).toMatch(/removed 1 unfinished checkpoint write/);
  expect(r.stderr).toMatch(/metrics\.jsonl: removed 1 step record past the checkpoint/);
  expect(
    fs
      .readFileSync(metrics, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l).step),
  ).toEqual([1, 2, 3, 4, 5, 6]);
  expect(fs.readdirSync(ck).sort()).toEqual(['latest.json', 'step-000004', 'step-000006']);
  // a bad checkpoint file is named
  fs.writeFileSync(path.join(ck, 'step-000006', 'trainer-state.json'), '{"format":"rift-trainer-state","vers');
  expect(oneLine(rift([...args, '--resume']))).toMatch(/^rift: .*step-000006\/trainer-state\.json: not valid JSON/);
}, 120_000);

describe('inputs', () => {
  test('a line over the limit (RIFT_MAX_LINE_BYTES) and endless input are one-line errors naming file:line', () => {
    fs.writeFileSync(
      at('long.jsonl'),
      `{"id":"a","problem":"1+1=?","answer":"2"}\n{"id":"b","problem":"${'9'.repeat(500)}","answer":"1"}\n`,
    );
    expect(
      oneLine(rift(['eval', '--model', modelDir, '--problems', 'long.jsonl'], { RIFT_MAX_LINE_BYTES: '200' })),
    ).toMatch(/^rift: long\.jsonl:2: line is longer than 200 bytes/);
    if (fs.existsSync('/dev/zero'))
      expect(
        oneLine(
          rift(['rollout', '--model', modelDir, '--problems', '/dev/zero', '--out', 'z.jsonl'], {
            RIFT_MAX_LINE_BYTES: '65536',
          }),
        ),
      ).toMatch(/^rift: \/dev\/zero:1: line is longer than 65536 bytes/);
  });

  test('a tokenizer.json whose model type disagrees with its vocab: the file and field named', () => {
    fs.cpSync(modelDir, at('badtok'), { recursive: true });
    const f = at('badtok', 'tokenizer.json');
    const tj = JSON.parse(fs.readFileSync(f, 'utf8'));
    tj.model = { type: 'Unigram', vocab: tj.model.vocab };
    fs.writeFileSync(f, JSON.stringify(tj));
    expect(oneLine(rift(['eval', '--model', 'badtok', '--problems', 'problems.jsonl']))).toMatch(
      /^rift: badtok\/tokenizer\.json: model\.vocab must be an array of \[token, score\] pairs for model type "Unigram", got object/,
    );
  });

  test('rollout summary: positives by the reward sign (a custom reward module), the verifier counted apart', () => {
    fs.writeFileSync(at('effort.js'), 'module.exports = (s) => (s.response.length > 0 ? 0.5 : -1);\n');
    const r = rift([
      'rollout',
      '--model',
      modelDir,
      '--problems',
      'problems.jsonl',
      '--k',
      '2',
      '--max-new-tokens',
      '16',
      '--out',
      'effort.jsonl',
      '--reward-module',
      'effort.js',
      '--json',
    ]);
    expect(r.code).toBe(0);
    const stats = JSON.parse(r.stdout.trim().split('\n').pop()!).stats;
    const recs = fs
      .readFileSync(at('effort.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(stats.positives).toBe(recs.filter((x) => x.reward > 0).length);
    expect(stats.correct).toBe(recs.filter((x) => x.correct).length);
    expect(stats.positives).toBeGreaterThan(stats.correct); // the model rarely gets one right; the module pays for any answer
  });
});
