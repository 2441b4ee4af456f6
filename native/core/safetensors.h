// safetensors: a strict header parser and a header writer (no Node, no CUDA).
//
// File layout (https://github.com/huggingface/safetensors):
//   [8 bytes]  N, u64 little-endian: header length
//   [N bytes]  JSON header, UTF-8, starts with '{', may be right-padded with spaces:
//              {"__metadata__": {"k": "v", ...},              (optional, string -> string)
//               "name": {"dtype": "F32", "shape": [d0, d1, ...], "data_offsets": [begin, end]}, ...}
//   [rest]     data section; begin/end are byte offsets into it (relative to 8 + N)
//
// What the parser accepts (everything else throws SafetensorsError naming the file and the problem):
//   - N <= file size - 8 and N <= 100,000,000 (the reference implementation's limit);
//   - valid UTF-8; JSON made of objects, arrays, strings (all escapes, surrogate pairs checked) and integers;
//     floats, true/false/null, duplicate keys, unknown tensor fields and trailing non-space bytes are rejected;
//   - a known dtype with a whole-byte size; shape of at most 64 dims, each in [0, 2^53); offsets integers
//     with begin <= end <= data size; prod(shape) * dtype size == end - begin (overflow checked);
//   - like the reference implementation, the tensors must tile the data section exactly: sorted by begin, the
//     first starts at 0, each starts where the previous ended (no overlap, no hole) and the last ends at the
//     end of the file. Holes are rejected because the spec forbids them (they allow polyglot files).
// The reader is schema-driven (top object -> tensor objects -> integer arrays), so it never recurses:
// hostile nesting is a clear error, not a stack overflow.
#pragma once
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace rift::st {

// Bad content. kind Range: a size, offset or count out of bounds; kind Format: syntax, structure, types.
struct SafetensorsError : std::runtime_error {
  enum Kind { Format, Range } kind;
  SafetensorsError(Kind k, const std::string& msg) : std::runtime_error(msg), kind(k) {}
};

constexpr uint64_t kMaxHeaderBytes = 100000000;  // 100 MB, as in the reference implementation
constexpr size_t kMaxRank = 64;
constexpr int64_t kMaxDim = (int64_t(1) << 53) - 1;  // exactly representable as a JS number

// Size in bytes of one element of a safetensors dtype ("F32" -> 4), or 0 when unknown/unsupported.
size_t dtype_size(const std::string& dtype);

struct TensorInfo {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte range in the data section
};

struct Header {
  uint64_t header_bytes = 0;                                  // N; the data section starts at file offset 8 + N
  uint64_t data_bytes = 0;                                    // file size - 8 - N
  std::vector<TensorInfo> tensors;                            // in header order
  std::vector<std::pair<std::string, std::string>> metadata;  // "__metadata__", in header order
};

// Reads the header length from the first 8 bytes and checks it against file_size and the 100 MB cap.
uint64_t header_length(const uint8_t* prefix, size_t len, uint64_t file_size, const std::string& file);

// Parses and validates a header. `bytes` holds the first `len` bytes of the file (len >= 8 + N).
Header parse_header(const uint8_t* bytes, size_t len, uint64_t file_size, const std::string& file);

// ---- writer ----

struct TensorSpec {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
};

struct Placement {
  std::string name;
  size_t index = 0;             // position in the TensorSpec list given to layout()
  uint64_t begin = 0, end = 0;  // byte range in the data section
};

struct Layout {
  std::string prefix;                // 8-byte length + JSON header padded with spaces to a multiple of 8
  std::vector<Placement> placement;  // where each tensor's bytes go, in data order
  uint64_t data_bytes = 0;
};

// Lays out a file: data ordered by dtype size (largest first) then name, so every tensor is aligned to its
// element size; header keys "__metadata__" first, then tensor names sorted bytewise. Validates the specs
// (known dtype, unique non-empty names, dims in range) and throws SafetensorsError otherwise.
Layout layout(const std::vector<TensorSpec>& tensors, const std::vector<std::pair<std::string, std::string>>& metadata);

// The whole file in memory (for tests and small files): datas[i] holds tensors[i]'s bytes.
std::string serialize(const std::vector<TensorSpec>& tensors, const std::vector<std::string>& datas,
                      const std::vector<std::pair<std::string, std::string>>& metadata);

// JSON string literal (quotes, escapes) of a UTF-8 string, as the writer emits it.
std::string json_quote(const std::string& s);

}  // namespace rift::st
