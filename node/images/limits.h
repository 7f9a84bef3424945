#pragma once
// ImportLimits: the bounds every image import is held to, and the helpers that enforce them on
// JSON documents (manifests, indexes, configs) and on text echoed back into error messages.
//
// Everything in an archive is hostile: without these bounds a 1 MiB gzip layer expands to
// 1 GiB, a 1 KiB tar claims a 1 TiB sparse file, and a config nested a million deep crashes
// the recursive JSON serializer each time Inspect or Save renders it.

#include <cstdint>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace strata::images {

struct ImportLimits {
  // Any one JSON document (manifest.json, index.json, a manifest, an index, a config). Real
  // configs are a few KiB, rarely over 100 KiB (long histories).
  int64_t max_json_bytes = int64_t{4} << 20;
  // Nesting of arrays and objects in those documents. Real ones nest 4-6 deep; 64 leaves room
  // and keeps every recursive walk (nlohmann's serializer recurses per level) shallow.
  int max_json_depth = 64;
  // One layer, uncompressed: the tar stream and, separately, the sum of its files' apparent
  // sizes (a sparse entry counts at its full size). Bounds decompression bombs.
  int64_t max_layer_bytes = int64_t{256} << 30;
  // Tar entries in one layer (and in an archive tar).
  int64_t max_layer_entries = 1'000'000;
  // All layers of one import together (same measure as max_layer_bytes), plus an archive tar's
  // unpacked files.
  int64_t max_import_bytes = int64_t{1024} << 30;
};

// The deepest --max-json-depth accepted; also what Save and Inspect allow for configs stored
// before the bounds existed (nlohmann's serializer recurses once per level).
inline constexpr int kMaxJsonDepthCeiling = 1000;
// The largest stored config Save will read back.
inline constexpr int64_t kMaxStoredJsonBytes = int64_t{256} << 20;

// Validates every bound is positive (and the depth at most kMaxJsonDepthCeiling).
// InvalidArgument naming the flag otherwise.
absl::Status ValidateLimits(const ImportLimits& limits);

// Shape of a JSON text, from one linear scan that does not build anything.
struct JsonShape {
  int max_depth = 0;            // deepest nesting of arrays/objects
  int64_t pretty_bytes = 0;     // upper estimate of dump(2)'s output size
  bool depth_exceeded = false;  // the scan stopped early at `depth_limit`
};
JsonShape ScanJson(absl::string_view text, int depth_limit);

// Parses `text` after checking it is at most `max_bytes` long and nested at most `max_depth`
// deep. InvalidArgument "WHAT: ..." naming the bound that was exceeded, or "invalid JSON".
absl::StatusOr<nlohmann::json> ParseBoundedJson(absl::string_view text, int64_t max_bytes,
                                                int max_depth, const std::string& what);
inline absl::StatusOr<nlohmann::json> ParseBoundedJson(absl::string_view text,
                                                       const ImportLimits& limits,
                                                       const std::string& what) {
  return ParseBoundedJson(text, limits.max_json_bytes, limits.max_json_depth, what);
}

// Longest hostile value (entry name, media type, reference) an error message repeats.
inline constexpr size_t kMaxEchoBytes = 256;
// Longest error message an import returns.
inline constexpr size_t kMaxErrorBytes = 2048;

// `value` cut to `max` bytes (never inside a UTF-8 sequence) with "…" appended when cut.
std::string Echo(absl::string_view value, size_t max = kMaxEchoBytes);
// `status` with its message cut to `max` bytes the same way.
absl::Status BoundMessage(const absl::Status& status, size_t max = kMaxErrorBytes);

// "1 KiB", "32 GiB": a byte count as the flags spell it (exact when a whole unit).
std::string SizeText(int64_t bytes);

}  // namespace strata::images
