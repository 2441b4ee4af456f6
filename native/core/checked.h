// Checked size arithmetic: every size, offset and count computed from user input (config fields, safetensors
// headers, batch and cache shapes) goes through these instead of wrapping silently (signed overflow is UB; a
// wrapped size allocates too little and the writes that follow run past the buffer).
//
//   mul_ok / add_ok             a·b, a+b into *out; false on overflow of T (no throw: parsers have their own errors)
//   checked_product / _sum      named factors or terms; ArgError (Range) naming the argument and the size:
//     "num_attention_heads × head_dim × hidden_size = 65536 × 65536 × 2147483647 ≈ 9.223e+18 exceeds 2^63 − 1"
//   SizeCalc                    a longer formula (mul, add, round to 16) that remembers an overflow
//   check_fits_in_memory        bytes a request would need against this machine's physical memory
#pragma once
#include <cstdint>
#include <initializer_list>
#include <string>

#include "core/loss.h"  // ArgError

namespace rift {

template <typename T>
inline bool mul_ok(T a, T b, T* out) {
  return !__builtin_mul_overflow(a, b, out);
}
template <typename T>
inline bool add_ok(T a, T b, T* out) {
  return !__builtin_add_overflow(a, b, out);
}

// A formula of sizes evaluated step by step (mul, add, r16): an overflow is remembered instead of wrapping, and the
// caller reports it once (ok() false: the values returned are meaningless).
class SizeCalc {
 public:
  int64_t mul(int64_t a, int64_t b) {
    int64_t r = 0;
    ok_ = ok_ && mul_ok(a, b, &r);
    return r;
  }
  int64_t add(int64_t a, int64_t b) {
    int64_t r = 0;
    ok_ = ok_ && add_ok(a, b, &r);
    return r;
  }
  int64_t r16(int64_t n) { return mul(add(n, 15) / 16, 16); }  // rounded up to 16 floats (64-byte sub-buffers)
  bool ok() const { return ok_; }

 private:
  bool ok_ = true;
};

// One named factor or term of a size, e.g. {"num_attention_heads", 28}. Values are >= 0.
struct SizeTerm {
  std::string name;
  int64_t value;
};

constexpr int64_t kMaxInt64 = INT64_MAX;
constexpr int64_t kMaxSafeInteger = (int64_t(1) << 53) - 1;  // the largest integer a JS number holds exactly

// The product / sum of the terms. Throws ArgError (Range, arg) when it overflows int64 or exceeds `limit`;
// limit_text says what the limit is ("2^31 − 1, the engine's int32 sizes"); when null, the number itself.
// The message starts with the expression ("a × b = …"), prefixed with "arg: " unless it already starts with arg.
int64_t checked_product(const std::string& arg, std::initializer_list<SizeTerm> factors, int64_t limit = kMaxInt64,
                        const char* limit_text = nullptr);
int64_t checked_sum(const std::string& arg, std::initializer_list<SizeTerm> terms, int64_t limit = kMaxInt64,
                    const char* limit_text = nullptr);

// The memory a single request may need: this machine's physical memory, or RIFT_MEMORY_LIMIT (bytes) when that
// is set and lower (read on every call). 0 when neither is known: then nothing is refused.
int64_t memory_limit_bytes(bool* from_env = nullptr);  // *from_env: the limit is RIFT_MEMORY_LIMIT

// Throws ArgError (Range, arg) "arg: <what> needs 164.2 GB, more than this machine's memory (23.4 GB)" when
// `bytes` exceed memory_limit_bytes(): a request that can never succeed is refused before it is tried (instead of
// failing after seconds of allocation, or being killed by the OOM killer half-way through).
void check_fits_in_memory(const std::string& arg, const std::string& what, int64_t bytes);

// "164.2 GB" (decimal units) for messages.
std::string format_bytes(double bytes);

}  // namespace rift
