// The process's communicator for data-parallel training: MPI_COMM_WORLD of Open MPI (loaded at run time,
// distributed/mpi_loader.h), or a local world of one rank that needs no MPI. No Node, no CUDA in this file.
//
// Every wait is bounded: a rank that dies or hangs makes the others fail with a DistError naming it instead of
// waiting forever.
//   coordinate()  a small exchange through rank 0 by point-to-point messages: each rank sends (sequence number,
//                 label, values) to rank 0, which waits up to timeout() for every rank, checks that all are at the
//                 same call, sums the values in rank order (Sum: every rank gets the same bits) or checks that they
//                 equal its own (Same), and answers each rank with the verdict. A rank missing at rank 0's
//                 deadline is named (Timeout); a rank at another call (Sequence) or with other values (Mismatch)
//                 too. The other ranks wait 2·timeout() + 5 s for rank 0's answer, then name rank 0.
//   bulk ops      (allreduce / broadcast / gather_to_root on host memory, in place) are nonblocking MPI calls on
//                 chunks of 4 MB, at most 16 in flight (comm.cc says why), waited by wait()
//                 with timeout(); when one times out every rank that is still alive joins a probe (a coordinate
//                 with its own tag) that names the ranks that never arrive.
// After any failure the communicator is broken: every later call throws the first error again, and finalize()
// does nothing (MPI_Finalize would wait for the dead rank; the launcher ends the job when this process exits).
// Thread-safety: calls are serialised by a mutex (MPI is initialised with MPI_THREAD_SERIALIZED); collectives
// must be called in the same order on every rank.
#pragma once
#include <cstdint>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "distributed/mpi_loader.h"

namespace rift::dist {

// A failure of the distributed job. kind: what happened; rank: the rank it names (-1: none); index: for Mismatch
// the first differing value, for Timeout how many ranks were missing.
struct DistError : std::runtime_error {
  enum Kind { Timeout = 1, Sequence = 2, Mismatch = 3, Mpi = 4, Broken = 5, Nccl = 6 };
  DistError(Kind k, int r, int64_t i, const std::string& msg) : std::runtime_error(msg), kind(k), rank(r), index(i) {}
  Kind kind;
  int rank;
  int64_t index;
};

const char* kind_name(DistError::Kind k);  // "timeout", "sequence", "mismatch", "mpi", "broken", "nccl"

class Comm {
 public:
  // Initialises the process's communicator once: with MPI (MPI_Init_thread SERIALIZED unless MPI is already
  // initialised; errors return to the caller instead of aborting) or a local world of one rank. A second call
  // returns the same communicator and must ask for the same kind. Throws std::runtime_error when MPI cannot be
  // loaded or initialised.
  static Comm& init(bool use_mpi, double timeout_s);
  static Comm* get() noexcept;  // null before init()

  int rank() const { return rank_; }
  int size() const { return size_; }
  bool uses_mpi() const { return mpi_ != nullptr; }
  double timeout() const { return timeout_; }
  void set_timeout(double s);
  const std::string& library() const { return library_; }  // MPI_Get_library_version's first line, or "local"
  bool broken() const { return !failure_.empty(); }
  const std::string& failure() const { return failure_; }

  // See the file comment. `label` names the call in errors. Returns the sum (Sum) or rank 0's values (Same).
  std::vector<double> coordinate(const std::string& label, const std::vector<double>& values, bool same);

  // Nonblocking bulk collectives on host memory, in place, started now and completed by wait(what).
  void allreduce(float* buf, int64_t n);
  void allreduce(double* buf, int64_t n);
  void broadcast(void* buf, int64_t bytes, int root);
  // Point-to-point: every rank r sends its `count` floats at `src`; root receives them at dst + offsets[r].
  void gather_to_root(const float* src, int64_t count, float* dst, const std::vector<int64_t>& offsets,
                      const std::vector<int64_t>& counts);
  // Tests the started operations once (lets MPI progress them); true when none is left.
  bool progress();
  // Whether an operation on n more floats can start now without waiting for earlier ones (after a progress call).
  bool room_for(int64_t n);
  // Waits for every started operation (timeout(), then a probe that names the missing ranks).
  void wait(const std::string& what);
  // After `what` (an operation of this or another library, e.g. NCCL) did not complete within timeout(): every rank
  // still alive answers a probe, and the DistError thrown names the ranks that do not.
  [[noreturn]] void timed_out(const std::string& what);

  // MPI_Finalize when MPI is initialised, healthy and not finalised; otherwise nothing.
  void finalize() noexcept;
  // Marks the communicator failed (this process exits without MPI_Finalize; the launcher ends the job).
  void abandon(const std::string& why);

 private:
  Comm() = default;
  void check_usable();
  [[noreturn]] void fail(DistError::Kind k, int rank, int64_t index, const std::string& msg);
  void mpi_check(int rc, const char* fn);
  std::vector<double> exchange(int tag, uint64_t seq, const std::string& label, const std::vector<double>& values,
                               bool same, double root_wait);
  bool test_all();
  void make_room();  // waits until fewer than the allowed operations are in flight

  const MpiApi* mpi_ = nullptr;
  int rank_ = 0, size_ = 1;
  double timeout_ = 600;
  uint64_t seq_ = 0, probe_seq_ = 0;
  std::string library_ = "local", failure_;
  std::vector<MPI_Request> pending_;
  std::vector<std::vector<double>> pending_bufs_;
  std::recursive_mutex mu_;
};

// Shard ranges of a flat buffer of n floats over `ranks`: rank r owns [r·S, min(n, (r+1)·S)), S = ⌈n / ranks⌉
// rounded up to 16 floats (64-byte aligned shards); trailing ranks may own nothing.
struct Range {
  int64_t offset = 0, count = 0;
};
std::vector<Range> shard_ranges(int64_t n, int ranks);

}  // namespace rift::dist
