// The README.md that scripts/make-base-model.js writes next to a base model (lib/demo/base-model.ts): how it was
// made (the exact command and settings) and what it measured.
import type { BaseEval, BasePreset, MakeBaseModelOptions } from './base-model';

export interface BaseReadmeInput {
  preset: BasePreset;
  /** The trained model it was grown from (lib/demo/grow.ts), if any. */
  growFrom?: string;
  /** The model folder's name (the README's title). */
  name: string;
  o: MakeBaseModelOptions;
  r: Record<string, number>;
  config: Record<string, unknown>;
  params: number;
  res: {
    step: number;
    inBand: boolean;
    trainSeconds: number;
    final: BaseEval;
    history: { step: number; loss: number; meanAtK?: number; passAtK?: number }[];
  };
  evalSeconds: number;
  nTrain: number;
  dtype: string;
  timedOut: boolean;
}

const INTRO: Record<BasePreset, (difficulty: number) => string> = {
  tiny: () => `The embedded default base model of the RIFT demo`,
  hard: (d) =>
    `The base model of the experiment's hard setting (\`rift experiment --setting hard\`; difficulty ${d}: long multi-step problems)`,
};

export function baseReadme(x: BaseReadmeInput): string {
  const { o, r, config, res } = x;
  const pct = (v: number) => `${(100 * v).toFixed(1)}%`;
  const flags: [keyof MakeBaseModelOptions, string][] = [
    ['preset', 'preset'],
    ['outDir', 'out'],
    ['seed', 'seed'],
    ['steps', 'steps'],
    ['threads', 'threads'],
    ['batchSize', 'batch-size'],
    ['lr', 'lr'],
    ['evalEvery', 'eval-every'],
    ['hidden', 'hidden'],
    ['layers', 'layers'],
    ['intermediate', 'intermediate'],
    ['difficulty', 'difficulty'],
    ['dtype', 'dtype'],
    ['maxMinutes', 'max-minutes'],
    ['growFrom', 'grow-from'],
    ['growFactor', 'grow-factor'],
  ];
  const args = flags
    .filter(([k]) => o[k] !== undefined)
    .map(([k, f]) => ` --${f} ${o[k]}`)
    .join('');
  const rows = res.history
    .map((h) => `| ${h.step} | ${h.loss.toFixed(4)} | ${pct(h.meanAtK!)} | ${pct(h.passAtK!)} |`)
    .join('\n');
  const example =
    x.preset === 'hard'
      ? '8*2*4-16+8*7+6-2=?\\n   →   8*2=16;16*4=64;8*7=56;64-16=48;48+56=104;104+6=110;110-2=108;\\boxed{108}<|eos|>'
      : '7+5*3-4=?\\n   →   5*3=15;7+15=22;22-4=18;\\boxed{18}<|eos|>';
  const stop = res.inBand
    ? ''
    : x.timedOut
      ? ` (NO evaluation landed in the band before the ${r.maxMinutes}-minute limit: the last weights)`
      : ' (NO evaluation landed in the band: the last weights)';
  return `# ${x.name}

${INTRO[x.preset](r.difficulty)}: a ${x.params.toLocaleString('en-US')}-parameter character-level Qwen2
(hidden ${config.hidden_size}, ${config.num_hidden_layers} layers, ${config.num_attention_heads} heads / ${config.num_key_value_heads} KV heads, intermediate ${config.intermediate_size},
tied embeddings, vocabulary ${config.vocab_size}: \`<|pad|>\` \`<|bos|>\` \`<|eos|>\` + the tiny task's characters + newline)
trained by this project's own SFT on the synthetic 'tiny' arithmetic task (lib/data/synthetic.ts, difficulty ${r.difficulty}).
It solves some but not all problems, so RL rewards on it are mixed.

## Format

Prompt = the problem text and a newline (no BOS); response = the worked solution and \`<|eos|>\`:

    ${example}

The format is recorded in \`prompt_format.json\` (\`{"format": "plain", "template": "{problem}\\n"}\`), which \`rift\`
and lib/loop's PromptFormat use for this model by default (\`--prompt-format auto\`); \`promptFor(problem)\` in
lib/demo/base-model.ts builds the same prompt (generate with the tokenizer's eos as the stop token, at most ${r.maxNewTokens} new
tokens). Answers are scored with lib/reward/verifier.ts \`verify(text, answer)\`.

## How it was made

    npm run build:ts && node scripts/make-base-model.js${args}

- data: \`generateProblems({count: ${r.count}, seed: ${r.seed}, style: 'tiny', difficulty: ${r.difficulty}})\`, split with
  \`splitProblems(…, {testFraction: ${r.heldOut}/${r.count}, seed: ${r.seed}})\`: ${x.nTrain} training problems, ${r.heldOut} held out
${
  x.growFrom
    ? `- init: grown from ${x.growFrom} (lib/demo/grow.ts): its ${Number(config.num_hidden_layers) / r.growFactor} layers at every ${r.growFactor === 2 ? 'second' : `${r.growFactor}th`} position, the
  layers between new (std 0.02) with zero output projections, so training starts from the source model's function
`
    : ''
}- SFT (method 'sft', token-mean) on the reference solutions: batches of ${r.batchSize}, AdamW lr ${r.lr} (linear warmup ${r.warmupSteps}
  steps, then constant), weight decay 0.01, gradient clipping 1, init std 0.02, seed ${r.seed}
- every ${r.evalEvery} steps Mean@8 (temperature 1) on the first ${r.evalN} held-out problems; the run stops at the first
  evaluation in [${pct(r.preferLow)}, ${pct(r.preferHigh)}] (or once above ${pct(r.high)}, keeping the in-band evaluation closest to ${pct((r.low + r.high) / 2)})${
    Number.isFinite(r.maxMinutes)
      ? `,
  or after ${r.maxMinutes} minutes`
      : ''
  }
- kept: step ${res.step}${stop}; weights stored as ${x.dtype}
- training took ${res.trainSeconds.toFixed(0)} s on this machine (2 CPU cores, shared with other jobs; in-training evaluations included: ${x.evalSeconds.toFixed(0)} s of it).
  The run is deterministic for a given thread count (\`--threads\`) up to the time limit; another thread count may sum
  in another order and end at a slightly different step

## Measured

On the first ${res.final.problems} held-out problems (seed 12345, k = ${res.final.k}, temperature 1, at most ${r.maxNewTokens} new tokens; also in metadata.json):

| Mean@8 | Pass@8 | greedy accuracy |
|---|---|---|
| ${pct(res.final.meanAtK)} | ${pct(res.final.passAtK)} | ${pct(res.final.greedy ?? NaN)} |

Training curve (in-training evaluations on ${r.evalN} problems; loss = mean over the steps since the previous row):

| step | loss | Mean@8 | Pass@8 |
|---|---|---|---|
${rows}
`;
}
