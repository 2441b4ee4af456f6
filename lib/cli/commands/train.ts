// rift train: one method (sft | rft | dft | dpo | rift | naive) on rollouts (SFT: on the problems' reference solutions),
// checkpoints and exact resume; the trained model is saved to --out (HF layout, tokenizer files copied).
// --out is locked for the run (a second `rift train` into it is refused), may not be or hold an input (--model
// only with --overwrite), and a resume first cuts metrics.jsonl back to the checkpoint's step.
// A diverged run (NaN/Inf loss, logits or gradient norm; lib/train/divergence.ts) saves no model: train.json records
// the divergence and the metrics so far, and the command fails with the DivergenceError's message.
// Data parallel: under mpirun -np N (or any launcher that sets the rank / world-size variables, lib/distributed/launch.ts)
// every process trains on its shard of each global batch (lib/dist); rank 0 alone locks and writes --out (model,
// checkpoints, metrics, progress bars); a CUDA rank uses the GPU of its local rank; --zero 1 shards AdamW's state.
import * as fs from 'fs';
import * as path from 'path';
import { Command, Option } from 'commander';
import { readRollouts } from '../../rollout/store';
import { appendJsonl } from '../../data/jsonl';
import { writeJsonAtomic } from '../../eval/evaluate';
import { TOKENIZER_FILES } from '../../engine/model';
import {
  cleanCheckpointTemps,
  DEFAULT_KEEP_CHECKPOINTS,
  readLatest,
  truncateMetricsFile,
} from '../../train/checkpoints';
import { DivergenceError } from '../../train/divergence';
import { TRAIN_METHODS, type TrainMethod } from '../../train/examples';
import { SCHEDULE_KINDS, type ScheduleKind } from '../../train/schedule';
import {
  PromptFormat,
  PROMPT_FORMAT_FILE,
  referenceExamples,
  rolloutExamples,
  rolloutPromptSpec,
  trainingPromptSpec,
  trainMethod,
  writePromptFormatFile,
} from '../../loop';
import { CliError, Output } from '../io';
import { int, num } from '../parse';
import { checkDirOutput, lockOutput, modelInputs, refuseOverlap, type PathArg, type WriteArg } from '../outputs';
import { DEFAULT_MODEL, loadModelDir, loadProblems, deviceOptions, type DeviceFlags } from './common';
import { PROMPT_OPTION_NAMES, promptChoice, promptOptions, type PromptFlags } from './prompt';
import { Dist } from '../../distributed/comm';
import { DataParallel } from '../../distributed/data-parallel';
import { launchInfo, selectCudaDevice } from '../../distributed/launch';

interface Flags extends DeviceFlags, PromptFlags {
  method: TrainMethod;
  negative: 'token' | 'sequence';
  model: string;
  rollouts?: string;
  problems: string;
  out: string;
  lr: number;
  steps?: number;
  epochs?: number;
  schedule: ScheduleKind;
  warmupSteps: number;
  tokenBudget: number;
  examplesPerStep: number;
  checkpointEvery?: number;
  keepCheckpoints: number;
  overwrite?: boolean;
  dpoReference: 'precomputed' | 'held';
  seed: number;
  resume?: boolean;
  json?: boolean;
  zero: '0' | '1';
  distTimeout?: number;
}

export function trainCommand(out: () => Output): Command {
  return promptOptions(deviceOptions(new Command('train')), "the prompts (default: the rollouts' recorded format)")
    .description('fine-tune a model with one method on rollouts (sft: on the reference solutions)')
    .addOption(
      new Option('--method <name>', 'training method').choices(TRAIN_METHODS as string[]).makeOptionMandatory(),
    )
    .addOption(
      new Option('--negative <form>', 'RIFT negatives: per token or per sequence')
        .choices(['token', 'sequence'])
        .default('token'),
    )
    .option('--model <dir>', 'initial model directory', DEFAULT_MODEL)
    .option('--rollouts <file>', 'rollouts JSONL (rift rollout); not used by sft')
    .requiredOption('--problems <file>', 'the problems JSONL the rollouts were made from')
    .requiredOption('--out <dir>', 'output directory: the trained model, checkpoints/, metrics.jsonl, train.json')
    .option('--lr <lr>', 'learning rate', num(0), 1e-4)
    .option('--steps <n>', 'exactly this many optimizer updates (default: --epochs)', int(1))
    .option('--epochs <n>', 'passes over the data (when --steps is not given; default 1)', int(1))
    .addOption(new Option('--schedule <kind>', 'LR schedule').choices(SCHEDULE_KINDS as string[]).default('constant'))
    .option('--warmup-steps <n>', 'linear LR warm-up steps', int(0), 0)
    .option('--token-budget <n>', 'most tokens (B × T) per micro-batch', int(1), 4096)
    .option('--examples-per-step <n>', 'sequences (DPO: pairs) per optimizer update', int(1), 16)
    .option('--checkpoint-every <n>', 'checkpoint every N updates (and at the end) into OUT/checkpoints', int(1))
    .option('--keep-checkpoints <n>', 'keep the N newest checkpoints (0: all)', int(0), DEFAULT_KEEP_CHECKPOINTS)
    .option('--overwrite', 'allow --out to be the --model directory (the input model is replaced)')
    .addOption(
      new Option('--dpo-reference <kind>', 'DPO reference log-probs')
        .choices(['precomputed', 'held'])
        .default('precomputed'),
    )
    .option('--seed <n>', 'data-order seed', int(0), 0)
    .option('--resume', 'continue from OUT/checkpoints (same options and data)')
    .option('--json', 'JSON lines on stdout')
    .addOption(
      new Option('--zero <stage>', 'under mpirun: 0 = plain data parallel, 1 = AdamW state sharded over ranks (ZeRO-1)')
        .choices(['0', '1'])
        .default('0'),
    )
    .option(
      '--dist-timeout <s>',
      'under mpirun: longest wait for another rank before the job fails naming it (default 600)',
      num(0),
    )
    .action(async (f: Flags) => {
      const launch = launchInfo();
      // several ranks, or ZeRO-1 asked for in a single process (a world of one rank: the same code path)
      const dist = (launch && launch.size > 1) || f.zero === '1' ? startDist(f, launch?.localRank ?? 0) : undefined;
      try {
        const o = !dist || dist.isRoot ? out() : quietOutput();
        if (f.steps !== undefined && f.epochs !== undefined)
          throw new CliError('--steps and --epochs: give one of them');
        if (f.method !== 'sft' && !f.rollouts) throw new CliError(`--rollouts: required for --method ${f.method}`);
        if (f.rollouts && !fs.existsSync(f.rollouts)) throw new CliError(`--rollouts: ${f.rollouts}: no such file`);
        checkOutputs(f);
        if (dist && !dist.isRoot) {
          // rank 0 prepares --out (lock, temps, metrics) before anyone reads a checkpoint from it
          await dist.same('rift train: --out is ready', { ready: 1 });
          await train(f, o, dist);
        } else {
          fs.mkdirSync(f.out, { recursive: true });
          const lock = lockOutput({ opt: '--out', path: f.out }, 'dir', 'rift train');
          try {
            await train(f, o, dist);
          } finally {
            lock.release();
          }
        }
        dist?.finalize();
      } catch (e) {
        if (!dist) throw e;
        dist.abandon(e instanceof Error ? e.message : String(e)); // no MPI_Finalize: the launcher ends the job
        if (e instanceof Error) e.message = `${dist.label}: ${e.message}`;
        throw e;
      }
    });
}

/** Joins the job (MPI); a CUDA rank first takes the GPU of its local rank. */
function startDist(f: Flags, localRank: number): Dist {
  if (f.device === 'cuda') selectCudaDevice(localRank);
  if (f.distTimeout !== undefined && !(f.distTimeout > 0))
    throw new CliError(`--dist-timeout: must be > 0, got ${f.distTimeout}`);
  return Dist.init({ timeoutSec: f.distTimeout });
}

/** The Output of a rank other than 0: no bars, logs or results (errors still reach stderr). */
function quietOutput(): Output {
  return new Output({ stdout: () => undefined, stderr: () => undefined, isTTY: false }, false);
}

/** Files `rift train` writes into --out (the saved model, its tokenizer files, the run's records). */
const OUT_FILES = [
  'config.json',
  'model.safetensors',
  'model.safetensors.index.json',
  ...TOKENIZER_FILES,
  PROMPT_FORMAT_FILE,
  'metrics.jsonl',
  'train.json',
];

/** --out against the inputs: not a file, not an input, not --model without --overwrite, not holding an input below checkpoints/. */
function checkOutputs(f: Flags): void {
  const out: PathArg = { opt: '--out', path: f.out };
  checkDirOutput(out);
  const sameAsModel =
    fs.existsSync(f.out) && fs.existsSync(f.model) && fs.realpathSync(f.out) === fs.realpathSync(f.model);
  if (sameAsModel && !f.overwrite)
    throw new CliError(
      `--out: ${f.out} is the --model directory: training would replace the input model; pass --overwrite to allow it`,
    );
  const inputs: PathArg[] = [
    { opt: '--problems', path: f.problems },
    ...(f.rollouts ? [{ opt: '--rollouts', path: f.rollouts }] : []),
    ...(sameAsModel ? [] : modelInputs('--model', f.model)),
  ];
  const writes: WriteArg[] = [
    ...(sameAsModel ? [] : [out]),
    ...OUT_FILES.map((n) => ({ opt: '--out', path: path.join(f.out, n) })),
    { opt: '--out', path: path.join(f.out, 'checkpoints'), tree: true },
  ];
  refuseOverlap(writes, inputs);
}

async function train(f: Flags, o: Output, dist?: Dist): Promise<void> {
  const root = !dist || dist.isRoot;
  const problems = loadProblems(f.problems);
  const { model, tokenizer } = loadModelDir(f.model, '--model', f);
  const records = f.rollouts ? readRollouts(f.rollouts, { onWarning: (m) => o.log(m) }) : [];
  // the prompts are the rollouts' (their recorded format; every record's prompt tokens checked)
  const names = { ...PROMPT_OPTION_NAMES, rollouts: f.rollouts };
  const format = new PromptFormat(
    trainingPromptSpec(rolloutPromptSpec(records, f.rollouts), promptChoice(f), { dir: f.model, tokenizer }, names),
    tokenizer,
  );
  const contextLength = model.config.max_position_embeddings;
  const { examples, skipped } = rolloutExamples(records, problems, format, { contextLength, source: f.rollouts });
  const refs = referenceExamples(problems, format, f.method === 'sft' ? { contextLength } : {});
  if (f.method === 'sft' && !refs.length)
    throw new CliError(`--problems: ${f.problems}: no problem has a "solution" (needed by --method sft)`);
  if (skipped) o.log(`${skipped} rollout records skipped (problem not in ${f.problems}, or an empty response)`);
  const ckpt = path.join(f.out, 'checkpoints');
  if (f.resume && !fs.existsSync(path.join(ckpt, 'latest.json')))
    throw new CliError(`--resume: ${ckpt}: no checkpoint to resume from`);
  const metricsFile = path.join(f.out, 'metrics.jsonl');
  if (root) {
    const cleaned = cleanCheckpointTemps(ckpt, { exclusive: true }); // we hold the lock: every temp here is an orphan
    if (cleaned.length)
      o.log(`removed ${cleaned.length} unfinished checkpoint write${cleaned.length === 1 ? '' : 's'} in ${ckpt}`);
    if (!f.resume) fs.rmSync(metricsFile, { force: true });
    else {
      const dropped = truncateMetricsFile(metricsFile, readLatest(ckpt).step);
      if (dropped)
        o.log(
          `${metricsFile}: removed ${dropped} step record${dropped === 1 ? '' : 's'} past the checkpoint (they are trained again)`,
        );
    }
    if (dist) await dist.same('rift train: --out is ready', { ready: 1 });
  }
  if (dist) o.log(`data parallel: ${dist.size} ranks (${dist.library}), ZeRO stage ${f.zero}`);
  let tokens = 0;
  const label = `train ${f.method}${f.method === 'rift' ? `-${f.negative}` : ''}`;
  let total = f.steps ?? 0;
  const t0 = Date.now();
  const run = trainMethod(model, examples, refs, {
    method: f.method,
    ...(f.method === 'rift' ? { negative: f.negative } : {}),
    ...(f.method === 'dpo' ? { dpoReference: f.dpoReference } : {}),
    lr: f.lr,
    schedule: f.schedule,
    warmupSteps: f.warmupSteps,
    tokenBudget: f.tokenBudget,
    examplesPerStep: f.examplesPerStep,
    seed: f.seed,
    padId: tokenizer.padTokenId ?? 0,
    ...(f.steps === undefined ? { epochs: f.epochs ?? 1 } : { steps: f.steps }),
    ...(f.checkpointEvery !== undefined || f.resume
      ? { checkpointDir: ckpt, checkpointEvery: f.checkpointEvery, keepCheckpoints: f.keepCheckpoints }
      : {}),
    ...(f.resume ? { resumeFrom: ckpt } : {}),
    ...(dist ? { dist: new DataParallel(dist, { zero: f.zero === '1' ? 1 : 0 }) } : {}),
    onStep: (m) => {
      if (!root) return;
      if (!total) {
        total = f.steps ?? m.totalSteps;
        o.startBar(label, total);
      }
      tokens += m.tokens;
      appendJsonl(metricsFile, [
        {
          step: m.step,
          epoch: m.epoch,
          loss: m.loss,
          lr: m.lr,
          gradNorm: m.gradNorm,
          tokens: m.tokens,
          tokensPerSec: m.tokensPerSec,
          memoryPeak: m.memoryPeak,
          seconds: m.seconds,
        },
      ]);
      o.updateBar(label, m.step, total, { tokens, loss: m.loss });
    },
  });
  const { metrics } = await run.catch((e: unknown) => {
    if (!(e instanceof DivergenceError)) throw e;
    o.stopBar();
    const d = e.divergence;
    if (root)
      writeJsonAtomic(path.join(f.out, 'train.json'), {
        command: 'train',
        method: f.method,
        out: f.out,
        diverged: d,
        steps: e.history.length,
        options: f,
        metrics: e.history,
      });
    throw new CliError(`${e.message}; no model saved (${path.join(f.out, 'train.json')} records the run)`);
  });
  o.endBar(label, { steps: metrics.length });
  if (!root) return;
  model.save(f.out);
  writePromptFormatFile(f.out, format.spec);
  const seconds = (Date.now() - t0) / 1000;
  const last = metrics[metrics.length - 1];
  const summary = {
    command: 'train',
    method: f.method,
    negative: f.method === 'rift' ? f.negative : undefined,
    out: f.out,
    steps: metrics.length,
    firstLoss: metrics[0]?.loss,
    lastLoss: last?.loss,
    peakMemoryBytes: Math.max(0, ...metrics.map((m) => m.memoryPeak)),
    seconds,
    examples: examples.length,
    referenceSolutions: refs.length,
    promptFormat: format.spec,
  };
  writeJsonAtomic(path.join(f.out, 'train.json'), { ...summary, options: f, metrics });
  o.result(
    summary,
    `${label}: ${metrics.length} updates, loss ${summary.firstLoss?.toFixed(4)} → ${summary.lastLoss?.toFixed(4)}, ${seconds.toFixed(1)} s; model saved to ${f.out}`,
  );
}
