// N-API binding of the decoder engine (model/decoder.h): exports.Model and exports.KvCache.
//
// - Arguments are read once, checked (TypeError / RangeError naming the argument) and only then dereferenced.
// - options.device 'cpu' | 'cuda' picks the backend (model/ops.h) and options.precision 'fp32' | 'bf16' its GEMM
//   operand precision (default: fp32 on the CPU, bf16 on CUDA); options.activationDtype (default: the precision)
//   how saved activations are stored; options.recompute activation recomputation.
// - paramsView() / gradsView() / optimizerView() are zero-copy Float32Arrays over the flat buffers of a CPU model;
//   each view keeps its buffer alive (a shared_ptr in the ArrayBuffer's finaliser), so a view never dangles.
//   readBuffer / writeBuffer copy any range of params / grads / m / v to and from the host on any device.
// - lossAndBackwardAsync / stepAsync / prefillAsync / decodeAsync run on a libuv worker (Napi::AsyncWorker) that
//   holds references to the model and to its input arrays. While one runs, every other call that touches the
//   model throws an Error ("busy") instead of racing with it; a KvCache in use by an async call is busy the same way.
// Helpers: napi/model_args.h; the KvCache class: napi/kv_cache.h.
#include "napi/model.h"

#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>

#include "core/memory.h"
#ifdef RIFT_WITH_CUDA
#include "cuda/cuda_ops.h"
#endif
#include "model/decoder.h"
#include "napi/errors.h"
#include "napi/kv_cache.h"
#include "napi/model_args.h"

namespace rift::napi {
namespace {

using namespace model_args;

// ---- Model --------------------------------------------------------------------------------------------------

// One lossAndBackward call, parsed on the JS thread; owns references to its arrays while it runs.
struct LossCall {
  TrainBatch batch;
  Arr<int32_t> ids, targets, offsets, pairs;
  Arr<float> rewards;
  Arr<double> ref;
  LossResult result;
};

// Tags native Model objects (napi_type_tag_object), so that lease_model() tells them from any other object.
const napi_type_tag kModelTag = {0x7269667430314d6fULL, 0x64656c5772617031ULL};

class ModelWrap final : public Napi::ObjectWrap<ModelWrap> {
 public:
  static void Init(Napi::Env env, Napi::Object exports, Napi::FunctionReference* kv_ctor) {
    Napi::Function f = DefineClass(
        env, "Model",
        {InstanceMethod<&ModelWrap::ParamsView>("paramsView"), InstanceMethod<&ModelWrap::GradsView>("gradsView"),
         InstanceMethod<&ModelWrap::ReadBuffer>("readBuffer"), InstanceMethod<&ModelWrap::WriteBuffer>("writeBuffer"),
         InstanceMethod<&ModelWrap::OptimizerView>("optimizerView"),
         InstanceMethod<&ModelWrap::SetOptimizerSteps>("setOptimizerSteps"),
         InstanceMethod<&ModelWrap::TensorTable>("tensorTable"), InstanceMethod<&ModelWrap::Info>("info"),
         InstanceMethod<&ModelWrap::Forward>("forward"),
         InstanceMethod<&ModelWrap::LossAndBackward>("lossAndBackward"),
         InstanceMethod<&ModelWrap::LossAndBackwardAsync>("lossAndBackwardAsync"),
         InstanceMethod<&ModelWrap::ZeroGrad>("zeroGrad"), InstanceMethod<&ModelWrap::GradNorm>("gradNorm"),
         InstanceMethod<&ModelWrap::Step>("step"), InstanceMethod<&ModelWrap::StepAsync>("stepAsync"),
         InstanceMethod<&ModelWrap::NewKvCache>("newKvCache", napi_default, kv_ctor),
         InstanceMethod<&ModelWrap::Prefill>("prefill"),
         InstanceMethod<&ModelWrap::PrefillAsync>("prefillAsync"), InstanceMethod<&ModelWrap::Decode>("decode"),
         InstanceMethod<&ModelWrap::DecodeAsync>("decodeAsync"), InstanceMethod<&ModelWrap::Memory>("memory"),
         InstanceMethod<&ModelWrap::ResetPeaks>("resetPeaks"), StaticMethod<&ModelWrap::MemoryStatic>("memory"),
         StaticMethod<&ModelWrap::Devices>("devices"),
         StaticMethod<&ModelWrap::ResetPeaksStatic>("resetPeaks")});
    exports.Set("Model", f);
  }

  // new Model(config, options?): config holds HF config.json field names.
  explicit ModelWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ModelWrap>(info) {
    Napi::Env env = info.Env();
    Napi::Object o = object_arg(info, 0, "config");
    DecoderConfig c;
    auto get_int = [&](const char* k, int64_t dflt) -> int64_t {
      Napi::Value v = o.Get(k);
      if (v.IsUndefined() && dflt >= 0) return dflt;
      return integer(env, v, k, 1, kMaxI32);
    };
    c.vocab = get_int("vocab_size", -1);
    c.C = get_int("hidden_size", -1);
    c.I = get_int("intermediate_size", -1);
    c.L = get_int("num_hidden_layers", -1);
    c.Hq = get_int("num_attention_heads", -1);
    c.Hkv = get_int("num_key_value_heads", c.Hq);
    Napi::Value hd = o.Get("head_dim");
    if (hd.IsUndefined() || hd.IsNull()) {
      if (c.C % c.Hq) throw_range(env, "head_dim", "missing, and hidden_size is not a multiple of num_attention_heads");
      c.D = c.C / c.Hq;
    } else {
      c.D = integer(env, hd, "head_dim", 1, kMaxI32);
    }
    c.eps = number(env, o.Get("rms_norm_eps"), "rms_norm_eps", 1e-6);
    c.theta = number(env, o.Get("rope_theta"), "rope_theta", 10000);
    c.tied = boolean(env, o.Get("tie_word_embeddings"), "tie_word_embeddings", false);
    c.qkv_bias = boolean(env, o.Get("qkv_bias"), "qkv_bias", false);
    c.o_bias = boolean(env, o.Get("o_bias"), "o_bias", false);
    int64_t chunk = 0;
    MemCategory cat = MemCategory::Params;
    std::string device = "cpu", precision, act_dtype;
    bool recompute = false;
    if (info.Length() > 1 && !info[1].IsUndefined()) {
      Napi::Object opt = object_arg(info, 1, "options");
      Napi::Value cr = opt.Get("chunkRows");
      if (!cr.IsUndefined()) chunk = integer(env, cr, "chunkRows", 1, kMaxI32);
      if (boolean(env, opt.Get("reference"), "reference", false)) cat = MemCategory::Reference;
      device = choice(env, opt.Get("device"), "device", {"cpu", "cuda"}, "cpu");
      precision = choice(env, opt.Get("precision"), "precision", {"fp32", "bf16"}, "");
      recompute = boolean(env, opt.Get("recompute"), "recompute", false);
      act_dtype = choice(env, opt.Get("activationDtype"), "activationDtype", {"fp32", "bf16"}, "");
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
        throw_type(env, "device", "is 'cuda' but no CUDA device with a loadable cuBLAS is usable here"
#ifndef RIFT_WITH_CUDA
                                  " (the addon was built without CUDA)"
#endif
        );
    }
    d_ = guarded(env, [&] { return std::make_unique<Decoder>(c, chunk, cat, *ops, *rows); });
    napi_type_tag_object(env, info.This(), &kModelTag);  // lease_model() recognises models by this tag
    d_->set_recompute(recompute);
    d_->set_activation_dtype(act_dtype == "bf16" ? DType::BF16 : DType::F32);
    device_ = device;
    precision_ = precision;
  }

 private:
  Decoder& dec(Napi::Env env) {
    if (busy_)
      throw Napi::Error::New(env, "Model: busy — an async call (" + busy_what_ +
                                      ") is still running on this model; await it first");
    return *d_;
  }

  Napi::Value ParamsView(const Napi::CallbackInfo& info) {
    return view(info.Env(), d_->params_buffer(), "paramsView");
  }
  Napi::Value GradsView(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (d_->space() != MemSpace::Host) return view(env, d_->params_buffer(), "gradsView");  // throws
    if (!d_->has_grads()) dec(env);  // allocating races with nothing, but keep the rule simple
    return view(env, guarded(env, [&] { return d_->grads_buffer(); }), "gradsView");
  }

  static FlatBuffer which_buffer(Napi::Env env, Napi::Value v) {
    const std::string w = choice(env, v, "which", {"params", "grads", "m", "v"}, "");
    if (w.empty()) throw_type(env, "which", "must be one of 'params', 'grads', 'm', 'v'");
    return w == "params" ? FlatBuffer::Params : w == "grads" ? FlatBuffer::Grads : w == "m" ? FlatBuffer::M
                                                                                           : FlatBuffer::V;
  }
  // readBuffer(which, offset = 0, n = numParams − offset) → Float32Array copy (any device).
  Napi::Value ReadBuffer(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Decoder& d = dec(env);
    const FlatBuffer w = which_buffer(env, info[0]);
    const int64_t P = d.num_params();
    const int64_t off = info[1].IsUndefined() ? 0 : integer(env, info[1], "offset", 0, P);
    const int64_t n = info[2].IsUndefined() ? P - off : integer(env, info[2], "n", 0, P - off);
    auto out = Napi::Float32Array::New(env, size_t(n));
    guarded(env, [&] { d.read(w, off, n, out.Data()); });
    return out;
  }
  // writeBuffer(which, data: Float32Array, offset = 0): copies data into [offset, offset + data.length).
  Napi::Value WriteBuffer(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Decoder& d = dec(env);
    const FlatBuffer w = which_buffer(env, info[0]);
    auto data = typed<float>(env, info[1], "data", napi_float32_array, "Float32Array");
    const int64_t P = d.num_params();
    const int64_t off = info[2].IsUndefined() ? 0 : integer(env, info[2], "offset", 0, P);
    if (data.length > P - off)
      throw_range(env, "data", "length " + std::to_string(data.length) + " at offset " + std::to_string(off) +
                                   " runs past numParams = " + std::to_string(P));
    guarded(env, [&] { d.write(w, off, data.length, data.data); });
    return env.Undefined();
  }

  // optimizerView() → {m, v}: zero-copy Float32Arrays (numParams each, the params layout) over AdamW's state.
  Napi::Value OptimizerView(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Decoder& d = dec(env);
    Napi::Object o = Napi::Object::New(env);
    o.Set("m", view(env, guarded(env, [&] { return d.m_buffer(); }), "optimizerView"));
    o.Set("v", view(env, guarded(env, [&] { return d.v_buffer(); }), "optimizerView"));
    return o;
  }
  // setOptimizerSteps(n): the AdamW step counter (bias corrections) — restore it with m and v.
  Napi::Value SetOptimizerSteps(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Decoder& d = dec(env);
    d.set_optimizer_steps(integer(env, info[0], "steps", 0, kMaxI32));
    return env.Undefined();
  }

  Napi::Value TensorTable(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const auto& t = d_->tensors();
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
    auto ids = typed<int32_t>(env, info[0], "ids", napi_int32_array, "Int32Array");
    const int64_t B = integer(env, info[1], "B", 1, kMaxI32), T = integer(env, info[2], "T", 1, kMaxI32);
    const bool last = boolean(env, info[3], "lastOnly", false);
    if (ids.length != B * T)
      length_error(env, "ids", "B × T", B * T, ids.length);
    const int64_t rows = last ? B : B * T, V = d.config().vocab;
    if (double(rows) * double(V) > 4e9) throw_range(env, "T", "the logits (rows × vocab) would be too large");
    auto out = Napi::Float32Array::New(env, size_t(rows * V));
    guarded(env, [&] { d.forward(ids.data, B, T, last, out.Data()); });
    return out;
  }

  std::shared_ptr<LossCall> parse_loss(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object o = object_arg(info, 0, "options");
    // Read every key first: no user getter runs after a data pointer has been taken.
    const char* keys[] = {"ids", "B", "T", "targets", "offsets", "rewards", "method", "negative", "reduction",
                          "normalizer", "beta", "refLogps", "pairs", "tokenLogps", "entropy", "backward"};
    std::vector<Napi::Value> v;
    for (const char* k : keys) v.push_back(o.Get(k));
    auto c = std::make_shared<LossCall>();
    TrainBatch& b = c->batch;
    LossSpec& s = b.loss;
    b.B = integer(env, v[1], "B", 1, kMaxI32);
    b.T = integer(env, v[2], "T", 1, kMaxI32);
    if (b.B * b.T > kMaxI32) throw_range(env, "T", "B × T must be < 2^31");
    s.method = Method(integer(env, v[6], "method", 0, 4));
    s.neg = NegForm(v[7].IsUndefined() ? 0 : integer(env, v[7], "negative", 0, 1));
    s.reduction = Reduction(v[8].IsUndefined() ? 0 : integer(env, v[8], "reduction", 0, 2));
    s.normalizer = number(env, v[9], "normalizer", 0);
    if (s.normalizer < 0) throw_range(env, "normalizer", "must be > 0 (or 0: derived from the batch)");
    s.beta = number(env, v[10], "beta", 0.1);
    s.want_token_logp = boolean(env, v[13], "tokenLogps", false);
    s.want_entropy = boolean(env, v[14], "entropy", false);
    b.backward = boolean(env, v[15], "backward", true);
    const int64_t N = b.B * b.T;
    c->ids = typed<int32_t>(env, v[0], "ids", napi_int32_array, "Int32Array");
    if (c->ids.length != N)
      length_error(env, "ids", "B × T", N, c->ids.length);
    c->targets = typed<int32_t>(env, v[3], "targets", napi_int32_array, "Int32Array");
    if (c->targets.length != N)
      length_error(env, "targets", "B × T", N, c->targets.length);
    c->offsets = typed<int32_t>(env, v[4], "offsets", napi_int32_array, "Int32Array");
    if (c->offsets.length < 1) throw_range(env, "offsets", "must hold S + 1 entries (at least one)");
    s.S = c->offsets.length - 1;
    c->rewards = typed<float>(env, v[5], "rewards", napi_float32_array, "Float32Array", true);
    if (c->rewards.data && c->rewards.length != s.S)
      length_error(env, "rewards", "the number of sequences S", s.S, c->rewards.length);
    if (s.method == Method::DPO) {
      c->ref = typed<double>(env, v[11], "refLogps", napi_float64_array, "Float64Array");
      if (c->ref.length != s.S) length_error(env, "refLogps", "the number of sequences S", s.S, c->ref.length);
      c->pairs = typed<int32_t>(env, v[12], "pairs", napi_int32_array, "Int32Array");
      if (c->pairs.length % 2) throw_range(env, "pairs", "length must be even (chosen, rejected)");
      s.ref_logp = c->ref.data;
      s.pairs = c->pairs.data;
      s.P = c->pairs.length / 2;
    }
    b.ids = c->ids.data;
    s.targets = c->targets.data;
    s.offsets = c->offsets.data;
    s.rewards = c->rewards.data;
    return c;
  }

  Napi::Value LossAndBackward(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Decoder& d = dec(env);
    auto c = parse_loss(info);
    c->result = guarded(env, [&] { return d.loss_and_backward(c->batch); });
    return loss_result(env, c->result, c->batch.loss);
  }

  // A call run on a libuv worker; the model is marked busy until it settles.
  class Job final : public Napi::AsyncWorker {
   public:
    // cache: a KvCache the call uses (kept alive and marked busy until the call settles), or null.
    Job(Napi::Env env, ModelWrap* m, std::string what, std::function<void()> run,
        std::function<Napi::Value(Napi::Env)> done, KvCacheWrap* cache = nullptr)
        : Napi::AsyncWorker(env, "rift.Model"), deferred_(Napi::Promise::Deferred::New(env)), m_(m),
          cache_(cache), run_(std::move(run)), done_(std::move(done)) {
      self_ = Napi::Persistent(m->Value());
      m->busy_ = true;
      m->busy_what_ = std::move(what);
      if (cache_) {
        cache_ref_ = Napi::Persistent(cache_->Value());
        cache_->busy_ = true;
      }
    }
    Napi::Promise promise() { return deferred_.Promise(); }
    void Execute() override {
      try {
        run_();
      } catch (const ArgError& e) {
        arg_error_ = std::make_unique<ArgError>(e);
        SetError(e.message);
      } catch (const std::bad_alloc&) {
        SetError("out of memory");
      } catch (const std::exception& e) {
        SetError(e.what());
      }
    }
    void settle() {
      m_->busy_ = false;
      if (cache_) cache_->busy_ = false;
    }
    void OnOK() override {
      settle();
      Napi::Value v;
      try {
        v = done_(Env());
      } catch (const Napi::Error& e) {
        deferred_.Reject(e.Value());
        return;
      }
      deferred_.Resolve(v);
    }
    void OnError(const Napi::Error& e) override {
      settle();
      deferred_.Reject(arg_error_ ? to_js(Env(), *arg_error_).Value() : engine_error(Env(), e.Message()).Value());
    }

   private:
    Napi::Promise::Deferred deferred_;
    ModelWrap* m_;
    KvCacheWrap* cache_;
    Napi::ObjectReference self_, cache_ref_;
    std::function<void()> run_;
    std::function<Napi::Value(Napi::Env)> done_;
    std::unique_ptr<ArgError> arg_error_;
  };

  Napi::Value LossAndBackwardAsync(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Decoder& d = dec(env);
    auto c = parse_loss(info);
    auto* job = new Job(
        env, this, "lossAndBackwardAsync", [c, &d] { c->result = d.loss_and_backward(c->batch); },
        [c](Napi::Env e) -> Napi::Value { return loss_result(e, c->result, c->batch.loss); });
    Napi::Promise p = job->promise();
    job->Queue();
    return p;
  }

  Napi::Value ZeroGrad(const Napi::CallbackInfo& info) {
    dec(info.Env()).zero_grad();
    return info.Env().Undefined();
  }
  Napi::Value GradNorm(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), dec(info.Env()).grad_norm());
  }

  struct StepCall {
    AdamWParams hp;
    double max_norm = 0, norm = 0;
  };
  std::shared_ptr<StepCall> parse_step(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object o = object_arg(info, 0, "options");
    auto s = std::make_shared<StepCall>();
    s->hp.lr = number(env, o.Get("lr"), "lr", 0, true);
    s->hp.beta1 = number(env, o.Get("beta1"), "beta1", 0.9);
    s->hp.beta2 = number(env, o.Get("beta2"), "beta2", 0.999);
    s->hp.eps = number(env, o.Get("eps"), "eps", 1e-8);
    s->hp.weight_decay = number(env, o.Get("weightDecay"), "weightDecay", 0.01);
    s->max_norm = number(env, o.Get("maxGradNorm"), "maxGradNorm", 0);
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
    s->norm = guarded(env, [&] { return d.step(s->hp, s->max_norm); });
    return step_result(env, *s, d.optimizer_steps());
  }
  Napi::Value StepAsync(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Decoder& d = dec(env);
    auto s = parse_step(info);
    auto* job = new Job(
        env, this, "stepAsync", [s, &d] { s->norm = d.step(s->hp, s->max_norm); },
        [s, &d](Napi::Env e) { return step_result(e, *s, d.optimizer_steps()); });
    Napi::Promise p = job->promise();
    job->Queue();
    return p;
  }

  Napi::Value NewKvCache(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Decoder& d = dec(env);
    const int64_t B = integer(env, info[0], "B", 1, kMaxI32), T = integer(env, info[1], "Tmax", 1, kMaxI32);
    if (double(B) * double(T) * double(d.config().Hkv * d.config().D) * double(2 * d.config().L) > 1e11)
      throw_range(env, "Tmax", "the cache (2 × layers × B × Tmax × kv heads × head_dim floats) would be too large");
    KvCache* cache = guarded(env, [&] { return new KvCache(d.config(), B, T, d.ops()); });
    auto* ctor = static_cast<Napi::FunctionReference*>(info.Data());
    return ctor->New({Napi::External<KvCache>::New(env, cache)});
  }

  // One prefill/decode call, parsed on the JS thread (the output array is made here and filled by the call).
  struct ExtendCall {
    KvCacheWrap* wrap = nullptr;
    KvCache* cache = nullptr;
    Arr<int32_t> ids;
    int64_t B = 0, T = 0;
    Napi::Reference<Napi::Float32Array> out;
    float* out_data = nullptr;
  };
  // prefill: (cache, ids, B, T); decode: (cache, tokens) with B = the cache's batch, T = 1.
  std::shared_ptr<ExtendCall> parse_extend(const Napi::CallbackInfo& info, bool decode) {
    Napi::Env env = info.Env();
    Decoder& d = dec(env);
    auto c = std::make_shared<ExtendCall>();
    c->wrap = KvCacheWrap::unwrap(env, info[0], "cache");
    c->cache = &c->wrap->get(env, "cache");
    if (decode) {
      c->ids = typed<int32_t>(env, info[1], "tokens", napi_int32_array, "Int32Array");
      c->B = c->cache->B();
      c->T = 1;
      if (c->ids.length != c->B) length_error(env, "tokens", "the cache's batch size", c->B, c->ids.length);
    } else {
      c->ids = typed<int32_t>(env, info[1], "ids", napi_int32_array, "Int32Array");
      c->B = integer(env, info[2], "B", 1, kMaxI32);
      c->T = integer(env, info[3], "T", 1, kMaxI32);
      if (c->ids.length != c->B * c->T) length_error(env, "ids", "B × T", c->B * c->T, c->ids.length);
    }
    auto out = Napi::Float32Array::New(env, size_t(c->B * d.config().vocab));
    c->out_data = out.Data();
    c->out = Napi::Persistent(out);
    return c;
  }
  void run_extend(ExtendCall& c) { d_->prefill(*c.cache, c.ids.data, c.B, c.T, c.out_data); }

  Napi::Value Extend(const Napi::CallbackInfo& info, bool decode) {
    Napi::Env env = info.Env();
    auto c = parse_extend(info, decode);
    guarded(env, [&] { run_extend(*c); });
    return c->out.Value();
  }
  Napi::Value ExtendAsync(const Napi::CallbackInfo& info, bool decode) {
    Napi::Env env = info.Env();
    auto c = parse_extend(info, decode);
    auto* job = new Job(
        env, this, decode ? "decodeAsync" : "prefillAsync", [this, c] { run_extend(*c); },
        [c](Napi::Env) -> Napi::Value { return c->out.Value(); }, c->wrap);
    Napi::Promise p = job->promise();
    job->Queue();
    return p;
  }
  // prefill(cache, ids, B, T) → Float32Array (B, V): logits of the last new position of each row.
  Napi::Value Prefill(const Napi::CallbackInfo& info) { return Extend(info, false); }
  Napi::Value PrefillAsync(const Napi::CallbackInfo& info) { return ExtendAsync(info, false); }
  // decode(cache, tokens: Int32Array(B)) → Float32Array (B, V)
  Napi::Value Decode(const Napi::CallbackInfo& info) { return Extend(info, true); }
  Napi::Value DecodeAsync(const Napi::CallbackInfo& info) { return ExtendAsync(info, true); }

  Napi::Value Memory(const Napi::CallbackInfo& info) { return memory_object(info.Env()); }
  Napi::Value ResetPeaks(const Napi::CallbackInfo& info) {
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

  std::unique_ptr<Decoder> d_;
  std::string device_ = "cpu", precision_ = "fp32";
  bool busy_ = false;  // only read/written on the JS thread
  std::string busy_what_;
};

}  // namespace

void init_model(Napi::Env env, Napi::Object exports) {
  ModelWrap::Init(env, exports, KvCacheWrap::Init(env, exports));
}

namespace {
ModelWrap* unwrap_model(Napi::Env env, Napi::Value v, const char* arg) {
  bool tagged = false;
  if (v.IsObject()) napi_check_object_type_tag(env, v, &kModelTag, &tagged);
  if (!tagged) throw_type(env, arg, "must be a native Model (model.native)");
  return ModelWrap::Unwrap(v.As<Napi::Object>());
}
}  // namespace

Decoder& model_decoder(Napi::Env env, Napi::Value v, const char* arg) {
  return unwrap_model(env, v, arg)->dec(env);
}

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
