// VolumeManager's commits: snapshots, clones' implicit commits, rollback, flattening.
// The design and its crash-safety argument are in volume_manager.h and docs/snapshots.md.

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <ctime>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/crash_point.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "drivers/copy_tree.h"
#include "node/images/digest.h"
#include "node/paths.h"
#include "node/volume_manager.h"

namespace strata::node {
namespace {

int64_t NowUnix() { return static_cast<int64_t>(std::time(nullptr)); }

// "commit layer=<chain id> remove=<driver id>,<driver id>": what to undo if a commit or a
// rollback dies before its final transaction.
std::string PendingCommit(const std::string& chain_id, const std::vector<std::string>& remove) {
  std::string text = absl::StrCat("commit layer=", chain_id, " remove=");
  for (size_t i = 0; i < remove.size(); ++i) absl::StrAppend(&text, i ? "," : "", remove[i]);
  return text;
}

// Copies the tree at `source` into the existing, empty directory `destination` (a driver's
// write target, which cannot be replaced): copy beside, then move the children in.
absl::Status CopyInto(const std::string& source, const std::string& destination) {
  const std::string staging = destination + "/.strata-flatten";
  RETURN_IF_ERROR(drivers::CopyTree(source, staging));
  DIR* dir = opendir(staging.c_str());
  if (dir == nullptr) return absl::InternalError(absl::StrCat("opendir ", staging));
  absl::Status status;
  while (dirent* entry = readdir(dir)) {
    std::string name = entry->d_name;
    if (name == "." || name == "..") continue;
    if (rename((staging + "/" + name).c_str(), (destination + "/" + name).c_str()) != 0) {
      status =
          absl::InternalError(absl::StrCat("rename into ", destination, ": ", strerror(errno)));
      break;
    }
  }
  closedir(dir);
  RETURN_IF_ERROR(status);
  struct stat st;
  if (lstat(staging.c_str(), &st) == 0) {
    (void)lchown(destination.c_str(), st.st_uid, st.st_gid);
    (void)chmod(destination.c_str(), st.st_mode & 07777);
  }
  if (rmdir(staging.c_str()) != 0)
    return absl::InternalError(absl::StrCat("rmdir ", staging, ": ", strerror(errno)));
  return absl::OkStatus();
}

}  // namespace

int VolumeManager::FlattenLimit() const {
  int driver_limit = driver_->limits().max_chain_depth;
  // Drivers whose layers are full trees mount only the top layer: depth costs them nothing.
  if (driver_->limits().layers_are_full_trees) return driver_limit;
  if (options_.flatten_depth <= 0) return driver_limit;
  return std::min(options_.flatten_depth, driver_limit);
}

absl::Status VolumeManager::WriteFlattenedLayer(const VolumeRecord& volume,
                                                const drivers::Chain& parents,
                                                const std::string& layer_id) {
  // The merged tree: the live mount of a staged volume, or a private mount of an unmounted one.
  std::string merged = volume.staging_path;
  std::string private_mount;
  if (volume.state != kVolumeStaged) {
    ASSIGN_OR_RETURN(std::vector<sys::Mount> mounts, driver_->Mounts(volume.active_id, parents));
    private_mount = absl::StrCat(options_.scratch_dir, "/flatten-", volume.active_id);
    RETURN_IF_ERROR(MakeDirs(private_mount, 0700));
    RETURN_IF_ERROR(mounter_->MountAt(mounts.at(0), private_mount));
    merged = private_mount;
  }
  ASSIGN_OR_RETURN(std::string work_id, metadata_->NewDriverId());
  Labels* labels = layers_->labels();
  absl::Status status = labels != nullptr ? labels->PutScratch(work_id) : absl::OkStatus();
  if (status.ok()) status = driver_->Prepare(work_id, {}, drivers::PrepareOptions{});
  if (status.ok()) {
    absl::StatusOr<drivers::ApplyTarget> target = driver_->DirectWriteTarget(work_id);
    if (target.ok()) {
      status = CopyInto(merged, target->directory);
    } else {
      // Drivers without a direct write target (devmapper): mount the new layer and copy in.
      std::string into = absl::StrCat(options_.scratch_dir, "/flatten-into-", work_id);
      absl::StatusOr<std::vector<sys::Mount>> mounts = driver_->Mounts(work_id, {});
      status = mounts.ok() ? MakeDirs(into, 0700) : mounts.status();
      if (status.ok()) status = mounter_->MountAt(mounts->at(0), into);
      if (status.ok()) {
        status = CopyInto(merged, into);
        absl::Status unmounted = mounter_->Unmount(into);
        if (status.ok()) status = unmounted;
      }
      (void)RemoveTree(into);
    }
  }
  if (status.ok()) {
    status = driver_->Commit(layer_id, work_id, {}, drivers::CommitMode::kConsume);
  }
  if (driver_->Remove(work_id).ok() && labels != nullptr) (void)labels->RemoveContent(work_id);
  if (!private_mount.empty()) {
    absl::Status unmounted = mounter_->Unmount(private_mount);
    (void)RemoveTree(private_mount);
    if (status.ok()) status = unmounted;
  }
  return status;
}

absl::StatusOr<CommitResult> VolumeManager::CommitVolume(
    VolumeRecord volume, const std::string& comment, const std::optional<SnapshotRecord>& snapshot,
    std::optional<ImageRecord> tag) {
  auto started = std::chrono::steady_clock::now();
  // Layers must not be collected while we build on them.
  auto pin = layers_->PinLayers();
  ASSIGN_OR_RETURN(drivers::Chain parents, layers_->DriverChain(volume.chain_id));
  int parent_depth = static_cast<int>(parents.size());
  bool flatten = parent_depth + 1 > FlattenLimit();
  bool rebase = volume.state != kVolumeStaged;

  CommitResult result;
  result.flattened = flatten;
  result.depth = flatten ? 1 : parent_depth + 1;
  // Committed layers have no DiffID until they are exported (stratactl save computes it); their
  // ChainID is unique per commit so two commits with equal content stay distinct layers.
  result.chain_id = images::Sha256Digest(
      absl::StrCat("strata-commit ", volume.chain_id, " ", volume.id, " ", RandomHex(16)));
  ASSIGN_OR_RETURN(std::string layer_id, metadata_->NewDriverId());
  std::string new_active;
  if (rebase) {
    ASSIGN_OR_RETURN(new_active, metadata_->NewDriverId());
  }
  LayerRecord layer{
      result.chain_id, "",     flatten ? "" : volume.chain_id, layer_id, 0, NowUnix(), "creating",
      result.depth,    comment};
  // Intent: the layer row and what to remove if we die before the end.
  volume.pending =
      PendingCommit(result.chain_id, rebase ? std::vector<std::string>{layer_id, new_active}
                                            : std::vector<std::string>{layer_id});
  RETURN_IF_ERROR(metadata_->InTransaction([&]() -> absl::Status {
    RETURN_IF_ERROR(metadata_->PutLayer(layer));
    return metadata_->PutVolume(volume);
  }));
  CrashPoint("commit-after-intent");

  absl::Status status =
      flatten ? WriteFlattenedLayer(volume, parents, layer_id)
              : driver_->Commit(layer_id, volume.active_id, parents, drivers::CommitMode::kKeep);
  CrashPoint("commit-after-layer");
  drivers::Chain new_chain = flatten ? drivers::Chain{} : parents;
  new_chain.insert(new_chain.begin(), layer_id);
  if (status.ok() && rebase) {
    drivers::PrepareOptions prepare;
    prepare.capacity_bytes = volume.capacity_bytes;
    status = driver_->Prepare(new_active, new_chain, prepare);
  }
  absl::StatusOr<drivers::Usage> usage =
      status.ok() ? driver_->GetUsage(layer_id) : absl::StatusOr<drivers::Usage>(status);
  if (!usage.ok()) {
    LogWarning("commit failed; undoing it",
               {{"volume", volume.id}, {"error", usage.status().ToString()}});
    absl::Status undone = RecoverPendingCommit(volume);
    if (!undone.ok()) {
      LogError("could not undo a failed commit; start-up recovery will retry",
               {{"volume", volume.id}, {"error", undone.ToString()}});
    }
    return usage.status();
  }
  result.size_bytes = usage->bytes;
  layer.size_bytes = usage->bytes;
  layer.state = "ready";
  std::string old_active = volume.active_id;
  std::string old_chain = volume.chain_id;
  if (rebase) {
    volume.active_id = new_active;
    volume.chain_id = result.chain_id;
  }
  volume.pending = "";
  // Labels before the outcome: a lost database can re-adopt the layer, the rebased volume (its
  // newest writable layer wins over the old one) and the snapshot or tag naming the layer.
  if (Labels* labels = layers_->labels()) {
    absl::Status labelled = labels->PutLayer(layer);
    if (labelled.ok() && rebase) labelled = Relabel(volume);
    if (labelled.ok() && snapshot) {
      SnapshotRecord ready = *snapshot;
      ready.chain_id = result.chain_id;
      ready.size_bytes = result.size_bytes;
      ready.state = "ready";
      labelled = labels->PutSnapshot(ready);
    }
    if (labelled.ok() && tag) {
      ImageRecord named = *tag;
      named.chain_id = result.chain_id;
      labelled = labels->PutImage(named);
    }
    if (!labelled.ok()) {
      VolumeRecord undo = volume;
      undo.active_id = old_active;
      undo.chain_id = old_chain;
      undo.pending =
          PendingCommit(result.chain_id, rebase ? std::vector<std::string>{layer_id, new_active}
                                                : std::vector<std::string>{layer_id});
      (void)RecoverPendingCommit(undo);
      return labelled;
    }
  }
  // The outcome, all at once: the layer, the volume's new chain, and the snapshot naming it.
  RETURN_IF_ERROR(metadata_->InTransaction([&]() -> absl::Status {
    RETURN_IF_ERROR(metadata_->PutLayer(layer));
    RETURN_IF_ERROR(metadata_->PutVolume(volume));
    if (snapshot) {
      SnapshotRecord ready = *snapshot;
      ready.chain_id = result.chain_id;
      ready.size_bytes = result.size_bytes;
      ready.state = "ready";
      RETURN_IF_ERROR(metadata_->PutSnapshot(ready));
    }
    if (tag) {
      tag->chain_id = result.chain_id;
      RETURN_IF_ERROR(metadata_->PutImage(*tag));
    }
    return absl::OkStatus();
  }));
  CrashPoint("commit-after-outcome");
  // The old writable layer's content now lives in the new layer; a crash before this removal
  // leaves an id no record knows, which recovery removes.
  if (rebase && driver_->Remove(old_active).ok() && layers_->labels() != nullptr)
    (void)layers_->labels()->RemoveContent(old_active);

  std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - started;
  if (metrics_ != nullptr) {
    metrics_->ObserveCommit(std::string(driver_->name()), elapsed.count(), result.size_bytes);
    metrics_->ObserveChainDepth(result.depth);
  }
  LogInfo("volume committed", {{"volume", volume.id},
                               {"chain_id", result.chain_id},
                               {"bytes", std::to_string(result.size_bytes)},
                               {"depth", std::to_string(result.depth)},
                               {"flattened", flatten ? "true" : "false"},
                               {"rebased", rebase ? "true" : "false"},
                               {"seconds", absl::StrCat(elapsed.count())}});
  return result;
}

absl::Status VolumeManager::RecoverPendingCommit(VolumeRecord volume) {
  // pending = "commit layer=<chain id> remove=<id>,<id>"
  std::string chain_id;
  std::vector<std::string> remove;
  for (absl::string_view field : absl::StrSplit(volume.pending, ' ')) {
    if (absl::StartsWith(field, "layer=")) chain_id = std::string(field.substr(6));
    if (absl::StartsWith(field, "remove="))
      for (absl::string_view id : absl::StrSplit(field.substr(7), ',', absl::SkipEmpty()))
        remove.emplace_back(id);
  }
  LogWarning("undoing an interrupted commit",
             {{"volume", volume.id}, {"layer", chain_id}, {"pending", volume.pending}});
  volume.pending = "";
  // Data before metadata: on a full disk the half-made copy is what holds the space, and the
  // metadata write below may need some of it. The records still say "creating" meanwhile, so a
  // crash here only repeats this undo.
  for (const std::string& id : remove) {
    if (id == volume.active_id) continue;  // never the writable layer the volume uses
    RETURN_IF_ERROR(driver_->Remove(id));
    if (layers_->labels() != nullptr) RETURN_IF_ERROR(layers_->labels()->RemoveContent(id));
  }
  metadata_->MakeRoomForDelete();
  return metadata_->InTransaction([&]() -> absl::Status {
    if (!chain_id.empty()) {
      ASSIGN_OR_RETURN(std::optional<LayerRecord> layer, metadata_->GetLayer(chain_id));
      if (layer && layer->state != "ready") RETURN_IF_ERROR(metadata_->DeleteLayer(chain_id));
    }
    return metadata_->PutVolume(volume);
  });
}

absl::StatusOr<CommitResult> VolumeManager::Commit(const std::string& volume_id,
                                                   const std::string& comment,
                                                   std::optional<ImageRecord> tag) {
  ASSIGN_OR_RETURN(VolumeRecord volume, MustGet(volume_id));
  ASSIGN_OR_RETURN(CommitResult result,
                   CommitVolume(volume, comment, std::nullopt, std::move(tag)));
  return result;
}

absl::StatusOr<SnapshotRecord> VolumeManager::CreateSnapshot(const std::string& volume_id,
                                                             const std::string& name) {
  ASSIGN_OR_RETURN(std::optional<SnapshotRecord> existing, metadata_->GetSnapshotByName(name));
  if (existing) {
    if (existing->source_volume_id != volume_id) {
      return absl::AlreadyExistsError(absl::StrCat(
          "snapshot \"", name, "\" already exists for volume ", existing->source_volume_id));
    }
    return *existing;
  }
  ASSIGN_OR_RETURN(VolumeRecord volume, MustGet(volume_id));
  SnapshotRecord snapshot;
  snapshot.id = absl::StrCat("snap-", RandomHex(8));
  snapshot.name = name;
  snapshot.source_volume_id = volume_id;
  snapshot.created_unix = NowUnix();
  ASSIGN_OR_RETURN(
      CommitResult result,
      CommitVolume(volume, absl::StrCat("snapshot ", name, " of volume ", volume_id), snapshot));
  snapshot.chain_id = result.chain_id;
  snapshot.size_bytes = result.size_bytes;
  snapshot.state = "ready";
  LogInfo("snapshot created", {{"snapshot", snapshot.id},
                               {"name", name},
                               {"volume", volume_id},
                               {"chain_id", snapshot.chain_id}});
  return snapshot;
}

absl::Status VolumeManager::DeleteSnapshot(const std::string& snapshot_id) {
  ASSIGN_OR_RETURN(std::optional<SnapshotRecord> snapshot, metadata_->GetSnapshot(snapshot_id));
  if (!snapshot) return absl::OkStatus();
  metadata_->MakeRoomForDelete();  // deletes free space, so they must work on a full disk
  RETURN_IF_ERROR(metadata_->DeleteSnapshot(snapshot_id));
  if (layers_->labels() != nullptr) RETURN_IF_ERROR(layers_->labels()->RemoveSnapshot(snapshot_id));
  // Free what only this snapshot kept alive (its commit layers); shared layers stay.
  ASSIGN_OR_RETURN(GcResult collected, layers_->CollectUnreferencedCommits());
  LogInfo("snapshot deleted", {{"snapshot", snapshot_id},
                               {"layers_freed", std::to_string(collected.removed_chain_ids.size())},
                               {"bytes_freed", std::to_string(collected.bytes_freed)}});
  metadata_->RestoreReserve();
  return absl::OkStatus();
}

absl::StatusOr<SnapshotRecord> VolumeManager::GetSnapshot(const std::string& snapshot_id) {
  ASSIGN_OR_RETURN(std::optional<SnapshotRecord> snapshot, metadata_->GetSnapshot(snapshot_id));
  if (!snapshot) return absl::NotFoundError(absl::StrCat("snapshot ", snapshot_id, " not found"));
  return *snapshot;
}

absl::StatusOr<std::vector<SnapshotRecord>> VolumeManager::ListSnapshots() {
  return metadata_->ListSnapshots();
}

absl::StatusOr<std::vector<SnapshotRecord>> VolumeManager::ListReadySnapshotsFrom(
    const std::string& from_id, const std::string& source_volume_id, int64_t limit) {
  return metadata_->ListSnapshotsFrom(from_id, "ready", source_volume_id, limit);
}

absl::StatusOr<SnapshotRecord> VolumeManager::Rollback(const std::string& volume_id,
                                                       const std::string& snapshot_id) {
  ASSIGN_OR_RETURN(VolumeRecord volume, MustGet(volume_id));
  ASSIGN_OR_RETURN(SnapshotRecord target, GetSnapshot(snapshot_id));
  ASSIGN_OR_RETURN(std::vector<PublicationRecord> publications,
                   metadata_->ListPublications(volume_id));
  if (volume.state == kVolumeStaged || !publications.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "volume ", volume_id, " is in use (staged or published); stop its pods first"));
  }
  // Keep what the volume holds now, so the rollback can be undone.
  ASSIGN_OR_RETURN(SnapshotRecord kept,
                   CreateSnapshot(volume_id, absl::StrCat("before-rollback-", volume_id, "-",
                                                          NowUnix(), "-", RandomHex(2))));
  ASSIGN_OR_RETURN(volume, MustGet(volume_id));  // the commit rebased it
  auto pin = layers_->PinLayers();
  ASSIGN_OR_RETURN(drivers::Chain chain, layers_->DriverChain(target.chain_id));
  ASSIGN_OR_RETURN(std::string new_active, metadata_->NewDriverId());
  volume.pending = PendingCommit("", {new_active});
  RETURN_IF_ERROR(metadata_->PutVolume(volume));
  drivers::PrepareOptions prepare;
  prepare.capacity_bytes = volume.capacity_bytes;
  absl::Status prepared = driver_->Prepare(new_active, chain, prepare);
  if (!prepared.ok()) {
    (void)RecoverPendingCommit(volume);
    return prepared;
  }
  std::string old_active = volume.active_id;
  std::string old_chain = volume.chain_id;
  volume.active_id = new_active;
  volume.chain_id = target.chain_id;
  volume.pending = "";
  absl::Status labelled = Relabel(volume);
  if (!labelled.ok()) {
    volume.active_id = old_active;
    volume.chain_id = old_chain;
    volume.pending = PendingCommit("", {new_active});
    (void)RecoverPendingCommit(volume);
    return labelled;
  }
  RETURN_IF_ERROR(metadata_->PutVolume(volume));
  // Empty: the kept snapshot holds its content.
  if (driver_->Remove(old_active).ok() && layers_->labels() != nullptr)
    (void)layers_->labels()->RemoveContent(old_active);
  LogInfo("volume rolled back",
          {{"volume", volume_id}, {"snapshot", snapshot_id}, {"previous_state_kept_as", kept.id}});
  return kept;
}

}  // namespace strata::node
