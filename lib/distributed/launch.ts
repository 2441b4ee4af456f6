// Which rank of how many this process is, from the variables a launcher sets. The first family present wins:
//
//   launcher                              rank                    size                    local rank
//   Open MPI mpirun / mpiexec / prterun   OMPI_COMM_WORLD_RANK    OMPI_COMM_WORLD_SIZE    OMPI_COMM_WORLD_LOCAL_RANK
//   MPICH / Intel MPI (Hydra), PMI        PMI_RANK                PMI_SIZE                MPI_LOCALRANKID
//   MVAPICH2                              MV2_COMM_WORLD_RANK     MV2_COMM_WORLD_SIZE     MV2_COMM_WORLD_LOCAL_RANK
//   Slurm srun                            SLURM_PROCID            SLURM_NTASKS            SLURM_LOCALID
//   torchrun-style                        RANK                    WORLD_SIZE              LOCAL_RANK
//
// rift's collectives run on Open MPI (native/distributed): under any launcher, MPI_Init must then see the same world
// (Open MPI's mpirun, or srun --mpi=pmix with an Open MPI built for Slurm). lib/distributed/comm.ts checks that it does.
import { rangeError, typeError } from '../util/validate';

export interface LaunchInfo {
  rank: number;
  size: number;
  /** The rank among the processes of this node (picks the GPU: one process per GPU). */
  localRank: number;
  /** The variables it was read from, e.g. 'OMPI_COMM_WORLD_RANK/SIZE'. */
  source: string;
}

const FAMILIES: readonly { rank: string; size: string; local?: string }[] = [
  { rank: 'OMPI_COMM_WORLD_RANK', size: 'OMPI_COMM_WORLD_SIZE', local: 'OMPI_COMM_WORLD_LOCAL_RANK' },
  { rank: 'PMI_RANK', size: 'PMI_SIZE', local: 'MPI_LOCALRANKID' },
  { rank: 'MV2_COMM_WORLD_RANK', size: 'MV2_COMM_WORLD_SIZE', local: 'MV2_COMM_WORLD_LOCAL_RANK' },
  { rank: 'SLURM_PROCID', size: 'SLURM_NTASKS', local: 'SLURM_LOCALID' },
  { rank: 'RANK', size: 'WORLD_SIZE', local: 'LOCAL_RANK' },
];

function intVar(env: NodeJS.ProcessEnv, name: string, min: number, max: number): number {
  const s = env[name] ?? '';
  if (!/^\s*\d+\s*$/.test(s)) throw typeError(name, `must be a non-negative integer, got ${JSON.stringify(s)}`);
  const v = Number(s);
  if (v < min || v > max) throw rangeError(name, `must be in [${min}, ${max}], got ${v}`);
  return v;
}

/**
 * The rank, world size and local rank a launcher gave this process, or undefined when no family's rank and size
 * variables are both set. Malformed values throw a TypeError / RangeError naming the variable.
 */
export function launchInfo(env: NodeJS.ProcessEnv = process.env): LaunchInfo | undefined {
  for (const f of FAMILIES) {
    if (env[f.rank] === undefined || env[f.size] === undefined) continue;
    const size = intVar(env, f.size, 1, 1 << 20);
    const rank = intVar(env, f.rank, 0, size - 1);
    const localRank = f.local && env[f.local] !== undefined ? intVar(env, f.local, 0, size - 1) : rank;
    return { rank, size, localRank, source: `${f.rank}/${f.size.replace(/^.*_/, '')}` };
  }
  return undefined;
}

/**
 * One GPU per process: restricts CUDA to the local rank's device (CUDA_VISIBLE_DEVICES, read when CUDA starts, so
 * this must run before anything touches the GPU). A user's CUDA_VISIBLE_DEVICES list is indexed by the local rank;
 * a list of one device is kept as it is. Returns the device it chose.
 */
export function selectCudaDevice(localRank: number, env: NodeJS.ProcessEnv = process.env): string {
  const given = (env.CUDA_VISIBLE_DEVICES ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (given.length === 1) return given[0];
  if (given.length > 1 && localRank >= given.length)
    throw rangeError(
      'CUDA_VISIBLE_DEVICES',
      `lists ${given.length} devices, but this is local rank ${localRank}: one GPU per process`,
    );
  const chosen = given.length ? given[localRank] : String(localRank);
  env.CUDA_VISIBLE_DEVICES = chosen;
  return chosen;
}
