// Volume expansion: a larger capacity for a volume that exists (CSI ControllerExpandVolume and
// NodeExpandVolume). The driver grows first (a qgroup limit, a thin device and its
// filesystem), then the label and the record say so: a crash between the steps leaves a
// volume with more room than recorded, never less, and the retried call finishes.

#include "absl/strings/str_cat.h"
#include "common/crash_point.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "node/volume_manager.h"

namespace strata::node {

absl::StatusOr<VolumeManager::ExpandResult> VolumeManager::Expand(const std::string& volume_id,
                                                                  int64_t capacity_bytes) {
  if (capacity_bytes <= 0) return absl::InvalidArgumentError("expand: capacity must be positive");
  ASSIGN_OR_RETURN(VolumeRecord volume, MustGet(volume_id));
  ExpandResult result;
  if (volume.capacity_bytes == 0) {
    // Made without a capacity: nothing limits it, and imposing one now would be a shrink.
    result.capacity_bytes = capacity_bytes;
    return result;
  }
  if (capacity_bytes < volume.capacity_bytes) {
    return absl::OutOfRangeError(absl::StrCat("volume ", volume_id, " has ", volume.capacity_bytes,
                                              " bytes; it cannot shrink to ", capacity_bytes));
  }
  const std::string mount_point = volume.state == kVolumeStaged ? volume.staging_path : "";
  ASSIGN_OR_RETURN(bool grown, driver_->Expand(volume.active_id, capacity_bytes, mount_point));
  result.capacity_bytes = capacity_bytes;
  result.node_expansion_required = !grown;
  if (capacity_bytes == volume.capacity_bytes) return result;
  CrashPoint("expand-after-driver");
  const int64_t before = volume.capacity_bytes;
  volume.capacity_bytes = capacity_bytes;
  RETURN_IF_ERROR(Relabel(volume));
  RETURN_IF_ERROR(metadata_->PutVolume(volume));
  LogInfo("volume expanded", {{"volume", volume_id},
                              {"from_bytes", std::to_string(before)},
                              {"to_bytes", std::to_string(capacity_bytes)},
                              {"filesystem_grown", grown ? "true" : "waits for stage"}});
  return result;
}

absl::StatusOr<int64_t> VolumeManager::ExpandOnNode(const std::string& volume_id,
                                                    const std::string& volume_path) {
  ASSIGN_OR_RETURN(VolumeRecord volume, MustGet(volume_id));
  bool known_path = volume.state == kVolumeStaged && volume.staging_path == volume_path;
  ASSIGN_OR_RETURN(std::vector<PublicationRecord> publications,
                   metadata_->ListPublications(volume_id));
  for (const PublicationRecord& publication : publications)
    if (publication.target_path == volume_path) known_path = true;
  if (!known_path) {
    return absl::NotFoundError(
        absl::StrCat("volume ", volume_id, " is not staged or published at ", volume_path));
  }
  if (volume.capacity_bytes == 0) return int64_t{0};
  // The staging path holds the real mount (targets are binds of it); grow through it.
  const std::string mount_point = volume.state == kVolumeStaged ? volume.staging_path : volume_path;
  ASSIGN_OR_RETURN(bool grown,
                   driver_->Expand(volume.active_id, volume.capacity_bytes, mount_point));
  if (!grown) {
    return absl::FailedPreconditionError(
        absl::StrCat("volume ", volume_id, "'s filesystem could not grow at ", mount_point));
  }
  return volume.capacity_bytes;
}

}  // namespace strata::node
