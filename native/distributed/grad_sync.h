// Data-parallel gradient reduction and optimizer step for one Decoder (model/decoder.h), over a Collective.
//
// Every rank holds the whole model and trains on its shard of each global batch; the loss normaliser is the global
// one (lib/dist), so the gradients summed over ranks are those of the global batch.
//
// Buckets: the flat grad buffer is cut into buckets in the order the backward completes it (final norm + lm_head,
// layer L−1 … 0, the embedding; each region split into pieces of at most bucket_floats, and for ZeRO-1 at shard
// boundaries). Every rank starts the same buckets in the same order: after arm(), each bucket starts as soon as the
// backward has finished its region (Decoder::set_grads_ready; only where the Collective overlaps: MPI, not NCCL
// on the engine's single stream); step() starts the rest and waits for all.
//
//   zero 0   each bucket is all-reduced; then Decoder::step (the norm, clipping and AdamW over the whole buffer give
//            the same bits on every rank).
//   zero 1   each bucket piece is reduced to the rank that owns it (shard_ranges; NCCL: ncclReduce; MPI: an
//            all-reduce, faster than Open MPI's MPI_Ireduce — distributed/collective.h); the global norm is the sum
//            of the ranks' shard norms (Comm::coordinate, summed in rank order); AdamW updates this rank's shard of the
//            weights with this rank's shard of m and v (the only AdamW state it holds: 8 bytes per parameter / ranks,
//            'optimizer' memory); then every shard of the weights is broadcast from its owner.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "distributed/collective.h"
#include "distributed/comm.h"
#include "model/decoder.h"

namespace rift::dist {

// Made with std::make_shared: an armed hook holds a reference to this object.
class GradSync : public std::enable_shared_from_this<GradSync> {
 public:
  // zero: 0 or 1. The decoder must live in c's memory space. bucket_floats >= 1.
  GradSync(Comm& comm, std::unique_ptr<Collective> c, Decoder& d, int zero, int64_t bucket_floats);
  ~GradSync();
  GradSync(const GradSync&) = delete;
  GradSync& operator=(const GradSync&) = delete;

  int zero() const { return zero_; }
  Range shard() const { return zero_ ? shards_[size_t(comm_.rank())] : Range{0, d_.num_params()}; }
  const char* backend() const { return coll_->name(); }
  int64_t buckets() const { return int64_t(buckets_.size()); }

  // The next backward's finished buckets start their reduction at once (a no-op where the Collective does not
  // overlap). Call before the last micro-batch of a step, and disarm() once its backward returned (or failed): an
  // earlier micro-batch's gradients are not final. step() disarms too.
  void arm();
  void disarm() { d_.set_grads_ready(nullptr); }
  // Reduces the gradients (buckets not started yet, then every one waited for) and runs the optimizer step (see the
  // file comment). hp.step and hp.grad_scale are set here. Returns ‖g‖ of the summed gradient before clipping.
  // Throws std::runtime_error when that norm is not finite (parameters unchanged on every rank).
  double step(AdamWParams hp, double max_grad_norm);
  // Only the gradient reduction of step() (zero 0: every rank then holds the summed gradient; zero 1: each owner
  // its shard of it).
  void reduce_grads();

  // ZeRO-1: this rank's shard of AdamW m and v, to / from host memory (shard().count floats each).
  void read_state(float* m, float* v);
  void write_state(const float* m, const float* v);
  // ZeRO-1: the whole m and v (numParams floats each) assembled on rank 0 (m_full / v_full are ignored elsewhere).
  void gather_state(float* m_full, float* v_full);

 private:
  struct Bucket {
    int64_t offset, count;
    int owner;  // zero 1: the rank the piece is reduced to; -1: all-reduce
  };
  void start(size_t i);
  void on_ready(int64_t offset, int64_t n);  // the decoder's hook (backward thread)

  Comm& comm_;
  std::unique_ptr<Collective> coll_;
  Decoder& d_;
  int zero_;
  std::vector<Range> shards_;
  std::vector<Bucket> buckets_;       // in backward completion order
  size_t next_ = 0;                   // buckets_[0, next_) are started
  std::shared_ptr<OpsBuffer> m_, v_;  // zero 1: this rank's shard (Optimizer memory)
};

}  // namespace rift::dist
