// N-API binding of the decoder ops (model/ops.h): exports.ops.<op>(options), synchronous, on any backend.
// Every argument is checked before any data is touched: array kinds (TypeError), integer ranges, exact
// lengths from the shape arguments, and overlaps between outputs and inputs (RangeError), each error
// naming its argument. Data-dependent checks (token ids, positions) happen in the backend (ArgError → RangeError).
//
// Backend selection, on every op (read with the op's own keys, before any data pointer is taken):
//   device: 'cpu' (default) | 'cuda';  precision: 'fp32' (default) | 'bf16' (the Model's word and spellings; the
//   BF16 instance of cpu_ops() / cuda_ops(), model/ops.h: gemm, matmulForward, matmulBackward round both operands
//   to bf16, and attention runs its products on bf16 operands; the other ops are fp32). gemmDtype ('f32' | 'bf16')
//   is the deprecated name of precision, still accepted (with 'fp32' too); both given must agree (RangeError).
// device 'cuda' without a usable CUDA backend (no device, no loadable cuBLAS, or an addon built without CUDA)
// throws an Error with code 'ERR_RIFT_NO_CUDA' whose message starts with "device: ".
//
// The CUDA backend computes on device memory: Staging (below) copies every host array the op touches into a
// device buffer of the backend's own (OpsBuffer, Workspace), runs the op and copies every output back. Arrays
// that are the same host memory (the aliasing the ops allow: out = inp, dinp = dout) share one device buffer.
#include "napi/ops.h"

#include <algorithm>
#include <string>
#include <vector>

#include "backends/registry.h"
#include "core/checks.h"
#include "model/ops.h"
#include "napi/args.h"
#include "napi/ops_args.h"
#include "napi/ops_common.h"
#include "napi/ops_matmul.h"

namespace rift::napi {
namespace {

using namespace ops_common;

const char* dtype_name(DType d) { return d == DType::BF16 ? "bf16" : "fp32"; }

// info(options?): the selected backend's name, GEMM implementation and operand dtype, threads, BLAS library.
Napi::Value Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  OpsBackend* b = &cpu_ops();
  if (info.Length() >= 1 && !info[0].IsUndefined()) {
    Opts o = opts(info, {});
    b = &be(o);
  }
  const OpsInfo i = b->info();
  Napi::Object o = Napi::Object::New(env);
  o.Set("backend", b->name());
  o.Set("gemm", i.gemm);
  o.Set("precision", dtype_name(i.gemm_dtype));
  o.Set("threads", i.threads);
  o.Set("blasAvailable", i.blas_available);
  o.Set("blasPath", i.blas_path);
  return o;
}

// devices(): the devices an op may name: ['cpu'] or ['cpu', 'cuda'] (a CUDA device and a loadable cuBLAS).
Napi::Value Devices(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array a = Napi::Array::New(env);
  a.Set(uint32_t(0), "cpu");
  if (cuda_unusable_reason(DType::F32).empty()) a.Set(uint32_t(1), "cuda");
  return a;
}

// setGemm(impl, options?): 'builtin' | 'openblas' on the CPU (shared by both CPU instances), 'cublas' |
// 'cublas-tf32' on CUDA (per instance; the bf16 instance's GEMMs are bf16 either way).
Napi::Value SetGemm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  OpsBackend* b = &cpu_ops();
  if (info.Length() >= 2 && !info[1].IsUndefined()) {
    Opts o = opts(info, {}, 1);
    b = &be(o);
  }
  const bool cpu = b->space() == MemSpace::Host;
  const char* a = cpu ? "builtin" : "cublas";
  const char* c = cpu ? "openblas" : "cublas-tf32";
  const std::string allowed = std::string("must be '") + a + "' or '" + c + "'";
  if (info.Length() < 1 || !info[0].IsString()) throw_type(env, "impl", allowed);
  const std::string s = info[0].As<Napi::String>().Utf8Value();
  if (s != a && s != c) throw_range(env, "impl", allowed + " on device '" + b->name() + "'");
  bool ok = false;
  guarded(env, [&] { ok = b->set_gemm(s); });
  return Napi::Boolean::New(env, ok);
}

Napi::Value Gemm(const Napi::CallbackInfo& info) {
  Opts o = opts(info, {"transA", "transB", "M", "N", "K", "alpha", "beta", "lda", "ldb", "ldc", "A", "B", "C"});
  OpsBackend& ops = be(o);
  Napi::Env env = o.env();
  const bool ta = o.boolean("transA"), tb = o.boolean("transB");
  const int64_t M = o.integer("M", 0), N = o.integer("N", 0), K = o.integer("K", 0);
  const double alpha = o.number("alpha", 1), beta = o.number("beta", 0);
  const int64_t ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;  // stored rows / columns
  const int64_t lda = o.integer_or("lda", std::max<int64_t>(1, ac), std::max<int64_t>(1, ac));
  const int64_t ldb = o.integer_or("ldb", std::max<int64_t>(1, bc), std::max<int64_t>(1, bc));
  const int64_t ldc = o.integer_or("ldc", std::max<int64_t>(1, N), std::max<int64_t>(1, N));
  auto A = o.f32("A"), B = o.f32("B"), C = o.f32("C");
  auto need = [&](const Span<float>& s, int64_t rows, int64_t cols, int64_t ld, const char* shape) {
    const int64_t n = rows == 0 || cols == 0 ? 0 : product(env, s.name, {rows - 1, ld}) + cols;
    if (s.length < n)
      throw_range(env, s.name,
                  std::string("length must be at least ") + shape + " = " + std::to_string(n) + " (got " +
                      std::to_string(s.length) + ")");
  };
  need(A, ar, ac, lda, ta ? "(K - 1) × lda + M" : "(M - 1) × lda + K");
  need(B, br, bc, ldb, tb ? "(N - 1) × ldb + K" : "(K - 1) × ldb + N");
  need(C, M, N, ldc, "(M - 1) × ldc + N");
  disjoint(env, C, A);
  disjoint(env, C, B);
  run(env, ops, [&](Staging& st) {
    ops.gemm(ta, tb, M, N, K, float(alpha), st.in(A), lda, st.in(B), ldb, float(beta), st.out(C), ldc);
  });
  return env.Undefined();
}

Napi::Value MatmulForward(const Napi::CallbackInfo& info) {
  return matmul_forward_binding<float>(info, [](OpsBackend& ops, auto... a) { ops.matmul_forward(a...); });
}

Napi::Value MatmulBackward(const Napi::CallbackInfo& info) {
  return matmul_backward_binding<float>(info, [](OpsBackend& ops, auto... a) { ops.matmul_backward(a...); });
}

Napi::Value EmbeddingForward(const Napi::CallbackInfo& info) {
  Opts o = opts(info, {"T", "V", "C", "out", "ids", "wte"});
  OpsBackend& ops = be(o);
  Napi::Env env = o.env();
  const int64_t T = o.integer("T", 0), V = o.integer("V", 1), C = o.integer("C", 0);
  auto out = o.f32("out"), wte = o.f32("wte");
  auto ids = o.i32("ids");
  expect_len(env, out, {T, C}, "T × C");
  expect_len(env, ids, {T}, "T");
  expect_len(env, wte, {V, C}, "V × C");
  disjoint(env, out, wte);
  disjoint(env, out, ids);
  guarded(env, [&] { check_token_ids(ids.data, ids.length, V); });  // on the host: CUDA never reads ids back
  run(env, ops, [&](Staging& st) { ops.embedding_forward(st.out(out), st.in(ids), st.in(wte), T, V, C); });
  return env.Undefined();
}

Napi::Value EmbeddingBackward(const Napi::CallbackInfo& info) {
  Opts o = opts(info, {"T", "V", "C", "dwte", "dout", "ids"});
  OpsBackend& ops = be(o);
  Napi::Env env = o.env();
  const int64_t T = o.integer("T", 0), V = o.integer("V", 1), C = o.integer("C", 0);
  auto dwte = o.f32("dwte"), dout = o.f32("dout");
  auto ids = o.i32("ids");
  expect_len(env, dwte, {V, C}, "V × C");
  expect_len(env, dout, {T, C}, "T × C");
  expect_len(env, ids, {T}, "T");
  disjoint(env, dwte, dout);
  disjoint(env, dwte, ids);
  guarded(env, [&] { check_token_ids(ids.data, ids.length, V); });  // on the host: CUDA never reads ids back
  run(env, ops, [&](Staging& st) { ops.embedding_backward(st.out(dwte), st.in(dout), st.in(ids), T, V, C); });
  return env.Undefined();
}

Napi::Value RmsnormForward(const Napi::CallbackInfo& info) {
  Opts o = opts(info, {"T", "C", "eps", "out", "rstd", "inp", "weight"});
  OpsBackend& ops = be(o);
  Napi::Env env = o.env();
  const int64_t T = o.integer("T", 0), C = o.integer("C", 1);
  const double eps = o.number("eps", 1e-6, 0, 1);
  auto out = o.f32("out"), rstd = o.f32("rstd"), inp = o.f32("inp"), w = o.f32("weight");
  expect_len(env, out, {T, C}, "T × C");
  expect_len(env, rstd, {T}, "T");
  expect_len(env, inp, {T, C}, "T × C");
  expect_len(env, w, {C}, "C");
  disjoint(env, out, inp, true);
  disjoint(env, out, w);
  disjoint(env, out, rstd);
  disjoint(env, rstd, inp);
  disjoint(env, rstd, w);
  run(env, ops,
      [&](Staging& st) { ops.rmsnorm_forward(st.out(out), st.out(rstd), st.in(inp), st.in(w), T, C, float(eps)); });
  return env.Undefined();
}

Napi::Value RmsnormBackward(const Napi::CallbackInfo& info) {
  Opts o = opts(info, {"T", "C", "accumulate", "dinp", "dweight", "dout", "inp", "weight", "rstd"});
  OpsBackend& ops = be(o);
  Napi::Env env = o.env();
  const int64_t T = o.integer("T", 0), C = o.integer("C", 1);
  const bool acc = o.boolean("accumulate");
  auto dinp = o.f32("dinp", true), dw = o.f32("dweight", true);
  auto dout = o.f32("dout"), inp = o.f32("inp"), w = o.f32("weight"), rstd = o.f32("rstd");
  expect_len(env, dinp, {T, C}, "T × C");
  expect_len(env, dw, {C}, "C");
  expect_len(env, dout, {T, C}, "T × C");
  expect_len(env, inp, {T, C}, "T × C");
  expect_len(env, w, {C}, "C");
  expect_len(env, rstd, {T}, "T");
  disjoint(env, dinp, dout, !acc);
  for (const auto* x : {&inp, &w, &rstd, &dw}) disjoint(env, dinp, *x);
  for (const auto* x : {&dout, &inp, &w, &rstd}) disjoint(env, dw, *x);
  run(env, ops, [&](Staging& st) {
    ops.rmsnorm_backward(st.out(dinp), st.out(dw), st.in(dout), st.in(inp), st.in(w), st.in(rstd), T, C, acc);
  });
  return env.Undefined();
}

Napi::Value Rope(const Napi::CallbackInfo& info, bool backward) {
  Opts o = opts(info, {"T", "H", "D", "theta", "accumulate", "out", "inp", "dinp", "dout", "positions"});
  OpsBackend& ops = be(o);
  Napi::Env env = o.env();
  const int64_t T = o.integer("T", 0), H = o.integer("H", 0), D = o.integer("D", 2);
  if (D % 2) throw_range(env, "D", "must be even");
  const double theta = o.number("theta", 10000, 1e-30, 1e30);
  const bool acc = backward && o.boolean("accumulate");
  auto out = o.f32(backward ? "dinp" : "out"), inp = o.f32(backward ? "dout" : "inp");
  auto pos = o.i32("positions");
  expect_len(env, out, {T, H, D}, "T × H × D");
  expect_len(env, inp, {T, H, D}, "T × H × D");
  expect_len(env, pos, {T}, "T");
  disjoint(env, out, inp, !acc);
  disjoint(env, out, pos);
  guarded(env, [&] { check_positions(pos.data, pos.length); });  // on the host, as ids
  run(env, ops, [&](Staging& st) {
    float* y = st.out(out);
    const float* x = st.in(inp);
    const int32_t* p = st.in(pos);
    if (backward)
      ops.rope_backward(y, x, p, T, H, D, float(theta), acc);
    else
      ops.rope_forward(y, x, p, T, H, D, float(theta));
  });
  return env.Undefined();
}
Napi::Value RopeForward(const Napi::CallbackInfo& info) { return Rope(info, false); }
Napi::Value RopeBackward(const Napi::CallbackInfo& info) { return Rope(info, true); }

void heads(const Opts& o, int64_t* Hq, int64_t* Hkv, int64_t* D) {
  *Hq = o.integer("Hq", 1);
  *Hkv = o.integer("Hkv", 1);
  *D = o.integer("D", 1);
  if (*Hq % *Hkv) throw_range(o.env(), "Hq", "must be a multiple of Hkv");
}

// A host int32 array as a Span (for Staging).
Span<int32_t> span_of(std::vector<int32_t>& v, const char* name) {
  Span<int32_t> s;
  s.data = v.data();
  s.length = int64_t(v.size());
  s.present = true;
  s.name = name;
  return s;
}

// attentionForward: the scalar `past`, or a batched KV cache — rowPast (B: each row's past) and / or rowSlot (B:
// the k / v row each batch row reads; k and v then hold any number of rows of Tkv positions).
Napi::Value AttentionForward(const Napi::CallbackInfo& info) {
  Opts o = opts(info, {"B", "Tq", "Tkv", "past", "Hq", "Hkv", "D", "out", "lse", "q", "k", "v", "rowPast", "rowSlot"});
  OpsBackend& ops = be(o);
  Napi::Env env = o.env();
  int64_t Hq, Hkv, D;
  const int64_t B = o.integer("B", 0), Tq = o.integer("Tq", 0);
  if (o.has("past") && o.has("rowPast")) throw_range(env, "rowPast", "give past or rowPast, not both");
  int64_t past = o.integer_or("past", 0, 0);
  heads(o, &Hq, &Hkv, &D);
  auto rp = o.typed<int32_t>("rowPast", true), rs = o.typed<int32_t>("rowSlot", true);
  expect_len(env, rp, {B}, "B");
  expect_len(env, rs, {B}, "B");
  for (int64_t b = 0; b < rp.length; ++b) {
    if (rp.data[b] < 0)
      throw_range(env, "rowPast",
                  "rowPast[" + std::to_string(b) + "] = " + std::to_string(rp.data[b]) + " is negative");
    past = std::max<int64_t>(past, rp.data[b]);
  }
  const int64_t Tkv = o.integer_or("Tkv", past + Tq, 0);
  if (Tkv < past + Tq)
    throw_range(env, rp.present ? "rowPast" : "Tkv", "Tkv must be >= past + Tq = " + std::to_string(past + Tq));
  auto out = o.f32("out"), lse = o.f32("lse", true), q = o.f32("q"), k = o.f32("k"), v = o.f32("v");
  expect_len(env, out, {B, Tq, Hq, D}, "B × Tq × Hq × D");
  expect_len(env, lse, {B, Hq, Tq}, "B × Hq × Tq");
  expect_len(env, q, {B, Tq, Hq, D}, "B × Tq × Hq × D");
  int64_t Bkv = B;  // rows of the k / v buffers
  if (rs.present) {
    const int64_t row = product(env, "k", {Tkv, Hkv, D});
    if (row == 0 || k.length % row != 0 || k.length == 0)
      throw_range(env, "k",
                  "length must be a positive multiple of Tkv × Hkv × D = " + std::to_string(row) + " (got " +
                      std::to_string(k.length) + ")");
    Bkv = k.length / row;
    for (int64_t b = 0; b < B; ++b)
      if (rs.data[b] < 0 || rs.data[b] >= Bkv)
        throw_range(env, "rowSlot",
                    "rowSlot[" + std::to_string(b) + "] = " + std::to_string(rs.data[b]) + " is outside [0, " +
                        std::to_string(Bkv) + ") (the rows of k)");
  }
  expect_len(env, k, {Bkv, Tkv, Hkv, D}, rs.present ? "rows × Tkv × Hkv × D" : "B × Tkv × Hkv × D");
  expect_len(env, v, {Bkv, Tkv, Hkv, D}, rs.present ? "rows of k × Tkv × Hkv × D" : "B × Tkv × Hkv × D");
  for (const auto* x : {&q, &k, &v, &lse}) disjoint(env, out, *x);
  for (const auto* x : {&q, &k, &v}) disjoint(env, lse, *x);
  for (const auto* x : {&rp, &rs}) {
    disjoint(env, out, *x);
    disjoint(env, lse, *x);
  }
  const bool batched = rp.present || rs.present;
  std::vector<int32_t> pasts(size_t(batched ? B : 0)), slots(size_t(batched ? B : 0));
  for (int64_t b = 0; b < int64_t(pasts.size()); ++b) {
    pasts[size_t(b)] = rp.present ? rp.data[b] : int32_t(past);
    slots[size_t(b)] = rs.present ? rs.data[b] : int32_t(b);
  }
  run(env, ops, [&](Staging& st) {
    KvRows rows;
    if (batched) {
      rows.past = st.in(span_of(pasts, "rowPast"));
      rows.slot = st.in(span_of(slots, "rowSlot"));
    }
    ops.attention_forward(st.out(out), st.out(lse), st.in(q), st.in(k), st.in(v), B, Tq, Tkv, past, Hq, Hkv, D,
                          batched && B > 0 ? &rows : nullptr);
  });
  return env.Undefined();
}

// kvWrite({cache, x, slot, positions, B, T, Tmax, width}): cache row (slot[b], positions[b·T + t]) ← x row b·T + t.
Napi::Value KvWrite(const Napi::CallbackInfo& info) {
  Opts o = opts(info, {"B", "T", "Tmax", "width", "cache", "x", "slot", "positions"});
  OpsBackend& ops = be(o);
  Napi::Env env = o.env();
  const int64_t B = o.integer("B", 0), T = o.integer("T", 0), Tmax = o.integer("Tmax", 1), W = o.integer("width", 1);
  auto cache = o.f32("cache"), x = o.f32("x");
  auto slot = o.i32("slot"), pos = o.i32("positions");
  const int64_t row = product(env, "cache", {Tmax, W});
  if (cache.length % row != 0)
    throw_range(env, "cache",
                "length must be a multiple of Tmax × width = " + std::to_string(row) + " (got " +
                    std::to_string(cache.length) + ")");
  const int64_t rows = cache.length / row;
  expect_len(env, x, {B, T, W}, "B × T × width");
  expect_len(env, slot, {B}, "B");
  expect_len(env, pos, {B, T}, "B × T");
  disjoint(env, cache, x);
  disjoint(env, cache, slot);
  disjoint(env, cache, pos);
  std::vector<std::pair<int32_t, int32_t>> seen;
  for (int64_t b = 0; b < B; ++b) {
    if (slot.data[b] < 0 || slot.data[b] >= rows)
      throw_range(env, "slot",
                  "slot[" + std::to_string(b) + "] = " + std::to_string(slot.data[b]) + " is outside [0, " +
                      std::to_string(rows) + ") (the rows of cache)");
    for (int64_t t = 0; t < T; ++t) {
      const int32_t p = pos.data[b * T + t];
      if (p < 0 || p >= Tmax)
        throw_range(env, "positions",
                    "positions[" + std::to_string(b * T + t) + "] = " + std::to_string(p) +
                        " is outside [0, Tmax = " + std::to_string(Tmax) + ")");
      seen.emplace_back(slot.data[b], p);
    }
  }
  std::sort(seen.begin(), seen.end());
  if (std::adjacent_find(seen.begin(), seen.end()) != seen.end())
    throw_range(env, "positions", "a cache row (slot, position) is written twice");
  run(env, ops, [&](Staging& st) { ops.kv_write(st.out(cache), st.in(x), st.in(slot), st.in(pos), B, T, Tmax, W); });
  return env.Undefined();
}

Napi::Value AttentionBackward(const Napi::CallbackInfo& info) {
  Opts o =
      opts(info, {"B", "T", "Hq", "Hkv", "D", "accumulate", "dq", "dk", "dv", "dout", "q", "k", "v", "out", "lse"});
  OpsBackend& ops = be(o);
  Napi::Env env = o.env();
  int64_t Hq, Hkv, D;
  const int64_t B = o.integer("B", 0), T = o.integer("T", 0);
  heads(o, &Hq, &Hkv, &D);
  const bool acc = o.boolean("accumulate");
  auto dq = o.f32("dq"), dk = o.f32("dk"), dv = o.f32("dv"), dout = o.f32("dout");
  auto q = o.f32("q"), k = o.f32("k"), v = o.f32("v"), out = o.f32("out"), lse = o.f32("lse");
  for (const auto* x : {&dq, &dout, &q, &out}) expect_len(env, *x, {B, T, Hq, D}, "B × T × Hq × D");
  for (const auto* x : {&dk, &dv, &k, &v}) expect_len(env, *x, {B, T, Hkv, D}, "B × T × Hkv × D");
  expect_len(env, lse, {B, Hq, T}, "B × Hq × T");
  for (const auto* g : {&dq, &dk, &dv})
    for (const auto* x : {&dout, &q, &k, &v, &out, &lse}) disjoint(env, *g, *x);
  disjoint(env, dq, dk);
  disjoint(env, dq, dv);
  disjoint(env, dk, dv);
  run(env, ops, [&](Staging& st) {
    ops.attention_backward(st.out(dq), st.out(dk), st.out(dv), st.in(dout), st.in(q), st.in(k), st.in(v), st.in(out),
                           st.in(lse), B, T, Hq, Hkv, D, acc);
  });
  return env.Undefined();
}

Napi::Value SwigluForward(const Napi::CallbackInfo& info) {
  Opts o = opts(info, {"out", "gate", "up"});
  OpsBackend& ops = be(o);
  Napi::Env env = o.env();
  auto out = o.f32("out"), gate = o.f32("gate"), up = o.f32("up");
  expect_len(env, gate, {out.length}, "out.length");
  expect_len(env, up, {out.length}, "out.length");
  disjoint(env, out, gate, true);
  disjoint(env, out, up, true);
  run(env, ops, [&](Staging& st) { ops.swiglu_forward(st.out(out), st.in(gate), st.in(up), out.length); });
  return env.Undefined();
}

Napi::Value SwigluBackward(const Napi::CallbackInfo& info) {
  Opts o = opts(info, {"accumulate", "dgate", "dup", "dout", "gate", "up"});
  OpsBackend& ops = be(o);
  Napi::Env env = o.env();
  const bool acc = o.boolean("accumulate");
  auto dgate = o.f32("dgate"), dup = o.f32("dup"), dout = o.f32("dout"), gate = o.f32("gate"), up = o.f32("up");
  for (const auto* x : {&dup, &gate, &up}) expect_len(env, *x, {dout.length}, "dout.length");
  expect_len(env, dgate, {dout.length}, "dout.length");
  disjoint(env, dgate, dup);
  for (const auto* g : {&dgate, &dup}) {
    disjoint(env, *g, dout, !acc);
    disjoint(env, *g, gate);
    disjoint(env, *g, up);
  }
  run(env, ops, [&](Staging& st) {
    ops.swiglu_backward(st.out(dgate), st.out(dup), st.in(dout), st.in(gate), st.in(up), dout.length, acc);
  });
  return env.Undefined();
}

Napi::Value Add(const Napi::CallbackInfo& info) {
  Opts o = opts(info, {"out", "a", "b"});
  OpsBackend& ops = be(o);
  Napi::Env env = o.env();
  auto out = o.f32("out"), a = o.f32("a"), b = o.f32("b");
  expect_len(env, a, {out.length}, "out.length");
  expect_len(env, b, {out.length}, "out.length");
  disjoint(env, out, a, true);
  disjoint(env, out, b, true);
  run(env, ops, [&](Staging& st) { ops.add(st.out(out), st.in(a), st.in(b), out.length); });
  return env.Undefined();
}

Napi::Value Scale(const Napi::CallbackInfo& info) {
  Opts o = opts(info, {"x", "s"});
  OpsBackend& ops = be(o);
  auto x = o.f32("x");
  const double s = o.number("s", 1);
  run(o.env(), ops, [&](Staging& st) { ops.scale(st.out(x), float(s), x.length); });
  return o.env().Undefined();
}

Napi::Value Zero(const Napi::CallbackInfo& info) {
  Opts o = opts(info, {"x"});
  OpsBackend& ops = be(o);
  auto x = o.f32("x");
  run(o.env(), ops, [&](Staging& st) { ops.zero(st.out(x), x.length); });
  return o.env().Undefined();
}

// toBf16({out: Uint16Array (n), x: Float32Array (n)}) and fromBf16({out: Float32Array (n), x: Uint16Array (n)}):
// the saved-activation storage conversions (bf16 bit patterns, round to nearest even; widening is exact).
Napi::Value ToBf16(const Napi::CallbackInfo& info) {
  Opts o = opts(info, {"out", "x"});
  OpsBackend& ops = be(o);
  Napi::Env env = o.env();
  auto out = o.u16("out");
  auto x = o.f32("x");
  expect_len(env, x, {out.length}, "out.length");
  run(env, ops, [&](Staging& st) { ops.to_bf16(st.out(out), st.in(x), out.length); });
  return env.Undefined();
}

Napi::Value FromBf16(const Napi::CallbackInfo& info) {
  Opts o = opts(info, {"out", "x"});
  OpsBackend& ops = be(o);
  Napi::Env env = o.env();
  auto out = o.f32("out");
  auto x = o.u16("x");
  expect_len(env, x, {out.length}, "out.length");
  run(env, ops, [&](Staging& st) { ops.from_bf16(st.out(out), st.in(x), out.length); });
  return env.Undefined();
}

Napi::Value Sumsq(const Napi::CallbackInfo& info) {
  Opts o = opts(info, {"x"});
  OpsBackend& ops = be(o);
  auto x = o.f32("x");
  double r = 0;
  run(o.env(), ops, [&](Staging& st) { r = ops.sumsq(st.in(x), x.length); });
  return Napi::Number::New(o.env(), r);
}

Napi::Value Adamw(const Napi::CallbackInfo& info) {
  Opts o = opts(info, {"param", "grad", "m", "v", "lr", "beta1", "beta2", "eps", "weightDecay", "step", "gradScale"});
  OpsBackend& ops = be(o);
  Napi::Env env = o.env();
  AdamWParams p;
  p.lr = o.number("lr", p.lr, 0);
  p.beta1 = o.number("beta1", p.beta1, 0, 0.999999999);
  p.beta2 = o.number("beta2", p.beta2, 0, 0.999999999);
  p.eps = o.number("eps", p.eps, 0);
  p.weight_decay = o.number("weightDecay", p.weight_decay, 0);
  p.step = o.integer("step", 1, int64_t(1) << 53);
  p.grad_scale = float(o.number("gradScale", 1));
  auto param = o.f32("param"), grad = o.f32("grad"), m = o.f32("m"), v = o.f32("v");
  for (const auto* x : {&grad, &m, &v}) expect_len(env, *x, {param.length}, "param.length");
  disjoint(env, param, grad);
  disjoint(env, param, m);
  disjoint(env, param, v);
  disjoint(env, m, grad);
  disjoint(env, m, v);
  disjoint(env, v, grad);
  run(env, ops, [&](Staging& st) { ops.adamw(st.out(param), st.in(grad), st.out(m), st.out(v), param.length, p); });
  return env.Undefined();
}

}  // namespace

void init_ops(Napi::Env env, Napi::Object exports) {
  Napi::Object ops = Napi::Object::New(env);
  auto fn = [&](const char* name, Napi::Function::Callback cb) { ops.Set(name, Napi::Function::New(env, cb, name)); };
  fn("info", Info);
  fn("devices", Devices);
  fn("setGemm", SetGemm);
  fn("gemm", Gemm);
  fn("matmulForward", MatmulForward);
  fn("matmulBackward", MatmulBackward);
  fn("embeddingForward", EmbeddingForward);
  fn("embeddingBackward", EmbeddingBackward);
  fn("rmsnormForward", RmsnormForward);
  fn("rmsnormBackward", RmsnormBackward);
  fn("ropeForward", RopeForward);
  fn("ropeBackward", RopeBackward);
  fn("attentionForward", AttentionForward);
  fn("attentionBackward", AttentionBackward);
  fn("kvWrite", KvWrite);
  fn("swigluForward", SwigluForward);
  fn("swigluBackward", SwigluBackward);
  fn("add", Add);
  fn("scale", Scale);
  fn("zero", Zero);
  fn("sumsq", Sumsq);
  fn("toBf16", ToBf16);
  fn("fromBf16", FromBf16);
  fn("adamw", Adamw);
  init_ops_bf16(env, ops);
  exports.Set("ops", ops);
}

}  // namespace rift::napi
