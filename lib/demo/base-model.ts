// The embedded default base model (models/tiny-base/): a tiny character-level Qwen2 trained by this project's own
// SFT on the synthetic 'tiny' arithmetic task, stopped while it solves some but not all held-out problems
// (Mean@8 inside a band, 30–60% by default), so that RL rewards on it are mixed.
//
//   node scripts/make-base-model.js            (after `npm run build:ts`; see models/tiny-base/README.md)
//
// Format (promptFor / responseFor): prompt = the problem text and a newline, response = the worked solution and
// the eos token:
//   "7+5*3-4=?\n"  →  "5*3=15;7+15=22;22-4=18;\boxed{18}<|eos|>"
// No BOS token is added (the tokenizer has no post-processor); `<|bos|>` exists only as a declared special.
// The format is recorded in the model directory (prompt_format.json: BASE_PROMPT_FORMAT), so the CLI and the loop
// (lib/loop) use it for this model without knowing about it.
//
// Training: a direct loop over Model.lossAndBackward (method 'sft', token-mean) + Model.step (AdamW, constant LR
// after a linear warmup), batches of reference solutions drawn in a seeded order; every `evalEvery` steps Mean@8
// (generate() with k = 8, temperature 1, verify()) on `evalProblems` held-out problems. The first evaluation
// inside [preferLow, preferHigh] stops the run; otherwise the in-band evaluation closest to the band's middle is
// kept, and the run stops once Mean@8 passes `high` (or at `steps`, or after `maxMinutes`).
//
// Presets (`preset`): 'tiny' (default: models/tiny-base, difficulty 2, 0.8M parameters) and 'hard' (models/hard-base,
// the experiment's hard setting: difficulty 4, bf16; BASE_PRESETS). The hard model is grown from models/tiny-base
// (lib/demo/grow.ts: twice the layers, the new ones starting as the identity; 1.6M parameters) and trained on
// difficulty 4: trained from scratch, 1.8M and 4.7M models needed far longer than the 30 minutes this preset allows
// on 2 shared cores. Both share the vocabulary and the prompt format; only the maximal response length differs.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Model } from '../engine/model';
import { makeCharTokenizer, Tokenizer } from '../engine/tokenizer';
import { generate } from '../engine/sampler';
import { lrAt } from '../train/schedule';
import { buildMicroBatch } from '../train/batching';
import type { Example } from '../train/examples';
import { setNumThreads } from '../kernels/info';
import { generateProblems, splitProblems, TINY_CHARSET } from '../data/synthetic';
import type { Problem } from '../data/problems';
import { verify } from '../reward/verifier';
import { passAtK } from '../eval/metrics';
import { fillTemplate, type PlainPromptSpec } from '../data/prompt-spec';
import { writePromptFormatFile } from '../loop/prompt-choice';
import { baseReadme } from './base-readme';
import { growDepth, grownConfig } from './grow';
import { defaultModelDir } from '../loop/paths';
import { checkDtype, type Dtype } from '../util/dtype';

export const PAD_TOKEN = '<|pad|>';
export const BOS_TOKEN = '<|bos|>';
export const EOS_TOKEN = '<|eos|>';
export const BASE_SPECIALS: readonly string[] = [PAD_TOKEN, BOS_TOKEN, EOS_TOKEN];
/** The vocabulary's characters: the tiny style's characters and the newline that ends a prompt. */
export const BASE_CHARS: readonly string[] = [...Array.from(TINY_CHARSET), '\n'];
/** Longest generated response the evaluations allow (solutions are ≤ 80 characters, + eos). */
export const BASE_MAX_NEW_TOKENS = 96;

/** Longest generated response of the hard preset (difficulty-4 solutions are ≤ 128 characters, + eos). */
export const HARD_MAX_NEW_TOKENS = 144;

export type BasePreset = 'tiny' | 'hard';
export const BASE_PRESET_NAMES: readonly BasePreset[] = ['tiny', 'hard'];

/** The defaults of each preset (every one can be overridden by its option). */
export const BASE_PRESETS: Record<
  BasePreset,
  {
    outDir: string;
    difficulty: number;
    hidden: number;
    layers: number;
    intermediate: number;
    batchSize: number;
    lr: number;
    steps: number;
    evalEvery: number;
    evalFrom: number;
    evalProblems: number;
    low: number;
    high: number;
    preferLow: number;
    preferHigh: number;
    dtype: Dtype;
    maxNewTokens: number;
    maxMinutes: number;
    warmupSteps: number;
    /** Grow this trained model (its layers × growFactor) instead of a random init (then hidden, layers, intermediate are its). */
    growFrom?: () => string;
    growFactor?: number;
  }
> = {
  tiny: {
    outDir: path.join('models', 'tiny-base'),
    difficulty: 2,
    hidden: 128,
    layers: 4,
    intermediate: 384,
    batchSize: 32,
    lr: 2e-3,
    steps: 4000,
    evalEvery: 50,
    evalFrom: 100,
    evalProblems: 64,
    low: 0.3,
    high: 0.6,
    preferLow: 0.4,
    preferHigh: 0.5,
    dtype: 'fp32',
    maxNewTokens: BASE_MAX_NEW_TOKENS,
    maxMinutes: Infinity,
    warmupSteps: 50,
  },
  hard: {
    outDir: path.join('models', 'hard-base'),
    difficulty: 4,
    hidden: 128,
    layers: 8,
    intermediate: 384,
    batchSize: 16,
    lr: 1e-3,
    steps: 4000,
    evalEvery: 50,
    evalFrom: 50,
    evalProblems: 48,
    low: 0.2,
    high: 0.5,
    preferLow: 0.3,
    preferHigh: 0.4,
    dtype: 'bf16',
    maxNewTokens: HARD_MAX_NEW_TOKENS,
    maxMinutes: 30,
    warmupSteps: 20,
    growFrom: defaultModelDir,
    growFactor: 2,
  },
};

/** The maximal response length of a preset's model (its generation_config.json max_new_tokens). */
export function presetMaxNewTokens(preset: BasePreset): number {
  return BASE_PRESETS[preset].maxNewTokens;
}

/** The base model's prompt format: the problem text and a newline (its prompt_format.json). */
export const BASE_PROMPT_FORMAT: PlainPromptSpec = { format: 'plain', template: '{problem}\n' };

/** The prompt of a problem: its text and a newline ("7+5*3-4=?\n"). */
export function promptFor(problem: { problem: string }): string {
  return fillTemplate(BASE_PROMPT_FORMAT.template, problem.problem);
}

/** The training response of a problem: its worked solution and the eos token. */
export function responseFor(problem: { solution?: string }): string {
  if (typeof problem.solution !== 'string') throw new TypeError('problem: has no solution');
  return `${problem.solution}${EOS_TOKEN}`;
}

/** The base model's architecture (a Qwen2 config.json object). */
export function baseModelConfig(
  opts: { hidden?: number; layers?: number; intermediate?: number } = {},
): Record<string, unknown> {
  const hidden = opts.hidden ?? 128;
  return {
    architectures: ['Qwen2ForCausalLM'],
    model_type: 'qwen2',
    vocab_size: BASE_SPECIALS.length + BASE_CHARS.length,
    hidden_size: hidden,
    intermediate_size: opts.intermediate ?? 3 * hidden,
    num_hidden_layers: opts.layers ?? 4,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    head_dim: hidden / 4,
    hidden_act: 'silu',
    max_position_embeddings: 256,
    rms_norm_eps: 1e-6,
    rope_theta: 10000,
    tie_word_embeddings: true,
    use_sliding_window: false,
    bos_token_id: 1,
    eos_token_id: 2,
    pad_token_id: 0,
    torch_dtype: 'float32',
  };
}

/** Writes tokenizer.json, tokenizer_config.json, generation_config.json and prompt_format.json into dir. */
export function writeBaseTokenizer(dir: string, maxNewTokens: number = BASE_MAX_NEW_TOKENS): void {
  const { tokenizer, tokenizerConfig } = makeCharTokenizer(BASE_CHARS, BASE_SPECIALS, {
    pad: PAD_TOKEN,
    bos: BOS_TOKEN,
    eos: EOS_TOKEN,
  });
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(tokenizer, null, 2) + '\n');
  fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify(tokenizerConfig, null, 2) + '\n');
  const gen = {
    bos_token_id: 1,
    eos_token_id: 2,
    pad_token_id: 0,
    do_sample: true,
    temperature: 1.0,
    max_new_tokens: maxNewTokens,
  };
  fs.writeFileSync(path.join(dir, 'generation_config.json'), JSON.stringify(gen, null, 2) + '\n');
  writePromptFormatFile(dir, BASE_PROMPT_FORMAT);
}

/** The data defaults of makeBaseModel() (what models/tiny-base was made with unless its README says otherwise). */
export const BASE_DATA_DEFAULTS = { seed: 1, count: 20000, heldOut: 512, difficulty: 2 } as const;

/**
 * The problems of the base model's run: generateProblems({count, seed, style: 'tiny', difficulty}) split by
 * splitProblems({testFraction: heldOut / count, seed}). `test` holds the held-out problems (never trained on).
 */
export function baseModelProblems(o: { seed?: number; count?: number; heldOut?: number; difficulty?: number } = {}): {
  train: Problem[];
  test: Problem[];
} {
  const seed = o.seed ?? BASE_DATA_DEFAULTS.seed;
  const count = o.count ?? BASE_DATA_DEFAULTS.count;
  const heldOut = o.heldOut ?? BASE_DATA_DEFAULTS.heldOut;
  const difficulty = o.difficulty ?? BASE_DATA_DEFAULTS.difficulty;
  const all = generateProblems({ count, seed, style: 'tiny', difficulty });
  return splitProblems(all, { testFraction: heldOut / count, seed });
}

export interface BaseEval {
  problems: number;
  k: number;
  meanAtK: number;
  passAtK: number;
  /** Greedy (temperature 0) accuracy, one sample per problem. */
  greedy?: number;
  seconds: number;
}

/** Mean@k and Pass@k (temperature 1) of `model` on `problems`, plus greedy accuracy when asked. */
export async function evaluateBase(
  model: Model,
  tok: Tokenizer,
  problems: readonly Problem[],
  opts: { k?: number; seed?: number; greedy?: boolean; maxNewTokens?: number } = {},
): Promise<BaseEval> {
  const k = opts.k ?? 8;
  const maxNewTokens = opts.maxNewTokens ?? BASE_MAX_NEW_TOKENS;
  const t0 = Date.now();
  const prompts = problems.map(promptFor);
  const out = await generate(model, tok, prompts, { k, temperature: 1, maxNewTokens, seed: opts.seed ?? 0 });
  let mean = 0;
  let pass = 0;
  out.forEach((o, i) => {
    const c = o.samples.filter((s) => verify(s.text, problems[i].answer, { symbolic: false }).correct).length;
    mean += c / k;
    pass += passAtK(k, c, k);
  });
  const r: BaseEval = {
    problems: problems.length,
    k,
    meanAtK: mean / problems.length,
    passAtK: pass / problems.length,
    seconds: 0,
  };
  if (opts.greedy) {
    const g = await generate(model, tok, prompts, { k: 1, temperature: 0, maxNewTokens });
    r.greedy =
      g.filter((o, i) => verify(o.samples[0].text, problems[i].answer, { symbolic: false }).correct).length /
      problems.length;
  }
  r.seconds = (Date.now() - t0) / 1000;
  return r;
}

export interface MakeBaseModelOptions {
  /** The defaults of BASE_PRESETS (default 'tiny'). */
  preset?: BasePreset;
  /** A trained model directory to grow (lib/demo/grow.ts) instead of a random init (default: hard → models/tiny-base). */
  growFrom?: string;
  /** Layers of the grown model per source layer (default 2). */
  growFactor?: number;
  /** Stop training after this many minutes (default: tiny none, hard 30), keeping the best in-band checkpoint. */
  maxMinutes?: number;
  /** Where the checkpoint goes (default: the preset's, models/tiny-base). */
  outDir?: string;
  /** Seed of the data, the initialisation and the batch order (default 1). */
  seed?: number;
  /** Most optimizer steps (default 4000). */
  steps?: number;
  batchSize?: number;
  lr?: number;
  warmupSteps?: number;
  /** Synthetic difficulty (default 2). */
  difficulty?: number;
  /** Problems generated (default 20000); `heldOut` of them are held out. */
  count?: number;
  heldOut?: number;
  /** Held-out problems of each in-training evaluation (default 64) and of the final one (default 256). */
  evalProblems?: number;
  finalEvalProblems?: number;
  evalEvery?: number;
  /** Don't evaluate before this step (default 100). */
  evalFrom?: number;
  /** Accepted band of Mean@8 (default 0.3–0.6) and the preferred sub-band (default 0.4–0.5). */
  low?: number;
  high?: number;
  preferLow?: number;
  preferHigh?: number;
  hidden?: number;
  layers?: number;
  intermediate?: number;
  threads?: number;
  /** Stored weights' dtype (default the preset's); the HF names 'float32' / 'bfloat16' are deprecated aliases. */
  dtype?: Dtype | 'float32' | 'bfloat16';
  log?: (line: string) => void;
}

export interface MakeBaseModelResult {
  outDir: string;
  step: number;
  inBand: boolean;
  trainSeconds: number;
  final: BaseEval;
  history: { step: number; loss: number; meanAtK?: number; passAtK?: number }[];
  sizeBytes: number;
}

function shuffled<T>(xs: readonly T[], seed: number): T[] {
  const a = xs.slice();
  let s = seed >>> 0 || 1;
  const rand = () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 4294967296;
  };
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

/** Trains the base model (see the file comment) and writes it to outDir with a README. */
export async function makeBaseModel(o: MakeBaseModelOptions = {}): Promise<MakeBaseModelResult> {
  const presetName = o.preset ?? 'tiny';
  if (!BASE_PRESET_NAMES.includes(presetName))
    throw new RangeError(`preset: must be one of ${BASE_PRESET_NAMES.join(', ')}, got ${JSON.stringify(presetName)}`);
  const P = BASE_PRESETS[presetName];
  const outDir = o.outDir ?? P.outDir;
  const seed = o.seed ?? BASE_DATA_DEFAULTS.seed;
  const maxSteps = o.steps ?? P.steps;
  const batchSize = o.batchSize ?? P.batchSize;
  const lr = o.lr ?? P.lr;
  const warmupSteps = o.warmupSteps ?? P.warmupSteps;
  const growFrom = o.growFrom ?? P.growFrom?.();
  const growFactor = o.growFactor ?? P.growFactor ?? 2;
  const difficulty = o.difficulty ?? P.difficulty;
  const count = o.count ?? BASE_DATA_DEFAULTS.count;
  const heldOut = o.heldOut ?? BASE_DATA_DEFAULTS.heldOut;
  const evalN = o.evalProblems ?? P.evalProblems;
  const finalN = o.finalEvalProblems ?? 256;
  const evalEvery = o.evalEvery ?? P.evalEvery;
  const evalFrom = o.evalFrom ?? P.evalFrom;
  const low = o.low ?? P.low,
    high = o.high ?? P.high,
    preferLow = o.preferLow ?? P.preferLow,
    preferHigh = o.preferHigh ?? P.preferHigh;
  const dtype = checkDtype('dtype', o.dtype ?? P.dtype, ['float32', 'bfloat16']);
  const maxNewTokens = P.maxNewTokens;
  const maxMinutes = o.maxMinutes ?? P.maxMinutes;
  if (!(maxMinutes > 0)) throw new RangeError(`maxMinutes: must be > 0, got ${maxMinutes}`);
  const log = o.log ?? ((s: string) => console.log(s));
  if (o.threads) setNumThreads(o.threads);

  // data
  const { train, test } = baseModelProblems({ seed, count, heldOut, difficulty });
  const evalSet = test.slice(0, evalN);
  const finalSet = test.slice(0, Math.min(finalN, test.length));

  // tokenizer
  const tmpDir = `${outDir}.tmp-${process.pid}`;
  fs.rmSync(tmpDir, { recursive: true, force: true });
  writeBaseTokenizer(tmpDir, maxNewTokens);
  const tok = Tokenizer.load(tmpDir);
  const examples: Example[] = train.map((p) => ({
    problemId: p.id,
    sampleIndex: 0,
    promptIds: tok.encode(promptFor(p)),
    responseIds: tok.encode(responseFor(p)),
    reward: 1,
  }));

  const config = growFrom
    ? grownConfig(growFrom, growFactor)
    : baseModelConfig({
        hidden: o.hidden ?? P.hidden,
        layers: o.layers ?? P.layers,
        intermediate: o.intermediate ?? P.intermediate,
      });
  if (config.vocab_size !== tok.vocabSize)
    throw new RangeError(
      `growFrom: ${growFrom} has vocabulary ${config.vocab_size}, the base tokenizer ${tok.vocabSize}`,
    );
  const model = growFrom ? growDepth(growFrom, growFactor, seed) : Model.fromConfig(config, { seed, std: 0.02 });
  log(
    `base model: ${model.numParams} params${growFrom ? ` (grown ×${growFactor} from ${growFrom})` : ''}, ${train.length} train / ${test.length} held-out problems (tiny, difficulty ${difficulty})`,
  );

  const bestDir = path.join(tmpDir, 'best');
  let best: { step: number; meanAtK: number } | undefined;
  const history: MakeBaseModelResult['history'] = [];
  const middle = (low + high) / 2;
  const t0 = Date.now();
  let evalSeconds = 0;
  let order: Example[] = [];
  let cursor = 0;
  let epoch = 0;
  let step = 0;
  let stopped = false;
  let lossAcc = 0,
    lossN = 0;
  let timedOut = false;
  while (step < maxSteps && !stopped) {
    if ((Date.now() - t0) / 60000 > maxMinutes) {
      timedOut = true;
      log(`stopping at step ${step}: the ${maxMinutes}-minute limit`);
      break;
    }
    if (cursor + batchSize > order.length) {
      order = shuffled(examples, seed * 1000 + epoch++);
      cursor = 0;
    }
    const batch = order
      .slice(cursor, cursor + batchSize)
      .sort((a, b) => a.promptIds.length + a.responseIds.length - b.promptIds.length - b.responseIds.length);
    cursor += batchSize;
    const mb = buildMicroBatch(
      batch.map((e) => [e]),
      { padId: 0 },
    );
    model.zeroGrad();
    const r = model.lossAndBackward({
      ids: mb.ids,
      B: mb.B,
      T: mb.T,
      targets: mb.targets,
      offsets: mb.offsets,
      rewards: mb.rewards,
      method: 'sft',
      reduction: 'token-mean',
    });
    model.step({ lr: lrAt(step, { kind: 'constant', baseLr: lr, warmupSteps }), maxGradNorm: 1, weightDecay: 0.01 });
    step++;
    lossAcc += r.loss;
    lossN++;
    if (step >= evalFrom && step % evalEvery === 0) {
      const loss = lossAcc / lossN;
      lossAcc = 0;
      lossN = 0;
      const e = await evaluateBase(model, tok, evalSet, { seed: 1000 + step, maxNewTokens });
      evalSeconds += e.seconds;
      history.push({ step, loss, meanAtK: e.meanAtK, passAtK: e.passAtK });
      log(
        `step ${step}  loss ${loss.toFixed(4)}  Mean@8 ${(100 * e.meanAtK).toFixed(1)}%  Pass@8 ${(100 * e.passAtK).toFixed(1)}%  (${((Date.now() - t0) / 1000).toFixed(0)} s)`,
      );
      if (e.meanAtK >= low && e.meanAtK <= high) {
        if (!best || Math.abs(e.meanAtK - middle) < Math.abs(best.meanAtK - middle)) {
          best = { step, meanAtK: e.meanAtK };
          model.save(bestDir, { dtype });
        }
        if (e.meanAtK >= preferLow && e.meanAtK <= preferHigh) stopped = true;
      } else if (e.meanAtK > high) {
        stopped = true;
      }
    } else if (step % 50 === 0) {
      log(`step ${step}  loss ${(lossAcc / lossN).toFixed(4)}  (${((Date.now() - t0) / 1000).toFixed(0)} s)`);
    }
  }
  const trainSeconds = (Date.now() - t0) / 1000;

  // the kept model: the best in-band checkpoint, else the last weights
  let final: Model = model;
  let keptStep = step;
  if (best) {
    final = Model.load(bestDir);
    keptStep = best.step;
  } else {
    log(`warning: no evaluation landed in [${low}, ${high}]; keeping the last weights (step ${step})`);
    model.save(bestDir, { dtype });
  }
  const fin = await evaluateBase(final, tok, finalSet, { seed: 12345, greedy: true, maxNewTokens });
  log(
    `final (step ${keptStep}) on ${finalSet.length} held-out problems: Mean@8 ${(100 * fin.meanAtK).toFixed(1)}%  Pass@8 ${(100 * fin.passAtK).toFixed(1)}%  greedy ${(100 * fin.greedy!).toFixed(1)}%`,
  );

  // assemble outDir
  fs.rmSync(outDir, { recursive: true, force: true });
  fs.mkdirSync(outDir, { recursive: true });
  for (const f of fs.readdirSync(bestDir)) fs.copyFileSync(path.join(bestDir, f), path.join(outDir, f));
  writeBaseTokenizer(outDir, maxNewTokens);
  const sizeBytes = fs.readdirSync(outDir).reduce((s, f) => s + fs.statSync(path.join(outDir, f)).size, 0);
  const result: MakeBaseModelResult = {
    outDir,
    step: keptStep,
    inBand: !!best,
    trainSeconds,
    final: fin,
    history,
    sizeBytes,
  };
  const r = {
    growFactor: growFrom ? growFactor : 0,
    seed,
    maxSteps,
    batchSize,
    lr,
    warmupSteps,
    difficulty,
    count,
    heldOut,
    evalN,
    evalEvery,
    low,
    high,
    preferLow,
    preferHigh,
    maxNewTokens,
    maxMinutes,
  };
  fs.writeFileSync(
    path.join(outDir, 'README.md'),
    baseReadme({
      growFrom: growFrom && path.relative(process.cwd(), growFrom),
      preset: presetName,
      name: path.basename(path.resolve(outDir)),
      o,
      r,
      config,
      params: model.numParams,
      res: result,
      evalSeconds,
      nTrain: train.length,
      dtype,
      timedOut,
    }),
  );
  writeMetadata(outDir, {
    preset: presetName,
    growFrom: growFrom && path.relative(process.cwd(), growFrom),
    growFactor: growFrom ? growFactor : undefined,
    params: model.numParams,
    difficulty,
    step: keptStep,
    inBand: !!best,
    timedOut,
    trainSeconds,
    final: fin,
    maxNewTokens,
    dtype,
  });
  fs.rmSync(tmpDir, { recursive: true, force: true });
  return result;
}

/** metadata.json: the measured numbers of the kept checkpoint (the tests and the experiment read them). */
function writeMetadata(dir: string, m: Record<string, unknown>): void {
  fs.writeFileSync(
    path.join(dir, 'metadata.json'),
    JSON.stringify({ ...m, machine: `${os.cpus().length} CPU cores` }, null, 2) + '\n',
  );
}
