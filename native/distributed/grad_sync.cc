// Data-parallel gradient reduction and optimizer step (see grad_sync.h).
#include "distributed/grad_sync.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <vector>

namespace rift::dist {
namespace {

// Region boundaries of the flat buffer: 0, the first tensor of each layer, the final norm, numParams.
std::vector<int64_t> region_bounds(const Decoder& d) {
  std::vector<int64_t> b = {0};
  int64_t last_layer = -1;
  for (const TensorInfo& t : d.tensors()) {
    const std::string pre = "model.layers.";
    if (t.name.compare(0, pre.size(), pre) == 0) {
      const int64_t l = std::stoll(t.name.substr(pre.size()));
      if (l != last_layer) b.push_back(t.offset), last_layer = l;
    } else if (t.name == "model.norm.weight") {
      b.push_back(t.offset);
    }
  }
  b.push_back(d.num_params());
  b.erase(std::unique(b.begin(), b.end()), b.end());
  return b;
}

}  // namespace

GradSync::GradSync(Comm& comm, std::unique_ptr<Collective> c, Decoder& d, int zero, int64_t bucket_floats)
    : comm_(comm), coll_(std::move(c)), d_(d), zero_(zero) {
  if (zero != 0 && zero != 1) throw std::invalid_argument("zero must be 0 or 1");
  if (bucket_floats < 1) throw std::invalid_argument("bucket_floats must be >= 1");
  if (d.space() != coll_->space())
    throw std::invalid_argument(std::string("the model's buffers are in ") +
                                (d.space() == MemSpace::Host ? "host" : "device") + " memory, which " + coll_->name() +
                                " does not reduce");
  const int64_t P = d.num_params();
  shards_ = shard_ranges(P, comm.size());
  const std::vector<int64_t> b = region_bounds(d);
  for (size_t k = b.size() - 1; k-- > 0;) {  // regions in backward completion order: the last one first
    const int64_t lo = b[k], hi = b[k + 1];
    auto pieces = [&](int64_t a, int64_t e, int owner) {
      for (int64_t o = a; o < e; o += bucket_floats) buckets_.push_back({o, std::min(bucket_floats, e - o), owner});
    };
    if (!zero) {
      pieces(lo, hi, -1);
      continue;
    }
    for (int r = 0; r < comm.size(); ++r) {
      const Range& s = shards_[size_t(r)];
      const int64_t a = std::max(lo, s.offset), e = std::min(hi, s.offset + s.count);
      if (a < e) pieces(a, e, r);
    }
  }
  if (zero) {
    const Range s = shard();
    m_ = std::make_shared<OpsBuffer>(d.ops(), MemCategory::Optimizer, size_t(s.count));
    v_ = std::make_shared<OpsBuffer>(d.ops(), MemCategory::Optimizer, size_t(s.count));
  }
}

GradSync::~GradSync() {
  // The decoder may already be gone (finalisers at exit run in any order): never touch it here. An armed hook
  // holds a reference to this object, so it is not destroyed while the decoder can still call it.
}

void GradSync::start(size_t i) {
  const Bucket& b = buckets_[i];
  float* G = d_.grads_buffer()->data();
  if (b.owner < 0)
    coll_->allreduce(G + b.offset, b.count);
  else
    coll_->reduce(G + b.offset, b.count, b.owner);
}

void GradSync::on_ready(int64_t offset, int64_t n) {
  (void)n;
  // [offset, numParams) is final: start the buckets that lie there, in order, while that needs no wait (the
  // backward goes on; the rest start at the next region or in reduce_grads)
  while (next_ < buckets_.size() && buckets_[next_].offset >= offset && coll_->room_for(buckets_[next_].count))
    start(next_++);
}

void GradSync::arm() {
  next_ = 0;
  if (!coll_->overlaps()) return;
  std::shared_ptr<GradSync> self = shared_from_this();  // alive while the decoder holds the hook
  d_.set_grads_ready([self](int64_t o, int64_t n) { self->on_ready(o, n); });
}

void GradSync::reduce_grads() {
  d_.set_grads_ready(nullptr);
  d_.grads_buffer();  // a rank without a micro-batch in this step reduces zeros
  coll_->begin_group();
  while (next_ < buckets_.size()) start(next_++);
  coll_->end_group();
  next_ = 0;
  coll_->wait("the gradient reduction");
}

double GradSync::step(AdamWParams hp, double max_grad_norm) {
  reduce_grads();
  if (!zero_) return d_.step(hp, max_grad_norm);
  OpsBackend& ops = d_.ops();
  const Range s = shard();
  float* P = d_.params();
  float* G = d_.grads_buffer()->data();
  const double local = s.count ? ops.sumsq(G + s.offset, s.count) : 0.0;
  const double norm = std::sqrt(comm_.coordinate("ZeRO-1: the gradient norm", {local}, false)[0]);
  if (!std::isfinite(norm))
    throw std::runtime_error("step: the gradient norm is " + std::to_string(norm) +
                             "; parameters left unchanged (zeroGrad() and lower the learning rate)");
  // torch.nn.utils.clip_grad_norm_: coef = max_norm / (norm + 1e-6), clamped to 1 (as Decoder::step).
  hp.grad_scale = max_grad_norm > 0 ? float(std::min(1.0, max_grad_norm / (norm + 1e-6))) : 1.f;
  hp.step = d_.optimizer_steps() + 1;
  if (s.count) ops.adamw(P + s.offset, G + s.offset, m_->data(), v_->data(), s.count, hp);
  d_.set_optimizer_steps(hp.step);
  coll_->begin_group();
  for (int r = 0; r < comm_.size(); ++r)
    if (shards_[size_t(r)].count) coll_->broadcast(P + shards_[size_t(r)].offset, shards_[size_t(r)].count, r);
  coll_->end_group();
  coll_->wait("the ZeRO-1 weight broadcast");
  ops.note_written(P, size_t(d_.num_params()) * sizeof(float));
  return norm;
}

void GradSync::read_state(float* m, float* v) {
  if (!zero_) throw std::logic_error("read_state: not ZeRO-1 (the model holds AdamW's state)");
  const size_t bytes = m_->size() * sizeof(float);
  if (!bytes) return;
  d_.ops().download(m, m_->data(), bytes);
  d_.ops().download(v, v_->data(), bytes);
}

void GradSync::write_state(const float* m, const float* v) {
  if (!zero_) throw std::logic_error("write_state: not ZeRO-1 (the model holds AdamW's state)");
  const size_t bytes = m_->size() * sizeof(float);
  if (!bytes) return;
  d_.ops().upload(m_->data(), m, bytes);
  d_.ops().upload(v_->data(), v, bytes);
}

void GradSync::gather_state(float* m_full, float* v_full) {
  if (!zero_) throw std::logic_error("gather_state: not ZeRO-1 (the model holds AdamW's state)");
  std::vector<int64_t> offsets, counts;
  for (const Range& r : shards_) offsets.push_back(r.offset), counts.push_back(r.count);
  const Range s = shard();
  std::vector<float> host;
  for (int k = 0; k < 2; ++k) {
    const OpsBuffer& buf = k ? *v_ : *m_;
    const float* src = buf.data();
    if (d_.space() != MemSpace::Host && s.count) {
      host.resize(size_t(s.count));
      d_.ops().download(host.data(), buf.data(), size_t(s.count) * sizeof(float));
      src = host.data();
    }
    comm_.gather_to_root(src, s.count, k ? v_full : m_full, offsets, counts);
    comm_.wait(k ? "the ZeRO-1 gather of AdamW v" : "the ZeRO-1 gather of AdamW m");
  }
}

}  // namespace rift::dist
