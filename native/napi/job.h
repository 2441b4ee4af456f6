// One async call of any binding: run() on a libuv worker thread, then, on the JS thread, settle() (always first)
// and done() (its value resolves the promise; a Napi::Error it throws rejects it). Exceptions of run() reject
// the promise the way args::guarded() maps them on the JS thread (ArgError → TypeError / RangeError,
// std::bad_alloc → "out of memory", others → engine_error).
#pragma once
#include <napi.h>

#include <functional>
#include <memory>
#include <new>
#include <string>
#include <utility>

#include "core/loss.h"
#include "napi/errors.h"

namespace rift::napi {

class Job final : public Napi::AsyncWorker {
 public:
  // Queues the job and returns its promise.
  static Napi::Promise start(Napi::Env env, const char* name, std::function<void()> run,
                             std::function<Napi::Value(Napi::Env)> done, std::function<void()> settle = {}) {
    auto* job = new Job(env, name, std::move(run), std::move(done), std::move(settle));
    Napi::Promise p = job->deferred_.Promise();
    job->Queue();  // the worker deletes itself after OnOK / OnError
    return p;
  }

  void Execute() override {
    try {
      run_();
    } catch (const ArgError& e) {
      arg_error_ = std::make_unique<ArgError>(e);
      SetError(e.message);
    } catch (const std::bad_alloc&) { SetError("out of memory"); } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnOK() override {
    if (settle_) settle_();
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
    if (settle_) settle_();
    deferred_.Reject(arg_error_ ? to_js(Env(), *arg_error_).Value() : engine_error(Env(), e.Message()).Value());
  }

 private:
  Job(Napi::Env env, const char* name, std::function<void()> run, std::function<Napi::Value(Napi::Env)> done,
      std::function<void()> settle)
      : Napi::AsyncWorker(env, name),
        deferred_(Napi::Promise::Deferred::New(env)),
        run_(std::move(run)),
        done_(std::move(done)),
        settle_(std::move(settle)) {}

  Napi::Promise::Deferred deferred_;
  std::function<void()> run_;
  std::function<Napi::Value(Napi::Env)> done_;
  std::function<void()> settle_;
  std::unique_ptr<ArgError> arg_error_;
};

}  // namespace rift::napi
