#pragma once
// Builds a Driver by name. Strata's --root holds each driver's content in <root>/<driver name>/.

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "drivers/devmapper/devmapper_driver.h"
#include "drivers/driver.h"

namespace strata::drivers {

// Every driver name Strata knows, implemented in this build or not:
// "overlay", "vfs", "btrfs", "devmapper".
const std::vector<std::string>& KnownDriverNames();

// The driver `name` keeping its content under `root` (absolute). InvalidArgument for an unknown
// name (the message lists the valid ones), Unimplemented for a known driver this build lacks,
// FailedPrecondition when the driver cannot run here (e.g. no overlayfs, --root not on btrfs),
// with the reason. `name` may also be "auto": devmapper when options name a thin pool, else
// btrfs when `root` is on btrfs, else overlay when overlayfs works there, else
// FailedPrecondition with the reasons (never vfs silently).
absl::StatusOr<std::unique_ptr<Driver>> NewDriver(const std::string& name, const std::string& root);

// What some drivers need besides a root (strata-csi's --dm-* flags).
struct DriverOptions {
  DevmapperOptions devmapper;  // devmapper needs devmapper.thin_pool
};
absl::StatusOr<std::unique_ptr<Driver>> NewDriver(const std::string& name, const std::string& root,
                                                  const DriverOptions& options);

}  // namespace strata::drivers
