// The prompt options of `rift rollout/train/eval` on the embedded base model (plain format, recorded in its
// prompt_format.json): what the records hold, train reusing and checking the rollouts' format, and bad input
// (chat without a template, --system on a plain model, a template without {problem}, a prompt longer than the
// context, a problem edited after its rollout) as one-line errors that leave the outputs untouched.
import * as fs from 'fs';
import * as path from 'path';
import { Tokenizer } from '../lib/engine/tokenizer';
import { readProblems, writeProblems } from '../lib/data/problems';
import { promptHash } from '../lib/loop';
import { readRollouts } from '../lib/rollout/store';
import { buildCli, cliScratch, riftSync } from './helpers/cli';

let tmp: string;
let modelDir: string;
const rift = (args: string[]) => riftSync(tmp, args);
const PLAIN = { format: 'plain', template: '{problem}\n' };

beforeAll(() => {
  buildCli();
  ({ tmp, modelDir } = cliScratch());
}, 180_000);
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const rolloutArgs = (out: string, ...more: string[]) => [
  'rollout',
  '--model',
  modelDir,
  '--problems',
  'problems.jsonl',
  '--k',
  '1',
  '--max-new-tokens',
  '16',
  '--out',
  out,
  ...more,
];

test("rollout records the model's own format and each prompt's tokens; train reuses it and writes it next to the model", () => {
  const r = rift([...rolloutArgs('r.jsonl'), '--json']);
  expect(r.code).toBe(0);
  const result = r.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l))
    .find((l) => l.event === 'result');
  expect(result.promptFormat).toEqual(PLAIN);
  const tok = Tokenizer.load(modelDir);
  const problems = readProblems(path.join(tmp, 'problems.jsonl'));
  const records = readRollouts(path.join(tmp, 'r.jsonl'));
  expect(records).toHaveLength(problems.length);
  for (const rec of records) {
    const ids = tok.encode(`${problems.find((p) => p.id === rec.problemId)!.problem}\n`);
    expect(rec).toMatchObject({ promptFormat: PLAIN, promptTokens: ids.length, promptHash: promptHash(ids) });
  }
  const t = rift([
    'train',
    '--method',
    'rift',
    '--model',
    modelDir,
    '--rollouts',
    'r.jsonl',
    '--problems',
    'problems.jsonl',
    '--out',
    'trained',
    '--steps',
    '1',
    '--examples-per-step',
    '2',
  ]);
  expect(t.stderr).not.toMatch(/rift:/);
  expect(t.code).toBe(0);
  expect(JSON.parse(fs.readFileSync(path.join(tmp, 'trained', 'prompt_format.json'), 'utf8'))).toEqual(PLAIN);
  // the same format given explicitly is fine; another is refused
  const same = rift([
    'train',
    '--method',
    'rift',
    '--model',
    modelDir,
    '--rollouts',
    'r.jsonl',
    '--problems',
    'problems.jsonl',
    '--out',
    'trained2',
    '--steps',
    '1',
    '--prompt-format',
    'plain',
    '--prompt-template',
    '{problem}\n',
  ]);
  expect(same.code).toBe(0);
  const other = rift([
    'train',
    '--method',
    'rift',
    '--model',
    modelDir,
    '--rollouts',
    'r.jsonl',
    '--problems',
    'problems.jsonl',
    '--out',
    'trained3',
    '--steps',
    '1',
    '--prompt-template',
    'Q: {problem}\n',
  ]);
  expect(other.code).toBe(1);
  expect(other.stderr).toBe(
    'rift: --prompt-format: the rollouts in r.jsonl were sampled with the prompt format {"format":"plain","template":"{problem}\\n"}, ' +
      'these options give {"format":"plain","template":"Q: {problem}\\n"}; leave the prompt options out to train on the rollouts\' format\n',
  );
  // eval --json records the format and each prompt's identity
  const e = rift([
    'eval',
    '--model',
    path.join(tmp, 'trained'),
    '--problems',
    'problems.jsonl',
    '--k',
    '1',
    '--max-new-tokens',
    '8',
    '--json',
    'e.json',
  ]);
  expect(e.code).toBe(0);
  const res = JSON.parse(fs.readFileSync(path.join(tmp, 'e.json'), 'utf8'));
  expect(res.promptFormat).toEqual(PLAIN);
  expect(res.perProblem.map((p: { promptHash: string }) => p.promptHash)).toEqual(records.map((x) => x.promptHash));
}, 180_000);

test('a problem edited after its rollout: train names the record instead of training on another prompt', () => {
  expect(rift(rolloutArgs('edit.jsonl')).code).toBe(0);
  const problems = readProblems(path.join(tmp, 'problems.jsonl'));
  problems[1] = { ...problems[1], problem: problems[1].problem.replace(/=\?$/, '+1=?') };
  writeProblems(path.join(tmp, 'edited.jsonl'), problems);
  const t = rift([
    'train',
    '--method',
    'rift',
    '--model',
    modelDir,
    '--rollouts',
    'edit.jsonl',
    '--problems',
    'edited.jsonl',
    '--out',
    'edit-out',
    '--steps',
    '1',
  ]);
  expect(t.code).toBe(1);
  expect(t.stderr).toMatch(
    new RegExp(
      `^rift: edit\\.jsonl: problem "${problems[1].id}" sample 0: the prompt built now \\(\\d+ tokens, hash [0-9a-f]{16}\\) is not the one the sample was drawn after \\(\\d+ tokens, hash [0-9a-f]{16}\\): the problem text, the prompt format or the tokenizer changed since the rollout\\n$`,
    ),
  );
  // and resuming the rollout store with the edited problem is refused, the store unchanged
  const before = fs.readFileSync(path.join(tmp, 'edit.jsonl'));
  const again = rift([
    'rollout',
    '--model',
    modelDir,
    '--problems',
    'edited.jsonl',
    '--k',
    '2',
    '--max-new-tokens',
    '16',
    '--out',
    'edit.jsonl',
  ]);
  expect(again.code).toBe(1);
  expect(again.stderr).toMatch(/was sampled after another prompt .* use another file\n$/);
  expect(fs.readFileSync(path.join(tmp, 'edit.jsonl')).equals(before)).toBe(true);
}, 120_000);

test('bad prompt options and prompts too long for the context: one-line errors, the outputs untouched', () => {
  fs.writeFileSync(path.join(tmp, 'keep.jsonl'), '');
  const cases: [string[], RegExp][] = [
    [
      ['--prompt-format', 'chat'],
      /^rift: --prompt-format chat: .* has no chat template \(no chat_template in tokenizer_config\.json, no chat_template\.jinja\); use --prompt-format plain\n$/,
    ],
    [
      ['--system', 'Be brief.'],
      /^rift: --system: a system message needs the chat format, and this run uses plain \(.* has prompt_format\.json with plain\)\n$/,
    ],
    [['--prompt-template', 'Q: problem'], /^rift: --prompt-template: "Q: problem" has no \{problem\} placeholder\n$/],
    [
      ['--prompt-format', 'xml'],
      /^rift: option '--prompt-format <kind>' argument 'xml' is invalid\. Allowed choices are chat, plain, auto\.\n$/,
    ],
  ];
  for (const [flags, msg] of cases) {
    const r = rift(rolloutArgs('keep.jsonl', ...flags));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(msg);
    expect(fs.readFileSync(path.join(tmp, 'keep.jsonl'), 'utf8')).toBe('');
  }
  // the embedded model's context is 256 positions: a 300-character problem does not fit (one token per character)
  writeProblems(path.join(tmp, 'long.jsonl'), [
    { id: 'short', problem: '1+2=?', answer: '3' },
    { id: 'long', problem: `${'1+'.repeat(150)}1=?`, answer: '151' },
  ]);
  const long = rift(['rollout', '--model', modelDir, '--problems', 'long.jsonl', '--k', '1', '--out', 'keep.jsonl']);
  expect(long.code).toBe(1);
  expect(long.stderr).toBe(
    `rift: --problems: problem "long": its prompt is 304 tokens; with --max-new-tokens 96 it exceeds the model's context of 256 positions (max_position_embeddings)\n`,
  );
  expect(fs.readFileSync(path.join(tmp, 'keep.jsonl'), 'utf8')).toBe('');
  const ev = rift(['eval', '--model', modelDir, '--problems', 'long.jsonl', '--k', '1', '--max-new-tokens', '8']);
  expect(ev.code).toBe(1);
  expect(ev.stderr).toMatch(
    /^rift: --problems: problem "long": its prompt is 304 tokens; with --max-new-tokens 8 it exceeds/,
  );
}, 120_000);

test('a chat template that fails to render names the template file and the problem; the output is not written', () => {
  const dir = path.join(tmp, 'broken-template');
  fs.mkdirSync(dir);
  for (const f of fs.readdirSync(modelDir)) fs.copyFileSync(path.join(modelDir, f), path.join(dir, f));
  fs.writeFileSync(
    path.join(dir, 'chat_template.jinja'),
    "{% for m in messages %}{% if m.role == 'user' %}{{ raise_exception('only system turns here') }}{% endif %}{% endfor %}",
  );
  const r = rift([
    'rollout',
    '--model',
    dir,
    '--problems',
    'problems.jsonl',
    '--k',
    '1',
    '--prompt-format',
    'chat',
    '--out',
    'never.jsonl',
  ]);
  expect(r.code).toBe(1);
  const first = readProblems(path.join(tmp, 'problems.jsonl'))[0].id;
  expect(r.stderr).toBe(
    `rift: problem "${first}": ${path.join(dir, 'chat_template.jinja')}: the chat template failed to render: only system turns here\n`,
  );
  expect(fs.existsSync(path.join(tmp, 'never.jsonl'))).toBe(false);
  fs.writeFileSync(path.join(dir, 'chat_template.jinja'), '{% if %}');
  const p = rift(['eval', '--model', dir, '--problems', 'problems.jsonl', '--k', '1', '--prompt-format', 'chat']);
  expect(p.code).toBe(1);
  expect(p.stderr).toMatch(/^rift: problem "[^"]+": .*chat_template\.jinja: the chat template does not parse: /);
}, 120_000);
