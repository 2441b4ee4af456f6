// A hand-written RIFT training loop on rift's engine, without the Trainer: sample K answers per problem with
// generate, score them with verify, pack them into token-budget micro-batches with packSamples, accumulate
// lossAndBackward over the micro-batches with the step's global normaliser, then one AdamW step.
//
//   npx tsc -p tsconfig.json && node dist/examples/custom-loop.js        (CI runs it: test/examples.test.ts)
//
// In your own project import from 'rift' instead of '../lib'.
import * as fs from 'fs';
import * as path from 'path';
import { generate, generateProblems, Model, packSamples, rewardFor, Tokenizer, verify, type BatchSample } from '../lib';

export interface CustomLoopOptions {
  /** A Qwen2/Llama checkpoint directory with its tokenizer (default: the embedded models/tiny-base). */
  modelDir?: string;
  steps?: number;
  problemsPerStep?: number;
  /** Samples per problem. */
  k?: number;
  /** Most tokens (B × T) per micro-batch: a step's samples are split into as many as needed. */
  tokenBudget?: number;
  lr?: number;
  seed?: number;
  log?: (line: string) => void;
}

export interface StepLog {
  step: number;
  samples: number;
  correct: number;
  microBatches: number;
  /** The step's RIFT loss before the update, and on the same samples right after it. */
  loss: number;
  lossAfter: number;
  gradNorm: number;
}

/** The embedded tiny base model's directory (models/tiny-base), found from this file (examples/ or dist/examples/). */
function embeddedModel(): string {
  for (let d = __dirname; ; d = path.dirname(d)) {
    const dir = path.join(d, 'models', 'tiny-base');
    if (fs.existsSync(path.join(dir, 'config.json'))) return dir;
    if (path.dirname(d) === d) throw new Error('custom-loop: models/tiny-base not found; pass modelDir');
  }
}

export async function customLoop(o: CustomLoopOptions = {}): Promise<StepLog[]> {
  const { steps = 4, problemsPerStep = 8, k = 4, tokenBudget = 1024, lr = 1e-4, seed = 1, log = () => {} } = o;
  const dir = o.modelDir ?? embeddedModel();
  const model = Model.load(dir);
  const tokenizer = Tokenizer.load(dir);
  // the tiny model's task (lib/data/synthetic.ts): "7+5*3-4=?" → worked steps ending in \boxed{18}
  const problems = generateProblems({ count: steps * problemsPerStep, seed, style: 'tiny', difficulty: 2 });
  const logs: StepLog[] = [];
  for (let s = 0; s < steps; s++) {
    const batch = problems.slice(s * problemsPerStep, (s + 1) * problemsPerStep);
    // 1. sample K answers per prompt (the tiny model's prompt format: the problem and a newline)
    const outs = await generate(
      model,
      tokenizer,
      batch.map((p) => `${p.problem}\n`),
      { k, maxNewTokens: 96, temperature: 1, seed: seed * 1000 + s },
    );
    // 2. score: reward +1 for a correct final answer, −0.2 otherwise
    const samples: BatchSample[] = [];
    let correct = 0;
    outs.forEach((out, i) =>
      out.samples.forEach((smp) => {
        const ok = verify(smp.text, batch[i].answer).correct;
        correct += ok ? 1 : 0;
        samples.push({ promptIds: out.promptIds, responseIds: smp.ids, reward: rewardFor(ok) });
      }),
    );
    // 3. pack: micro-batches of ≤ tokenBudget tokens and the step's normaliser (its response tokens)
    const packed = packSamples(samples, { tokenBudget, vocab: model.config.vocab_size });
    const loss = { method: 'rift', negative: 'token', normalizer: packed.normalizer } as const;
    // 4. accumulate ∂loss/∂θ over the micro-batches: exactly the gradient of the whole step
    model.zeroGrad();
    let before = 0;
    for (const mb of packed.microBatches) before += model.lossAndBackward({ ...mb, ...loss }).loss;
    // 5. one AdamW update
    const st = model.step({ lr, weightDecay: 0, maxGradNorm: 1 });
    let after = 0;
    for (const mb of packed.microBatches) after += model.lossAndBackward({ ...mb, ...loss, backward: false }).loss;
    const entry: StepLog = {
      step: s + 1,
      samples: samples.length,
      correct,
      microBatches: packed.microBatches.length,
      loss: before,
      lossAfter: after,
      gradNorm: st.gradNorm,
    };
    logs.push(entry);
    log(
      `step ${entry.step}: ${correct}/${samples.length} correct, ${entry.microBatches} micro-batches, RIFT loss ${before.toFixed(5)} → ${after.toFixed(5)} after the update, |g| ${st.gradNorm.toFixed(4)}`,
    );
  }
  return logs;
}

if (require.main === module) {
  customLoop({ log: console.log }).catch((e) => {
    console.error(e);
    process.exitCode = 1;
  });
}
