// VolumeManager's consistency check (stratactl check) and the cheap start-up part of it: does
// the driver hold what the metadata says, does the metadata know what the driver holds, and
// does a record own every mount of the store's content.

#include <algorithm>
#include <cerrno>
#include <set>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "node/volume_manager.h"

namespace strata::node {
namespace {

bool Under(const std::string& path, const std::string& dir) {
  return path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 &&
         path[dir.size()] == '/';
}

}  // namespace

absl::StatusOr<std::string> VolumeManager::MissingContent(const VolumeRecord& volume) {
  std::vector<LayerRecord> chain;
  return MissingContent(volume, &chain);
}

absl::StatusOr<std::string> VolumeManager::MissingContent(const VolumeRecord& volume,
                                                          std::vector<LayerRecord>* chain_out) {
  std::vector<std::string> missing;
  chain_out->clear();
  if (!volume.chain_id.empty()) {
    absl::StatusOr<std::vector<LayerRecord>> chain = metadata_->ChainOf(volume.chain_id);
    if (absl::IsNotFound(chain.status())) {
      return absl::StrCat("the metadata lacks part of the chain of layer ", volume.chain_id);
    }
    RETURN_IF_ERROR(chain.status());
    *chain_out = *std::move(chain);
    for (const LayerRecord& layer : *chain_out) {
      ASSIGN_OR_RETURN(bool exists, driver_->Exists(layer.driver_id));
      if (!exists) {
        missing.push_back(absl::StrCat("layer ", layer.chain_id, " (", std::string(driver_->name()),
                                       " id ", layer.driver_id, ")"));
      }
    }
  }
  ASSIGN_OR_RETURN(bool active, driver_->Exists(volume.active_id));
  if (!active) {
    missing.push_back(absl::StrCat("writable layer (", std::string(driver_->name()), " id ",
                                   volume.active_id, ")"));
  }
  if (missing.empty()) return std::string();
  return absl::StrCat("missing on disk: ", absl::StrJoin(missing, ", "),
                      "; see docs/operations.md (a layer folder is missing)");
}

void VolumeManager::SetAbnormal(const std::string& volume_id, const std::string& message) {
  std::lock_guard<std::mutex> lock(abnormal_mutex_);
  if (message.empty())
    abnormal_.erase(volume_id);
  else
    abnormal_[volume_id] = message;
  if (metrics_ != nullptr) metrics_->SetVolumesAbnormal(static_cast<int64_t>(abnormal_.size()));
}

std::map<std::string, std::string> VolumeManager::AbnormalVolumes() {
  std::lock_guard<std::mutex> lock(abnormal_mutex_);
  return abnormal_;
}

absl::Status VolumeManager::CheckVolumesContent() {
  ASSIGN_OR_RETURN(std::vector<VolumeRecord> volumes, List());
  for (const VolumeRecord& volume : volumes) {
    ASSIGN_OR_RETURN(std::string missing, MissingContent(volume));
    if (!missing.empty()) {
      LogWarning("volume is abnormal: its content is missing on disk", {{"volume", volume.id},
                                                                        {"name", volume.name},
                                                                        {"state", volume.state},
                                                                        {"problem", missing}});
    }
    SetAbnormal(volume.id, missing);
  }
  return absl::OkStatus();
}

absl::StatusOr<CheckReport> VolumeManager::Check(bool repair, VolumeLocks* locks) {
  CheckReport report;
  auto add = [&](std::string kind, std::string subject, std::string detail, std::string action,
                 bool repaired = false) {
    report.findings.push_back(CheckFinding{std::move(kind), std::move(subject), std::move(detail),
                                           std::move(action), repaired});
  };
  // Mounts and driver content are read before the records: every call records its intent
  // before it mounts or writes, so whatever exists now is in the records read after. (What is
  // removed in between is looked at again before it is reported.)
  ASSIGN_OR_RETURN(std::vector<sys::MountPoint> mounts, mounter_->List());
  ASSIGN_OR_RETURN(std::vector<std::string> stored, driver_->Walk());
  report.driver_entries = static_cast<int>(stored.size());
  ASSIGN_OR_RETURN(std::vector<LayerRecord> layers, metadata_->ListLayers());
  ASSIGN_OR_RETURN(std::vector<VolumeRecord> volumes, metadata_->ListVolumes());
  ASSIGN_OR_RETURN(std::vector<SnapshotRecord> snapshots, metadata_->ListSnapshots());
  report.layers = static_cast<int>(layers.size());
  report.volumes = static_cast<int>(volumes.size());

  std::set<std::string> known_ids;
  for (const LayerRecord& layer : layers) known_ids.insert(layer.driver_id);
  std::set<std::string> owned_mounts;  // staging paths and publication targets on record
  for (const VolumeRecord& volume : volumes) {
    known_ids.insert(volume.active_id);
    if (!volume.staging_path.empty()) owned_mounts.insert(volume.staging_path);
    ASSIGN_OR_RETURN(std::vector<PublicationRecord> publications,
                     metadata_->ListPublications(volume.id));
    for (const PublicationRecord& publication : publications)
      owned_mounts.insert(publication.target_path);
  }

  // 1. Layers the metadata calls ready whose content is gone.
  for (const LayerRecord& layer : layers) {
    if (layer.state != "ready") {
      add("half-made", layer.chain_id,
          absl::StrCat("layer record left \"", layer.state, "\" (", std::string(driver_->name()),
                       " id ", layer.driver_id,
                       "): an import or commit in flight, or one a crash cut"),
          "none needed while a call runs; else a restart removes it (start-up recovery)");
      continue;
    }
    ASSIGN_OR_RETURN(bool exists, driver_->Exists(layer.driver_id));
    if (exists) continue;
    add("missing-layer", layer.chain_id,
        absl::StrCat("ready layer's content is missing (", std::string(driver_->name()), " id ",
                     layer.driver_id, ")"),
        "not repairable here: restore the folder, or re-import the image (volumes on it "
        "cannot stage)");
  }
  for (const SnapshotRecord& snapshot : snapshots) {
    if (snapshot.state == "ready") continue;
    add("half-made", snapshot.id,
        absl::StrCat("snapshot \"", snapshot.name, "\" left \"", snapshot.state, "\""),
        "none needed while CreateSnapshot runs; else a restart resolves it");
  }

  // 2. Volumes: their chain and writable layer, and intents nobody is working on.
  for (const VolumeRecord& volume : volumes) {
    bool half_made = volume.state == kVolumeCreating || volume.state == kVolumeDeleting;
    if (!half_made) {
      ASSIGN_OR_RETURN(std::string missing, MissingContent(volume));
      SetAbnormal(volume.id, missing);
      if (!missing.empty()) {
        ASSIGN_OR_RETURN(bool active, driver_->Exists(volume.active_id));
        add(active ? "missing-layer" : "missing-writable-layer", volume.id, missing,
            active ? "not repairable here: restore the missing layer; the volume cannot stage"
                   : "not repairable here: the volume's own data is gone; restore it from a "
                     "backup of the store, or delete the volume");
      }
    }
    if (!half_made && volume.pending.empty()) continue;
    // A call that holds the volume's lock is working on it: its intent is no problem.
    absl::StatusOr<VolumeLocks::Lock> lock =
        locks != nullptr ? locks->TryAcquire(volume.id, "check")
                         : absl::StatusOr<VolumeLocks::Lock>(absl::AbortedError("no locks"));
    if (locks != nullptr && !lock.ok()) continue;
    absl::StatusOr<VolumeLocks::Lock> name_lock =
        locks != nullptr ? locks->TryAcquire("name/" + volume.name, "check")
                         : absl::StatusOr<VolumeLocks::Lock>(absl::AbortedError("no locks"));
    if (locks != nullptr && !name_lock.ok()) continue;
    ASSIGN_OR_RETURN(std::optional<VolumeRecord> current, metadata_->GetVolume(volume.id));
    if (!current) continue;  // finished meanwhile
    std::string detail =
        half_made ? absl::StrCat("volume record left \"", current->state, "\"")
                  : absl::StrCat("volume record has an unfinished \"", current->pending, "\"");
    if (!half_made) {
      add("half-made", volume.id, detail, "a restart resolves it against the mount table");
      continue;
    }
    ASSIGN_OR_RETURN(bool active, driver_->Exists(current->active_id));
    if (active) {
      add("half-made", volume.id,
          absl::StrCat(detail, "; its writable layer (", std::string(driver_->name()), " id ",
                       current->active_id, ") exists"),
          "a restart finishes it (start-up recovery)");
      continue;
    }
    // Only an intent is left: no content, no mount to lose. Dropping the record is safe.
    if (!repair || locks == nullptr) {
      add("half-made", volume.id, absl::StrCat(detail, "; its writable layer is already gone"),
          "--repair drops the record");
      continue;
    }
    ASSIGN_OR_RETURN(std::vector<PublicationRecord> publications,
                     metadata_->ListPublications(volume.id));
    if (!publications.empty()) {
      add("half-made", volume.id, absl::StrCat(detail, "; it still has publications on record"),
          "a restart resolves it");
      continue;
    }
    absl::Status dropped = metadata_->DeleteVolume(volume.id);
    if (dropped.ok()) {
      SetAbnormal(volume.id, "");
      LogWarning("check: dropped a half-made volume record whose writable layer was gone",
                 {{"volume", volume.id}, {"state", current->state}});
    }
    add("half-made", volume.id, absl::StrCat(detail, "; its writable layer is already gone"),
        dropped.ok() ? "record dropped" : absl::StrCat("drop failed: ", dropped.ToString()),
        dropped.ok());
  }

  // 3. Content no record knows. Never removed here: start-up moves it to quarantine.
  for (const std::string& id : stored) {
    if (known_ids.count(id)) continue;
    ASSIGN_OR_RETURN(bool still_there, driver_->Exists(id));
    if (!still_there) continue;  // removed meanwhile (a gc or delete that had started)
    add("unknown-content", id,
        absl::StrCat(std::string(driver_->name()),
                     " content that no layer or volume record refers to"),
        "left in place (never deleted by check); the next start-up moves it to <root>/quarantine "
        "(stratactl quarantine list)");
  }

  // 4. Mounts no record owns: any under the store's volumes folder, and any other mount of the
  // store's content (an overlay naming the store in its options). export/ and tmp/ hold the
  // private mounts of calls in flight (save, diff, flatten): those are not looked at.
  const std::string root = options_.root;
  for (const sys::MountPoint& mount : mounts) {
    bool in_volumes_dir = Under(mount.target, options_.volumes_dir);
    bool of_store = mount.fs_type == "overlay" && absl::StrContains(mount.options, root + "/") &&
                    !Under(mount.target, root);
    if (!in_volumes_dir && !of_store) continue;
    ++report.mounts;
    if (owned_mounts.count(mount.target)) continue;
    if (!in_volumes_dir) {
      add("unrecorded-mount", mount.target,
          absl::StrCat(mount.fs_type, " mount of the store's content that no volume record owns"),
          "outside the store: not Strata's to unmount; unmount it if no pod uses it");
      continue;
    }
    std::string action = "--repair unmounts it when nothing uses it";
    bool repaired = false;
    if (repair && locks != nullptr) {
      std::string name = mount.target.substr(options_.volumes_dir.size() + 1);
      name = name.substr(0, name.find('/'));
      absl::StatusOr<VolumeLocks::Lock> lock = locks->TryAcquire(name, "check");
      if (!lock.ok()) {
        action = "volume busy with a call: left; run check again";
      } else {
        // Read the records again under the lock: a stage may have recorded it meanwhile.
        bool owned = false;
        ASSIGN_OR_RETURN(std::optional<VolumeRecord> volume, metadata_->GetVolume(name));
        if (volume) {
          owned = volume->staging_path == mount.target;
          ASSIGN_OR_RETURN(std::vector<PublicationRecord> publications,
                           metadata_->ListPublications(name));
          for (const PublicationRecord& publication : publications)
            owned = owned || publication.target_path == mount.target;
        }
        if (owned) continue;
        // A plain unmount fails with EBUSY while a file is open or something is mounted
        // below: a mount in use stays. The content behind it stays on disk either way.
        absl::Status unmounted = mounter_->Unmount(mount.target, /*detach=*/false);
        if (unmounted.ok()) {
          repaired = true;
          action = "unmounted (no record owned it; its content stays on disk)";
          LogWarning("check: unmounted a mount no record owns", {{"target", mount.target}});
        } else {
          action = absl::StrCat("left mounted: ", unmounted.message());
        }
      }
    }
    add("unrecorded-mount", mount.target,
        absl::StrCat(mount.fs_type, " mount under the store that no volume record owns"), action,
        repaired);
  }
  return report;
}

}  // namespace strata::node
