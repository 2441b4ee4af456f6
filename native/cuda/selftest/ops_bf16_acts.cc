// Self-test group: the bf16-activation ops (model/ops.h *_bf16, used by the decoder's direct bf16 path). On each CUDA
// instance, each must equal the same instance's fp32 op composed with to_bf16 / from_bf16, bit for bit; and the
// bf16 producers must agree with the CPU twin's within one bf16 step (the fp32 values differ by summation order).
#include <array>

#include "cuda/selftest/harness.h"

namespace rift::selftest {
namespace {

// n bf16 values on the device, rounded there from an fp32 vector (RNE, as to_bf16).
struct Dev16 {
  Dev d;
  int64_t n;
  explicit Dev16(int64_t count) : d(size_t(count) * sizeof(uint16_t) + 16), n(count) {}
  uint16_t* h() const { return static_cast<uint16_t*>(d.p); }
  F widened(OpsBackend& g) const {  // the values as fp32, widened on the device
    Dev w(size_t(n) * sizeof(float));
    g.from_bf16(w.f(), h(), n);
    return w.get();
  }
};

void matmul_cases(OpsBackend& g, const std::string& tag) {
  for (const auto& s : {std::array<int64_t, 3>{1, 1, 1}, {37, 29, 64}, {130, 257, 96}}) {
    const int64_t M = s[0], N = s[1], K = s[2];
    const std::string t = " " + tag + " M,N,K=" + dims({M, N, K});
    const F x = rnd(M * K), w = rnd(N * K, 0.3f), b = rnd(N, 0.1f), dO = rnd(M * N);
    Dev gx(x), gw(w), gb(b), gdO(dO);
    Dev16 x16(M * K);
    g.to_bf16(x16.h(), gx.f(), M * K);
    Dev xw(size_t(M * K) * sizeof(float));  // the widened input for the fp32 ops
    g.from_bf16(xw.f(), x16.h(), M * K);
    for (int acc = 0; acc < 2; ++acc) {
      const std::string u = t + " acc=" + std::to_string(acc);
      const F o0 = rnd(M * N);
      Dev o1(o0), o2(o0);
      g.matmul_forward(o1.f(), xw.f(), gw.f(), gb.f(), M, N, K, acc);
      g.matmul_forward_bf16(o2.f(), x16.h(), gw.f(), gb.f(), M, N, K, acc);
      cmp("matmul_forward_bf16 = matmul_forward on the widened input (bitwise)" + u, o1.get(), o2.get(), 0);
      const F di0 = rnd(M * K), dw0 = rnd(N * K), db0 = rnd(N);
      Dev di1(di0), di2(di0), dw1(dw0), dw2(dw0), db1(db0), db2(db0);
      g.matmul_backward(di1.f(), dw1.f(), db1.f(), gdO.f(), xw.f(), gw.f(), M, N, K, acc);
      g.matmul_backward_bf16(di2.f(), dw2.f(), db2.f(), gdO.f(), x16.h(), gw.f(), M, N, K, acc);
      cmp("matmul_backward_bf16 dinp (bitwise)" + u, di1.get(), di2.get(), 0);
      cmp("matmul_backward_bf16 dweight (bitwise)" + u, dw1.get(), dw2.get(), 0);
      cmp("matmul_backward_bf16 dbias (bitwise)" + u, db1.get(), db2.get(), 0);
    }
  }
}

}  // namespace

void test_bf16_acts(OpsBackend& c, OpsBackend& g, OpsBackend& gb) {
  for (int64_t C : {1, 7, 896, 1536}) {  // rmsnorm → bf16
    const int64_t T = 45;
    const std::string s = " C=" + std::to_string(C);
    const F x = rnd(T * C, 2), w = rnd(C);
    Dev gx(x), gw(w), go(size_t(T * C) * sizeof(float)), gr(size_t(T) * sizeof(float)), gr2(size_t(T) * sizeof(float));
    Dev16 o16(T * C), ref16(T * C);
    g.rmsnorm_forward(go.f(), gr.f(), gx.f(), gw.f(), T, C, 1e-6f);
    g.to_bf16(ref16.h(), go.f(), T * C);
    g.rmsnorm_forward_bf16(o16.h(), gr2.f(), gx.f(), gw.f(), T, C, 1e-6f);
    cmp("rmsnorm_forward_bf16 = to_bf16(rmsnorm_forward) (bitwise)" + s, ref16.widened(g), o16.widened(g), 0);
    cmp("rmsnorm_forward_bf16 rstd (bitwise)" + s, gr.get(), gr2.get(), 0);
    F out(T * C), r(T);
    std::vector<uint16_t> c16(size_t(T * C));
    c.rmsnorm_forward_bf16(c16.data(), r.data(), x.data(), w.data(), T, C, 1e-6f);
    c.from_bf16(out.data(), c16.data(), T * C);
    cmp("rmsnorm_forward_bf16 vs the CPU twin (one bf16 step)" + s, out, o16.widened(g), 1.0 / 128);
  }
  for (int64_t n : {1, 1000, 1000003}) {  // swiglu → bf16 (odd n: the vector path's tail)
    const std::string s = " n=" + std::to_string(n);
    const F a = rnd(n, 3), b = rnd(n);
    Dev ga(a), gb2(b), go(size_t(n) * sizeof(float));
    Dev16 o16(n), ref16(n);
    g.swiglu_forward(go.f(), ga.f(), gb2.f(), n);
    g.to_bf16(ref16.h(), go.f(), n);
    g.swiglu_forward_bf16(o16.h(), ga.f(), gb2.f(), n);
    cmp("swiglu_forward_bf16 = to_bf16(swiglu_forward) (bitwise)" + s, ref16.widened(g), o16.widened(g), 0);
  }
  matmul_cases(g, "fp32");
  matmul_cases(gb, "bf16");
}

}  // namespace rift::selftest
