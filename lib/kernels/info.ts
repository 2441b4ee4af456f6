// What the addon was built with and what it finds at run time.
import { addon } from '../native';

export interface BackendInfo {
  /** Backends usable now: always 'cpu', plus 'cuda' when built with CUDA and a device is present. */
  available: Array<'cpu' | 'cuda'>;
  build: { cuda: boolean; simd: string; napiVersion: number; compiler: string };
  cpu: { threads: number };
  cuda: {
    devices: Array<{ name: string; totalMemory: number; computeCapability: string; multiProcessors: number }>;
  } | null;
}

export function backends(): BackendInfo {
  const devices = addon.cuda ? addon.cuda.devices() : [];
  return {
    available: devices.length > 0 ? ['cpu', 'cuda'] : ['cpu'],
    build: { ...addon.buildInfo },
    cpu: { threads: addon.numThreads() },
    cuda: addon.cuda ? { devices } : null,
  };
}

/** Sets the CPU kernels' thread count (0 = default: RIFT_NUM_THREADS or the core count). Returns the count in use. */
export function setNumThreads(n: number): number {
  return addon.setNumThreads(n);
}
