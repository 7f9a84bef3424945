#include "common/size.h"

#include <cstring>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace strata {

absl::StatusOr<int64_t> ParseSize(const std::string& text, const std::string& what) {
  static const std::pair<const char*, int64_t> kUnits[] = {
      {"GiB", int64_t{1} << 30}, {"MiB", int64_t{1} << 20}, {"KiB", int64_t{1} << 10},
      {"G", int64_t{1} << 30},   {"M", int64_t{1} << 20},   {"K", int64_t{1} << 10}};
  std::string number = text;
  int64_t unit = 1;
  for (const auto& [suffix, bytes] : kUnits) {
    if (absl::EndsWith(text, suffix)) {
      number = text.substr(0, text.size() - std::strlen(suffix));
      unit = bytes;
      break;
    }
  }
  int64_t value = 0;
  if (!absl::SimpleAtoi(number, &value) || value <= 0 || value > (INT64_MAX / unit)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " must be a size like 10GiB or 512MiB, not \"", text, "\""));
  }
  return value * unit;
}

absl::StatusOr<int64_t> ParseQuantity(const std::string& text, const std::string& what) {
  static const std::pair<const char*, int64_t> kUnits[] = {{"Ki", int64_t{1} << 10},
                                                           {"Mi", int64_t{1} << 20},
                                                           {"Gi", int64_t{1} << 30},
                                                           {"Ti", int64_t{1} << 40},
                                                           {"Pi", int64_t{1} << 50},
                                                           {"k", 1000},
                                                           {"M", 1000 * 1000},
                                                           {"G", int64_t{1000} * 1000 * 1000},
                                                           {"T", int64_t{1000000000000}},
                                                           {"P", int64_t{1000000000000000}}};
  std::string number = text;
  int64_t unit = 1;
  for (const auto& [suffix, bytes] : kUnits) {
    if (absl::EndsWith(text, suffix)) {
      number = text.substr(0, text.size() - std::strlen(suffix));
      unit = bytes;
      break;
    }
  }
  int64_t value = 0;
  if (number.empty() || number.find_first_not_of("0123456789") != std::string::npos ||
      !absl::SimpleAtoi(number, &value) || value > (INT64_MAX / unit)) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, " must be a quantity like 1Gi, 512Mi, 10G or 4096 (bytes), not \"", text, "\""));
  }
  return value * unit;
}

}  // namespace strata
