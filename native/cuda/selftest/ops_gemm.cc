// Self-test groups: memory and copies, gemm (fp32, tf32), matmul_*, the BF16 instances and the weights' bf16 copy.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>

#include "cuda/device_mem.h"
#include "cuda/selftest/harness.h"

namespace rift::selftest {
namespace {

using Shape = std::array<int64_t, 3>;
const std::vector<Shape> kShapes = {{1, 1, 1}, {7, 13, 5}, {64, 48, 33}, {129, 257, 65}, {3, 1, 300}};

// One gemm case on both backends: C (M, ldc) with a padding column that is not compared.
void gemm_case(OpsBackend& c, OpsBackend& g, const std::string& tag, double tol, const Shape& s, int ta, int tb,
               float beta, OpsBackend* g32 = nullptr) {
  const int64_t M = s[0], N = s[1], K = s[2];
  const int64_t lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 2, ldc = N + 1;
  F A = rnd((ta ? K : M) * lda), B = rnd((tb ? N : K) * ldb), C = rnd(M * ldc);
  Dev dA(A), dB(B), dC(beta == 0 ? F(C.size(), NAN) : C), dF(C);
  c.gemm(ta, tb, M, N, K, 0.7f, A.data(), lda, B.data(), ldb, beta, C.data(), ldc);
  g.gemm(ta, tb, M, N, K, 0.7f, dA.f(), lda, dB.f(), ldb, beta, dC.f(), ldc);
  F G = dC.get();
  for (int64_t m = 0; m < M; ++m) G[m * ldc + N] = C[m * ldc + N] = 0;  // padding column
  const std::string n = "gemm " + tag + " M,N,K=" + dims({M, N, K}) + " tA=" + std::to_string(ta) +
                        " tB=" + std::to_string(tb) + " beta=" + (beta == 0 ? "0" : "1.3");
  cmp(n, C, G, tol);
  if (!g32 || beta != 0 || M * N * K < 100) return;
  // The bf16 path really ran: its result is not the fp32 instance's (rounded operands: ~2^-9 relative per product).
  g32->gemm(ta, tb, M, N, K, 0.7f, dA.f(), lda, dB.f(), ldb, beta, dF.f(), ldc);
  F GF = dF.get();
  double mx = 0, diff = 0;
  for (int64_t m = 0; m < M; ++m)
    for (int64_t j = 0; j < N; ++j) {
      const size_t i = size_t(m * ldc + j);
      mx = std::max(mx, std::fabs(double(G[i]))), diff = std::max(diff, std::fabs(double(G[i]) - GF[i]));
    }
  check(n + " differs from fp32", diff > 1e-4 * mx, "by " + std::to_string(diff) + " of max " + std::to_string(mx));
}

void matmul_cases(OpsBackend& c, OpsBackend& g, const std::string& tag, OpsBackend* g32) {
  for (int acc = 0; acc < 2; ++acc)
    for (int bias = 0; bias < 2; ++bias) {
      const int64_t M = 37, N = 24, K = 50;
      F x = rnd(M * K), w = rnd(N * K), b = rnd(N), o = rnd(M * N), dO = rnd(M * N), dx = rnd(M * K), dw = rnd(N * K),
        db = rnd(N);
      Dev gx(x), gw(w), gb(b), go(o), gdO(dO), gdx(dx), gdw(dw), gdb(db), gdbF(db);
      const std::string s = tag + " acc=" + std::to_string(acc) + " bias=" + std::to_string(bias);
      c.matmul_forward(o.data(), x.data(), w.data(), bias ? b.data() : nullptr, M, N, K, acc);
      g.matmul_forward(go.f(), gx.f(), gw.f(), bias ? gb.f() : nullptr, M, N, K, acc);
      cmp("matmul_forward " + s, o, go.get(), 1e-5);
      c.matmul_backward(dx.data(), dw.data(), bias ? db.data() : nullptr, dO.data(), x.data(), w.data(), M, N, K, acc);
      g.matmul_backward(gdx.f(), gdw.f(), bias ? gdb.f() : nullptr, gdO.f(), gx.f(), gw.f(), M, N, K, acc);
      cmp("matmul_backward dinp " + s, dx, gdx.get(), 1e-5);
      cmp("matmul_backward dweight " + s, dw, gdw.get(), 1e-5);
      cmp("matmul_backward dbias " + s, db, gdb.get(), 1e-6);
      if (g32 && bias) {  // dbias is the fp32 column sum of the unrounded dout in both instances: bitwise
        g32->matmul_backward(nullptr, nullptr, gdbF.f(), gdO.f(), gx.f(), gw.f(), M, N, K, acc);
        cmp("matmul_backward dbias " + s + " == fp32 instance's (bitwise)", gdbF.get(), gdb.get(), 0);
      }
    }
}

}  // namespace

void test_memory(OpsBackend& c, OpsBackend& g) {
  check("name() is cuda", std::strcmp(g.name(), "cuda") == 0 && std::strcmp(c.name(), "cpu") == 0);
  check("space() is Device", g.space() == MemSpace::Device);
  const int64_t before = mem_total(MemSpace::Device).current;
  float* p = g.alloc(MemCategory::Workspace, 1000);
  check("alloc counts its bytes", mem_total(MemSpace::Device).current - before == 4000);
  check("alloc is 256-byte aligned", reinterpret_cast<uintptr_t>(p) % 256 == 0);
  F z(1000);
  g.download(z.data(), p, 4000);
  cmp("alloc zero-fills", F(1000, 0.f), z, 0);
  const F x = rnd(1000);
  g.upload(p, x.data(), 4000);
  g.download(z.data(), p, 4000);
  cmp("upload / download round trip (bitwise)", x, z, 0);
  // copy2d: 7 rows of 9 floats from pitch 13 floats to pitch 11 floats; the CPU twin does the same on host memory.
  float* q = g.alloc(MemCategory::Workspace, 100);
  F hc(100, 0.f);
  c.copy2d(hc.data(), 11 * 4, x.data(), 13 * 4, 9 * 4, 7);
  g.copy2d(q, 11 * 4, p, 13 * 4, 9 * 4, 7);
  F hg(100);
  g.download(hg.data(), q, 400);
  cmp("copy2d (pitched rows; the gaps stay zero)", hc, hg, 0);
  g.release(q, MemCategory::Workspace, 100);
  g.release(p, MemCategory::Workspace, 1000);
  check("release returns the bytes", mem_total(MemSpace::Device).current == before);
  check("alloc(0) is null", g.alloc(MemCategory::Workspace, 0) == nullptr);
  check("set_gemm refuses an unknown implementation", !g.set_gemm("openblas") && g.info().gemm == "cublas");
  check("set_row_invariant is not promised on CUDA (returns false)", !g.set_row_invariant(true));
  g.set_row_invariant(false);
}

void test_gemm(OpsBackend& c, OpsBackend& g) {
  for (const char* impl : {"cublas", "cublas-tf32"}) {
    check(std::string("set_gemm ") + impl, g.set_gemm(impl) && g.info().gemm == impl);
    const double tol = std::string(impl) == "cublas" ? 1e-5 : 1e-2;
    for (const Shape& s : kShapes)
      for (int ta = 0; ta < 2; ++ta)
        for (int tb = 0; tb < 2; ++tb)
          for (float beta : {0.f, 1.3f}) gemm_case(c, g, impl, tol, s, ta, tb, beta);
  }
  g.set_gemm("cublas");
  {  // alpha = 0: C = beta·C and A, B (NaN here) are not read
    F A(12, NAN), B(12, NAN), C = rnd(9);
    Dev dA(A), dB(B), dC(C);
    c.gemm(false, false, 3, 3, 4, 0.f, A.data(), 4, B.data(), 3, 0.5f, C.data(), 3);
    g.gemm(false, false, 3, 3, 4, 0.f, dA.f(), 4, dB.f(), 3, 0.5f, dC.f(), 3);
    cmp("gemm alpha=0 with NaN operands scales C", C, dC.get(), 0);
  }
  matmul_cases(c, g, "fp32", nullptr);
}

void test_gemm_bf16(OpsBackend& c, OpsBackend& g, OpsBackend& g32) {
  check("bf16 instances report gemm_dtype BF16",
        g.info().gemm_dtype == DType::BF16 && c.info().gemm_dtype == DType::BF16);
  for (const Shape& s : kShapes)
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb)
        for (float beta : {0.f, 1.3f}) gemm_case(c, g, "bf16", 1e-5, s, ta, tb, beta, &g32);
  matmul_cases(c, g, "bf16", &g32);
  {  // operand rounding: ties to even, NaN, Inf, overflow to Inf
    F A = {1.f + 0.00390625f, 1.f + 3 * 0.00390625f, NAN, INFINITY, 3.4028234663852886e38f, 0.1f}, one = {1.f};
    F want = {1.f, 1.015625f, NAN, INFINITY, INFINITY, 0.10009765625f};
    Dev dA(A), d1(one), dC(F(A.size(), 0.f));
    g.gemm(false, false, int64_t(A.size()), 1, 1, 1.f, dA.f(), 1, d1.f(), 1, 0.f, dC.f(), 1);
    cmp("bf16 operand rounding (ties to even, NaN, Inf, overflow)", want, dC.get(), 0);
  }
  // register_weights: a GEMM whose B lies in the region reads the bf16 copy, which must follow every write the
  // backend makes there (upload, copy2d, adamw) and note_written; the result equals the unregistered rounding.
  {
    const int64_t M = 17, N = 24, K = 40;
    float* w = g.alloc(MemCategory::Params, size_t(N * K));
    g.register_weights(w, size_t(N * K), MemCategory::Params);
    F x = rnd(M * K), wh = rnd(N * K), out(M * N);
    Dev gx(x), gout(out);
    auto round_trip = [&](const std::string& what) {
      F cw(size_t(N * K)), co(size_t(M * N));
      g.download(cw.data(), w, cw.size() * 4);
      c.matmul_forward(co.data(), x.data(), cw.data(), nullptr, M, N, K, false);
      g.matmul_forward(gout.f(), gx.f(), w, nullptr, M, N, K, false);
      cmp("weights' bf16 copy follows " + what, co, gout.get(), 1e-5);
    };
    g.upload(w, wh.data(), wh.size() * 4);
    round_trip("upload");
    Dev src(rnd(N * K));
    g.copy2d(w, size_t(K) * 4, src.f(), size_t(K) * 4, size_t(K) * 4, size_t(N));
    round_trip("copy2d");
    Dev grad(rnd(N * K)), m(F(size_t(N * K), 0.f)), v(F(size_t(N * K), 0.f));
    AdamWParams p;
    p.lr = 0.05;
    g.adamw(w, grad.f(), m.f(), v.f(), N * K, p);
    round_trip("adamw");
    const F other = rnd(N * K);
    cuda::copy_to_device(w, other.data(), other.size() * 4);  // a write the backend did not make ...
    g.note_written(w, other.size() * 4);                      // ... announced
    round_trip("note_written");
    g.release(w, MemCategory::Params, size_t(N * K));
  }
}

}  // namespace rift::selftest
