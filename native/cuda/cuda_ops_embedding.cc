// embedding_backward of the CUDA backend (cuda_ops_kernels.h): the ids are copied to the host, checked, and tokens
// grouped by id (stable: token order inside a group); the kernel (cuda_ops_elem.cu) then adds one group per block
// and column chunk: deterministic, and the same summation order as the CPU twin.
#include <cuda_runtime.h>

#include <algorithm>
#include <vector>

#include "core/checks.h"
#include "cuda/cuda_check.h"
#include "cuda/cuda_ops_kernels.h"

namespace rift::cuda::ops {

void embedding_backward_grouped(float* dwte, const float* dout, const int32_t* ids, int64_t T, int64_t V, int64_t C,
                                const std::function<void*(size_t)>& scratch) {
  std::vector<int32_t> h(size_t(std::max<int64_t>(0, T)));
  if (T > 0) RIFT_CUDA_CHECK(cudaMemcpy(h.data(), ids, size_t(T) * sizeof(int32_t), cudaMemcpyDeviceToHost));
  check_token_ids(h.data(), T, V);
  if (T <= 0 || C <= 0) return;
  std::vector<int32_t> order(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) order[size_t(t)] = int32_t(t);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return h[size_t(a)] < h[size_t(b)]; });
  std::vector<int32_t> seg, seg_id;
  for (int64_t k = 0; k < T; ++k)
    if (k == 0 || h[size_t(order[size_t(k)])] != h[size_t(order[size_t(k - 1)])]) {
      seg.push_back(int32_t(k));
      seg_id.push_back(h[size_t(order[size_t(k)])]);
    }
  const int64_t U = int64_t(seg_id.size());
  seg.push_back(int32_t(T));
  auto align256 = [](size_t x) { return (x + 255) & ~size_t(255); };
  const size_t o_order = 0, o_seg = align256(size_t(T) * 4), o_id = o_seg + align256(size_t(U + 1) * 4);
  char* base = static_cast<char*>(scratch(o_id + size_t(U) * 4));
  RIFT_CUDA_CHECK(cudaMemcpy(base + o_order, order.data(), size_t(T) * 4, cudaMemcpyHostToDevice));
  RIFT_CUDA_CHECK(cudaMemcpy(base + o_seg, seg.data(), size_t(U + 1) * 4, cudaMemcpyHostToDevice));
  RIFT_CUDA_CHECK(cudaMemcpy(base + o_id, seg_id.data(), size_t(U) * 4, cudaMemcpyHostToDevice));
  embedding_backward(dwte, dout, reinterpret_cast<int32_t*>(base + o_order), reinterpret_cast<int32_t*>(base + o_seg),
                     reinterpret_cast<int32_t*>(base + o_id), U, C);
}

}  // namespace rift::cuda::ops
