// The process's place in a data-parallel job (native/dist through native/napi/dist.cc): Open MPI when a launcher
// started several processes, a local world of one rank otherwise (no MPI needed).
//
//   const dist = Dist.init({ timeoutSec: 600 });        // once per process; rank/size from lib/distributed/launch.ts
//   await dist.sum('step 3: tokens', [tokens, seqs])     // the same sums on every rank (rank 0 adds in rank order)
//   await dist.same('start', { data: fingerprint, … })   // every rank must pass the same values: else a DistError
//   dist.finalize()                                      // after a successful run (MPI_Finalize)
//
// Every wait is bounded by timeoutSec: a rank that dies or hangs makes the others fail with a DistError naming it
// (code 'ERR_RIFT_DIST', kind, rank). After a failure, or when the process exits with a non-zero code, MPI is not
// finalised: the launcher then ends the whole job.
import { addon, NativeDistInfo, localError } from '../native';
import { checkFiniteNumber, rangeError } from '../util/validate';
import { launchInfo, type LaunchInfo } from './launch';

export type DistErrorKind = 'timeout' | 'sequence' | 'mismatch' | 'mpi' | 'broken' | 'nccl';

/** A failure of the distributed job (the addon's errors with code 'ERR_RIFT_DIST', re-made in this realm). */
export class DistError extends Error {
  readonly code = 'ERR_RIFT_DIST';
  constructor(
    message: string,
    readonly kind: DistErrorKind,
    readonly rank: number,
    readonly index: number,
  ) {
    super(message);
    this.name = 'DistError';
  }
}

function distError(e: unknown): unknown {
  const x = e as { code?: string; kind?: DistErrorKind; rank?: number; index?: number; message?: string };
  if (x && x.code === 'ERR_RIFT_DIST')
    return new DistError(String(x.message), x.kind ?? 'mpi', x.rank ?? -1, x.index ?? 0);
  return localError(e);
}

async function call<T>(f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    throw distError(e);
  }
}

/** 32-bit FNV-1a of a string, as a number (values compared across ranks). */
export function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

export interface DistInitOptions {
  /** Longest wait for another rank, in seconds (default 600; RIFT_DIST_TIMEOUT overrides the default). */
  timeoutSec?: number;
  /** The environment the launcher variables are read from (default process.env). */
  env?: NodeJS.ProcessEnv;
}

let current: Dist | undefined;
let exitHook = false;

export class Dist {
  private constructor(
    readonly launch: LaunchInfo | undefined,
    private info: NativeDistInfo,
  ) {}

  /**
   * Joins the job this process was launched in: MPI when the launcher variables give a world of more than one
   * rank, else a local world of one rank. Throws when MPI cannot be loaded or sees another world than the launcher.
   */
  static init(o: DistInitOptions = {}): Dist {
    const env = o.env ?? process.env;
    const dflt =
      env.RIFT_DIST_TIMEOUT !== undefined ? checkFiniteNumber('RIFT_DIST_TIMEOUT', Number(env.RIFT_DIST_TIMEOUT)) : 600;
    const timeoutSec = o.timeoutSec === undefined ? dflt : checkFiniteNumber('timeoutSec', o.timeoutSec);
    if (!(timeoutSec > 0)) throw rangeError('timeoutSec', `must be > 0, got ${timeoutSec}`);
    if (current) {
      addon.dist.setTimeout(timeoutSec);
      return current;
    }
    const launch = launchInfo(env);
    const mpi = !!launch && launch.size > 1;
    if (mpi) {
      const lib = addon.dist.mpi();
      if (!lib.available)
        throw new Error(
          `launched as rank ${launch.rank} of ${launch.size} (${launch.source}), but ${lib.error}: install Open MPI (e.g. apt-get install openmpi-bin libopenmpi-dev) or set RIFT_MPI_LIB`,
        );
    }
    let info: NativeDistInfo;
    try {
      info = addon.dist.init({ mpi, timeoutSec });
    } catch (e) {
      throw distError(e);
    }
    if (launch && (info.size !== launch.size || info.rank !== launch.rank))
      throw new Error(
        `the launcher made this rank ${launch.rank} of ${launch.size} (${launch.source}), but MPI_Init saw rank ${info.rank} of ${info.size} ` +
          `(${info.library}): rift's collectives run on Open MPI — launch with its mpirun (or srun --mpi=pmix with an Open MPI built for Slurm)`,
      );
    current = new Dist(launch, info);
    if (!exitHook) {
      exitHook = true;
      // a failing process must not enter MPI_Finalize (it would wait for the others); the launcher ends the job
      process.on('exit', (code) => {
        if (code !== 0) addon.dist.abandon(`process exit code ${code}`);
      });
    }
    return current;
  }

  /** The initialised Dist, if any. */
  static get(): Dist | undefined {
    return current;
  }

  get rank(): number {
    return this.info.rank;
  }
  get size(): number {
    return this.info.size;
  }
  get isRoot(): boolean {
    return this.info.rank === 0;
  }
  /** The rank among this node's processes (the GPU a CUDA rank uses). */
  get localRank(): number {
    return this.launch?.localRank ?? 0;
  }
  /** 'Open MPI v4.1.4' or 'local'. */
  get library(): string {
    return this.info.library;
  }
  get timeoutSec(): number {
    return addon.dist.info().timeoutSec;
  }
  get broken(): boolean {
    return addon.dist.info().broken;
  }
  /** "rank r of N" (errors and logs). */
  get label(): string {
    return `rank ${this.rank} of ${this.size}`;
  }

  /** Σ over ranks of `values`, the same bits on every rank (rank 0 adds in rank order). */
  async sum(label: string, values: readonly number[]): Promise<number[]> {
    const out = await call(() => addon.dist.coordinate(label, Float64Array.from(values), false));
    return Array.from(out);
  }

  /**
   * Checks that every rank passes the same fields (strings are hashed); a DistError (kind 'mismatch') names the
   * first rank and field that differ from rank 0's.
   */
  async same(label: string, fields: Record<string, number | string | boolean>): Promise<void> {
    const names = Object.keys(fields);
    const values = Float64Array.from(names, (k) => {
      const v = fields[k];
      return typeof v === 'string' ? hashString(v) : typeof v === 'boolean' ? Number(v) : v;
    });
    try {
      await call(() => addon.dist.coordinate(label, values, true));
    } catch (e) {
      if (e instanceof DistError && e.kind === 'mismatch' && e.index >= 0 && e.index < names.length) {
        const field = names[e.index];
        const v = fields[field];
        const m = /\(([^()]*) vs ([^()]*)\)$/.exec(e.message);
        const detail = typeof v !== 'string' && m ? ` (${m[1]} on rank ${e.rank}, ${m[2]} on rank 0)` : '';
        throw new DistError(
          `rank ${e.rank} and rank 0 differ in ${field} at '${label}'${detail}: every rank must run the same command on the same files and model`,
          e.kind,
          e.rank,
          e.index,
        );
      }
      throw e;
    }
  }

  /** In-place Σ over ranks of a host array (MPI_Allreduce; identity in a world of one rank). */
  allReduce(buf: Float32Array | Float64Array): Promise<void> {
    return call(() => addon.dist.allReduce(buf));
  }

  /** MPI_Finalize when the job is healthy (call after a successful run); nothing otherwise. */
  finalize(): void {
    addon.dist.finalize();
  }

  /** Marks the job failed: this process will exit without MPI_Finalize (the launcher ends the job). */
  abandon(why: string): void {
    addon.dist.abandon(why);
  }
}

/** Calls a DistError-raising native function and re-makes its error here (lib/dist internals). */
export const distCall = call;
