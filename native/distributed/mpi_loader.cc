// Open MPI loaded with dlopen (see mpi_loader.h).
#include "distributed/mpi_loader.h"

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>
#include <vector>

namespace rift::dist {
namespace {

std::once_flag g_once;
MpiApi g_api;
bool g_ok = false;
std::string g_error;

template <typename F>
bool sym(void* lib, const char* name, F& fn, std::string& missing) {
  fn = reinterpret_cast<F>(dlsym(lib, name));
  if (!fn) missing += std::string(missing.empty() ? "" : ", ") + name;
  return fn != nullptr;
}

bool handle(void* lib, const char* name, void*& h, std::string& missing) {
  h = dlsym(lib, name);
  if (!h) missing += std::string(missing.empty() ? "" : ", ") + name;
  return h != nullptr;
}

void load() {
  std::vector<std::string> names;
  if (const char* e = std::getenv("RIFT_MPI_LIB"); e && *e)
    names.push_back(e);
  else
    names = {"libmpi.so.40", "libmpi.so"};
  std::string tried;
  for (const std::string& name : names) {
    // RTLD_GLOBAL: Open MPI's dynamically loaded components (mca_*.so) link against libmpi's symbols.
    void* lib = dlopen(name.c_str(), RTLD_NOW | RTLD_GLOBAL);
    if (!lib) {
      const char* e = dlerror();
      tried += std::string(tried.empty() ? "" : "; ") + (e ? e : name.c_str());
      continue;
    }
    MpiApi a;
    a.path = name;
    std::string missing;
    if (!dlsym(lib, "ompi_mpi_comm_world")) {
      tried += std::string(tried.empty() ? "" : "; ") + name +
               ": not Open MPI (no ompi_mpi_comm_world; rift declares Open MPI's ABI only)";
      continue;  // not dlclose'd: an MPI library may not survive being unloaded
    }
    handle(lib, "ompi_mpi_comm_world", a.world, missing);
    handle(lib, "ompi_mpi_float", a.f32, missing);
    handle(lib, "ompi_mpi_double", a.f64, missing);
    handle(lib, "ompi_mpi_byte", a.byte, missing);
    handle(lib, "ompi_mpi_op_sum", a.sum, missing);
    handle(lib, "ompi_mpi_errors_return", a.errors_return, missing);
    sym(lib, "MPI_Init_thread", a.init_thread, missing);
    sym(lib, "MPI_Initialized", a.initialized, missing);
    sym(lib, "MPI_Finalized", a.finalized, missing);
    sym(lib, "MPI_Finalize", a.finalize, missing);
    sym(lib, "MPI_Abort", a.abort, missing);
    sym(lib, "MPI_Comm_rank", a.comm_rank, missing);
    sym(lib, "MPI_Comm_size", a.comm_size, missing);
    sym(lib, "MPI_Comm_set_errhandler", a.comm_set_errhandler, missing);
    sym(lib, "MPI_Error_string", a.error_string, missing);
    sym(lib, "MPI_Get_library_version", a.get_library_version, missing);
    sym(lib, "MPI_Isend", a.isend, missing);
    sym(lib, "MPI_Irecv", a.irecv, missing);
    sym(lib, "MPI_Iallreduce", a.iallreduce, missing);
    sym(lib, "MPI_Ibcast", a.ibcast, missing);
    sym(lib, "MPI_Test", a.test, missing);
    sym(lib, "MPI_Testall", a.testall, missing);
    if (!missing.empty()) {
      tried += std::string(tried.empty() ? "" : "; ") + name + ": missing " + missing;
      continue;
    }
    g_api = a;  // the library stays loaded for the life of the process
    g_ok = true;
    return;
  }
  g_error = "libmpi could not be loaded (" + tried + ")";
}

}  // namespace

const MpiApi* mpi_api() noexcept {
  try {
    std::call_once(g_once, load);
  } catch (...) { return nullptr; }
  return g_ok ? &g_api : nullptr;
}

std::string mpi_load_error() { return mpi_api() ? std::string() : g_error; }

std::string mpi_error_text(int code, const char* fn) {
  std::string text;
  if (const MpiApi* a = mpi_api()) {
    char buf[MPI_MAX_ERROR_STRING + 1] = {0};
    int len = 0;
    if (a->error_string(code, buf, &len) == MPI_SUCCESS && len > 0) text = std::string(buf, size_t(len));
  }
  return "MPI error " + std::to_string(code) + (text.empty() ? "" : " (" + text + ")") + " in " + fn;
}

}  // namespace rift::dist
