// Shared by the ops bindings (napi/ops.cc, napi/ops_bf16.cc): an op's options, the backend they select, and the
// staging of host arrays into that backend's memory. Internal to native/napi.
#pragma once
#include <napi.h>

#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "backends/registry.h"
#include "model/ops.h"
#include "napi/args.h"
#include "napi/ops_args.h"

namespace rift::napi::ops_common {

using namespace ops_args;
using args::guarded;
using Opts = args::Opts;

// The options object of an op (argument `arg`), read once: the op's keys and the backend keys every op accepts
// (device, precision and its deprecated alias gemmDtype) are fetched before any data pointer is taken.
Opts opts(const Napi::CallbackInfo& info, std::initializer_list<const char*> keys, size_t arg = 0);
// Why cuda_ops() is unusable here ("" when it is usable).
std::string cuda_unusable_reason(DType dt);
// The backend the options select (device, precision). Parses values already read by Opts: runs no user code.
// device 'cuda' without a usable backend: an Error with code 'ERR_RIFT_NO_CUDA'.
OpsBackend& be(const Opts& o);

// Host arrays → the backend's memory and back. On the CPU backend a mapped pointer is the caller's own memory.
// On CUDA every mapped array is uploaded (outputs too: elements an op does not write, such as gemm's ldc
// padding, come back unchanged), and download() copies the arrays mapped as outputs back to the host. The same
// host memory (pointer and length) maps to one device buffer, so allowed aliasing keeps its meaning. Absent
// arrays map to nullptr, and so do empty ones on the device (the ops read nothing there).
class Staging {
 public:
  explicit Staging(OpsBackend& ops) : ops_(ops), host_(ops.space() == MemSpace::Host) {}
  template <typename T>
  T* in(const Span<T>& s) {  // read by the op
    return static_cast<T*>(map(s.present ? s.data : nullptr, size_t(s.length) * sizeof(T), false));
  }
  template <typename T>
  T* out(const Span<T>& s) {  // written (or read and written) by the op: copied back after it
    return static_cast<T*>(map(s.present ? s.data : nullptr, size_t(s.length) * sizeof(T), true));
  }
  void download() {
    if (host_) return;
    for (Entry& e : entries_)
      if (e.write) ops_.download(e.host, e.buf.data(), e.bytes);
  }

 private:
  static_assert(sizeof(int32_t) == sizeof(float), "int32 arrays are staged in float-sized buffers");
  struct Entry {
    void* host;
    size_t bytes;
    OpsBuffer buf;
    bool write;
  };
  void* map(void* host, size_t bytes, bool write) {
    if (host_ || !host) return host;
    if (bytes == 0) return nullptr;
    for (Entry& e : entries_)
      if (e.host == host && e.bytes == bytes) {
        e.write = e.write || write;
        return e.buf.data();
      }
    OpsBuffer buf(ops_, MemCategory::Workspace, (bytes + sizeof(float) - 1) / sizeof(float));
    ops_.upload(buf.data(), host, bytes);
    entries_.push_back(Entry{host, bytes, std::move(buf), write});
    return entries_.back().buf.data();
  }

  OpsBackend& ops_;
  bool host_;
  std::vector<Entry> entries_;
};

// Runs f(staging) on the backend under guarded(): uploads happen in f (through staging.in / out), the outputs
// come back after it; an exception (ArgError → RangeError / TypeError) leaves the caller's arrays untouched on
// CUDA.
template <typename F>
void run(Napi::Env env, OpsBackend& ops, F&& f) {
  guarded(env, [&] {
    Staging st(ops);
    f(st);
    st.download();
  });
}

}  // namespace rift::napi::ops_common
