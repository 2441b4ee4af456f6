// Engine exceptions → JS errors (native/napi/errors.h engine_error): CUDA runtime and cuBLAS failures carry their
// status as code / errno / status; anything else is a plain Error with the message. The GPU paths throw these
// messages (cuda/cuda_check.h, cuda/cublas_loader.cc); the parsing is checked here through a test hook.
import { addon } from '../lib/native';

const hook = addon._engineError;

function thrown(msg: string): Error & { code?: string; errno?: number; status?: string } {
  try {
    hook(msg);
  } catch (e) {
    return e as Error;
  }
  throw new Error('nothing was thrown');
}

test('CUDA and cuBLAS statuses become code / errno / status', () => {
  const cuda = thrown('CUDA error 2 (cudaErrorMemoryAllocation) in cudaMalloc at device_mem.cu:31: out of memory');
  expect(cuda.message).toBe(
    'CUDA error 2 (cudaErrorMemoryAllocation) in cudaMalloc at device_mem.cu:31: out of memory',
  );
  expect([cuda.code, cuda.errno, cuda.status]).toEqual(['ERR_RIFT_CUDA', 2, 'cudaErrorMemoryAllocation']);
  const blas = thrown('cuBLAS error 13 (CUBLAS_STATUS_EXECUTION_FAILED) in cublasGemmEx');
  expect([blas.code, blas.errno, blas.status]).toEqual(['ERR_RIFT_CUBLAS', 13, 'CUBLAS_STATUS_EXECUTION_FAILED']);
});

test('other messages stay plain errors', () => {
  for (const m of ['out of memory', 'CUDA error x (y)', 'CUDA error 7', 'cuBLAS error 3 (unterminated', '']) {
    const e = thrown(m);
    expect(e.message).toBe(m);
    expect(e.code).toBeUndefined();
  }
});
