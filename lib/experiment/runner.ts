// One run of the experiment: a fresh copy of the base model trained with one method and learning rate on one
// DataSpec under one budget and seed, then evaluated (Mean@K, Pass@K per evaluation set). Finished runs are appended
// to OUT/runs.jsonl keyed by their spec, so an interrupted experiment resumes where it stopped and a rerun with the
// same protocol reuses them.
//
// During training it records the loss per update and, every probeEvery updates, the mean token log-prob of a fixed
// set of positive and negative training samples (the collapse of the naive loss shows there first). A run that
// diverges (DivergenceError) is recorded as such and evaluated with the weights of its last good update.
import { createHash } from 'crypto';
import * as fs from 'fs';
import type { Problem } from '../data/problems';
import { appendJsonl, readJsonl, repairJsonlTail } from '../data/jsonl';
import { Model } from '../engine/model';
import type { Tokenizer } from '../engine/tokenizer';
import { evaluate } from '../eval/evaluate';
import { buildPrompts, makeScorer, type PromptFormat } from '../loop';
import { collectGarbage } from '../profile/memory';
import { buildMicroBatch } from '../train/batching';
import { DivergenceError, type Divergence } from '../train/divergence';
import { selectExamples, type Example } from '../train/examples';
import { Trainer } from '../train/trainer';
import type { Budget, DataSpec, ExperimentSizing, MethodSpec } from './protocol';

export interface RunSpec {
  /** Which part of the protocol asked for it ('grid', 'main', …) and a variant label ('K=4', 'rNeg=-0.5', …). */
  part: string;
  variant: string;
  method: MethodSpec;
  lr: number;
  dpoBeta?: number;
  reduction: 'token-mean' | 'sequence-mean';
  seed: number;
  data: DataSpec;
  budget: Budget;
  schedule: 'cosine' | 'constant';
  /** Evaluation sets (names of EvalContext.sets), after training. */
  evals: string[];
  /** Evaluate these sets also after every epoch (collapse runs). */
  evalEachEpoch?: string[];
}

export interface EvalSummary {
  meanAtK: number;
  passAtK: Record<string, number>;
  /** Correct samples per problem, in the set's order. */
  c: number[];
}

export interface RunRecord {
  key: string;
  /** The protocol (sizing + base model) the run belongs to; set by the experiment. */
  protocol?: string;
  spec: RunSpec;
  updates: number;
  plannedUpdates: number;
  epochs: number;
  trainExamples: number;
  /** Per update: loss, LR, gradient norm. */
  steps: { step: number; loss: number; lr: number; gradNorm: number }[];
  /** Mean token log-prob of the probe positives / negatives after `step` updates (0: before training). */
  probes: { step: number; positive: number; negative: number }[];
  evals: Record<string, EvalSummary>;
  /** evalEachEpoch: after each epoch. */
  epochEvals: { epoch: number; step: number; set: string; meanAtK: number; passAtK: Record<string, number> }[];
  diverged?: Divergence;
  /** Why the run did not train (no data for the method, e.g. no DPO pairs); it then has no evaluations. */
  skipped?: string;
  trainSeconds: number;
  evalSeconds: number;
  memoryPeak: number;
}

/** A stable key of a run spec (sha256 of its canonical JSON). */
export function runKey(spec: RunSpec): string {
  const canon = (v: unknown): unknown =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(
          Object.keys(v)
            .sort()
            .filter((k) => (v as Record<string, unknown>)[k] !== undefined)
            .map((k) => [k, canon((v as Record<string, unknown>)[k])]),
        )
      : Array.isArray(v)
        ? v.map(canon)
        : v;
  return createHash('sha256')
    .update(JSON.stringify(canon(spec)))
    .digest('hex')
    .slice(0, 20);
}

export interface EvalContext {
  tokenizer: Tokenizer;
  format: PromptFormat;
  k: number;
  maxNewTokens: number;
  sets: Record<string, Problem[]>;
}

/** Evaluates a model on one set: K samples per problem at temperature 1, the sampling seed a function of `seed`. */
export async function evalSet(model: Model, ctx: EvalContext, set: string, seed: number): Promise<EvalSummary> {
  const problems = ctx.sets[set];
  if (!problems) throw new RangeError(`evals: no evaluation set '${set}'`);
  const prompts = buildPrompts(ctx.format, problems);
  const r = await evaluate({
    model,
    tokenizer: ctx.tokenizer,
    problems,
    k: ctx.k,
    params: { temperature: 1, maxNewTokens: ctx.maxNewTokens, seed: 1000 + seed },
    score: makeScorer({ rPos: 1, rNeg: -0.2 }),
    promptFor: (p) => prompts.get(p.id)!,
    ks: [1, ctx.k],
  });
  return { meanAtK: r.meanAtK, passAtK: r.passAtK, c: r.perProblem.map((p) => p.c) };
}

export interface RunContext {
  baseDir: string;
  sizing: ExperimentSizing;
  evalCtx: EvalContext;
  /** Training examples of a DataSpec, and the reference solutions of its problems (SFT). */
  examples: (d: DataSpec) => { examples: Example[]; refs: Example[] };
  /** Fixed probe samples (positives, negatives) of the main training set. */
  probes: { positive: Example[]; negative: Example[] };
  padId: number;
}

function meanLogp(model: Model, ex: Example[]): number {
  if (!ex.length) return NaN;
  const mb = buildMicroBatch(ex.map((e) => [e]));
  const r = model.lossAndBackward({
    ids: mb.ids,
    B: mb.B,
    T: mb.T,
    targets: mb.targets,
    offsets: mb.offsets,
    method: 'logprob',
    backward: false,
  });
  return r.seqLogprobs.reduce((a, b) => a + b, 0) / mb.tokens;
}

/** Updates per epoch of a method on its data (DPO: pairs), with the protocol's sequences per update. */
export function unitsPerUpdate(sizing: ExperimentSizing, method: MethodSpec): number {
  return method.method === 'dpo' ? Math.max(1, Math.floor(sizing.sequencesPerUpdate / 2)) : sizing.sequencesPerUpdate;
}

export function updatesPerEpoch(
  sizing: ExperimentSizing,
  method: MethodSpec,
  examples: readonly Example[],
  refs: readonly Example[],
): number {
  const sel = selectExamples(method.method, examples, { refSolutions: refs });
  const units = sel.pairs ? sel.pairs.length : sel.examples.length;
  return units === 0 ? 0 : Math.ceil(units / unitsPerUpdate(sizing, method));
}

/** Trains and evaluates one run (no caching here; see RunStore). */
export async function executeRun(spec: RunSpec, ctx: RunContext, key: string): Promise<RunRecord> {
  if (spec.budget.kind === 'updates' && spec.budget.updates === 0) return evaluateBase(spec, ctx, key);
  const { examples, refs } = ctx.examples(spec.data);
  const perEpoch = updatesPerEpoch(ctx.sizing, spec.method, examples, refs);
  if (perEpoch === 0) {
    const stats = selectExamples(spec.method.method, examples, { refSolutions: refs }).stats;
    return {
      ...emptyRecord(key, spec),
      skipped: `no training data for ${spec.method.name} (${JSON.stringify(stats)})`,
    };
  }
  const epochs = spec.budget.kind === 'epochs' ? spec.budget.epochs : Math.ceil(spec.budget.updates / perEpoch);
  const planned = spec.budget.kind === 'epochs' ? epochs * perEpoch : spec.budget.updates;
  const warmupSteps = Math.max(1, Math.round(ctx.sizing.warmupFraction * planned));
  collectGarbage();
  const model = Model.load(ctx.baseDir);
  Model.resetPeaks();
  const rec: RunRecord = { ...emptyRecord(key, spec), plannedUpdates: planned, epochs: planned / perEpoch };
  const probe = (step: number) =>
    rec.probes.push({
      step,
      positive: meanLogp(model, ctx.probes.positive),
      negative: meanLogp(model, ctx.probes.negative),
    });
  probe(0);
  let evalMs = 0;
  const t0 = Date.now();
  const trainer = new Trainer(model, {
    method: spec.method.method,
    negative: spec.method.negative,
    reduction: spec.reduction,
    lr: spec.lr,
    schedule: spec.schedule,
    warmupSteps,
    weightDecay: 0.01,
    maxGradNorm: 1,
    examplesPerStep: unitsPerUpdate(ctx.sizing, spec.method),
    tokenBudget: ctx.sizing.tokenBudget,
    seed: spec.seed,
    padId: ctx.padId,
    epochs,
    maxSteps: planned,
    dpoBeta: spec.dpoBeta,
    dpoReference: 'precomputed',
    onStep: async (m) => {
      rec.steps.push({ step: m.step, loss: m.loss, lr: m.lr, gradNorm: m.gradNorm });
      rec.memoryPeak = Math.max(rec.memoryPeak, m.memoryPeak);
      if (m.step % ctx.sizing.probeEvery === 0 || m.step === planned) probe(m.step);
      if (spec.evalEachEpoch && m.step % perEpoch === 0) {
        const e0 = Date.now();
        for (const set of spec.evalEachEpoch) {
          const r = await evalSet(model, ctx.evalCtx, set, spec.seed);
          rec.epochEvals.push({ epoch: m.step / perEpoch, step: m.step, set, meanAtK: r.meanAtK, passAtK: r.passAtK });
        }
        evalMs += Date.now() - e0;
      }
    },
  });
  try {
    await trainer.run(examples, { refSolutions: refs });
  } catch (e) {
    if (!(e instanceof DivergenceError)) throw e;
    rec.diverged = e.divergence;
  }
  rec.trainSeconds = (Date.now() - t0 - evalMs) / 1000;
  rec.updates = rec.steps.length;
  rec.trainExamples = selectExamples(spec.method.method, examples, { refSolutions: refs }).examples.length;
  const e0 = Date.now();
  for (const set of spec.evals) rec.evals[set] = await evalSet(model, ctx.evalCtx, set, spec.seed);
  rec.evalSeconds = (Date.now() - e0 + evalMs) / 1000;
  model.dispose();
  return rec;
}

function emptyRecord(key: string, spec: RunSpec): RunRecord {
  return {
    key,
    spec,
    updates: 0,
    plannedUpdates: 0,
    epochs: 0,
    trainExamples: 0,
    steps: [],
    probes: [],
    evals: {},
    epochEvals: [],
    trainSeconds: 0,
    evalSeconds: 0,
    memoryPeak: 0,
  };
}

/** A budget of 0 updates: the base model itself, evaluated like a trained run. */
async function evaluateBase(spec: RunSpec, ctx: RunContext, key: string): Promise<RunRecord> {
  const model = Model.load(ctx.baseDir);
  const rec = emptyRecord(key, spec);
  const e0 = Date.now();
  for (const set of spec.evals) rec.evals[set] = await evalSet(model, ctx.evalCtx, set, spec.seed);
  rec.evalSeconds = (Date.now() - e0) / 1000;
  model.dispose();
  return rec;
}

/** OUT/runs.jsonl: finished runs by key (a torn last line of a killed run is cut off first). */
export class RunStore {
  private readonly byKey = new Map<string, RunRecord>();
  constructor(readonly file: string) {
    if (!fs.existsSync(file)) return;
    repairJsonlTail(file);
    for (const r of readJsonl<RunRecord>(file).records) this.byKey.set(r.key, r);
  }
  get(key: string): RunRecord | undefined {
    return this.byKey.get(key);
  }
  add(r: RunRecord): void {
    appendJsonl(this.file, [r]);
    this.byKey.set(r.key, r);
  }
  all(): RunRecord[] {
    return [...this.byKey.values()];
  }
}
