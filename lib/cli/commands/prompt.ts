// The prompt options of rollout, train and eval: --prompt-format chat|plain|auto, --system, --prompt-template
// (lib/loop/prompt-choice.ts resolves them against the model directory; its errors name these options).
import { Command, Option } from 'commander';
import { PROMPT_FORMAT_FILE, type PromptChoice, type PromptChoiceNames } from '../../loop/prompt-choice';

export interface PromptFlags {
  promptFormat: 'chat' | 'plain' | 'auto';
  system?: string;
  promptTemplate?: string;
}

export const PROMPT_OPTION_NAMES: PromptChoiceNames = {
  format: '--prompt-format',
  system: '--system',
  template: '--prompt-template',
};

export function promptOptions(cmd: Command, what = 'the prompts'): Command {
  return cmd
    .addOption(
      new Option(
        '--prompt-format <kind>',
        `how ${what} are built: chat (the model's chat template), plain (--prompt-template), ` +
          `auto (the model's ${PROMPT_FORMAT_FILE}, else chat when it has a template, else plain)`,
      )
        .choices(['chat', 'plain', 'auto'])
        .default('auto'),
    )
    .option('--system <text>', 'chat: a system message before the problem')
    .option(
      '--prompt-template <text>',
      'the user message (chat) or the whole prompt (plain), with {problem}; ' +
        'default: the problem, a newline and "Please reason step by step, and put your final answer within \\boxed{}."',
    );
}

export function promptChoice(f: PromptFlags): PromptChoice {
  return { format: f.promptFormat, system: f.system, template: f.promptTemplate };
}
