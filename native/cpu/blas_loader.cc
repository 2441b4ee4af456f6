#include "cpu/blas_loader.h"

#include <cstdlib>
#include <cstring>
#include <mutex>

#if defined(__unix__) || defined(__APPLE__)
#include <dlfcn.h>
#define RIFT_HAVE_DLOPEN 1
#endif

namespace rift::cpu {
namespace {

#if RIFT_HAVE_DLOPEN
bool try_load(const char* name, bool require_openblas, BlasLib* out) {
  void* h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
  if (!h) return false;
  auto sgemm = reinterpret_cast<BlasLib::SgemmFn>(dlsym(h, "cblas_sgemm"));
  auto set_n = reinterpret_cast<void (*)(int)>(dlsym(h, "openblas_set_num_threads"));
  auto get_n = reinterpret_cast<int (*)()>(dlsym(h, "openblas_get_num_threads"));
  if (!sgemm || (require_openblas && !(set_n && get_n))) {
    dlclose(h);
    return false;
  }
  out->sgemm = sgemm;
  out->set_num_threads = set_n;
  out->get_num_threads = get_n;
  out->path = name;
  return true;
}
#endif

}  // namespace

const BlasLib* blas_lib() {
  static std::once_flag once;
  static BlasLib lib;
  static bool ok = false;
  std::call_once(once, [] {
    const char* env = std::getenv("RIFT_BLAS");
    if (env && (!std::strcmp(env, "off") || !std::strcmp(env, "0") || !std::strcmp(env, "builtin"))) return;
#if RIFT_HAVE_DLOPEN
    ok = try_load("libopenblas.so.0", false, &lib) || try_load("libopenblas.so", false, &lib) ||
         try_load("libblas.so.3", true, &lib);
#endif
  });
  return ok ? &lib : nullptr;
}

}  // namespace rift::cpu
