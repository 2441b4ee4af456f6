// N-API binding of the data-parallel layer (native/distributed): exports.dist.
//
//   mpi()                          {available, path, error}: can libmpi (Open MPI) be loaded (nothing is initialised)
//   nccl()                         NCCL's version and path, or why it cannot be used
//   init({mpi, timeoutSec})        {rank, size, library}: MPI_Init_thread, or a local world of one rank (mpi false)
//   info()                         {initialized, rank, size, mpi, library, timeoutSec, broken, failure}
//   setTimeout(sec)
//   coordinate(label, values: Float64Array, same) → Promise<Float64Array>    the sum / rank 0's values (comm.h)
//   allReduce(buf: Float32Array | Float64Array) → Promise<void>             host memory, in place
//   paramsHash(model) → Promise<string>       64-bit FNV-1a over the weights' bit patterns (hex): equal models
//   finalize(), abandon(why)                  MPI_Finalize when healthy / mark failed (no MPI_Finalize at exit)
//   new GradSync(model, {zero: 0 | 1, backend: 'mpi' | 'nccl', bucketMB}) (distributed/grad_sync.h):
//     info() → {zero, backend, shardOffset, shardCount, buckets}; arm(); disarm();
//     stepAsync({lr, beta1, beta2, eps, weightDecay, maxGradNorm}) → Promise<{gradNorm, clipScale, step}>;
//     reduceGradsAsync() → Promise<void>; readState() → {m, v}; writeState(m, v);
//     gatherStateAsync() → Promise<{m, v} | null> (rank 0 gets the whole AdamW state, the others null)
// `model` is a native Model (model.native). Work that touches a model runs on a libuv worker and marks the model
// busy (napi/model.h lease_model). A failure of the job rejects with an Error whose code is 'ERR_RIFT_DIST', with
// kind ('timeout' | 'sequence' | 'mismatch' | 'mpi' | 'broken' | 'nccl'), rank (the rank it names, −1: none) and
// index (mismatch: the first differing value); bad arguments throw TypeError / RangeError naming them.
#include "napi/dist.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "distributed/collective.h"
#include "distributed/comm.h"
#include "distributed/grad_sync.h"
#include "distributed/mpi_loader.h"
#include "model/decoder.h"
#include "napi/args.h"
#include "napi/errors.h"
#include "napi/model.h"

namespace rift::napi {
namespace {

using namespace args;
using dist::Comm;
using dist::DistError;

Napi::Error dist_error(Napi::Env env, const DistError& e) {
  Napi::Error err = Napi::Error::New(env, e.what());
  err.Set("code", Napi::String::New(env, "ERR_RIFT_DIST"));
  err.Set("kind", Napi::String::New(env, dist::kind_name(e.kind)));
  err.Set("rank", Napi::Number::New(env, e.rank));
  err.Set("index", Napi::Number::New(env, double(e.index)));
  return err;
}

template <typename F>
auto dist_guarded(Napi::Env env, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const DistError& e) { throw dist_error(env, e); } catch (const ArgError& e) {
    throw to_js(env, e);
  } catch (const std::bad_alloc&) { throw Napi::Error::New(env, "out of memory"); } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) { throw engine_error(env, e.what()); }
}

Comm& comm(Napi::Env env) {
  Comm* c = Comm::get();
  if (!c) throw Napi::Error::New(env, "dist: not initialised (call dist.init first)");
  return *c;
}

// Work on a libuv worker; the model (if leased) is busy until it settles.
class DistJob final : public Napi::AsyncWorker {
 public:
  DistJob(Napi::Env env, std::function<void()> run, std::function<Napi::Value(Napi::Env)> done,
          std::unique_ptr<ModelLease> lease = nullptr)
      : Napi::AsyncWorker(env, "rift.dist"),
        deferred_(Napi::Promise::Deferred::New(env)),
        run_(std::move(run)),
        done_(std::move(done)),
        lease_(std::move(lease)) {}
  Napi::Promise promise() { return deferred_.Promise(); }
  void Execute() override {
    try {
      run_();
    } catch (const DistError& e) {
      dist_ = std::make_unique<DistError>(e);
      SetError(e.what());
    } catch (const ArgError& e) {
      arg_ = std::make_unique<ArgError>(e);
      SetError(e.message);
    } catch (const std::bad_alloc&) { SetError("out of memory"); } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnOK() override {
    if (lease_) lease_->release();
    try {
      deferred_.Resolve(done_(Env()));
    } catch (const Napi::Error& e) { deferred_.Reject(e.Value()); }
  }
  void OnError(const Napi::Error& e) override {
    if (lease_) lease_->release();
    if (dist_)
      deferred_.Reject(dist_error(Env(), *dist_).Value());
    else if (arg_)
      deferred_.Reject(to_js(Env(), *arg_).Value());
    else
      deferred_.Reject(engine_error(Env(), e.Message()).Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::function<void()> run_;
  std::function<Napi::Value(Napi::Env)> done_;
  std::unique_ptr<ModelLease> lease_;
  std::unique_ptr<DistError> dist_;
  std::unique_ptr<ArgError> arg_;
};

Napi::Promise queue(DistJob* job) {
  Napi::Promise p = job->promise();
  job->Queue();
  return p;
}

Napi::Value Mpi(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const dist::MpiApi* a = dist::mpi_api();
  Napi::Object o = Napi::Object::New(env);
  o.Set("available", a != nullptr);
  o.Set("path", a ? a->path : "");
  o.Set("error", dist::mpi_load_error());
  return o;
}

Napi::Value Nccl(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), dist::nccl_describe()); }

void cleanup(void*) {
  if (Comm* c = Comm::get()) c->finalize();
}

Napi::Value Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Comm* c = Comm::get();
  Napi::Object o = Napi::Object::New(env);
  o.Set("initialized", c != nullptr);
  o.Set("rank", c ? c->rank() : 0);
  o.Set("size", c ? c->size() : 1);
  o.Set("mpi", c && c->uses_mpi());
  o.Set("library", c ? c->library() : "");
  o.Set("timeoutSec", c ? c->timeout() : 0.0);
  o.Set("broken", c && c->broken());
  o.Set("failure", c ? c->failure() : "");
  return o;
}

Napi::Value Init(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Opts o(info, 0, "options");
  o.read({"mpi", "timeoutSec"});
  const bool mpi = o.boolean("mpi", true);
  const double t = o.number("timeoutSec", 600);
  if (t <= 0) throw_range(env, "timeoutSec", "must be > 0");
  const bool first = Comm::get() == nullptr;
  dist_guarded(env, [&] { return &Comm::init(mpi, t); });
  if (first) napi_add_env_cleanup_hook(env, cleanup, nullptr);
  return Info(info);
}

Napi::Value SetTimeout(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const double t = number(env, info[0], "timeoutSec", 0, -INFINITY, INFINITY, true);
  if (t <= 0) throw_range(env, "timeoutSec", "must be > 0");
  comm(env).set_timeout(t);
  return env.Undefined();
}

Napi::Value Coordinate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Comm& c = comm(env);
  if (!info[0].IsString()) throw_type(env, "label", "must be a string");
  const std::string label = info[0].As<Napi::String>().Utf8Value();
  auto v = typed<double>(env, info[1], "values");
  const bool same = boolean(env, info[2], "same", false);
  auto in = std::make_shared<std::vector<double>>(v.data, v.data + v.length);
  auto out = std::make_shared<std::vector<double>>();
  return queue(new DistJob(
      env, [&c, label, in, out, same] { *out = c.coordinate(label, *in, same); },
      [out](Napi::Env e) -> Napi::Value {
        auto a = Napi::Float64Array::New(e, out->size());
        std::copy(out->begin(), out->end(), a.Data());
        return a;
      }));
}

// In place on the caller's array, which the call owns the way the loss binding owns its gradient: the worker
// reduces a native copy, written back when the call settles; if the array was detached, transferred or resized
// meanwhile, the promise rejects and nothing is written.
template <typename T>
Napi::Value all_reduce(Napi::Env env, Comm& c, Napi::Value b, const char* what) {
  Span<T> in = typed<T>(env, b, "buf");
  auto copy = std::make_shared<std::vector<T>>(in.data, in.data + in.length);
  auto ref = std::make_shared<Napi::Reference<Napi::Value>>(Napi::Persistent(b));
  const size_t bytes = copy->size() * sizeof(T);
  return queue(new DistJob(
      env,
      [&c, copy, what] {
        c.allreduce(copy->data(), int64_t(copy->size()));
        c.wait("the all-reduce of " + std::to_string(copy->size()) + " " + what);
      },
      [copy, ref, bytes](Napi::Env e) -> Napi::Value {
        TypedInfo t;
        if (!typed_info(e, ref->Value(), &t) || t.bytes != bytes)
          throw Napi::Error::New(e,
                                 "buf: its ArrayBuffer was detached, transferred or resized while allReduce ran; "
                                 "nothing was written");
        if (bytes) std::memcpy(t.data, copy->data(), bytes);
        return e.Undefined();
      }));
}

Napi::Value AllReduce(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Comm& c = comm(env);
  Napi::Value b = info[0];
  TypedInfo t;
  if (!typed_info(env, b, &t) || (t.type != napi_float64_array && t.type != napi_float32_array))
    throw_type(env, "buf", "must be a Float32Array or Float64Array");
  return t.type == napi_float64_array ? all_reduce<double>(env, c, b, "doubles")
                                      : all_reduce<float>(env, c, b, "floats");
}

Napi::Value ParamsHash(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto lease = lease_model(env, info[0], "model", "dist.paramsHash");
  Decoder* d = lease->decoder;
  auto h = std::make_shared<uint64_t>(0xcbf29ce484222325ULL);
  return queue(new DistJob(
      env,
      [d, h] {
        const int64_t P = d->num_params(), chunk = int64_t(1) << 24;
        std::vector<float> buf(size_t(std::min(P, chunk)));
        for (int64_t o = 0; o < P; o += chunk) {
          const int64_t n = std::min(chunk, P - o);
          d->read(FlatBuffer::Params, o, n, buf.data());
          const uint32_t* w = reinterpret_cast<const uint32_t*>(buf.data());
          for (int64_t i = 0; i < n; ++i) *h = (*h ^ w[i]) * 0x100000001b3ULL;
        }
      },
      [h](Napi::Env e) -> Napi::Value {
        char s[20];
        std::snprintf(s, sizeof s, "%016llx", static_cast<unsigned long long>(*h));
        return Napi::String::New(e, s);
      },
      std::move(lease)));
}

Napi::Value Finalize(const Napi::CallbackInfo& info) {
  if (Comm* c = Comm::get()) c->finalize();
  return info.Env().Undefined();
}

Napi::Value Abandon(const Napi::CallbackInfo& info) {
  if (Comm* c = Comm::get()) c->abandon(info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "");
  return info.Env().Undefined();
}

// ---- GradSync ------------------------------------------------------------------------------------------------

struct StepArgs {
  AdamWParams hp;
  double max_norm = 0, norm = 0;
  int64_t step = 0;
};

class GradSyncWrap final : public Napi::ObjectWrap<GradSyncWrap> {
 public:
  static void Init(Napi::Env env, Napi::Object exports) {
    exports.Set("GradSync",
                DefineClass(env, "GradSync",
                            {InstanceMethod<&GradSyncWrap::InfoM>("info"), InstanceMethod<&GradSyncWrap::Arm>("arm"),
                             InstanceMethod<&GradSyncWrap::Disarm>("disarm"),
                             InstanceMethod<&GradSyncWrap::StepAsync>("stepAsync"),
                             InstanceMethod<&GradSyncWrap::ReduceGradsAsync>("reduceGradsAsync"),
                             InstanceMethod<&GradSyncWrap::ReadState>("readState"),
                             InstanceMethod<&GradSyncWrap::WriteState>("writeState"),
                             InstanceMethod<&GradSyncWrap::GatherStateAsync>("gatherStateAsync")}));
  }

  explicit GradSyncWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<GradSyncWrap>(info) {
    Napi::Env env = info.Env();
    Comm& c = comm(env);
    Decoder& d = model_decoder(env, info[0], "model");
    Opts o(info, 1, "options");
    o.read({"zero", "backend", "bucketMB"});
    const int zero = int(o.integer("zero", 0, 1));
    const std::string backend = o.choice("backend", {"mpi", "nccl"}, "mpi");
    const bool nccl = backend == "nccl";
    // MPI: 25 MB buckets (as PyTorch DDP); NCCL: one call per region (its own pipelining; no int counts)
    double mb = o.number("bucketMB", nccl ? 1e9 : 25);
    if (!(mb > 0)) throw_range(env, "bucketMB", "must be > 0");
    const int64_t floats = int64_t(std::min(4e15, std::max(1.0, mb * 1024 * 1024 / 4)));
    if (nccl && d.space() != MemSpace::Device)
      throw_range(env, "backend", "'nccl' reduces device memory: the model must be on device 'cuda'");
    if (!nccl && d.space() != MemSpace::Host)
      throw_range(env, "backend", "'mpi' reduces host memory: a model on device 'cuda' needs backend 'nccl'");
    model_ = Napi::Persistent(info[0].As<Napi::Object>());
    sync_ = dist_guarded(env, [&] {
      std::unique_ptr<dist::Collective> coll =
          nccl ? dist::nccl_collective(c) : std::unique_ptr<dist::Collective>(new dist::MpiCollective(c));
      return std::make_shared<dist::GradSync>(c, std::move(coll), d, zero, floats);
    });
  }

 private:
  Napi::Value InfoM(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object o = Napi::Object::New(env);
    o.Set("zero", sync_->zero());
    o.Set("backend", sync_->backend());
    o.Set("shardOffset", double(sync_->shard().offset));
    o.Set("shardCount", double(sync_->shard().count));
    o.Set("buckets", double(sync_->buckets()));
    return o;
  }
  Napi::Value Arm(const Napi::CallbackInfo& info) {
    model_decoder(info.Env(), model_.Value(), "model");  // not busy
    sync_->arm();
    return info.Env().Undefined();
  }
  Napi::Value Disarm(const Napi::CallbackInfo& info) {
    model_decoder(info.Env(), model_.Value(), "model");  // not busy: no backward is running
    sync_->disarm();
    return info.Env().Undefined();
  }
  std::shared_ptr<StepArgs> parse_step(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Opts o(info, 0, "options");
    o.read({"lr", "beta1", "beta2", "eps", "weightDecay", "maxGradNorm"});
    auto s = std::make_shared<StepArgs>();
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
  Napi::Value StepAsync(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto s = parse_step(info);
    auto lease = lease_model(env, model_.Value(), "model", "GradSync.stepAsync");
    Decoder* d = lease->decoder;
    std::shared_ptr<dist::GradSync> g = sync_;
    return queue(new DistJob(
        env,
        [s, g, d] {
          s->norm = g->step(s->hp, s->max_norm);
          s->step = d->optimizer_steps();
        },
        [s](Napi::Env e) -> Napi::Value {
          Napi::Object o = Napi::Object::New(e);
          o.Set("gradNorm", s->norm);
          o.Set("clipScale", s->max_norm > 0 ? std::min(1.0, s->max_norm / (s->norm + 1e-6)) : 1.0);
          o.Set("step", double(s->step));
          return o;
        },
        std::move(lease)));
  }
  Napi::Value ReduceGradsAsync(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto lease = lease_model(env, model_.Value(), "model", "GradSync.reduceGradsAsync");
    std::shared_ptr<dist::GradSync> g = sync_;
    return queue(new DistJob(
        env, [g] { g->reduce_grads(); }, [](Napi::Env e) -> Napi::Value { return e.Undefined(); }, std::move(lease)));
  }
  void need_zero(Napi::Env env, const char* method) {
    if (!sync_->zero())
      throw Napi::Error::New(env, std::string(method) + ": zero 0 keeps AdamW's state in the model (optimizerState())");
  }
  Napi::Value ReadState(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    need_zero(env, "readState");
    model_decoder(env, model_.Value(), "model");
    const size_t n = size_t(sync_->shard().count);
    auto m = Napi::Float32Array::New(env, n), v = Napi::Float32Array::New(env, n);
    dist_guarded(env, [&] {
      sync_->read_state(m.Data(), v.Data());
      return 0;
    });
    Napi::Object o = Napi::Object::New(env);
    o.Set("m", m);
    o.Set("v", v);
    return o;
  }
  Napi::Value WriteState(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    need_zero(env, "writeState");
    model_decoder(env, model_.Value(), "model");
    auto m = typed<float>(env, info[0], "m");
    auto v = typed<float>(env, info[1], "v");
    const int64_t n = sync_->shard().count;
    if (m.length != n) length_error(env, "m", "this rank's shard", n, m.length);
    if (v.length != n) length_error(env, "v", "this rank's shard", n, v.length);
    dist_guarded(env, [&] {
      sync_->write_state(m.data, v.data);
      return 0;
    });
    return env.Undefined();
  }
  Napi::Value GatherStateAsync(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    need_zero(env, "gatherStateAsync");
    auto lease = lease_model(env, model_.Value(), "model", "GradSync.gatherStateAsync");
    const bool root = comm(env).rank() == 0;
    const size_t P = size_t(lease->decoder->num_params());
    Napi::Float32Array m, v;
    if (root) m = Napi::Float32Array::New(env, P), v = Napi::Float32Array::New(env, P);
    auto refs = std::make_shared<std::pair<Napi::Reference<Napi::Float32Array>, Napi::Reference<Napi::Float32Array>>>();
    float *pm = nullptr, *pv = nullptr;
    if (root) {
      refs->first = Napi::Persistent(m), refs->second = Napi::Persistent(v);
      pm = m.Data(), pv = v.Data();
    }
    std::shared_ptr<dist::GradSync> g = sync_;
    return queue(new DistJob(
        env, [g, pm, pv] { g->gather_state(pm, pv); },
        [refs, root](Napi::Env e) -> Napi::Value {
          if (!root) return e.Null();
          Napi::Object o = Napi::Object::New(e);
          o.Set("m", refs->first.Value());
          o.Set("v", refs->second.Value());
          return o;
        },
        std::move(lease)));
  }

  Napi::ObjectReference model_;
  std::shared_ptr<dist::GradSync> sync_;
};

}  // namespace

void init_dist(Napi::Env env, Napi::Object exports) {
  Napi::Object d = Napi::Object::New(env);
  d.Set("mpi", Napi::Function::New(env, Mpi, "mpi"));
  d.Set("nccl", Napi::Function::New(env, Nccl, "nccl"));
  d.Set("init", Napi::Function::New(env, Init, "init"));
  d.Set("info", Napi::Function::New(env, Info, "info"));
  d.Set("setTimeout", Napi::Function::New(env, SetTimeout, "setTimeout"));
  d.Set("coordinate", Napi::Function::New(env, Coordinate, "coordinate"));
  d.Set("allReduce", Napi::Function::New(env, AllReduce, "allReduce"));
  d.Set("paramsHash", Napi::Function::New(env, ParamsHash, "paramsHash"));
  d.Set("finalize", Napi::Function::New(env, Finalize, "finalize"));
  d.Set("abandon", Napi::Function::New(env, Abandon, "abandon"));
  GradSyncWrap::Init(env, d);
  exports.Set("dist", d);
}

}  // namespace rift::napi
