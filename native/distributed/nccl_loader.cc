// NCCL loaded with dlopen (see nccl_loader.h).
#include "distributed/nccl_loader.h"

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>
#include <vector>

namespace rift::dist {
namespace {

std::once_flag g_once;
NcclApi g_api;
bool g_ok = false;
std::string g_error;

template <typename F>
void sym(void* lib, const char* name, F& fn, std::string& missing) {
  fn = reinterpret_cast<F>(dlsym(lib, name));
  if (!fn) missing += std::string(missing.empty() ? "" : ", ") + name;
}

void load() {
  std::vector<std::string> names;
  if (const char* e = std::getenv("RIFT_NCCL_LIB"); e && *e)
    names.push_back(e);
  else
    names = {"libnccl.so.2", "libnccl.so"};
  std::string tried;
  for (const std::string& name : names) {
    void* lib = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
      const char* e = dlerror();
      tried += std::string(tried.empty() ? "" : "; ") + (e ? e : name.c_str());
      continue;
    }
    NcclApi a;
    a.path = name;
    std::string missing;
    sym(lib, "ncclGetVersion", a.get_version, missing);
    sym(lib, "ncclGetUniqueId", a.get_unique_id, missing);
    sym(lib, "ncclCommInitRank", a.comm_init_rank, missing);
    sym(lib, "ncclCommDestroy", a.comm_destroy, missing);
    sym(lib, "ncclCommAbort", a.comm_abort, missing);
    sym(lib, "ncclCommGetAsyncError", a.comm_get_async_error, missing);
    sym(lib, "ncclGetErrorString", a.get_error_string, missing);
    sym(lib, "ncclAllReduce", a.all_reduce, missing);
    sym(lib, "ncclReduce", a.reduce, missing);
    sym(lib, "ncclBroadcast", a.broadcast, missing);
    sym(lib, "ncclGroupStart", a.group_start, missing);
    sym(lib, "ncclGroupEnd", a.group_end, missing);
    if (!missing.empty()) {
      tried += std::string(tried.empty() ? "" : "; ") + name + ": missing " + missing;
      dlclose(lib);
      continue;
    }
    if (a.get_version(&a.version) != ncclSuccess) a.version = 0;
    g_api = a;
    g_ok = true;
    return;
  }
  g_error = "NCCL could not be loaded (" + tried + "; set RIFT_NCCL_LIB to libnccl.so.2's path)";
}

const char* result_name(ncclResult_t r) {
  switch (r) {  // nccl.h ncclResult_t
    case 0: return "ncclSuccess";
    case 1: return "ncclUnhandledCudaError";
    case 2: return "ncclSystemError";
    case 3: return "ncclInternalError";
    case 4: return "ncclInvalidArgument";
    case 5: return "ncclInvalidUsage";
    case 6: return "ncclRemoteError";
    case 7: return "ncclInProgress";
    default: return "unknown";
  }
}

}  // namespace

const NcclApi* nccl_api() noexcept {
  try {
    std::call_once(g_once, load);
  } catch (...) { return nullptr; }
  return g_ok ? &g_api : nullptr;
}

std::string nccl_load_error() { return nccl_api() ? std::string() : g_error; }

std::string nccl_error_text(ncclResult_t r, const char* fn) {
  std::string text = result_name(r);
  if (g_ok && g_api.get_error_string) {
    const char* s = g_api.get_error_string(r);
    if (s && *s) text += std::string(": ") + s;
  }
  return "NCCL error " + std::to_string(r) + " (" + text + ") in " + fn;
}

}  // namespace rift::dist
