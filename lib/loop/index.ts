// The RIFT loop as a library layer: what `rift rollout/train/eval` and the demo share (no terminal I/O here).
//
//   paths.ts          packageRoot, defaultModelDir (the embedded base model)
//   prompt.ts         PromptFormat: a problem → chat-templated or plain prompt text / token ids; buildPrompts
//   prompt-choice.ts  which format a run uses: the model's prompt_format.json, the user's choice, the rollouts'
//   scorer.ts         makeScorer: verify(text, answer) → {reward: rPos | rNeg (or a user module's value), correct, extracted}
//   examples.ts       rollout records / reference solutions → training Examples (prompt tokens checked)
//   train.ts          trainMethod (a Trainer run with an exact step budget), memoryDelta
export { packageRoot, defaultModelDir } from './paths';
export {
  PromptFormat,
  buildPrompts,
  promptHash,
  PAPER_INSTRUCTION,
  DEFAULT_CHAT_TEMPLATE,
  DEFAULT_PLAIN_TEMPLATE,
  DEFAULT_MAX_NEW_TOKENS,
} from './prompt';
export type { PromptProblem, BuildPromptsOptions } from './prompt';
export {
  PROMPT_FORMAT_FILE,
  readPromptFormatFile,
  writePromptFormatFile,
  resolvePromptSpec,
  rolloutPromptSpec,
  trainingPromptSpec,
  isExplicitChoice,
} from './prompt-choice';
export type { PromptChoice, PromptChoiceNames } from './prompt-choice';
export { PROMPT_FORMATS, checkPromptSpec, samePromptSpec, promptSpecKey, fillTemplate } from '../data/prompt-spec';
export type { PromptSpec, ChatPromptSpec, PlainPromptSpec, PromptFormatKind } from '../data/prompt-spec';
export { makeScorer } from './scorer';
export type { ScorerOptions } from './scorer';
export { exampleFromRecord, rolloutExamples, referenceExamples } from './examples';
export type { ExampleOptions } from './examples';
export { trainMethod, memoryDelta, MEMORY_CATEGORIES } from './train';
export type { TrainMethodOptions } from './train';
