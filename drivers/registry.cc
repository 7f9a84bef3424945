#include "drivers/registry.h"

#include "absl/strings/str_join.h"
#include "common/status_macros.h"
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
  if (name == "overlay") {
    ASSIGN_OR_RETURN(std::unique_ptr<OverlayDriver> driver, OverlayDriver::Create(root));
    RETURN_IF_ERROR(OverlaySupported(root + "/overlay"));
    return std::unique_ptr<Driver>(std::move(driver));
  }
  if (name == "vfs") {
    ASSIGN_OR_RETURN(std::unique_ptr<VfsDriver> driver, VfsDriver::Create(root));
    return std::unique_ptr<Driver>(std::move(driver));
  }
  if (name == "btrfs" || name == "devmapper") {
    return absl::UnimplementedError("the " + name + " driver is not available in this build yet");
  }
  return absl::InvalidArgumentError("unknown driver \"" + name +
                                    "\"; valid names: " + absl::StrJoin(KnownDriverNames(), ", "));
}

}  // namespace strata::drivers
