// The fused loss: one row kernel serves SFT, DFT, RIFT, DPO, the naive reward-weighted baseline and plain log-probs
// (docs/design.md §1).
//
// Every method's gradient w.r.t. the logits of row t is  w_t · (softmax(z_t) − onehot(y_t)).
// The host plan (loss_plan.cc) turns a LossSpec into per-row coefficients; a backend (CPU or CUDA) runs
// the two row passes over the big N×V logits:
//
//   rows_fused : per row  lse_t, ℓ_t = z[y] − lse, entropy H_t; if grad != null it also writes
//                g = w·softmax − w·onehot with w = a_t + b_t·exp(ℓ_t)   (token-level methods: one pass)
//   rows_grad  : per row  g = w_t·(softmax − onehot) from a stored lse_t  (sequence-level methods, pass B)
//
// Pointers named "data" (logits, grad) are host memory for the CPU backend and device memory for CUDA;
// every other array is host memory. No Node, no CUDA in this header.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace rift {

enum class DType : int32_t { F32 = 0, BF16 = 1 };
// NAIVE: −r·log π on every sample, negatives included (w_t = r_i·c_i): the unbounded loss RIFT replaces (§1.4).
enum class Method : int32_t { SFT = 0, DFT = 1, RIFT = 2, DPO = 3, LOGPROB = 4, NAIVE = 5 };
enum class NegForm : int32_t { Token = 0, Sequence = 1 };
enum class Reduction : int32_t { TokenMean = 0, SequenceMean = 1, Sum = 2 };

constexpr int32_t kIgnoreIndex = -100;

inline size_t dtype_size(DType d) { return d == DType::F32 ? 4 : 2; }

// Arguments of one row pass. Arrays are (N) unless noted.
struct RowsIO {
  const void* logits = nullptr;  // data (N, V) in dtype
  void* grad = nullptr;          // data (N, V) in dtype, may equal logits; null: statistics only
  DType dtype = DType::F32;
  int64_t N = 0, V = 0;
  const int32_t* targets = nullptr;  // host (N), kIgnoreIndex rows are skipped (grad row = 0)
  const float* coef_a = nullptr;     // host (N) rows_fused: w = a + b·p   (only read when grad != null)
  const float* coef_b = nullptr;     // host (N)
  const float* weight = nullptr;     // host (N) rows_grad: w_t
  float* lse = nullptr;              // host (N) out of rows_fused, in for rows_grad
  float* logp = nullptr;             // host (N) out: ℓ_t (0 on ignored rows)
  float* entropy = nullptr;          // host (N) out, optional: H_t (0 on ignored rows)
  // out: index of the first row whose logits hold NaN/Inf, or −1. Such rows get no gradient written.
  int64_t bad_row = -1;
};

class RowBackend {
 public:
  virtual ~RowBackend() = default;
  virtual const char* name() const = 0;
  virtual void rows_fused(RowsIO& io) = 0;
  virtual void rows_grad(RowsIO& io) = 0;
};

struct LossSpec {
  Method method = Method::SFT;
  NegForm neg = NegForm::Token;
  Reduction reduction = Reduction::TokenMean;
  double normalizer = 0;  // > 0: use it; 0: derive from the batch
  int64_t N = 0, V = 0, S = 0;
  const int32_t* targets = nullptr;  // (N)
  const int32_t* offsets = nullptr;  // (S+1), offsets[0] = 0, offsets[S] = N, non-decreasing
  const float* rewards = nullptr;    // (S) RIFT and NAIVE
  const double* ref_logp = nullptr;  // (S) DPO only
  const int32_t* pairs = nullptr;    // (P, 2) DPO only: (chosen, rejected) sequence indices
  int64_t P = 0;
  double beta = 0.1;
  bool want_token_logp = false, want_entropy = false;
};

struct LossResult {
  double loss = 0;
  double normalizer = 0;          // what the loss was divided by (1 for sum)
  int64_t tokens = 0;             // rows with a target
  std::vector<double> seq_logp;   // (S)
  std::vector<float> token_logp;  // (N) when asked
  std::vector<float> entropy;     // (N) when asked
};

// Thrown for bad arguments; arg names the offending argument. The N-API layer maps kind to TypeError/RangeError.
struct ArgError {
  enum Kind { Type, Range } kind;
  std::string arg, message;
};

// Checks everything but the contents of the logits (those are checked inside the row pass).
void validate(const LossSpec& spec);

// Runs the whole loss. logits/grad are "data" pointers of the backend. grad may be null (no gradient);
// for LOGPROB it must be null. Throws ArgError (bad input, NaN/Inf logits) or std::runtime_error (backend).
LossResult run_loss(const LossSpec& spec, RowBackend& backend, const void* logits, void* grad, DType dtype);

// The instances (CPU, CUDA) are handed out by backends/registry.h, not declared here.

}  // namespace rift
