// Self-test groups: attention forward (training, decode with past, a batched KV cache) and backward, for the fp32
// kernels and the bf16 GEMM path (through the BF16 instance, and called directly with small chunks so that several
// chunks run: the chunk boundary, the stacked K = G·r dk / dv GEMMs and the chunk-order accumulation).
#include <algorithm>
#include <array>
#include <cstdlib>
#include <string>

#include "cpu/ops_attention_bf16.h"
#include "cuda/cublas_loader.h"
#include "cuda/cuda_attention_gemm.h"
#include "cuda/device_mem.h"
#include "cuda/selftest/harness.h"

namespace rift::selftest {
namespace {

using Shape = std::array<int64_t, 7>;  // B, Tq, Tkv, past, Hq, Hkv, D
const std::vector<Shape> kShapes = {{1, 1, 1, 0, 1, 1, 8},    {2, 37, 37, 0, 4, 2, 64},   {1, 70, 70, 0, 12, 2, 128},
                                    {1, 5, 80, 40, 4, 1, 64}, {1, 1, 100, 99, 14, 2, 64}, {2, 33, 33, 0, 2, 2, 256},
                                    {1, 50, 50, 0, 6, 3, 96}, {1, 9, 20, 3, 2, 1, 20},    {1, 40, 40, 0, 8, 1, 32},
                                    {2, 7, 11, 4, 2, 1, 6}};  // D = 6: the bf16 conversions' one-wide path

std::string name(const Shape& s) {
  return "B,Tq,Tkv,past,Hq,Hkv,D=" + dims({s[0], s[1], s[2], s[3], s[4], s[5], s[6]});
}

}  // namespace

void test_attention(OpsBackend& c, OpsBackend& g, const char* tag, double fwd_tol, double bwd_tol) {
  const std::string t = std::string(tag) + " ";
  for (const Shape& s : kShapes) {
    const int64_t B = s[0], Tq = s[1], Tkv = s[2], past = s[3], Hq = s[4], Hkv = s[5], D = s[6];
    F q = rnd(B * Tq * Hq * D), k = rnd(B * Tkv * Hkv * D), v = rnd(B * Tkv * Hkv * D), o(B * Tq * Hq * D),
      l(B * Hq * Tq);
    Dev gq(q), gk(k), gv(v), go(o), gl(l);
    c.attention_forward(o.data(), l.data(), q.data(), k.data(), v.data(), B, Tq, Tkv, past, Hq, Hkv, D, nullptr);
    g.attention_forward(go.f(), gl.f(), gq.f(), gk.f(), gv.f(), B, Tq, Tkv, past, Hq, Hkv, D, nullptr);
    cmp(t + "attention_forward out " + name(s), o, go.get(), fwd_tol);
    cmp(t + "attention_forward lse " + name(s), l, gl.get(), 1e-5, 1e-5);
    if (past != 0 || Tq != Tkv) continue;
    for (int acc = 0; acc < 2; ++acc) {
      const int64_t T = Tq;
      F dO = rnd(B * T * Hq * D), dq = rnd(B * T * Hq * D), dk = rnd(B * T * Hkv * D), dv = rnd(B * T * Hkv * D);
      Dev gdO(dO), gdq(dq), gdk(dk), gdv(dv), go2(o), gl2(l);  // the CPU's out / lse: both see the same saved state
      c.attention_backward(dq.data(), dk.data(), dv.data(), dO.data(), q.data(), k.data(), v.data(), o.data(), l.data(),
                           B, T, Hq, Hkv, D, acc);
      g.attention_backward(gdq.f(), gdk.f(), gdv.f(), gdO.f(), gq.f(), gk.f(), gv.f(), go2.f(), gl2.f(), B, T, Hq, Hkv,
                           D, acc);
      const std::string a = " acc=" + std::to_string(acc) + " " + name(s);
      cmp(t + "attention_backward dq" + a, dq, gdq.get(), bwd_tol);
      cmp(t + "attention_backward dk" + a, dk, gdk.get(), bwd_tol);
      cmp(t + "attention_backward dv" + a, dv, gdv.get(), bwd_tol);
    }
  }
  {  // a batched KV cache: rows at their own past, reading their own cache slot; stale positions hold huge values
    const int64_t Hq = 4, Hkv = 2, D = 16, cap = 48, rows = 4, Tq = 2, B = 3, kd = Hkv * D;
    const I past = {40, 0, 9}, slot = {3, 0, 1};
    F k(size_t(rows * cap * kd), 3e38f), v(size_t(rows * cap * kd), 3e38f);
    for (int64_t b = 0; b < B; ++b) {
      const F kr = rnd((past[b] + Tq) * kd), vr = rnd((past[b] + Tq) * kd);
      std::copy(kr.begin(), kr.end(), k.begin() + slot[b] * cap * kd);
      std::copy(vr.begin(), vr.end(), v.begin() + slot[b] * cap * kd);
    }
    F q = rnd(B * Tq * Hq * D), o(B * Tq * Hq * D), l(B * Hq * Tq);
    Dev gq(q), gk(k), gv(v), go(o), gl(l), gpast(past), gslot(slot);
    const KvRows hr{past.data(), slot.data()}, dr{gpast.i(), gslot.i()};
    c.attention_forward(o.data(), l.data(), q.data(), k.data(), v.data(), B, Tq, cap, 40, Hq, Hkv, D, &hr);
    g.attention_forward(go.f(), gl.f(), gq.f(), gk.f(), gv.f(), B, Tq, cap, 40, Hq, Hkv, D, &dr);
    cmp(t + "attention_forward on a batched KV cache (out)", o, go.get(), fwd_tol);
    cmp(t + "attention_forward on a batched KV cache (lse)", l, gl.get(), 1e-5, 1e-5);
  }
}

// The bf16 GEMM attention called directly with a small chunk budget, so that a call runs several chunks (the last
// one shorter): against the CPU twin, which has no chunks. Also the chunk budget's environment variable parser.
void test_attention_chunks() {
  const cuda::CublasApi* api = cuda::cublas_api();
  cuda::cublasHandle_t handle = nullptr;
  cuda::cublas_check(api->create(&handle), "cublasCreate_v2");
  void* buf = nullptr;
  size_t cap = 0;
  cuda::AttnGemmCtx ctx;
  ctx.api = api;
  ctx.handle = handle;
  ctx.scratch = [&](size_t bytes) {
    if (bytes > cap) {
      cuda::free(buf);
      buf = cuda::alloc(bytes);
      cap = bytes;
    }
    return buf;
  };
  for (const Shape& s : std::vector<Shape>{
           {2, 45, 45, 0, 6, 2, 32}, {1, 64, 64, 0, 4, 1, 64}, {1, 29, 29, 0, 2, 2, 16}, {1, 13, 13, 0, 2, 1, 6}})
    for (size_t budget : {size_t(1) << 14, size_t(1) << 16}) {
      const int64_t B = s[0], T = s[1], Hq = s[4], Hkv = s[5], D = s[6];
      ctx.chunk_bytes = budget;
      F q = rnd(B * T * Hq * D), k = rnd(B * T * Hkv * D), v = rnd(B * T * Hkv * D), o(B * T * Hq * D), l(B * Hq * T);
      F dO = rnd(B * T * Hq * D), dq(q.size()), dk = rnd(k.size()), dv = rnd(v.size());
      Dev gq(q), gk(k), gv(v), go(o), gl(l), gdO(dO), gdq(dq), gdk(dk), gdv(dv);
      cpu::attention_forward_bf16(o.data(), l.data(), q.data(), k.data(), v.data(), B, T, T, 0, Hq, Hkv, D, nullptr);
      cuda::attention_forward_gemm(ctx, go.f(), gl.f(), gq.f(), gk.f(), gv.f(), B, T, T, 0, Hq, Hkv, D, nullptr);
      const std::string n = " budget=" + std::to_string(budget) + " " + name(s);
      cmp("bf16 attention in chunks: forward" + n, o, go.get(), 5e-4);
      Dev go2(o), gl2(l);
      cpu::attention_backward_bf16(dq.data(), dk.data(), dv.data(), dO.data(), q.data(), k.data(), v.data(), o.data(),
                                   l.data(), B, T, Hq, Hkv, D, true);
      cuda::attention_backward_gemm(ctx, gdq.f(), gdk.f(), gdv.f(), gdO.f(), gq.f(), gk.f(), gv.f(), go2.f(), gl2.f(),
                                    B, T, Hq, Hkv, D, true);
      cmp("bf16 attention in chunks: dq (accumulate)" + n, dq, gdq.get(), 1e-3);
      cmp("bf16 attention in chunks: dk (accumulate)" + n, dk, gdk.get(), 1e-3);
      cmp("bf16 attention in chunks: dv (accumulate)" + n, dv, gdv.get(), 1e-3);
    }
  cuda::free(buf);
  api->destroy(handle);
}

void host_checks() {
  struct Case {
    const char* value;
    size_t want;
    bool warns;
  };
  const size_t def = cuda::kAttentionChunkBytesDefault;
  for (const Case& k : {Case{nullptr, def, false}, Case{"", def, true}, Case{"1048576", 1048576, false},
                        Case{"1", 1, false}, Case{"0", def, true}, Case{"-5", def, true}, Case{"12abc", def, true},
                        Case{"1e6", def, true}, Case{"99999999999999999999999", def, true}, Case{" 42", def, true}}) {
    std::string warning;
    const size_t got = cuda::attention_chunk_bytes(k.value, &warning);
    check(std::string("RIFT_CUDA_ATTENTION_CHUNK_BYTES=") + (k.value ? k.value : "(unset)"),
          got == k.want && warning.empty() != k.warns,
          "got " + std::to_string(got) + (warning.empty() ? "" : "; " + warning));
  }
}

}  // namespace rift::selftest
