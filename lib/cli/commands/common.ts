// Shared pieces of the commands: loading a model directory and a problems file with CLI-grade errors.
import * as fs from 'fs';
import * as path from 'path';
import { readProblems, type Problem } from '../../data/problems';
import { Model } from '../../engine/model';
import { Tokenizer } from '../../engine/tokenizer';
import { defaultModelDir } from '../../demo/loop';
import { CliError } from '../io';

export const DEFAULT_MODEL = defaultModelDir();

export function loadModelDir(dir: string, opt = '--model'): { model: Model; tokenizer: Tokenizer } {
  if (!fs.existsSync(dir)) throw new CliError(`${opt}: ${dir}: no such directory`);
  if (!fs.existsSync(path.join(dir, 'config.json'))) throw new CliError(`${opt}: ${dir}: no config.json (not a model directory)`);
  if (!fs.existsSync(path.join(dir, 'tokenizer.json'))) throw new CliError(`${opt}: ${dir}: no tokenizer.json`);
  return { model: Model.load(dir), tokenizer: Tokenizer.load(dir) };
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
}
