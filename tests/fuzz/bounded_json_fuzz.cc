// libFuzzer target: the JSON bounds every image document goes through (node/images/limits.h:
// ScanJson, ParseBoundedJson, Echo, BoundMessage).
//
// Input: one byte for the depth limit (1..32), one for the size limit (n * 64 bytes, 0 = 1 MiB),
// the rest is the JSON text. Invariants, from the header:
//   - an accepted document is at most max_bytes long and nests at most max_depth deep;
//   - ScanJson's max_depth is the parsed document's depth (when it parses and is not cut), and
//     its pretty_bytes is an upper estimate of dump(2)'s size (Inspect relies on it to bound
//     what it renders);
//   - Echo and BoundMessage cut at most to max (+ the 3-byte ellipsis), never inside a UTF-8
//     sequence, and keep a prefix of the text.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/status/status.h"
#include "nlohmann/json.hpp"
#include "node/images/limits.h"

namespace {

[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "bounded_json_fuzz: invariant broken: %s\n", what);
  std::abort();
}

int Depth(const nlohmann::json& node) {
  if (!node.is_array() && !node.is_object()) return 0;
  int deepest = 0;
  for (const auto& child : node) deepest = std::max(deepest, Depth(child));
  return deepest + 1;
}

void CheckCut(const std::string& text, const std::string& cut, size_t max) {
  if (text.size() <= max) {
    if (cut != text) Fail("a short text was changed");
    return;
  }
  if (cut.size() > max + 3 || cut.size() < 3 || cut.compare(cut.size() - 3, 3, "…") != 0) {
    Fail("a cut text is over its bound or has no ellipsis");
  }
  const size_t kept = cut.size() - 3;
  if (text.compare(0, kept, cut, 0, kept) != 0) Fail("a cut text is not a prefix");
  // Cutting to nothing is the only choice when the text opens with continuation bytes.
  if (kept > 0 && (static_cast<unsigned char>(text[kept]) & 0xC0) == 0x80) {
    Fail("cut inside a UTF-8 sequence");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const int max_depth = 1 + data[0] % 32;
  const int64_t max_bytes = data[1] == 0 ? int64_t{1} << 20 : int64_t{data[1]} * 64;
  const std::string text(reinterpret_cast<const char*>(data + 2), size - 2);

  const strata::images::JsonShape shape = strata::images::ScanJson(text, max_depth);
  auto parsed = strata::images::ParseBoundedJson(text, max_bytes, max_depth, "config");
  if (parsed.ok()) {
    if (static_cast<int64_t>(text.size()) > max_bytes) Fail("accepted past max_bytes");
    if (shape.depth_exceeded) Fail("accepted although ScanJson stopped at the depth limit");
    const int depth = Depth(*parsed);
    if (depth > max_depth) Fail("accepted past max_depth");
    if (depth != shape.max_depth) Fail("ScanJson's depth differs from the document's");
    const std::string pretty = parsed->dump(2);
    if (static_cast<int64_t>(pretty.size()) > shape.pretty_bytes) {
      std::fprintf(stderr, "dump(2) is %zu bytes, estimate %lld\n", pretty.size(),
                   static_cast<long long>(shape.pretty_bytes));
      Fail("pretty_bytes is not an upper estimate of dump(2)");
    }
  } else if (parsed.status().code() != absl::StatusCode::kInvalidArgument) {
    Fail("an error other than InvalidArgument");
  }

  const size_t max = 1 + data[0];
  CheckCut(text, strata::images::Echo(text, max), max);
  absl::Status status = strata::images::BoundMessage(absl::InvalidArgumentError(text), max);
  CheckCut(text, std::string(status.message()), max);
  if (status.code() != absl::StatusCode::kInvalidArgument) Fail("BoundMessage changed the code");
  return 0;
}
