// Open MPI's libmpi loaded at run time (dlopen), so the addon builds and loads where no MPI is installed — the
// pattern of cuda/cublas_loader.h. Only what native/dist uses is declared here, with the C signatures of mpi.h and
// Open MPI's ABI (openmpi/include/mpi.h; 3.x–5.x agree): every handle (MPI_Comm, MPI_Datatype, MPI_Op,
// MPI_Errhandler, MPI_Request) is a pointer, the predefined ones are the addresses of exported globals
// (MPI_COMM_WORLD = &ompi_mpi_comm_world, MPI_FLOAT = &ompi_mpi_float, MPI_SUM = &ompi_mpi_op_sum, ...),
// MPI_IN_PLACE is (void*)1 and MPI_STATUS_IGNORE is null. MPICH-ABI libraries (integer handles) are refused
// with a message that says so. No MPI header is needed at build time.
#pragma once
#include <cstddef>
#include <string>

namespace rift::dist {

using MPI_Comm = void*;
using MPI_Datatype = void*;
using MPI_Op = void*;
using MPI_Errhandler = void*;
using MPI_Request = void*;
// Open MPI's struct ompi_status_public_t (mpi.h): the three public fields, then two internal ones.
struct MPI_Status {
  int MPI_SOURCE;
  int MPI_TAG;
  int MPI_ERROR;
  int cancelled_;
  size_t ucount_;
};

constexpr int MPI_SUCCESS = 0;                                 // mpi.h
constexpr int MPI_THREAD_SERIALIZED = 2;                       // enum {SINGLE, FUNNELED, SERIALIZED, MULTIPLE}
inline void* const MPI_IN_PLACE = reinterpret_cast<void*>(1);  // mpi.h: ((void *) 1)
constexpr int MPI_MAX_ERROR_STRING = 256;                      // OPAL_MAX_ERROR_STRING
constexpr int MPI_MAX_LIBRARY_VERSION_STRING = 256;            // mpi.h

struct MpiApi {
  std::string path;  // the library that was loaded
  // predefined handles (addresses of Open MPI's globals)
  MPI_Comm world = nullptr;                // ompi_mpi_comm_world
  MPI_Datatype f32 = nullptr;              // ompi_mpi_float
  MPI_Datatype f64 = nullptr;              // ompi_mpi_double
  MPI_Datatype byte = nullptr;             // ompi_mpi_byte
  MPI_Op sum = nullptr;                    // ompi_mpi_op_sum
  MPI_Errhandler errors_return = nullptr;  // ompi_mpi_errors_return
  int (*init_thread)(int* argc, char*** argv, int required, int* provided) = nullptr;
  int (*initialized)(int* flag) = nullptr;
  int (*finalized)(int* flag) = nullptr;
  int (*finalize)() = nullptr;
  int (*abort)(MPI_Comm comm, int code) = nullptr;
  int (*comm_rank)(MPI_Comm comm, int* rank) = nullptr;
  int (*comm_size)(MPI_Comm comm, int* size) = nullptr;
  int (*comm_set_errhandler)(MPI_Comm comm, MPI_Errhandler h) = nullptr;
  int (*error_string)(int code, char* text, int* len) = nullptr;
  int (*get_library_version)(char* text, int* len) = nullptr;
  int (*isend)(const void* buf, int count, MPI_Datatype t, int dest, int tag, MPI_Comm comm,
               MPI_Request* req) = nullptr;
  int (*irecv)(void* buf, int count, MPI_Datatype t, int source, int tag, MPI_Comm comm, MPI_Request* req) = nullptr;
  int (*iallreduce)(const void* send, void* recv, int count, MPI_Datatype t, MPI_Op op, MPI_Comm comm,
                    MPI_Request* req) = nullptr;
  int (*ibcast)(void* buf, int count, MPI_Datatype t, int root, MPI_Comm comm, MPI_Request* req) = nullptr;
  int (*test)(MPI_Request* req, int* flag, MPI_Status* status) = nullptr;
  int (*testall)(int count, MPI_Request* reqs, int* flag, MPI_Status* statuses) = nullptr;
};

// The loaded API: $RIFT_MPI_LIB when set, else libmpi.so.40 (Open MPI 3–5), then libmpi.so; nullptr when none could
// be loaded, a required symbol is missing, or the library is not Open MPI. Loaded once (RTLD_GLOBAL: Open MPI's
// plugins resolve libmpi's symbols), thread-safe; never throws.
const MpiApi* mpi_api() noexcept;
// Why mpi_api() is null ("" when it is not).
std::string mpi_load_error();
// "MPI error N (text) in fn"; the text from MPI_Error_string when the library is loaded.
std::string mpi_error_text(int code, const char* fn);

}  // namespace rift::dist
