// Checked size arithmetic and the physical-memory check (checked.h).
#include "core/checked.h"

#include <cstdio>
#include <cstdlib>

#if defined(_WIN32)
#include <windows.h>
#else
#include <unistd.h>
#endif

namespace rift {
namespace {

// "a × b × c = 2 × 3 × 4" (op " × ") or "a + b = 2 + 3" (op " + ").
std::string expression(std::initializer_list<SizeTerm> terms, const char* op) {
  std::string names, values;
  for (const SizeTerm& t : terms) {
    names += (names.empty() ? "" : op) + t.name;
    values += (values.empty() ? "" : op) + std::to_string(t.value);
  }
  return terms.size() > 1 ? names + " = " + values : names;
}

std::string approx(long double v) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.4Lg", v);
  return buf;
}

// value: " = 6" or " ≈ 1.845e+19" (overflowed).
[[noreturn]] void too_large(const std::string& arg, const std::string& expr, const std::string& value, int64_t limit,
                            const char* limit_text) {
  const std::string lim = limit_text ? std::string(limit_text) : std::to_string(limit);
  const bool named = expr.compare(0, arg.size(), arg) == 0;
  throw ArgError{ArgError::Range, arg, (named ? "" : arg + ": ") + expr + value + " exceeds " + lim};
}

int64_t combine(const std::string& arg, std::initializer_list<SizeTerm> terms, bool product, int64_t limit,
                const char* limit_text) {
  int64_t r = product ? 1 : 0;
  long double wide = product ? 1 : 0;  // the true value, for the message
  bool overflow = false;
  for (const SizeTerm& t : terms) {
    if (t.value < 0)
      throw ArgError{ArgError::Range, arg, arg + ": " + t.name + " = " + std::to_string(t.value) + " is negative"};
    if (product && t.value == 0) return 0;  // zero wins over an overflowing partial product
    wide = product ? wide * t.value : wide + t.value;
    if (!overflow) overflow = product ? !mul_ok(r, t.value, &r) : !add_ok(r, t.value, &r);
  }
  const std::string expr = expression(terms, product ? " × " : " + ");
  if (overflow) too_large(arg, expr, " ≈ " + approx(wide), limit, limit_text ? limit_text : "2^63 − 1 (64-bit sizes)");
  if (r > limit) too_large(arg, expr, " = " + std::to_string(r), limit, limit_text);
  return r;
}

}  // namespace

int64_t checked_product(const std::string& arg, std::initializer_list<SizeTerm> factors, int64_t limit,
                        const char* limit_text) {
  return combine(arg, factors, true, limit, limit_text);
}

int64_t checked_sum(const std::string& arg, std::initializer_list<SizeTerm> terms, int64_t limit,
                    const char* limit_text) {
  return combine(arg, terms, false, limit, limit_text);
}

int64_t memory_limit_bytes(bool* from_env) {
  if (from_env) *from_env = false;
  int64_t bytes = 0;
#if defined(_WIN32)
  MEMORYSTATUSEX s;
  s.dwLength = sizeof s;
  if (GlobalMemoryStatusEx(&s)) bytes = int64_t(s.ullTotalPhys);
#else
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page <= 0 || !mul_ok(int64_t(pages), int64_t(page), &bytes)) bytes = 0;
#endif
  if (const char* env = std::getenv("RIFT_MEMORY_LIMIT")) {
    char* end = nullptr;
    const long long v = std::strtoll(env, &end, 10);
    if (end != env && *end == '\0' && v > 0 && (bytes == 0 || v < bytes)) {
      bytes = v;
      if (from_env) *from_env = true;
    }
  }
  return bytes;
}

std::string format_bytes(double bytes) {
  const char* units[] = {"bytes", "kB", "MB", "GB", "TB", "PB", "EB"};
  int u = 0;
  while (bytes >= 1000 && u < 6) bytes /= 1000, ++u;
  char buf[48];
  std::snprintf(buf, sizeof buf, u ? "%.1f %s" : "%.0f %s", bytes, units[u]);
  return buf;
}

void check_fits_in_memory(const std::string& arg, const std::string& what, int64_t bytes) {
  bool env = false;
  const int64_t have = memory_limit_bytes(&env);
  if (have > 0 && bytes > have)
    throw ArgError{ArgError::Range, arg,
                   arg + ": " + what + " needs " + format_bytes(double(bytes)) + ", more than " +
                       (env ? "RIFT_MEMORY_LIMIT (" : "this machine's memory (") + format_bytes(double(have)) + ")"};
}

}  // namespace rift
