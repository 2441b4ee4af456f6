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
// kept, and the run stops once Mean@8 passes `high` (or at `steps`).
import * as fs from 'fs';
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

export const PAD_TOKEN = '<|pad|>';
export const BOS_TOKEN = '<|bos|>';
export const EOS_TOKEN = '<|eos|>';
export const BASE_SPECIALS: readonly string[] = [PAD_TOKEN, BOS_TOKEN, EOS_TOKEN];
/** The vocabulary's characters: the tiny style's characters and the newline that ends a prompt. */
export const BASE_CHARS: readonly string[] = [...Array.from(TINY_CHARSET), '\n'];
/** Longest generated response the evaluations allow (solutions are ≤ 80 characters, + eos). */
export const BASE_MAX_NEW_TOKENS = 96;

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
export function baseModelConfig(opts: { hidden?: number; layers?: number; intermediate?: number } = {}): Record<string, unknown> {
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
export function writeBaseTokenizer(dir: string): void {
  const { tokenizer, tokenizerConfig } = makeCharTokenizer(BASE_CHARS, BASE_SPECIALS, { pad: PAD_TOKEN, bos: BOS_TOKEN, eos: EOS_TOKEN });
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(tokenizer, null, 2) + '\n');
  fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify(tokenizerConfig, null, 2) + '\n');
  const gen = { bos_token_id: 1, eos_token_id: 2, pad_token_id: 0, do_sample: true, temperature: 1.0, max_new_tokens: BASE_MAX_NEW_TOKENS };
  fs.writeFileSync(path.join(dir, 'generation_config.json'), JSON.stringify(gen, null, 2) + '\n');
  writePromptFormatFile(dir, BASE_PROMPT_FORMAT);
}

/** The data defaults of makeBaseModel() (what models/tiny-base was made with unless its README says otherwise). */
export const BASE_DATA_DEFAULTS = { seed: 1, count: 20000, heldOut: 512, difficulty: 2 } as const;

/**
 * The problems of the base model's run: generateProblems({count, seed, style: 'tiny', difficulty}) split by
 * splitProblems({testFraction: heldOut / count, seed}). `test` holds the held-out problems (never trained on).
 */
export function baseModelProblems(o: { seed?: number; count?: number; heldOut?: number; difficulty?: number } = {}): { train: Problem[]; test: Problem[] } {
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
  opts: { k?: number; seed?: number; greedy?: boolean } = {},
): Promise<BaseEval> {
  const k = opts.k ?? 8;
  const t0 = Date.now();
  const prompts = problems.map(promptFor);
  const out = await generate(model, tok, prompts, { k, temperature: 1, maxNewTokens: BASE_MAX_NEW_TOKENS, seed: opts.seed ?? 0 });
  let mean = 0;
  let pass = 0;
  out.forEach((o, i) => {
    const c = o.samples.filter((s) => verify(s.text, problems[i].answer, { symbolic: false }).correct).length;
    mean += c / k;
    pass += passAtK(k, c, k);
  });
  const r: BaseEval = { problems: problems.length, k, meanAtK: mean / problems.length, passAtK: pass / problems.length, seconds: 0 };
  if (opts.greedy) {
    const g = await generate(model, tok, prompts, { k: 1, temperature: 0, maxNewTokens: BASE_MAX_NEW_TOKENS });
    r.greedy = g.filter((o, i) => verify(o.samples[0].text, problems[i].answer, { symbolic: false }).correct).length / problems.length;
  }
  r.seconds = (Date.now() - t0) / 1000;
  return r;
}

export interface MakeBaseModelOptions {
  /** Where the checkpoint goes (default models/tiny-base). */
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
  dtype?: 'float32' | 'bfloat16';
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
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
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
  const outDir = o.outDir ?? path.join('models', 'tiny-base');
  const seed = o.seed ?? BASE_DATA_DEFAULTS.seed;
  const maxSteps = o.steps ?? 4000;
  const batchSize = o.batchSize ?? 32;
  const lr = o.lr ?? 2e-3;
  const warmupSteps = o.warmupSteps ?? 50;
  const difficulty = o.difficulty ?? BASE_DATA_DEFAULTS.difficulty;
  const count = o.count ?? BASE_DATA_DEFAULTS.count;
  const heldOut = o.heldOut ?? BASE_DATA_DEFAULTS.heldOut;
  const evalN = o.evalProblems ?? 64;
  const finalN = o.finalEvalProblems ?? 256;
  const evalEvery = o.evalEvery ?? 50;
  const evalFrom = o.evalFrom ?? 100;
  const low = o.low ?? 0.3, high = o.high ?? 0.6, preferLow = o.preferLow ?? 0.4, preferHigh = o.preferHigh ?? 0.5;
  const log = o.log ?? ((s: string) => console.log(s));
  if (o.threads) setNumThreads(o.threads);

  // data
  const { train, test } = baseModelProblems({ seed, count, heldOut, difficulty });
  const evalSet = test.slice(0, evalN);
  const finalSet = test.slice(0, Math.min(finalN, test.length));

  // tokenizer
  const tmpDir = `${outDir}.tmp-${process.pid}`;
  fs.rmSync(tmpDir, { recursive: true, force: true });
  writeBaseTokenizer(tmpDir);
  const tok = Tokenizer.load(tmpDir);
  const examples: Example[] = train.map((p) => ({
    problemId: p.id,
    sampleIndex: 0,
    promptIds: tok.encode(promptFor(p)),
    responseIds: tok.encode(responseFor(p)),
    reward: 1,
  }));

  const config = baseModelConfig({ hidden: o.hidden, layers: o.layers, intermediate: o.intermediate });
  const model = Model.fromConfig(config, { seed, std: 0.02 });
  log(`base model: ${model.numParams} params, ${train.length} train / ${test.length} held-out problems (tiny, difficulty ${difficulty})`);

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
  let lossAcc = 0, lossN = 0;
  while (step < maxSteps && !stopped) {
    if (cursor + batchSize > order.length) {
      order = shuffled(examples, seed * 1000 + epoch++);
      cursor = 0;
    }
    const batch = order.slice(cursor, cursor + batchSize).sort((a, b) => a.promptIds.length + a.responseIds.length - b.promptIds.length - b.responseIds.length);
    cursor += batchSize;
    const mb = buildMicroBatch(batch.map((e) => [e]), { padId: 0 });
    model.zeroGrad();
    const r = model.lossAndBackward({ ids: mb.ids, B: mb.B, T: mb.T, targets: mb.targets, offsets: mb.offsets, rewards: mb.rewards, method: 'sft', reduction: 'token-mean' });
    model.step({ lr: lrAt(step, { kind: 'constant', baseLr: lr, warmupSteps }), maxGradNorm: 1, weightDecay: 0.01 });
    step++;
    lossAcc += r.loss;
    lossN++;
    if (step >= evalFrom && step % evalEvery === 0) {
      const loss = lossAcc / lossN;
      lossAcc = 0; lossN = 0;
      const e = await evaluateBase(model, tok, evalSet, { seed: 1000 + step });
      evalSeconds += e.seconds;
      history.push({ step, loss, meanAtK: e.meanAtK, passAtK: e.passAtK });
      log(`step ${step}  loss ${loss.toFixed(4)}  Mean@8 ${(100 * e.meanAtK).toFixed(1)}%  Pass@8 ${(100 * e.passAtK).toFixed(1)}%  (${((Date.now() - t0) / 1000).toFixed(0)} s)`);
      if (e.meanAtK >= low && e.meanAtK <= high) {
        if (!best || Math.abs(e.meanAtK - middle) < Math.abs(best.meanAtK - middle)) {
          best = { step, meanAtK: e.meanAtK };
          model.save(bestDir, { dtype: o.dtype ?? 'float32' });
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
    model.save(bestDir, { dtype: o.dtype ?? 'float32' });
  }
  const fin = await evaluateBase(final, tok, finalSet, { seed: 12345, greedy: true });
  log(`final (step ${keptStep}) on ${finalSet.length} held-out problems: Mean@8 ${(100 * fin.meanAtK).toFixed(1)}%  Pass@8 ${(100 * fin.passAtK).toFixed(1)}%  greedy ${(100 * fin.greedy!).toFixed(1)}%`);

  // assemble outDir
  fs.rmSync(outDir, { recursive: true, force: true });
  fs.mkdirSync(outDir, { recursive: true });
  for (const f of fs.readdirSync(bestDir)) fs.copyFileSync(path.join(bestDir, f), path.join(outDir, f));
  writeBaseTokenizer(outDir);
  const sizeBytes = fs.readdirSync(outDir).reduce((s, f) => s + fs.statSync(path.join(outDir, f)).size, 0);
  const result: MakeBaseModelResult = { outDir, step: keptStep, inBand: !!best, trainSeconds, final: fin, history, sizeBytes };
  fs.writeFileSync(path.join(outDir, 'README.md'), readme(o, { seed, maxSteps, batchSize, lr, warmupSteps, difficulty, count, heldOut, evalN, evalEvery, low, high, preferLow, preferHigh }, config, model.numParams, result, evalSeconds, train.length));
  fs.rmSync(tmpDir, { recursive: true, force: true });
  return result;
}

function readme(
  o: MakeBaseModelOptions,
  r: Record<string, number>,
  config: Record<string, unknown>,
  params: number,
  res: MakeBaseModelResult,
  evalSeconds: number,
  nTrain: number,
): string {
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
  const flags: [keyof MakeBaseModelOptions, string][] = [['outDir', 'out'], ['seed', 'seed'], ['steps', 'steps'], ['threads', 'threads'], ['batchSize', 'batch-size'],
    ['lr', 'lr'], ['evalEvery', 'eval-every'], ['hidden', 'hidden'], ['layers', 'layers'], ['intermediate', 'intermediate'], ['difficulty', 'difficulty'], ['dtype', 'dtype']];
  const args = flags.filter(([k]) => o[k] !== undefined).map(([k, f]) => ` --${f} ${o[k]}`).join('');
  const rows = res.history.map((h) => `| ${h.step} | ${h.loss.toFixed(4)} | ${pct(h.meanAtK!)} | ${pct(h.passAtK!)} |`).join('\n');
  return `# tiny-base

The embedded default base model of the RIFT demo: a ${params.toLocaleString('en-US')}-parameter character-level Qwen2
(hidden ${config.hidden_size}, ${config.num_hidden_layers} layers, ${config.num_attention_heads} heads / ${config.num_key_value_heads} KV heads, intermediate ${config.intermediate_size},
tied embeddings, vocabulary ${config.vocab_size}: \`<|pad|>\` \`<|bos|>\` \`<|eos|>\` + the tiny task's characters + newline)
trained by this project's own SFT on the synthetic 'tiny' arithmetic task (lib/data/synthetic.ts, difficulty ${r.difficulty}).
It solves some but not all problems, so RL rewards on it are mixed.

## Format

Prompt = the problem text and a newline (no BOS); response = the worked solution and \`<|eos|>\`:

    7+5*3-4=?\\n   →   5*3=15;7+15=22;22-4=18;\\boxed{18}<|eos|>

\`promptFor(problem)\` in lib/demo/base-model.ts builds the prompt; use it (generate with the tokenizer's eos as the stop
token, at most ${BASE_MAX_NEW_TOKENS} new tokens). Answers are scored with lib/reward/verifier.ts \`verify(text, answer)\`.

## How it was made

    npm run build:ts && node scripts/make-base-model.js${args}

- data: \`generateProblems({count: ${r.count}, seed: ${r.seed}, style: 'tiny', difficulty: ${r.difficulty}})\`, split with
  \`splitProblems(…, {testFraction: ${r.heldOut}/${r.count}, seed: ${r.seed}})\`: ${nTrain} training problems, ${r.heldOut} held out
- SFT (method 'sft', token-mean) on the reference solutions: batches of ${r.batchSize}, AdamW lr ${r.lr} (linear warmup ${r.warmupSteps}
  steps, then constant), weight decay 0.01, gradient clipping 1, init std 0.02, seed ${r.seed}
- every ${r.evalEvery} steps Mean@8 (temperature 1) on the first ${r.evalN} held-out problems; the run stops at the first
  evaluation in [${pct(r.preferLow)}, ${pct(r.preferHigh)}] (or once above ${pct(r.high)}, keeping the in-band evaluation closest to ${pct((r.low + r.high) / 2)})
- kept: step ${res.step}${res.inBand ? '' : ' (NO evaluation landed in the band: the last weights)'}; weights stored as ${o.dtype ?? 'float32'}
- training took ${res.trainSeconds.toFixed(0)} s on this machine (2 CPU cores, in-training evaluations included: ${evalSeconds.toFixed(0)} s of it).
  The run is deterministic for a given thread count (\`--threads\`); another thread count may sum in another order
  and end at a slightly different step

## Measured

On the first ${res.final.problems} held-out problems (seed 12345, k = ${res.final.k}, temperature 1, at most ${BASE_MAX_NEW_TOKENS} new tokens):

| Mean@8 | Pass@8 | greedy accuracy |
|---|---|---|
| ${pct(res.final.meanAtK)} | ${pct(res.final.passAtK)} | ${pct(res.final.greedy ?? NaN)} |

Training curve (in-training evaluations on ${r.evalN} problems; loss = mean over the steps since the previous row):

| step | loss | Mean@8 | Pass@8 |
|---|---|---|---|
${rows}
`;
}
