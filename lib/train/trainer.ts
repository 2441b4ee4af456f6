// One training harness for every method (the RIFT loop's step 4): sft, rft, dft, dpo, rift and naive on the decoder
// engine, with the same AdamW, LR schedule, token-budget micro-batches, exact gradient accumulation and
// checkpoints.
//
//   const trainer = new Trainer(model, { method: 'rift', lr: 1e-5, schedule: 'cosine', tokenBudget: 8192,
//                                        examplesPerStep: 64, epochs: 2, checkpointDir: 'ckpt', checkpointEvery: 50 });
//   const metrics = await trainer.run(examples);            // one entry per optimizer step
//   ...
//   const again = new Trainer(Model.load('ckpt/step-000050'), sameOptions);
//   await again.resume('ckpt');                             // latest checkpoint (or a step-… directory)
//   await again.run(examples);                              // continues at step 51: the same loss curve
//
// A step: zeroGrad → for each micro-batch lossAndBackwardAsync(…, normalizer = the step's GLOBAL normaliser)
// → stepAsync({lr: lrAt(step), …}). Every model call is async (a libuv worker): the event loop stays free.
//
// DPO reference log-probs (dpoReference):
//   'precomputed'  S_ref of every selected example, computed once at the start by the initial policy itself
//                  (method 'logprob', no gradient), kept in the trainer (and in each checkpoint)
//   'held'         a second Model with the initial weights (`reference: true`: its parameters count as
//                  'reference' memory) queried every micro-batch; checkpoints save its weights once
//                  (<checkpointDir>/reference) so a resumed run uses the same reference
//   {model}        that Model as the held reference (precompute: true → precompute with it instead)
//
// Checkpoints (<checkpointDir>/step-NNNNNN/, every checkpointEvery steps and at the end), each written into a
// temporary directory and renamed into place, then <checkpointDir>/latest.json (atomic) points at it, then all but
// the keepCheckpoints newest are removed (lib/train/checkpoints.ts: the folder's layout, strict reading, temps of
// killed runs removed on start):
//   config.json + model.safetensors   model.save()
//   optimizer.safetensors             AdamW m ("exp_avg.<name>") and v ("exp_avg_sq.<name>") per tensor, F32
//   trainer-state.json                step, RNG/data position (the epoch order is a function of (seed, epoch)),
//                                     the options that shape the trajectory, a fingerprint of the data,
//                                     precomputed reference log-probs, the metrics so far
// A diverged update (NaN/Inf loss, logits or gradient norm) stops the run with a DivergenceError
// (lib/train/divergence.ts) and sets trainer.diverged; the parameters stay those of the previous update.
// Exact resume needs the model's AdamW state: Model.optimizerState() / setOptimizerSteps() (or the native
// optimizerView() / setOptimizerSteps()). Without them checkpoints hold no optimizer state and resume() refuses
// (unless {allowInexact: true}: AdamW then restarts from zero moments).
//
// Data parallel (option `dist`, lib/distributed/data-parallel.ts; one process per rank under mpirun): every rank
// builds the same plan and trains on its shard of each step's units (shardUnits, then packed by tokenBudget), with the step's
// normaliser summed over ranks — the step's loss and summed gradient are those of one process on the whole step,
// up to fp32 summation order. A GradSync sums the gradients and runs AdamW (zero 1: sharded m, v). Checked at the
// start: every rank has the same options, data, model weights and position. Metrics are summed over ranks (the
// same on every rank, onStep is called on each); rank 0 alone writes checkpoints (zero 1: the AdamW state is
// gathered to it first, so a checkpoint is the same file whatever the ranks), after checking that every rank holds
// the same weights; every rank resumes from the same checkpoint (zero 1: each reads its shard of the state).
import * as path from 'path';
import { Model } from '../engine/model';
import { SafetensorsFile, writeSafetensors } from '../engine/safetensors';
import { writeBytesAtomic } from '../util/atomic';
import { checkEnumOr, checkFiniteNumber, checkInteger, describe, rangeError, typeError } from '../util/validate';
import { checkDpoBeta, NEGATIVE_FORMS, REDUCTIONS } from '../kernels/loss';
import {
  checkpointStepDir,
  cleanCheckpointTemps,
  DEFAULT_KEEP_CHECKPOINTS,
  inCheckpoint,
  insidePath,
  LATEST_FILE,
  OPTIMIZER_FILE,
  pruneCheckpoints,
  readTrainerState,
  REFERENCE_DIR,
  STATE_FILE,
  STATE_FORMAT,
  STATE_VERSION,
  stepDirName,
  writeDirAtomic,
  type TrainerState,
} from './checkpoints';
import {
  buildMicroBatch,
  exampleLength,
  globalNormalizer,
  LossMethod,
  MicroBatch,
  MAX_TOKEN_BUDGET,
  packMicroBatches,
  packUnits,
  planEpoch,
  Reduction,
  Unit,
} from './batching';
import { DivergenceError, divergenceReason, type Divergence, type DivergenceReason } from './divergence';
import { DataParallel, paramsHash } from '../distributed/data-parallel';
import { shardUnits, type ShardRange } from '../distributed/shard';
import { Example, selectExamples, Selection, TRAIN_METHODS, TrainMethod } from './examples';
import { lrAt, SCHEDULE_KINDS, ScheduleKind, ScheduleOptions } from './schedule';

export type DpoReference = 'precomputed' | 'held' | { model: Model; precompute?: boolean };

export interface TrainerOptions {
  method: TrainMethod;
  /** RIFT negatives: 'token' (default) or 'sequence' (docs/design.md §1.4). */
  negative?: 'token' | 'sequence';
  /** 'token-mean' (default), 'sequence-mean' or 'sum'; DPO averages over pairs unless 'sum'. */
  reduction?: Reduction;
  /** Base learning rate (≥ 0). */
  lr: number;
  /** LR schedule over the run's optimizer steps (lib/train/schedule.ts): 'constant' (default), 'linear', 'cosine'. */
  schedule?: ScheduleKind;
  warmupSteps?: number;
  minLr?: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
  /** Clip the global gradient norm (default 1, as HF's Trainer; 0: no clipping). */
  maxGradNorm?: number;
  /** Most tokens (B × T, padding included) per micro-batch (default 4096). */
  tokenBudget?: number;
  /** Micro-batches per optimizer step (default 1) — or: */
  microBatchesPerStep?: number;
  /** Examples (DPO: pairs) per optimizer step, packed into as many micro-batches as the budget needs. */
  examplesPerStep?: number;
  /** Passes over the data (default 1). */
  epochs?: number;
  /** End the run after this many optimizer updates (the LR schedule spans exactly them); default: all epochs' steps. */
  maxSteps?: number;
  /** Shuffle seed (default 0); each epoch's order is a function of (seed, epoch). */
  seed?: number;
  /** false: keep the data order (default true). */
  shuffle?: boolean;
  /** Token id of padding (default 0). */
  padId?: number;
  /** DPO β (default 0.1). */
  dpoBeta?: number;
  /** Where DPO reference log-probs come from (default 'precomputed'). */
  dpoReference?: DpoReference;
  /** What 'dft' trains on: the positives (default) or the reference solutions. */
  dftData?: 'positives' | 'reference';
  checkpointDir?: string;
  /** Checkpoint every N optimizer steps (and always at the end when checkpointDir is set). */
  checkpointEvery?: number;
  /** Keep the N newest checkpoints, removing older ones after each save (default 3; 0 keeps all). */
  keepCheckpoints?: number;
  /** Called after every optimizer step (awaited). */
  onStep?: (m: StepMetrics) => void | Promise<void>;
  /** Data-parallel training over the ranks of a job (see the file comment); absent: this process alone. */
  dist?: DataParallel;
}

export interface StepMetrics {
  /** Optimizer updates done (1-based). */
  step: number;
  totalSteps: number;
  epoch: number;
  /** The step's loss: Σ over its micro-batches (each divided by the global normaliser). */
  loss: number;
  /** The LR this update used: lrAt(step − 1). */
  lr: number;
  /** ‖g‖ before clipping. */
  gradNorm: number;
  clipScale: number;
  /** Response tokens (rows with a target). */
  tokens: number;
  /** B × T summed over micro-batches (padding and prompts included). */
  paddedTokens: number;
  sequences: number;
  /** DPO pairs (0 otherwise). */
  pairs: number;
  microBatches: number;
  /** Response tokens per second of this step (wall clock, reference queries included). */
  tokensPerSec: number;
  /** Seconds spent on reference log-probs (DPO 'held'). */
  referenceSeconds: number;
  seconds: number;
  /** Process-wide high-water mark of tracked host bytes since run() started (Model.memory().total.peak). */
  memoryPeak: number;
}

export interface RunOptions {
  /** Reference solutions: the data of 'sft' (and of 'dft' with dftData 'reference'). */
  refSolutions?: readonly Example[];
}

export interface ResumeOptions {
  /** Resume from a checkpoint without optimizer state (AdamW restarts from zero moments). Default false. */
  allowInexact?: boolean;
}

/** Options that shape the trajectory: a resumed run must use the checkpoint's values. */
const TRAJECTORY_KEYS = [
  'method',
  'negative',
  'reduction',
  'lr',
  'schedule',
  'warmupSteps',
  'minLr',
  'beta1',
  'beta2',
  'eps',
  'weightDecay',
  'maxGradNorm',
  'tokenBudget',
  'microBatchesPerStep',
  'examplesPerStep',
  'epochs',
  'seed',
  'shuffle',
  'padId',
  'dpoBeta',
  'dpoReference',
  'dftData',
] as const;

type Resolved = Required<
  Omit<
    TrainerOptions,
    | 'microBatchesPerStep'
    | 'examplesPerStep'
    | 'maxSteps'
    | 'checkpointDir'
    | 'checkpointEvery'
    | 'onStep'
    | 'minLr'
    | 'dpoReference'
    | 'keepCheckpoints'
    | 'dist'
  >
> & {
  maxSteps?: number;
  dist?: DataParallel;
  keepCheckpoints: number;
  microBatchesPerStep?: number;
  examplesPerStep?: number;
  minLr: number;
  dpoReference: DpoReference;
  checkpointDir?: string;
  checkpointEvery?: number;
  onStep?: TrainerOptions['onStep'];
};

/** The AdamW state of a Model (or of a data-parallel job, gathered from its ZeRO-1 shards). */
export interface OptimizerAccess {
  m: Float32Array;
  v: Float32Array;
  setSteps(n: number): void;
  /** Makes writes into m / v take effect (a CUDA model's m / v are host copies); absent for zero-copy views. */
  commit?(): void;
}

/**
 * The model's AdamW m and v (allocated zeroed on first use): zero-copy views on the CPU; on CUDA host copies that
 * commit() writes back.
 */
export function optimizerAccess(model: Model): OptimizerAccess {
  const s = model.optimizerState();
  const access: OptimizerAccess = { m: s.m, v: s.v, setSteps: (n) => model.setOptimizerSteps(n) };
  if (model.device !== 'cpu') access.commit = () => model.setOptimizerState({ m: access.m, v: access.v });
  return access;
}

function checkOptions(o: TrainerOptions): Resolved {
  if (o === null || typeof o !== 'object') throw typeError('options', `must be an object, got ${describe(o)}`);
  if (o.method === undefined) throw typeError('method', `is required (${TRAIN_METHODS.join(', ')})`);
  const method = checkEnumOr('method', o.method, TRAIN_METHODS, 'sft');
  // a finite number ≥ lo (> lo when loOpen), < 1 when below1 (the betas)
  const num = (k: string, v: unknown, dflt: number, lo: number, below1 = false, loOpen = false): number => {
    if (v === undefined) return dflt;
    const x = checkFiniteNumber(k, v);
    if (x < lo || (loOpen && x === lo) || (below1 && x >= 1))
      throw rangeError(k, `must be in ${loOpen ? '(' : '['}${lo}, ${below1 ? '1)' : '∞)'}, got ${x}`);
    return x;
  };
  const int = (k: string, v: unknown, dflt: number | undefined, lo: number): number | undefined =>
    v === undefined ? dflt : checkInteger(k, v, lo);
  if (o.lr === undefined) throw typeError('lr', 'is required (the base learning rate)');
  const r: Resolved = {
    method,
    negative: checkEnumOr('negative', o.negative, NEGATIVE_FORMS, 'token'),
    reduction: checkEnumOr('reduction', o.reduction, REDUCTIONS, 'token-mean'),
    lr: num('lr', o.lr, 0, 0),
    schedule: checkEnumOr('schedule', o.schedule, SCHEDULE_KINDS, 'constant'),
    warmupSteps: int('warmupSteps', o.warmupSteps, 0, 0)!,
    minLr: num('minLr', o.minLr, 0, 0),
    beta1: num('beta1', o.beta1, 0.9, 0, true),
    beta2: num('beta2', o.beta2, 0.999, 0, true),
    eps: num('eps', o.eps, 1e-8, 0),
    weightDecay: num('weightDecay', o.weightDecay, 0.01, 0),
    maxGradNorm: num('maxGradNorm', o.maxGradNorm, 1, 0),
    tokenBudget: o.tokenBudget === undefined ? 4096 : checkInteger('tokenBudget', o.tokenBudget, 1, MAX_TOKEN_BUDGET),
    microBatchesPerStep: int('microBatchesPerStep', o.microBatchesPerStep, undefined, 1),
    examplesPerStep: int('examplesPerStep', o.examplesPerStep, undefined, 1),
    epochs: int('epochs', o.epochs, 1, 1)!,
    maxSteps: int('maxSteps', o.maxSteps, undefined, 1),
    seed: int('seed', o.seed, 0, 0)!,
    shuffle: o.shuffle ?? true,
    padId: int('padId', o.padId, 0, 0)!,
    dpoBeta: o.dpoBeta === undefined ? 0.1 : checkDpoBeta('dpoBeta', o.dpoBeta),
    dpoReference: o.dpoReference ?? 'precomputed',
    dftData: checkEnumOr('dftData', o.dftData, ['positives', 'reference'] as const, 'positives'),
    checkpointDir: o.checkpointDir,
    checkpointEvery: int('checkpointEvery', o.checkpointEvery, undefined, 1),
    keepCheckpoints: int('keepCheckpoints', o.keepCheckpoints, DEFAULT_KEEP_CHECKPOINTS, 0)!,
    onStep: o.onStep,
    dist: o.dist,
  };
  if (r.dist !== undefined && !(r.dist instanceof DataParallel))
    throw typeError('dist', `must be a DataParallel, got ${describe(r.dist)}`);
  if (typeof r.shuffle !== 'boolean') throw typeError('shuffle', `must be a boolean, got ${describe(r.shuffle)}`);
  if (r.minLr > r.lr) throw rangeError('minLr', `must be ≤ lr = ${r.lr}, got ${r.minLr}`);
  if (r.microBatchesPerStep !== undefined && r.examplesPerStep !== undefined)
    throw rangeError('examplesPerStep', 'give examplesPerStep or microBatchesPerStep, not both');
  const ref = r.dpoReference;
  if (ref !== 'precomputed' && ref !== 'held') {
    if (ref === null || typeof ref !== 'object' || !(ref.model instanceof Model))
      throw (typeof ref === 'string' ? rangeError : typeError)(
        'dpoReference',
        `must be 'precomputed', 'held' or {model: Model}, got ${describe(ref)}`,
      );
  }
  if (r.checkpointDir !== undefined && (typeof r.checkpointDir !== 'string' || !r.checkpointDir))
    throw typeError('checkpointDir', `must be a non-empty string, got ${describe(r.checkpointDir)}`);
  if (r.checkpointEvery !== undefined && r.checkpointDir === undefined)
    throw typeError('checkpointDir', 'is required when checkpointEvery is set');
  if (r.onStep !== undefined && typeof r.onStep !== 'function')
    throw typeError('onStep', `must be a function, got ${describe(r.onStep)}`);
  return r;
}

/** The serialisable options that shape the trajectory (saved in trainer-state.json, checked on resume). */
function trajectory(o: Resolved): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of TRAJECTORY_KEYS) {
    const v = o[k];
    out[k] =
      k === 'dpoReference'
        ? typeof v === 'string'
          ? v
          : (v as { precompute?: boolean }).precompute
            ? 'model-precomputed'
            : 'model'
        : (v ?? null);
  }
  return out;
}

/** Tokens of a unit (its examples' prompt + response): the weight shardUnits balances. */
const unitTokens = (u: Unit): number => u.reduce((a, e) => a + exampleLength(e), 0);

/** FNV-1a over what is trained on (ids, rewards, problem ids, pairs): a resumed run must see the same data. */
function fingerprint(sel: Selection, units: readonly Unit[]): string {
  let h = 0x811c9dc5;
  const mix = (x: number) => {
    h ^= x & 0xff;
    h = Math.imul(h, 0x01000193);
    h ^= (x >>> 8) & 0xff;
    h = Math.imul(h, 0x01000193);
    h ^= (x >>> 16) & 0xff;
    h = Math.imul(h, 0x01000193);
    h ^= x >>> 24;
    h = Math.imul(h, 0x01000193);
  };
  const f64 = new Float64Array(1),
    u32 = new Uint32Array(f64.buffer);
  const index = new Map(sel.examples.map((e, i) => [e, i]));
  for (const e of sel.examples) {
    for (let i = 0; i < e.problemId.length; i++) mix(e.problemId.charCodeAt(i));
    mix(e.sampleIndex);
    f64[0] = e.reward;
    mix(u32[0]);
    mix(u32[1]);
    mix(e.promptIds.length);
    for (const x of e.promptIds) mix(x);
    mix(e.responseIds.length);
    for (const x of e.responseIds) mix(x);
  }
  for (const u of units) for (const e of u) mix(index.get(e) ?? -1);
  return (h >>> 0).toString(16).padStart(8, '0') + `-${sel.examples.length}-${units.length}`;
}

export class Trainer {
  readonly model: Model;
  readonly options: Readonly<Resolved>;
  /** Metrics of every step so far (including those before a resume). */
  readonly history: StepMetrics[] = [];
  private resumed?: TrainerState;
  private reference?: Model; // DPO 'held'
  private referenceDir?: string; // where the held reference's weights are (absolute)
  private referenceSavedIn?: string; // the checkpoint root that holds a copy of them
  private running = false;
  /** Set when run() stopped on a diverged update (it then threw a DivergenceError carrying the same record). */
  diverged?: Divergence;

  constructor(model: Model, options: TrainerOptions) {
    if (!(model instanceof Model)) throw typeError('model', `must be a Model, got ${describe(model)}`);
    this.model = model;
    this.options = checkOptions(options);
  }

  /** Steps done so far (0 before run(); the checkpoint's step after resume()). */
  get step(): number {
    return this.history.length ? this.history[this.history.length - 1].step : (this.resumed?.step ?? 0);
  }

  /**
   * Loads a checkpoint written by a Trainer with the same trajectory options into this trainer's model (weights,
   * AdamW m/v and step counter) and remembers the data position; the next run() continues from there.
   * `dir`: a checkpoint root (its latest.json is followed) or one step-… directory.
   */
  async resume(dir: string, opts: ResumeOptions = {}): Promise<void> {
    if (typeof dir !== 'string') throw typeError('dir', `must be a string, got ${describe(dir)}`);
    if (this.running) throw new Error('Trainer: busy — run() is in progress');
    dir = checkpointStepDir(dir);
    const { state, file } = readTrainerState(dir);
    const mine = trajectory(this.options as Resolved);
    for (const k of TRAJECTORY_KEYS)
      if (JSON.stringify(mine[k]) !== JSON.stringify(state.options[k]))
        throw rangeError(
          k,
          `${JSON.stringify(mine[k])} differs from the checkpoint's ${JSON.stringify(state.options[k])} (${file})`,
        );
    const opt = state.optimizer;
    const dp = this.options.dist;
    const sharded = dp?.zero === 1 ? dp.sync(this.model) : undefined; // ZeRO-1: the AdamW state is this rank's shard
    const access = sharded ? undefined : optimizerAccess(this.model);
    if (!opt && !opts.allowInexact)
      throw new Error(
        `${dir}: the checkpoint holds no optimizer state (written by an engine without optimizer views); pass {allowInexact: true} to restart AdamW from zero moments`,
      );
    const root = path.dirname(path.resolve(dir));
    const referenceDir =
      state.referenceDir === undefined ? undefined : insidePath(root, state.referenceDir, file, 'referenceDir');
    const optFile = opt ? insidePath(dir, opt.file, file, 'optimizer.file') : undefined;
    try {
      this.model.loadWeights(dir);
    } catch (e) {
      throw inCheckpoint(dir, e);
    }
    if (sharded) {
      const n = sharded.shard.count;
      const m = new Float32Array(n),
        v = new Float32Array(n);
      if (opt && optFile) readOptimizerState(optFile, this.model, { m, v, setSteps: () => undefined }, sharded.shard);
      sharded.writeState(m, v);
      this.model.setOptimizerSteps(opt && optFile ? opt.steps : 0);
    } else if (opt && optFile && access) {
      readOptimizerState(optFile, this.model, access);
      access.commit?.();
      access.setSteps(opt.steps);
    } else if (access) {
      access.m.fill(0);
      access.v.fill(0);
      access.commit?.();
      access.setSteps(0);
    }
    this.resumed = state;
    this.history.length = 0;
    this.history.push(...state.history);
    this.referenceDir = referenceDir;
    this.referenceSavedIn =
      referenceDir && path.basename(referenceDir) === REFERENCE_DIR ? path.dirname(referenceDir) : undefined;
    this.reference = undefined;
  }

  /** Trains on `examples` (selected per method) from step 0, or from the resumed checkpoint's step. */
  async run(examples: readonly Example[], runOpts: RunOptions = {}): Promise<StepMetrics[]> {
    if (this.running) throw new Error('Trainer: busy — run() is already in progress');
    this.running = true;
    try {
      return await this.runInner(examples, runOpts);
    } finally {
      this.running = false;
    }
  }

  private async runInner(examples: readonly Example[], runOpts: RunOptions): Promise<StepMetrics[]> {
    const o = this.options;
    if (runOpts === null || typeof runOpts !== 'object')
      throw typeError('options', `must be an object, got ${describe(runOpts)}`);
    const sel = selectExamples(o.method, examples, { refSolutions: runOpts.refSolutions, dftData: o.dftData });
    const dpo = o.method === 'dpo';
    const units: Unit[] = dpo ? sel.pairs!.map((p) => [p.chosen, p.rejected]) : sel.examples.map((e) => [e]);
    if (!units.length)
      throw rangeError('examples', `nothing to train on for method '${o.method}' (${JSON.stringify(sel.stats)})`);
    const plan: { epoch: number; inEpoch: number; units: Unit[][] }[] = [];
    for (let epoch = 0; epoch < o.epochs; epoch++)
      planEpoch(units, epoch, {
        tokenBudget: o.tokenBudget,
        seed: o.seed,
        shuffle: o.shuffle,
        examplesPerStep: o.examplesPerStep,
        microBatchesPerStep: o.microBatchesPerStep,
      }).forEach((mbs, inEpoch) => plan.push({ epoch, inEpoch, units: mbs }));
    const totalSteps = Math.min(plan.length, o.maxSteps ?? Infinity); // a resume checks it against the checkpoint's
    const fp = fingerprint(sel, units);
    const start = this.resumed?.step ?? 0;
    if (this.resumed) {
      if (this.resumed.fingerprint !== fp)
        throw rangeError(
          'examples',
          `differ from the checkpoint's data (fingerprint ${fp} vs ${this.resumed.fingerprint})`,
        );
      if (this.resumed.totalSteps !== totalSteps)
        throw rangeError('examples', `give ${totalSteps} steps, the checkpoint's run had ${this.resumed.totalSteps}`);
    }
    const sched: ScheduleOptions = {
      kind: o.schedule,
      baseLr: o.lr,
      warmupSteps: o.warmupSteps,
      totalSteps,
      minLr: o.minLr,
    };
    lrAt(0, sched); // validates warmupSteps against totalSteps
    const lossMethod: LossMethod = o.method === 'rft' ? 'sft' : o.method;
    this.diverged = undefined;
    const diverge = (s: number, reason: DivergenceReason, detail: string): DivergenceError => {
      const last = this.history[this.history.length - 1];
      this.diverged = { step: s + 1, totalSteps, method: o.method, reason, detail, lastLoss: last ? last.loss : NaN };
      return new DivergenceError(this.diverged, [...this.history]);
    };
    const guard = async <T>(s: number, f: () => Promise<T>): Promise<T> => {
      try {
        return await f();
      } catch (e) {
        const reason = divergenceReason(e);
        throw reason ? diverge(s, reason, (e as Error).message) : e;
      }
    };
    const dp = o.dist;
    if (dp) {
      // every rank must train the same thing from the same place: else the job stops here, naming the rank
      await dp.dist.same('start of training', {
        options: JSON.stringify(trajectory(o)),
        data: fp,
        steps: totalSteps,
        'start step': start,
        parameters: this.model.numParams,
        weights: await paramsHash(this.model),
        'optimizer steps': this.model.optimizerSteps,
        device: this.model.device,
        precision: this.model.precision,
        zero: dp.zero,
      });
    }
    const sync = dp?.sync(this.model);

    // DPO reference log-probs
    let refLogps: Map<Example, number> | undefined;
    let held: Model | undefined;
    const refOpt = o.dpoReference;
    const precompute = dpo && (refOpt === 'precomputed' || (typeof refOpt === 'object' && !!refOpt.precompute));
    if (dpo && precompute) {
      refLogps = new Map();
      if (this.resumed) {
        const saved = this.resumed.refLogps;
        if (!saved || saved.length !== sel.examples.length)
          throw new Error('resume: the checkpoint holds no precomputed reference log-probs for this data');
        sel.examples.forEach((e, i) => refLogps!.set(e, saved[i]));
      } else {
        const by = typeof refOpt === 'object' ? refOpt.model : this.model;
        // data parallel: each rank computes every size-th example's log-prob, then a sum gives every rank all of them
        const mine = dp ? sel.examples.filter((_, i) => i % dp.size === dp.rank) : sel.examples;
        for (const mb of packMicroBatches(
          mine.map((e) => [e]),
          { tokenBudget: o.tokenBudget, padId: o.padId },
        )) {
          const r = await by.lossAndBackwardAsync({
            ids: mb.ids,
            B: mb.B,
            T: mb.T,
            targets: mb.targets,
            offsets: mb.offsets,
            method: 'logprob',
            backward: false,
          });
          mb.examples.forEach((e, b) => refLogps!.set(e, r.seqLogprobs[b]));
        }
        if (dp) {
          const all = Float64Array.from(sel.examples, (e) => refLogps!.get(e) ?? 0);
          await dp.dist.allReduce(all);
          sel.examples.forEach((e, i) => refLogps!.set(e, all[i]));
        }
      }
    } else if (dpo) {
      held = typeof refOpt === 'object' ? refOpt.model : (this.reference ??= this.makeHeldReference());
    }

    if (o.checkpointDir && (!dp || dp.isRoot)) cleanCheckpointTemps(o.checkpointDir);
    Model.resetPeaks();
    const done: StepMetrics[] = [];
    for (let s = start; s < totalSteps; s++) {
      const t0 = performance.now();
      let refSeconds = 0;
      // data parallel: this rank's share of the step's units, packed by the token budget
      const groups = dp
        ? packUnits(shardUnits(plan[s].units.flat(), unitTokens, dp.rank, dp.size), { tokenBudget: o.tokenBudget })
        : plan[s].units;
      const mbs: MicroBatch[] = groups.map((g) => buildMicroBatch(g, { padId: o.padId, pairs: dpo }));
      let normalizer = globalNormalizer(mbs, lossMethod, o.reduction);
      if (dp) {
        const [n] = await dp.dist.sum(`step ${s + 1}: the loss normaliser`, [normalizer ?? 0]);
        normalizer = normalizer === undefined ? undefined : n;
      }
      this.model.zeroGrad();
      let loss = 0;
      for (const [i, mb] of mbs.entries()) {
        let dpoArgs: { refLogprobs: Float64Array; pairs: Int32Array; beta: number } | undefined;
        if (dpo) {
          let ref: Float64Array;
          if (held) {
            const r0 = performance.now();
            ref = Float64Array.from(
              (
                await held.lossAndBackwardAsync({
                  ids: mb.ids,
                  B: mb.B,
                  T: mb.T,
                  targets: mb.targets,
                  offsets: mb.offsets,
                  method: 'logprob',
                  backward: false,
                })
              ).seqLogprobs,
            );
            refSeconds += (performance.now() - r0) / 1e3;
          } else ref = Float64Array.from(mb.examples, (e) => refLogps!.get(e)!);
          dpoArgs = { refLogprobs: ref, pairs: mb.pairs!, beta: o.dpoBeta };
        }
        const backward = () =>
          this.model.lossAndBackwardAsync({
            ids: mb.ids,
            B: mb.B,
            T: mb.T,
            targets: mb.targets,
            offsets: mb.offsets,
            rewards: lossMethod === 'rift' || lossMethod === 'naive' ? mb.rewards : undefined,
            method: lossMethod,
            negative: o.negative,
            reduction: o.reduction,
            normalizer,
            dpo: dpoArgs,
          });
        // the last micro-batch's backward may start reducing the gradients it finishes
        const r = await guard(s, () => (sync && i === mbs.length - 1 ? sync.lastBackward(backward) : backward()));
        loss += r.loss;
      }
      let counts = [
        loss,
        mbs.reduce((a, m) => a + m.tokens, 0),
        mbs.reduce((a, mb) => a + mb.B * mb.T, 0),
        mbs.reduce((a, mb) => a + mb.B, 0),
        dpo ? mbs.reduce((a, mb) => a + mb.pairs!.length / 2, 0) : 0,
        mbs.length,
      ];
      if (dp) counts = await dp.dist.sum(`step ${s + 1}: metrics`, counts); // the whole step's, on every rank (all see a divergence)
      const [stepLoss, tokens, paddedTokens, sequences, pairs, microBatches] = counts;
      if (!Number.isFinite(stepLoss)) throw diverge(s, 'non-finite loss', `the loss is ${stepLoss}`);
      const lr = lrAt(s, sched);
      const stepOpts = {
        lr,
        beta1: o.beta1,
        beta2: o.beta2,
        eps: o.eps,
        weightDecay: o.weightDecay,
        maxGradNorm: o.maxGradNorm,
      };
      const st = await guard(s, () => (sync ? sync.step(stepOpts) : this.model.stepAsync(stepOpts)));
      const seconds = (performance.now() - t0) / 1e3;
      const m: StepMetrics = {
        step: s + 1,
        totalSteps,
        epoch: plan[s].epoch,
        loss: stepLoss,
        lr,
        gradNorm: st.gradNorm,
        clipScale: st.clipScale,
        tokens,
        paddedTokens,
        sequences,
        pairs,
        microBatches,
        tokensPerSec: tokens / Math.max(seconds, 1e-9),
        referenceSeconds: refSeconds,
        seconds,
        memoryPeak: Model.memory().total.peak,
      };
      this.history.push(m);
      done.push(m);
      if (o.checkpointDir && ((o.checkpointEvery && (s + 1) % o.checkpointEvery === 0) || s + 1 === totalSteps)) {
        const next = plan[s + 1];
        await this.saveCheckpoint(
          o.checkpointDir,
          {
            format: STATE_FORMAT,
            version: STATE_VERSION,
            step: s + 1,
            totalSteps,
            epoch: next ? next.epoch : o.epochs,
            stepInEpoch: next ? next.inEpoch : 0,
            rng: {
              kind: 'mulberry32 seeded from (seed, epoch), Fisher–Yates per epoch',
              seed: o.seed,
              epoch: next ? next.epoch : o.epochs,
            },
            options: trajectory(o as Resolved),
            fingerprint: fp,
            examples: sel.examples.length,
            optimizer: null,
            refLogps: refLogps ? sel.examples.map((e) => refLogps!.get(e)!) : undefined,
            history: [...this.history],
          },
          held && refOpt === 'held' ? held : undefined,
        );
      }
      if (o.onStep) await o.onStep(m);
    }
    this.resumed = undefined; // a second run() starts over unless resume() is called again
    return done;
  }

  /** The initial policy weights as a frozen reference Model ('reference' memory), or the checkpoint's. */
  private makeHeldReference(): Model {
    const chunkRows = this.model.native.info().chunkRows;
    // the policy's device and numerics; its parameters count as 'reference'
    const opts = {
      reference: true,
      chunkRows,
      device: this.model.device,
      precision: this.model.precision,
      recompute: this.model.recompute,
      activationDtype: this.model.activationDtype,
    };
    if (this.referenceDir) return Model.load(this.referenceDir, opts);
    if (this.resumed) throw new Error("resume: the checkpoint holds no reference model for dpoReference 'held'");
    const ref = Model.fromConfig(this.model.config, { ...opts, std: 0 });
    ref.setParams(this.model.params());
    return ref;
  }

  private async saveCheckpoint(root: string, state: TrainerState, heldRef?: Model): Promise<void> {
    const dp = this.options.dist;
    let gathered: { m: Float32Array; v: Float32Array } | null = null;
    if (dp) {
      // a checkpoint must hold what every rank holds; ZeRO-1's AdamW state is assembled on rank 0
      await dp.dist.same(`step ${state.step}: the weights before the checkpoint`, {
        weights: await paramsHash(this.model),
      });
      if (dp.zero === 1) gathered = await dp.sync(this.model).gatherState();
      if (!dp.isRoot) return;
    }
    if (heldRef) {
      // each checkpoint folder holds its own copy of the reference weights (a resume never reads outside it)
      const resolved = path.resolve(root);
      if (this.referenceSavedIn === undefined || path.resolve(this.referenceSavedIn) !== resolved) {
        const refDir = path.join(resolved, REFERENCE_DIR);
        writeDirAtomic(refDir, (tmp) => heldRef.save(tmp));
        this.referenceDir = refDir;
        this.referenceSavedIn = resolved;
      }
      state.referenceDir = REFERENCE_DIR;
    }
    const name = stepDirName(state.step);
    writeDirAtomic(path.join(root, name), (tmp) => {
      this.model.save(tmp);
      const access = gathered ?? optimizerAccess(this.model);
      const tensors = this.model.tensorTable().flatMap((t) => {
        const n = t.shape.reduce((a, b) => a * b, 1);
        return [
          { name: `exp_avg.${t.name}`, shape: t.shape, data: access.m.subarray(t.offset, t.offset + n) },
          { name: `exp_avg_sq.${t.name}`, shape: t.shape, data: access.v.subarray(t.offset, t.offset + n) },
        ];
      });
      const steps = this.model.optimizerSteps;
      writeSafetensors(path.join(tmp, OPTIMIZER_FILE), tensors, {
        metadata: { format: 'rift-adamw', step: String(steps) },
      });
      state.optimizer = { file: OPTIMIZER_FILE, steps };
      writeBytesAtomic(path.join(tmp, STATE_FILE), JSON.stringify(state) + '\n');
    });
    writeBytesAtomic(path.join(root, LATEST_FILE), JSON.stringify({ dir: name, step: state.step }) + '\n');
    pruneCheckpoints(root, this.options.keepCheckpoints, state.step);
  }

  /** A Trainer over Model.load(dir) with the checkpoint's options (plus overrides), resumed from dir. */
  static async load(
    dir: string,
    overrides: Partial<TrainerOptions> = {},
    modelOpts: { chunkRows?: number } = {},
  ): Promise<Trainer> {
    if (typeof dir !== 'string') throw typeError('dir', `must be a string, got ${describe(dir)}`);
    const stepDir = checkpointStepDir(dir);
    const { state } = readTrainerState(stepDir);
    const saved: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(state.options)) if (v !== null) saved[k] = v;
    if (saved.dpoReference === 'model' || saved.dpoReference === 'model-precomputed') {
      if (!overrides.dpoReference)
        throw typeError(
          'dpoReference',
          'this checkpoint used a caller-given reference Model: pass it again in overrides',
        );
      delete saved.dpoReference;
    }
    let model: Model;
    try {
      model = Model.load(stepDir, modelOpts);
    } catch (e) {
      throw inCheckpoint(stepDir, e);
    }
    const t = new Trainer(model, { ...(saved as unknown as TrainerOptions), ...overrides });
    await t.resume(stepDir);
    return t;
  }
}

/**
 * Reads a checkpoint's AdamW moments into the model's optimizer views — or, given `range` (a ZeRO-1 shard of the
 * flat buffer), the part of them in that range into access.m / access.v (range.count floats each); every error
 * names the file (a missing or truncated tensor, NaN/Inf moments, a negative second moment).
 */
function readOptimizerState(file: string, model: Model, access: OptimizerAccess, range?: ShardRange): void {
  const base = `${path.basename(file)}: `;
  const named = (e: unknown) => {
    const msg = e instanceof Error ? e.message : String(e);
    const text = msg.startsWith(file) ? msg : `${file}: ${msg.startsWith(base) ? msg.slice(base.length) : msg}`;
    const E = e instanceof RangeError ? RangeError : e instanceof TypeError ? TypeError : Error;
    return Object.assign(new E(text), { cause: e });
  };
  let f: SafetensorsFile;
  try {
    f = SafetensorsFile.open(file);
  } catch (e) {
    throw named(e);
  }
  try {
    const lo = range ? range.offset : 0,
      hi = range ? range.offset + range.count : Infinity;
    for (const t of model.tensorTable()) {
      const n = t.shape.reduce((a, b) => a * b, 1);
      const a = Math.max(lo, t.offset),
        b = Math.min(hi, t.offset + n); // the part of this tensor to keep
      if (a >= b) continue;
      for (const [prefix, arr] of [
        ['exp_avg', access.m],
        ['exp_avg_sq', access.v],
      ] as const) {
        const whole = a === t.offset && b === t.offset + n;
        const view = whole ? arr.subarray(t.offset - lo, t.offset - lo + n) : new Float32Array(n);
        try {
          f.readFloat32(`${prefix}.${t.name}`, view);
        } catch (e) {
          throw named(e);
        }
        if (!whole) arr.set(view.subarray(a - t.offset, b - t.offset), a - lo);
        for (let i = 0; i < n; i++) {
          const x = view[i];
          if (!Number.isFinite(x) || (prefix === 'exp_avg_sq' && x < 0))
            throw new RangeError(
              `${file}: tensor "${prefix}.${t.name}" holds ${x} at element ${i} (a corrupt optimizer state)`,
            );
        }
      }
    }
  } finally {
    f.close();
  }
}
