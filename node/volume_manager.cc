#include "node/volume_manager.h"

#include <sys/statvfs.h>
#include <unistd.h>

#include <chrono>
#include <ctime>
#include <map>
#include <optional>
#include <set>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/crash_point.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "node/paths.h"

namespace strata::node {
namespace {

int64_t NowUnix() { return static_cast<int64_t>(std::time(nullptr)); }

// Times one mount-table change for strata_mount_operation_duration_seconds.
class MountTimer {
 public:
  MountTimer(metrics::Metrics* metrics, std::string operation)
      : metrics_(metrics),
        operation_(std::move(operation)),
        start_(std::chrono::steady_clock::now()) {}
  ~MountTimer() {
    if (metrics_ == nullptr) return;
    std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start_;
    metrics_->ObserveMount(operation_, elapsed.count());
  }

 private:
  metrics::Metrics* metrics_;
  std::string operation_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace

VolumeManager::VolumeManager(Metadata* metadata, LayerStore* layers, drivers::Driver* driver,
                             sys::Mounter* mounter, metrics::Metrics* metrics,
                             VolumeManagerOptions options)
    : metadata_(metadata),
      layers_(layers),
      driver_(driver),
      mounter_(mounter),
      metrics_(metrics),
      options_(std::move(options)) {}

absl::StatusOr<VolumeRecord> VolumeManager::MustGet(const std::string& volume_id) {
  ASSIGN_OR_RETURN(std::optional<VolumeRecord> volume, metadata_->GetVolume(volume_id));
  if (!volume || volume->state == kVolumeDeleting || volume->state == kVolumeCreating) {
    return absl::NotFoundError(absl::StrCat("volume ", volume_id, " does not exist on this node"));
  }
  return *volume;
}

absl::StatusOr<VolumeRecord> VolumeManager::Get(const std::string& volume_id) {
  return MustGet(volume_id);
}

absl::StatusOr<std::vector<VolumeRecord>> VolumeManager::List() {
  ASSIGN_OR_RETURN(std::vector<VolumeRecord> all, metadata_->ListVolumes());
  std::vector<VolumeRecord> visible;
  for (VolumeRecord& volume : all)
    if (volume.state != kVolumeCreating && volume.state != kVolumeDeleting)
      visible.push_back(std::move(volume));
  return visible;
}

absl::StatusOr<std::vector<VolumeRecord>> VolumeManager::ListFrom(const std::string& from_id,
                                                                  int64_t limit) {
  return metadata_->ListVolumesFrom(from_id, {kVolumeReady, kVolumeStaged}, limit);
}

absl::StatusOr<std::vector<PublicationRecord>> VolumeManager::Publications(
    const std::string& volume_id) {
  return metadata_->ListPublications(volume_id);
}

absl::Status VolumeManager::CheckOutsideRoot(const std::string& path, const std::string& field) {
  if (ResolvesWithin(path, options_.root)) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " ", path, " lies inside Strata's store ", options_.root));
  }
  return absl::OkStatus();
}

absl::StatusOr<VolumeRecord> VolumeManager::Create(const CreateVolumeParams& params) {
  ASSIGN_OR_RETURN(std::optional<VolumeRecord> existing, metadata_->GetVolumeByName(params.name));
  if (existing && existing->state != kVolumeCreating && existing->state != kVolumeDeleting) {
    if (existing->request_fingerprint != params.fingerprint) {
      return absl::AlreadyExistsError(absl::StrCat("volume \"", params.name,
                                                   "\" already exists with other parameters (",
                                                   existing->request_fingerprint, ")"));
    }
    return *existing;
  }
  if (existing) RETURN_IF_ERROR(RemoveVolume(*existing));  // a half-made earlier attempt

  if (params.require_enforced_capacity && params.capacity_bytes > 0 &&
      !driver_->limits().enforces_capacity) {
    return absl::FailedPreconditionError(absl::StrCat(
        "volume ", params.name,
        ": the StorageClass demands enforced capacity (enforceCapacity: "
        "\"true\") but the ",
        std::string(driver_->name()),
        " store on this node only records capacity (overlay and vfs enforce it with project "
        "quotas: xfs mounted with prjquota, or ext4 with -O quota,project mounted with "
        "prjquota; btrfs with quotas enabled; devmapper always); see the plugin's start-up log"));
  }
  if (params.capacity_bytes > 0) {
    // Early, before a clone commits its source: a request that cannot fit changes nothing.
    // MakeVolume checks again under the lock, where the promise is recorded.
    ASSIGN_OR_RETURN(StoreCapacity store, ReadStoreCapacity());
    RETURN_IF_ERROR(CheckProvisionable(
        store, options_.overprovision_ratio, params.capacity_bytes,
        absl::StrCat("volume ", params.name, " of ", params.capacity_bytes, " bytes")));
  }
  std::string chain_id;
  if (!params.source_volume_id.empty()) {
    // A clone starts on a commit of the source's current state; the source keeps working.
    ASSIGN_OR_RETURN(VolumeRecord source, MustGet(params.source_volume_id));
    if (params.capacity_bytes > 0 && source.capacity_bytes > params.capacity_bytes) {
      return absl::OutOfRangeError(absl::StrCat("capacity ", params.capacity_bytes,
                                                " is smaller than the source volume's ",
                                                source.capacity_bytes));
    }
    ASSIGN_OR_RETURN(CommitResult commit,
                     CommitVolume(source, "clone source for volume " + params.name, std::nullopt));
    chain_id = commit.chain_id;
  } else if (!params.source_snapshot_id.empty()) {
    ASSIGN_OR_RETURN(std::optional<SnapshotRecord> snapshot,
                     metadata_->GetSnapshot(params.source_snapshot_id));
    if (!snapshot) {
      return absl::NotFoundError(
          absl::StrCat("snapshot ", params.source_snapshot_id, " does not exist on this node"));
    }
    if (params.capacity_bytes > 0 && snapshot->size_bytes > params.capacity_bytes) {
      return absl::OutOfRangeError(absl::StrCat("capacity ", params.capacity_bytes,
                                                " is smaller than the snapshot's ",
                                                snapshot->size_bytes, " bytes"));
    }
    chain_id = snapshot->chain_id;
  } else if (!params.image.empty()) {
    ASSIGN_OR_RETURN(ImageRecord image, layers_->ResolveImage(params.image));
    chain_id = image.chain_id;
  }
  VolumeRecord volume;
  volume.id = absl::StrCat("vol-", RandomHex(8));
  volume.name = params.name;
  volume.request_fingerprint = params.fingerprint;
  volume.capacity_bytes = params.capacity_bytes;
  volume.image = params.image;
  volume.chain_id = chain_id;
  return MakeVolume(std::move(volume));
}

absl::StatusOr<StoreCapacity> VolumeManager::ReadStoreCapacity() {
  StoreCapacity store;
  store.thin_provisioned = driver_->limits().thin_provisioned;
  ASSIGN_OR_RETURN(store.free_bytes, driver_->FreeBytes());
  if (store.thin_provisioned) {
    ASSIGN_OR_RETURN(store.total_bytes, driver_->TotalBytes());
    ASSIGN_OR_RETURN(store.promised_bytes, metadata_->PromisedCapacityBytes());
  }
  return store;
}

bool VolumeManager::CapacityEnforced() const { return driver_->limits().enforces_capacity; }

absl::StatusOr<int64_t> VolumeManager::ProvisionableBytes() {
  ASSIGN_OR_RETURN(StoreCapacity store, ReadStoreCapacity());
  return node::ProvisionableBytes(store, options_.overprovision_ratio);
}

absl::StatusOr<VolumeRecord> VolumeManager::MakeVolume(VolumeRecord volume) {
  // From here until the volume row exists, gc must not take the chain away.
  auto pin = layers_->PinLayers();
  ASSIGN_OR_RETURN(drivers::Chain chain, layers_->DriverChain(volume.chain_id));
  ASSIGN_OR_RETURN(volume.active_id, metadata_->NewDriverId());
  volume.state = kVolumeCreating;
  volume.created_unix = NowUnix();
  {
    // The creating row is the promise: once it is written, the next check counts it.
    absl::MutexLock capacity_lock(&capacity_mutex_);
    if (volume.capacity_bytes > 0) {
      ASSIGN_OR_RETURN(StoreCapacity store, ReadStoreCapacity());
      RETURN_IF_ERROR(CheckProvisionable(
          store, options_.overprovision_ratio, volume.capacity_bytes,
          absl::StrCat("volume ", volume.name, " of ", volume.capacity_bytes, " bytes")));
    }
    // Intent before the driver acts: recovery removes a volume left "creating".
    RETURN_IF_ERROR(metadata_->PutVolume(volume));
  }
  CrashPoint("create-after-intent");
  drivers::PrepareOptions prepare;
  prepare.capacity_bytes = volume.capacity_bytes;
  absl::Status prepared = driver_->Prepare(volume.active_id, chain, prepare);
  if (!prepared.ok()) {
    (void)RemoveVolume(volume);
    return prepared;
  }
  CrashPoint("create-after-prepare");
  volume.state = kVolumeReady;
  // The label before the record says ready: a lost database can re-adopt the volume.
  absl::Status labelled = Relabel(volume);
  if (!labelled.ok()) {
    (void)RemoveVolume(volume);
    return labelled;
  }
  RETURN_IF_ERROR(metadata_->PutVolume(volume));
  if (metrics_ != nullptr) metrics_->ObserveChainDepth(static_cast<int>(chain.size()));
  LogInfo("volume created", {{"volume", volume.id},
                             {"name", volume.name},
                             {"image", volume.image},
                             {"ephemeral", volume.ephemeral ? "true" : "false"},
                             {"chain_depth", std::to_string(chain.size())},
                             {"driver_id", volume.active_id}});
  return volume;
}

absl::Status VolumeManager::RemoveVolume(VolumeRecord volume) {
  volume.state = kVolumeDeleting;
  volume.pending = "delete";
  RETURN_IF_ERROR(metadata_->PutVolume(volume));
  CrashPoint("delete-after-intent");
  Labels* labels = layers_->labels();
  if (labels != nullptr) RETURN_IF_ERROR(labels->MarkDeleting(volume.active_id));
  RETURN_IF_ERROR(driver_->Remove(volume.active_id));
  if (labels != nullptr) RETURN_IF_ERROR(labels->RemoveContent(volume.active_id));
  CrashPoint("delete-after-remove");
  RETURN_IF_ERROR(metadata_->DeleteVolume(volume.id));
  SetAbnormal(volume.id, "");
  return absl::OkStatus();
}

absl::Status VolumeManager::Relabel(const VolumeRecord& volume) {
  Labels* labels = layers_->labels();
  if (labels == nullptr) return absl::OkStatus();
  return labels->PutVolume(volume);
}

void VolumeManager::RecordMountsOrWarn(const VolumeRecord& volume) {
  // Where a volume is mounted only helps a re-adoption keep its mounts: never fail the call.
  Labels* labels = layers_->labels();
  if (labels == nullptr) return;
  absl::StatusOr<std::vector<PublicationRecord>> publications =
      metadata_->ListPublications(volume.id);
  absl::Status labelled = publications.status();
  if (labelled.ok()) labelled = labels->PutMounts(volume, *publications);
  if (!labelled.ok()) {
    LogWarning("could not record where a volume is mounted in its label",
               {{"volume", volume.id}, {"error", labelled.ToString()}});
  }
}

absl::Status VolumeManager::Delete(const std::string& volume_id) {
  ASSIGN_OR_RETURN(std::optional<VolumeRecord> volume, metadata_->GetVolume(volume_id));
  if (!volume) return absl::OkStatus();
  ASSIGN_OR_RETURN(std::vector<PublicationRecord> publications,
                   metadata_->ListPublications(volume_id));
  if (!publications.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "volume ", volume_id, " is still published at ", publications.front().target_path));
  }
  if (volume->state == kVolumeStaged) {
    return absl::FailedPreconditionError(
        absl::StrCat("volume ", volume_id, " is still staged at ", volume->staging_path));
  }
  // Collection frees commit layers only, and the volume's going drops one reference: that of
  // its top layer. A top that is an imported layer (or no chain) frees nothing, so the scan of
  // every layer, image, volume and snapshot stays off this call's path.
  bool may_free_commits = false;
  if (!volume->chain_id.empty()) {
    ASSIGN_OR_RETURN(std::optional<LayerRecord> top, metadata_->GetLayer(volume->chain_id));
    may_free_commits = top.has_value() && top->diff_id.empty();
  }
  metadata_->MakeRoomForDelete();  // deletes free space, so they must work on a full disk
  RETURN_IF_ERROR(RemoveVolume(*volume));
  // Commit layers only this volume's chain used (its rebased history) go with it.
  GcResult collected;
  if (may_free_commits) {
    ASSIGN_OR_RETURN(collected, layers_->CollectUnreferencedCommits());
  }
  LogInfo("volume deleted", {{"volume", volume_id},
                             {"name", volume->name},
                             {"layers_freed", std::to_string(collected.removed_chain_ids.size())}});
  metadata_->RestoreReserve();
  return absl::OkStatus();
}

absl::Status VolumeManager::MountVolume(const VolumeRecord& volume, const std::string& where,
                                        const std::vector<LayerRecord>* known_chain) {
  ASSIGN_OR_RETURN(drivers::Chain chain, known_chain != nullptr && !volume.chain_id.empty()
                                             ? LayerStore::DriverChainOf(*known_chain)
                                             : layers_->DriverChain(volume.chain_id));
  ASSIGN_OR_RETURN(std::vector<sys::Mount> mounts, driver_->Mounts(volume.active_id, chain));
  if (mounts.size() != 1) {
    return absl::InternalError(absl::StrCat("driver ", std::string(driver_->name()), " returned ",
                                            mounts.size(), " mounts for volume ", volume.id));
  }
  MountTimer timer(metrics_, "stage");
  return mounter_->MountAt(mounts[0], where);
}

absl::Status VolumeManager::UnmountAll(const std::string& where) {
  // Mounts can stack on one path (a retried mount after a lost reply); take all of them off.
  for (int attempt = 0; attempt < 16; ++attempt) {
    ASSIGN_OR_RETURN(bool mounted, mounter_->IsMountPoint(where));
    if (!mounted) return absl::OkStatus();
    MountTimer timer(metrics_, "unmount");
    RETURN_IF_ERROR(mounter_->Unmount(where));
  }
  return absl::InternalError(absl::StrCat(where, " is still mounted after 16 unmounts"));
}

absl::Status VolumeManager::Stage(const std::string& volume_id, const std::string& staging_path) {
  RETURN_IF_ERROR(CheckOutsideRoot(staging_path, "staging_target_path"));
  return StageAt(volume_id, staging_path);
}

absl::Status VolumeManager::StageAt(const std::string& volume_id, const std::string& staging_path) {
  ASSIGN_OR_RETURN(VolumeRecord volume, MustGet(volume_id));
  // Checked before the "already staged" answer too: a live overlay mount outlives a lower
  // removed under it, and a retried stage must not say OK for a volume that cannot work.
  std::vector<LayerRecord> chain;
  ASSIGN_OR_RETURN(std::string missing, MissingContent(volume, &chain));
  SetAbnormal(volume_id, missing);
  if (!missing.empty()) {
    LogWarning("stage refused: the volume's content is missing on disk",
               {{"volume", volume_id}, {"problem", missing}});
    return absl::FailedPreconditionError(
        absl::StrCat("volume ", volume_id, " cannot be staged: ", missing));
  }
  if (volume.state == kVolumeStaged) {
    if (volume.staging_path != staging_path) {
      return absl::FailedPreconditionError(
          absl::StrCat("volume ", volume_id, " is already staged at ", volume.staging_path));
    }
    ASSIGN_OR_RETURN(bool mounted, mounter_->IsMountPoint(staging_path));
    if (mounted) return absl::OkStatus();
    LogWarning("staged volume lost its mount; mounting again",
               {{"volume", volume_id}, {"staging_path", staging_path}});
  }
  RETURN_IF_ERROR(PrepareMountTarget(staging_path, /*create=*/true));
  volume.pending = "stage";
  volume.staging_path = staging_path;
  // The intent only has to outlive the process, not the kernel: a power loss that loses it
  // takes the mount with it (docs/architecture.md, "What is durable when").
  RETURN_IF_ERROR(metadata_->InVolatileTransaction([&] { return metadata_->PutVolume(volume); }));
  CrashPoint("stage-after-intent");
  absl::Status mounted = MountVolume(volume, staging_path, &chain);
  if (!mounted.ok()) {
    volume.pending = "";
    if (volume.state != kVolumeStaged) volume.staging_path = "";
    (void)metadata_->PutVolume(volume);
    return mounted;
  }
  CrashPoint("stage-after-mount");
  volume.pending = "";
  volume.state = kVolumeStaged;
  RecordMountsOrWarn(volume);
  RETURN_IF_ERROR(metadata_->PutVolume(volume));
  LogInfo("volume staged", {{"volume", volume_id}, {"staging_path", staging_path}});
  return absl::OkStatus();
}

absl::Status VolumeManager::Unstage(const std::string& volume_id, const std::string& staging_path) {
  ASSIGN_OR_RETURN(VolumeRecord volume, MustGet(volume_id));
  if (volume.state != kVolumeStaged) return absl::OkStatus();
  if (volume.staging_path != staging_path) {
    return absl::FailedPreconditionError(absl::StrCat("volume ", volume_id, " is staged at ",
                                                      volume.staging_path, ", not ", staging_path));
  }
  ASSIGN_OR_RETURN(std::vector<PublicationRecord> publications,
                   metadata_->ListPublications(volume_id));
  if (!publications.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("volume ", volume_id, " is still published at ",
                     publications.front().target_path, "; unpublish it first"));
  }
  volume.pending = "unstage";
  // Lost to a power loss, the record says "staged" of a mount the reboot took down: the
  // retried unstage finds nothing mounted and finishes.
  RETURN_IF_ERROR(metadata_->InVolatileTransaction([&] { return metadata_->PutVolume(volume); }));
  CrashPoint("unstage-after-intent");
  RETURN_IF_ERROR(UnmountAll(staging_path));
  CrashPoint("unstage-after-unmount");
  volume.pending = "";
  volume.state = kVolumeReady;
  volume.staging_path = "";
  RETURN_IF_ERROR(metadata_->PutVolume(volume));
  RecordMountsOrWarn(volume);
  LogInfo("volume unstaged", {{"volume", volume_id}, {"staging_path", staging_path}});
  return absl::OkStatus();
}

absl::Status VolumeManager::Publish(const std::string& volume_id, const std::string& staging_path,
                                    const std::string& target_path, bool read_only,
                                    const std::vector<std::string>& mount_flags) {
  RETURN_IF_ERROR(CheckOutsideRoot(target_path, "target_path"));
  ASSIGN_OR_RETURN(VolumeRecord volume, MustGet(volume_id));
  if (volume.state != kVolumeStaged ||
      (!staging_path.empty() && volume.staging_path != staging_path)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "volume ", volume_id, " is not staged at ", staging_path, "; call NodeStageVolume first"));
  }
  ASSIGN_OR_RETURN(std::vector<PublicationRecord> publications,
                   metadata_->ListPublications(volume_id));
  for (const PublicationRecord& publication : publications) {
    if (publication.target_path != target_path) continue;
    if (publication.read_only != read_only) {
      return absl::AlreadyExistsError(
          absl::StrCat("volume ", volume_id, " is already published at ", target_path,
                       publication.read_only ? " read-only" : " read-write"));
    }
    ASSIGN_OR_RETURN(bool mounted, mounter_->IsMountPoint(target_path));
    if (mounted && publication.state == "published") return absl::OkStatus();
  }
  // After a node reboot the staging mount is gone while kubelet still believes it staged:
  // mount it again rather than fail every pod start.
  ASSIGN_OR_RETURN(bool staged_mounted, mounter_->IsMountPoint(volume.staging_path));
  if (!staged_mounted) {
    LogWarning("staging mount missing; mounting again before publish",
               {{"volume", volume_id}, {"staging_path", volume.staging_path}});
    RETURN_IF_ERROR(MountVolume(volume, volume.staging_path));
  }
  RETURN_IF_ERROR(PrepareMountTarget(target_path, /*create=*/true));
  PublicationRecord publication{volume_id, target_path, read_only, "publishing"};
  // Volatile like the stage intent: the bind mount it announces dies with the kernel too.
  RETURN_IF_ERROR(
      metadata_->InVolatileTransaction([&] { return metadata_->PutPublication(publication); }));
  sys::Mount bind{"bind", volume.staging_path, {read_only ? "ro" : "rw", "nodev"}};
  for (const std::string& flag : mount_flags)
    if (flag != "nodev") bind.options.push_back(flag);
  absl::Status mounted;
  {
    MountTimer timer(metrics_, "publish");
    mounted = mounter_->MountAt(bind, target_path);
  }
  if (!mounted.ok()) {
    (void)metadata_->DeletePublication(volume_id, target_path);
    return mounted;
  }
  CrashPoint("publish-after-mount");
  publication.state = "published";
  RETURN_IF_ERROR(metadata_->PutPublication(publication));
  RecordMountsOrWarn(volume);
  LogInfo("volume published", {{"volume", volume_id},
                               {"target_path", target_path},
                               {"read_only", read_only ? "true" : "false"}});
  return absl::OkStatus();
}

absl::Status VolumeManager::PublishEphemeral(const std::string& volume_id, const std::string& image,
                                             const std::string& target_path, bool read_only,
                                             const std::vector<std::string>& mount_flags) {
  // The id names the private mount folder: checked before anything is recorded or made, so a
  // hostile id ("..", "../../x", "a/b") can neither escape volumes_dir nor leave a row behind.
  ASSIGN_OR_RETURN(std::string private_mount, ChildPath(options_.volumes_dir, volume_id));
  RETURN_IF_ERROR(CheckOutsideRoot(target_path, "target_path"));
  ASSIGN_OR_RETURN(std::optional<VolumeRecord> existing, metadata_->GetVolume(volume_id));
  if (existing && !existing->ephemeral) {
    return absl::AlreadyExistsError(
        absl::StrCat("volume id ", volume_id, " belongs to a persistent volume"));
  }
  if (existing && existing->state == kVolumeCreating) {
    RETURN_IF_ERROR(RemoveVolume(*existing));
    existing.reset();
  }
  if (existing && existing->image != image) {
    return absl::AlreadyExistsError(absl::StrCat("ephemeral volume ", volume_id,
                                                 " already exists with image ", existing->image));
  }
  if (!existing) {
    std::string chain_id;
    if (!image.empty()) {
      ASSIGN_OR_RETURN(ImageRecord record, layers_->ResolveImage(image));
      chain_id = record.chain_id;
    }
    VolumeRecord volume;
    volume.id = volume_id;
    volume.name = volume_id;
    volume.request_fingerprint = absl::StrCat("ephemeral image=", image);
    volume.image = image;
    volume.chain_id = chain_id;
    volume.ephemeral = true;
    RETURN_IF_ERROR(MakeVolume(std::move(volume)).status());
  }
  absl::Status published = [&]() -> absl::Status {
    RETURN_IF_ERROR(MakeDirs(options_.volumes_dir, 0700));
    RETURN_IF_ERROR(StageAt(volume_id, private_mount));
    return Publish(volume_id, private_mount, target_path, read_only, mount_flags);
  }();
  if (published.ok()) return published;
  // Nobody can reach an ephemeral volume without a publication: one left without any after a
  // failed call (made now, or left by an earlier failed call) is torn down, not kept.
  absl::StatusOr<std::vector<PublicationRecord>> left = metadata_->ListPublications(volume_id);
  if (left.ok() && left->empty()) {
    absl::Status removed = TearDownEphemeral(volume_id, private_mount);
    if (!removed.ok()) {
      LogWarning("failed ephemeral publish: teardown failed; the next call retries it",
                 {{"volume", volume_id}, {"error", removed.ToString()}});
    }
  }
  return published;
}

absl::Status VolumeManager::TearDownEphemeral(const std::string& volume_id,
                                              const std::string& private_mount) {
  ASSIGN_OR_RETURN(VolumeRecord volume, MustGet(volume_id));
  if (volume.state == kVolumeStaged) RETURN_IF_ERROR(Unstage(volume_id, volume.staging_path));
  ASSIGN_OR_RETURN(bool mounted, mounter_->IsMountPoint(private_mount));
  if (mounted) RETURN_IF_ERROR(UnmountAll(private_mount));  // a stage that failed half-way
  (void)rmdir(private_mount.c_str());
  return Delete(volume_id);
}

absl::Status VolumeManager::Unpublish(const std::string& volume_id,
                                      const std::string& target_path) {
  absl::StatusOr<VolumeRecord> found = MustGet(volume_id);
  absl::StatusOr<std::vector<PublicationRecord>> publications =
      found.ok() ? metadata_->ListPublications(volume_id)
                 : absl::StatusOr<std::vector<PublicationRecord>>(std::vector<PublicationRecord>{});
  RETURN_IF_ERROR(publications.status());
  bool recorded = false;
  for (const PublicationRecord& publication : *publications)
    recorded = recorded || publication.target_path == target_path;
  if (!recorded) {
    // Not a (volume, target) pair Strata made: a retry after the work was done (the volume may
    // even be gone: an ephemeral volume torn down before the reply was lost), or a mistake.
    // Either way nothing there is ours to unmount or remove: the target of another volume, its
    // staging path, or a mount Strata never made.
    ASSIGN_OR_RETURN(bool mounted, mounter_->IsMountPoint(target_path));
    if (mounted) {
      if (!found.ok()) return found.status();
      return absl::FailedPreconditionError(
          absl::StrCat("volume ", volume_id, " is not published at ", target_path,
                       "; what is mounted there is not this volume's and stays"));
    }
    return absl::OkStatus();
  }
  VolumeRecord volume = *std::move(found);
  RETURN_IF_ERROR(UnmountAll(target_path));
  RETURN_IF_ERROR(metadata_->DeletePublication(volume_id, target_path));
  if (!volume.ephemeral) RecordMountsOrWarn(volume);
  // The CO expects the target gone after unpublish; only an empty directory is removed.
  if (rmdir(target_path.c_str()) != 0 && errno != ENOENT) {
    LogDebug("target path left in place",
             {{"target_path", target_path}, {"errno", std::to_string(errno)}});
  }
  LogInfo("volume unpublished", {{"volume", volume_id}, {"target_path", target_path}});
  if (volume.ephemeral) {
    ASSIGN_OR_RETURN(std::vector<PublicationRecord> left, metadata_->ListPublications(volume_id));
    if (left.empty()) {
      ASSIGN_OR_RETURN(std::string private_mount, ChildPath(options_.volumes_dir, volume_id));
      RETURN_IF_ERROR(TearDownEphemeral(volume_id, private_mount));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<VolumeUsage> VolumeManager::Usage(const std::string& volume_id,
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
  VolumeUsage usage;
  ASSIGN_OR_RETURN(std::string missing, MissingContent(volume));
  SetAbnormal(volume_id, missing);
  // A writable layer gone from disk is reported as the volume's condition, not as an error.
  absl::StatusOr<drivers::Usage> used = driver_->GetUsage(volume.active_id);
  if (used.ok()) {
    usage.used_bytes = used->bytes;
    usage.used_inodes = used->inodes;
  } else if (missing.empty() || !absl::IsNotFound(used.status())) {
    return used.status();
  }
  struct statvfs fs;
  if (statvfs(volume_path.c_str(), &fs) == 0) {
    int64_t fs_total = static_cast<int64_t>(fs.f_blocks) * fs.f_frsize;
    int64_t fs_free = static_cast<int64_t>(fs.f_bavail) * fs.f_frsize;
    usage.total_bytes = volume.capacity_bytes > 0 ? volume.capacity_bytes : fs_total;
    usage.available_bytes =
        std::max<int64_t>(0, std::min(fs_free, usage.total_bytes - usage.used_bytes));
    usage.total_inodes = static_cast<int64_t>(fs.f_files);
    usage.available_inodes = static_cast<int64_t>(fs.f_favail);
  }
  ASSIGN_OR_RETURN(bool mounted, mounter_->IsMountPoint(volume_path));
  if (!missing.empty()) {
    usage.abnormal = true;
    usage.condition_message = missing;
  } else if (!mounted) {
    usage.abnormal = true;
    usage.condition_message = absl::StrCat(volume_path, " is no longer mounted");
  } else {
    usage.condition_message = "volume is mounted";
  }
  return usage;
}

void VolumeManager::RefreshGauges() {
  if (metrics_ == nullptr) return;
  absl::StatusOr<std::vector<VolumeRecord>> volumes = metadata_->ListVolumes();
  if (volumes.ok()) {
    std::map<std::string, int64_t> by_state = {
        {kVolumeCreating, 0}, {kVolumeReady, 0}, {kVolumeStaged, 0}, {kVolumeDeleting, 0}};
    for (const VolumeRecord& volume : *volumes) ++by_state[volume.state];
    for (const auto& [state, count] : by_state) metrics_->SetVolumes(state, count);
  }
  absl::StatusOr<StoreStats> stats = layers_->Stats();
  if (stats.ok()) {
    metrics_->SetLayers(stats->layers);
    metrics_->SetImages(stats->images);
    metrics_->SetLayerBytes(stats->layer_bytes);
  }
  absl::StatusOr<std::vector<SnapshotRecord>> snapshots = metadata_->ListSnapshots();
  if (snapshots.ok()) {
    std::map<std::string, int64_t> by_state = {{"creating", 0}, {"ready", 0}};
    for (const SnapshotRecord& snapshot : *snapshots) ++by_state[snapshot.state];
    for (const auto& [state, count] : by_state) metrics_->SetSnapshots(state, count);
  }
  absl::StatusOr<int64_t> shared = layers_->SharedBytes();
  if (shared.ok()) metrics_->SetSharedBytes(*shared);
  absl::StatusOr<int64_t> free_bytes = driver_->FreeBytes();
  if (free_bytes.ok()) metrics_->SetStoreFreeBytes(*free_bytes);
}

absl::Status VolumeManager::RecoverVolume(VolumeRecord volume) {
  if (volume.state == kVolumeCreating || volume.state == kVolumeDeleting) {
    // Creating: nothing but an empty writable layer can exist, and the CO retries the create.
    // Deleting: the CO asked for it to go; finish the job.
    LogWarning("recovery: finishing removal of a volume left half-made or half-deleted",
               {{"volume", volume.id}, {"state", volume.state}});
    return RemoveVolume(volume);
  }
  if (absl::StartsWith(volume.pending, "commit")) {
    RETURN_IF_ERROR(RecoverPendingCommit(volume));
    ASSIGN_OR_RETURN(volume, MustGet(volume.id));
  }
  if (!volume.pending.empty()) {
    ASSIGN_OR_RETURN(bool mounted, mounter_->IsMountPoint(volume.staging_path));
    LogWarning("recovery: resolving an interrupted operation",
               {{"volume", volume.id},
                {"pending", volume.pending},
                {"staging_path", volume.staging_path},
                {"mounted", mounted ? "true" : "false"}});
    volume.state = mounted ? kVolumeStaged : kVolumeReady;
    if (!mounted) volume.staging_path = "";
    volume.pending = "";
    RETURN_IF_ERROR(metadata_->PutVolume(volume));
  }
  ASSIGN_OR_RETURN(std::vector<PublicationRecord> publications,
                   metadata_->ListPublications(volume.id));
  for (PublicationRecord& publication : publications) {
    if (publication.state == "published") continue;
    ASSIGN_OR_RETURN(bool mounted, mounter_->IsMountPoint(publication.target_path));
    LogWarning("recovery: resolving an interrupted publish",
               {{"volume", volume.id},
                {"target_path", publication.target_path},
                {"mounted", mounted ? "true" : "false"}});
    if (mounted) {
      CrashPoint("publish-after-mount");
      publication.state = "published";
      RETURN_IF_ERROR(metadata_->PutPublication(publication));
    } else {
      RETURN_IF_ERROR(metadata_->DeletePublication(volume.id, publication.target_path));
    }
  }
  return absl::OkStatus();
}

absl::Status VolumeManager::Recover(UnknownContentPolicy policy) {
  ASSIGN_OR_RETURN(std::vector<VolumeRecord> volumes, metadata_->ListVolumes());
  {
    // A database that is new or empty while the disk holds store content has lost its records:
    // treating that content as garbage would delete every volume (issue 8). Decide first.
    ASSIGN_OR_RETURN(bool looks_new, metadata_->LooksNew());
    ASSIGN_OR_RETURN(std::vector<LayerRecord> layer_rows, metadata_->ListLayers());
    std::set<std::string> volume_ids, chain_ids;
    for (const VolumeRecord& volume : volumes) volume_ids.insert(volume.id);
    for (const LayerRecord& layer : layer_rows) chain_ids.insert(layer.chain_id);
    ASSIGN_OR_RETURN(std::vector<std::string> stored, driver_->Walk());
    // Labelled content of a volume or layer the database has no record of at all: the
    // database lost records (a lost WAL leaves it at its last checkpoint, or empty). A volume
    // label whose volume the database knows under another writable layer is not counted: a
    // commit or rollback died before removing the volume's previous one.
    int labelled = 0;
    if (Labels* labels = layers_->labels(); labels != nullptr) {
      for (const std::string& id : stored) {
        absl::StatusOr<std::optional<ContentLabel>> label = labels->GetContent(id);
        if (!label.ok() || !label->has_value() || (*label)->deleting) continue;
        const ContentLabel& found = **label;
        if (found.kind == ContentLabel::Kind::kVolume && !volume_ids.count(found.volume.id))
          ++labelled;
        if (found.kind == ContentLabel::Kind::kLayer && !chain_ids.count(found.layer.chain_id))
          ++labelled;
      }
    }
    bool lost = (looks_new && !stored.empty()) || labelled > 0;
    if (lost && policy == UnknownContentPolicy::kRefuse) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the metadata database under ", options_.root, " is ", looks_new ? "new" : "empty",
          " but the store holds ", stored.size(), " items of content (", labelled,
          " labelled as volumes or layers): the database was lost or damaged. Nothing was "
          "changed. Choose one (docs/operations.md, \"The database is lost or damaged\"): "
          "restore strata.db from a backup (stratactl backup) and start again; or start once "
          "with --recover-unknown=readopt to rebuild the volumes, snapshots and images from the "
          "labels on disk (content without a label goes to ",
          options_.root,
          "/quarantine); or start once with --recover-unknown=quarantine to move "
          "everything found to ",
          options_.root, "/quarantine (stratactl quarantine list)"));
    }
    if (lost && policy == UnknownContentPolicy::kReadopt) {
      ASSIGN_OR_RETURN(ReadoptResult adopted, Readopt());
      LogWarning("recovery: re-adopted the store from its labels",
                 {{"volumes", std::to_string(adopted.volumes)},
                  {"staged", std::to_string(adopted.staged)},
                  {"publications", std::to_string(adopted.publications)},
                  {"layers", std::to_string(adopted.layers)},
                  {"snapshots", std::to_string(adopted.snapshots)},
                  {"images", std::to_string(adopted.images)}});
      ASSIGN_OR_RETURN(volumes, metadata_->ListVolumes());
    }
    if (lost && policy == UnknownContentPolicy::kQuarantine) {
      LogWarning("recovery: the database lost its records; everything found goes to quarantine",
                 {{"items", std::to_string(stored.size())}});
    }
  }
  std::vector<std::string> keep;
  bool removed_volumes = false;
  for (const VolumeRecord& volume : volumes) {
    RETURN_IF_ERROR(RecoverVolume(volume));
    if (volume.state != kVolumeCreating && volume.state != kVolumeDeleting)
      keep.push_back(volume.active_id);
    else
      removed_volumes = true;
  }
  RETURN_IF_ERROR(layers_->Recover(keep));
  // A delete killed after its intent: its commit layers go now, as the finished call's would
  // have (docs/snapshots.md), not at the next manual gc.
  // Freeing space must never keep the plugin from starting (a full disk, say): warn and let
  // the next delete or gc collect them.
  if (removed_volumes) {
    absl::Status collected = layers_->CollectUnreferencedCommits().status();
    if (!collected.ok()) {
      LogWarning(
          "recovery: could not collect commit layers of removed volumes; the next delete "
          "or gc will",
          {{"error", collected.ToString()}});
    }
  }
  // The cheap part of `stratactl check`: a layer folder removed behind our back shows now, as
  // a warning and an abnormal volume, not at the next pod start.
  RETURN_IF_ERROR(CheckVolumesContent());
  RefreshGauges();
  LogInfo("recovery finished", {{"volumes", std::to_string(keep.size())}});
  return absl::OkStatus();
}

}  // namespace strata::node
