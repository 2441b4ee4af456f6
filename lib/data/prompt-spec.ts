// A prompt format as data: what rollout records, model directories (prompt_format.json) and run summaries store,
// so that train and eval rebuild exactly the prompt a rollout sampled after. lib/loop/prompt.ts turns a spec and a
// tokenizer into prompt text and token ids.
//
//   {"format": "chat", "template": "{problem}\n…", "system": "…"}   the model's chat template over [system?, user];
//                                                                 the user message is `template` filled in
//   {"format": "plain", "template": "{problem}\n"}                  `template` filled in is the whole prompt
//
// A template holds the placeholder {problem} at least once; every occurrence is replaced by the problem text and
// nothing else in it is special (braces such as \boxed{} stay as they are).
import { createHash } from 'crypto';

export const PROMPT_FORMATS = ['chat', 'plain'] as const;
export type PromptFormatKind = (typeof PROMPT_FORMATS)[number];

export const PROBLEM_PLACEHOLDER = '{problem}';

export interface ChatPromptSpec {
  format: 'chat';
  /** The user message, with {problem}. */
  template: string;
  /** A system message before it (none when absent). */
  system?: string;
}

export interface PlainPromptSpec {
  format: 'plain';
  /** The whole prompt, with {problem}. */
  template: string;
}

export type PromptSpec = ChatPromptSpec | PlainPromptSpec;

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** A template's own check: a string holding {problem}; errors name `where`. */
export function checkTemplate(template: unknown, where: string): string {
  if (typeof template !== 'string')
    throw new TypeError(
      `${where}: must be a string with ${PROBLEM_PLACEHOLDER}, got ${template === null ? 'null' : typeof template}`,
    );
  if (!template.includes(PROBLEM_PLACEHOLDER))
    throw new RangeError(
      `${where}: ${JSON.stringify(template).slice(0, 120)} has no ${PROBLEM_PLACEHOLDER} placeholder`,
    );
  return template;
}

/** Returns `v` as a PromptSpec (only its known fields), or throws a TypeError/RangeError naming `where` and the field. */
export function checkPromptSpec(v: unknown, where = 'prompt format'): PromptSpec {
  if (!isObj(v)) throw new TypeError(`${where}: must be an object {format, template, system?}`);
  if (!(PROMPT_FORMATS as readonly unknown[]).includes(v.format))
    throw new RangeError(
      `${where}: format must be one of ${PROMPT_FORMATS.join(', ')}, got ${JSON.stringify(v.format)?.slice(0, 80)}`,
    );
  const template = checkTemplate(v.template, `${where}: template`);
  if (v.format === 'plain') {
    if (v.system !== undefined) throw new RangeError(`${where}: system is only for the chat format`);
    return { format: 'plain', template };
  }
  if (v.system !== undefined && typeof v.system !== 'string')
    throw new TypeError(`${where}: system must be a string when present`);
  return v.system === undefined ? { format: 'chat', template } : { format: 'chat', template, system: v.system };
}

/** The spec as canonical JSON (fixed key order): equal specs give equal strings. */
export function promptSpecKey(s: PromptSpec | undefined): string {
  if (s === undefined) return 'none';
  return JSON.stringify(
    s.format === 'chat'
      ? { format: s.format, system: s.system, template: s.template }
      : { format: s.format, template: s.template },
  );
}

export function samePromptSpec(a: PromptSpec | undefined, b: PromptSpec | undefined): boolean {
  return promptSpecKey(a) === promptSpecKey(b);
}

/** `template` with every {problem} replaced by `problem` (no other substitution: `$&` and braces stay literal). */
export function fillTemplate(template: string, problem: string): string {
  return template.split(PROBLEM_PLACEHOLDER).join(problem);
}

/** The prompt-identity hash of token ids: SHA-256 of the ids as little-endian int32, first 16 hex digits. */
export function promptHash(ids: Int32Array): string {
  const le = Buffer.alloc(ids.length * 4);
  for (let i = 0; i < ids.length; i++) le.writeInt32LE(ids[i], i * 4);
  return createHash('sha256').update(le).digest('hex').slice(0, 16);
}
