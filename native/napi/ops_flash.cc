// N-API binding of the fused attention (exports.opsFlash), synchronous, every argument checked before any data is
// touched (napi/ops_args.h: lengths from the shape, no overlap between outputs and inputs, errors naming the
// argument):
//   forward({out, lse?, q, k, v, B, Tq, Tkv?, past?, Hq, Hkv, D, device?})     model/ops.h attention_forward
//   backward({dq, dk, dv, dout, q, k, v, out, lse, B, T, Hq, Hkv, D, accumulate?, device?})
//   unsupported({D, device?}) → '' when the path takes head dimension D here, else the reason
//   bench({q, k, v, dout, out, lse, dq, dk, dv, B, T, Hq, Hkv, D, iters?}) → {forwardMs, backwardMs}: the BF16 CUDA
//     backend's own attention (whichever path RIFT_CUDA_ATTENTION selects at the call), timed with CUDA events on
//     device-resident data; the outputs of the last run are copied back.
// device 'cpu' (default): the twin (cpu/ops_attention_flash.cc), any D that is a multiple of 16 up to 256.
// device 'cuda': the fused kernels themselves (cuda/cuda_attention_flash.h), D 64 or 128 on sm_80+; without a usable
// CUDA backend: an Error with code 'ERR_RIFT_NO_CUDA'.
#include "napi/ops_flash.h"

#include <string>
#include <vector>

#include "cpu/ops_attention_flash.h"
#include "model/ops.h"
#include "napi/args.h"
#include "napi/ops_args.h"
#ifdef RIFT_WITH_CUDA
#include "backends/registry.h"
#include "cuda/cuda_attention_flash.h"
#endif

namespace rift::napi {
namespace {

using namespace ops_args;
using args::guarded;
using Opts = args::Opts;

// The BF16 CUDA backend (its memory and its attention), or an ERR_RIFT_NO_CUDA error.
OpsBackend& cuda_backend(Napi::Env env) {
#ifdef RIFT_WITH_CUDA
  if (OpsBackend* b = cuda_ops(DType::BF16)) return *b;
#endif
  Napi::Error e = Napi::Error::New(env,
                                   "device: 'cuda' is not usable here (no CUDA device, no loadable cuBLAS, or "
                                   "an addon built without CUDA); use device 'cpu'");
  e.Set("code", Napi::String::New(env, "ERR_RIFT_NO_CUDA"));
  throw e;
}

// Host arrays in a backend's device memory: in() uploads, out() uploads too (accumulating outputs are read) and
// is copied back by download().
class Staging {
 public:
  explicit Staging(OpsBackend& ops) : ops_(ops) {}
  float* in(const Span<float>& s) { return map(s, false); }
  float* out(const Span<float>& s) { return map(s, true); }
  void download() {
    for (Entry& e : entries_)
      if (e.write) ops_.download(e.host, e.buf.data(), e.bytes);
  }

 private:
  struct Entry {
    void* host;
    size_t bytes;
    OpsBuffer buf;
    bool write;
  };
  float* map(const Span<float>& s, bool write) {
    if (!s.present || s.length == 0) return nullptr;
    const size_t bytes = size_t(s.length) * sizeof(float);
    OpsBuffer buf(ops_, MemCategory::Workspace, size_t(s.length));
    ops_.upload(buf.data(), s.data, bytes);
    entries_.push_back(Entry{s.data, bytes, std::move(buf), write});
    return entries_.back().buf.data();
  }
  OpsBackend& ops_;
  std::vector<Entry> entries_;
};

bool on_cuda(const Opts& o) { return o.choice("device", {"cpu", "cuda"}, "cpu") == "cuda"; }

// Hq, Hkv, D and the head-dimension support of the selected path (RangeError naming D).
void heads(const Opts& o, bool cuda, int64_t* Hq, int64_t* Hkv, int64_t* D) {
  *Hq = o.integer("Hq", 1);
  *Hkv = o.integer("Hkv", 1);
  *D = o.integer("D", 1);
  if (*Hq % *Hkv) throw_range(o.env(), "Hq", "must be a multiple of Hkv");
  const std::string why = cuda ? flash::head_dim_unsupported(*D) : flash::twin_head_dim_unsupported(*D);
  if (!why.empty()) throw_range(o.env(), "D", why);
}

Napi::Value Forward(const Napi::CallbackInfo& info) {
  Opts o(info);
  o.read({"B", "Tq", "Tkv", "past", "Hq", "Hkv", "D", "out", "lse", "q", "k", "v", "device"});
  Napi::Env env = o.env();
  const bool cuda = on_cuda(o);
  int64_t Hq, Hkv, D;
  const int64_t B = o.integer("B", 0), Tq = o.integer("Tq", 0), past = o.integer_or("past", 0, 0);
  heads(o, cuda, &Hq, &Hkv, &D);
  const int64_t Tkv = o.integer_or("Tkv", past + Tq, 0);
  if (Tkv < past + Tq) throw_range(env, "Tkv", "must be >= past + Tq = " + std::to_string(past + Tq));
  auto out = o.f32("out"), lse = o.f32("lse", true), q = o.f32("q"), k = o.f32("k"), v = o.f32("v");
  expect_len(env, out, {B, Tq, Hq, D}, "B × Tq × Hq × D");
  expect_len(env, lse, {B, Hq, Tq}, "B × Hq × Tq");
  expect_len(env, q, {B, Tq, Hq, D}, "B × Tq × Hq × D");
  expect_len(env, k, {B, Tkv, Hkv, D}, "B × Tkv × Hkv × D");
  expect_len(env, v, {B, Tkv, Hkv, D}, "B × Tkv × Hkv × D");
  for (const auto* x : {&q, &k, &v, &lse}) disjoint(env, out, *x);
  for (const auto* x : {&q, &k, &v}) disjoint(env, lse, *x);
  if (!cuda) {
    guarded(env, [&] {
      flash::attention_forward_twin(out.data, lse.present ? lse.data : nullptr, q.data, k.data, v.data, B, Tq, Tkv,
                                    past, Hq, Hkv, D);
    });
    return env.Undefined();
  }
  OpsBackend& be = cuda_backend(env);
  guarded(env, [&] {
#ifdef RIFT_WITH_CUDA
    Staging st(be);
    cuda::flash_forward(st.out(out), st.out(lse), st.in(q), st.in(k), st.in(v), B, Tq, Tkv, past, Hq, Hkv, D);
    st.download();
#else
    (void)be;
#endif
  });
  return env.Undefined();
}

struct BackwardArgs {
  Span<float> dq, dk, dv, dout, q, k, v, out, lse;
  int64_t B, T, Hq, Hkv, D;
};

// The training-shape arrays of backward() and bench(), checked.
BackwardArgs backward_args(const Opts& o, bool cuda) {
  Napi::Env env = o.env();
  BackwardArgs a;
  a.B = o.integer("B", 0);
  a.T = o.integer("T", 0);
  heads(o, cuda, &a.Hq, &a.Hkv, &a.D);
  a.dq = o.f32("dq"), a.dk = o.f32("dk"), a.dv = o.f32("dv"), a.dout = o.f32("dout");
  a.q = o.f32("q"), a.k = o.f32("k"), a.v = o.f32("v"), a.out = o.f32("out"), a.lse = o.f32("lse");
  for (const auto* x : {&a.dq, &a.dout, &a.q, &a.out}) expect_len(env, *x, {a.B, a.T, a.Hq, a.D}, "B × T × Hq × D");
  for (const auto* x : {&a.dk, &a.dv, &a.k, &a.v}) expect_len(env, *x, {a.B, a.T, a.Hkv, a.D}, "B × T × Hkv × D");
  expect_len(env, a.lse, {a.B, a.Hq, a.T}, "B × Hq × T");
  for (const auto* g : {&a.dq, &a.dk, &a.dv})
    for (const auto* x : {&a.dout, &a.q, &a.k, &a.v, &a.out, &a.lse}) disjoint(env, *g, *x);
  disjoint(env, a.dq, a.dk);
  disjoint(env, a.dq, a.dv);
  disjoint(env, a.dk, a.dv);
  return a;
}

Napi::Value Backward(const Napi::CallbackInfo& info) {
  Opts o(info);
  o.read({"B", "T", "Hq", "Hkv", "D", "accumulate", "dq", "dk", "dv", "dout", "q", "k", "v", "out", "lse", "device"});
  Napi::Env env = o.env();
  const bool cuda = on_cuda(o), acc = o.boolean("accumulate");
  const BackwardArgs a = backward_args(o, cuda);
  if (!cuda) {
    guarded(env, [&] {
      flash::attention_backward_twin(a.dq.data, a.dk.data, a.dv.data, a.dout.data, a.q.data, a.k.data, a.v.data,
                                     a.out.data, a.lse.data, a.B, a.T, a.Hq, a.Hkv, a.D, acc);
    });
    return env.Undefined();
  }
  OpsBackend& be = cuda_backend(env);
  guarded(env, [&] {
#ifdef RIFT_WITH_CUDA
    Staging st(be);
    float* dq = st.out(a.dq);
    float* dk = st.out(a.dk);
    float* dv = st.out(a.dv);
    OpsBuffer di(be, MemCategory::Workspace, size_t(a.B * a.Hq * a.T));
    cuda::flash_backward(dq, dk, dv, st.in(a.dout), st.in(a.q), st.in(a.k), st.in(a.v), st.in(a.out), st.in(a.lse), a.B,
                         a.T, a.Hq, a.Hkv, a.D, acc, di.data());
    st.download();
#else
    (void)be, (void)acc;
#endif
  });
  return env.Undefined();
}

Napi::Value Unsupported(const Napi::CallbackInfo& info) {
  Opts o(info);
  o.read({"D", "device"});
  const bool cuda = on_cuda(o);
  const int64_t D = o.integer("D", 1);
  if (!cuda) return Napi::String::New(o.env(), flash::twin_head_dim_unsupported(D));
#ifdef RIFT_WITH_CUDA
  if (cuda_ops(DType::BF16)) return Napi::String::New(o.env(), cuda::flash_unsupported(D));
#endif
  return Napi::String::New(o.env(), "no usable CUDA backend");
}

Napi::Value Bench(const Napi::CallbackInfo& info) {
  Opts o(info);
  o.read({"B", "T", "Hq", "Hkv", "D", "iters", "dq", "dk", "dv", "dout", "q", "k", "v", "out", "lse"});
  Napi::Env env = o.env();
  const int iters = int(o.integer_or("iters", 5, 1, 1000));
  OpsBackend& be = cuda_backend(env);
  const BackwardArgs a = backward_args(o, false);  // any D the backend takes (it falls back by itself)
  float f = 0.f, bw = 0.f;
  guarded(env, [&] {
#ifdef RIFT_WITH_CUDA
    Staging st(be);
    float *out = st.out(a.out), *lse = st.out(a.lse), *dq = st.out(a.dq), *dk = st.out(a.dk), *dv = st.out(a.dv);
    const float *q = st.in(a.q), *k = st.in(a.k), *v = st.in(a.v), *dout = st.in(a.dout);
    f = cuda::time_ms([&] { be.attention_forward(out, lse, q, k, v, a.B, a.T, a.T, 0, a.Hq, a.Hkv, a.D, nullptr); },
                      iters);
    bw = cuda::time_ms(
        [&] { be.attention_backward(dq, dk, dv, dout, q, k, v, out, lse, a.B, a.T, a.Hq, a.Hkv, a.D, false); }, iters);
    st.download();
#else
    (void)be, (void)iters;
#endif
  });
  Napi::Object r = Napi::Object::New(env);
  r.Set("forwardMs", f);
  r.Set("backwardMs", bw);
  return r;
}

}  // namespace

void init_ops_flash(Napi::Env env, Napi::Object exports) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("forward", Napi::Function::New(env, Forward, "forward"));
  o.Set("backward", Napi::Function::New(env, Backward, "backward"));
  o.Set("unsupported", Napi::Function::New(env, Unsupported, "unsupported"));
  o.Set("bench", Napi::Function::New(env, Bench, "bench"));
  exports.Set("opsFlash", o);
}

}  // namespace rift::napi
