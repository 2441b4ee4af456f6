// The declared protocol of `rift experiment` (lib/experiment/experiment.ts): sizes, methods, grids, budgets and
// ablations, fixed before any result is seen. Everything the report states about the protocol is read from here.
import type { TrainMethod } from '../train/examples';

export type ExperimentSize = 'full' | 'quick' | 'tiny';
export const EXPERIMENT_SIZES: readonly ExperimentSize[] = ['full', 'quick', 'tiny'];

export interface ExperimentSizing {
  trainProblems: number;
  valProblems: number;
  testProblems: number;
  oodProblems: number;
  /** Samples per problem for training data and for Mean@K / Pass@K (the paper's K = 8). */
  k: number;
  /** Other K of the K ablation (training data only; evaluation stays at k). */
  kAblation: number[];
  /** Sequences per optimizer update (DPO: half as many pairs: the same sequences per update). */
  sequencesPerUpdate: number;
  /** E of the epoch-matched budget: every method makes E passes over its own data. */
  epochs: number;
  /** Linear warm-up over this fraction of a run's updates (at least 1), then cosine to 0. */
  warmupFraction: number;
  /** Seeds of the chosen settings (data order and evaluation sampling). */
  seeds: number[];
  /** Seeds of the ablations (a prefix of seeds, so the main runs are their baseline). */
  ablationSeeds: number[];
  /** The seed of the learning-rate grid (not a test seed). */
  gridSeed: number;
  /** Learning rates tried for every method but DPO. */
  lrGrid: number[];
  dpoLrGrid: number[];
  dpoBetaGrid: number[];
  maxNewTokens: number;
  tokenBudget: number;
  /** Updates between two log-prob probes of the fixed positive/negative samples. */
  probeEvery: number;
  /** Probe samples of each sign. */
  probeSamples: number;
  /** Epochs of the collapse runs (naive vs RIFT-token, constant LR, validation accuracy after each epoch). */
  collapseEpochs: number;
}

export const EXPERIMENT_SIZINGS: Record<ExperimentSize, ExperimentSizing> = {
  full: {
    trainProblems: 256,
    valProblems: 128,
    testProblems: 256,
    oodProblems: 128,
    k: 8,
    kAblation: [4, 16],
    sequencesPerUpdate: 32,
    epochs: 1,
    warmupFraction: 0.1,
    seeds: [1, 2, 3, 4, 5],
    ablationSeeds: [1, 2, 3],
    gridSeed: 0,
    lrGrid: [1e-4, 3e-4, 1e-3],
    dpoLrGrid: [1e-5, 3e-5, 1e-4],
    dpoBetaGrid: [0.1, 0.5],
    maxNewTokens: 96,
    tokenBudget: 2048,
    probeEvery: 4,
    probeSamples: 64,
    collapseEpochs: 4,
  },
  quick: {
    trainProblems: 64,
    valProblems: 32,
    testProblems: 64,
    oodProblems: 32,
    k: 8,
    kAblation: [4, 16],
    sequencesPerUpdate: 32,
    epochs: 1,
    warmupFraction: 0.1,
    seeds: [1, 2],
    ablationSeeds: [1],
    gridSeed: 0,
    lrGrid: [3e-4, 1e-3],
    dpoLrGrid: [3e-5],
    dpoBetaGrid: [0.1, 0.5],
    maxNewTokens: 96,
    tokenBudget: 2048,
    probeEvery: 2,
    probeSamples: 32,
    collapseEpochs: 2,
  },
  tiny: {
    trainProblems: 6,
    valProblems: 2,
    testProblems: 3,
    oodProblems: 2,
    k: 4,
    kAblation: [2, 8],
    sequencesPerUpdate: 8,
    epochs: 1,
    warmupFraction: 0.1,
    seeds: [1, 2],
    ablationSeeds: [1],
    gridSeed: 0,
    lrGrid: [1e-3],
    dpoLrGrid: [1e-4],
    dpoBetaGrid: [0.1],
    maxNewTokens: 40,
    tokenBudget: 1024,
    probeEvery: 1,
    probeSamples: 2,
    collapseEpochs: 2,
  },
};

/** A method of the comparison: a name, its trainer options, and which learning-rate grid it is tuned on. */
export interface MethodSpec {
  name: string;
  method: TrainMethod;
  negative?: 'token' | 'sequence';
  grid: 'sample' | 'dpo';
}

export const MAIN_METHODS: readonly MethodSpec[] = [
  { name: 'SFT', method: 'sft', grid: 'sample' },
  { name: 'RFT', method: 'rft', grid: 'sample' },
  { name: 'DFT', method: 'dft', grid: 'sample' },
  { name: 'DPO', method: 'dpo', grid: 'dpo' },
  { name: 'naive', method: 'naive', grid: 'sample' },
  { name: 'RIFT-token', method: 'rift', negative: 'token', grid: 'sample' },
  { name: 'RIFT-sequence', method: 'rift', negative: 'sequence', grid: 'sample' },
];

/** How rewards are assigned: fixed asymmetric (+1 / rNeg) or normalised within each problem's K samples. */
export type RewardScheme = { kind: 'fixed'; rNeg: number } | { kind: 'group' };
export const MAIN_REWARD: RewardScheme = { kind: 'fixed', rNeg: -0.2 };

/** The data a run trains on: a problem set's rollouts, its first K samples per problem, a reward scheme. */
export interface DataSpec {
  set: 'main' | 'd1' | 'd2long';
  k: number;
  reward: RewardScheme;
}

export type Budget = { kind: 'epochs'; epochs: number } | { kind: 'updates'; updates: number };

/** One problem set: a synthetic difficulty (lib/data/synthetic.ts), its seed, optionally other step counts. */
export interface ProblemSetSpec {
  difficulty: number;
  seed: number;
  steps?: [number, number];
  label: string;
}
export type ProblemSetName = 'main' | 'ood' | 'd1' | 'd2long';

/** The problem sets of the tiny setting (all 'tiny' style, disjoint from the base model's SFT problems; see data.ts). */
export const PROBLEM_SETS: Record<ProblemSetName, ProblemSetSpec> = {
  main: { difficulty: 2, seed: 2026, label: 'difficulty 2 (2–4 steps, as the base model was trained on)' },
  ood: { difficulty: 2, seed: 2027, steps: [5, 5], label: '5 steps (never seen: training problems have 2–4)' },
  d1: { difficulty: 1, seed: 2028, label: 'difficulty 1 (2 steps, operands ≤ 9)' },
  d2long: { difficulty: 2, seed: 2029, steps: [4, 5], label: 'difficulty 2 with 4–5 steps (harder)' },
};

/**
 * The settings `rift experiment --setting` picks: a base model, the problems it was trained on (excluded from every
 * experiment set), the experiment's problem sets and its sizings. 'tiny': the embedded models/tiny-base on difficulty
 * 2; 'hard': models/hard-base (1.6M parameters, grown from tiny-base) on difficulty 4 (5–7 step problems whose wrong
 * answers share most of their tokens with right ones), where the methods have more room to differ.
 */
export type ExperimentSetting = 'tiny' | 'hard';
export const EXPERIMENT_SETTINGS: readonly ExperimentSetting[] = ['tiny', 'hard'];

export interface SettingSpec {
  label: string;
  /** The base model's folder under the package's models/. */
  model: string;
  /** The base model's SFT problems (scripts/make-base-model.js; a grown model: its source's too): never in an experiment set. */
  baseSft: { count: number; seed: number; difficulty: number }[];
  problemSets: Record<ProblemSetName, ProblemSetSpec>;
  sizings: Record<ExperimentSize, ExperimentSizing>;
}

/**
 * The hard setting's sizings: longer responses, fewer problems (each run costs several times a tiny-setting run on
 * this CPU), LR grids below the tiny model's (a larger model, longer sequences). The quick grid was {3e-5, 1e-4} at
 * first; every method but DPO chose 1e-4, its upper edge, on validation, so it is {1e-4, 3e-4}.
 */
const HARD_SIZINGS: Record<ExperimentSize, ExperimentSizing> = {
  full: {
    ...EXPERIMENT_SIZINGS.full,
    trainProblems: 192,
    valProblems: 96,
    testProblems: 192,
    oodProblems: 96,
    lrGrid: [3e-5, 1e-4, 3e-4],
    dpoLrGrid: [3e-6, 1e-5, 3e-5],
    maxNewTokens: 144,
    tokenBudget: 4096,
  },
  quick: {
    ...EXPERIMENT_SIZINGS.quick,
    trainProblems: 32,
    valProblems: 16,
    testProblems: 32,
    oodProblems: 16,
    kAblation: [4],
    sequencesPerUpdate: 16,
    lrGrid: [1e-4, 3e-4],
    dpoLrGrid: [1e-5],
    dpoBetaGrid: [0.1],
    maxNewTokens: 144,
    tokenBudget: 4096,
    probeSamples: 16,
    collapseEpochs: 2,
  },
  tiny: { ...EXPERIMENT_SIZINGS.tiny, lrGrid: [1e-4], dpoLrGrid: [1e-5], maxNewTokens: 144, tokenBudget: 2048 },
};

export const SETTINGS: Record<ExperimentSetting, SettingSpec> = {
  tiny: {
    label: 'tiny: models/tiny-base (0.8M parameters) on difficulty 2 (2–4 step problems)',
    model: 'tiny-base',
    baseSft: [{ count: 20000, seed: 1, difficulty: 2 }],
    problemSets: PROBLEM_SETS,
    sizings: EXPERIMENT_SIZINGS,
  },
  hard: {
    label:
      'hard: models/hard-base (1.6M parameters, grown from tiny-base) on difficulty 4 (5–7 step problems, long worked solutions)',
    model: 'hard-base',
    baseSft: [
      { count: 20000, seed: 1, difficulty: 2 },
      { count: 20000, seed: 1, difficulty: 4 },
    ],
    problemSets: {
      main: { difficulty: 4, seed: 3026, label: 'difficulty 4 (5–7 steps, as the base model was trained on)' },
      ood: { difficulty: 4, seed: 3027, steps: [8, 8], label: '8 steps (never seen: training problems have 5–7)' },
      d1: { difficulty: 4, seed: 3028, steps: [4, 5], label: 'difficulty 4 with 4–5 steps (shorter than training)' },
      d2long: { difficulty: 4, seed: 3029, steps: [7, 8], label: 'difficulty 4 with 7–8 steps (longer)' },
    },
    sizings: HARD_SIZINGS,
  },
};

/** A setting by name (RangeError naming `setting` otherwise). */
export function settingSpec(setting: unknown): SettingSpec {
  if (typeof setting !== 'string' || !EXPERIMENT_SETTINGS.includes(setting as ExperimentSetting))
    throw new RangeError(`setting: must be one of ${EXPERIMENT_SETTINGS.join(', ')}, got ${JSON.stringify(setting)}`);
  return SETTINGS[setting as ExperimentSetting];
}

export const PARTS = ['grid', 'main', 'updates', 'ablations', 'difficulty', 'collapse', 'memory'] as const;
export type Part = (typeof PARTS)[number];
