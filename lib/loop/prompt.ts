// Prompt building of the loop. The embedded base model's format (lib/demo/base-model.ts): prompt = problem text
// + "\n", response = the worked solution + eos.
import { promptFor as basePromptFor, responseFor as baseResponseFor } from '../demo/base-model';

export const promptFor = basePromptFor;
export const responseFor = baseResponseFor;

/** Default --max-new-tokens of the CLI's rollout and eval. */
export const DEFAULT_MAX_NEW_TOKENS = 96;
