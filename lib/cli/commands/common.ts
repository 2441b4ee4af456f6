// Shared pieces of the commands: loading a model directory and a problems file with CLI-grade errors.
import * as fs from 'fs';
import * as path from 'path';
import { Command, Option } from 'commander';
import { readProblems, type Problem } from '../../data/problems';
import { Device, Model, Precision } from '../../engine/model';
import { Tokenizer } from '../../engine/tokenizer';
import { defaultModelDir } from '../../loop/paths';
import { PromptFormat } from '../../loop/prompt';
import { resolvePromptSpec } from '../../loop/prompt-choice';
import { CliError } from '../io';
import { PROMPT_OPTION_NAMES, promptChoice, type PromptFlags } from './prompt';

export const DEFAULT_MODEL = defaultModelDir();

/** Where the model runs: --device and --precision (the Model options of the same names). */
export interface DeviceFlags {
  device: Device;
  precision?: Precision;
}

export function deviceOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--device <name>', 'where the model runs').choices(['cpu', 'cuda']).default('cpu'))
    .addOption(
      new Option('--precision <p>', 'GEMM operand precision (default: fp32 on cpu, bf16 on cuda)').choices([
        'fp32',
        'bf16',
      ]),
    );
}

export function loadModelDir(
  dir: string,
  opt = '--model',
  dev: Partial<DeviceFlags> = {},
): { model: Model; tokenizer: Tokenizer } {
  if (!fs.existsSync(dir)) throw new CliError(`${opt}: ${dir}: no such directory`);
  if (!fs.existsSync(path.join(dir, 'config.json')))
    throw new CliError(`${opt}: ${dir}: no config.json (not a model directory)`);
  if (!fs.existsSync(path.join(dir, 'tokenizer.json'))) throw new CliError(`${opt}: ${dir}: no tokenizer.json`);
  if (dev.device === 'cuda' && !Model.devices().includes('cuda'))
    throw new CliError('--device: cuda: no CUDA device with a loadable cuBLAS is usable on this machine');
  return { model: Model.load(dir, { device: dev.device, precision: dev.precision }), tokenizer: Tokenizer.load(dir) };
}

export function loadProblems(file: string, opt = '--problems'): Problem[] {
  if (!fs.existsSync(file)) throw new CliError(`${opt}: ${file}: no such file`);
  const ps = readProblems(file); // errors name file:line
  if (!ps.length) throw new CliError(`${opt}: ${file}: holds no problems`);
  return ps;
}

/** Sampling options shared by rollout and eval. */
export interface SamplingFlags {
  temperature: number;
  topP: number;
  topK: number;
  maxNewTokens: number;
  seed: number;
  /** Local model: most samples decoded together (generate()'s maxBatchRows). */
  maxBatchRows: number;
}

/** The prompt format of --prompt-format/--system/--prompt-template for a model directory (errors name the options). */
export function loadPromptFormat(f: PromptFlags, dir: string, tokenizer: Tokenizer): PromptFormat {
  return new PromptFormat(resolvePromptSpec(promptChoice(f), { dir, tokenizer }, PROMPT_OPTION_NAMES), tokenizer);
}

/** Names of the rollout/eval options in prompt-building errors. */
export const PROMPT_BUILD_NAMES = { problems: '--problems', maxNewTokens: '--max-new-tokens' };
