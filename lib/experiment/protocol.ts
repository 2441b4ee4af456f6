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
    trainProblems: 256, valProblems: 128, testProblems: 256, oodProblems: 128, k: 8, kAblation: [4, 16], sequencesPerUpdate: 32,
    epochs: 1, warmupFraction: 0.1, seeds: [1, 2, 3, 4, 5], ablationSeeds: [1, 2, 3], gridSeed: 0,
    lrGrid: [1e-4, 3e-4, 1e-3], dpoLrGrid: [1e-5, 3e-5, 1e-4], dpoBetaGrid: [0.1, 0.5],
    maxNewTokens: 96, tokenBudget: 2048, probeEvery: 4, probeSamples: 64, collapseEpochs: 4,
  },
  quick: {
    trainProblems: 64, valProblems: 32, testProblems: 64, oodProblems: 32, k: 8, kAblation: [4, 16], sequencesPerUpdate: 32,
    epochs: 1, warmupFraction: 0.1, seeds: [1, 2], ablationSeeds: [1], gridSeed: 0,
    lrGrid: [3e-4, 1e-3], dpoLrGrid: [3e-5], dpoBetaGrid: [0.1, 0.5],
    maxNewTokens: 96, tokenBudget: 2048, probeEvery: 2, probeSamples: 32, collapseEpochs: 2,
  },
  tiny: {
    trainProblems: 6, valProblems: 2, testProblems: 3, oodProblems: 2, k: 4, kAblation: [2, 8], sequencesPerUpdate: 8,
    epochs: 1, warmupFraction: 0.1, seeds: [1, 2], ablationSeeds: [1], gridSeed: 0,
    lrGrid: [1e-3], dpoLrGrid: [1e-4], dpoBetaGrid: [0.1],
    maxNewTokens: 40, tokenBudget: 1024, probeEvery: 1, probeSamples: 2, collapseEpochs: 2,
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

/** The problem sets (all 'tiny' style, disjoint from the base model's SFT problems; see data.ts). */
export const PROBLEM_SETS = {
  main: { difficulty: 2, seed: 2026, label: 'difficulty 2 (2–4 steps, as the base model was trained on)' },
  ood: { difficulty: 2, seed: 2027, steps: [5, 5] as [number, number], label: '5 steps (never seen: training problems have 2–4)' },
  d1: { difficulty: 1, seed: 2028, label: 'difficulty 1 (2 steps, operands ≤ 9)' },
  d2long: { difficulty: 2, seed: 2029, steps: [4, 5] as [number, number], label: 'difficulty 2 with 4–5 steps (harder)' },
} as const;

export const PARTS = ['grid', 'main', 'updates', 'ablations', 'difficulty', 'collapse', 'memory'] as const;
export type Part = (typeof PARTS)[number];
