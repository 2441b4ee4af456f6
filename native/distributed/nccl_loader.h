// NCCL loaded at run time (dlopen), like cuda/cublas_loader.h: the addon builds without NCCL's headers and loads
// where no NCCL is installed. Only what distributed/nccl_comm.cu uses is declared, with nccl.h's C signatures and enum
// values (NCCL 2.x; unchanged since 2.10 for everything here). Plain C++: no CUDA or NCCL headers.
#pragma once
#include <cstddef>
#include <string>

namespace rift::dist {

using ncclComm_t = struct ncclComm*;
using ncclStream_t = void*;  // cudaStream_t; nullptr = the legacy default stream (the CUDA backend's stream)
// nccl.h: typedef struct { char internal[NCCL_UNIQUE_ID_BYTES]; } ncclUniqueId; NCCL_UNIQUE_ID_BYTES = 128.
// Passed BY VALUE to ncclCommInitRank: the same struct layout gives the same calling convention.
constexpr int kNcclUniqueIdBytes = 128;
struct ncclUniqueId {
  char internal[kNcclUniqueIdBytes];
};
using ncclResult_t = int;
constexpr ncclResult_t ncclSuccess = 0;     // nccl.h
constexpr ncclResult_t ncclInProgress = 7;  // nccl.h (2.14+, non-blocking communicators)
using ncclDataType_t = int;
constexpr ncclDataType_t ncclFloat32 = 7;  // nccl.h: ncclInt8 0, ncclUint8 1, ncclInt32 2, ncclUint32 3,
                                           // ncclInt64 4, ncclUint64 5, ncclFloat16 6, ncclFloat32 7
using ncclRedOp_t = int;
constexpr ncclRedOp_t ncclSum = 0;  // nccl.h

struct NcclApi {
  std::string path;
  int version = 0;  // ncclGetVersion: e.g. 22703 for 2.27.3
  ncclResult_t (*get_version)(int* version) = nullptr;
  ncclResult_t (*get_unique_id)(ncclUniqueId* id) = nullptr;
  ncclResult_t (*comm_init_rank)(ncclComm_t* comm, int nranks, ncclUniqueId id, int rank) = nullptr;
  ncclResult_t (*comm_destroy)(ncclComm_t comm) = nullptr;
  ncclResult_t (*comm_abort)(ncclComm_t comm) = nullptr;
  ncclResult_t (*comm_get_async_error)(ncclComm_t comm, ncclResult_t* async_error) = nullptr;
  const char* (*get_error_string)(ncclResult_t result) = nullptr;
  ncclResult_t (*all_reduce)(const void* send, void* recv, size_t count, ncclDataType_t t, ncclRedOp_t op,
                             ncclComm_t comm, ncclStream_t stream) = nullptr;
  ncclResult_t (*reduce)(const void* send, void* recv, size_t count, ncclDataType_t t, ncclRedOp_t op, int root,
                         ncclComm_t comm, ncclStream_t stream) = nullptr;
  ncclResult_t (*broadcast)(const void* send, void* recv, size_t count, ncclDataType_t t, int root, ncclComm_t comm,
                            ncclStream_t stream) = nullptr;
  ncclResult_t (*group_start)() = nullptr;
  ncclResult_t (*group_end)() = nullptr;
};

// The loaded API: $RIFT_NCCL_LIB when set, else libnccl.so.2, then libnccl.so; nullptr when none could be loaded
// or a required symbol is missing. Loaded once, thread-safe; never throws.
const NcclApi* nccl_api() noexcept;
std::string nccl_load_error();  // why nccl_api() is null ("" when it is not)
// "NCCL error N (name: text) in fn"
std::string nccl_error_text(ncclResult_t r, const char* fn);

}  // namespace rift::dist
