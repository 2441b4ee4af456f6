// HF tokenizers: tokenizer.json through @huggingface/tokenizers, chat templates through @huggingface/jinja.
// A checkpoint directory holds tokenizer.json (required), tokenizer_config.json (special tokens, chat_template,
// clean-up flag; optional) and generation_config.json (eos_token_id(s); optional). transformers ≥ 4.43 may
// store the chat template as chat_template.jinja beside them instead of inside tokenizer_config.json.
//
// makeCharTokenizer() builds a tokenizer.json for a small character vocabulary (the embedded tiny models):
// a BPE model without merges (every character is one token) and a Fuse decoder, so decode(encode(s)) === s.
import * as fs from 'fs';
import * as path from 'path';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { Template } from '@huggingface/jinja';

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
  try {
    v = JSON.parse(fs.readFileSync(file, 'utf8'));
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
    const named = v.filter((t): t is { name: string; template: string } => isObject(t) && typeof t.template === 'string');
    const t = named.find((x) => x.name === 'default') ?? (named.length === 1 ? named[0] : undefined);
    if (t) return t.template;
    throw new Error(`${file}: chat_template is a list without a "default" entry (names: ${named.map((x) => x.name).join(', ')})`);
  }
  throw new TypeError(`${file}: chat_template must be a string or a list of {name, template}`);
}

const SPECIAL_KEYS = ['bos_token', 'eos_token', 'unk_token', 'pad_token', 'sep_token', 'cls_token', 'mask_token'] as const;

export class Tokenizer {
  /** The tokenizer.json object it was built from. */
  readonly json: Json;
  /** tokenizer_config.json (empty object when absent). */
  readonly config: Json;
  /** generation_config.json (empty object when absent). */
  readonly generationConfig: Json;
  /** The Jinja chat template, when the directory has one. */
  readonly chatTemplate?: string;
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

  /** Builds a tokenizer from parsed JSON objects (what load() reads from a directory). */
  constructor(json: Json, config: Json = {}, generationConfig: Json = {}, chatTemplate?: string) {
    if (!isObject(json) || !isObject(json.model)) throw new TypeError('tokenizer.json: must hold an object with a "model" object');
    // tokenizers.js wants every top-level key present (null when unused).
    const full: Json = { normalizer: null, pre_tokenizer: null, post_processor: null, decoder: null, added_tokens: [], ...json };
    this.json = json;
    this.config = config;
    this.generationConfig = generationConfig;
    this.chatTemplate = chatTemplate ?? pickTemplate(config.chat_template, 'tokenizer_config.json');
    this.hf = new HfTokenizer(full, config);
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
    for (const id of this.hf.get_vocab(true).values()) maxId = Math.max(maxId, id);
    this.vocabSize = maxId + 1;
    this.specialIds = new Set<number>();
    for (const [id, t] of this.hf.get_added_tokens_decoder()) if (t.special) this.specialIds.add(id);

    const idOf = (k: string): number | undefined => (specials[k] === undefined ? undefined : this.hf.token_to_id(specials[k]));
    const eos: number[] = [];
    const add = (v: unknown, where: string) => {
      if (v === undefined || v === null) return;
      for (const id of Array.isArray(v) ? v : [v]) {
        if (!Number.isSafeInteger(id) || (id as number) < 0) throw new RangeError(`${where}: ${JSON.stringify(id)} is not a token id`);
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
    let template = pickTemplate(config.chat_template, 'tokenizer_config.json');
    const jinjaFile = path.join(dir, 'chat_template.jinja');
    if (template === undefined && fs.existsSync(jinjaFile)) template = fs.readFileSync(jinjaFile, 'utf8');
    return new Tokenizer(json, config, gen, template);
  }

  /** Token ids of `text`. `addSpecialTokens` (default true, as in HF) runs the post-processor (e.g. Llama's BOS). */
  encode(text: string, opts: { addSpecialTokens?: boolean } = {}): Int32Array {
    if (typeof text !== 'string') throw new TypeError('text: must be a string');
    return Int32Array.from(this.hf.encode(text, { add_special_tokens: opts.addSpecialTokens ?? true }).ids);
  }

  /** Text of `ids`; `skipSpecialTokens` drops special added tokens (<|im_end|>, <|endoftext|>, ...). */
  decode(ids: ArrayLike<number>, opts: { skipSpecialTokens?: boolean } = {}): string {
    const arr = Array.from(ids);
    for (let i = 0; i < arr.length; i++)
      if (!Number.isInteger(arr[i]) || arr[i] < 0 || arr[i] >= this.vocabSize)
        throw new RangeError(`ids: ids[${i}] = ${arr[i]} is outside [0, ${this.vocabSize})`);
    if (arr.length === 0) return '';
    return this.hf.decode(arr, { skip_special_tokens: opts.skipSpecialTokens ?? false, clean_up_tokenization_spaces: this.cleanUpSpaces });
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
   */
  applyChatTemplate(messages: readonly ChatMessage[], opts: ChatTemplateOptions = {}): string {
    if (this.chatTemplate === undefined)
      throw new Error('applyChatTemplate: this tokenizer has no chat template (no chat_template in tokenizer_config.json and no chat_template.jinja)');
    if (!Array.isArray(messages)) throw new TypeError('messages: must be an array of {role, content}');
    messages.forEach((m, i) => {
      if (!isObject(m) || typeof m.role !== 'string' || typeof m.content !== 'string')
        throw new TypeError(`messages[${i}]: must be {role: string, content: string}`);
    });
    this.template ??= new Template(this.chatTemplate);
    return this.template.render({
      ...this.specialTokens,
      messages,
      add_generation_prompt: opts.addGenerationPrompt ?? false,
      ...opts.extra,
    });
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
export function makeCharTokenizer(chars: readonly string[], specials: readonly string[] = [], opts: CharTokenizerOptions = {}): CharTokenizerFiles {
  const seen = new Set<string>();
  for (const [i, c] of chars.entries()) {
    if (typeof c !== 'string' || [...c].length !== 1) throw new RangeError(`chars: chars[${i}] = ${JSON.stringify(c)} must be one character (code point)`);
    if (seen.has(c)) throw new RangeError(`chars: ${JSON.stringify(c)} appears twice`);
    seen.add(c);
  }
  for (const [i, s] of specials.entries()) {
    if (typeof s !== 'string' || s.length === 0) throw new RangeError(`specials: specials[${i}] must be a non-empty string`);
    if (seen.has(s)) throw new RangeError(`specials: ${JSON.stringify(s)} appears twice (or is also a character)`);
    seen.add(s);
  }
  for (const k of ['bos', 'eos', 'pad', 'unk'] as const)
    if (opts[k] !== undefined && !specials.includes(opts[k]!)) throw new RangeError(`${k}: ${JSON.stringify(opts[k])} is not one of specials`);

  const vocab: Record<string, number> = {};
  specials.forEach((s, i) => (vocab[s] = i));
  chars.forEach((c, i) => (vocab[c] = specials.length + i));
  const added_tokens = specials.map((content, id) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }));
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
