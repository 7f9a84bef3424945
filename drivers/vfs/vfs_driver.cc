#include "drivers/vfs/vfs_driver.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstdio>

#include "common/errno_status.h"
#include "common/status_macros.h"
#include "drivers/copy_tree.h"
#include "drivers/fs_util.h"

namespace strata::drivers {

absl::StatusOr<std::unique_ptr<VfsDriver>> VfsDriver::Create(
    const std::string& strata_root, std::shared_ptr<ProjectQuota> project_quota) {
  if (strata_root.empty() || strata_root[0] != '/') {
    return absl::InvalidArgumentError("driver root must be an absolute path: " + strata_root);
  }
  std::unique_ptr<VfsDriver> driver(new VfsDriver(strata_root + "/vfs"));
  RETURN_IF_ERROR(MakeDirs(driver->home_));
  driver->quotas_ =
      std::make_unique<DirectoryQuotas>(std::move(project_quota), driver->home_, "vfs");
  return driver;
}

DriverLimits VfsDriver::limits() const {
  DriverLimits limits;
  limits.max_chain_depth = kMaxChainDepth;
  limits.layers_are_full_trees = true;
  limits.enforces_capacity = quotas_->enforced();
  limits.thin_provisioned = limits.enforces_capacity;
  return limits;
}

absl::Status VfsDriver::Prepare(const std::string& id, const Chain& parents,
                                const PrepareOptions& options) {
  RETURN_IF_ERROR(CheckIds({id}, "snapshot"));
  RETURN_IF_ERROR(CheckIds(parents, "parent layer"));
  ASSIGN_OR_RETURN(bool exists, PathExists(TreePath(id)));
  if (exists) return absl::AlreadyExistsError("vfs: " + id + " already exists");
  if (!parents.empty()) {
    ASSIGN_OR_RETURN(bool parent_exists, PathExists(TreePath(parents[0])));
    if (!parent_exists) {
      return absl::NotFoundError("vfs: parent layer " + parents[0] + " not found");
    }
  }
  const std::string temp = home_ + "/" + TempName(id);
  RETURN_IF_ERROR(RemoveTree(temp));  // a crashed earlier attempt
  if (parents.empty()) {
    if (mkdir(temp.c_str(), 0755) != 0) return ErrnoStatus(errno, "mkdir", temp);
    if (chmod(temp.c_str(), 0755) != 0) return ErrnoStatus(errno, "chmod", temp);  // umask
  } else {
    RETURN_IF_ERROR(CopyTree(TreePath(parents[0]), temp));
  }
  // After the copy (CopyTree makes `temp` itself): the project is set on every file, which
  // charges them to it, and PROJINHERIT on every directory for what the pod writes.
  RETURN_IF_ERROR(quotas_->Limit(temp, id, options.capacity_bytes));
  if (!parents.empty()) RETURN_IF_ERROR(SyncFilesystem(temp));
  if (rename(temp.c_str(), TreePath(id).c_str()) != 0) return ErrnoStatus(errno, "rename", temp);
  return SyncDir(home_);
}

absl::StatusOr<std::vector<sys::Mount>> VfsDriver::Mounts(const std::string& id,
                                                          const Chain& parents) {
  RETURN_IF_ERROR(CheckIds({id}, "snapshot"));
  RETURN_IF_ERROR(CheckIds(parents, "parent layer"));
  ASSIGN_OR_RETURN(bool exists, PathExists(TreePath(id)));
  if (!exists) return absl::NotFoundError("vfs: active snapshot " + id + " not found");
  return std::vector<sys::Mount>{{"bind", TreePath(id), {"rw"}}};
}

absl::StatusOr<std::vector<sys::Mount>> VfsDriver::View(const Chain& chain) {
  if (chain.empty()) return absl::InvalidArgumentError("vfs: View of an empty chain");
  RETURN_IF_ERROR(CheckIds(chain, "layer"));
  ASSIGN_OR_RETURN(bool exists, PathExists(TreePath(chain[0])));
  if (!exists) return absl::NotFoundError("vfs: layer " + chain[0] + " not found");
  return std::vector<sys::Mount>{{"bind", TreePath(chain[0]), {"ro"}}};
}

absl::StatusOr<ApplyTarget> VfsDriver::DirectWriteTarget(const std::string& id) {
  RETURN_IF_ERROR(CheckIds({id}, "snapshot"));
  ASSIGN_OR_RETURN(bool exists, PathExists(TreePath(id)));
  if (!exists) return absl::NotFoundError("vfs: active snapshot " + id + " not found");
  return ApplyTarget{TreePath(id), WhiteoutStyle::kApply};
}

absl::Status VfsDriver::Commit(const std::string& layer_id, const std::string& id,
                               const Chain& parents, CommitMode mode) {
  RETURN_IF_ERROR(CheckIds({layer_id, id}, "snapshot"));
  RETURN_IF_ERROR(CheckIds(parents, "parent layer"));
  if (layer_id == id) return absl::InvalidArgumentError("vfs: layer id equals snapshot id");
  const std::string layer = TreePath(layer_id);
  const std::string tree = TreePath(id);
  ASSIGN_OR_RETURN(bool layer_exists, PathExists(layer));
  ASSIGN_OR_RETURN(bool tree_exists, PathExists(tree));
  if (mode == CommitMode::kConsume) {
    if (layer_exists) {
      if (tree_exists) return absl::AlreadyExistsError("vfs: layer " + layer_id + " exists");
      return absl::OkStatus();  // the rename of an earlier attempt went through
    }
    if (!tree_exists) return absl::NotFoundError("vfs: active snapshot " + id + " not found");
    RETURN_IF_ERROR(SyncFilesystem(tree));
    if (rename(tree.c_str(), layer.c_str()) != 0) return ErrnoStatus(errno, "rename", tree);
    return SyncDir(home_);
  }
  if (layer_exists) return absl::AlreadyExistsError("vfs: layer " + layer_id + " exists");
  if (!tree_exists) return absl::NotFoundError("vfs: active snapshot " + id + " not found");
  const std::string temp = home_ + "/" + TempName(layer_id);
  RETURN_IF_ERROR(RemoveTree(temp));
  RETURN_IF_ERROR(CopyTree(tree, temp));
  RETURN_IF_ERROR(SyncFilesystem(temp));
  if (rename(temp.c_str(), layer.c_str()) != 0) return ErrnoStatus(errno, "rename", temp);
  return SyncDir(home_);
}

absl::Status VfsDriver::Remove(const std::string& id) {
  RETURN_IF_ERROR(CheckIds({id}, "snapshot"));
  const bool limited = quotas_->Owns(TreePath(id), id).value_or(false);
  RETURN_IF_ERROR(RemoveEntry(home_, id));
  if (limited) quotas_->Release(id);
  return absl::OkStatus();
}

absl::StatusOr<bool> VfsDriver::Expand(const std::string& id, int64_t capacity_bytes,
                                       const std::string&) {
  RETURN_IF_ERROR(CheckIds({id}, "snapshot"));
  if (capacity_bytes <= 0) return absl::InvalidArgumentError("vfs: capacity must be positive");
  ASSIGN_OR_RETURN(bool exists, PathExists(TreePath(id)));
  if (!exists) return absl::NotFoundError("vfs: active snapshot " + id + " not found");
  RETURN_IF_ERROR(quotas_->Raise(TreePath(id), id, capacity_bytes));
  return true;
}

absl::StatusOr<Usage> VfsDriver::GetUsage(const std::string& id) {
  RETURN_IF_ERROR(CheckIds({id}, "snapshot"));
  ASSIGN_OR_RETURN(bool exists, PathExists(TreePath(id)));
  if (!exists) return absl::NotFoundError("vfs: " + id + " not found");
  ASSIGN_OR_RETURN(std::optional<Usage> quota, quotas_->UsageOf(TreePath(id), id));
  if (quota) return *quota;
  return TreeUsage(TreePath(id));
}

absl::StatusOr<bool> VfsDriver::Exists(const std::string& id) {
  RETURN_IF_ERROR(CheckIds({id}, "snapshot"));
  return PathExists(TreePath(id));
}

absl::StatusOr<std::vector<std::string>> VfsDriver::Walk() { return ListIds(home_); }

absl::StatusOr<int64_t> VfsDriver::FreeBytes() { return FreeBytesAt(home_); }

absl::StatusOr<int64_t> VfsDriver::TotalBytes() { return TotalBytesAt(home_); }

absl::StatusOr<ContentKind> VfsDriver::Quarantine(const std::string& id, const std::string& dest) {
  RETURN_IF_ERROR(MoveEntryOut(home_, id, dest));
  return ContentKind::kUnknown;  // layers and active snapshots are the same full trees
}

absl::Status VfsDriver::Unquarantine(const std::string& dest, ContentKind, const std::string& id) {
  return MoveEntryIn(dest, home_, id);
}

absl::Status VfsDriver::PurgeQuarantined(const std::string& dest) { return RemoveTree(dest); }

}  // namespace strata::drivers
