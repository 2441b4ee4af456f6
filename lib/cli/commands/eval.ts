// rift eval: Mean@K and Pass@k of a model on held-out problems.
import { Command } from 'commander';
import { evaluate, writeJsonAtomic, evalTable } from '../../eval/evaluate';
import { buildPrompts, makeScorer, promptHash } from '../../loop';
import type { Output } from '../io';
import { checkFileOutput, modelInputs, refuseOverlap } from '../outputs';
import { int } from '../parse';
import { samplingOptions } from './rollout';
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

interface Flags extends SamplingFlags, DeviceFlags, PromptFlags {
  model: string;
  problems: string;
  k: number;
  json?: string | boolean;
}

export function evalCommand(out: () => Output): Command {
  const cmd = new Command('eval')
    .description('evaluate a model: K samples per problem → Mean@K, Pass@k')
    .option('--model <dir>', 'model directory', DEFAULT_MODEL)
    .requiredOption('--problems <file>', 'problems JSONL')
    .option('--k <n>', 'samples per problem', int(1), 8);
  promptOptions(samplingOptions(deviceOptions(cmd)))
    .option('--json [file]', 'JSON lines on stdout; with a file, also write the full result there')
    .action(async (f: Flags) => {
      const o = out();
      if (typeof f.json === 'string') {
        const json = { opt: '--json', path: f.json };
        checkFileOutput(json);
        refuseOverlap([json], [{ opt: '--problems', path: f.problems }, ...modelInputs('--model', f.model)]);
      }
      const problems = loadProblems(f.problems);
      const { model, tokenizer } = loadModelDir(f.model, '--model', f);
      const format = loadPromptFormat(f, f.model, tokenizer);
      const prompts = buildPrompts(format, problems, {
        maxNewTokens: f.maxNewTokens,
        contextLength: model.config.max_position_embeddings,
        names: PROMPT_BUILD_NAMES,
      });
      o.startBar('eval', problems.length);
      const t0 = Date.now();
      const r = await evaluate({
        model,
        tokenizer,
        problems,
        k: f.k,
        score: makeScorer(),
        promptFor: (p) => prompts.get(p.id)!,
        params: {
          temperature: f.temperature,
          topP: f.topP,
          topK: f.topK,
          maxNewTokens: f.maxNewTokens,
          seed: f.seed,
          maxBatchRows: f.maxBatchRows,
        },
        keepTexts: true,
        onProgress: (p) => o.updateBar('eval', p.done, p.total),
      });
      const tokens = r.perProblem.reduce((a, e) => a + e.tokens.reduce((x, y) => x + y, 0), 0);
      o.endBar('eval', { tokens });
      const seconds = (Date.now() - t0) / 1000;
      if (typeof f.json === 'string') {
        // each problem's prompt identity (as in rollout records): its token count and promptHash
        const perProblem = r.perProblem.map((e) => ({
          ...e,
          promptTokens: prompts.get(e.problemId)!.length,
          promptHash: promptHash(prompts.get(e.problemId)!),
        }));
        writeJsonAtomic(f.json, {
          model: f.model,
          problemsFile: f.problems,
          seconds,
          promptFormat: format.spec,
          ...r,
          perProblem,
        });
      }
      o.result(
        {
          command: 'eval',
          model: f.model,
          k: r.k,
          problems: r.problems,
          meanAtK: r.meanAtK,
          passAtK: r.passAtK,
          meanTokens: r.meanTokens,
          seconds,
          promptFormat: format.spec,
        },
        evalTable([{ method: f.model, meanAtK: r.meanAtK, passAtK: r.passAtK, k: r.k }]) +
          `(${r.problems} problems × ${r.k} samples, ${seconds.toFixed(1)} s)`,
      );
    });
  return cmd;
}
