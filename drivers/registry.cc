#include "drivers/registry.h"

#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "drivers/btrfs/btrfs_driver.h"
#include "drivers/fs_util.h"
#include "drivers/overlay/overlay_driver.h"
#include "drivers/vfs/vfs_driver.h"

namespace strata::drivers {

const std::vector<std::string>& KnownDriverNames() {
  static const std::vector<std::string>* const names =
      new std::vector<std::string>{"overlay", "vfs", "btrfs", "devmapper"};
  return *names;
}

absl::StatusOr<std::unique_ptr<Driver>> NewDriver(const std::string& name,
                                                  const std::string& root) {
  return NewDriver(name, root, DriverOptions{});
}

absl::StatusOr<std::unique_ptr<Driver>> NewDriver(const std::string& name, const std::string& root,
                                                  const DriverOptions& options) {
  if (name == "overlay") {
    ASSIGN_OR_RETURN(std::unique_ptr<OverlayDriver> driver, OverlayDriver::Create(root));
    RETURN_IF_ERROR(OverlaySupported(root + "/overlay"));
    return std::unique_ptr<Driver>(std::move(driver));
  }
  if (name == "vfs") {
    ASSIGN_OR_RETURN(std::unique_ptr<VfsDriver> driver, VfsDriver::Create(root));
    return std::unique_ptr<Driver>(std::move(driver));
  }
  if (name == "btrfs") {
    ASSIGN_OR_RETURN(std::unique_ptr<BtrfsDriver> driver, BtrfsDriver::Create(root));
    return std::unique_ptr<Driver>(std::move(driver));
  }
  if (name == "auto") {
    // devmapper when a thin pool is named (the operator set one up for it; the chart does this
    // too), else btrfs when --root is on btrfs (no copies, capacity via quotas), else overlay.
    // Never vfs: its full copies must be asked for.
    if (root.empty() || root[0] != '/') {
      return absl::InvalidArgumentError("driver root must be an absolute path: " + root);
    }
    if (!options.devmapper.thin_pool.empty()) return NewDriver("devmapper", root, options);
    RETURN_IF_ERROR(MakeDirs(root));
    absl::Status btrfs = BtrfsSupported(root);
    if (btrfs.ok()) return NewDriver("btrfs", root);
    absl::Status overlay = OverlaySupported(root);
    if (overlay.ok()) return NewDriver("overlay", root);
    return absl::FailedPreconditionError(
        "driver auto: no driver can run at " + root + ": " + std::string(btrfs.message()) + "; " +
        std::string(overlay.message()) + "; pick one with --driver (vfs copies every layer)");
  }
  if (name == "devmapper") {
    ASSIGN_OR_RETURN(std::unique_ptr<DevmapperDriver> driver,
                     NewDevmapperDriver(root, options.devmapper));
    return std::unique_ptr<Driver>(std::move(driver));
  }
  return absl::InvalidArgumentError("unknown driver \"" + name + "\"; valid names: " +
                                    absl::StrJoin(KnownDriverNames(), ", ") + ", auto");
}

}  // namespace strata::drivers
