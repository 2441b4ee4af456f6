// rift's public API, by layer: kernels → engine → training → data, rewards, rollouts, evaluation → profile and
// report → the loop (prompts, scoring, method wiring) → serving and remote rollouts. docs/design.md §6 maps them to files.

// ---- kernels: the fused loss, device tensors, bf16 -----------------------------------------------------------------
export {
  lossAndGrad,
  lossAndGradAsync,
  METHODS,
  NEGATIVE_FORMS,
  REDUCTIONS,
  checkDpoBeta,
  DPO_BETA_MAX,
} from './kernels/loss';
export type {
  LossOptions,
  LossResult,
  DpoOptions,
  Method,
  NegativeForm,
  Reduction,
  LogitsBuffer,
} from './kernels/loss';
export { backends, setNumThreads } from './kernels/info';
export type { BackendInfo } from './kernels/info';
export { cuda, DeviceTensor, DEVICE_DTYPES } from './kernels/device';
export type { DeviceDtype, DeviceInfo } from './kernels/device';
export { f32ToBf16, bf16ToF32 } from './kernels/bf16';

// ---- engine: checkpoints, the decoder Model, tokenizer, sampling ---------------------------------------------------
export {
  loadCheckpoint,
  saveCheckpoint,
  parseConfig,
  expectedTensors,
  modelSize,
  MAX_TENSORS,
} from './engine/checkpoint';
export type { DecoderConfig, TensorShape, LoadOptions, SaveOptions } from './engine/checkpoint';
export { SafetensorsFile, readSafetensors, writeSafetensors, parseHeader } from './engine/safetensors';
export type { SafetensorsHeader, SafetensorsEntry, HostTensor, TensorToWrite } from './engine/safetensors';
export { Model, KvCache, TOKENIZER_FILES, DEVICES, PRECISIONS } from './engine/model';
export type {
  Device,
  Precision,
  ModelOptions,
  InitOptions,
  ForwardOptions,
  ModelLossOptions,
  StepOptions,
  StepResult,
  MemoryReport,
  TensorEntry,
} from './engine/model';
export { Tokenizer, makeCharTokenizer } from './engine/tokenizer';
export type { ChatMessage, ChatTemplateOptions, CharTokenizerFiles, CharTokenizerOptions } from './engine/tokenizer';
export { generate, sampleToken, samplingProbs, Rng, sampleRng, SamplerScratch } from './engine/sampler';
export type {
  SamplerModel,
  SamplerTokenizer,
  SamplingParams,
  SampledToken,
  GenerateOptions,
  Sample,
  PromptSamples,
  FinishReason,
} from './engine/sampler';

// ---- training: the Trainer, schedules, examples, batch packing -----------------------------------------------------
export { lrAt, lrFactor, SCHEDULE_KINDS } from './train/schedule';
export type { ScheduleKind, ScheduleOptions } from './train/schedule';
export { Trainer } from './train/trainer';
export { DivergenceError } from './train/divergence';
export type { Divergence, DivergenceReason } from './train/divergence';
export type { TrainerOptions, StepMetrics, DpoReference, RunOptions, ResumeOptions } from './train/trainer';
export { Dist, DistError } from './distributed/comm';
export type { DistInitOptions, DistErrorKind } from './distributed/comm';
export { DataParallel, GradSync, paramsHash } from './distributed/data-parallel';
export type { DataParallelOptions } from './distributed/data-parallel';
export { launchInfo, selectCudaDevice } from './distributed/launch';
export type { LaunchInfo } from './distributed/launch';
export { shardUnits, shardRanges } from './distributed/shard';
export { selectExamples } from './train/examples';
export { TRAIN_METHODS } from './train/examples';
export type { Example, TrainMethod } from './train/examples';
export { packSamples, packPairs } from './train/pack';
export type { PackSamplesOptions, PackedBatches, SamplePair } from './train/pack';
export { globalNormalizer, IGNORE_INDEX } from './train/batching';
export type { BatchSample, MicroBatch } from './train/batching';

// ---- data, rewards, rollouts, evaluation ---------------------------------------------------------------------------
export { readJsonl, appendJsonl, writeJsonlAtomic, parseJsonl } from './data/jsonl';
export type { ReadJsonlOptions, ReadJsonlResult } from './data/jsonl';
export { acquireLock } from './data/lock';
export type { LockInfo } from './data/lock';
export { readProblems, writeProblems } from './data/problems';
export type { Problem } from './data/problems';
export { generateProblems, splitProblems } from './data/synthetic';
export { verify, extractAnswer, normalizeAnswer, isEquivalent } from './reward/verifier';
export { rewardFor, groupNormalize, loadRewardModule } from './reward/rewards';
export { runRollouts, rolloutStats } from './rollout/rollout';
export type {
  RolloutOptions,
  RolloutParams,
  RolloutResult,
  RolloutStats,
  RolloutProgress,
  ProblemLike,
  Scorer,
  ScoreResult,
} from './rollout/rollout';
export type { RolloutRecord } from './rollout/store';
export { passAtK, meanAtK, summarize } from './eval/metrics';
export { evaluate, evalTable } from './eval/evaluate';
export type { EvaluateOptions, EvalResult, EvalRow, ProblemEval } from './eval/evaluate';

// ---- memory profile and report -------------------------------------------------------------------------------------
export { measureMemory, predictMemory, profileMemory, QWEN25_MATH_1_5B, QWEN25_MATH_7B } from './profile/memory';
export type {
  ProfileMethod,
  PredictOptions,
  MeasureOptions,
  ProfileOptions,
  MemoryPrediction,
  MemoryMeasurement,
  MemoryProfile,
} from './profile/memory';
export { writeReport } from './report/report';
export { lossCurvePlot, accuracyPlot, memoryPlot, linePlot, intervalPlot } from './report/plots';

// ---- rift experiment: the declared small-scale reproduction (protocol, runs, report) and its statistics -----------
export { runExperiment } from './experiment/experiment';
export type { ExperimentOptions, ExperimentResult } from './experiment/experiment';
export { EXPERIMENT_SIZINGS, MAIN_METHODS, PARTS as EXPERIMENT_PARTS } from './experiment/protocol';
export type { ExperimentSize, ExperimentSizing, Part as ExperimentPart } from './experiment/protocol';
export { meanCI, pairedTTest, tQuantile, tCdf } from './experiment/stats';

// ---- the loop: prompt formats, scoring, rollout records → examples, method wiring ----------------------------------
export {
  packageRoot,
  defaultModelDir,
  PromptFormat,
  buildPrompts,
  promptHash,
  PAPER_INSTRUCTION,
  DEFAULT_CHAT_TEMPLATE,
  DEFAULT_PLAIN_TEMPLATE,
  DEFAULT_MAX_NEW_TOKENS,
  PROMPT_FORMAT_FILE,
  readPromptFormatFile,
  writePromptFormatFile,
  resolvePromptSpec,
  rolloutPromptSpec,
  trainingPromptSpec,
  PROMPT_FORMATS,
  checkPromptSpec,
  samePromptSpec,
  fillTemplate,
  makeScorer,
  exampleFromRecord,
  rolloutExamples,
  referenceExamples,
  trainMethod,
  memoryDelta,
  MEMORY_CATEGORIES,
} from './loop';
export type {
  PromptSpec,
  PromptChoice,
  PromptProblem,
  ScorerOptions,
  ExampleOptions,
  TrainMethodOptions,
} from './loop';

// ---- rift serve and rollouts from any OpenAI-compatible server -----------------------------------------------------
export { startServer, runGeneration, parseRequest, renderChat, EngineQueue, ApiError } from './serve';
export type {
  ServeOptions,
  RiftServer,
  ServerStats,
  ServeModel,
  GenerationRequest,
  GenerationResult,
  ChoiceResult,
  ChoiceDelta,
} from './serve';
export { runRemoteRollouts, requestSeed } from './rollout/remote';
export type {
  RemoteSampler,
  RemoteRequest,
  RemoteResponse,
  RemoteChoice,
  RemotePrompt,
  RemoteInfo,
  RemoteRolloutRecord,
  RemoteRolloutOptions,
} from './rollout/remote';
export { openAIClient, openAISampler, checkServedModel, baseUrlOf } from './rollout/remote-openai';
export type { OpenAIRemoteOptions, RemoteApi, RemoteCounters } from './rollout/remote-openai';
