// Helpers of the CUDA ops self-test (harness.h).
#include "cuda/selftest/harness.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "cuda/device_mem.h"

namespace rift::selftest {
namespace {
int g_failures = 0, g_cases = 0;
}

std::mt19937& rng() {
  static std::mt19937 r(1234);
  return r;
}

F rnd(int64_t n, float sd) {
  std::normal_distribution<float> d(0.f, sd);
  F x(size_t(std::max<int64_t>(n, 0)));
  for (auto& v : x) v = d(rng());
  return x;
}

std::string dims(std::initializer_list<int64_t> xs) {
  std::string s;
  for (int64_t x : xs) s += (s.empty() ? "" : ",") + std::to_string(x);
  return s;
}

Dev::Dev(const F& h) : bytes(h.size() * sizeof(float)) {
  p = cuda::alloc(bytes);
  if (bytes) cuda::copy_to_device(p, h.data(), bytes);
}
Dev::Dev(const I& h) : bytes(h.size() * sizeof(int32_t)) {
  p = cuda::alloc(bytes);
  if (bytes) cuda::copy_to_device(p, h.data(), bytes);
}
Dev::Dev(size_t nbytes) : bytes(nbytes) { p = cuda::alloc(bytes); }
Dev::~Dev() { cuda::free_noexcept(p); }
F Dev::get() const {
  F h(bytes / sizeof(float));
  if (bytes) cuda::copy_to_host(h.data(), p, bytes);
  return h;
}

void cmp(const std::string& what, const F& cpu, const F& gpu, double rtol, double atol) {
  ++g_cases;
  double mx = 0, err = 0;
  size_t at = 0;
  bool nan_ok = true;
  for (size_t i = 0; i < cpu.size() && i < gpu.size(); ++i) {
    if (std::isnan(cpu[i]) || std::isnan(gpu[i])) {
      if (!(std::isnan(cpu[i]) && std::isnan(gpu[i]))) nan_ok = false, at = i;
      continue;
    }
    mx = std::max(mx, std::fabs(double(cpu[i])));
    const double e = std::fabs(double(cpu[i]) - double(gpu[i]));
    if (!(e <= err)) err = e, at = i;
  }
  const bool ok = cpu.size() == gpu.size() && nan_ok && err <= atol + rtol * mx;
  if (!ok) ++g_failures;
  std::printf("%s %-72s max|cpu|=%.3g maxerr=%.3g at %zu%s\n", ok ? "ok  " : "FAIL", what.c_str(), mx, err, at,
              cpu.size() != gpu.size() ? " (sizes differ)"
              : nan_ok                 ? ""
                                       : " (NaN mismatch)");
}

void check(const std::string& what, bool ok, const std::string& detail) {
  ++g_cases;
  if (!ok) ++g_failures;
  std::printf("%s %s%s%s\n", ok ? "ok  " : "FAIL", what.c_str(), detail.empty() ? "" : ": ", detail.c_str());
}

void expect_argerror(const std::string& what, const std::function<void()>& f) {
  try {
    f();
  } catch (const ArgError& e) {
    check(what + " throws ArgError", true, e.message);
    return;
  }
  check(what + " throws ArgError", false, "it did not throw");
}

int failures() { return g_failures; }
int cases() { return g_cases; }

}  // namespace rift::selftest
