#include "node/images/limits.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace strata::images {

absl::Status ValidateLimits(const ImportLimits& limits) {
  if (limits.max_json_bytes <= 0) return absl::InvalidArgumentError("--max-json-bytes must be > 0");
  if (limits.max_json_depth <= 0 || limits.max_json_depth > kMaxJsonDepthCeiling) {
    return absl::InvalidArgumentError(
        absl::StrCat("--max-json-depth must be between 1 and ", kMaxJsonDepthCeiling));
  }
  if (limits.max_layer_bytes <= 0) {
    return absl::InvalidArgumentError("--max-layer-bytes must be > 0");
  }
  if (limits.max_layer_entries <= 0) {
    return absl::InvalidArgumentError("--max-layer-entries must be > 0");
  }
  if (limits.max_import_bytes <= 0) {
    return absl::InvalidArgumentError("--max-import-bytes must be > 0");
  }
  return absl::OkStatus();
}

JsonShape ScanJson(absl::string_view text, int depth_limit) {
  JsonShape shape;
  int depth = 0;
  bool in_string = false;
  bool escaped = false;
  // dump(2) puts every element and member on its own line, indented two spaces per level, and
  // adds a space after each ':'.
  shape.pretty_bytes = static_cast<int64_t>(text.size());
  // Numbers can grow when rendered: a double is printed in its shortest round-trip form, so
  // "1E2" becomes "100.0" and "1e14" "100000000000000.0". Integers of up to 19 characters print
  // as they are (or shorter: "-0"); longer ones, and anything with '.', 'e' or 'E', may be
  // doubles, whose longest rendering ("-1.2345678901234567e-308") has kMaxDoubleBytes.
  constexpr int64_t kMaxDoubleBytes = 24;
  int64_t number_bytes = 0;  // length of the number token being scanned, 0 outside one
  bool number_is_double = false;
  auto end_number = [&] {
    if (number_bytes > 0 && (number_is_double || number_bytes >= 20) &&
        number_bytes < kMaxDoubleBytes) {
      shape.pretty_bytes += kMaxDoubleBytes - number_bytes;
    }
    number_bytes = 0;
  };
  for (char c : text) {
    if (!in_string) {
      const bool digit_or_sign = (c >= '0' && c <= '9') || c == '-';
      if (number_bytes > 0 && (digit_or_sign || c == '+' || c == '.' || c == 'e' || c == 'E')) {
        ++number_bytes;
        number_is_double = number_is_double || c == '.' || c == 'e' || c == 'E';
        continue;
      }
      end_number();
      if (digit_or_sign) {
        number_bytes = 1;
        number_is_double = false;
        continue;
      }
    }
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    switch (c) {
      case '"':
        in_string = true;
        break;
      case '[':
      case '{':
        ++depth;
        shape.pretty_bytes += 2 * depth + 1;
        if (depth > shape.max_depth) shape.max_depth = depth;
        if (depth > depth_limit) {
          shape.depth_exceeded = true;
          return shape;
        }
        break;
      case ']':
      case '}':
        shape.pretty_bytes += 2 * depth + 1;
        if (depth > 0) --depth;
        break;
      case ',':
        shape.pretty_bytes += 2 * depth + 1;
        break;
      case ':':
        shape.pretty_bytes += 1;
        break;
      default:
        break;
    }
  }
  end_number();
  return shape;
}

absl::StatusOr<nlohmann::json> ParseBoundedJson(absl::string_view text, int64_t max_bytes,
                                                int max_depth, const std::string& what) {
  if (static_cast<int64_t>(text.size()) > max_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", text.size(),
                                                   " bytes of JSON, more than the limit of ",
                                                   SizeText(max_bytes), " (--max-json-bytes)"));
  }
  // nlohmann's parser stops at a NUL byte and accepts what came before it ("{}\0anything"). A
  // raw NUL is never valid JSON (inside strings it must be escaped), so such a text is refused
  // rather than stored as a config other parsers would reject.
  if (text.find('\0') != absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": invalid JSON (a NUL byte)"));
  }
  JsonShape shape = ScanJson(text, max_depth);
  if (shape.depth_exceeded) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": JSON nested deeper than the limit of ",
                                                   max_depth, " (--max-json-depth)"));
  }
  nlohmann::json doc =
      nlohmann::json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(what, ": invalid JSON"));
  return doc;
}

std::string Echo(absl::string_view value, size_t max) {
  if (value.size() <= max) return std::string(value);
  size_t cut = max;
  // Back up to the start of a UTF-8 sequence (continuation bytes are 10xxxxxx).
  while (cut > 0 && (static_cast<unsigned char>(value[cut]) & 0xC0) == 0x80) --cut;
  return absl::StrCat(value.substr(0, cut), "…");
}

absl::Status BoundMessage(const absl::Status& status, size_t max) {
  if (status.ok() || status.message().size() <= max) return status;
  return absl::Status(status.code(), Echo(status.message(), max));
}

std::string SizeText(int64_t bytes) {
  static const char* const kUnits[] = {"KiB", "MiB", "GiB", "TiB"};
  std::string unit;
  int64_t value = bytes;
  for (const char* name : kUnits) {
    if (value < 1024 || value % 1024 != 0) break;
    value /= 1024;
    unit = name;
  }
  return unit.empty() ? absl::StrCat(bytes, " bytes") : absl::StrCat(value, " ", unit);
}

}  // namespace strata::images
