#pragma once
// The btrfs driver: every layer is a read-only btrfs subvolume holding its complete tree, every
// active snapshot a writable one. Prepare snapshots the chain's top layer and Commit snapshots or
// freezes the active, so neither copies data; mounts are plain binds of one subvolume. Needs the
// driver's directory (<strata root>/btrfs) on btrfs, and root (CAP_SYS_ADMIN).
//
// Layout (docs/drivers/btrfs.md). Layers and actives share one directory so a read-only
// subvolume can be renamed into place (btrfs refuses to move a read-only subvolume to another
// directory, because that would rewrite its ".." entry):
//   <strata root>/btrfs/<id>        a layer (read-only subvolume) or an active (writable one)
//   <strata root>/btrfs/.tmp-<id>   a subvolume being set up (crash leftover if it stays); a
//                                   snapshot needing no set-up is made under its final name
//   <strata root>/btrfs/.del-<id>   not made by this driver; removed like any leftover

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "drivers/driver.h"

namespace strata::drivers {

// OK when the btrfs driver can keep its content under `strata_root`: <strata_root>/btrfs if it
// exists, else `strata_root` itself, is on btrfs. FailedPrecondition naming the path, the
// filesystem found there and what to do otherwise.
absl::Status BtrfsSupported(const std::string& strata_root);

class BtrfsDriver : public Driver {
 public:
  // Mounting costs nothing per layer (only the top subvolume is mounted); a sanity cap only.
  static constexpr int kMaxChainDepth = 1 << 20;

  // `strata_root` is Strata's --root; content lives in <strata_root>/btrfs, which must be on
  // btrfs (FailedPrecondition otherwise, see BtrfsSupported). Creates the directory.
  static absl::StatusOr<std::unique_ptr<BtrfsDriver>> Create(const std::string& strata_root);

  std::string_view name() const override { return "btrfs"; }
  // layers_are_full_trees; enforces_capacity while quotas are enabled on the filesystem (read
  // on every call, so enabling quotas later takes effect for volumes prepared afterwards).
  DriverLimits limits() const override;

  // A writable snapshot of parents[0] (empty parents: a new empty subvolume, mode 0755). With
  // quotas on, its qgroup's referenced-bytes limit is set to capacity_bytes (0: none) under the
  // temp name .tmp-<id> before the rename; with quotas off a snapshot is made under its final
  // name directly (it appears atomically).
  absl::Status Prepare(const std::string& id, const Chain& parents,
                       const PrepareOptions& options) override;
  // A read-write bind of the active's subvolume. FailedPrecondition if it is read-only (a layer,
  // or an active whose kConsume commit was interrupted: retry the commit).
  absl::StatusOr<std::vector<sys::Mount>> Mounts(const std::string& id,
                                                 const Chain& parents) override;
  // A read-only bind of chain[0]'s subvolume.
  absl::StatusOr<std::vector<sys::Mount>> View(const Chain& chain) override;
  // The active's subvolume, WhiteoutStyle::kApply.
  absl::StatusOr<ApplyTarget> DirectWriteTarget(const std::string& id) override;
  // kKeep: a read-only snapshot of the active, made under its final name; the active stays
  // mounted and writable. kConsume: the active is made read-only, synced and
  // renamed to layer_id. Both are O(1) in the amount of data.
  absl::Status Commit(const std::string& layer_id, const std::string& id, const Chain& parents,
                      CommitMode mode) override;
  // Deletes the subvolume (read-only or not, nested subvolumes included) and any leftovers.
  absl::Status Remove(const std::string& id) override;
  // inodes: from a walk of the subvolume. bytes: the subvolume's qgroup "referenced" bytes when
  // quotas are on and consistent (exact, shared extents once, compressed size; as of the last
  // transaction commit), else allocated blocks from the walk (st_blocks * 512; extents shared
  // with other subvolumes count in each).
  absl::StatusOr<Usage> GetUsage(const std::string& id) override;
  absl::StatusOr<std::vector<std::string>> Walk() override;
  absl::StatusOr<bool> Exists(const std::string& id) override;
  // statvfs f_bavail of the filesystem: an estimate on btrfs (see docs/drivers/btrfs.md).
  absl::StatusOr<int64_t> FreeBytes() override;
  absl::StatusOr<int64_t> TotalBytes() override;
  // With quotas on, sets the subvolume's referenced-bytes limit to `capacity_bytes`.
  absl::StatusOr<bool> Expand(const std::string& id, int64_t capacity_bytes,
                              const std::string& mount_point) override;
  absl::StatusOr<ContentKind> Quarantine(const std::string& id, const std::string& dest) override;
  absl::Status Unquarantine(const std::string& dest, ContentKind kind,
                            const std::string& id) override;
  absl::Status PurgeQuarantined(const std::string& dest) override;

  std::string SubvolumePath(const std::string& id) const { return home_ + "/" + id; }
  const std::string& home() const { return home_; }

 private:
  explicit BtrfsDriver(std::string home) : home_(std::move(home)) {}

  const std::string home_;  // <strata root>/btrfs
};

}  // namespace strata::drivers
