// Data-parallel training for the Trainer (lib/train/trainer.ts option `dist`): every rank holds the whole model,
// trains on its shard of each global batch (lib/distributed/shard.ts) with the global normaliser, and a GradSync
// (native/distributed/grad_sync.h) sums the gradients over ranks and runs the optimizer step:
//   zero 0  all-reduce of the gradients in buckets (started during the last micro-batch's backward on MPI), then
//           the model's own AdamW — every rank applies the same update to the same weights;
//   zero 1  ZeRO stage 1: each rank holds AdamW m and v for its shard of the parameters only (8 bytes / parameter
//           / ranks), gets the summed gradient of that shard (reduce to its owner), updates that shard of the fp32
//           weights, and the updated shards are broadcast to every rank.
// A CPU model reduces host memory over MPI; a CUDA model reduces device memory over NCCL (one process per GPU).
import { Model, type StepOptions, type StepResult } from '../engine/model';
import { addon, localError, type NativeGradSync } from '../native';
import { checkFiniteNumber, describe, rangeError, typeError } from '../util/validate';
import { Dist, distCall } from './comm';
import type { ShardRange } from './shard';

export interface DataParallelOptions {
  /** ZeRO stage: 0 (every rank holds the whole AdamW state; default) or 1 (AdamW m, v sharded over ranks). */
  zero?: 0 | 1;
  /** Gradient bucket size in MB for MPI (default 25, as PyTorch DDP); NCCL reduces each region in one call. */
  bucketMB?: number;
  /** Start reducing each finished bucket during the last micro-batch's backward (MPI only; default true). */
  overlap?: boolean;
}

/** The gradient synchroniser of one model (made by DataParallel.sync). */
export class GradSync {
  readonly native: NativeGradSync;
  readonly shard: ShardRange;
  readonly backend: 'mpi' | 'local' | 'nccl';
  readonly buckets: number;

  constructor(
    readonly model: Model,
    readonly dp: DataParallel,
  ) {
    let n: NativeGradSync;
    try {
      n = new addon.dist.GradSync(model.native, {
        zero: dp.zero,
        backend: model.device === 'cuda' ? 'nccl' : 'mpi',
        bucketMB: dp.bucketMB,
      });
    } catch (e) {
      throw localError(e);
    }
    this.native = n;
    const i = n.info();
    this.shard = { offset: i.shardOffset, count: i.shardCount };
    this.backend = i.backend;
    this.buckets = i.buckets;
  }

  /**
   * Runs `backward` (the last micro-batch of a step) with its finished gradient buckets starting their reduction
   * during it (when dp.overlap): earlier micro-batches' gradients are not final, so the hook is on for this call only.
   */
  async lastBackward<T>(backward: () => Promise<T>): Promise<T> {
    if (!this.dp.overlap) return backward();
    this.native.arm();
    try {
      return await backward();
    } finally {
      this.native.disarm();
    }
  }
  /** The summed gradient (and, zero 1, the sharded AdamW + weight broadcast); the norm is that of the sum. */
  step(opts: StepOptions): Promise<StepResult> {
    if (opts === null || typeof opts !== 'object')
      throw typeError('options', `must be an object, got ${describe(opts)}`);
    return distCall(() => this.native.stepAsync(opts));
  }
  /** Only the reduction: zero 0 leaves the summed gradient on every rank, zero 1 each shard's on its owner. */
  reduceGrads(): Promise<void> {
    return distCall(() => this.native.reduceGradsAsync());
  }
  /** zero 1: host copies of this rank's shard of AdamW m and v. */
  readState(): { m: Float32Array; v: Float32Array } {
    const s = this.native.readState();
    return { m: new Float32Array(s.m), v: new Float32Array(s.v) };
  }
  writeState(m: Float32Array, v: Float32Array): void {
    try {
      this.native.writeState(m, v);
    } catch (e) {
      throw localError(e);
    }
  }
  /** zero 1: the whole AdamW state on rank 0 (null on the other ranks); every rank must call it. */
  gatherState(): Promise<{ m: Float32Array; v: Float32Array } | null> {
    return distCall(() => this.native.gatherStateAsync());
  }
}

export class DataParallel {
  readonly zero: 0 | 1;
  readonly bucketMB?: number;
  readonly overlap: boolean;
  private readonly syncs = new WeakMap<Model, GradSync>();

  constructor(
    readonly dist: Dist,
    o: DataParallelOptions = {},
  ) {
    if (!(dist instanceof Dist)) throw typeError('dist', `must be a Dist (Dist.init()), got ${describe(dist)}`);
    if (o === null || typeof o !== 'object') throw typeError('options', `must be an object, got ${describe(o)}`);
    if (o.zero !== undefined && o.zero !== 0 && o.zero !== 1)
      throw rangeError('zero', `must be 0 or 1, got ${JSON.stringify(o.zero)}`);
    this.zero = o.zero ?? 0;
    if (o.bucketMB !== undefined && !(checkFiniteNumber('bucketMB', o.bucketMB) > 0))
      throw rangeError('bucketMB', `must be > 0, got ${o.bucketMB}`);
    this.bucketMB = o.bucketMB;
    if (o.overlap !== undefined && typeof o.overlap !== 'boolean')
      throw typeError('overlap', `must be a boolean, got ${describe(o.overlap)}`);
    this.overlap = o.overlap ?? true;
  }

  get rank(): number {
    return this.dist.rank;
  }
  get size(): number {
    return this.dist.size;
  }
  get isRoot(): boolean {
    return this.dist.isRoot;
  }

  /** The GradSync of `model` (made on first use; NCCL set-up is collective: every rank must ask at once). */
  sync(model: Model): GradSync {
    let s = this.syncs.get(model);
    if (!s) {
      s = new GradSync(model, this);
      this.syncs.set(model, s);
    }
    return s;
  }
}

/** 64-bit FNV-1a over the bit patterns of the model's weights (hex): equal on two ranks iff their weights are. */
export function paramsHash(model: Model): Promise<string> {
  if (!(model instanceof Model)) throw typeError('model', `must be a Model, got ${describe(model)}`);
  return distCall(() => addon.dist.paramsHash(model.native));
}
