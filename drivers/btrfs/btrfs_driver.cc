#include "drivers/btrfs/btrfs_driver.h"

#include <cerrno>
#include <cstdio>

#include "common/errno_status.h"
#include "common/status_macros.h"
#include "drivers/btrfs/btrfs_ops.h"
#include "drivers/copy_tree.h"
#include "drivers/fs_util.h"

namespace strata::drivers {
namespace {

// Removes whatever is at `path`: a subvolume (read-only or not) or a plain leftover (a crashed
// attempt from before the subvolume existed, or something else that took the name). Missing: OK.
absl::Status RemoveAnything(const std::string& path) {
  ASSIGN_OR_RETURN(bool subvolume, btrfs::IsSubvolume(path));
  if (subvolume) return btrfs::DeleteSubvolume(path);
  return RemoveTree(path);
}

absl::Status Rename(const std::string& from, const std::string& to) {
  if (rename(from.c_str(), to.c_str()) != 0) {
    return ErrnoStatus(errno, "rename", from + " -> " + to);
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status BtrfsSupported(const std::string& strata_root) {
  const std::string home = strata_root + "/btrfs";
  ASSIGN_OR_RETURN(bool home_exists, PathExists(home));
  return btrfs::CheckOnBtrfs(home_exists ? home : strata_root);
}

absl::StatusOr<std::unique_ptr<BtrfsDriver>> BtrfsDriver::Create(const std::string& strata_root) {
  if (strata_root.empty() || strata_root[0] != '/') {
    return absl::InvalidArgumentError("driver root must be an absolute path: " + strata_root);
  }
  RETURN_IF_ERROR(MakeDirs(strata_root));
  // Check before creating <root>/btrfs, so a refused driver leaves nothing behind.
  RETURN_IF_ERROR(BtrfsSupported(strata_root));
  std::unique_ptr<BtrfsDriver> driver(new BtrfsDriver(strata_root + "/btrfs"));
  RETURN_IF_ERROR(MakeDirs(driver->home_));
  RETURN_IF_ERROR(btrfs::CheckOnBtrfs(driver->home_));
  return driver;
}

DriverLimits BtrfsDriver::limits() const {
  DriverLimits limits;
  limits.max_chain_depth = kMaxChainDepth;
  limits.layers_are_full_trees = true;
  absl::StatusOr<btrfs::QuotaState> quota = btrfs::GetQuotaState(home_);
  limits.enforces_capacity = quota.ok() && quota->enabled;
  // Subvolumes share the filesystem; a qgroup limit is a promise, not a reservation.
  limits.thin_provisioned = limits.enforces_capacity;
  return limits;
}

absl::Status BtrfsDriver::Prepare(const std::string& id, const Chain& parents,
                                  const PrepareOptions& options) {
  RETURN_IF_ERROR(CheckIds({id}, "snapshot"));
  RETURN_IF_ERROR(CheckIds(parents, "parent layer"));
  if (options.capacity_bytes < 0) return absl::InvalidArgumentError("btrfs: negative capacity");
  ASSIGN_OR_RETURN(bool exists, PathExists(SubvolumePath(id)));
  if (exists) return absl::AlreadyExistsError("btrfs: " + id + " already exists");
  if (!parents.empty()) {
    const std::string top = SubvolumePath(parents[0]);
    ASSIGN_OR_RETURN(bool parent_exists, btrfs::IsSubvolume(top));
    if (!parent_exists) {
      return absl::NotFoundError("btrfs: parent layer " + parents[0] + " not found");
    }
    ASSIGN_OR_RETURN(bool parent_read_only, btrfs::IsReadOnly(top));
    if (!parent_read_only) {
      return absl::FailedPreconditionError("btrfs: parent " + parents[0] +
                                           " is an active snapshot, not a committed layer");
    }
  }
  ASSIGN_OR_RETURN(btrfs::QuotaState quota, btrfs::GetQuotaState(home_));
  const std::string final_path = SubvolumePath(id);
  if (!parents.empty() && !quota.enabled) {
    // A snapshot appears atomically and durably under its final name: what the temp-and-rename
    // dance gives plain directories, in one transaction commit.
    RETURN_IF_ERROR(RemoveAnything(home_ + "/" + TempName(id)));  // an older attempt's leftover
    return btrfs::CreateSnapshot(SubvolumePath(parents[0]), final_path, /*read_only=*/false);
  }
  // Otherwise there is a step after creation, done under the temp name so that an active under
  // its real name is always complete: a new subvolume takes its mode from the umask; with quotas
  // on, a snapshot starts with its source's limit (a layer frozen from a limited volume has
  // one), which must become this volume's capacity or none.
  const std::string temp = home_ + "/" + TempName(id);
  RETURN_IF_ERROR(RemoveAnything(temp));  // a crashed earlier attempt
  if (parents.empty()) {
    RETURN_IF_ERROR(btrfs::CreateSubvolume(temp));
  } else {
    RETURN_IF_ERROR(btrfs::CreateSnapshot(SubvolumePath(parents[0]), temp, /*read_only=*/false));
  }
  if (quota.enabled) {
    RETURN_IF_ERROR(btrfs::SetReferencedLimit(temp, static_cast<uint64_t>(options.capacity_bytes)));
  }
  RETURN_IF_ERROR(Rename(temp, final_path));
  return SyncDir(home_);
}

absl::StatusOr<bool> BtrfsDriver::Expand(const std::string& id, int64_t capacity_bytes,
                                         const std::string&) {
  RETURN_IF_ERROR(CheckIds({id}, "snapshot"));
  if (capacity_bytes <= 0) return absl::InvalidArgumentError("btrfs: capacity must be positive");
  const std::string path = SubvolumePath(id);
  ASSIGN_OR_RETURN(bool exists, btrfs::IsSubvolume(path));
  if (!exists) return absl::NotFoundError("btrfs: active snapshot " + id + " not found");
  ASSIGN_OR_RETURN(btrfs::QuotaState quota, btrfs::GetQuotaState(home_));
  if (!quota.enabled) return true;  // capacity is only recorded without quotas
  // Online: the kernel applies a new limit to the mounted subvolume at once.
  RETURN_IF_ERROR(btrfs::SetReferencedLimit(path, static_cast<uint64_t>(capacity_bytes)));
  return true;
}

absl::StatusOr<std::vector<sys::Mount>> BtrfsDriver::Mounts(const std::string& id,
                                                            const Chain& parents) {
  RETURN_IF_ERROR(CheckIds({id}, "snapshot"));
  RETURN_IF_ERROR(CheckIds(parents, "parent layer"));
  const std::string path = SubvolumePath(id);
  ASSIGN_OR_RETURN(bool exists, btrfs::IsSubvolume(path));
  if (!exists) return absl::NotFoundError("btrfs: active snapshot " + id + " not found");
  ASSIGN_OR_RETURN(bool read_only, btrfs::IsReadOnly(path));
  if (read_only) {
    return absl::FailedPreconditionError(
        "btrfs: " + id +
        " is read-only: a layer, or an active whose commit was interrupted "
        "(retry the commit)");
  }
  return std::vector<sys::Mount>{{"bind", path, {"rw"}}};
}

absl::StatusOr<std::vector<sys::Mount>> BtrfsDriver::View(const Chain& chain) {
  if (chain.empty()) return absl::InvalidArgumentError("btrfs: View of an empty chain");
  RETURN_IF_ERROR(CheckIds(chain, "layer"));
  ASSIGN_OR_RETURN(bool exists, btrfs::IsSubvolume(SubvolumePath(chain[0])));
  if (!exists) return absl::NotFoundError("btrfs: layer " + chain[0] + " not found");
  return std::vector<sys::Mount>{{"bind", SubvolumePath(chain[0]), {"ro"}}};
}

absl::StatusOr<ApplyTarget> BtrfsDriver::DirectWriteTarget(const std::string& id) {
  RETURN_IF_ERROR(CheckIds({id}, "snapshot"));
  ASSIGN_OR_RETURN(bool exists, btrfs::IsSubvolume(SubvolumePath(id)));
  if (!exists) return absl::NotFoundError("btrfs: active snapshot " + id + " not found");
  return ApplyTarget{SubvolumePath(id), WhiteoutStyle::kApply};
}

absl::Status BtrfsDriver::Commit(const std::string& layer_id, const std::string& id,
                                 const Chain& parents, CommitMode mode) {
  RETURN_IF_ERROR(CheckIds({layer_id, id}, "snapshot"));
  RETURN_IF_ERROR(CheckIds(parents, "parent layer"));
  if (layer_id == id) return absl::InvalidArgumentError("btrfs: layer id equals snapshot id");
  const std::string layer = SubvolumePath(layer_id);
  const std::string active = SubvolumePath(id);
  ASSIGN_OR_RETURN(bool layer_exists, PathExists(layer));
  ASSIGN_OR_RETURN(bool active_exists, btrfs::IsSubvolume(active));
  if (mode == CommitMode::kConsume) {
    // Freeze and rename rather than snapshot and delete: every state a crash can leave is
    // unambiguous and the retry just carries on. Writable active, no layer: not started.
    // Read-only active, no layer: frozen, finish the sync and rename. Layer, no active: done.
    // (Snapshot-and-delete would leave both a layer and its active behind, and telling "this
    // commit half-ran" from "the id is taken" would need uuid and transid comparisons.)
    if (layer_exists) {
      if (active_exists) return absl::AlreadyExistsError("btrfs: layer " + layer_id + " exists");
      return absl::OkStatus();  // the rename of an earlier attempt went through
    }
    if (!active_exists) return absl::NotFoundError("btrfs: active snapshot " + id + " not found");
    RETURN_IF_ERROR(btrfs::SetReadOnly(active, true));
    // Nothing can be written now; make what was written durable before the layer appears.
    RETURN_IF_ERROR(SyncFilesystem(active));
    RETURN_IF_ERROR(Rename(active, layer));
    return SyncDir(home_);
  }
  if (layer_exists) return absl::AlreadyExistsError("btrfs: layer " + layer_id + " exists");
  if (!active_exists) return absl::NotFoundError("btrfs: active snapshot " + id + " not found");
  // The kernel flushes the active's dirty data and makes the snapshot in a transaction commit:
  // a consistent point-in-time image of a live volume that appears atomically and durably under
  // its final name, so no temp name is needed (older attempts' leftovers are still cleaned).
  RETURN_IF_ERROR(RemoveAnything(home_ + "/" + TempName(layer_id)));
  return btrfs::CreateSnapshot(active, layer, /*read_only=*/true);
}

absl::Status BtrfsDriver::Remove(const std::string& id) {
  RETURN_IF_ERROR(CheckIds({id}, "snapshot"));
  // Deleting a subvolume is one transaction (its entry goes away atomically; the kernel frees
  // its blocks in the background), so unlike a directory tree it needs no ".del-" rename.
  RETURN_IF_ERROR(RemoveAnything(SubvolumePath(id)));
  RETURN_IF_ERROR(RemoveAnything(home_ + "/" + TempName(id)));
  return RemoveAnything(home_ + "/" + DeleteName(id));
}

absl::StatusOr<Usage> BtrfsDriver::GetUsage(const std::string& id) {
  RETURN_IF_ERROR(CheckIds({id}, "snapshot"));
  const std::string path = SubvolumePath(id);
  ASSIGN_OR_RETURN(bool exists, btrfs::IsSubvolume(path));
  if (!exists) return absl::NotFoundError("btrfs: " + id + " not found");
  ASSIGN_OR_RETURN(Usage usage, TreeUsage(path));
  ASSIGN_OR_RETURN(btrfs::QuotaState quota, btrfs::GetQuotaState(path));
  if (quota.enabled && quota.consistent) {
    absl::StatusOr<btrfs::QgroupUsage> qgroup = btrfs::GetQgroupUsage(path);
    if (qgroup.ok()) usage.bytes = static_cast<int64_t>(qgroup->referenced);
  }
  return usage;
}

absl::StatusOr<bool> BtrfsDriver::Exists(const std::string& id) {
  RETURN_IF_ERROR(CheckIds({id}, "snapshot"));
  return btrfs::IsSubvolume(SubvolumePath(id));
}

absl::StatusOr<std::vector<std::string>> BtrfsDriver::Walk() { return ListIds(home_); }

absl::StatusOr<int64_t> BtrfsDriver::FreeBytes() { return FreeBytesAt(home_); }

absl::StatusOr<int64_t> BtrfsDriver::TotalBytes() { return TotalBytesAt(home_); }

absl::StatusOr<ContentKind> BtrfsDriver::Quarantine(const std::string& id,
                                                    const std::string& dest) {
  RETURN_IF_ERROR(CheckIds({id}, "snapshot"));
  const std::string path = SubvolumePath(id);
  ASSIGN_OR_RETURN(bool exists, PathExists(path));
  if (!exists) {
    RETURN_IF_ERROR(Remove(id));  // ".tmp-"/".del-" leftovers only
    return absl::NotFoundError("btrfs: " + id + " not found");
  }
  ASSIGN_OR_RETURN(bool subvolume, btrfs::IsSubvolume(path));
  bool read_only = false;
  if (subvolume) {
    ASSIGN_OR_RETURN(read_only, btrfs::IsReadOnly(path));
  }
  // Renaming a subvolume is one metadata operation: nothing is copied. A read-only one cannot
  // change its parent directory (EROFS: its ".." would change), so it is writable for the move
  // only, and read-only again in quarantine.
  if (read_only) RETURN_IF_ERROR(btrfs::SetReadOnly(path, false));
  absl::Status moved = MoveEntryOut(home_, id, dest);
  if (read_only) RETURN_IF_ERROR(btrfs::SetReadOnly(moved.ok() ? dest : path, true));
  RETURN_IF_ERROR(moved);
  return read_only ? ContentKind::kLayer : ContentKind::kActive;
}

absl::Status BtrfsDriver::Unquarantine(const std::string& dest, ContentKind kind,
                                       const std::string& id) {
  ASSIGN_OR_RETURN(bool subvolume, btrfs::IsSubvolume(dest));
  bool want_read_only = false;
  if (subvolume) {
    ASSIGN_OR_RETURN(bool read_only, btrfs::IsReadOnly(dest));
    want_read_only = kind == ContentKind::kUnknown ? read_only : kind == ContentKind::kLayer;
    if (read_only) RETURN_IF_ERROR(btrfs::SetReadOnly(dest, false));
  }
  RETURN_IF_ERROR(MoveEntryIn(dest, home_, id));
  if (want_read_only) RETURN_IF_ERROR(btrfs::SetReadOnly(SubvolumePath(id), true));
  return absl::OkStatus();
}

absl::Status BtrfsDriver::PurgeQuarantined(const std::string& dest) { return RemoveAnything(dest); }

}  // namespace strata::drivers
