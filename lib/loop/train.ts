// Method wiring of the loop: one Trainer run with an optional exact step budget, and the memory a run added.
import { Model, type MemoryReport } from '../engine/model';
import { selectExamples, type Example } from '../train/examples';
import { Trainer, type StepMetrics, type TrainerOptions } from '../train/trainer';

class StopTraining extends Error {}

export interface TrainMethodOptions extends TrainerOptions {
  /** Stop after exactly this many optimizer updates (epochs are raised so that the data lasts). */
  steps?: number;
  /** Resume from this checkpoint root first (Trainer.resume). */
  resumeFrom?: string;
}

/**
 * Trains `model` with one Trainer. With `steps`, runs enough epochs for `steps` updates and stops there (the LR
 * schedule then spans the full planned run: use 'constant' for an exact budget). Returns the step metrics.
 */
export async function trainMethod(
  model: Model,
  examples: readonly Example[],
  refSolutions: readonly Example[] | undefined,
  o: TrainMethodOptions,
): Promise<{ metrics: StepMetrics[]; trainer: Trainer }> {
  const { steps, resumeFrom, ...opts } = o;
  let trainerOpts: TrainerOptions = opts;
  if (steps !== undefined) {
    if (!Number.isSafeInteger(steps) || steps < 1) throw new RangeError(`steps: must be an integer ≥ 1, got ${steps}`);
    const per = opts.examplesPerStep ?? 1;
    const sel = selectExamples(opts.method, examples, { refSolutions, dftData: opts.dftData });
    const units = sel.pairs ? sel.pairs.length : sel.examples.length;
    if (units === 0)
      throw new RangeError(`examples: nothing to train on for method '${opts.method}' (${JSON.stringify(sel.stats)})`);
    const epochs = Math.ceil(steps / Math.ceil(units / per));
    const user = opts.onStep;
    trainerOpts = {
      ...opts,
      epochs,
      onStep: async (m) => {
        if (user) await user(m);
        if (m.step >= steps) throw new StopTraining();
      },
    };
  }
  const trainer = new Trainer(model, trainerOpts);
  if (resumeFrom) await trainer.resume(resumeFrom);
  try {
    await trainer.run(examples, refSolutions ? { refSolutions } : {});
  } catch (e) {
    if (!(e instanceof StopTraining)) throw e;
  }
  return { metrics: trainer.history.slice(), trainer };
}

export const MEMORY_CATEGORIES = [
  'params',
  'grads',
  'optimizer',
  'activations',
  'logitsChunk',
  'reference',
  'workspace',
  'kvCache',
] as const;

/** Peak bytes per category (and total) reached since `before` was taken, above `before`'s current bytes. */
export function memoryDelta(before: MemoryReport, after: MemoryReport): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of [...MEMORY_CATEGORIES, 'total'] as const) {
    const a = after[k],
      b = before[k];
    if (a && b) out[k] = Math.max(0, a.peak - b.current);
  }
  return out;
}
