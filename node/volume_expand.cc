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
  ASSIGN_OR_RETURN(VolumeRecord volume, MustGet(volume_id));
  const std::string mount_point = volume.state == kVolumeStaged ? volume.staging_path : "";
  return Grow(std::move(volume), capacity_bytes, mount_point);
}

absl::StatusOr<int64_t> VolumeManager::ExpandOnNode(const std::string& volume_id,
                                                    const std::string& volume_path,
                                                    int64_t capacity_bytes) {
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
  // The staging path holds the real mount (targets are binds of it); grow through it.
  const std::string mount_point = volume.state == kVolumeStaged ? volume.staging_path : volume_path;
  // No size asked: finish what an earlier expansion left for the mount. A smaller size than
  // recorded is a shrink (OutOfRange from Grow).
  const int64_t capacity = capacity_bytes > 0 ? capacity_bytes : volume.capacity_bytes;
  if (capacity == 0) return int64_t{0};  // made without a capacity: nothing to raise
  ASSIGN_OR_RETURN(ExpandResult result, Grow(std::move(volume), capacity, mount_point));
  if (result.node_expansion_required) {
    return absl::InternalError(
        absl::StrCat("volume ", volume_id, "'s filesystem did not grow at ", mount_point));
  }
  return result.capacity_bytes;
}

absl::StatusOr<VolumeManager::ExpandResult> VolumeManager::Grow(VolumeRecord volume,
                                                                int64_t capacity_bytes,
                                                                const std::string& mount_point) {
  if (capacity_bytes <= 0) return absl::InvalidArgumentError("expand: capacity must be positive");
  ExpandResult result;
  result.capacity_bytes = capacity_bytes;
  if (volume.capacity_bytes == 0) {
    // Made without a capacity: nothing limits it, and imposing one now would be a shrink.
    return result;
  }
  if (capacity_bytes < volume.capacity_bytes) {
    return absl::OutOfRangeError(absl::StrCat("volume ", volume.id, " has ", volume.capacity_bytes,
                                              " bytes; it cannot shrink to ", capacity_bytes));
  }
  // Checked and recorded under one lock: the growth is a new promise (a retry of an expansion
  // whose record already says so promises nothing new).
  absl::MutexLock capacity_lock(&capacity_mutex_);
  if (capacity_bytes > volume.capacity_bytes) {
    ASSIGN_OR_RETURN(StoreCapacity store, ReadStoreCapacity());
    RETURN_IF_ERROR(CheckProvisionable(
        store, options_.overprovision_ratio, capacity_bytes - volume.capacity_bytes,
        absl::StrCat("growing volume ", volume.id, " by ", capacity_bytes - volume.capacity_bytes,
                     " bytes")));
  }
  ASSIGN_OR_RETURN(bool grown, driver_->Expand(volume.active_id, capacity_bytes, mount_point));
  result.node_expansion_required = !grown;
  if (capacity_bytes == volume.capacity_bytes) return result;
  CrashPoint("expand-after-driver");
  const int64_t before = volume.capacity_bytes;
  volume.capacity_bytes = capacity_bytes;
  RETURN_IF_ERROR(Relabel(volume));
  RETURN_IF_ERROR(metadata_->PutVolume(volume));
  LogInfo("volume expanded", {{"volume", volume.id},
                              {"from_bytes", std::to_string(before)},
                              {"to_bytes", std::to_string(capacity_bytes)},
                              {"filesystem", grown ? "grown" : "grows when staged"}});
  return result;
}

}  // namespace strata::node
