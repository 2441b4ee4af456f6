// HF tokenizers: tokenizer.json through @huggingface/tokenizers, chat templates through @huggingface/jinja.
// A checkpoint directory holds tokenizer.json (required), tokenizer_config.json (special tokens, chat_template,
// clean-up flag; optional) and generation_config.json (eos_token_id(s); optional). transformers ≥ 4.43 may
// store the chat template as chat_template.jinja beside them instead of inside tokenizer_config.json.
//
// tokenizer.json is checked before @huggingface/tokenizers sees it (checkTokenizerJson): the model's type must be
// one the library implements and agree with the shape of its vocab (an object {token: id} for BPE / WordPiece, a
// list of [token, score] for Unigram), merges must be "a b" strings or [a, b] pairs, added tokens {id, content};
// a mismatch is a TypeError/RangeError naming the file and the field (the library would fail later with
// "text is not iterable", or silently encode every text to padding). Files are read with a size limit.
//
// makeCharTokenizer() builds a tokenizer.json for a small character vocabulary (the embedded tiny models):
// a BPE model without merges (every character is one token) and a Fuse decoder, so decode(encode(s)) === s.
import * as fs from 'fs';
import * as path from 'path';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { Template } from '@huggingface/jinja';
import { readFileBounded } from '../data/files';

export interface ChatMessage {
  role: string;
  content: string;
  [key: string]: unknown;
}

export interface ChatTemplateOptions {
  /** Append the assistant header so that the model's continuation is the answer (HF `add_generation_prompt`). */
  addGenerationPrompt?: boolean;
  /** More template variables (e.g. `tools`, `enable_thinking`); they override the special tokens of the same name. */
  extra?: Record<string, unknown>;
}

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function readJson(file: string, required: boolean): Json | undefined {
  if (!fs.existsSync(file)) {
    if (required) throw new Error(`${file}: not found (a tokenizer directory needs tokenizer.json)`);
    return undefined;
  }
  let v: unknown;
  const text = readFileBounded(file).toString('utf8'); // errors name the file
  try {
    v = JSON.parse(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text);
  } catch (e) {
    throw new Error(`${path.basename(file)}: not valid JSON (${(e as Error).message})`);
  }
  if (!isObject(v)) throw new TypeError(`${path.basename(file)}: must hold a JSON object`);
  return v;
}

/** A special token in tokenizer_config.json is a string or an AddedToken dict ({content, ...}). */
function tokenString(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (isObject(v) && typeof v.content === 'string') return v.content;
  return undefined;
}

/** `chat_template` may be a string or a list of {name, template}; the one named "default" (or the only one) is used. */
function pickTemplate(v: unknown, file: string): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'string') return v;
  if (Array.isArray(v)) {
    const named = v.filter(
      (t): t is { name: string; template: string } => isObject(t) && typeof t.template === 'string',
    );
    const t = named.find((x) => x.name === 'default') ?? (named.length === 1 ? named[0] : undefined);
    if (t) return t.template;
    throw new Error(
      `${file}: chat_template is a list without a "default" entry (names: ${named.map((x) => x.name).join(', ')})`,
    );
  }
  throw new TypeError(`${file}: chat_template must be a string or a list of {name, template}`);
}

const kindOf = (v: unknown) => (v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v);
const MODEL_TYPES = ['BPE', 'WordPiece', 'Unigram'] as const;

function checkVocabObject(source: string, vocab: unknown, type: string): void {
  if (!isObject(vocab))
    throw new TypeError(
      `${source}: model.vocab must be an object {token: id} for model type "${type}", got ${kindOf(vocab)}`,
    );
  for (const [tok, id] of Object.entries(vocab))
    if (!Number.isSafeInteger(id) || (id as number) < 0)
      throw new RangeError(
        `${source}: model.vocab[${JSON.stringify(tok).slice(0, 80)}] must be a token id (an integer ≥ 0), got ${JSON.stringify(id)}`,
      );
}

function checkMerges(source: string, merges: unknown): void {
  if (merges === undefined || merges === null) return;
  if (!Array.isArray(merges)) throw new TypeError(`${source}: model.merges must be an array, got ${kindOf(merges)}`);
  merges.forEach((m, i) => {
    const pair = Array.isArray(m) && m.length === 2 && typeof m[0] === 'string' && typeof m[1] === 'string';
    if (!pair && !(typeof m === 'string' && m.split(' ').length === 2))
      throw new TypeError(
        `${source}: model.merges[${i}] must be "a b" or ["a", "b"], got ${JSON.stringify(m)?.slice(0, 80)}`,
      );
  });
}

/** A model without "type": inferred as @huggingface/tokenizers does, except its catch-all "Legacy" model. */
function inferModelType(source: string, model: Json): string {
  if (Array.isArray(model.vocab)) return 'Unigram';
  if (isObject(model.vocab) && 'continuing_subword_prefix' in model && 'unk_token' in model)
    return 'merges' in model ? 'BPE' : 'WordPiece';
  throw new TypeError(
    `${source}: model.type is missing and cannot be inferred from the model's fields (give "BPE", "WordPiece" or "Unigram")`,
  );
}

/**
 * Checks what @huggingface/tokenizers relies on in tokenizer.json without checking itself; every failure names
 * `source` (the file) and the field.
 */
export function checkTokenizerJson(json: unknown, source = 'tokenizer.json'): void {
  if (!isObject(json) || !isObject(json.model))
    throw new TypeError(`${source}: must hold an object with a "model" object`);
  const model = json.model;
  const declared = model.type;
  if (
    declared !== undefined &&
    (typeof declared !== 'string' || !(MODEL_TYPES as readonly string[]).includes(declared))
  )
    throw new RangeError(
      `${source}: model.type must be one of ${MODEL_TYPES.join(', ')}, got ${JSON.stringify(declared)?.slice(0, 80)}`,
    );
  const type = (declared as string | undefined) ?? inferModelType(source, model);
  if (type === 'Unigram') {
    if (!Array.isArray(model.vocab))
      throw new TypeError(
        `${source}: model.vocab must be an array of [token, score] pairs for model type "Unigram", got ${kindOf(model.vocab)}`,
      );
    model.vocab.forEach((e, i) => {
      if (
        !Array.isArray(e) ||
        e.length !== 2 ||
        typeof e[0] !== 'string' ||
        typeof e[1] !== 'number' ||
        !Number.isFinite(e[1])
      )
        throw new TypeError(
          `${source}: model.vocab[${i}] must be a [token, score] pair, got ${JSON.stringify(e)?.slice(0, 80)}`,
        );
    });
    const unk = model.unk_id;
    if (
      unk !== undefined &&
      unk !== null &&
      (!Number.isSafeInteger(unk) || (unk as number) < 0 || (unk as number) >= model.vocab.length)
    )
      throw new RangeError(
        `${source}: model.unk_id must be an index into model.vocab (0 … ${model.vocab.length - 1}) or null, got ${JSON.stringify(unk)}`,
      );
  } else {
    checkVocabObject(source, model.vocab, type);
    if (type === 'BPE') checkMerges(source, model.merges);
  }
  const added = json.added_tokens;
  if (added !== undefined && added !== null) {
    if (!Array.isArray(added)) throw new TypeError(`${source}: added_tokens must be an array, got ${kindOf(added)}`);
    added.forEach((t, i) => {
      if (
        !isObject(t) ||
        !Number.isSafeInteger(t.id) ||
        (t.id as number) < 0 ||
        typeof t.content !== 'string' ||
        t.content === ''
      )
        throw new TypeError(`${source}: added_tokens[${i}] must be {id: integer ≥ 0, content: non-empty string, …}`);
    });
  }
  for (const k of ['normalizer', 'pre_tokenizer', 'post_processor', 'decoder'] as const) {
    const v = json[k];
    if (v !== undefined && v !== null && !(isObject(v) && typeof v.type === 'string'))
      throw new TypeError(`${source}: ${k} must be null or an object with a string "type", got ${kindOf(v)}`);
  }
}

/** Runs a call into @huggingface/tokenizers; whatever it throws becomes an Error naming `source`. */
function hfCall<T>(source: string, what: string, f: () => T): T {
  try {
    return f();
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    throw Object.assign(new Error(`${source}: ${what}: ${msg}`), { cause: e });
  }
}

const SPECIAL_KEYS = [
  'bos_token',
  'eos_token',
  'unk_token',
  'pad_token',
  'sep_token',
  'cls_token',
  'mask_token',
] as const;

export class Tokenizer {
  /** The tokenizer.json object it was built from. */
  readonly json: Json;
  /** tokenizer_config.json (empty object when absent). */
  readonly config: Json;
  /** generation_config.json (empty object when absent). */
  readonly generationConfig: Json;
  /** The Jinja chat template, when the directory has one. */
  readonly chatTemplate?: string;
  /** Where the chat template came from (tokenizer_config.json or chat_template.jinja): named in its errors. */
  readonly chatTemplateSource: string;
  /** Special token strings from tokenizer_config.json (bos_token, eos_token, pad_token, ...). */
  readonly specialTokens: Readonly<Record<string, string>>;
  /**
   * Tokens that end a generation: generation_config.json `eos_token_id` (a number or a list) first, then the id of
   * tokenizer_config.json `eos_token`, without duplicates. Empty when neither is given.
   */
  readonly eosTokenIds: readonly number[];
  /** Number of token ids the tokenizer knows (max id + 1, added tokens included); a model's vocab may be larger. */
  readonly vocabSize: number;
  readonly bosTokenId?: number;
  readonly padTokenId?: number;

  private readonly hf: HfTokenizer;
  private readonly cleanUpSpaces: boolean;
  private template?: Template;
  private readonly specialIds: Set<number>;

  /** Names the tokenizer.json in errors. */
  readonly source: string;

  /**
   * Builds a tokenizer from parsed JSON objects (what load() reads from a directory); `source` names tokenizer.json
   * in errors (load() passes its path).
   */
  constructor(
    json: Json,
    config: Json = {},
    generationConfig: Json = {},
    chatTemplate?: string,
    source = 'tokenizer.json',
    chatTemplateSource?: string,
  ) {
    checkTokenizerJson(json, source);
    if (!isObject(config)) throw new TypeError(`tokenizer_config.json: must hold a JSON object, got ${kindOf(config)}`);
    if (!isObject(generationConfig))
      throw new TypeError(`generation_config.json: must hold a JSON object, got ${kindOf(generationConfig)}`);
    this.source = source;
    // tokenizers.js wants every top-level key present (null when unused).
    const full: Json = {
      normalizer: null,
      pre_tokenizer: null,
      post_processor: null,
      decoder: null,
      added_tokens: [],
      ...json,
    };
    this.json = json;
    this.config = config;
    this.generationConfig = generationConfig;
    this.chatTemplate = chatTemplate ?? pickTemplate(config.chat_template, 'tokenizer_config.json');
    this.chatTemplateSource =
      chatTemplateSource ?? (chatTemplate === undefined ? 'tokenizer_config.json' : 'chat template');
    this.hf = hfCall(source, 'cannot be loaded by @huggingface/tokenizers', () => new HfTokenizer(full, config));
    // transformers 5 defaults clean_up_tokenization_spaces to false; tokenizers.js would default to true and turn
    // " ." into "." — only clean up when the config asks for it.
    this.cleanUpSpaces = config.clean_up_tokenization_spaces === true;

    const specials: Record<string, string> = {};
    for (const k of SPECIAL_KEYS) {
      const s = tokenString(config[k]);
      if (s !== undefined) specials[k] = s;
    }
    this.specialTokens = specials;

    let maxId = -1;
    for (const id of hfCall(source, 'vocabulary', () => this.hf.get_vocab(true)).values()) maxId = Math.max(maxId, id);
    this.vocabSize = maxId + 1;
    this.specialIds = new Set<number>();
    for (const [id, t] of hfCall(source, 'added tokens', () => this.hf.get_added_tokens_decoder()))
      if (t.special) this.specialIds.add(id);

    const idOf = (k: string): number | undefined =>
      specials[k] === undefined ? undefined : this.hf.token_to_id(specials[k]);
    const eos: number[] = [];
    const add = (v: unknown, where: string) => {
      if (v === undefined || v === null) return;
      for (const id of Array.isArray(v) ? v : [v]) {
        if (!Number.isSafeInteger(id) || (id as number) < 0)
          throw new RangeError(`${where}: ${JSON.stringify(id)} is not a token id`);
        if (!eos.includes(id as number)) eos.push(id as number);
      }
    };
    add(generationConfig.eos_token_id, 'generation_config.json: eos_token_id');
    add(idOf('eos_token'), 'tokenizer_config.json: eos_token');
    this.eosTokenIds = eos;
    const bos = typeof generationConfig.bos_token_id === 'number' ? generationConfig.bos_token_id : idOf('bos_token');
    if (bos !== undefined) this.bosTokenId = bos;
    const pad = typeof generationConfig.pad_token_id === 'number' ? generationConfig.pad_token_id : idOf('pad_token');
    if (pad !== undefined) this.padTokenId = pad;
  }

  /** Loads tokenizer.json (+ tokenizer_config.json, generation_config.json, chat_template.jinja when present) from `dir`. */
  static load(dir: string): Tokenizer {
    if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new Error(`${dir}: not a directory`);
    const json = readJson(path.join(dir, 'tokenizer.json'), true)!;
    const config = readJson(path.join(dir, 'tokenizer_config.json'), false) ?? {};
    const gen = readJson(path.join(dir, 'generation_config.json'), false) ?? {};
    const configFile = path.join(dir, 'tokenizer_config.json');
    let template = pickTemplate(config.chat_template, configFile);
    let templateSource = `${configFile} (chat_template)`;
    const jinjaFile = path.join(dir, 'chat_template.jinja');
    if (template === undefined && fs.existsSync(jinjaFile)) {
      template = readFileBounded(jinjaFile).toString('utf8');
      templateSource = jinjaFile;
    }
    return new Tokenizer(json, config, gen, template, path.join(dir, 'tokenizer.json'), templateSource);
  }

  /** Token ids of `text`. `addSpecialTokens` (default true, as in HF) runs the post-processor (e.g. Llama's BOS). */
  encode(text: string, opts: { addSpecialTokens?: boolean } = {}): Int32Array {
    if (typeof text !== 'string') throw new TypeError('text: must be a string');
    const ids: unknown[] = hfCall(
      this.source,
      'encode',
      () => this.hf.encode(text, { add_special_tokens: opts.addSpecialTokens ?? true }).ids,
    );
    for (const id of ids)
      if (!(Number.isInteger(id) && (id as number) >= 0 && (id as number) < this.vocabSize))
        // e.g. an unk_token not in the vocabulary
        throw new RangeError(
          `${this.source}: encode produced token id ${String(id)}, not in the vocabulary [0, ${this.vocabSize}) (is model.unk_token in model.vocab?)`,
        );
    return Int32Array.from(ids as number[]);
  }

  /** Text of `ids`; `skipSpecialTokens` drops special added tokens (<|im_end|>, <|endoftext|>, ...). */
  decode(ids: ArrayLike<number>, opts: { skipSpecialTokens?: boolean } = {}): string {
    const arr = Array.from(ids);
    for (let i = 0; i < arr.length; i++)
      if (!Number.isInteger(arr[i]) || arr[i] < 0 || arr[i] >= this.vocabSize)
        throw new RangeError(`ids: ids[${i}] = ${arr[i]} is outside [0, ${this.vocabSize})`);
    if (arr.length === 0) return '';
    return hfCall(this.source, 'decode', () =>
      this.hf.decode(arr, {
        skip_special_tokens: opts.skipSpecialTokens ?? false,
        clean_up_tokenization_spaces: this.cleanUpSpaces,
      }),
    );
  }

  /** Whether `id` is a special added token (skipped by decode({skipSpecialTokens: true})). */
  isSpecial(id: number): boolean {
    return this.specialIds.has(id);
  }

  tokenToId(token: string): number | undefined {
    return this.hf.token_to_id(token);
  }

  idToToken(id: number): string | undefined {
    return this.hf.id_to_token(id);
  }

  /**
   * Renders the chat template with `messages` (transformers' apply_chat_template(tokenize=False)): the template
   * sees `messages`, `add_generation_prompt`, the special tokens (`bos_token`, `eos_token`, ...) and `extra`.
   * A template that does not parse or fails to render (a raise_exception() call included) is an Error naming
   * chatTemplateSource.
   */
  applyChatTemplate(messages: readonly ChatMessage[], opts: ChatTemplateOptions = {}): string {
    if (this.chatTemplate === undefined)
      throw new Error(
        'applyChatTemplate: this tokenizer has no chat template (no chat_template in tokenizer_config.json and no chat_template.jinja)',
      );
    if (!Array.isArray(messages)) throw new TypeError('messages: must be an array of {role, content}');
    messages.forEach((m, i) => {
      if (!isObject(m) || typeof m.role !== 'string' || typeof m.content !== 'string')
        throw new TypeError(`messages[${i}]: must be {role: string, content: string}`);
    });
    const fail = (what: string, e: unknown) =>
      Object.assign(
        new Error(
          `${this.chatTemplateSource}: the chat template ${what}: ${e instanceof Error ? e.message : String(e)}`,
        ),
        { cause: e },
      );
    try {
      this.template ??= new Template(this.chatTemplate);
    } catch (e) {
      throw fail('does not parse', e);
    }
    let text: unknown;
    try {
      text = this.template.render({
        ...this.specialTokens,
        messages,
        add_generation_prompt: opts.addGenerationPrompt ?? false,
        ...opts.extra,
      });
    } catch (e) {
      throw fail('failed to render', e);
    }
    if (typeof text !== 'string')
      throw new TypeError(`${this.chatTemplateSource}: the chat template rendered ${typeof text}, not text`);
    return text;
  }

  /** applyChatTemplate() then encode() without adding special tokens (the template writes its own), as HF does. */
  encodeChat(messages: readonly ChatMessage[], opts: ChatTemplateOptions = {}): Int32Array {
    return this.encode(this.applyChatTemplate(messages, opts), { addSpecialTokens: false });
  }
}

export interface CharTokenizerFiles {
  /** tokenizer.json */
  tokenizer: Json;
  /** tokenizer_config.json */
  tokenizerConfig: Json;
}

export interface CharTokenizerOptions {
  /** Which of `specials` play which role (written to tokenizer_config.json). */
  bos?: string;
  eos?: string;
  pad?: string;
  /** A token that unknown characters map to; without one, characters outside the vocabulary are dropped. */
  unk?: string;
  chatTemplate?: string;
}

/**
 * tokenizer.json and tokenizer_config.json objects for a character-level vocabulary: ids 0..S-1 are `specials`
 * (added tokens, special: true, matched whole in the input), ids S..S+C-1 are `chars` in the given order. The model
 * is a merge-free BPE (each character one token; the Rust `tokenizers` library loads it too) and the decoder is
 * Fuse (tokens concatenated, no spaces between them), so decode(encode(s)) === s for text over `chars`.
 * Write both with JSON.stringify next to the model's config.json.
 */
export function makeCharTokenizer(
  chars: readonly string[],
  specials: readonly string[] = [],
  opts: CharTokenizerOptions = {},
): CharTokenizerFiles {
  const seen = new Set<string>();
  for (const [i, c] of chars.entries()) {
    if (typeof c !== 'string' || [...c].length !== 1)
      throw new RangeError(`chars: chars[${i}] = ${JSON.stringify(c)} must be one character (code point)`);
    if (seen.has(c)) throw new RangeError(`chars: ${JSON.stringify(c)} appears twice`);
    seen.add(c);
  }
  for (const [i, s] of specials.entries()) {
    if (typeof s !== 'string' || s.length === 0)
      throw new RangeError(`specials: specials[${i}] must be a non-empty string`);
    if (seen.has(s)) throw new RangeError(`specials: ${JSON.stringify(s)} appears twice (or is also a character)`);
    seen.add(s);
  }
  for (const k of ['bos', 'eos', 'pad', 'unk'] as const)
    if (opts[k] !== undefined && !specials.includes(opts[k]!))
      throw new RangeError(`${k}: ${JSON.stringify(opts[k])} is not one of specials`);

  const vocab: Record<string, number> = {};
  specials.forEach((s, i) => (vocab[s] = i));
  chars.forEach((c, i) => (vocab[c] = specials.length + i));
  const added_tokens = specials.map((content, id) => ({
    id,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  }));
  const tokenizer: Json = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens,
    normalizer: null,
    pre_tokenizer: null,
    post_processor: null,
    decoder: { type: 'Fuse' },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: opts.unk ?? null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges: [],
    },
  };
  const tokenizerConfig: Json = {
    tokenizer_class: 'PreTrainedTokenizerFast',
    clean_up_tokenization_spaces: false,
    model_max_length: 1 << 20,
    added_tokens_decoder: Object.fromEntries(added_tokens.map(({ id, ...t }) => [String(id), t])),
  };
  if (opts.bos !== undefined) tokenizerConfig.bos_token = opts.bos;
  if (opts.eos !== undefined) tokenizerConfig.eos_token = opts.eos;
  if (opts.pad !== undefined) tokenizerConfig.pad_token = opts.pad;
  if (opts.unk !== undefined) tokenizerConfig.unk_token = opts.unk;
  if (opts.chatTemplate !== undefined) tokenizerConfig.chat_template = opts.chatTemplate;
  return { tokenizer, tokenizerConfig };
}
