#include "csi/capabilities.h"

#include "absl/strings/str_cat.h"
#include "csi/request_validation.h"

namespace strata::csi {

using ::csi::v1::VolumeCapability;

absl::Status CheckCapability(const VolumeCapability& capability) {
  if (capability.access_type_case() == VolumeCapability::ACCESS_TYPE_NOT_SET)
    return absl::InvalidArgumentError("volume_capability needs an access type (mount or block)");
  if (!capability.has_access_mode() ||
      capability.access_mode().mode() == VolumeCapability::AccessMode::UNKNOWN) {
    return absl::InvalidArgumentError("volume_capability needs an access_mode");
  }
  if (capability.has_block()) {
    return absl::FailedPreconditionError(
        "block access is not supported: Strata volumes are layered filesystems");
  }
  switch (capability.access_mode().mode()) {
    case VolumeCapability::AccessMode::SINGLE_NODE_WRITER:
    case VolumeCapability::AccessMode::SINGLE_NODE_READER_ONLY:
    case VolumeCapability::AccessMode::SINGLE_NODE_SINGLE_WRITER:
    case VolumeCapability::AccessMode::SINGLE_NODE_MULTI_WRITER:
      break;
    default:
      return absl::FailedPreconditionError(absl::StrCat(
          "access mode ", VolumeCapability::AccessMode::Mode_Name(capability.access_mode().mode()),
          " is not supported: Strata volumes live on one node"));
  }
  // Kubernetes mountOptions: the safe VFS flags (csi/request_validation.h).
  if (capability.has_mount()) return ValidateMountFlags(capability.mount().mount_flags());
  return absl::OkStatus();
}

bool IsSupported(const VolumeCapability& capability) { return CheckCapability(capability).ok(); }

}  // namespace strata::csi
