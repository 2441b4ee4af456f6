// Which prompt format a run uses: a model directory's own (prompt_format.json), the user's choice (--prompt-format,
// --system, --prompt-template), or the one rollout records were sampled with.
//
//   resolvePromptSpec   format 'auto' (default): the directory's prompt_format.json, else chat when the tokenizer
//                       has a chat template, else plain with DEFAULT_PLAIN_TEMPLATE; an explicit 'chat' / 'plain'
//                       keeps the directory's fields when it records the same format. `system` and `template`
//                       override the fields.
//   rolloutPromptSpec   the one format of a set of records (records of two formats are an error)
//   trainingPromptSpec  train: the records' format; prompt options that give another format are an error
import * as fs from 'fs';
import * as path from 'path';
import { readJsonFile } from '../data/files';
import {
  checkPromptSpec,
  checkTemplate,
  promptSpecKey,
  samePromptSpec,
  type PromptFormatKind,
  type PromptSpec,
} from '../data/prompt-spec';
import type { Tokenizer } from '../engine/tokenizer';
import { writeBytesAtomic } from '../util/atomic';
import type { RolloutRecord } from '../rollout/store';
import { DEFAULT_CHAT_TEMPLATE, DEFAULT_PLAIN_TEMPLATE } from './prompt';

/** The file in a model directory that records the model's prompt format. */
export const PROMPT_FORMAT_FILE = 'prompt_format.json';

/** The directory's recorded prompt format (undefined when it has no prompt_format.json); errors name the file. */
export function readPromptFormatFile(dir: string): PromptSpec | undefined {
  const file = path.join(dir, PROMPT_FORMAT_FILE);
  if (!fs.existsSync(file)) return undefined;
  return checkPromptSpec(readJsonFile(file, 1 << 20), file);
}

/** Records `spec` as the directory's prompt format (atomically). */
export function writePromptFormatFile(dir: string, spec: PromptSpec): void {
  const s = checkPromptSpec(spec);
  writeBytesAtomic(path.join(dir, PROMPT_FORMAT_FILE), JSON.stringify(s, null, 2) + '\n');
}

export interface PromptChoice {
  /** 'chat' | 'plain' | 'auto' (default 'auto'). */
  format?: PromptFormatKind | 'auto';
  /** A system message (chat only). */
  system?: string;
  /** The user message (chat) or the whole prompt (plain), with {problem}. */
  template?: string;
}

/** Names of the choice's fields in errors (the CLI passes its option names). */
export interface PromptChoiceNames {
  format?: string;
  system?: string;
  template?: string;
}

const FLAG_NAMES = { format: 'format', system: 'system', template: 'template' };

/** Whether the choice asks for anything (a format other than auto, a system message or a template). */
export function isExplicitChoice(c: PromptChoice): boolean {
  return (c.format !== undefined && c.format !== 'auto') || c.system !== undefined || c.template !== undefined;
}

/** The spec a choice gives for a model directory and its tokenizer (see the file comment). */
export function resolvePromptSpec(
  choice: PromptChoice,
  model: { dir?: string; tokenizer: Tokenizer },
  names: PromptChoiceNames = {},
): PromptSpec {
  const n = { ...FLAG_NAMES, ...names };
  const asked = choice.format ?? 'auto';
  if (!['auto', 'chat', 'plain'].includes(asked))
    throw new RangeError(`${n.format}: must be chat, plain or auto, got ${JSON.stringify(asked)}`);
  const own = model.dir !== undefined ? readPromptFormatFile(model.dir) : undefined;
  const hasTemplate = model.tokenizer.chatTemplate !== undefined;
  const format: PromptFormatKind = asked !== 'auto' ? asked : own ? own.format : hasTemplate ? 'chat' : 'plain';
  const where = model.dir ?? model.tokenizer.source;
  if (format === 'chat' && !hasTemplate)
    throw new Error(
      `${n.format} chat: ${where} has no chat template (no chat_template in tokenizer_config.json, no chat_template.jinja); ` +
        `use ${n.format} plain`,
    );
  const base = own && own.format === format ? own : undefined;
  if (choice.template !== undefined) checkTemplate(choice.template, n.template);
  const template =
    choice.template ?? base?.template ?? (format === 'chat' ? DEFAULT_CHAT_TEMPLATE : DEFAULT_PLAIN_TEMPLATE);
  if (format === 'plain') {
    if (choice.system !== undefined)
      throw new RangeError(
        `${n.system}: a system message needs the chat format, and this run uses plain` +
          (asked === 'auto' ? ` (${where} has ${own ? `${PROMPT_FORMAT_FILE} with plain` : 'no chat template'})` : ''),
      );
    return { format, template };
  }
  if (choice.system !== undefined && typeof choice.system !== 'string')
    throw new TypeError(`${n.system}: must be a string`);
  const system = choice.system ?? (base?.format === 'chat' ? base.system : undefined);
  return system === undefined ? { format, template } : { format, template, system };
}

/** The records' one prompt format (undefined: recorded by none); records of two formats are a RangeError naming both. */
export function rolloutPromptSpec(
  records: readonly Pick<RolloutRecord, 'problemId' | 'sampleIndex' | 'promptFormat'>[],
  source = 'rollouts',
): PromptSpec | undefined {
  if (!records.length) return undefined;
  const first = records[0];
  const key = promptSpecKey(first.promptFormat);
  for (const r of records)
    if (promptSpecKey(r.promptFormat) !== key)
      throw new RangeError(
        `${source}: holds records of two prompt formats: problem ${JSON.stringify(first.problemId)} sample ${first.sampleIndex} has ${key}, ` +
          `problem ${JSON.stringify(r.problemId)} sample ${r.sampleIndex} has ${promptSpecKey(r.promptFormat)} (roll out each format into its own file)`,
      );
  return first.promptFormat;
}

/**
 * The format `rift train` trains with: the rollouts' recorded one, when they have one; the prompt options then
 * may only repeat it (another format is an error: the model would be trained on prompts it did not sample after).
 * Without recorded rollouts (sft, or records from before formats were recorded): the options resolved for the model.
 */
export function trainingPromptSpec(
  recorded: PromptSpec | undefined,
  choice: PromptChoice,
  model: { dir?: string; tokenizer: Tokenizer },
  names: PromptChoiceNames & { rollouts?: string } = {},
): PromptSpec {
  if (recorded === undefined) return resolvePromptSpec(choice, model, names);
  if (!isExplicitChoice(choice)) return checkPromptSpec(recorded);
  const asked = resolvePromptSpec(choice, model, names);
  if (!samePromptSpec(asked, recorded))
    throw new RangeError(
      `${names.format ?? 'format'}: the rollouts${names.rollouts ? ` in ${names.rollouts}` : ''} were sampled with the prompt format ${promptSpecKey(recorded)}, ` +
        `these options give ${promptSpecKey(asked)}; leave the prompt options out to train on the rollouts' format`,
    );
  return recorded;
}
