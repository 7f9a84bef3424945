#include "drivers/driver.h"

#include <algorithm>

namespace strata::drivers {

bool IsValidDriverId(const std::string& id) {
  if (id.empty() || id.size() > 32) return false;
  for (char c : id) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) return false;
  }
  return true;
}

absl::StatusOr<bool> Driver::Exists(const std::string& id) {
  absl::StatusOr<std::vector<std::string>> ids = Walk();
  if (!ids.ok()) return ids.status();
  return std::find(ids->begin(), ids->end(), id) != ids->end();
}

absl::StatusOr<bool> Driver::Expand(const std::string&, int64_t, const std::string&) {
  return true;  // capacity is recorded by the caller, not enforced here
}

absl::StatusOr<int64_t> Driver::TotalBytes() {
  return absl::UnimplementedError(std::string(name()) + " driver does not report its size");
}

absl::StatusOr<ContentKind> Driver::Quarantine(const std::string&, const std::string&) {
  return absl::UnimplementedError(std::string(name()) + " driver cannot quarantine content");
}

absl::Status Driver::Unquarantine(const std::string&, ContentKind, const std::string&) {
  return absl::UnimplementedError(std::string(name()) +
                                  " driver cannot restore quarantined content");
}

absl::Status Driver::PurgeQuarantined(const std::string&) {
  return absl::UnimplementedError(std::string(name()) + " driver cannot purge quarantined content");
}

}  // namespace strata::drivers
