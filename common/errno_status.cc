#include "common/errno_status.h"

#include "absl/strings/str_cat.h"

namespace strata {

absl::Status ErrnoStatus(int error_number, std::string_view what, std::string_view path) {
  std::string message =
      path.empty() ? std::string(what) : absl::StrCat(what, " ", path);
  return absl::ErrnoToStatus(error_number, message);
}

}  // namespace strata
