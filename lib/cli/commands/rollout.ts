// rift rollout: K samples per problem from a model, scored, appended to a JSONL store (resumable: a rerun skips
// the (problem, sample) pairs already there). --out is locked for the run (a second writer is refused) and may not
// be an input or a directory. With --server the samples come from an OpenAI-compatible server
// (./rollout-remote.ts).
import * as fs from 'fs';
import * as path from 'path';
import { Command } from 'commander';
import { runRollouts } from '../../rollout/rollout';
import { loadRewardModule } from '../../reward/rewards';
import { buildPrompts, DEFAULT_MAX_NEW_TOKENS, makeScorer } from '../../loop';
import type { Output } from '../io';
import { checkFileOutput, lockOutput, modelInputs, refuseOverlap, type PathArg } from '../outputs';
import { int, num } from '../parse';
import {
  DEFAULT_MODEL,
  loadModelDir,
  loadProblems,
  loadPromptFormat,
  PROMPT_BUILD_NAMES,
  type SamplingFlags,
  deviceOptions,
  type DeviceFlags,
} from './common';
import { promptOptions, type PromptFlags } from './prompt';
import { checkRemoteFlags, remoteOptions, remoteRollout, type RemoteFlags } from './rollout-remote';

/** RemoteFlags holds the options both rollout paths share (model, problems, k, out, rewards). */
type Flags = SamplingFlags & DeviceFlags & PromptFlags & RemoteFlags;

export function samplingOptions(cmd: Command): Command {
  return cmd
    .option('--temperature <t>', 'sampling temperature (0: greedy)', num(0), 1)
    .option('--top-p <p>', 'nucleus sampling (1: off)', num(0, 1), 1)
    .option('--top-k <k>', 'top-k sampling (0: off)', int(0), 0)
    .option('--max-new-tokens <n>', 'most generated tokens per sample', int(1), DEFAULT_MAX_NEW_TOKENS)
    .option('--seed <n>', 'sampling seed', int(0), 0)
    .option(
      '--max-batch-rows <n>',
      'local model: most samples decoded together (continuous batching)',
      int(1, 2 ** 31 - 1),
      256,
    );
}

export function rolloutCommand(out: () => Output): Command {
  const cmd = new Command('rollout')
    .description('sample K answers per problem, score them, append them to a JSONL file (resumable)')
    .option('--model <dir>', 'model directory (config.json, model.safetensors, tokenizer.json)', DEFAULT_MODEL)
    .requiredOption('--problems <file>', 'problems JSONL: {id, problem, answer, solution?} per line')
    .option('--k <n>', 'samples per problem', int(1), 8)
    .requiredOption('--out <file>', 'rollouts JSONL (appended to; existing samples are kept)');
  promptOptions(samplingOptions(deviceOptions(cmd)))
    .option('--reward-module <path>', 'JS module exporting (sample) => number (replaces --r-pos/--r-neg)')
    .option('--r-pos <r>', 'reward of a correct answer', num(), 1)
    .option('--r-neg <r>', 'reward of a wrong answer', num(), -0.2)
    .option('--json', 'JSON lines on stdout');
  remoteOptions(cmd).action(async (f: Flags) => {
    const o = out();
    checkRemoteFlags(cmd, f);
    const outArg: PathArg = { opt: '--out', path: f.out };
    checkFileOutput(outArg);
    refuseOverlap(
      [outArg],
      [
        { opt: '--problems', path: f.problems },
        ...modelInputs('--model', f.model),
        ...(f.rewardModule ? [{ opt: '--reward-module', path: f.rewardModule }] : []),
      ],
    );
    fs.mkdirSync(path.dirname(path.resolve(f.out)), { recursive: true });
    const lock = lockOutput(outArg, 'file', 'rift rollout');
    try {
      await (f.server !== undefined ? remoteRollout(f, o) : rollout(f, o));
    } finally {
      lock.release();
    }
  });
  return cmd;
}

async function rollout(f: Flags, o: Output): Promise<void> {
  const problems = loadProblems(f.problems);
  const { model, tokenizer } = loadModelDir(f.model, '--model', f);
  const rewardFn = f.rewardModule ? await loadRewardModule(path.resolve(f.rewardModule)) : undefined;
  const score = makeScorer({ rPos: f.rPos, rNeg: f.rNeg, rewardFn });
  const format = loadPromptFormat(f, f.model, tokenizer);
  // every prompt is built (template rendered, length checked) before --out is opened
  const prompts = buildPrompts(format, problems, {
    maxNewTokens: f.maxNewTokens,
    contextLength: model.config.max_position_embeddings,
    names: PROMPT_BUILD_NAMES,
  });
  let tokens = 0;
  const t0 = Date.now();
  o.startBar('rollout', problems.length);
  const r = await runRollouts({
    model,
    tokenizer,
    problems,
    k: f.k,
    file: f.out,
    score,
    onWarning: (m) => o.log(m),
    promptFor: (p) => prompts.get(p.id)!,
    promptFormat: format.spec,
    params: {
      temperature: f.temperature,
      topP: f.topP,
      topK: f.topK,
      maxNewTokens: f.maxNewTokens,
      seed: f.seed,
      maxBatchRows: f.maxBatchRows,
    },
    onProgress: (p) => {
      tokens += p.records.reduce((a, x) => a + x.tokens, 0);
      o.updateBar('rollout', p.index + 1, p.total, { tokens });
    },
  });
  o.endBar('rollout', { generated: r.generated, reused: r.reused });
  const s = r.stats;
  const seconds = (Date.now() - t0) / 1000;
  o.result(
    {
      command: 'rollout',
      file: f.out,
      generated: r.generated,
      reused: r.reused,
      droppedBytes: r.droppedBytes,
      duplicates: r.duplicates,
      seconds,
      tokens,
      stats: s,
      promptFormat: format.spec,
    },
    `${f.out}: ${s.samples} samples for ${s.problems} problems (${r.generated} generated, ${r.reused} already there` +
      `${r.droppedBytes ? `, ${r.droppedBytes} torn bytes cut` : ''}) in ${seconds.toFixed(1)} s\n` +
      `positives ${s.positives}, negatives ${s.negatives} (by the reward's sign), correct ${s.correct}, mixed problems ${(100 * s.mixedRate).toFixed(1)}%, ` +
      `all-correct ${s.allCorrect}, all-wrong ${s.allWrong}, mean reward ${s.meanReward.toFixed(4)}`,
  );
}
