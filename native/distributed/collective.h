// In-place bulk collectives (sum) over one backend's memory: host floats over MPI (Comm), device floats over NCCL
// (distributed/nccl_comm.cu). Operations are started by the calls and completed by wait(what), which is bounded by the
// communicator's timeout and names the rank that never answered (Comm::wait, Comm::probe). Every rank must start the
// same operations, with the same sizes, in the same order.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "core/memory.h"
#include "distributed/comm.h"

namespace rift::dist {

class Collective {
 public:
  virtual ~Collective() = default;
  virtual const char* name() const = 0;  // "mpi" | "nccl"
  virtual MemSpace space() const = 0;    // where the buffers live
  // Whether an operation started during the backward proceeds while the backward computes (the reduction of
  // finished gradients then overlaps the rest of the backward).
  virtual bool overlaps() const = 0;
  virtual void allreduce(float* buf, int64_t n) = 0;
  virtual void reduce(float* buf, int64_t n, int root) = 0;  // Σ into root's buf; the others' buf is unchanged
  virtual void broadcast(float* buf, int64_t n, int root) = 0;
  // Brackets a batch of operations that may run together (NCCL groups); no-ops for MPI.
  virtual void begin_group() {}
  virtual void end_group() {}
  virtual void progress() {}
  // Whether an operation on n floats would start without waiting for earlier ones (the backward's hook never waits).
  virtual bool room_for(int64_t n) { return true; }
  virtual void wait(const std::string& what) = 0;
};

// Host floats over the communicator's MPI (or nothing to do in a world of one rank).
class MpiCollective final : public Collective {
 public:
  explicit MpiCollective(Comm& c) : c_(c) {}
  const char* name() const override { return c_.uses_mpi() ? "mpi" : "local"; }
  MemSpace space() const override { return MemSpace::Host; }
  bool overlaps() const override { return c_.size() > 1; }
  void allreduce(float* buf, int64_t n) override { c_.allreduce(buf, n); }
  // An all-reduce: every rank gets the sum, the root among them. Open MPI's nonblocking MPI_Ireduce (libnbc) moved
  // 84 MB of floats at 0.09 GB/s on this project's 2-core VM against 0.5 GB/s for MPI_Iallreduce of the same chunks,
  // and MPI_Ireduce_scatter allocates the whole buffer as a temporary; the all-reduce does twice a reduce's work
  // in fewer seconds.
  void reduce(float* buf, int64_t n, int root) override {
    (void)root;
    c_.allreduce(buf, n);
  }
  void broadcast(float* buf, int64_t n, int root) override { c_.broadcast(buf, n * int64_t(sizeof(float)), root); }
  void progress() override { c_.progress(); }
  bool room_for(int64_t n) override { return c_.room_for(n); }
  void wait(const std::string& what) override { c_.wait(what); }

 private:
  Comm& c_;
};

// NCCL over the current CUDA device on the legacy default stream (the CUDA backend's stream, cuda/cuda_ops.cu): the
// unique id is made by rank 0 and broadcast over `c` (a world of one rank needs no MPI). Throws std::runtime_error
// when NCCL cannot be loaded or initialised, or when the addon was built without CUDA.
std::unique_ptr<Collective> nccl_collective(Comm& c);
// The NCCL library's version (e.g. "2.27.3") and path, or the reason it cannot be used.
std::string nccl_describe();

}  // namespace rift::dist
