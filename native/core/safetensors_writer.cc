// safetensors writer: lays out the header (keys sorted, padded to 8 bytes with spaces) and the data order.
#include <algorithm>
#include <cstdio>
#include <numeric>

#include "core/checked.h"
#include "core/safetensors.h"

namespace rift::st {

std::string json_quote(const std::string& s) {
  std::string out = "\"";
  for (const char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (uint8_t(c) < 0x20) {
          char buf[8];
          snprintf(buf, sizeof buf, "\\u%04x", unsigned(c));
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

namespace {

[[noreturn]] void bad(SafetensorsError::Kind k, const std::string& what) {
  throw SafetensorsError(k, "safetensors writer: " + what);
}

// prod(shape) * dtype size, with the parser's limits.
uint64_t byte_count(const TensorSpec& t) {
  const size_t esize = dtype_size(t.dtype);
  if (esize == 0) bad(SafetensorsError::Format, "tensor \"" + t.name + "\": unknown dtype \"" + t.dtype + "\"");
  if (t.shape.size() > kMaxRank) bad(SafetensorsError::Range, "tensor \"" + t.name + "\": more than 64 dimensions");
  for (const int64_t d : t.shape) {
    if (d < 0 || d > kMaxDim) bad(SafetensorsError::Range, "tensor \"" + t.name + "\": dimension out of [0, 2^53)");
    if (d == 0) return 0;
  }
  uint64_t bytes = esize;
  for (const int64_t d : t.shape)
    if (!mul_ok(bytes, uint64_t(d), &bytes))
      bad(SafetensorsError::Range, "tensor \"" + t.name + "\": byte count overflows");
  return bytes;
}

}  // namespace

Layout layout(const std::vector<TensorSpec>& tensors,
              const std::vector<std::pair<std::string, std::string>>& metadata) {
  const size_t n = tensors.size();
  std::vector<uint64_t> bytes(n);
  for (size_t i = 0; i < n; i++) {
    if (tensors[i].name.empty() || tensors[i].name == "__metadata__")
      bad(SafetensorsError::Format, "tensor name \"" + tensors[i].name + "\" is not allowed");
    bytes[i] = byte_count(tensors[i]);
  }
  // Header order: names sorted bytewise (duplicates are adjacent there).
  std::vector<size_t> by_name(n);
  std::iota(by_name.begin(), by_name.end(), size_t(0));
  std::sort(by_name.begin(), by_name.end(), [&](size_t a, size_t b) { return tensors[a].name < tensors[b].name; });
  for (size_t k = 1; k < n; k++)
    if (tensors[by_name[k]].name == tensors[by_name[k - 1]].name)
      bad(SafetensorsError::Format, "duplicate tensor \"" + tensors[by_name[k]].name + "\"");
  // Data order: element size descending, then name, so each tensor starts aligned to its element size.
  std::vector<size_t> by_data = by_name;
  std::stable_sort(by_data.begin(), by_data.end(),
                   [&](size_t a, size_t b) { return dtype_size(tensors[a].dtype) > dtype_size(tensors[b].dtype); });
  Layout out;
  std::vector<uint64_t> begin(n);
  for (size_t i : by_data) {
    begin[i] = out.data_bytes;
    if (!add_ok(out.data_bytes, bytes[i], &out.data_bytes)) bad(SafetensorsError::Range, "total size overflows");
    out.placement.push_back({tensors[i].name, i, begin[i], begin[i] + bytes[i]});
  }

  auto meta = metadata;
  std::sort(meta.begin(), meta.end());
  for (size_t k = 1; k < meta.size(); k++)
    if (meta[k].first == meta[k - 1].first)
      bad(SafetensorsError::Format, "duplicate __metadata__ key \"" + meta[k].first + "\"");

  std::string json = "{";
  if (!meta.empty()) {
    json += "\"__metadata__\":{";
    for (size_t k = 0; k < meta.size(); k++)
      json += (k ? "," : "") + json_quote(meta[k].first) + ":" + json_quote(meta[k].second);
    json += "}";
  }
  for (size_t k = 0; k < n; k++) {
    const size_t i = by_name[k];
    const TensorSpec& t = tensors[i];
    json +=
        (k || !meta.empty() ? "," : "") + json_quote(t.name) + ":{\"dtype\":" + json_quote(t.dtype) + ",\"shape\":[";
    for (size_t d = 0; d < t.shape.size(); d++) json += (d ? "," : "") + std::to_string(t.shape[d]);
    json += "],\"data_offsets\":[" + std::to_string(begin[i]) + "," + std::to_string(begin[i] + bytes[i]) + "]}";
  }
  json += "}";
  json.append((8 - json.size() % 8) % 8, ' ');  // as the reference implementation pads
  if (json.size() > kMaxHeaderBytes) bad(SafetensorsError::Range, "header exceeds the 100,000,000-byte limit");

  out.prefix.resize(8);
  uint64_t len = json.size();
  for (int b = 0; b < 8; b++, len >>= 8) out.prefix[size_t(b)] = char(len & 0xff);
  out.prefix += json;
  return out;
}

std::string serialize(const std::vector<TensorSpec>& tensors, const std::vector<std::string>& datas,
                      const std::vector<std::pair<std::string, std::string>>& metadata) {
  if (datas.size() != tensors.size()) bad(SafetensorsError::Range, "one data buffer per tensor is needed");
  const Layout l = layout(tensors, metadata);
  std::string out = l.prefix;
  out.reserve(l.prefix.size() + size_t(l.data_bytes));
  for (const Placement& p : l.placement) {
    const size_t i = p.index;
    if (datas[i].size() != p.end - p.begin)
      bad(SafetensorsError::Range, "tensor \"" + p.name + "\": " + std::to_string(datas[i].size()) +
                                       " data bytes, shape needs " + std::to_string(p.end - p.begin));
    out += datas[i];
  }
  return out;
}

}  // namespace rift::st
