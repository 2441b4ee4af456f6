// N-API binding of the decoder engine (model/decoder.h): exports.Model and exports.KvCache.
//
// - Arguments are read once, checked (TypeError / RangeError naming the argument) and only then dereferenced.
// - options.device 'cpu' | 'cuda' picks the backend (model/ops.h) and options.precision 'fp32' | 'bf16' its GEMM
//   operand precision (default: fp32 on the CPU, bf16 on CUDA); options.activationDtype (default: the precision)
//   how saved activations are stored; options.recompute activation recomputation; options.bf16Direct (default
//   true) whether bf16 activations are written by their producers where the GEMMs are bf16 (Decoder).
// - paramsView() / gradsView() / optimizerView() are zero-copy Float32Arrays over the flat buffers of a CPU model;
//   each view keeps its buffer alive (a shared_ptr in the ArrayBuffer's finaliser), so a view never dangles.
//   readBuffer / writeBuffer copy any range of params / grads / m / v to and from the host on any device.
// - lossAndBackwardAsync / stepAsync / prefillAsync / decodeAsync run on a libuv worker (napi/job.h) that holds
//   a reference to the model and reads COPIES of its input arrays (ids, targets, offsets, rewards, refLogps,
//   pairs), made at call time: JS may change, detach or free the caller's arrays while the worker runs. While one
//   runs, every other call that touches the model throws an Error ("busy") instead of racing with it; a KvCache in
//   use by an async call is busy the same way.
// - Native memory: what a model's decoder holds (host and device buffers) is reported to V8 with
//   napi_adjust_external_memory, so that V8 weighs a dropped Model by it; dispose() frees it at once (views handed
//   out are detached) and every later call throws an Error ("disposed"); a KvCache reports its buffer until free().
// Arguments: napi/args.h and napi/loss_args.h; views and memory(): napi/model_views.h; KvCache: napi/kv_cache.h.
#include "napi/model.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "backends/registry.h"
#include "core/memory.h"
#include "model/decoder.h"
#include "napi/args.h"
#include "napi/errors.h"
#include "napi/job.h"
#include "napi/kv_cache.h"
#include "napi/loss_args.h"
#include "napi/model_views.h"

namespace rift::napi {
namespace {

using args::guarded;
using args::kMaxI32;

// ---- Model --------------------------------------------------------------------------------------------------

// One lossAndBackward call, parsed on the JS thread; owns references to its arrays while it runs.
struct LossCall {
  TrainBatch batch;
  args::Span<int32_t> ids;
  LossArrays arrays;
  LossResult result;
};

// Tags native Model objects (napi_type_tag_object), so that lease_model() tells them from any other object.
const napi_type_tag kModelTag = {0x7269667430314d6fULL, 0x64656c5772617031ULL};

class ModelWrap final : public Napi::ObjectWrap<ModelWrap> {
 public:
  static void Init(Napi::Env env, Napi::Object exports, Napi::FunctionReference* kv_ctor) {
    Napi::Function f = DefineClass(env, "Model",
                                   {InstanceMethod<&ModelWrap::ParamsView>("paramsView"),
                                    InstanceMethod<&ModelWrap::GradsView>("gradsView"),
                                    InstanceMethod<&ModelWrap::ReadBuffer>("readBuffer"),
                                    InstanceMethod<&ModelWrap::WriteBuffer>("writeBuffer"),
                                    InstanceMethod<&ModelWrap::OptimizerView>("optimizerView"),
                                    InstanceMethod<&ModelWrap::SetOptimizerSteps>("setOptimizerSteps"),
                                    InstanceMethod<&ModelWrap::TensorTable>("tensorTable"),
                                    InstanceMethod<&ModelWrap::Info>("info"),
                                    InstanceMethod<&ModelWrap::Forward>("forward"),
                                    InstanceMethod<&ModelWrap::LossAndBackward>("lossAndBackward"),
                                    InstanceMethod<&ModelWrap::LossAndBackwardAsync>("lossAndBackwardAsync"),
                                    InstanceMethod<&ModelWrap::ZeroGrad>("zeroGrad"),
                                    InstanceMethod<&ModelWrap::GradNorm>("gradNorm"),
                                    InstanceMethod<&ModelWrap::Step>("step"),
                                    InstanceMethod<&ModelWrap::StepAsync>("stepAsync"),
                                    InstanceMethod<&ModelWrap::NewKvCache>("newKvCache", napi_default, kv_ctor),
                                    InstanceMethod<&ModelWrap::Prefill>("prefill"),
                                    InstanceMethod<&ModelWrap::PrefillAsync>("prefillAsync"),
                                    InstanceMethod<&ModelWrap::Decode>("decode"),
                                    InstanceMethod<&ModelWrap::DecodeAsync>("decodeAsync"),
                                    InstanceMethod<&ModelWrap::Memory>("memory"),
                                    InstanceMethod<&ModelWrap::ResetPeaks>("resetPeaks"),
                                    StaticMethod<&ModelWrap::MemoryStatic>("memory"),
                                    StaticMethod<&ModelWrap::Devices>("devices"),
                                    StaticMethod<&ModelWrap::ResetPeaksStatic>("resetPeaks"),
                                    InstanceMethod<&ModelWrap::Dispose>("dispose"),
                                    InstanceAccessor<&ModelWrap::Disposed>("disposed")});
    exports.Set("Model", f);
  }

  // new Model(config, options?): config holds HF config.json field names.
  explicit ModelWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ModelWrap>(info) {
    Napi::Env env = info.Env();
    args::Opts o(info, 0, "config");
    o.read({"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
            "num_key_value_heads", "head_dim", "rms_norm_eps", "rope_theta", "tie_word_embeddings", "qkv_bias",
            "o_bias"});
    DecoderConfig c;
    c.vocab = o.integer("vocab_size", 1);
    c.C = o.integer("hidden_size", 1);
    c.I = o.integer("intermediate_size", 1);
    c.L = o.integer("num_hidden_layers", 1);
    c.Hq = o.integer("num_attention_heads", 1);
    c.Hkv = o.get("num_key_value_heads").IsUndefined() ? c.Hq : o.integer("num_key_value_heads", 1);
    if (!o.has("head_dim")) {
      if (c.C % c.Hq) throw_range(env, "head_dim", "missing, and hidden_size is not a multiple of num_attention_heads");
      c.D = c.C / c.Hq;
    } else {
      c.D = o.integer("head_dim", 1);
    }
    c.eps = o.number("rms_norm_eps", 1e-6);
    c.theta = o.number("rope_theta", 10000);
    c.tied = o.boolean("tie_word_embeddings");
    c.qkv_bias = o.boolean("qkv_bias");
    c.o_bias = o.boolean("o_bias");
    int64_t chunk = 0;
    MemCategory cat = MemCategory::Params;
    std::string device = "cpu", precision, act_dtype;
    bool recompute = false, bf16_direct = true;
    if (info.Length() > 1 && !info[1].IsUndefined()) {
      args::Opts opt(info, 1);
      opt.read({"chunkRows", "reference", "device", "precision", "recompute", "activationDtype", "bf16Direct"});
      if (!opt.get("chunkRows").IsUndefined()) chunk = opt.integer("chunkRows", 1);
      if (opt.boolean("reference")) cat = MemCategory::Reference;
      device = opt.choice("device", {"cpu", "cuda"}, "cpu");
      precision = opt.choice("precision", {"fp32", "bf16"}, "");
      recompute = opt.boolean("recompute");
      act_dtype = opt.choice("activationDtype", {"fp32", "bf16"}, "");
      bf16_direct = opt.boolean("bf16Direct", true);
    }
    if (precision.empty()) precision = device == "cuda" ? "bf16" : "fp32";
    if (act_dtype.empty()) act_dtype = precision;
    const DType gemm = precision == "bf16" ? DType::BF16 : DType::F32;
    OpsBackend* ops = nullptr;
    RowBackend* rows = nullptr;
    if (device == "cpu") {
      ops = &cpu_ops(gemm);
      rows = &cpu_backend();
    } else {
#ifdef RIFT_WITH_CUDA
      ops = cuda_ops(gemm);
      rows = cuda_backend();
#endif
      if (!ops || !rows)
        throw_type(env, "device",
                   "is 'cuda' but no CUDA device with a loadable cuBLAS is usable here"
#ifndef RIFT_WITH_CUDA
                   " (the addon was built without CUDA)"
#endif
        );
    }
    d_ = engine(env, [&] { return std::make_unique<Decoder>(c, chunk, cat, *ops, *rows); });
    napi_type_tag_object(env, info.This(), &kModelTag);  // lease_model() recognises models by this tag
    d_->set_recompute(recompute);
    d_->set_activation_dtype(act_dtype == "bf16" ? DType::BF16 : DType::F32);
    d_->set_bf16_direct(bf16_direct);
    device_ = device;
    precision_ = precision;
  }

  // The finaliser of a model that was not disposed frees its decoder the same way.
  ~ModelWrap() override {
    if (d_) release(Env());
  }

 private:
  // The decoder of a model not yet disposed (Error otherwise).
  Decoder& live(Napi::Env env) {
    if (!d_)
      throw Napi::Error::New(env, "Model: disposed — dispose() freed this model's native memory; create a new Model");
    return *d_;
  }
  // ... and not running an async call (Error "busy" otherwise).
  Decoder& dec(Napi::Env env) {
    Decoder& d = live(env);
    if (busy_)
      throw Napi::Error::New(
          env, "Model: busy — an async call (" + busy_what_ + ") is still running on this model; await it first");
    return d;
  }

  // ---- native memory held, as V8 sees it ------------------------------------------------------------------------
  // What the decoder allocates and frees is attributed to held_ (core/memory.h MemScope, on whichever thread runs
  // it) and reported to V8 with napi_adjust_external_memory after each call, so that V8 weighs a dropped Model by
  // its native buffers (host and device) when it decides to collect; release() takes the whole report back.
  void report(Napi::Env env) {
    const int64_t now = std::max<int64_t>(0, held_.load(std::memory_order_relaxed));
    if (now == reported_) return;
    int64_t total = 0;
    napi_adjust_external_memory(env, now - reported_, &total);
    reported_ = now;
  }
  // Runs engine code on the JS thread (guarded), attributing its allocations to this model.
  template <typename F>
  auto engine(Napi::Env env, F&& f) -> decltype(f()) {
    struct Report {
      ModelWrap* m;
      Napi::Env env;
      ~Report() { m->report(env); }
    } report{this, env};
    MemScope scope(&held_);
    return guarded(env, std::forward<F>(f));
  }
  // Frees the decoder (buffers still viewed from JS live until their views go) and takes back the report.
  void release(Napi::Env env) {
    {
      MemScope scope(&held_);
      d_.reset();
    }
    int64_t total = 0;
    napi_adjust_external_memory(env, -reported_, &total);
    reported_ = 0;
  }
  // A zero-copy view, remembered (weakly) so that dispose() can detach it.
  Napi::Float32Array tracked(Napi::Float32Array v) {
    views_.erase(std::remove_if(views_.begin(), views_.end(), [](const auto& r) { return r.Value().IsEmpty(); }),
                 views_.end());
    views_.push_back(Napi::Weak(v.ArrayBuffer()));
    return v;
  }

  // dispose(): frees the model's native memory now; a second call does nothing. The zero-copy views it handed out
  // (paramsView, gradsView, optimizerView) are detached (length 0). Every later call throws an Error ("disposed").
  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!d_) return env.Undefined();
    dec(env);  // Error "busy" while an async call runs
    for (auto& r : views_) {
      Napi::ArrayBuffer ab = r.Value();
      if (!ab.IsEmpty()) napi_detach_arraybuffer(env, ab);  // already detached (transferred): nothing to do
    }
    views_.clear();
    release(env);
    return env.Undefined();
  }
  Napi::Value Disposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !d_); }

  Napi::Value ParamsView(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return tracked(view(env, live(env).params_buffer(), "paramsView"));
  }
  Napi::Value GradsView(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Decoder& d = live(env);
    if (d.space() != MemSpace::Host) return view(env, d.params_buffer(), "gradsView");  // throws
    if (!d.has_grads()) dec(env);  // allocating races with nothing, but keep the rule simple
    return tracked(view(env, engine(env, [&] { return d.grads_buffer(); }), "gradsView"));
  }

  static FlatBuffer which_buffer(Napi::Env env, Napi::Value v) {
    const std::string w = args::choice(env, v, "which", {"params", "grads", "m", "v"}, "");
    if (w.empty()) throw_type(env, "which", "must be one of 'params', 'grads', 'm', 'v'");
    return w == "params"  ? FlatBuffer::Params
           : w == "grads" ? FlatBuffer::Grads
           : w == "m"     ? FlatBuffer::M
                          : FlatBuffer::V;
  }
  // readBuffer(which, offset = 0, n = numParams − offset) → Float32Array copy (any device).
  Napi::Value ReadBuffer(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Decoder& d = dec(env);
    const FlatBuffer w = which_buffer(env, info[0]);
    const int64_t P = d.num_params();
    const int64_t off = info[1].IsUndefined() ? 0 : args::integer(env, info[1], "offset", 0, P);
    const int64_t n = info[2].IsUndefined() ? P - off : args::integer(env, info[2], "n", 0, P - off);
    auto out = Napi::Float32Array::New(env, size_t(n));
    engine(env, [&] { d.read(w, off, n, out.Data()); });
    return out;
  }
  // writeBuffer(which, data: Float32Array, offset = 0): copies data into [offset, offset + data.length).
  Napi::Value WriteBuffer(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Decoder& d = dec(env);
    const FlatBuffer w = which_buffer(env, info[0]);
    auto data = args::typed<float>(env, info[1], "data");
    const int64_t P = d.num_params();
    const int64_t off = info[2].IsUndefined() ? 0 : args::integer(env, info[2], "offset", 0, P);
    if (data.length > P - off)
      throw_range(env, "data",
                  "length " + std::to_string(data.length) + " at offset " + std::to_string(off) +
                      " runs past numParams = " + std::to_string(P));
    engine(env, [&] { d.write(w, off, data.length, data.data); });
    return env.Undefined();
  }

  // optimizerView() → {m, v}: zero-copy Float32Arrays (numParams each, the params layout) over AdamW's state.
  Napi::Value OptimizerView(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Decoder& d = dec(env);
    Napi::Object o = Napi::Object::New(env);
    o.Set("m", tracked(view(env, engine(env, [&] { return d.m_buffer(); }), "optimizerView")));
    o.Set("v", tracked(view(env, engine(env, [&] { return d.v_buffer(); }), "optimizerView")));
    return o;
  }
  // setOptimizerSteps(n): the AdamW step counter (bias corrections) — restore it with m and v.
  Napi::Value SetOptimizerSteps(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Decoder& d = dec(env);
    d.set_optimizer_steps(args::integer(env, info[0], "steps", 0, kMaxI32));
    return env.Undefined();
  }

  Napi::Value TensorTable(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const auto& t = live(env).tensors();
    Napi::Array out = Napi::Array::New(env, t.size());
    for (size_t i = 0; i < t.size(); ++i) {
      Napi::Object e = Napi::Object::New(env);
      e.Set("name", t[i].name);
      e.Set("offset", double(t[i].offset));
      Napi::Array shape = Napi::Array::New(env, t[i].shape.size());
      for (size_t j = 0; j < t[i].shape.size(); ++j) shape.Set(uint32_t(j), double(t[i].shape[j]));
      e.Set("shape", shape);
      out.Set(uint32_t(i), e);
    }
    return out;
  }

  Napi::Value Info(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    live(env);
    const DecoderConfig& c = d_->config();
    Napi::Object o = Napi::Object::New(env);
    o.Set("numParams", double(d_->num_params()));
    o.Set("chunkRows", double(d_->chunk_rows()));
    o.Set("optimizerSteps", double(d_->optimizer_steps()));
    o.Set("hasGrads", d_->has_grads());
    o.Set("busy", bool(busy_));
    o.Set("device", device_);
    o.Set("precision", precision_);
    o.Set("recompute", d_->recompute());
    o.Set("activationDtype", d_->activation_dtype() == DType::BF16 ? "bf16" : "fp32");
    o.Set("bf16Direct", d_->direct_bf16());
    Napi::Object k = Napi::Object::New(env);
    k.Set("vocab_size", double(c.vocab));
    k.Set("hidden_size", double(c.C));
    k.Set("intermediate_size", double(c.I));
    k.Set("num_hidden_layers", double(c.L));
    k.Set("num_attention_heads", double(c.Hq));
    k.Set("num_key_value_heads", double(c.Hkv));
    k.Set("head_dim", double(c.D));
    k.Set("rms_norm_eps", c.eps);
    k.Set("rope_theta", c.theta);
    k.Set("tie_word_embeddings", c.tied);
    k.Set("qkv_bias", c.qkv_bias);
    k.Set("o_bias", c.o_bias);
    o.Set("config", k);
    return o;
  }

  // forward(ids: Int32Array, B, T, lastOnly = false) → Float32Array (B·T, V) or (B, V)
  Napi::Value Forward(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Decoder& d = dec(env);
    const int64_t B = args::integer(env, info[1], "B", 1, kMaxI32), T = args::integer(env, info[2], "T", 1, kMaxI32);
    const bool last = args::boolean(env, info[3], "lastOnly", false);
    auto ids = args::typed<int32_t>(env, info[0], "ids");
    if (ids.length != B * T) args::length_error(env, "ids", "B × T", B * T, ids.length);
    const int64_t rows = last ? B : B * T, V = d.config().vocab;
    if (double(rows) * double(V) > 4e9) throw_range(env, "T", "the logits (rows × vocab) would be too large");
    auto out = Napi::Float32Array::New(env, size_t(rows * V));
    engine(env, [&] { d.forward(ids.data, B, T, last, out.Data()); });
    return out;
  }

  std::shared_ptr<LossCall> parse_loss(const Napi::CallbackInfo& info) {
    // Every key is read before any data pointer is taken: no user getter runs after one.
    args::Opts o(info);
    o.read({"ids", "B", "T", "backward"}).read(kLossSpecKeys);
    Napi::Env env = o.env();
    auto c = std::make_shared<LossCall>();
    TrainBatch& b = c->batch;
    b.B = o.integer("B", 1);
    b.T = o.integer("T", 1);
    if (b.B * b.T > kMaxI32) throw_range(env, "T", "B × T must be < 2^31");
    b.backward = o.boolean("backward", true);
    const int64_t N = b.B * b.T;
    c->ids = o.typed<int32_t>("ids");
    if (c->ids.length != N) args::length_error(env, "ids", "B × T", N, c->ids.length);
    parse_loss_spec(o, N, "B × T", &b.loss, &c->arrays);
    b.ids = c->ids.data;
    return c;
  }
  // An async call owns the arrays its worker reads (JS may change or free the caller's meanwhile).
  static void own(Napi::Env env, LossCall& c) {
    guarded(env, [&] {
      c.ids.own();
      c.arrays.own(&c.batch.loss);
    });
    c.batch.ids = c.ids.data;
  }

  Napi::Value LossAndBackward(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Decoder& d = dec(env);
    auto c = parse_loss(info);
    c->result = engine(env, [&] { return d.loss_and_backward(c->batch); });
    return loss_result(env, c->result, c->batch.loss);
  }

  // Runs run() on a libuv worker (Job); this model, and the KvCache the call uses (or null), are kept alive and
  // marked busy until it settles.
  Napi::Promise start_job(Napi::Env env, std::string what, std::function<void()> run,
                          std::function<Napi::Value(Napi::Env)> done, KvCacheWrap* cache = nullptr) {
    auto self = std::make_shared<Napi::ObjectReference>(Napi::Persistent(Value()));
    auto cache_ref = std::make_shared<Napi::ObjectReference>();
    if (cache) *cache_ref = Napi::Persistent(cache->Value());
    busy_ = true;
    busy_what_ = std::move(what);
    if (cache) cache->busy_ = true;
    auto scoped = [this, run = std::move(run)] {
      MemScope scope(&held_);  // the worker's allocations are this model's too
      run();
    };
    return Job::start(env, "rift.Model", std::move(scoped), std::move(done), [this, env, self, cache, cache_ref] {
      busy_ = false;
      if (cache) cache->busy_ = false;
      report(env);
    });
  }

  Napi::Value LossAndBackwardAsync(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Decoder& d = dec(env);
    auto c = parse_loss(info);
    own(env, *c);
    return start_job(
        env, "lossAndBackwardAsync", [c, &d] { c->result = d.loss_and_backward(c->batch); },
        [c](Napi::Env e) -> Napi::Value { return loss_result(e, c->result, c->batch.loss); });
  }

  Napi::Value ZeroGrad(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Decoder& d = dec(env);
    engine(env, [&] { d.zero_grad(); });
    return env.Undefined();
  }
  Napi::Value GradNorm(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Decoder& d = dec(env);
    return Napi::Number::New(env, engine(env, [&] { return d.grad_norm(); }));
  }

  struct StepCall {
    AdamWParams hp;
    double max_norm = 0, norm = 0;
  };
  std::shared_ptr<StepCall> parse_step(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    args::Opts o(info);
    o.read({"lr", "beta1", "beta2", "eps", "weightDecay", "maxGradNorm"});
    auto s = std::make_shared<StepCall>();
    s->hp.lr = o.required_number("lr");
    s->hp.beta1 = o.number("beta1", 0.9);
    s->hp.beta2 = o.number("beta2", 0.999);
    s->hp.eps = o.number("eps", 1e-8);
    s->hp.weight_decay = o.number("weightDecay", 0.01);
    s->max_norm = o.number("maxGradNorm", 0);
    if (s->hp.lr < 0) throw_range(env, "lr", "must be >= 0");
    if (s->hp.beta1 < 0 || s->hp.beta1 >= 1) throw_range(env, "beta1", "must be in [0, 1)");
    if (s->hp.beta2 < 0 || s->hp.beta2 >= 1) throw_range(env, "beta2", "must be in [0, 1)");
    if (s->hp.eps < 0) throw_range(env, "eps", "must be >= 0");
    if (s->hp.weight_decay < 0) throw_range(env, "weightDecay", "must be >= 0");
    if (s->max_norm < 0) throw_range(env, "maxGradNorm", "must be >= 0 (0: no clipping)");
    return s;
  }
  static Napi::Value step_result(Napi::Env env, const StepCall& s, int64_t step) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("gradNorm", s.norm);
    o.Set("clipScale", s.max_norm > 0 ? std::min(1.0, s.max_norm / (s.norm + 1e-6)) : 1.0);
    o.Set("step", double(step));
    return o;
  }
  Napi::Value Step(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Decoder& d = dec(env);
    auto s = parse_step(info);
    s->norm = engine(env, [&] { return d.step(s->hp, s->max_norm); });
    return step_result(env, *s, d.optimizer_steps());
  }
  Napi::Value StepAsync(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Decoder& d = dec(env);
    auto s = parse_step(info);
    return start_job(
        env, "stepAsync", [s, &d] { s->norm = d.step(s->hp, s->max_norm); },
        [s, &d](Napi::Env e) { return step_result(e, *s, d.optimizer_steps()); });
  }

  Napi::Value NewKvCache(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Decoder& d = dec(env);
    const int64_t B = args::integer(env, info[0], "B", 1, kMaxI32), T = args::integer(env, info[1], "Tmax", 1, kMaxI32);
    if (double(B) * double(T) * double(d.config().Hkv * d.config().D) * double(2 * d.config().L) > 1e11)
      throw_range(env, "Tmax", "the cache (2 × layers × B × Tmax × kv heads × head_dim floats) would be too large");
    std::atomic<int64_t> bytes{0};  // what the cache holds (reported to V8 by the KvCache object)
    KvCache* cache = guarded(env, [&] {
      MemScope scope(&bytes);
      return new KvCache(d.config(), B, T, d.ops());
    });
    auto* ctor = static_cast<Napi::FunctionReference*>(info.Data());
    return ctor->New({Napi::External<KvCache>::New(env, cache), Napi::Number::New(env, double(bytes.load()))});
  }

  // One prefill/decode call, parsed on the JS thread (the output array is made here and filled by the call).
  struct ExtendCall {
    KvCacheWrap* wrap = nullptr;
    KvCache* cache = nullptr;
    args::Span<int32_t> ids;
    args::Span<int32_t> rows;  // optional: the cache rows to extend (B of them)
    int64_t B = 0, T = 0;
    Napi::Reference<Napi::Float32Array> out;
    float* out_data = nullptr;
  };
  // prefill: (cache, ids, B, T, rows?); decode: (cache, tokens, rows?) with B = rows.length (default the cache's
  // batch), T = 1. rows: an Int32Array of B distinct cache rows (checked by the decoder), or undefined: every row.
  std::shared_ptr<ExtendCall> parse_extend(const Napi::CallbackInfo& info, bool decode) {
    Napi::Env env = info.Env();
    Decoder& d = dec(env);
    auto c = std::make_shared<ExtendCall>();
    c->wrap = KvCacheWrap::unwrap(env, info[0], "cache");
    c->cache = &c->wrap->get(env, "cache");
    if (decode) {
      c->rows = args::typed<int32_t>(env, info[2], "rows", true);
      c->ids = args::typed<int32_t>(env, info[1], "tokens");
      c->B = c->rows.present ? c->rows.length : c->cache->B();
      c->T = 1;
      if (c->rows.present && c->rows.length == 0) throw_range(env, "rows", "must hold at least one row");
      if (c->ids.length != c->B)
        args::length_error(env, "tokens", c->rows.present ? "rows.length" : "the cache's batch size", c->B,
                           c->ids.length);
    } else {
      c->B = args::integer(env, info[2], "B", 1, kMaxI32);
      c->T = args::integer(env, info[3], "T", 1, kMaxI32);
      c->rows = args::typed<int32_t>(env, info[4], "rows", true);
      c->ids = args::typed<int32_t>(env, info[1], "ids");
      if (c->ids.length != c->B * c->T) args::length_error(env, "ids", "B × T", c->B * c->T, c->ids.length);
      if (c->rows.present && c->rows.length != c->B) args::length_error(env, "rows", "B", c->B, c->rows.length);
    }
    auto out = Napi::Float32Array::New(env, size_t(c->B * d.config().vocab));
    c->out_data = out.Data();
    c->out = Napi::Persistent(out);
    return c;
  }
  void run_extend(ExtendCall& c) {
    d_->prefill(*c.cache, c.ids.data, c.B, c.T, c.out_data, c.rows.present ? c.rows.data : nullptr);
  }

  Napi::Value Extend(const Napi::CallbackInfo& info, bool decode) {
    Napi::Env env = info.Env();
    auto c = parse_extend(info, decode);
    engine(env, [&] { run_extend(*c); });
    return c->out.Value();
  }
  Napi::Value ExtendAsync(const Napi::CallbackInfo& info, bool decode) {
    Napi::Env env = info.Env();
    auto c = parse_extend(info, decode);
    guarded(env, [&] {  // the worker reads copies: JS may change or free the caller's ids and rows
      c->ids.own();
      c->rows.own();
    });
    return start_job(
        env, decode ? "decodeAsync" : "prefillAsync", [this, c] { run_extend(*c); },
        [c](Napi::Env) -> Napi::Value { return c->out.Value(); }, c->wrap);
  }
  // prefill(cache, ids, B, T, rows?) → Float32Array (B, V): logits of the last new position of each row.
  Napi::Value Prefill(const Napi::CallbackInfo& info) { return Extend(info, false); }
  Napi::Value PrefillAsync(const Napi::CallbackInfo& info) { return ExtendAsync(info, false); }
  // decode(cache, tokens: Int32Array(B), rows?: Int32Array(B)) → Float32Array (B, V)
  Napi::Value Decode(const Napi::CallbackInfo& info) { return Extend(info, true); }
  Napi::Value DecodeAsync(const Napi::CallbackInfo& info) { return ExtendAsync(info, true); }

  Napi::Value Memory(const Napi::CallbackInfo& info) {
    live(info.Env());
    return memory_object(info.Env());
  }
  Napi::Value ResetPeaks(const Napi::CallbackInfo& info) {
    live(info.Env());
    mem_reset_peaks();
    return info.Env().Undefined();
  }
  static Napi::Value MemoryStatic(const Napi::CallbackInfo& info) { return memory_object(info.Env()); }
  // Model.devices() → ['cpu'] or ['cpu', 'cuda'] (a CUDA device with a loadable cuBLAS and the loss kernels).
  static Napi::Value Devices(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Array a = Napi::Array::New(env);
    a.Set(uint32_t(0), "cpu");
#ifdef RIFT_WITH_CUDA
    if (cuda_ops() && cuda_backend()) a.Set(uint32_t(1), "cuda");
#endif
    return a;
  }
  static Napi::Value ResetPeaksStatic(const Napi::CallbackInfo& info) {
    mem_reset_peaks();
    return info.Env().Undefined();
  }

  friend std::unique_ptr<ModelLease> rift::napi::lease_model(Napi::Env, Napi::Value, const char*, const std::string&);
  friend Decoder& rift::napi::model_decoder(Napi::Env, Napi::Value, const char*);

  std::unique_ptr<Decoder> d_;    // null once disposed
  std::atomic<int64_t> held_{0};  // bytes the decoder's allocations and frees add up to (MemScope)
  int64_t reported_ = 0;          // what napi_adjust_external_memory has been told (JS thread)
  std::vector<Napi::Reference<Napi::ArrayBuffer>> views_;  // weak: the zero-copy views handed out
  std::string device_ = "cpu", precision_ = "fp32";
  bool busy_ = false;  // only read/written on the JS thread
  std::string busy_what_;
};

}  // namespace

void init_model(Napi::Env env, Napi::Object exports) {
  ModelWrap::Init(env, exports, KvCacheWrap::Init(env, exports));
  // Test hook: V8's count of external memory, the one napi_adjust_external_memory moves (process.memoryUsage()
  // .external shows ArrayBuffer backing stores instead).
  exports.Set("_externalMemory", Napi::Function::New(
                                     env,
                                     [](const Napi::CallbackInfo& info) -> Napi::Value {
                                       int64_t total = 0;
                                       napi_adjust_external_memory(info.Env(), 0, &total);
                                       return Napi::Number::New(info.Env(), double(total));
                                     },
                                     "_externalMemory"));
}

namespace {
ModelWrap* unwrap_model(Napi::Env env, Napi::Value v, const char* arg) {
  bool tagged = false;
  if (v.IsObject()) napi_check_object_type_tag(env, v, &kModelTag, &tagged);
  if (!tagged) throw_type(env, arg, "must be a native Model (model.native)");
  return ModelWrap::Unwrap(v.As<Napi::Object>());
}
}  // namespace

Decoder& model_decoder(Napi::Env env, Napi::Value v, const char* arg) { return unwrap_model(env, v, arg)->dec(env); }

std::unique_ptr<ModelLease> lease_model(Napi::Env env, Napi::Value v, const char* arg, const std::string& what) {
  ModelWrap* m = unwrap_model(env, v, arg);
  auto lease = std::make_unique<ModelLease>();
  lease->decoder = &m->dec(env);
  lease->model = Napi::Persistent(v.As<Napi::Object>());
  m->busy_ = true;
  m->busy_what_ = what;
  lease->unbusy = [m] { m->busy_ = false; };
  return lease;
}

}  // namespace rift::napi
