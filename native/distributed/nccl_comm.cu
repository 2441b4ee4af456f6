// NCCL collectives over the CUDA backend's device memory (collective.h): one process per GPU, the communicator's
// unique id made by rank 0 and broadcast over MPI (distributed/comm.h; a world of one rank needs no MPI), every op
// on the legacy default stream — the stream every op of the CUDA backend runs on (cuda/cuda_ops.cu), so a reduction
// is ordered after the backward that wrote the gradients and before the step that reads them without any event.
// wait() polls the stream (cudaStreamQuery) and NCCL's asynchronous error state until the communicator's timeout;
// then the NCCL communicator is aborted (its kernels return) and every rank still alive answers a probe over MPI
// that names the ranks that do not (Comm::timed_out).
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <thread>

#include "distributed/collective.h"
#include "distributed/nccl_loader.h"

namespace rift::dist {
namespace {

class NcclCollective final : public Collective {
 public:
  explicit NcclCollective(Comm& c) : c_(c) {
    api_ = nccl_api();
    if (!api_) throw std::runtime_error(nccl_load_error());
    ncclUniqueId id{};
    if (c.rank() == 0) check(api_->get_unique_id(&id), "ncclGetUniqueId");
    c.coordinate("NCCL: communicator set-up", {}, false);  // every rank is here before the broadcast
    c.broadcast(&id, sizeof id, 0);
    c.wait("the broadcast of NCCL's unique id");
    check(api_->comm_init_rank(&comm_, c.size(), id, c.rank()), "ncclCommInitRank");
  }
  ~NcclCollective() override {
    if (!comm_) return;
    if (c_.broken())
      api_->comm_abort(comm_);
    else
      api_->comm_destroy(comm_);
  }

  const char* name() const override { return "nccl"; }
  MemSpace space() const override { return MemSpace::Device; }
  // One stream: a collective enqueued during the backward would only run between its kernels.
  bool overlaps() const override { return false; }
  void allreduce(float* buf, int64_t n) override {
    check(api_->all_reduce(buf, buf, size_t(n), ncclFloat32, ncclSum, comm_, nullptr), "ncclAllReduce");
  }
  void reduce(float* buf, int64_t n, int root) override {
    check(api_->reduce(buf, buf, size_t(n), ncclFloat32, ncclSum, root, comm_, nullptr), "ncclReduce");
  }
  void broadcast(float* buf, int64_t n, int root) override {
    check(api_->broadcast(buf, buf, size_t(n), ncclFloat32, root, comm_, nullptr), "ncclBroadcast");
  }
  void begin_group() override { check(api_->group_start(), "ncclGroupStart"); }
  void end_group() override { check(api_->group_end(), "ncclGroupEnd"); }
  void wait(const std::string& what) override {
    const auto deadline =
        std::chrono::steady_clock::now() +
        std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(c_.timeout()));
    int64_t sleep_us = 0;
    for (;;) {
      const cudaError_t e = cudaStreamQuery(nullptr);
      if (e == cudaSuccess) return;
      if (e != cudaErrorNotReady)
        fail("rank " + std::to_string(c_.rank()) + ": CUDA error " + std::to_string(int(e)) + " (" +
             cudaGetErrorName(e) + ") while waiting for " + what);
      ncclResult_t async = ncclSuccess;
      api_->comm_get_async_error(comm_, &async);
      if (async != ncclSuccess && async != ncclInProgress)
        fail("rank " + std::to_string(c_.rank()) + ": " + nccl_error_text(async, what.c_str()));
      if (std::chrono::steady_clock::now() >= deadline) {
        api_->comm_abort(comm_);  // its kernels return; the communicator cannot be used again
        comm_ = nullptr;
        c_.timed_out(what + " (NCCL)");
      }
      sleep_us = std::min<int64_t>(200, sleep_us + 10);
      std::this_thread::sleep_for(std::chrono::microseconds(sleep_us));
    }
  }

 private:
  void check(ncclResult_t r, const char* fn) {
    if (r != ncclSuccess) fail("rank " + std::to_string(c_.rank()) + ": " + nccl_error_text(r, fn));
  }
  [[noreturn]] void fail(const std::string& msg) {
    c_.abandon(msg);
    throw DistError(DistError::Nccl, c_.rank(), 0, msg);
  }

  Comm& c_;
  const NcclApi* api_ = nullptr;
  ncclComm_t comm_ = nullptr;
};

}  // namespace

std::unique_ptr<Collective> nccl_collective(Comm& c) { return std::make_unique<NcclCollective>(c); }

std::string nccl_describe() {
  const NcclApi* a = nccl_api();
  if (!a) return "unavailable: " + nccl_load_error();
  const int v = a->version;  // 2.9+: major·10000 + minor·100 + patch
  return "NCCL " + std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." + std::to_string(v % 100) +
         " (" + a->path + ")";
}

}  // namespace rift::dist
