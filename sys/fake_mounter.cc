#include "sys/fake_mounter.h"

#include "absl/strings/str_join.h"

namespace strata::sys {

absl::Status FakeMounter::MountAt(const Mount& mount, const std::string& target) {
  std::lock_guard<std::mutex> lock(mu_);
  ++mount_calls_;
  if (!mount_failures_.empty()) {
    absl::Status status = mount_failures_.front();
    mount_failures_.pop_front();
    return status;
  }
  if (target.empty() || target[0] != '/') {
    return absl::InvalidArgumentError("mount target must be an absolute path: " + target);
  }
  mounts_.push_back({mount, target});
  return absl::OkStatus();
}

absl::Status FakeMounter::Unmount(const std::string& target, bool detach) {
  std::lock_guard<std::mutex> lock(mu_);
  ++unmount_calls_;
  if (!unmount_failures_.empty()) {
    absl::Status status = unmount_failures_.front();
    unmount_failures_.pop_front();
    return status;
  }
  // Like umount(2): the most recent mount on the target goes; none is fine (idempotent).
  for (auto it = mounts_.rbegin(); it != mounts_.rend(); ++it) {
    if (it->target == target) {
      mounts_.erase(std::next(it).base());
      break;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> FakeMounter::IsMountPoint(const std::string& path) {
  std::lock_guard<std::mutex> lock(mu_);
  for (const Record& record : mounts_) {
    if (record.target == path) return true;
  }
  return false;
}

absl::StatusOr<std::vector<MountPoint>> FakeMounter::List() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<MountPoint> points;
  for (const Record& record : mounts_) {
    points.push_back({record.target, record.mount.source, record.mount.type,
                      absl::StrJoin(record.mount.options, ","),
                      record.mount.type == "bind" ? record.mount.source : "/"});
  }
  return points;
}

void FakeMounter::FailNextMountAt(absl::Status status) {
  std::lock_guard<std::mutex> lock(mu_);
  mount_failures_.push_back(std::move(status));
}

void FakeMounter::FailNextUnmount(absl::Status status) {
  std::lock_guard<std::mutex> lock(mu_);
  unmount_failures_.push_back(std::move(status));
}

std::vector<FakeMounter::Record> FakeMounter::mounts() const {
  std::lock_guard<std::mutex> lock(mu_);
  return mounts_;
}

int FakeMounter::mount_calls() const {
  std::lock_guard<std::mutex> lock(mu_);
  return mount_calls_;
}

int FakeMounter::unmount_calls() const {
  std::lock_guard<std::mutex> lock(mu_);
  return unmount_calls_;
}

}  // namespace strata::sys
