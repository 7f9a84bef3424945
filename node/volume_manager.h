#pragma once
// VolumeManager: a volume's whole life on this node — create (a writable layer on an image's
// chain), stage (mount the layered filesystem), publish (bind it into a pod), and back.
//
// Crash safety: before each filesystem or mount step the intent is written to the metadata
// ("pending"), and the outcome after; Recover() resolves every pending intent against the
// kernel's mount table at start-up, so a plugin killed at any point comes back consistent and
// a retried call succeeds. Nothing here ever deletes a writable layer except Delete and the
// teardown of an ephemeral volume.
//
// Callers (csi/) hold the per-volume lock (VolumeLocks) around every call for one volume.

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "drivers/driver.h"
#include "metrics/metrics.h"
#include "node/capacity_policy.h"
#include "node/layer_store.h"
#include "node/metadata.h"
#include "node/volume_locks.h"
#include "sys/mounter.h"

namespace strata::node {

struct CreateVolumeParams {
  std::string name;
  std::string image;  // "" = empty base
  // Content source (at most one): start on a snapshot's chain (restore), or on a commit of
  // another volume's current state (clone). Neither copies data.
  std::string source_snapshot_id;
  std::string source_volume_id;
  int64_t capacity_bytes = 0;  // 0 = no limit asked
  // The class demands a hard limit (StorageClass parameter enforceCapacity: "true"): refused
  // with FailedPrecondition, before anything is made, on a store that only records capacity.
  bool require_enforced_capacity = false;
  // Canonical text of everything the request asked for; a retry with the same name must match.
  std::string fingerprint;
};

struct VolumeUsage {
  int64_t used_bytes = 0;
  int64_t total_bytes = 0;
  int64_t available_bytes = 0;
  int64_t used_inodes = 0;
  int64_t total_inodes = 0;
  int64_t available_inodes = 0;
  bool abnormal = false;
  std::string condition_message;
};

struct VolumeManagerOptions {
  std::string root;         // Strata's --root: no request path may point into it
  std::string volumes_dir;  // private mount points of ephemeral volumes
  std::string scratch_dir;  // temporary mount points (flattening an unmounted volume)
  // A commit that would make a chain deeper than this is flattened: its layer holds the whole
  // merged tree and starts a new chain. 0 = the driver's own limit.
  int flatten_depth = 128;
  // How far capacity promises may exceed a thin-provisioned store (node/capacity_policy.h):
  // 1 = never promise more than the store holds.
  double overprovision_ratio = 1.0;
};

// One problem `stratactl check` found (VolumeManager::Check).
struct CheckFinding {
  // "missing-layer", "missing-writable-layer", "unknown-content", "half-made",
  // "unrecorded-mount".
  std::string kind;
  std::string subject;  // a volume id, layer ChainID, driver id or mount point
  std::string detail;   // what is wrong, in words
  std::string action;   // what --repair did, or what the operator can do
  bool repaired = false;
};

struct CheckReport {
  int volumes = 0;         // volume records looked at
  int layers = 0;          // layer records looked at
  int driver_entries = 0;  // ids the driver holds content for
  int mounts = 0;          // mounts looked at (under the store, or of its content)
  std::vector<CheckFinding> findings;
};

// What start-up does when the metadata looks new or empty while the store holds content: the
// database was lost or damaged (docs/operations.md, "The database is lost or damaged").
enum class UnknownContentPolicy {
  kRefuse,      // default: change nothing, fail with a message that names the choices
  kReadopt,     // rebuild the records from the labels on disk; unlabelled content: quarantine
  kQuarantine,  // move everything found to quarantine
};

struct ReadoptResult {
  int layers = 0;
  int volumes = 0;
  int staged = 0;        // of those, still mounted at their staging path
  int publications = 0;  // still mounted at their targets
  int snapshots = 0;
  int images = 0;
};

// What `stratactl quarantine restore` made of an entry.
struct RestoreResult {
  VolumeRecord volume;   // the new (or re-made) volume; id "" when only a layer was restored
  std::string chain_id;  // the layer restored, when the entry was a layer
  std::string note;      // what the admin should know (e.g. "restored on the empty base")
};

// What a commit made.
struct CommitResult {
  std::string chain_id;  // the new read-only layer
  int64_t size_bytes = 0;
  int depth = 0;  // of the chain the layer tops
  bool flattened = false;
};

// A group snapshot with its members' snapshot records (a member deleted on its own is absent).
struct GroupSnapshot {
  GroupSnapshotRecord record;
  std::vector<SnapshotRecord> snapshots;
};

class VolumeManager {
 public:
  VolumeManager(Metadata* metadata, LayerStore* layers, drivers::Driver* driver,
                sys::Mounter* mounter, metrics::Metrics* metrics, VolumeManagerOptions options);

  // Start-up reconciliation with the mount table; then the layer store's own recovery, which
  // quarantines content the metadata cannot account for (never deletes it). When the metadata
  // looks new while the store holds content, or lacks the records of labelled volumes or layers
  // on disk (a lost WAL, an older backup), `policy` decides; kRefuse changes
  // nothing and returns FailedPrecondition naming the choices.
  absl::Status Recover(UnknownContentPolicy policy = UnknownContentPolicy::kRefuse);
  // Rebuilds the layer, volume, snapshot and image records the database lost from the labels of
  // the content on disk, in one transaction (node/readopt.cc); records it still has stay. Volumes
  // keep their ids, names, chains and capacity; one still mounted at its labelled staging path
  // comes back staged, with the publications that are still mounted. Content without a usable label
  // is left for Recover to quarantine.
  absl::StatusOr<ReadoptResult> Readopt();
  // Quarantine entry `entry` back into the store: a writable layer becomes volume
  // `volume_name` (back under its old id, name and chain when its label says so and they are
  // free); a layer becomes a layer again (its labelled chain id when its parent exists, else a
  // new base) and, with `volume_name`, a new volume on it.
  absl::StatusOr<RestoreResult> RestoreQuarantined(const std::string& entry,
                                                   const std::string& volume_name);

  // Idempotent by name: the same name and fingerprint returns the existing volume; another
  // fingerprint is AlreadyExists; an unknown image is NotFound.
  absl::StatusOr<VolumeRecord> Create(const CreateVolumeParams& params);
  // A missing volume is OK. A staged or published volume is FailedPrecondition.
  absl::Status Delete(const std::string& volume_id);
  absl::StatusOr<VolumeRecord> Get(const std::string& volume_id);
  absl::StatusOr<std::vector<VolumeRecord>> List();
  // One page of List(): up to `limit` volumes with id >= `from_id`, ordered by id.
  absl::StatusOr<std::vector<VolumeRecord>> ListFrom(const std::string& from_id, int64_t limit);
  absl::StatusOr<std::vector<PublicationRecord>> Publications(const std::string& volume_id);
  // Strata's --root: nothing a request names may lie inside it (stratactl save's output).
  const std::string& root() const { return options_.root; }

  // FailedPrecondition naming the missing layer when the driver lacks part of the volume's
  // chain or its writable layer, also for a retry on a volume already staged there.
  absl::Status Stage(const std::string& volume_id, const std::string& staging_path);
  absl::Status Unstage(const std::string& volume_id, const std::string& staging_path);
  // Binds the staged volume at `target_path`. The bind is always "nodev" (device nodes from an
  // image never work in a pod's volume: docs/security.md); `mount_flags` adds the safe VFS
  // flags the CO asked for (nosuid, noexec, noatime, ...; csi/request_validation.h checks them).
  absl::Status Publish(const std::string& volume_id, const std::string& staging_path,
                       const std::string& target_path, bool read_only,
                       const std::vector<std::string>& mount_flags = {});
  // Ephemeral inline volume: a fresh writable layer on `image`, mounted at `target_path`.
  // `volume_id` becomes a folder name under volumes_dir: it must be one path component. A call
  // that fails leaves no volume behind (unless an earlier call had published it).
  absl::Status PublishEphemeral(const std::string& volume_id, const std::string& image,
                                const std::string& target_path, bool read_only,
                                const std::vector<std::string>& mount_flags = {});
  // Unmounts `target_path` when it is a publication of `volume_id` recorded by Publish; an
  // ephemeral volume is torn down with its last one. A target Strata did not record for this
  // volume is never unmounted nor removed: OK when nothing is mounted there (a retry),
  // FailedPrecondition when something is.
  absl::Status Unpublish(const std::string& volume_id, const std::string& target_path);

  // Space and inodes of the writable layer; abnormal when the volume's chain or writable layer
  // is missing on disk (the message names it), or when the mount at `volume_path` is gone.
  absl::StatusOr<VolumeUsage> Usage(const std::string& volume_id, const std::string& volume_path);

  // ---- Expansion (node/volume_expand.cc) ----
  //
  // A larger capacity for a volume: the driver's limit first (a qgroup, a thin device and its
  // filesystem), then the label, then the record, so a retry after a crash anywhere finishes
  // it. Less than the recorded capacity is OutOfRange; the same is a no-op; a volume made
  // without a capacity has no limit to raise and stays so.
  struct ExpandResult {
    int64_t capacity_bytes = 0;
    bool node_expansion_required = false;  // the filesystem grows once mounted (devmapper)
  };
  // ControllerExpandVolume.
  absl::StatusOr<ExpandResult> Expand(const std::string& volume_id, int64_t capacity_bytes);
  // NodeExpandVolume, where kubelet asks for the size (`capacity_bytes`, 0: the recorded one)
  // with the volume mounted at `volume_path` (its staging path or a target; NotFound
  // elsewhere): raises the capacity and grows the filesystem. Returns the capacity.
  absl::StatusOr<int64_t> ExpandOnNode(const std::string& volume_id, const std::string& volume_path,
                                       int64_t capacity_bytes);

  // ---- Commits (node/volume_commits.cc) ----
  //
  // A commit turns a volume's writable layer into a new read-only layer on top of its chain
  // (like `docker commit`). The layer is made by the driver's kKeep commit (overlay and vfs
  // copy, btrfs and devmapper snapshot), so the writable layer is never moved or emptied while
  // the layer is half-made. A volume that is not mounted is then rebased onto the new layer
  // (a fresh, empty writable layer on the longer chain), so successive commits stack like Git
  // commits; a mounted volume keeps its writable layer and its chain.
  //
  // Point in time: for overlay and vfs, the copy starts after syncfs of the volume's
  // filesystem; a writer racing the commit may or may not see its in-flight writes included
  // (file by file). btrfs and devmapper snapshot atomically. docs/snapshots.md says more.

  // CSI group snapshots (node/volume_groups.cc). Create cuts one snapshot of each volume under
  // one group record, idempotent by name; the caller holds every volume's lock. Delete removes
  // the members and then the record; Get and Delete check `snapshot_ids` against the members
  // when it is given (INVALID_ARGUMENT on a mismatch).
  absl::StatusOr<GroupSnapshot> CreateGroupSnapshot(const std::string& name,
                                                    const std::vector<std::string>& volume_ids);
  absl::Status DeleteGroupSnapshot(const std::string& group_id,
                                   const std::vector<std::string>& snapshot_ids);
  absl::StatusOr<GroupSnapshot> GetGroupSnapshot(const std::string& group_id,
                                                 const std::vector<std::string>& snapshot_ids);

  // Commits `volume_id`; `comment` is stored with the layer (history). With `tag`, the image
  // record (its chain_id is filled in) is written in the commit's own final transaction, so the
  // new layer is referenced from the moment it exists (`stratactl commit --tag`).
  absl::StatusOr<CommitResult> Commit(const std::string& volume_id, const std::string& comment,
                                      std::optional<ImageRecord> tag = std::nullopt);
  // CSI CreateSnapshot: a commit kept under `name`. Idempotent by name; the same name for
  // another volume is AlreadyExists.
  absl::StatusOr<SnapshotRecord> CreateSnapshot(const std::string& volume_id,
                                                const std::string& name);
  // CSI DeleteSnapshot; a missing snapshot is OK. Layers no one uses any more are freed.
  absl::Status DeleteSnapshot(const std::string& snapshot_id);
  absl::StatusOr<SnapshotRecord> GetSnapshot(const std::string& snapshot_id);
  absl::StatusOr<std::vector<SnapshotRecord>> ListSnapshots();
  // One page of the ready snapshots (of `source_volume_id` unless empty): up to `limit` with
  // id >= `from_id`, ordered by id.
  absl::StatusOr<std::vector<SnapshotRecord>> ListReadySnapshotsFrom(
      const std::string& from_id, const std::string& source_volume_id, int64_t limit);
  // Resets a volume that is neither staged nor published to `snapshot_id`, first keeping its
  // current state as a snapshot (returned) so the rollback can itself be undone.
  absl::StatusOr<SnapshotRecord> Rollback(const std::string& volume_id,
                                          const std::string& snapshot_id);

  // What the store holds and has promised right now, and how much more it may promise
  // (GetCapacity): the rule CreateVolume and expansions apply (node/capacity_policy.h).
  absl::StatusOr<StoreCapacity> ReadStoreCapacity();
  absl::StatusOr<int64_t> ProvisionableBytes();
  // Whether a volume's capacity is a hard limit on this store (DriverLimits::enforces_capacity).
  bool CapacityEnforced() const;

  // Recomputes the volume/layer/image/snapshot gauges from the metadata. Called when Prometheus
  // scrapes (cmd/strata-csi), not after every call: it reads every table.
  void RefreshGauges();

  // ---- Check (node/volume_check.cc) ----
  //
  // A layer folder removed behind Strata's back must not go unnoticed until a pod fails to
  // start: Recover() checks every volume's chain and writable layer against the driver (one
  // Exists per layer), logs a warning and marks each volume that lacks one abnormal; Stage and
  // Usage check the volume again (a retried stage of a volume whose lower is gone answers
  // FailedPrecondition, not OK) and NodeGetVolumeStats reports the condition.

  // "" when the driver holds the volume's whole chain and its writable layer; else a message
  // naming what is missing.
  absl::StatusOr<std::string> MissingContent(const VolumeRecord& volume);
  // The same, handing back the chain it read (top first; empty for an empty base) so that a
  // caller about to mount does not read it twice.
  absl::StatusOr<std::string> MissingContent(const VolumeRecord& volume,
                                             std::vector<LayerRecord>* chain);
  // Volume id -> condition message of every volume known to lack content.
  std::map<std::string, std::string> AbnormalVolumes();
  // `stratactl check`: compares the metadata with the driver's content and the mount table
  // (missing layers, unknown content, half-made records, mounts no record owns). With `repair`
  // it fixes only what cannot lose data: it drops a half-made volume record (creating or
  // deleting) whose writable layer is already gone, and unmounts a mount under the store's
  // volumes folder that no record owns and that is not in use (a plain unmount: EBUSY leaves
  // it). It never removes content: unknown content waits for start-up's quarantine. Volumes
  // busy with a call (their lock in `locks` is held) are skipped for repairs.
  absl::StatusOr<CheckReport> Check(bool repair, VolumeLocks* locks);

 private:
  // Records `volume` (id, name, chain and request filled in) as creating, prepares its writable
  // layer, and marks it ready; undone if the driver fails.
  absl::StatusOr<VolumeRecord> MakeVolume(VolumeRecord volume);
  // Stage without the outside-the-store check: ephemeral volumes stage under volumes_dir.
  absl::Status StageAt(const std::string& volume_id, const std::string& staging_path);
  absl::StatusOr<VolumeRecord> MustGet(const std::string& volume_id);
  // Expand's work on a loaded record; `mount_point` "" when not mounted.
  absl::StatusOr<ExpandResult> Grow(VolumeRecord volume, int64_t capacity_bytes,
                                    const std::string& mount_point);
  // Unstages and deletes ephemeral volume `volume_id` whose private mount is `private_mount`.
  absl::Status TearDownEphemeral(const std::string& volume_id, const std::string& private_mount);
  // Mounts the volume's layered filesystem at `where`; `chain` is its chain when already read.
  absl::Status MountVolume(const VolumeRecord& volume, const std::string& where,
                           const std::vector<LayerRecord>* chain = nullptr);
  absl::Status UnmountAll(const std::string& where);
  absl::Status CheckOutsideRoot(const std::string& path, const std::string& field);
  absl::Status RemoveVolume(VolumeRecord volume);
  // Writes `volume`'s identity label (node/labels.h), durably.
  absl::Status Relabel(const VolumeRecord& volume);
  // Writes where `volume` is staged and published to its label's mounts file (no sync; a failure
  // is logged, not returned).
  void RecordMountsOrWarn(const VolumeRecord& volume);
  absl::Status RecoverVolume(VolumeRecord volume);
  // The commit itself; the caller holds the volume's lock.
  absl::StatusOr<CommitResult> CommitVolume(VolumeRecord volume, const std::string& comment,
                                            const std::optional<SnapshotRecord>& snapshot,
                                            std::optional<ImageRecord> tag = std::nullopt);
  // Copies the merged tree of `volume` into the new base layer `layer_id` (flatten).
  absl::Status WriteFlattenedLayer(const VolumeRecord& volume, const drivers::Chain& parents,
                                   const std::string& layer_id);
  // Undoes an interrupted commit or rollback recorded in `volume.pending`.
  absl::Status RecoverPendingCommit(VolumeRecord volume);
  int FlattenLimit() const;
  // Records (or, with an empty message, clears) that `volume_id` lacks content; updates the
  // strata_volumes_abnormal gauge.
  void SetAbnormal(const std::string& volume_id, const std::string& message);
  // Start-up's cheap part of Check: MissingContent for every volume.
  absl::Status CheckVolumesContent();

  Metadata* metadata_;
  LayerStore* layers_;
  drivers::Driver* driver_;
  sys::Mounter* mounter_;
  metrics::Metrics* metrics_;
  VolumeManagerOptions options_;
  // Held from the capacity check until the promise is recorded (a creating volume's row, an
  // expanded volume's new capacity), so two calls cannot both take the last free bytes.
  absl::Mutex capacity_mutex_;
  std::mutex abnormal_mutex_;
  std::map<std::string, std::string> abnormal_;  // guarded by abnormal_mutex_
};

}  // namespace strata::node
