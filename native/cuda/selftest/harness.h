// The CUDA ops self-test (scripts/build-cuda-selftest.sh builds it; README.md in this folder): every OpsBackend
// method of cuda_ops() against its CPU twin cpu_ops() on the same fixed random inputs. Shared helpers.
#pragma once
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "backends/registry.h"

namespace rift::selftest {

using F = std::vector<float>;
using I = std::vector<int32_t>;

std::mt19937& rng();                                  // fixed seed: the same inputs every run
F rnd(int64_t n, float sd = 1.f);                     // n values ~ N(0, sd²)
std::string dims(std::initializer_list<int64_t> xs);  // "a,b,c"

// A device copy of a host vector (freed on scope exit); get() reads it back.
struct Dev {
  void* p = nullptr;
  size_t bytes = 0;
  explicit Dev(const F& h);
  explicit Dev(const I& h);
  explicit Dev(size_t nbytes);  // uninitialised
  ~Dev();
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
  float* f() const { return static_cast<float*>(p); }
  int32_t* i() const { return static_cast<int32_t*>(p); }
  F get() const;
};

// Checks: each counts one case and prints "ok" or "FAIL" with the error.
// max_i |cpu_i − gpu_i| <= atol + rtol · max_i |cpu_i| (NaN fails unless both are NaN at the same place).
void cmp(const std::string& what, const F& cpu, const F& gpu, double rtol, double atol = 0);
void check(const std::string& what, bool ok, const std::string& detail = "");
// f must throw rift::ArgError.
void expect_argerror(const std::string& what, const std::function<void()>& f);

int failures();
int cases();

// The groups (ops_*.cc). c: the CPU twin, g: the CUDA backend, both of the same gemm dtype unless named.
void host_checks();                              // no device needed (env parsing)
void test_memory(OpsBackend& c, OpsBackend& g);  // alloc, release, upload, download, copy2d, info, set_gemm
void test_gemm(OpsBackend& c, OpsBackend& g);    // gemm (fp32, tf32), matmul_forward / _backward
void test_gemm_bf16(OpsBackend& c, OpsBackend& g, OpsBackend& g32);  // the BF16 instances, weights' copy
void test_layers(OpsBackend& c, OpsBackend& g);  // embedding, rmsnorm, rope, swiglu, kv_write, bf16 storage
void test_flat(OpsBackend& c, OpsBackend& g);    // add, scale, zero, sumsq, adamw
// The bf16-activation ops (rmsnorm / swiglu to bf16, matmul on a bf16 input) on both instances (g fp32, gb BF16).
void test_bf16_acts(OpsBackend& c, OpsBackend& g, OpsBackend& gb);
void test_attention(OpsBackend& c, OpsBackend& g, const char* tag, double fwd_tol, double bwd_tol);
void test_attention_chunks();  // the bf16 attention's chunking, called directly

}  // namespace rift::selftest
