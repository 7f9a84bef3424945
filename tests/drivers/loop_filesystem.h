#pragma once
// A real filesystem for tests: a sparse file formatted with mkfs (btrfs by default, or xfs, ext4)
// and mounted through a loop device (`truncate`, `mkfs.* -q`, `mount -o loop`). Needs root, the
// mkfs program and loop devices; Create() says which one is missing so tests can GTEST_SKIP with
// that message.

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace strata::testing {

class LoopFilesystem {
 public:
  // Makes and mounts a fresh filesystem of `size_bytes` (sparse) under /var/tmp, formatted by
  // `mkfs` (a program and its options, the image path is appended: "mkfs.xfs -q -m reflink=1").
  // The backing file is unlinked once mounted, so nothing but the mount outlives a crashed test.
  // `mount_options` are added to mount(8)'s "-o loop" ("prjquota" for project quotas).
  // FailedPrecondition (not root, no such mkfs, no loop devices) or the failing step.
  static absl::StatusOr<std::unique_ptr<LoopFilesystem>> Create(
      const std::string& mkfs, int64_t size_bytes, const std::string& mount_options = "");
  // A btrfs one.
  static absl::StatusOr<std::unique_ptr<LoopFilesystem>> Create(int64_t size_bytes = int64_t{1}
                                                                                     << 30) {
    return Create("mkfs.btrfs -q -f", size_bytes);
  }

  // Unmounts (lazily if still busy) and removes the mount point.
  ~LoopFilesystem();

  const std::string& mount_point() const { return mount_point_; }

  // btrfs only: `btrfs quota enable` and waits for the initial rescan (the CLI is fine in tests).
  absl::Status EnableQuotas();

 private:
  LoopFilesystem(std::string dir, std::string mount_point)
      : dir_(std::move(dir)), mount_point_(std::move(mount_point)) {}

  std::string dir_;
  std::string mount_point_;
};
using LoopBtrfs = LoopFilesystem;

// One btrfs filesystem shared by every test of the process that just needs "some btrfs": made on
// first use (1 GiB), unmounted when the test program ends. Tests make their own directory in it.
absl::StatusOr<std::string> SharedBtrfsMountPoint();

// Runs `command` with sh -c; Internal error carrying its output when it exits non-zero.
absl::Status RunCommand(const std::string& command);

}  // namespace strata::testing
