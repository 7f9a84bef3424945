#pragma once
// Which volume capabilities Strata serves: mount access (any fs_type the driver mounts, or none)
// in the single-node access modes. Volumes are node-local, so multi-node modes are refused, and
// there is no raw block access.

#include <string>

#include "absl/status/status.h"
#include "csi.pb.h"

namespace strata::csi {

// InvalidArgument when `capability` is malformed (no access type or mode); FailedPrecondition
// (the spec's "exceeds capabilities") when it is well-formed but not something Strata serves.
absl::Status CheckCapability(const ::csi::v1::VolumeCapability& capability);

// True when CheckCapability accepts it.
bool IsSupported(const ::csi::v1::VolumeCapability& capability);

}  // namespace strata::csi
