// The default bf16-activation ops of model/ops.h (OpsBackend's out-of-line methods; in backends/ so that every
// build of the backends, the CUDA self-test included, links them): the fp32 op composed with to_bf16 / from_bf16
// through a workspace buffer of the backend's own memory. Correct on any backend; the CPU and CUDA backends
// override them to skip the fp32 round trip.
#include "model/ops.h"

namespace rift {

void OpsBackend::rmsnorm_forward_bf16(uint16_t* out, float* rstd, const float* inp, const float* weight, int64_t T,
                                      int64_t C, float eps) {
  if (T <= 0 || C <= 0) return;
  OpsBuffer tmp(*this, MemCategory::Workspace, size_t(T) * size_t(C));
  rmsnorm_forward(tmp.data(), rstd, inp, weight, T, C, eps);
  to_bf16(out, tmp.data(), T * C);
}

void OpsBackend::swiglu_forward_bf16(uint16_t* out, const float* gate, const float* up, int64_t n) {
  if (n <= 0) return;
  OpsBuffer tmp(*this, MemCategory::Workspace, size_t(n));
  swiglu_forward(tmp.data(), gate, up, n);
  to_bf16(out, tmp.data(), n);
}

void OpsBackend::matmul_forward_bf16(float* out, const uint16_t* inp, const float* weight, const float* bias, int64_t M,
                                     int64_t N, int64_t K, bool accumulate) {
  OpsBuffer wide;
  if (M > 0 && K > 0) {
    wide = OpsBuffer(*this, MemCategory::Workspace, size_t(M) * size_t(K));
    from_bf16(wide.data(), inp, M * K);
  }
  matmul_forward(out, wide.data(), weight, bias, M, N, K, accumulate);
}

void OpsBackend::matmul_backward_bf16(float* dinp, float* dweight, float* dbias, const float* dout, const uint16_t* inp,
                                      const float* weight, int64_t M, int64_t N, int64_t K, bool accumulate) {
  OpsBuffer wide;
  if (dweight && M > 0 && K > 0) {
    wide = OpsBuffer(*this, MemCategory::Workspace, size_t(M) * size_t(K));
    from_bf16(wide.data(), inp, M * K);
  }
  matmul_backward(dinp, dweight, dbias, dout, wide.data(), weight, M, N, K, accumulate);
}

}  // namespace rift
