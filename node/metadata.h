#pragma once
// Metadata: the one transactional store (SQLite, WAL, synchronous=FULL) for layers, images,
// volumes and their states. Every multi-row change runs in one transaction; drivers keep content
// only. Thread-safe: one connection guarded by a mutex (the store is small and calls are short).
//
// No rows are cached (what the store says is the truth recovery starts from); prepared
// statements are.

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

struct sqlite3;

namespace strata::node {

// A committed, read-only layer, identified by its OCI ChainID.
struct LayerRecord {
  std::string chain_id;
  std::string diff_id;
  std::string parent_chain_id;  // "" for a base layer
  std::string driver_id;        // where the driver keeps its content
  int64_t size_bytes = 0;
  int64_t created_unix = 0;
  std::string state;  // "creating" (intent recorded, content may be partial) or "ready"
  int depth = 1;      // 1 for a base layer
  // What made the layer: an image's history entry, "commit of volume X", "flatten of ...".
  std::string comment;
};

// A named reference to a chain.
struct ImageRecord {
  std::string name;
  std::string chain_id;
  std::string config_json;
  int64_t created_unix = 0;
};

// Volume states, in lifecycle order. `pending` in VolumeRecord names an operation whose intent
// was recorded and whose outcome was not (yet): recovery resolves it against the mount table.
inline constexpr char kVolumeCreating[] = "creating";
inline constexpr char kVolumeReady[] = "ready";    // writable layer prepared, not mounted
inline constexpr char kVolumeStaged[] = "staged";  // layered filesystem mounted at staging_path
inline constexpr char kVolumeDeleting[] = "deleting";

struct VolumeRecord {
  std::string id;
  std::string name;
  // Canonical form of what CreateVolume asked for, compared on retries (ALREADY_EXISTS).
  std::string request_fingerprint;
  int64_t capacity_bytes = 0;
  std::string image;      // reference the volume was made from ("" = empty base)
  std::string chain_id;   // top layer of the read-only chain ("" = empty base)
  std::string active_id;  // driver id of the writable layer
  std::string state;
  std::string pending;  // "", "stage", "unstage", "delete"
  std::string staging_path;
  bool ephemeral = false;
  int64_t created_unix = 0;
};

// A CSI snapshot: a commit of a volume's writable layer, i.e. a named reference to a chain.
struct SnapshotRecord {
  std::string id;
  std::string name;
  std::string source_volume_id;
  std::string chain_id;
  int64_t size_bytes = 0;
  int64_t created_unix = 0;
  std::string state;  // "creating" or "ready"
};

struct PublicationRecord {
  std::string volume_id;
  std::string target_path;
  bool read_only = false;
  std::string state;  // "publishing" (intent) or "published"
};

// A CSI volume group snapshot: several volumes' snapshots cut together under one name.
struct GroupSnapshotRecord {
  std::string id;
  std::string name;
  int64_t created_unix = 0;
  std::string state;  // "creating" (members being cut) or "ready"
  // (source volume id, member snapshot id), in the order the volumes were given.
  std::vector<std::pair<std::string, std::string>> members;
};

// The directory holding `path` as statvfs needs it: "/" for "/strata.db", "." for a bare name.
std::string DirectoryOf(const std::string& path);

class Metadata {
 public:
  // Opens (creating if needed) the store at `path`. Beside it, `<path>.reserve` holds
  // `reserve_bytes` of disk space that deletes release when the disk is full (0 = no reserve).
  static absl::StatusOr<std::unique_ptr<Metadata>> Open(const std::string& path,
                                                        int64_t reserve_bytes = 8 << 20);
  ~Metadata();

  // True when the store has never made anything: no driver id was ever handed out. A store
  // whose database is new while its disk holds content has lost its database.
  absl::StatusOr<bool> LooksNew();
  // Raises the driver id sequence so that NewDriverId() never returns `id` or anything below
  // it (ids found on disk that the database does not know, e.g. after restoring a backup).
  absl::Status ReserveDriverIdsThrough(const std::string& id);

  // Deletes free space, so they must work on a full disk: call before a delete's first write.
  // Releases the reserve file when the filesystem is nearly full, leaving room for SQLite.
  void MakeRoomForDelete();
  // Re-creates the reserve once there is room again (after deletes freed space). Cheap.
  void RestoreReserve();
  // Copies the database to `destination` (which must not exist: never replaced) with SQLite's
  // online backup: a consistent copy while the plugin keeps serving. The copy goes
  // `options.pages_per_step` pages at a time and releases the store's mutex between steps, so
  // calls proceed during the backup of a large store (their changes, made through this same
  // connection, are carried into the copy by SQLite).
  struct BackupOptions {
    int pages_per_step = 256;  // of the database's page size (4 KiB by default)
    // Called between steps, without the mutex (tests).
    std::function<void(int remaining_pages, int total_pages)> between_steps;
  };
  struct BackupResult {
    int64_t bytes = 0;
    int steps = 0;
  };
  absl::StatusOr<BackupResult> Backup(const std::string& destination, const BackupOptions& options);
  absl::Status Backup(const std::string& destination) {
    return Backup(destination, BackupOptions{}).status();
  }

  // Runs `body` in one IMMEDIATE transaction; commits when it returns OK, rolls back otherwise.
  // Calls made inside `body` join the transaction. Not reentrant across threads.
  absl::Status InTransaction(const std::function<absl::Status()>& body);

  // Like InTransaction, but the commit is written to the OS without waiting for the disk
  // (synchronous=NORMAL for this one commit): it survives a kill -9 of the process, not a power
  // loss. For intents of mount-path steps only, whose effect (a mount) dies with the kernel
  // just as such a commit can: see docs/architecture.md "What is durable when". The next
  // durable commit makes it durable too (the WAL is synced in order). Inside an open
  // transaction it joins that one, which is then as durable as its own commit.
  absl::Status InVolatileTransaction(const std::function<absl::Status()>& body);

  // How many commits were made durable (fsync of the WAL) since Open: a test and bench seam.
  int64_t durable_commits() const { return durable_commits_.load(); }

  // A fresh short driver id ("1", "2", ... in base 36): short ids keep overlay option strings
  // small. Never reused.
  absl::StatusOr<std::string> NewDriverId();

  absl::Status PutLayer(const LayerRecord& layer);
  absl::StatusOr<std::optional<LayerRecord>> GetLayer(const std::string& chain_id);
  absl::StatusOr<std::vector<LayerRecord>> ListLayers();
  absl::Status DeleteLayer(const std::string& chain_id);
  // The chain from `chain_id` down to its base, top first. NotFound if any link is missing.
  absl::StatusOr<std::vector<LayerRecord>> ChainOf(const std::string& chain_id);
  // How many images, volumes, snapshots and child layers refer to `chain_id`.
  absl::StatusOr<int> LayerReferences(const std::string& chain_id);

  absl::Status PutImage(const ImageRecord& image);
  absl::StatusOr<std::optional<ImageRecord>> GetImage(const std::string& name);
  absl::StatusOr<std::vector<ImageRecord>> ListImages();
  absl::Status DeleteImage(const std::string& name);

  absl::Status PutVolume(const VolumeRecord& volume);
  absl::StatusOr<std::optional<VolumeRecord>> GetVolume(const std::string& id);
  absl::StatusOr<std::optional<VolumeRecord>> GetVolumeByName(const std::string& name);
  absl::StatusOr<std::vector<VolumeRecord>> ListVolumes();  // ordered by id
  // One page of a keyset listing: up to `limit` volumes with id >= `from_id` in a state in
  // `states`, ordered by id. The cost is that of the page, not of the table.
  absl::StatusOr<std::vector<VolumeRecord>> ListVolumesFrom(const std::string& from_id,
                                                            const std::vector<std::string>& states,
                                                            int64_t limit);
  absl::Status DeleteVolume(const std::string& id);  // and its publications
  // The capacities of every volume in any state (one being made or deleted still holds its
  // promise): what the over-provisioning ratio is measured against.
  absl::StatusOr<int64_t> PromisedCapacityBytes();

  absl::Status PutSnapshot(const SnapshotRecord& snapshot);
  absl::StatusOr<std::optional<SnapshotRecord>> GetSnapshot(const std::string& id);
  absl::StatusOr<std::optional<SnapshotRecord>> GetSnapshotByName(const std::string& name);
  absl::StatusOr<std::vector<SnapshotRecord>> ListSnapshots();  // ordered by id
  // One page of a keyset listing: up to `limit` snapshots in `state` with id >= `from_id`,
  // of `source_volume_id` when it is not empty, ordered by id.
  absl::StatusOr<std::vector<SnapshotRecord>> ListSnapshotsFrom(const std::string& from_id,
                                                                const std::string& state,
                                                                const std::string& source_volume_id,
                                                                int64_t limit);
  absl::Status DeleteSnapshot(const std::string& id);

  // A group and its member rows, replaced together.
  absl::Status PutGroupSnapshot(const GroupSnapshotRecord& group);
  absl::StatusOr<std::optional<GroupSnapshotRecord>> GetGroupSnapshot(const std::string& id);
  absl::StatusOr<std::optional<GroupSnapshotRecord>> GetGroupSnapshotByName(
      const std::string& name);
  absl::Status DeleteGroupSnapshot(const std::string& id);  // the record, not the snapshots

  absl::Status PutPublication(const PublicationRecord& publication);
  absl::StatusOr<std::vector<PublicationRecord>> ListPublications(const std::string& volume_id);
  absl::Status DeletePublication(const std::string& volume_id, const std::string& target_path);

 public:
  class StatementCache;  // prepared statements for reuse (metadata.cc)

 private:
  Metadata(sqlite3* db, std::string path, int64_t reserve_bytes);
  absl::Status Migrate();

  std::recursive_mutex mutex_;  // recursive: calls inside InTransaction re-enter
  sqlite3* db_;
  std::unique_ptr<StatementCache> statements_;  // under mutex_
  bool volatile_commit_ = false;  // under mutex_: the open transaction commits without a sync
  std::atomic<int64_t> durable_commits_{0};
  std::string path_;
  int64_t reserve_bytes_;
  std::mutex reserve_mutex_;
};

}  // namespace strata::node
