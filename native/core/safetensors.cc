// safetensors header parser: a strict, schema-driven JSON reader plus the format's checks (see safetensors.h).
#include "core/safetensors.h"

#include "core/checked.h"

#include <algorithm>
#include <cstring>
#include <numeric>
#include <unordered_set>

namespace rift::st {

size_t dtype_size(const std::string& d) {
  static const std::pair<const char*, size_t> table[] = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"F8_E8M0", 1},
      {"I16", 2},  {"U16", 2}, {"F16", 2}, {"BF16", 2},    {"I32", 4},     {"U32", 4},
      {"F32", 4},  {"I64", 8}, {"U64", 8}, {"F64", 8},     {"C64", 8}};
  for (const auto& [name, size] : table)
    if (d == name) return size;
  return 0;
}

namespace {

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); i++) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

std::string range_str(uint64_t b, uint64_t e) { return "[" + std::to_string(b) + ", " + std::to_string(e) + "]"; }

// Returns the byte offset of the first invalid UTF-8 sequence, or len when the text is valid.
size_t utf8_error(const uint8_t* s, size_t len) {
  size_t i = 0;
  while (i < len) {
    const uint8_t c = s[i];
    size_t n;
    uint32_t cp;
    if (c < 0x80) {
      i++;
      continue;
    }
    if ((c & 0xE0) == 0xC0)
      n = 1, cp = c & 0x1F;
    else if ((c & 0xF0) == 0xE0)
      n = 2, cp = c & 0x0F;
    else if ((c & 0xF8) == 0xF0)
      n = 3, cp = c & 0x07;
    else
      return i;
    if (n >= len - i) return i;  // the sequence runs past the end
    for (size_t k = 1; k <= n; k++) {
      if ((s[i + k] & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    const uint32_t min = n == 1 ? 0x80 : n == 2 ? 0x800 : 0x10000;
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;  // overlong, too big, surrogate
    i += n + 1;
  }
  return len;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80)
    out += char(cp);
  else if (cp < 0x800)
    out += char(0xC0 | (cp >> 6)), out += char(0x80 | (cp & 0x3F));
  else if (cp < 0x10000)
    out += char(0xE0 | (cp >> 12)), out += char(0x80 | ((cp >> 6) & 0x3F)), out += char(0x80 | (cp & 0x3F));
  else
    out += char(0xF0 | (cp >> 18)), out += char(0x80 | ((cp >> 12) & 0x3F)), out += char(0x80 | ((cp >> 6) & 0x3F)),
        out += char(0x80 | (cp & 0x3F));
}

// A cursor over the header text. Every failure names the file and the header byte it happened at.
struct Reader {
  const char *begin, *p, *end;
  const std::string& file;

  [[noreturn]] void fail(const std::string& what) const {
    throw SafetensorsError(SafetensorsError::Format, file + ": header byte " + std::to_string(p - begin) + ": " + what);
  }
  char peek() const { return p < end ? *p : '\0'; }
  void ws() {
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) ++p;
  }
  std::string token() const {  // what the reader is looking at, for messages
    if (p >= end) return "the end of the header";
    switch (*p) {
      case '{': return "an object";
      case '[': return "an array";
      case '"': return "a string";
      case 't':
      case 'f': return "a boolean (not used by safetensors)";
      case 'n': return "null (not used by safetensors)";
      default: break;
    }
    if (*p == '-' || (*p >= '0' && *p <= '9')) return "a number";
    char buf[32];
    snprintf(buf, sizeof buf, "byte 0x%02x", unsigned(uint8_t(*p)));
    return (*p > 0x20 && *p < 0x7f) ? std::string("'") + *p + "'" : std::string(buf);
  }
  void expect(char c, const std::string& ctx) {
    ws();
    if (peek() != c) fail(ctx + ": expected '" + c + "', got " + token());
    ++p;
  }
  // After an element: ',' (returns true, more follow) or the closing bracket (returns false).
  bool next(char close, const std::string& ctx) {
    ws();
    if (peek() == ',') {
      ++p;
      return true;
    }
    if (peek() == close) {
      ++p;
      return false;
    }
    fail(ctx + ": expected ',' or '" + close + "', got " + token());
  }
  unsigned hex4() {
    unsigned v = 0;
    for (int i = 0; i < 4; i++, ++p) {
      const char c = peek();
      const int d = c >= '0' && c <= '9'   ? c - '0'
                    : c >= 'a' && c <= 'f' ? c - 'a' + 10
                    : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                           : -1;
      if (d < 0) fail("bad \\u escape: expected 4 hex digits");
      v = v * 16 + unsigned(d);
    }
    return v;
  }
  std::string string(const std::string& ctx) {
    ws();
    if (peek() != '"') fail(ctx + ": expected a string, got " + token());
    ++p;
    std::string out;
    for (;;) {
      if (p >= end) fail("unterminated string");
      const char c = *p++;
      if (c == '"') return out;
      if (uint8_t(c) < 0x20) {
        --p;
        fail("unescaped control character in a string");
      }
      if (c != '\\') {
        out += c;
        continue;
      }
      const char e = peek();
      ++p;
      switch (e) {
        case '"':
        case '\\':
        case '/': out += e; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          uint32_t cp = hex4();
          if (cp >= 0xDC00 && cp <= 0xDFFF) fail("bad \\u escape: lone low surrogate");
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (peek() != '\\' || p + 1 >= end || p[1] != 'u') fail("bad \\u escape: lone high surrogate");
            p += 2;
            const uint32_t lo = hex4();
            if (lo < 0xDC00 || lo > 0xDFFF) fail("bad \\u escape: high surrogate without a low one");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
          append_utf8(out, cp);
          break;
        }
        default: --p; fail("bad escape in a string");
      }
    }
  }
  int64_t integer(const std::string& ctx) {
    ws();
    const bool neg = peek() == '-';
    if (neg) ++p;
    if (!(peek() >= '0' && peek() <= '9')) fail(ctx + ": expected an integer, got " + token());
    if (peek() == '0' && p + 1 < end && p[1] >= '0' && p[1] <= '9') fail(ctx + ": integer with a leading zero");
    int64_t v = 0;
    while (peek() >= '0' && peek() <= '9') {
      const int64_t d = *p++ - '0';
      if (!mul_ok(v, int64_t(10), &v) || !add_ok(v, d, &v))
        throw SafetensorsError(SafetensorsError::Range, file + ": " + ctx + ": integer out of the 64-bit range");
    }
    if (peek() == '.' || peek() == 'e' || peek() == 'E') fail(ctx + ": non-integer number (expected an integer)");
    return neg ? -v : v;
  }
  // [int, int, ...] with at most max_len elements.
  std::vector<int64_t> int_array(const std::string& ctx, size_t max_len) {
    expect('[', ctx);
    std::vector<int64_t> out;
    ws();
    if (peek() == ']') {
      ++p;
      return out;
    }
    do {
      if (out.size() == max_len) fail(ctx + ": more than " + std::to_string(max_len) + " elements");
      out.push_back(integer(ctx));
    } while (next(']', ctx));
    return out;
  }
};

[[noreturn]] void range_fail(const std::string& file, const std::string& what) {
  throw SafetensorsError(SafetensorsError::Range, file + ": " + what);
}

TensorInfo parse_tensor(Reader& r, std::string name) {
  TensorInfo t;
  t.name = std::move(name);
  const std::string ctx = "tensor \"" + t.name + "\"";
  std::vector<int64_t> offsets;
  bool have_dtype = false, have_shape = false, have_offsets = false;
  r.expect('{', ctx);
  r.ws();
  if (r.peek() == '}') r.fail(ctx + ": empty object (needs dtype, shape, data_offsets)");
  do {
    const std::string key = r.string(ctx + " field name");
    r.expect(':', ctx);
    bool* seen = key == "dtype"          ? &have_dtype
                 : key == "shape"        ? &have_shape
                 : key == "data_offsets" ? &have_offsets
                                         : nullptr;
    if (!seen) r.fail(ctx + ": unknown field \"" + key + "\"");
    if (*seen) r.fail(ctx + ": duplicate field \"" + key + "\"");
    *seen = true;
    if (key == "dtype")
      t.dtype = r.string(ctx + " dtype");
    else if (key == "shape")
      t.shape = r.int_array(ctx + " shape", kMaxRank);
    else
      offsets = r.int_array(ctx + " data_offsets", 2);
  } while (r.next('}', ctx));
  if (!have_dtype || !have_shape || !have_offsets)
    r.fail(ctx + ": missing field \"" +
           std::string(!have_dtype   ? "dtype"
                       : !have_shape ? "shape"
                                     : "data_offsets") +
           "\"");
  if (offsets.size() != 2) r.fail(ctx + ": data_offsets must hold 2 integers [begin, end]");
  const std::string& f = r.file;
  if (offsets[0] < 0 || offsets[1] < 0)
    range_fail(
        f, ctx + ": negative data_offsets [" + std::to_string(offsets[0]) + ", " + std::to_string(offsets[1]) + "]");
  t.begin = uint64_t(offsets[0]);
  t.end = uint64_t(offsets[1]);
  return t;
}

void check_tensor(const TensorInfo& t, uint64_t data_bytes, const std::string& f) {
  const std::string ctx = "tensor \"" + t.name + "\"";
  const size_t esize = dtype_size(t.dtype);
  if (esize == 0)
    throw SafetensorsError(SafetensorsError::Format, f + ": " + ctx + ": unknown dtype \"" + t.dtype + "\"");
  uint64_t count = 1;
  bool overflow = false, zero = false;
  for (const int64_t d : t.shape) {
    if (d < 0) range_fail(f, ctx + ": shape " + shape_str(t.shape) + " has a negative dimension");
    if (d > kMaxDim) range_fail(f, ctx + ": shape " + shape_str(t.shape) + " has a dimension >= 2^53");
    if (d == 0)
      zero = true;
    else if (!overflow)
      overflow = !mul_ok(count, uint64_t(d), &count);
  }
  if (zero) count = 0, overflow = false;  // a zero dimension wins over an overflowing product
  uint64_t bytes = 0;
  if (overflow || !mul_ok(count, uint64_t(esize), &bytes))
    range_fail(f, ctx + ": shape " + shape_str(t.shape) + " is too large (byte count overflows)");
  if (t.begin > t.end) range_fail(f, ctx + ": data_offsets " + range_str(t.begin, t.end) + " end before they begin");
  if (t.end > data_bytes)
    range_fail(f, ctx + " data_offsets " + range_str(t.begin, t.end) + " exceed the data section (" +
                      std::to_string(data_bytes) + " bytes)");
  if (bytes != t.end - t.begin)
    range_fail(f, ctx + ": shape " + shape_str(t.shape) + " x " + t.dtype + " (" + std::to_string(esize) +
                      " bytes) = " + std::to_string(bytes) + " bytes, but data_offsets " + range_str(t.begin, t.end) +
                      " hold " + std::to_string(t.end - t.begin));
}

}  // namespace

uint64_t header_length(const uint8_t* b, size_t len, uint64_t file_size, const std::string& f) {
  if (file_size < 8)
    range_fail(f, "file is " + std::to_string(file_size) + " bytes, too short for the 8-byte header length");
  if (len < 8) range_fail(f, "only " + std::to_string(len) + " bytes given; the header length needs the first 8");
  uint64_t n = 0;
  for (int i = 7; i >= 0; i--) n = (n << 8) | b[i];
  if (n > kMaxHeaderBytes)
    range_fail(
        f, "header length " + std::to_string(n) + " exceeds the " + std::to_string(kMaxHeaderBytes) + "-byte limit");
  if (n > file_size - 8)
    range_fail(f, "header length " + std::to_string(n) + " exceeds the file (" + std::to_string(file_size) + " bytes)");
  return n;
}

Header parse_header(const uint8_t* bytes, size_t len, uint64_t file_size, const std::string& f) {
  if (len > file_size)
    range_fail(f, std::to_string(len) + " bytes given, more than the file size " + std::to_string(file_size));
  Header h;
  h.header_bytes = header_length(bytes, len, file_size, f);
  if (len - 8 < h.header_bytes)
    range_fail(f, "only " + std::to_string(len) + " bytes given; the header needs the first 8 + " +
                      std::to_string(h.header_bytes) + " bytes of the file");
  h.data_bytes = file_size - 8 - h.header_bytes;
  const uint8_t* text = bytes + 8;
  const size_t n = size_t(h.header_bytes);
  const size_t bad = utf8_error(text, n);
  if (bad != n)
    throw SafetensorsError(SafetensorsError::Format, f + ": header byte " + std::to_string(bad) + ": invalid UTF-8");

  Reader r{reinterpret_cast<const char*>(text), reinterpret_cast<const char*>(text),
           reinterpret_cast<const char*>(text) + n, f};
  if (r.peek() != '{') r.fail("the header must start with '{', got " + r.token());
  ++r.p;
  bool have_meta = false;
  r.ws();
  if (r.peek() == '}')
    ++r.p;
  else
    do {
      std::string key = r.string("header key");
      r.expect(':', "after \"" + key + "\"");
      if (key != "__metadata__") {
        h.tensors.push_back(parse_tensor(r, std::move(key)));
        continue;
      }
      if (have_meta) r.fail("duplicate key \"__metadata__\"");
      have_meta = true;
      r.expect('{', "__metadata__");
      r.ws();
      if (r.peek() == '}') {
        ++r.p;
        continue;
      }
      do {
        std::string k = r.string("__metadata__ key");
        r.expect(':', "__metadata__");
        std::string v = r.string("__metadata__ \"" + k + "\" value");
        h.metadata.emplace_back(std::move(k), std::move(v));
      } while (r.next('}', "__metadata__"));
    } while (r.next('}', "header object"));
  r.ws();
  if (r.p != r.end) r.fail("unexpected " + r.token() + " after the header object (only space padding may follow)");

  // Duplicate keys: in the metadata and among tensor names.
  std::unordered_set<std::string> seen;
  for (const auto& kv : h.metadata)
    if (!seen.insert(kv.first).second)
      throw SafetensorsError(SafetensorsError::Format, f + ": duplicate __metadata__ key \"" + kv.first + "\"");
  seen.clear();
  for (const auto& t : h.tensors) {
    if (t.name.empty()) throw SafetensorsError(SafetensorsError::Format, f + ": empty tensor name");
    if (!seen.insert(t.name).second)
      throw SafetensorsError(SafetensorsError::Format, f + ": duplicate tensor \"" + t.name + "\"");
  }
  for (const auto& t : h.tensors) check_tensor(t, h.data_bytes, f);

  // The tensors must tile the data section: no overlap, no hole, nothing after the last one.
  std::vector<size_t> order(h.tensors.size());
  std::iota(order.begin(), order.end(), size_t(0));
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const auto &x = h.tensors[a], &y = h.tensors[b];
    return x.begin != y.begin ? x.begin < y.begin : x.end < y.end;
  });
  uint64_t at = 0;
  const TensorInfo* prev = nullptr;
  for (size_t i : order) {
    const TensorInfo& t = h.tensors[i];
    if (t.begin < at)
      range_fail(f, "tensor \"" + t.name + "\" data_offsets " + range_str(t.begin, t.end) + " overlap tensor \"" +
                        prev->name + "\" " + range_str(prev->begin, prev->end));
    if (t.begin > at)
      range_fail(f, "bytes [" + std::to_string(at) + ", " + std::to_string(t.begin) +
                        ") of the data section belong to no tensor (holes are not allowed)");
    at = t.end;
    prev = &t;
  }
  if (at != h.data_bytes)
    range_fail(f, "the data section holds " + std::to_string(h.data_bytes) + " bytes but the tensors cover only " +
                      std::to_string(at) + " (trailing bytes are not allowed)");
  return h;
}

}  // namespace rift::st
