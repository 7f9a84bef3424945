#pragma once
// VolumeLocks: at most one operation per key (a volume id, a volume name) at a time. A second
// caller does not wait: it gets ABORTED at once, which the CSI spec's "Concurrency" section
// allows and which tells the CO to retry later.

#include <set>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace strata::node {

class VolumeLocks {
 public:
  // Held while alive; releases on destruction.
  class Lock {
   public:
    Lock(Lock&& other) noexcept : owner_(other.owner_), key_(std::move(other.key_)) {
      other.owner_ = nullptr;
    }
    Lock(const Lock&) = delete;
    Lock& operator=(const Lock&) = delete;
    Lock& operator=(Lock&&) = delete;
    ~Lock();

   private:
    friend class VolumeLocks;
    Lock(VolumeLocks* owner, std::string key) : owner_(owner), key_(std::move(key)) {}
    VolumeLocks* owner_;
    std::string key_;
  };

  // Takes `key`, or Aborted naming `what` when another operation holds it.
  absl::StatusOr<Lock> TryAcquire(const std::string& key, const std::string& what);

 private:
  absl::Mutex mutex_;
  std::set<std::string> held_ ABSL_GUARDED_BY(mutex_);
};

}  // namespace strata::node
