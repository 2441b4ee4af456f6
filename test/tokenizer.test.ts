// Tokenizer: character-level tokenizer.json round trips through a directory, special tokens, eos ids from
// generation_config.json, chat templates (inline and chat_template.jinja), and clear errors for missing files.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { makeCharTokenizer, Tokenizer } from '../lib/engine/tokenizer';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rift-tok-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
let dirNo = 0;

const CHATML =
  "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>' + '\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
const CHARS = [...'0123456789+-*/=()., abcdefghijklmnopqrstuvwxyz?!\n:'];
const SPECIALS = ['<|endoftext|>', '<|im_start|>', '<|im_end|>', '<unk>'];

function writeDir(files: Record<string, unknown>): string {
  const dir = fs.mkdtempSync(path.join(tmp, `d${dirNo++}-`));
  for (const [name, v] of Object.entries(files))
    fs.writeFileSync(path.join(dir, name), typeof v === 'string' ? v : JSON.stringify(v, null, 2));
  return dir;
}

function charDir(extra: Record<string, unknown> = {}, opts: Parameters<typeof makeCharTokenizer>[2] = {}): string {
  const { tokenizer, tokenizerConfig } = makeCharTokenizer(CHARS, SPECIALS, {
    eos: '<|im_end|>',
    pad: '<|endoftext|>',
    unk: '<unk>',
    chatTemplate: CHATML,
    ...opts,
  });
  return writeDir({ 'tokenizer.json': tokenizer, 'tokenizer_config.json': tokenizerConfig, ...extra });
}

describe('character tokenizer', () => {
  test('round trip through a directory: one id per character, no spaces added, text restored exactly', () => {
    const tok = Tokenizer.load(charDir());
    expect(tok.vocabSize).toBe(SPECIALS.length + CHARS.length);
    for (const s of ['12+7=19', 'what is 3 * (4 - 1)?\nanswer: 9.', '  two  spaces , then . ', '', 'a']) {
      const ids = tok.encode(s);
      expect(ids).toBeInstanceOf(Int32Array);
      expect(ids.length).toBe([...s].length);
      expect(Array.from(ids)).toEqual([...s].map((c) => SPECIALS.length + CHARS.indexOf(c)));
      expect(tok.decode(ids)).toBe(s);
    }
  });

  test('special tokens are matched whole, kept or skipped on decode', () => {
    const tok = Tokenizer.load(charDir());
    const ids = tok.encode('<|im_start|>user\n1+1<|im_end|>');
    expect(ids[0]).toBe(1);
    expect(ids[ids.length - 1]).toBe(2);
    expect(ids.length).toBe(1 + 5 + 3 + 1);
    expect(tok.decode(ids)).toBe('<|im_start|>user\n1+1<|im_end|>');
    expect(tok.decode(ids, { skipSpecialTokens: true })).toBe('user\n1+1');
    expect(tok.isSpecial(2)).toBe(true);
    expect(tok.isSpecial(SPECIALS.length)).toBe(false);
  });

  test('unknown characters map to the unk token; without one they are dropped', () => {
    expect(Array.from(Tokenizer.load(charDir()).encode('1#2'))).toEqual([4 + 1, 3, 4 + 2]);
    const { tokenizer } = makeCharTokenizer(['a', 'b'], []);
    expect(Array.from(new Tokenizer(tokenizer).encode('aXb'))).toEqual([0, 1]);
  });

  test('eos/pad/bos ids from tokenizer_config.json and generation_config.json (number or list, deduplicated)', () => {
    let tok = Tokenizer.load(charDir());
    expect(tok.eosTokenIds).toEqual([2]);
    expect(tok.padTokenId).toBe(0);
    expect(tok.bosTokenId).toBeUndefined();
    tok = Tokenizer.load(charDir({ 'generation_config.json': { eos_token_id: [0, 2], bos_token_id: 1 } }));
    expect(tok.eosTokenIds).toEqual([0, 2]);
    expect(tok.bosTokenId).toBe(1);
    tok = Tokenizer.load(charDir({ 'generation_config.json': { eos_token_id: 0 } }));
    expect(tok.eosTokenIds).toEqual([0, 2]);
    expect(() => Tokenizer.load(charDir({ 'generation_config.json': { eos_token_id: 'x' } }))).toThrow(/eos_token_id/);
  });

  test('bad arguments', () => {
    expect(() => makeCharTokenizer(['a', 'a'])).toThrow(/twice/);
    expect(() => makeCharTokenizer(['ab'])).toThrow(/one character/);
    expect(() => makeCharTokenizer(['a'], ['<s>'], { eos: '</s>' })).toThrow(/eos/);
    const tok = Tokenizer.load(charDir());
    expect(() => tok.decode([tok.vocabSize])).toThrow(RangeError);
    expect(() => tok.decode([-1])).toThrow(/ids\[0\]/);
    expect(tok.decode([])).toBe('');
  });
});

describe('chat template', () => {
  const messages = [
    { role: 'system', content: 'be brief' },
    { role: 'user', content: '2+2?' },
  ];

  test('renders ChatML from tokenizer_config.json, with and without the generation prompt', () => {
    const tok = Tokenizer.load(charDir());
    const base = '<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n';
    expect(tok.applyChatTemplate(messages)).toBe(base);
    expect(tok.applyChatTemplate(messages, { addGenerationPrompt: true })).toBe(base + '<|im_start|>assistant\n');
    const ids = tok.encodeChat(messages, { addGenerationPrompt: true });
    expect(tok.decode(ids)).toBe(base + '<|im_start|>assistant\n');
  });

  test('special tokens, loop variables, filters and extra variables reach the template', () => {
    const t =
      '{{ bos_token }}{% for m in messages %}{% if loop.last %}[{{ m.content | upper }}]{{ eos_token }}{% endif %}{% endfor %}{{ who }}';
    const tok = Tokenizer.load(charDir({}, { bos: '<|endoftext|>', chatTemplate: t }));
    expect(tok.applyChatTemplate(messages, { extra: { who: '!' } })).toBe('<|endoftext|>[2+2?]<|im_end|>!');
  });

  test('chat_template.jinja is used when tokenizer_config.json has none; named template lists pick "default"', () => {
    const { tokenizer, tokenizerConfig } = makeCharTokenizer(CHARS, SPECIALS);
    const dir = writeDir({
      'tokenizer.json': tokenizer,
      'tokenizer_config.json': tokenizerConfig,
      'chat_template.jinja': '{{ messages[0].content }}',
    });
    expect(Tokenizer.load(dir).applyChatTemplate(messages)).toBe('be brief');
    const listed = new Tokenizer(tokenizer, {
      chat_template: [
        { name: 'tool_use', template: 'T' },
        { name: 'default', template: 'D' },
      ],
    });
    expect(listed.applyChatTemplate(messages)).toBe('D');
  });

  test('raise_exception in a template becomes an Error', () => {
    const tok = Tokenizer.load(
      charDir(
        {},
        { chatTemplate: "{% if messages[0].role != 'user' %}{{ raise_exception('first must be user') }}{% endif %}" },
      ),
    );
    expect(() => tok.applyChatTemplate(messages)).toThrow(/first must be user/);
  });

  test('a tokenizer without a template throws a clear Error', () => {
    const { tokenizer, tokenizerConfig } = makeCharTokenizer(CHARS, SPECIALS);
    const tok = Tokenizer.load(writeDir({ 'tokenizer.json': tokenizer, 'tokenizer_config.json': tokenizerConfig }));
    expect(tok.chatTemplate).toBeUndefined();
    expect(() => tok.applyChatTemplate(messages)).toThrow(/no chat template/);
    expect(() => tok.applyChatTemplate([{ role: 'user' } as never])).toThrow(/no chat template/);
    expect(() => Tokenizer.load(charDir()).applyChatTemplate([{ role: 'user' } as never])).toThrow(/messages\[0\]/);
  });
});

describe('files', () => {
  test('missing directory, missing tokenizer.json, bad JSON', () => {
    expect(() => Tokenizer.load(path.join(tmp, 'nope'))).toThrow(/not a directory/);
    expect(() => Tokenizer.load(writeDir({ 'tokenizer_config.json': {} }))).toThrow(/tokenizer\.json: not found/);
    const { tokenizer } = makeCharTokenizer(['a']);
    expect(() => Tokenizer.load(writeDir({ 'tokenizer.json': tokenizer, 'tokenizer_config.json': '{oops' }))).toThrow(
      /tokenizer_config\.json: not valid JSON/,
    );
    expect(() => Tokenizer.load(writeDir({ 'tokenizer.json': '[1]' }))).toThrow(
      /tokenizer\.json: must hold a JSON object/,
    );
  });

  test('a model type that disagrees with its vocab (or merges, added tokens) is an error naming the file and field', () => {
    const { tokenizer } = makeCharTokenizer(['a', 'b'], ['<eos>']);
    const model = tokenizer.model as Record<string, unknown>;
    const vocab = model.vocab as Record<string, number>;
    const load = (m: Record<string, unknown>, extra: Record<string, unknown> = {}) => {
      const dir = writeDir({ 'tokenizer.json': { ...tokenizer, model: m, ...extra } });
      return { dir, file: path.join(dir, 'tokenizer.json'), run: () => Tokenizer.load(dir) };
    };
    const cases: [Record<string, unknown>, Record<string, unknown>, ErrorConstructor, string][] = [
      [
        { type: 'Unigram', vocab, unk_id: 0 },
        {},
        TypeError,
        'model.vocab must be an array of [token, score] pairs for model type "Unigram", got object',
      ],
      [
        { ...model, vocab: Object.entries(vocab) },
        {},
        TypeError,
        'model.vocab must be an object {token: id} for model type "BPE", got array',
      ],
      [
        { ...model, type: 'WordLevel' },
        {},
        RangeError,
        'model.type must be one of BPE, WordPiece, Unigram, got "WordLevel"',
      ],
      [
        { ...model, vocab: { a: 'x' } },
        {},
        RangeError,
        'model.vocab["a"] must be a token id (an integer ≥ 0), got "x"',
      ],
      [{ ...model, merges: [1] }, {}, TypeError, 'model.merges[0] must be "a b" or ["a", "b"], got 1'],
      [{ type: 'Unigram', vocab: [['a', 'high']] }, {}, TypeError, 'model.vocab[0] must be a [token, score] pair'],
      [{ vocab }, {}, TypeError, 'model.type is missing and cannot be inferred'],
      [model, { added_tokens: [{ id: -1, content: 'x' }] }, TypeError, 'added_tokens[0] must be {id: integer ≥ 0'],
      [model, { decoder: 'Fuse' }, TypeError, 'decoder must be null or an object with a string "type", got string'],
    ];
    for (const [m, extra, cls, msg] of cases) {
      const { file, run } = load(m, extra);
      expect(run).toThrow(cls);
      expect(run).toThrow(`${file}: ${msg}`);
    }
    // an unk_token missing from the vocabulary: the library returns no id for unknown text (it became id 0 silently)
    const wp = new Tokenizer(
      { model: { type: 'WordPiece', vocab: { a: 0, '##b': 1 }, unk_token: '[UNK]', continuing_subword_prefix: '##' } },
      {},
      {},
      undefined,
      'wp.json',
    );
    expect(Array.from(wp.encode('a'))).toEqual([0]);
    expect(() => wp.encode('a x')).toThrow(
      'wp.json: encode produced token id undefined, not in the vocabulary [0, 2) (is model.unk_token in model.vocab?)',
    );
    // a Unigram tokenizer.json that is consistent loads and round-trips
    const uni = new Tokenizer({
      model: {
        type: 'Unigram',
        vocab: [
          ['<unk>', 0],
          ['a', -1],
          ['b', -1],
          ['ab', -0.5],
        ],
        unk_id: 0,
      },
      decoder: { type: 'Fuse' },
    });
    expect(uni.decode(uni.encode('abba'))).toBe('abba');
  });

  test('tokenizer_config.json and generation_config.json are optional', () => {
    const { tokenizer } = makeCharTokenizer(['a', 'b'], ['<eos>']);
    const tok = Tokenizer.load(writeDir({ 'tokenizer.json': tokenizer }));
    expect(tok.eosTokenIds).toEqual([]);
    expect(tok.decode(tok.encode('ab<eos>'))).toBe('ab<eos>');
  });

  test('a byte-level BPE tokenizer.json (Qwen2 style) round trips unicode text', () => {
    // Minimal GPT-2 byte-level BPE: the 256 byte symbols plus one merge ("Ġ" + "t").
    const bytes: number[] = [];
    for (let b = 33; b <= 126; b++) bytes.push(b);
    for (let b = 161; b <= 172; b++) bytes.push(b);
    for (let b = 174; b <= 255; b++) bytes.push(b);
    const cs = [...bytes];
    let n = 0;
    for (let b = 0; b < 256; b++)
      if (!bytes.includes(b)) {
        bytes.push(b);
        cs.push(256 + n++);
      }
    const symbols = cs.map((c) => String.fromCodePoint(c));
    const vocab: Record<string, number> = {};
    symbols.forEach((s, i) => (vocab[s] = i));
    vocab['Ġt'] = 256;
    vocab['<|endoftext|>'] = 257;
    const json = {
      added_tokens: [
        {
          id: 257,
          content: '<|endoftext|>',
          special: true,
          normalized: false,
          lstrip: false,
          rstrip: false,
          single_word: false,
        },
      ],
      normalizer: null,
      pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: true },
      post_processor: null,
      decoder: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: true },
      model: {
        type: 'BPE',
        vocab,
        merges: ['Ġ t'],
        unk_token: null,
        continuing_subword_prefix: null,
        end_of_word_suffix: null,
      },
    };
    const tok = new Tokenizer(json, { eos_token: '<|endoftext|>' });
    const s = 'a t é → ∑<|endoftext|>';
    const ids = tok.encode(s);
    expect(Array.from(ids)).toContain(256);
    expect(tok.decode(ids)).toBe(s);
    expect(tok.decode(ids, { skipSpecialTokens: true })).toBe('a t é → ∑');
    expect(tok.eosTokenIds).toEqual([257]);
  });
});
