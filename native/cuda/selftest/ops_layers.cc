// Self-test groups: embedding, RMSNorm, RoPE, SwiGLU, kv_write, bf16 storage; then the flat ops (add, scale, zero,
// sumsq, adamw). Ids and positions are the caller's to check on the host (model/ops.h): the CUDA forward ops do
// not read them back, so only embedding_backward (which groups tokens by id on the host) throws for a bad id.
#include <cstring>

#include "cuda/device_mem.h"
#include "cuda/selftest/harness.h"

namespace rift::selftest {

void test_layers(OpsBackend& c, OpsBackend& g) {
  {  // embedding with many repeated ids: bitwise (same order of additions per id)
    const int64_t T = 300, V = 50, C = 70;
    I ids(T);
    for (auto& i : ids) i = int32_t(rng()() % 7 == 0 ? 3 : rng()() % V);
    F wte = rnd(V * C), out(T * C), dO = rnd(T * C), dw = rnd(V * C);
    Dev gi(ids), gw(wte), go(out), gdO(dO), gdw(dw);
    c.embedding_forward(out.data(), ids.data(), wte.data(), T, V, C);
    g.embedding_forward(go.f(), gi.i(), gw.f(), T, V, C);
    cmp("embedding_forward", out, go.get(), 0);
    c.embedding_backward(dw.data(), dO.data(), ids.data(), T, V, C);
    g.embedding_backward(gdw.f(), gdO.f(), gi.i(), T, V, C);
    cmp("embedding_backward (bitwise)", dw, gdw.get(), 0);
    for (int32_t bad : {-1, int32_t(V)}) {
      I b2 = ids;
      b2[17] = bad;
      Dev gb(b2);
      const F before = gdw.get();
      expect_argerror("embedding_backward id " + std::to_string(bad),
                      [&] { g.embedding_backward(gdw.f(), gdO.f(), gb.i(), T, V, C); });
      cmp("embedding_backward with a bad id writes nothing", before, gdw.get(), 0);
    }
  }
  for (int64_t C : {1, 7, 896, 1536})  // rmsnorm, aliasing out = inp and dinp = dout
    for (int acc = 0; acc < 2; ++acc) {
      const int64_t T = 45;
      F x = rnd(T * C, 2), w = rnd(C), out(T * C), r(T), dO = rnd(T * C), dx = rnd(T * C), dw = rnd(C);
      Dev gx(x), gw(w), go(out), gr(r), gdO(dO), gdx(dx), gdw(dw);
      const std::string s = " C=" + std::to_string(C) + " acc=" + std::to_string(acc);
      c.rmsnorm_forward(out.data(), r.data(), x.data(), w.data(), T, C, 1e-6f);
      g.rmsnorm_forward(go.f(), gr.f(), gx.f(), gw.f(), T, C, 1e-6f);
      cmp("rmsnorm_forward" + s, out, go.get(), 2e-6);
      cmp("rmsnorm_forward rstd" + s, r, gr.get(), 2e-6);
      c.rmsnorm_backward(dx.data(), dw.data(), dO.data(), x.data(), w.data(), r.data(), T, C, acc);
      g.rmsnorm_backward(gdx.f(), gdw.f(), gdO.f(), gx.f(), gw.f(), gr.f(), T, C, acc);
      cmp("rmsnorm_backward dinp" + s, dx, gdx.get(), 1e-5);
      cmp("rmsnorm_backward dweight" + s, dw, gdw.get(), 1e-5);
      Dev ax(x);
      g.rmsnorm_forward(ax.f(), gr.f(), ax.f(), gw.f(), T, C, 1e-6f);
      cmp("rmsnorm_forward in place" + s, out, ax.get(), 2e-6);
      F dx2(T * C);
      Dev adO(dO);
      c.rmsnorm_backward(dx2.data(), nullptr, dO.data(), x.data(), w.data(), r.data(), T, C, false);
      g.rmsnorm_backward(adO.f(), nullptr, adO.f(), gx.f(), gw.f(), gr.f(), T, C, false);
      cmp("rmsnorm_backward dinp aliases dout" + s, dx2, adO.get(), 1e-5);
    }
  for (int64_t D : {2, 64, 128})  // rope: positions past the CPU's cached table, in place, accumulate
    for (float theta : {1e4f, 1e6f})
      for (int acc = 0; acc < 2; ++acc) {
        const int64_t T = 40, H = 3;
        I pos(T);
        for (int64_t t = 0; t < T; ++t) pos[t] = int32_t(t % 3 == 0 ? 70000 + t : t * 37);
        F x = rnd(T * H * D), out(T * H * D), dx = rnd(T * H * D);
        Dev gp(pos), gx(x), go(out), gdx(dx);
        const std::string s =
            " D=" + std::to_string(D) + " theta=" + (theta > 1e5f ? "1e6" : "1e4") + " acc=" + std::to_string(acc);
        c.rope_forward(out.data(), x.data(), pos.data(), T, H, D, theta);
        g.rope_forward(go.f(), gx.f(), gp.i(), T, H, D, theta);
        cmp("rope_forward" + s, out, go.get(), 1e-6);
        c.rope_backward(dx.data(), x.data(), pos.data(), T, H, D, theta, acc);
        g.rope_backward(gdx.f(), gx.f(), gp.i(), T, H, D, theta, acc);
        cmp("rope_backward" + s, dx, gdx.get(), 1e-6);
        g.rope_forward(gx.f(), gx.f(), gp.i(), T, H, D, theta);
        cmp("rope_forward in place" + s, out, gx.get(), 1e-6);
      }
  for (int64_t n : {1, 1000, 1000003}) {  // swiglu (also in place: out = gate, dgate = dout)
    F a = rnd(n, 4), b = rnd(n), o(n), dO = rnd(n), dg = rnd(n), du = rnd(n);
    Dev ga(a), gb(b), go(o), gdO(dO), gdg(dg), gdu(du);
    const std::string s = " n=" + std::to_string(n);
    c.swiglu_forward(o.data(), a.data(), b.data(), n);
    g.swiglu_forward(go.f(), ga.f(), gb.f(), n);
    cmp("swiglu_forward" + s, o, go.get(), 2e-6);
    for (int acc = 0; acc < 2; ++acc) {
      c.swiglu_backward(dg.data(), du.data(), dO.data(), a.data(), b.data(), n, acc);
      g.swiglu_backward(gdg.f(), gdu.f(), gdO.f(), ga.f(), gb.f(), n, acc);
      cmp("swiglu_backward dgate acc=" + std::to_string(acc) + s, dg, gdg.get(), 2e-6);
      cmp("swiglu_backward dup acc=" + std::to_string(acc) + s, du, gdu.get(), 2e-6);
    }
    F dg2(n), du2(n);
    Dev adO(dO);
    c.swiglu_backward(dg2.data(), du2.data(), dO.data(), a.data(), b.data(), n, false);
    g.swiglu_backward(adO.f(), gdu.f(), adO.f(), ga.f(), gb.f(), n, false);
    cmp("swiglu_backward dgate aliases dout" + s, dg2, adO.get(), 2e-6);
    Dev ag(a);
    g.swiglu_forward(ag.f(), ag.f(), gb.f(), n);
    cmp("swiglu_forward out aliases gate" + s, o, ag.get(), 2e-6);
    // bf16 storage: RNE with NaN kept; widening exact. A misaligned start exercises the scalar path.
    F src = rnd(n + 1, 3);
    src[0] = NAN;
    std::vector<uint16_t> hc(size_t(n + 1)), hg(size_t(n + 1));
    Dev gs(src), g16(size_t(n + 1) * 2), gback(size_t(n + 1) * 4);
    c.to_bf16(hc.data(), src.data(), n + 1);
    g.to_bf16(static_cast<uint16_t*>(g16.p), gs.f(), n + 1);
    cuda::copy_to_host(hg.data(), g16.p, hg.size() * 2);
    check("to_bf16 (bitwise)" + s, std::memcmp(hc.data(), hg.data(), hg.size() * 2) == 0);
    F wc(size_t(n + 1));
    c.from_bf16(wc.data(), hc.data(), n + 1);
    g.from_bf16(gback.f(), static_cast<uint16_t*>(g16.p), n + 1);
    cmp("from_bf16 (bitwise)" + s, wc, gback.get(), 0);
    c.to_bf16(hc.data(), src.data() + 1, n);
    g.to_bf16(static_cast<uint16_t*>(g16.p), gs.f() + 1, n);
    cuda::copy_to_host(hg.data(), g16.p, size_t(n) * 2);
    check("to_bf16 from a misaligned start (bitwise)" + s, std::memcmp(hc.data(), hg.data(), size_t(n) * 2) == 0);
  }
  {  // kv_write: B rows scattered into cache slots at their own positions
    const int64_t B = 3, T = 4, Tmax = 20, width = 24, rows = 5;
    const I slot = {4, 0, 2};
    I pos(B * T);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < T; ++t) pos[b * T + t] = int32_t(3 * b + t + (b == 1 ? 9 : 0));
    F cache = rnd(rows * Tmax * width), x = rnd(B * T * width);
    Dev gc(cache), gx(x), gs(slot), gp(pos);
    c.kv_write(cache.data(), x.data(), slot.data(), pos.data(), B, T, Tmax, width);
    g.kv_write(gc.f(), gx.f(), gs.i(), gp.i(), B, T, Tmax, width);
    cmp("kv_write (bitwise; other rows untouched)", cache, gc.get(), 0);
  }
}

void test_flat(OpsBackend& c, OpsBackend& g) {
  for (int64_t n : {1, 5, 1000, 4096, 4097, 1000003}) {
    const std::string s = " n=" + std::to_string(n);
    F a = rnd(n, 4), b = rnd(n), o(n);
    Dev ga(a), gb(b), go(o);
    c.add(o.data(), a.data(), b.data(), n);
    g.add(go.f(), ga.f(), gb.f(), n);
    cmp("add" + s, o, go.get(), 0);
    c.scale(o.data(), 0.37f, n);
    g.scale(go.f(), 0.37f, n);
    cmp("scale" + s, o, go.get(), 0);
    if (n > 1) {  // misaligned pointers take the scalar path: same values
      c.add(o.data() + 1, a.data() + 1, b.data(), n - 1);
      g.add(go.f() + 1, ga.f() + 1, gb.f(), n - 1);
      cmp("add misaligned" + s, o, go.get(), 0);
      c.scale(o.data() + 1, -1.5f, n - 1);
      g.scale(go.f() + 1, -1.5f, n - 1);
      cmp("scale misaligned" + s, o, go.get(), 0);
    }
    // sumsq: one fixed summation order on both (docs/design.md §4.2): equal bit for bit, and run to run.
    const double sc = c.sumsq(a.data(), n), sg = g.sumsq(ga.f(), n), sg2 = g.sumsq(ga.f(), n);
    check("sumsq equals the CPU twin bitwise" + s, sc == sg && sg == sg2,
          "cpu " + std::to_string(sc) + " gpu " + std::to_string(sg) + " again " + std::to_string(sg2));
    if (n > 1) {
      const double mc = c.sumsq(a.data() + 1, n - 1), mg = g.sumsq(ga.f() + 1, n - 1);
      check("sumsq from a misaligned start equals the CPU twin" + s, mc == mg);
    }
    g.zero(go.f(), n);
    cmp("zero" + s, F(size_t(n), 0.f), go.get(), 0);
    for (double beta1 : {0.9, 0.3})
      for (int64_t step : {1, 10}) {
        AdamWParams p;
        p.lr = 1e-3, p.beta1 = beta1, p.step = step, p.grad_scale = 0.5f, p.weight_decay = 0.1;
        F prm = rnd(n), m = rnd(n, 0.1f), v = rnd(n, 0.1f);
        for (auto& x : v) x = x * x;
        Dev gp(prm), gm(m), gv(v);
        c.adamw(prm.data(), b.data(), m.data(), v.data(), n, p);
        g.adamw(gp.f(), gb.f(), gm.f(), gv.f(), n, p);
        const std::string t =
            " beta1=" + std::string(beta1 > 0.5 ? "0.9" : "0.3") + " step=" + std::to_string(step) + s;
        cmp("adamw param" + t, prm, gp.get(), 1e-6);
        cmp("adamw m" + t, m, gm.get(), 1e-6);
        cmp("adamw v" + t, v, gv.get(), 1e-6);
      }
  }
}

}  // namespace rift::selftest
