// Prompt formats: how a problem becomes the prompt a model samples after. One PromptFormat serves rollout, train
// and eval, and anything else that must give the model the same prompt (a server endpoint, a remote rollout):
// build the text with text(), the token ids with ids(), the chat messages with messages().
//
//   chat   the model's chat template (tokenizer_config.json chat_template or chat_template.jinja, rendered by
//          @huggingface/jinja) over [system?, user] with add_generation_prompt; the user message is the spec's
//          template filled in (default: the problem, a newline and the paper's instruction). ids() encodes the
//          rendered text without the post-processor's special tokens (the template writes its own), as
//          transformers' apply_chat_template(tokenize=True) does.
//   plain  the spec's template filled in; ids() encodes it with the post-processor (e.g. a Llama BOS), as
//          transformers' tokenizer(text) does.
//
// Prompt identity: promptHash(ids) (lib/data/prompt-spec.ts: SHA-256 of the ids as little-endian int32, 16 hex
// digits) is stored in each rollout record, so training can prove it trains on exactly the prompt tokens the sample was drawn after.
import type { ChatMessage, Tokenizer } from '../engine/tokenizer';
import { checkPromptSpec, fillTemplate, type PromptSpec } from '../data/prompt-spec';

export { promptHash } from '../data/prompt-spec';

/** The instruction of the paper's prompts (the default end of the user message / plain prompt). */
export const PAPER_INSTRUCTION = 'Please reason step by step, and put your final answer within \\boxed{}.';
/** Default user message of the chat format. */
export const DEFAULT_CHAT_TEMPLATE = `{problem}\n${PAPER_INSTRUCTION}`;
/** Default template of the plain format (for models that record none). */
export const DEFAULT_PLAIN_TEMPLATE = `{problem}\n${PAPER_INSTRUCTION}\n`;
/** Default --max-new-tokens of the CLI's rollout and eval. */
export const DEFAULT_MAX_NEW_TOKENS = 96;

/** What a prompt is made of: the problem text (lib/data/problems.ts's Problem is one). */
export interface PromptProblem {
  id: string;
  problem: string;
}

export class PromptFormat {
  readonly spec: PromptSpec;

  /**
   * A format over `tokenizer`. The chat format needs the tokenizer's chat template: without one it is an Error
   * naming the tokenizer's directory.
   */
  constructor(
    spec: PromptSpec,
    readonly tokenizer: Tokenizer,
  ) {
    this.spec = checkPromptSpec(spec);
    if (this.spec.format === 'chat' && tokenizer.chatTemplate === undefined)
      throw new Error(
        `prompt format chat: ${tokenizer.source.replace(/[\\/]tokenizer\.json$/, '')} has no chat template ` +
          `(no chat_template in tokenizer_config.json, no chat_template.jinja); use the plain format`,
      );
  }

  /** Whether ids() runs the tokenizer's post-processor (plain: yes; chat: no, the template writes special tokens). */
  get addSpecialTokens(): boolean {
    return this.spec.format === 'plain';
  }

  /** The chat messages of a problem ([system?, user]); for the chat format only. */
  messages(p: PromptProblem): ChatMessage[] {
    if (this.spec.format !== 'chat')
      throw new TypeError('messages: the plain format has no chat messages (use text())');
    const user = { role: 'user', content: fillTemplate(this.spec.template, p.problem) };
    return this.spec.system === undefined ? [user] : [{ role: 'system', content: this.spec.system }, user];
  }

  /** The prompt text of a problem; a chat template that fails to render is an Error naming it and the problem. */
  text(p: PromptProblem): string {
    if (this.spec.format === 'plain') return fillTemplate(this.spec.template, p.problem);
    try {
      return this.tokenizer.applyChatTemplate(this.messages(p), { addGenerationPrompt: true });
    } catch (e) {
      throw Object.assign(new Error(`problem ${JSON.stringify(p.id)}: ${(e as Error).message}`), { cause: e });
    }
  }

  /** The prompt's token ids (what the model samples after, and what training puts before the response). */
  ids(p: PromptProblem): Int32Array {
    return this.tokenizer.encode(this.text(p), { addSpecialTokens: this.addSpecialTokens });
  }
}

export interface BuildPromptsOptions {
  /** Tokens generated after each prompt (checked against contextLength with the prompt). */
  maxNewTokens?: number;
  /** The model's context (max_position_embeddings). */
  contextLength?: number;
  /** Names of the options in errors (default 'problems' and 'maxNewTokens'). */
  names?: { problems?: string; maxNewTokens?: string };
}

/**
 * The prompt ids of every problem, built before anything is sampled or written: a template that fails to render
 * or a prompt that leaves no room for `maxNewTokens` in the context is an error naming the problem.
 */
export function buildPrompts(
  format: PromptFormat,
  problems: readonly PromptProblem[],
  o: BuildPromptsOptions = {},
): Map<string, Int32Array> {
  const names = { problems: 'problems', maxNewTokens: 'maxNewTokens', ...o.names };
  const out = new Map<string, Int32Array>();
  for (const p of problems) {
    const ids = format.ids(p);
    const at = `${names.problems}: problem ${JSON.stringify(p.id)}`;
    if (ids.length === 0) throw new RangeError(`${at}: its prompt has no tokens`);
    const ctx = o.contextLength;
    if (ctx !== undefined && ids.length + (o.maxNewTokens ?? 0) > ctx)
      throw new RangeError(
        `${at}: its prompt is ${ids.length} tokens` +
          (o.maxNewTokens ? `; with ${names.maxNewTokens} ${o.maxNewTokens} it` : '; it') +
          ` exceeds the model's context of ${ctx} positions (max_position_embeddings)`,
      );
    out.set(p.id, ids);
  }
  return out;
}
