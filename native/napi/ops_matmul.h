// The matmul bindings, one template per op over the element type of `inp` (float: napi/ops.cc matmulForward /
// matmulBackward; uint16_t bf16 bit patterns: napi/ops_bf16.cc matmulForwardBf16 / matmulBackwardBf16): the same
// options, length and aliasing checks, then `op` on the staged arrays. Internal to native/napi.
#pragma once
#include "napi/ops_common.h"

namespace rift::napi::ops_common {

//   {out, inp: In (M·K), weight, bias?, M, N, K, accumulate?}
// op(ops, out, inp, weight, bias, M, N, K, accumulate)
template <typename In, typename Op>
Napi::Value matmul_forward_binding(const Napi::CallbackInfo& info, Op op) {
  Opts o = opts(info, {"M", "N", "K", "accumulate", "out", "inp", "weight", "bias"});
  OpsBackend& ops = be(o);
  Napi::Env env = o.env();
  const int64_t M = o.integer("M", 0), N = o.integer("N", 0), K = o.integer("K", 0);
  const bool acc = o.boolean("accumulate");
  auto out = o.f32("out");
  auto inp = o.typed<In>("inp");
  auto w = o.f32("weight"), bias = o.f32("bias", true);
  expect_len(env, out, {M, N}, "M × N");
  expect_len(env, inp, {M, K}, "M × K");
  expect_len(env, w, {N, K}, "N × K");
  expect_len(env, bias, {N}, "N");
  disjoint(env, out, inp);
  disjoint(env, out, w);
  disjoint(env, out, bias);
  run(env, ops, [&](Staging& st) { op(ops, st.out(out), st.in(inp), st.in(w), st.in(bias), M, N, K, acc); });
  return env.Undefined();
}

//   {dinp?, dweight?, dbias?, dout, inp: In (M·K) (with dweight), weight (with dinp), M, N, K, accumulate?}
// op(ops, dinp, dweight, dbias, dout, inp, weight, M, N, K, accumulate)
template <typename In, typename Op>
Napi::Value matmul_backward_binding(const Napi::CallbackInfo& info, Op op) {
  Opts o = opts(info, {"M", "N", "K", "accumulate", "dinp", "dweight", "dbias", "dout", "inp", "weight"});
  OpsBackend& ops = be(o);
  Napi::Env env = o.env();
  const int64_t M = o.integer("M", 0), N = o.integer("N", 0), K = o.integer("K", 0);
  const bool acc = o.boolean("accumulate");
  auto dinp = o.f32("dinp", true), dw = o.f32("dweight", true), db = o.f32("dbias", true);
  auto dout = o.f32("dout");
  auto inp = o.typed<In>("inp", !dw.present);
  auto w = o.f32("weight", !dinp.present);
  expect_len(env, dinp, {M, K}, "M × K");
  expect_len(env, dw, {N, K}, "N × K");
  expect_len(env, db, {N}, "N");
  expect_len(env, dout, {M, N}, "M × N");
  expect_len(env, inp, {M, K}, "M × K");
  expect_len(env, w, {N, K}, "N × K");
  for (const auto* g : {&dinp, &dw, &db}) {
    disjoint(env, *g, dout);
    disjoint(env, *g, inp);
    disjoint(env, *g, w);
  }
  disjoint(env, dinp, dw);
  disjoint(env, dinp, db);
  disjoint(env, dw, db);
  run(env, ops, [&](Staging& st) {
    op(ops, st.out(dinp), st.out(dw), st.out(db), st.in(dout), st.in(inp), st.in(w), M, N, K, acc);
  });
  return env.Undefined();
}

}  // namespace rift::napi::ops_common
