// A seeded fuzzer for the TypeScript parsers of untrusted files: the JSONL reader (problems, rollouts, metrics),
// tokenizer.json (text → Tokenizer → encode/decode), latest.json and trainer-state.json. Inputs are valid seeds
// mutated at the byte level (flips, splices of JSON fragments, cuts, newlines, BOMs, invalid UTF-8) or at the JSON
// level (a value replaced, a key dropped or added). The property: every input either parses or throws an Error
// whose message names the input (its source label) — anything else is a crash, reported with the input. The JSONL
// reader is also checked differentially: the same bytes pushed in random chunks give the same records or the
// same error as one push.
//
// The jest suite runs a short slice (test/fuzz.test.ts); scripts/fuzz-parsers.js runs a long campaign.
import { JsonlScanner, parseJsonl, type JsonlRecord, type ReadJsonlOptions } from '../../lib/data/jsonl';
import { checkProblem } from '../../lib/data/problems';
import { parseJsonText } from '../../lib/data/files';
import { checkRecord } from '../../lib/rollout/store';
import { makeCharTokenizer, Tokenizer } from '../../lib/engine/tokenizer';
import { parseLatest, parseTrainerState } from '../../lib/train/checkpoints';
import { mulberry32 } from '../../lib/util/rng';

export const TARGETS = ['jsonl', 'tokenizer', 'latest', 'trainer-state'] as const;
export type Target = (typeof TARGETS)[number];

export interface TargetStats {
  inputs: number;
  parsed: number;
  rejected: number;
}

export interface Crash {
  target: Target;
  input: string;
  problem: string;
}

export interface FuzzResult {
  seed: number;
  inputs: number;
  crashes: Crash[];
  byTarget: Record<Target, TargetStats>;
  ms: number;
}

/** mulberry32: a small seeded PRNG. */
const prng = mulberry32;

const FRAGMENTS = [
  '{',
  '}',
  '[',
  ']',
  ',',
  ':',
  '"',
  '\\',
  '\n',
  '\r\n',
  '\r',
  ' ',
  '\t',
  'null',
  'true',
  'false',
  '-0',
  '1e999',
  '-1',
  '0.5',
  '9007199254740993',
  '1e308',
  'NaN',
  '"\\ud800"',
  '"\\u0000"',
  '"\\x"',
  '[[[[[[[[[[',
  ']]]]]',
  '{"a":{"a":{"a":',
  '\ufeff',
  '"id"',
  '"problem"',
  '"answer"',
  '"problemId"',
  '"sampleIndex"',
  '"reward"',
  '"correct"',
  '"params"',
  '"step"',
  '"dir"',
  '"step-000004"',
  '"../etc"',
  '"/tmp"',
  '"type"',
  '"BPE"',
  '"Unigram"',
  '"WordPiece"',
  '"vocab"',
  '"merges"',
  '"model"',
  '"added_tokens"',
  '"history"',
  '"optimizer"',
  '"file"',
  '"refLogps"',
  '"referenceDir"',
  '😀',
  'é',
  '\u2028',
];

const RANDOM_VALUES: (() => unknown)[] = [
  () => null,
  () => true,
  () => 0,
  () => -1,
  () => 1.5,
  () => 2 ** 53 + 2,
  () => 1e308,
  () => '',
  () => 'x',
  () => '../../x',
  () => '/abs',
  () => [],
  () => ({}),
  () => [1, 'a', null],
  () => ({ type: 'BPE' }),
  () => [['a', 1]],
  () => [['a', -0.5], ['b']],
  () => 'step-000001',
  () => ({ file: '..', steps: 1 }),
  () => Array.from({ length: 40 }, (_, i) => i),
  () => '\u0000',
];

class Mutator {
  constructor(readonly rnd: () => number) {}
  int(n: number): number {
    return Math.floor(this.rnd() * n);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)];
  }

  bytes(seed: Buffer): Buffer {
    let b = Buffer.from(seed);
    for (let m = 1 + this.int(4); m > 0; m--) {
      const at = this.int(b.length + 1);
      switch (this.int(7)) {
        case 0: // bit flip
          if (b.length) b[Math.min(at, b.length - 1)] ^= 1 << this.int(8);
          break;
        case 1: // cut
          b = b.subarray(0, at);
          break;
        case 2: // delete a range
          b = Buffer.concat([b.subarray(0, at), b.subarray(at + 1 + this.int(16))]);
          break;
        case 3: // duplicate a range
          b = Buffer.concat([b.subarray(0, at), b.subarray(Math.max(0, at - this.int(64)), at), b.subarray(at)]);
          break;
        case 4: // random bytes (invalid UTF-8 included)
          b = Buffer.concat([
            b.subarray(0, at),
            Buffer.from(Array.from({ length: 1 + this.int(6) }, () => this.int(256))),
            b.subarray(at),
          ]);
          break;
        default: // splice JSON fragments
          b = Buffer.concat([
            b.subarray(0, at),
            Buffer.from(Array.from({ length: 1 + this.int(3) }, () => this.pick(FRAGMENTS)).join('')),
            b.subarray(at),
          ]);
      }
    }
    return b;
  }

  /** A copy of `v` with one to three random edits at random paths. */
  json(v: unknown): unknown {
    let out = structuredClone(v);
    for (let m = 1 + this.int(3); m > 0; m--) out = this.edit(out, 0);
    return out;
  }

  private edit(v: unknown, depth: number): unknown {
    const container = v !== null && typeof v === 'object';
    if (!container || depth > 6 || this.rnd() < 0.25) return this.pick(RANDOM_VALUES)();
    if (Array.isArray(v)) {
      if (!v.length || this.rnd() < 0.15) return [...v, this.pick(RANDOM_VALUES)()];
      const i = this.int(v.length);
      if (this.rnd() < 0.15) return v.filter((_, j) => j !== i);
      v[i] = this.edit(v[i], depth + 1);
      return v;
    }
    const o = v as Record<string, unknown>;
    const keys = Object.keys(o);
    if (!keys.length || this.rnd() < 0.1)
      return { ...o, [this.pick(['type', 'vocab', 'step', 'dir', 'x', '__proto__'])]: this.pick(RANDOM_VALUES)() };
    const k = this.pick(keys);
    if (this.rnd() < 0.15) {
      delete o[k];
      return o;
    }
    o[k] = this.edit(o[k], depth + 1);
    return o;
  }
}

// ---- seeds ------------------------------------------------------------------------------------------------------

const params = { temperature: 1, topK: 0, topP: 0.95, maxNewTokens: 32, seed: 3 };
const JSONL_SEEDS = [
  [
    { id: 'p1', problem: '12+7=?', answer: '19', solution: '12+7=19;\\boxed{19}' },
    { id: 'p2', problem: 'x', answer: '\\frac{3}{4}' },
  ],
  [
    {
      problemId: 'p1',
      sampleIndex: 0,
      text: '=19',
      tokens: 4,
      reward: 1,
      correct: true,
      extracted: '19',
      finishReason: 'stop',
      params,
    },
    {
      problemId: 'p1',
      sampleIndex: 1,
      text: 'é😀',
      tokens: 2,
      reward: -0.2,
      correct: false,
      extracted: null,
      finishReason: 'length',
      params,
    },
  ],
  [
    { step: 1, epoch: 0, loss: 0.7, lr: 1e-4 },
    { step: 2, epoch: 0, loss: 0.6, lr: 1e-4 },
  ],
].map((recs) => Buffer.from(recs.map((r) => JSON.stringify(r)).join('\n') + '\n'));

function tokenizerSeeds(): Record<string, unknown>[] {
  const chars = makeCharTokenizer([...'0123456789+=ab '], ['<eos>', '<pad>'], { eos: '<eos>', unk: '<pad>' }).tokenizer;
  const bpe = {
    model: {
      type: 'BPE',
      vocab: { a: 0, b: 1, ab: 2, c: 3, abc: 4, '<unk>': 5 },
      merges: ['a b', ['ab', 'c']],
      unk_token: '<unk>',
    },
    pre_tokenizer: { type: 'Whitespace' },
    decoder: { type: 'Fuse' },
    added_tokens: [{ id: 6, content: '<eos>', special: true }],
  };
  const uni = {
    model: {
      type: 'Unigram',
      vocab: [
        ['<unk>', 0],
        ['a', -1],
        ['b', -1.5],
        ['ab', -0.5],
      ],
      unk_id: 0,
    },
    decoder: { type: 'Fuse' },
  };
  const wp = {
    model: {
      type: 'WordPiece',
      vocab: { '[UNK]': 0, a: 1, '##b': 2 },
      unk_token: '[UNK]',
      continuing_subword_prefix: '##',
    },
  };
  return [chars, bpe, uni, wp];
}

function trainerStateSeed(): Record<string, unknown> {
  const history = [1, 2, 3].map((step) => ({
    step,
    totalSteps: 6,
    epoch: 0,
    loss: 1 / step,
    lr: 1e-3,
    gradNorm: 0.5,
    tokens: 10,
  }));
  return {
    format: 'rift-trainer-state',
    version: 1,
    step: 3,
    totalSteps: 6,
    epoch: 0,
    stepInEpoch: 3,
    rng: { kind: 'mulberry32', seed: 0, epoch: 0 },
    options: { method: 'dpo', lr: 1e-3 },
    fingerprint: '0badc0de-6-6',
    examples: 6,
    optimizer: { file: 'optimizer.safetensors', steps: 3 },
    refLogps: [-1.5, -2, -0.25],
    referenceDir: 'reference',
    history,
  };
}

// ---- one input per target ---------------------------------------------------------------------------------------

type Outcome = 'parsed' | 'rejected';

/** Runs `f`; an Error whose message starts with `label` is a rejection, anything else thrown is a crash. */
function guarded(label: string, f: () => void): Outcome {
  try {
    f();
    return 'parsed';
  } catch (e) {
    if (e instanceof Error && e.message.startsWith(label)) return 'rejected';
    throw new CrashError(e instanceof Error ? `${e.name}: ${e.message}` : `threw a non-Error: ${String(e)}`);
  }
}

class CrashError extends Error {}

const describeResult = (f: () => unknown): string => {
  try {
    return `ok ${JSON.stringify(f())}`;
  } catch (e) {
    return `${(e as Error).name}: ${(e as Error).message}`;
  }
};

function jsonlInput(mu: Mutator): { input: string; run: () => Outcome } {
  const data = mu.bytes(mu.pick(JSONL_SEEDS));
  const validate = mu.pick([undefined, checkProblem, checkRecord]);
  const opts: ReadJsonlOptions<unknown> = {
    validate: validate as ReadJsonlOptions<unknown>['validate'],
    allowTruncatedTail: mu.rnd() < 0.5,
    ...(mu.rnd() < 0.5 ? { maxLineBytes: 1 + mu.int(300) } : {}),
  };
  const cuts = Array.from({ length: mu.int(6) }, () => mu.int(data.length + 1)).sort((a, b) => a - b);
  const run = (): Outcome => {
    const whole = describeResult(() => parseJsonl('fuzz.jsonl', data, opts));
    const chunked = describeResult(() => {
      const recs: JsonlRecord<unknown>[] = [];
      const sc = new JsonlScanner('fuzz.jsonl', (r) => recs.push(r), opts);
      let from = 0;
      for (const c of [...cuts, data.length]) {
        sc.push(data.subarray(from, c));
        from = c;
      }
      const r = sc.end();
      return {
        records: recs.map((x) => x.value),
        lines: recs.map((x) => x.line),
        truncatedTail: r.truncatedTail,
        validBytes: r.validBytes,
      };
    });
    if (whole !== chunked)
      throw new CrashError(`chunked reading differs: ${chunked.slice(0, 300)} vs ${whole.slice(0, 300)}`);
    return guarded('fuzz.jsonl:', () => parseJsonl('fuzz.jsonl', data, opts));
  };
  return {
    input: JSON.stringify({ data: data.toString('latin1'), opts: { ...opts, validate: validate?.name }, cuts }),
    run,
  };
}

function textInput(mu: Mutator, seed: unknown): string {
  if (mu.rnd() < 0.5) return JSON.stringify(mu.json(seed));
  return mu.bytes(Buffer.from(JSON.stringify(seed))).toString('utf8');
}

export function runParserFuzz(opts: {
  n: number;
  seed?: number;
  targets?: readonly Target[];
  onProgress?: (done: number) => void;
}): FuzzResult {
  const seed = opts.seed ?? 20261204;
  const targets = opts.targets ?? TARGETS;
  const mu = new Mutator(prng(seed));
  const toks = tokenizerSeeds();
  const state = trainerStateSeed();
  const latest = { dir: 'step-000004', step: 4 };
  const byTarget = Object.fromEntries(TARGETS.map((t) => [t, { inputs: 0, parsed: 0, rejected: 0 }])) as Record<
    Target,
    TargetStats
  >;
  const crashes: Crash[] = [];
  const t0 = Date.now();
  for (let i = 0; i < opts.n; i++) {
    const target = targets[i % targets.length];
    let input: string;
    let run: () => Outcome;
    if (target === 'jsonl') ({ input, run } = jsonlInput(mu));
    else if (target === 'tokenizer') {
      input = textInput(mu, mu.pick(toks));
      const text = input;
      run = () =>
        guarded('fuzz/tokenizer.json', () => {
          const json = parseJsonText('fuzz/tokenizer.json', text) as Record<string, unknown>;
          const tok = new Tokenizer(json, {}, {}, undefined, 'fuzz/tokenizer.json');
          const ids = tok.encode('ab 12+7=19 abc é');
          tok.decode(ids);
          tok.decode(ids, { skipSpecialTokens: true });
        });
    } else if (target === 'latest') {
      input = textInput(mu, latest);
      const text = input;
      run = () => guarded('fuzz/latest.json', () => parseLatest(text, 'fuzz/latest.json'));
    } else {
      input = textInput(mu, state);
      const text = input;
      run = () => guarded('fuzz/trainer-state.json', () => parseTrainerState(text, 'fuzz/trainer-state.json'));
    }
    const st = byTarget[target];
    st.inputs++;
    try {
      st[run()]++;
    } catch (e) {
      crashes.push({
        target,
        input: input.slice(0, 2000),
        problem: e instanceof CrashError ? e.message : `harness: ${String(e)}`,
      });
      if (crashes.length >= 20) break;
    }
    if (opts.onProgress && (i + 1) % 100000 === 0) opts.onProgress(i + 1);
  }
  return {
    seed,
    inputs: Object.values(byTarget).reduce((a, s) => a + s.inputs, 0),
    crashes,
    byTarget,
    ms: Date.now() - t0,
  };
}
