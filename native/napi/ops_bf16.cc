// N-API bindings of the bf16-activation ops (model/ops.h), added to exports.ops, synchronous, every argument checked
// before any data is touched (as napi/ops.cc; errors name the argument). bf16 arrays are Uint16Array bit patterns.
//   rmsnormForwardBf16({out: Uint16Array (T·C), rstd, inp, weight, T, C, eps?})
//   swigluForwardBf16({out: Uint16Array (n), gate, up})
//   matmulForwardBf16({out, inp: Uint16Array (M·K), weight, bias?, M, N, K, accumulate?})
//   matmulBackwardBf16({dinp?, dweight?, dbias?, dout, inp: Uint16Array (M·K) (with dweight), weight (with dinp),
//                       M, N, K, accumulate?})
// Each equals the fp32 op composed with toBf16 / fromBf16, bit for bit, on the same backend (device, precision).
#include <string>

#include "napi/ops.h"
#include "napi/ops_common.h"

namespace rift::napi {
namespace {

using namespace ops_common;

Napi::Value RmsnormForwardBf16(const Napi::CallbackInfo& info) {
  Opts o = opts(info, {"T", "C", "eps", "out", "rstd", "inp", "weight"});
  OpsBackend& ops = be(o);
  Napi::Env env = o.env();
  const int64_t T = o.integer("T", 0), C = o.integer("C", 1);
  const double eps = o.number("eps", 1e-6, 0, 1);
  auto out = o.u16("out");
  auto rstd = o.f32("rstd"), inp = o.f32("inp"), w = o.f32("weight");
  expect_len(env, out, {T, C}, "T × C");
  expect_len(env, rstd, {T}, "T");
  expect_len(env, inp, {T, C}, "T × C");
  expect_len(env, w, {C}, "C");
  for (const auto* x : {&rstd, &inp, &w}) disjoint(env, out, *x);
  disjoint(env, rstd, inp);
  disjoint(env, rstd, w);
  run(env, ops, [&](Staging& st) {
    ops.rmsnorm_forward_bf16(st.out(out), st.out(rstd), st.in(inp), st.in(w), T, C, float(eps));
  });
  return env.Undefined();
}

Napi::Value SwigluForwardBf16(const Napi::CallbackInfo& info) {
  Opts o = opts(info, {"out", "gate", "up"});
  OpsBackend& ops = be(o);
  Napi::Env env = o.env();
  auto out = o.u16("out");
  auto gate = o.f32("gate"), up = o.f32("up");
  expect_len(env, gate, {out.length}, "out.length");
  expect_len(env, up, {out.length}, "out.length");
  disjoint(env, out, gate);
  disjoint(env, out, up);
  run(env, ops, [&](Staging& st) { ops.swiglu_forward_bf16(st.out(out), st.in(gate), st.in(up), out.length); });
  return env.Undefined();
}

Napi::Value MatmulForwardBf16(const Napi::CallbackInfo& info) {
  Opts o = opts(info, {"M", "N", "K", "accumulate", "out", "inp", "weight", "bias"});
  OpsBackend& ops = be(o);
  Napi::Env env = o.env();
  const int64_t M = o.integer("M", 0), N = o.integer("N", 0), K = o.integer("K", 0);
  const bool acc = o.boolean("accumulate");
  auto inp = o.u16("inp");
  auto out = o.f32("out"), w = o.f32("weight"), bias = o.f32("bias", true);
  expect_len(env, out, {M, N}, "M × N");
  expect_len(env, inp, {M, K}, "M × K");
  expect_len(env, w, {N, K}, "N × K");
  expect_len(env, bias, {N}, "N");
  disjoint(env, out, inp);
  disjoint(env, out, w);
  disjoint(env, out, bias);
  run(env, ops,
      [&](Staging& st) { ops.matmul_forward_bf16(st.out(out), st.in(inp), st.in(w), st.in(bias), M, N, K, acc); });
  return env.Undefined();
}

Napi::Value MatmulBackwardBf16(const Napi::CallbackInfo& info) {
  Opts o = opts(info, {"M", "N", "K", "accumulate", "dinp", "dweight", "dbias", "dout", "inp", "weight"});
  OpsBackend& ops = be(o);
  Napi::Env env = o.env();
  const int64_t M = o.integer("M", 0), N = o.integer("N", 0), K = o.integer("K", 0);
  const bool acc = o.boolean("accumulate");
  auto dinp = o.f32("dinp", true), dw = o.f32("dweight", true), db = o.f32("dbias", true);
  auto inp = o.typed<uint16_t>("inp", !dw.present);
  auto dout = o.f32("dout"), w = o.f32("weight", !dinp.present);
  expect_len(env, dinp, {M, K}, "M × K");
  expect_len(env, dw, {N, K}, "N × K");
  expect_len(env, db, {N}, "N");
  expect_len(env, dout, {M, N}, "M × N");
  expect_len(env, inp, {M, K}, "M × K");
  expect_len(env, w, {N, K}, "N × K");
  for (const auto* g : {&dinp, &dw, &db}) {
    for (const auto* x : {&dout, &w}) disjoint(env, *g, *x);
    disjoint(env, *g, inp);
  }
  disjoint(env, dinp, dw);
  disjoint(env, dinp, db);
  disjoint(env, dw, db);
  run(env, ops, [&](Staging& st) {
    ops.matmul_backward_bf16(st.out(dinp), st.out(dw), st.out(db), st.in(dout), st.in(inp), st.in(w), M, N, K, acc);
  });
  return env.Undefined();
}

}  // namespace

void init_ops_bf16(Napi::Env env, Napi::Object ops) {
  auto fn = [&](const char* name, Napi::Function::Callback cb) { ops.Set(name, Napi::Function::New(env, cb, name)); };
  fn("rmsnormForwardBf16", RmsnormForwardBf16);
  fn("swigluForwardBf16", SwigluForwardBf16);
  fn("matmulForwardBf16", MatmulForwardBf16);
  fn("matmulBackwardBf16", MatmulBackwardBf16);
}

}  // namespace rift::napi
