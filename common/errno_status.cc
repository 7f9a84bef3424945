#include "common/errno_status.h"

namespace strata {

absl::Status ErrnoStatus(int error_number, std::string_view what, std::string_view path) {
  std::string message(what);
  if (!path.empty()) message.append(" ").append(path);
  return absl::ErrnoToStatus(error_number, message);
}

}  // namespace strata
