#pragma once
// Sizes as admins type them: "10GiB", "512MiB", "64M", "1G", "4096".

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace strata {

// Bytes in `text`; InvalidArgument naming `what` (a flag or argument) when it is not a size.
absl::StatusOr<int64_t> ParseSize(const std::string& text, const std::string& what);

// Bytes in a Kubernetes-style quantity: plain bytes ("4096"), binary suffixes Ki Mi Gi Ti Pi
// (powers of 1024) or decimal ones k M G T P (powers of 1000), as a PVC's storage request is
// written. InvalidArgument naming `what` otherwise (fractions, other suffixes, overflow).
absl::StatusOr<int64_t> ParseQuantity(const std::string& text, const std::string& what);

}  // namespace strata
