// Prompt formats (lib/loop/prompt.ts, prompt-choice.ts, lib/data/prompt-spec.ts): chat and plain text and ids,
// which format a run resolves to, the formats recorded in model directories and rollouts, and bad input (a model
// without a template, a template that fails, a template without {problem}, prompts longer than the context,
// records whose prompt tokens changed).
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { makeCharTokenizer, Tokenizer } from '../lib/engine/tokenizer';
import {
  buildPrompts,
  DEFAULT_CHAT_TEMPLATE,
  DEFAULT_PLAIN_TEMPLATE,
  exampleFromRecord,
  PAPER_INSTRUCTION,
  PromptFormat,
  promptHash,
  readPromptFormatFile,
  referenceExamples,
  resolvePromptSpec,
  rolloutPromptSpec,
  trainingPromptSpec,
  writePromptFormatFile,
} from '../lib/loop';
import { checkPromptSpec, fillTemplate, type PromptSpec } from '../lib/data/prompt-spec';
import { BASE_PROMPT_FORMAT, promptFor as basePromptFor } from '../lib/demo/base-model';
import type { RolloutRecord } from '../lib/rollout/store';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rift-prompt-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
let dirNo = 0;

const CHATML =
  "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>' + '\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
const SPECIALS = ['<pad>', '<bos>', '<|im_start|>', '<|im_end|>'];
const CHARS = [...new Set([...`0123456789+-*=?$&{}\\., :\n${PAPER_INSTRUCTION}abcdefghijklmnopqrstuvwxyzQA`])];
const BOS_PROCESSOR = {
  type: 'TemplateProcessing',
  single: [{ SpecialToken: { id: '<bos>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
  pair: [
    { SpecialToken: { id: '<bos>', type_id: 0 } },
    { Sequence: { id: 'A', type_id: 0 } },
    { Sequence: { id: 'B', type_id: 1 } },
  ],
  special_tokens: { '<bos>': { id: '<bos>', ids: [1], tokens: ['<bos>'] } },
};

/** A model-like directory: a character tokenizer (a BOS post-processor, optionally a chat template) and other files. */
function modelDir(o: { chatTemplate?: string; files?: Record<string, string> } = {}): string {
  const dir = path.join(tmp, `m${dirNo++}`);
  fs.mkdirSync(dir);
  const { tokenizer, tokenizerConfig } = makeCharTokenizer(CHARS, SPECIALS, {
    pad: '<pad>',
    bos: '<bos>',
    eos: '<|im_end|>',
    chatTemplate: o.chatTemplate,
  });
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify({ ...tokenizer, post_processor: BOS_PROCESSOR }));
  fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify(tokenizerConfig));
  for (const [n, v] of Object.entries(o.files ?? {})) fs.writeFileSync(path.join(dir, n), v);
  return dir;
}

const chatDir = modelDir({ chatTemplate: CHATML });
const plainDir = modelDir();
const chatTok = Tokenizer.load(chatDir);
const plainTok = Tokenizer.load(plainDir);
const P = { id: 'p1', problem: '7+5*3-4=?' };

describe('PromptFormat', () => {
  test('chat: [system?, user] through the chat template with the generation prompt; ids without the BOS post-processor', () => {
    const f = new PromptFormat({ format: 'chat', template: DEFAULT_CHAT_TEMPLATE, system: 'be brief' }, chatTok);
    expect(f.messages(P)).toEqual([
      { role: 'system', content: 'be brief' },
      { role: 'user', content: `7+5*3-4=?\n${PAPER_INSTRUCTION}` },
    ]);
    const text = `<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\n7+5*3-4=?\n${PAPER_INSTRUCTION}<|im_end|>\n<|im_start|>assistant\n`;
    expect(f.text(P)).toBe(text);
    expect(f.addSpecialTokens).toBe(false);
    const ids = f.ids(P);
    expect(Array.from(ids)).toEqual(Array.from(chatTok.encode(text, { addSpecialTokens: false })));
    expect(ids[0]).toBe(chatTok.tokenToId('<|im_start|>'));
    expect(chatTok.decode(ids)).toBe(text);
    const noSystem = new PromptFormat({ format: 'chat', template: 'Q: {problem}' }, chatTok);
    expect(noSystem.text(P)).toBe('<|im_start|>user\nQ: 7+5*3-4=?<|im_end|>\n<|im_start|>assistant\n');
  });

  test('plain: the template filled in, ids with the post-processor (BOS first)', () => {
    const f = new PromptFormat({ format: 'plain', template: 'Q: {problem}\nA:' }, plainTok);
    expect(f.text(P)).toBe('Q: 7+5*3-4=?\nA:');
    const ids = f.ids(P);
    expect(ids[0]).toBe(1);
    expect(Array.from(ids.subarray(1))).toEqual(
      Array.from(plainTok.encode('Q: 7+5*3-4=?\nA:', { addSpecialTokens: false })),
    );
    expect(() => f.messages(P)).toThrow(/^messages: the plain format/);
  });

  test('{problem} is the only placeholder: every occurrence replaced, $-patterns and braces literal', () => {
    expect(fillTemplate('{problem} = {problem}? \\boxed{} {x}', '$& 1')).toBe('$& 1 = $& 1? \\boxed{} {x}');
  });

  test('bad specs, a chat format on a tokenizer without a template, a template that fails to render', () => {
    expect(() => checkPromptSpec({ format: 'xml', template: '{problem}' })).toThrow(
      /^prompt format: format must be one of chat, plain, got "xml"/,
    );
    expect(() => checkPromptSpec({ format: 'plain', template: 'no placeholder' })).toThrow(
      /^prompt format: template: "no placeholder" has no \{problem\} placeholder/,
    );
    expect(() => checkPromptSpec({ format: 'plain', template: '{problem}', system: 's' })).toThrow(
      /system is only for the chat format/,
    );
    expect(() => checkPromptSpec({ format: 'chat', template: '{problem}', system: 3 })).toThrow(TypeError);
    expect(() => new PromptFormat({ format: 'chat', template: '{problem}' }, plainTok)).toThrow(
      new RegExp(
        `^prompt format chat: ${plainDir.replace(/[\\^$.*+?()[\]{}|/]/g, '\\$&')} has no chat template .*use the plain format`,
      ),
    );
    const raising = Tokenizer.load(
      modelDir({
        chatTemplate: "{% if messages[0].role == 'user' %}{{ raise_exception('no system message') }}{% endif %}",
      }),
    );
    expect(() => new PromptFormat({ format: 'chat', template: '{problem}' }, raising).text(P)).toThrow(
      /^problem "p1": .*tokenizer_config\.json \(chat_template\): the chat template failed to render: no system message/,
    );
    const broken = modelDir({ files: { 'chat_template.jinja': '{% if %}' } });
    expect(() => new PromptFormat({ format: 'chat', template: '{problem}' }, Tokenizer.load(broken)).ids(P)).toThrow(
      /^problem "p1": .*chat_template\.jinja: the chat template does not parse: /,
    );
  });
});

describe('which format a run uses', () => {
  const own = modelDir({
    chatTemplate: CHATML,
    files: { 'prompt_format.json': JSON.stringify({ format: 'chat', template: 'Solve: {problem}', system: 'S' }) },
  });
  const ownTok = Tokenizer.load(own);
  const names = { format: '--prompt-format', system: '--system', template: '--prompt-template' };

  test("auto: the directory's prompt_format.json, else chat when there is a template, else plain with the default template", () => {
    expect(resolvePromptSpec({}, { dir: own, tokenizer: ownTok })).toEqual({
      format: 'chat',
      template: 'Solve: {problem}',
      system: 'S',
    });
    expect(resolvePromptSpec({ format: 'auto' }, { dir: chatDir, tokenizer: chatTok })).toEqual({
      format: 'chat',
      template: DEFAULT_CHAT_TEMPLATE,
    });
    expect(resolvePromptSpec({}, { dir: plainDir, tokenizer: plainTok })).toEqual({
      format: 'plain',
      template: DEFAULT_PLAIN_TEMPLATE,
    });
    expect(DEFAULT_PLAIN_TEMPLATE).toBe(`{problem}\n${PAPER_INSTRUCTION}\n`);
  });

  test('explicit options override the recorded fields; the recorded ones stay for the same format', () => {
    expect(resolvePromptSpec({ system: 'T' }, { dir: own, tokenizer: ownTok })).toEqual({
      format: 'chat',
      template: 'Solve: {problem}',
      system: 'T',
    });
    expect(resolvePromptSpec({ format: 'chat', template: '{problem}' }, { dir: own, tokenizer: ownTok })).toEqual({
      format: 'chat',
      template: '{problem}',
      system: 'S',
    });
    expect(resolvePromptSpec({ format: 'plain' }, { dir: own, tokenizer: ownTok })).toEqual({
      format: 'plain',
      template: DEFAULT_PLAIN_TEMPLATE,
    });
    expect(
      resolvePromptSpec({ format: 'plain', template: 'Q: {problem}\nA:' }, { dir: chatDir, tokenizer: chatTok }),
    ).toEqual({ format: 'plain', template: 'Q: {problem}\nA:' });
  });

  test('errors name the options and the directory', () => {
    expect(() => resolvePromptSpec({ format: 'chat' }, { dir: plainDir, tokenizer: plainTok }, names)).toThrow(
      /^--prompt-format chat: .*m1 has no chat template \(no chat_template in tokenizer_config\.json, no chat_template\.jinja\); use --prompt-format plain$/,
    );
    expect(() => resolvePromptSpec({ system: 'S' }, { dir: plainDir, tokenizer: plainTok }, names)).toThrow(
      /^--system: a system message needs the chat format, and this run uses plain \(.*has no chat template\)$/,
    );
    expect(() => resolvePromptSpec({ template: 'Q:' }, { dir: chatDir, tokenizer: chatTok }, names)).toThrow(
      /^--prompt-template: "Q:" has no \{problem\} placeholder$/,
    );
    expect(() => resolvePromptSpec({ format: 'xml' as never }, { dir: chatDir, tokenizer: chatTok }, names)).toThrow(
      /^--prompt-format: must be chat, plain or auto/,
    );
    const bad = modelDir({ files: { 'prompt_format.json': '{"format": "plain"' } });
    expect(() => resolvePromptSpec({}, { dir: bad, tokenizer: plainTok })).toThrow(
      /prompt_format\.json: not valid JSON/,
    );
    const badField = modelDir({ files: { 'prompt_format.json': '{"format": "plain", "template": "none"}' } });
    expect(() => readPromptFormatFile(badField)).toThrow(
      /prompt_format\.json: template: "none" has no \{problem\} placeholder/,
    );
  });

  test('prompt_format.json round trip; the embedded base model records its format and promptFor agrees with it', () => {
    const dir = modelDir();
    const spec: PromptSpec = { format: 'chat', template: '{problem}', system: 'x' };
    writePromptFormatFile(dir, spec);
    expect(readPromptFormatFile(dir)).toEqual(spec);
    expect(readPromptFormatFile(plainDir)).toBeUndefined();
    const tiny = path.join(__dirname, '..', 'models', 'tiny-base');
    expect(readPromptFormatFile(tiny)).toEqual(BASE_PROMPT_FORMAT);
    const f = new PromptFormat(
      resolvePromptSpec({}, { dir: tiny, tokenizer: Tokenizer.load(tiny) }),
      Tokenizer.load(tiny),
    );
    expect(f.text(P)).toBe(basePromptFor(P));
    expect(f.text(P)).toBe('7+5*3-4=?\n');
  });

  test("train: the rollouts' format; options that repeat it are fine, another one is an error; mixed records are an error", () => {
    const rec = (problemId: string, promptFormat?: PromptSpec) => ({ problemId, sampleIndex: 0, promptFormat });
    const chat: PromptSpec = { format: 'chat', template: DEFAULT_CHAT_TEMPLATE, system: 'S' };
    expect(rolloutPromptSpec([rec('a', chat), rec('b', chat)])).toEqual(chat);
    expect(rolloutPromptSpec([rec('a'), rec('b')])).toBeUndefined();
    expect(() => rolloutPromptSpec([rec('a', chat), rec('b')], 'r.jsonl')).toThrow(
      /^r\.jsonl: holds records of two prompt formats: problem "a" sample 0 has .*problem "b" sample 0 has none/,
    );
    const m = { dir: chatDir, tokenizer: chatTok };
    expect(trainingPromptSpec(chat, {}, m)).toEqual(chat);
    expect(trainingPromptSpec(chat, { format: 'auto' }, m)).toEqual(chat);
    expect(trainingPromptSpec(chat, { format: 'chat', system: 'S' }, m)).toEqual(chat);
    expect(() => trainingPromptSpec(chat, { format: 'plain' }, m, { ...names, rollouts: 'r.jsonl' })).toThrow(
      /^--prompt-format: the rollouts in r\.jsonl were sampled with the prompt format \{"format":"chat","system":"S",.*these options give \{"format":"plain",/,
    );
    expect(() => trainingPromptSpec(chat, { system: 'other' }, m)).toThrow(/were sampled with the prompt format/);
    // nothing recorded (sft, older rollouts): the options for the model
    expect(trainingPromptSpec(undefined, { format: 'plain', template: '{problem}' }, m)).toEqual({
      format: 'plain',
      template: '{problem}',
    });
  });
});

describe('prompt tokens and lengths', () => {
  const f = new PromptFormat({ format: 'plain', template: '{problem}\n' }, plainTok);
  const problems = [
    { id: 'a', problem: '1+2=?' },
    { id: 'long', problem: '1+2+3+4+5+6+7+8+9=?' },
  ];

  test('buildPrompts: every prompt first; one too long for the context names the problem and the options', () => {
    const all = buildPrompts(f, problems, { maxNewTokens: 4, contextLength: 64 });
    expect(Array.from(all.get('long')!)).toEqual(Array.from(f.ids(problems[1])));
    expect(() =>
      buildPrompts(f, problems, {
        maxNewTokens: 4,
        contextLength: 22,
        names: { problems: '--problems', maxNewTokens: '--max-new-tokens' },
      }),
    ).toThrow(
      /^--problems: problem "long": its prompt is 21 tokens; with --max-new-tokens 4 it exceeds the model's context of 22 positions \(max_position_embeddings\)$/,
    );
    expect(() => buildPrompts(f, problems, { contextLength: 20 })).toThrow(
      /^problems: problem "long": its prompt is 21 tokens; it exceeds the model's context of 20/,
    );
  });

  const record = (over: Partial<RolloutRecord> = {}): RolloutRecord => ({
    problemId: 'a',
    sampleIndex: 2,
    text: '3',
    tokens: 2,
    reward: 1,
    correct: true,
    finishReason: 'stop',
    params: { temperature: 1, topK: 0, topP: 1, maxNewTokens: 8, seed: 0 },
    ...over,
  });
  const problem = { ...problems[0], answer: '3' };

  test('a record trains on exactly the prompt it was sampled after; another prompt is an error naming it', () => {
    const ids = f.ids(problem);
    const e = exampleFromRecord(record({ promptTokens: ids.length, promptHash: promptHash(ids) }), problem, f)!;
    expect(Array.from(e.promptIds)).toEqual(Array.from(ids));
    expect(Array.from(e.responseIds)).toEqual([
      ...plainTok.encode('3', { addSpecialTokens: false }),
      plainTok.eosTokenIds[0],
    ]);
    const other = new PromptFormat({ format: 'plain', template: 'Q: {problem}\n' }, plainTok);
    expect(() =>
      exampleFromRecord(record({ promptTokens: ids.length, promptHash: promptHash(ids) }), problem, other, {
        source: 'r.jsonl',
      }),
    ).toThrow(
      /^r\.jsonl: problem "a" sample 2: the prompt built now \(10 tokens, hash [0-9a-f]{16}\) is not the one the sample was drawn after \(7 tokens, hash [0-9a-f]{16}\)/,
    );
    // a record without a hash (written before hashes were recorded) is taken as it is
    expect(exampleFromRecord(record(), problem, other)).not.toBeNull();
  });

  test('an example longer than the context is an error naming it', () => {
    expect(() => exampleFromRecord(record({ text: '1234567890' }), problem, f, { contextLength: 12 })).toThrow(
      /^rollouts: problem "a" sample 2: prompt \(7 tokens\) and response \(11\) make 18 tokens, more than the model's context of 12 positions/,
    );
    expect(() => referenceExamples([{ ...problem, solution: '1+2=3, \\boxed{3}' }], f, { contextLength: 12 })).toThrow(
      /^problems: problem "a" \(reference solution\): prompt \(7 tokens\)/,
    );
    const refs = referenceExamples(
      [
        { ...problem, solution: '\\boxed{3}' },
        { id: 'b', problem: '1=?', answer: '1' },
      ],
      f,
    );
    expect(refs).toHaveLength(1);
    expect(Array.from(refs[0].responseIds)).toEqual([
      ...plainTok.encode('\\boxed{3}', { addSpecialTokens: false }),
      plainTok.eosTokenIds[0],
    ]);
  });
});
