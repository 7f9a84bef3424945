#pragma once
// FakeMounter: an in-memory Mounter for unit tests. It records every mount, lets a test make the
// next MountAt fail, and answers IsMountPoint/List from what it recorded. Thread-safe.

#include <deque>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "sys/mounter.h"

namespace strata::sys {

class FakeMounter : public Mounter {
 public:
  struct Record {
    Mount mount;
    std::string target;
  };

  absl::Status MountAt(const Mount& mount, const std::string& target) override;
  absl::Status Unmount(const std::string& target, bool detach = false) override;
  absl::StatusOr<bool> IsMountPoint(const std::string& path) override;
  absl::StatusOr<std::vector<MountPoint>> List() override;

  // The next MountAt calls fail with these statuses, one per call, in order, and record nothing.
  void FailNextMountAt(absl::Status status);
  // The next Unmount calls fail likewise.
  void FailNextUnmount(absl::Status status);

  // Mounts in place now, oldest first (a target mounted twice appears twice).
  std::vector<Record> mounts() const;
  int mount_calls() const;
  int unmount_calls() const;

 private:
  mutable std::mutex mu_;
  std::vector<Record> mounts_;                 // guarded by mu_
  std::deque<absl::Status> mount_failures_;    // guarded by mu_
  std::deque<absl::Status> unmount_failures_;  // guarded by mu_
  int mount_calls_ = 0;                        // guarded by mu_
  int unmount_calls_ = 0;                      // guarded by mu_
};

}  // namespace strata::sys
