#pragma once
// A mount described as data. Drivers return these instead of mounting, so that driver logic is
// testable without root and one component (the Mounter) performs every mount.

#include <string>
#include <vector>

namespace strata::sys {

struct Mount {
  // "overlay", "bind", "btrfs", "ext4", "xfs", ...
  std::string type;
  // Device, directory (bind) or a label ("overlay").
  std::string source;
  // Filesystem options plus the generic flags "ro", "rw", "rbind", "nosuid", "nodev", "noexec".
  // Overlay lower layers are listed one per option as "lowerdir+=PATH", topmost first, so a
  // chain is never squeezed into one page of mount options; the Mounter decides how to pass them
  // to the kernel.
  std::vector<std::string> options;

  bool operator==(const Mount&) const = default;
};

}  // namespace strata::sys
