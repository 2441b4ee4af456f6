// The experiment's data: problem sets disjoint from the base model's SFT problems, one rollout file per training set
// (K_max samples per problem; smaller K take each problem's first K samples), and the training examples of a
// DataSpec (its K, its reward scheme).
//
//   main    train / val / test from one stream (difficulty 2, seed 2026), split in that order
//   ood     5-step problems (difficulty-2 operands): a length the training problems never have (test only)
//   d1, d2long  the difficulty ablation: their own train and test splits
// Every problem text the base model saw in its SFT data (scripts/make-base-model.js: 20000 problems, seed 1,
// difficulty 2) is dropped before splitting, and the splits are disjoint by problem text.
// Those are the tiny setting's sets; the hard setting (protocol.ts SETTINGS.hard) has its own, on difficulty 4, and
// drops its own base model's SFT problems.
import * as fs from 'fs';
import * as path from 'path';
import { generateProblems } from '../data/synthetic';
import type { Problem } from '../data/problems';
import type { Model } from '../engine/model';
import type { Tokenizer } from '../engine/tokenizer';
import { buildPrompts, makeScorer, PromptFormat, rolloutExamples, referenceExamples } from '../loop';
import { groupNormalize } from '../reward/rewards';
import { rolloutStats, runRollouts, type RolloutStats } from '../rollout/rollout';
import type { RolloutRecord } from '../rollout/store';
import type { Example } from '../train/examples';
import {
  SETTINGS,
  type DataSpec,
  type ExperimentSetting,
  type ExperimentSizing,
  type ProblemSetName,
  type RewardScheme,
  type SettingSpec,
} from './protocol';

export interface ProblemSplits {
  train: Problem[];
  val: Problem[];
  test: Problem[];
  ood: Problem[];
  d1Train: Problem[];
  d1Test: Problem[];
  d2longTrain: Problem[];
  d2longTest: Problem[];
}

const baseSft = new Map<string, Set<string>>();
/** The problem texts of a setting's base model SFT run (all generated, held-out ones included). */
function baseSftTexts(setting: SettingSpec): Set<string> {
  const key = JSON.stringify(setting.baseSft);
  let s = baseSft.get(key);
  if (!s)
    baseSft.set(
      key,
      (s = new Set(setting.baseSft.flatMap((b) => generateProblems({ ...b, style: 'tiny' }).map((p) => p.problem)))),
    );
  return s;
}

function fresh(setting: SettingSpec, set: ProblemSetName, count: number, taken: Set<string>): Problem[] {
  const spec = setting.problemSets[set];
  const out: Problem[] = [];
  // generate in growing batches until enough texts are new (a prefix of a longer run is the shorter run)
  for (let n = Math.ceil(count * 1.5) + 16; out.length < count; n *= 2) {
    out.length = 0;
    const all = generateProblems({
      count: n,
      seed: spec.seed,
      style: 'tiny',
      difficulty: spec.difficulty,
      idPrefix: `exp-${set}`,
      ...(spec.steps ? { steps: spec.steps } : {}),
    });
    for (const p of all) if (!taken.has(p.problem) && out.length < count) out.push(p);
    if (n > 1_000_000) throw new RangeError(`size: cannot find ${count} new '${set}' problems`);
  }
  for (const p of out) taken.add(p.problem);
  return out;
}

/** The experiment's problem sets for a sizing and a setting (default 'tiny'; deterministic). */
export function experimentProblems(s: ExperimentSizing, settingName: ExperimentSetting = 'tiny'): ProblemSplits {
  const setting = SETTINGS[settingName];
  const taken = new Set(baseSftTexts(setting));
  const main = fresh(setting, 'main', s.trainProblems + s.valProblems + s.testProblems, taken);
  const d1 = fresh(setting, 'd1', s.trainProblems + s.testProblems, taken);
  const long = fresh(setting, 'd2long', s.trainProblems + s.testProblems, taken);
  return {
    train: main.slice(0, s.trainProblems),
    val: main.slice(s.trainProblems, s.trainProblems + s.valProblems),
    test: main.slice(s.trainProblems + s.valProblems),
    ood: fresh(setting, 'ood', s.oodProblems, taken),
    d1Train: d1.slice(0, s.trainProblems),
    d1Test: d1.slice(s.trainProblems),
    d2longTrain: long.slice(0, s.trainProblems),
    d2longTest: long.slice(s.trainProblems),
  };
}

/** Rewards of one problem's samples under a scheme (+1 correct; rNeg wrong; or group-normalised +1/−0.2). */
export function schemeRewards(correct: readonly boolean[], scheme: RewardScheme): number[] {
  if (scheme.kind === 'fixed') return correct.map((c) => (c ? 1 : scheme.rNeg));
  return groupNormalize([correct.map((c) => (c ? 1 : -0.2))])[0];
}

/** The rollout records of one training set, K per problem (a resumable JSONL under dir). */
export interface RolloutSet {
  name: DataSpec['set'];
  problems: Problem[];
  records: RolloutRecord[];
  k: number;
  seconds: number;
}

export interface DataContext {
  model: Model;
  tokenizer: Tokenizer;
  format: PromptFormat;
  maxNewTokens: number;
  dir: string;
}

/** Samples K answers per problem with the base model (temperature 1), scored with +1 / −0.2; resumes the file. */
export async function makeRollouts(
  ctx: DataContext,
  name: DataSpec['set'],
  problems: Problem[],
  k: number,
): Promise<RolloutSet> {
  const file = path.join(ctx.dir, `rollouts-${name}.jsonl`);
  fs.mkdirSync(ctx.dir, { recursive: true });
  const prompts = buildPrompts(ctx.format, problems);
  const t0 = Date.now();
  const r = await runRollouts({
    model: ctx.model,
    tokenizer: ctx.tokenizer,
    problems,
    k,
    file,
    score: makeScorer({ rPos: 1, rNeg: -0.2 }),
    promptFor: (p) => prompts.get(p.id)!,
    promptFormat: ctx.format.spec,
    params: { temperature: 1, maxNewTokens: ctx.maxNewTokens, seed: 0 },
  });
  return { name, problems, records: r.records, k, seconds: (Date.now() - t0) / 1000 };
}

/** Rollout statistics of the first k samples of each problem (mixed share = problems with right and wrong answers). */
export function statsAtK(set: RolloutSet, k: number): RolloutStats {
  return rolloutStats(set.records.filter((r) => r.sampleIndex < k));
}

/** Training examples of a DataSpec: the set's first K samples per problem, rewards by the spec's scheme. */
export function examplesFor(set: RolloutSet, spec: DataSpec, format: PromptFormat): Example[] {
  if (spec.k > set.k)
    throw new RangeError(`k: ${spec.k} exceeds the ${set.k} samples per problem of rollouts '${set.name}'`);
  const byProblem = new Map<string, RolloutRecord[]>();
  for (const r of set.records) {
    if (r.sampleIndex >= spec.k) continue;
    const g = byProblem.get(r.problemId);
    if (g) g.push(r);
    else byProblem.set(r.problemId, [r]);
  }
  const rescored: RolloutRecord[] = [];
  for (const g of byProblem.values()) {
    g.sort((a, b) => a.sampleIndex - b.sampleIndex);
    const rewards = schemeRewards(
      g.map((r) => r.correct),
      spec.reward,
    );
    g.forEach((r, i) => rescored.push({ ...r, reward: rewards[i] }));
  }
  return rolloutExamples(rescored, set.problems, format).examples;
}

/** The reference solutions of a set's problems as SFT examples. */
export function referenceFor(set: RolloutSet, format: PromptFormat): Example[] {
  return referenceExamples(set.problems, format);
}
