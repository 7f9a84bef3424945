#pragma once
// Turns a failed syscall into an absl::Status that names what was being done.

#include <cerrno>
#include <string_view>

#include "absl/status/status.h"

namespace strata {

// ErrnoStatus(errno, "mkdir", path) -> e.g. NotFound("mkdir /x/y: No such file or directory").
absl::Status ErrnoStatus(int error_number, std::string_view what, std::string_view path = {});

}  // namespace strata
