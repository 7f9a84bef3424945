#include "node/volume_locks.h"

#include "absl/strings/str_cat.h"

namespace strata::node {

VolumeLocks::Lock::~Lock() {
  if (owner_ == nullptr) return;
  absl::MutexLock guard(&owner_->mutex_);
  owner_->held_.erase(key_);
}

absl::StatusOr<VolumeLocks::Lock> VolumeLocks::TryAcquire(const std::string& key,
                                                          const std::string& what) {
  absl::MutexLock guard(&mutex_);
  if (!held_.insert(key).second) {
    return absl::AbortedError(
        absl::StrCat("an operation on ", what, " is already in progress; retry later"));
  }
  return Lock(this, key);
}

}  // namespace strata::node
