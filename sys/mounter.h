#pragma once
// Mounter: the only code that changes the kernel's mount table. Real: LinuxMounter (mount(2),
// the new mount API for overlay, libmount to read /proc/self/mountinfo). Tests: FakeMounter.

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "sys/mount_spec.h"

namespace strata::sys {

// One line of the mount table.
struct MountPoint {
  std::string target;  // absolute path, as the kernel shows it
  std::string source;
  std::string fs_type;
  std::string options;  // VFS + superblock options, comma-separated
  std::string root;     // the path inside the source filesystem a bind mount shows ("/" or "")
};

class Mounter {
 public:
  virtual ~Mounter() = default;

  // Mounts `mount` on the existing directory `target`. A "bind" mount with "ro" ends read-only
  // (bind + remount). Fails with the kernel's reason; never leaves a half-made mount behind.
  virtual absl::Status MountAt(const Mount& mount, const std::string& target) = 0;

  // Unmounts `target` (lazily if `detach`). Unmounting something that is not a mount point is OK:
  // callers retry after crashes.
  virtual absl::Status Unmount(const std::string& target, bool detach = false) = 0;

  // True when `path` is itself a mount point.
  virtual absl::StatusOr<bool> IsMountPoint(const std::string& path) = 0;

  // The current mount table.
  virtual absl::StatusOr<std::vector<MountPoint>> List() = 0;
};

struct LinuxMounterOptions {
  // Use classic mount(2) with a single lowerdir= option built from short relative paths, as on
  // kernels before 6.8 that lack "lowerdir+". Tests set it to cover the fallback on new kernels.
  bool force_legacy_overlay = false;
};

std::unique_ptr<Mounter> NewLinuxMounter(LinuxMounterOptions options = {});

}  // namespace strata::sys
