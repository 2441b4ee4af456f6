// The RIFT loop as a library layer: what `rift rollout/train/eval` and the demo share (no terminal I/O here).
//
//   paths.ts     packageRoot, defaultModelDir (the embedded base model)
//   prompt.ts    prompt building
//   scorer.ts    makeScorer: verify(text, answer) → {reward: rPos | rNeg (or a user module's value), correct, extracted}
//   examples.ts  rollout records / reference solutions → training Examples
//   train.ts     trainMethod (a Trainer run with an exact step budget), memoryDelta
export { packageRoot, defaultModelDir } from './paths';
export { promptFor, responseFor, DEFAULT_MAX_NEW_TOKENS } from './prompt';
export { makeScorer } from './scorer';
export type { ScorerOptions } from './scorer';
export { exampleFromRecord, rolloutExamples, referenceExamples } from './examples';
export { trainMethod, memoryDelta, MEMORY_CATEGORIES } from './train';
export type { TrainMethodOptions } from './train';
