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
#include "napi/ops_matmul.h"

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
  return matmul_forward_binding<uint16_t>(info, [](OpsBackend& ops, auto... a) { ops.matmul_forward_bf16(a...); });
}

Napi::Value MatmulBackwardBf16(const Napi::CallbackInfo& info) {
  return matmul_backward_binding<uint16_t>(info, [](OpsBackend& ops, auto... a) { ops.matmul_backward_bf16(a...); });
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
