#pragma once
// Sizes as admins type them: "10GiB", "512MiB", "64M", "1G", "4096".

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace strata {

// Bytes in `text`; InvalidArgument naming `what` (a flag or argument) when it is not a size.
absl::StatusOr<int64_t> ParseSize(const std::string& text, const std::string& what);

}  // namespace strata
