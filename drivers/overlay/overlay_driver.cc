#include "drivers/overlay/overlay_driver.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/errno_status.h"
#include "common/status_macros.h"
#include "drivers/copy_tree.h"
#include "drivers/fs_util.h"

namespace strata::drivers {
namespace {

constexpr long kOverlayfsSuperMagic = 0x794c7630;

bool ProcFilesystemsHasOverlay() {
  std::ifstream in("/proc/filesystems");
  std::string line;
  while (std::getline(in, line)) {
    if (line.size() >= 7 && line.compare(line.size() - 7, 7, "overlay") == 0 &&
        (line.size() == 7 || line[line.size() - 8] == '\t' || line[line.size() - 8] == ' ')) {
      return true;
    }
  }
  return false;
}

// Linux 6.8 added "lowerdir+"; the LinuxMounter uses classic mount(2) before that.
bool KernelNeedsLegacyMount() {
  struct utsname name;
  if (uname(&name) != 0) return true;
  int major = 0, minor = 0;
  if (sscanf(name.release, "%d.%d", &major, &minor) != 2) return true;
  return !(major > 6 || (major == 6 && minor >= 8));
}

constexpr int kLegacyOptionBytes = 4095;
constexpr int kMaxIdLength = 32;

}  // namespace

absl::Status OverlaySupported(const std::string& directory) {
  if (!ProcFilesystemsHasOverlay()) {
    // fsopen() makes the kernel load the overlay module if it is one.
    int fd = static_cast<int>(syscall(SYS_fsopen, "overlay", 0));
    if (fd >= 0) close(fd);
    if (!ProcFilesystemsHasOverlay()) {
      return absl::FailedPreconditionError(
          "overlay driver unavailable: the kernel has no overlay filesystem (not in "
          "/proc/filesystems, and loading the module failed)");
    }
  }
  struct statfs st;
  if (statfs(directory.c_str(), &st) != 0) return ErrnoStatus(errno, "statfs", directory);
  if (static_cast<long>(st.f_type) == kOverlayfsSuperMagic) {
    return absl::FailedPreconditionError("overlay driver unavailable: " + directory +
                                         " is on overlayfs, which cannot hold an upperdir");
  }
  return absl::OkStatus();
}

OverlayDriver::OverlayDriver(std::string home, bool legacy_mount)
    : home_(std::move(home)),
      layers_(home_ + "/layers"),
      active_(home_ + "/active"),
      max_chain_depth_(legacy_mount ? std::min(kMaxLowerLayers, LegacyMaxChainDepth())
                                    : kMaxLowerLayers) {}

int OverlayDriver::LegacyMaxChainDepth() const {
  // "lowerdir=" ids joined by ':' + ",upperdir=<upper>,workdir=<work>,index=off" (see Mounts).
  const std::string worst_id(kMaxIdLength, 'x');
  const int fixed = static_cast<int>(
      std::string("lowerdir=").size() + (",upperdir=" + UpperPath(worst_id)).size() +
      (",workdir=" + WorkPath(worst_id)).size() + std::string(",index=off").size());
  return std::max(0, (kLegacyOptionBytes - fixed + 1) / (kMaxIdLength + 1));
}

absl::StatusOr<std::unique_ptr<OverlayDriver>> OverlayDriver::Create(
    const std::string& strata_root, const OverlayDriverOptions& options) {
  if (strata_root.empty() || strata_root[0] != '/') {
    return absl::InvalidArgumentError("driver root must be an absolute path: " + strata_root);
  }
  bool legacy = options.legacy_mount.value_or(KernelNeedsLegacyMount());
  std::unique_ptr<OverlayDriver> driver(new OverlayDriver(strata_root + "/overlay", legacy));
  RETURN_IF_ERROR(MakeDirs(driver->layers_));
  RETURN_IF_ERROR(MakeDirs(driver->active_));
  driver->quotas_ =
      std::make_unique<DirectoryQuotas>(options.project_quota, driver->active_, "overlay");
  return driver;
}

DriverLimits OverlayDriver::limits() const {
  DriverLimits limits;
  limits.max_chain_depth = max_chain_depth_;
  limits.layers_are_full_trees = false;
  limits.enforces_capacity = quotas_->enforced();
  // Project limits are promises on a shared filesystem, not reservations.
  limits.thin_provisioned = limits.enforces_capacity;
  return limits;
}

absl::Status OverlayDriver::CheckChain(const Chain& chain, const std::string& what) const {
  RETURN_IF_ERROR(CheckIds(chain, what));
  if (chain.size() > static_cast<size_t>(max_chain_depth_)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "chain of ", chain.size(), " layers is deeper than the overlay driver's limit of ",
        max_chain_depth_,
        max_chain_depth_ == kMaxLowerLayers
            ? " (the kernel's overlayfs maximum of lower layers)"
            : " (what one page of classic mount(2) options holds; Linux >= 6.8 allows 500)"));
  }
  return absl::OkStatus();
}

absl::Status OverlayDriver::Prepare(const std::string& id, const Chain& parents,
                                    const PrepareOptions& options) {
  RETURN_IF_ERROR(CheckIds({id}, "snapshot"));
  RETURN_IF_ERROR(CheckChain(parents, "parent layer"));
  ASSIGN_OR_RETURN(bool active_exists, PathExists(ActivePath(id)));
  ASSIGN_OR_RETURN(bool layer_exists, PathExists(LayerPath(id)));
  if (active_exists || layer_exists) {
    return absl::AlreadyExistsError("overlay: " + id + " already exists");
  }
  for (const std::string& parent : parents) {
    ASSIGN_OR_RETURN(bool exists, PathExists(LayerPath(parent)));
    if (!exists) return absl::NotFoundError("overlay: parent layer " + parent + " not found");
  }
  const std::string temp = active_ + "/" + TempName(id);
  RETURN_IF_ERROR(RemoveTree(temp));  // a crashed earlier attempt
  RETURN_IF_ERROR(MakeDirs(temp, 0700));
  // Before upper and work exist, so both inherit the project: overlayfs copies up through
  // work into upper, and xfs refuses a rename between different projects (EXDEV).
  RETURN_IF_ERROR(quotas_->Limit(temp, id, options.capacity_bytes));
  if (mkdir((temp + "/upper").c_str(), 0755) != 0) return ErrnoStatus(errno, "mkdir", temp);
  if (mkdir((temp + "/work").c_str(), 0700) != 0) return ErrnoStatus(errno, "mkdir", temp);
  if (rename(temp.c_str(), ActivePath(id).c_str()) != 0) {
    return ErrnoStatus(errno, "rename", temp);
  }
  return SyncDir(active_);
}

absl::StatusOr<std::vector<sys::Mount>> OverlayDriver::Mounts(const std::string& id,
                                                              const Chain& parents) {
  RETURN_IF_ERROR(CheckIds({id}, "snapshot"));
  RETURN_IF_ERROR(CheckChain(parents, "parent layer"));
  ASSIGN_OR_RETURN(bool exists, PathExists(UpperPath(id)));
  if (!exists) return absl::NotFoundError("overlay: active snapshot " + id + " not found");
  if (parents.empty()) return std::vector<sys::Mount>{{"bind", UpperPath(id), {"rw"}}};
  sys::Mount mount{"overlay", "overlay", {}};
  for (const std::string& parent : parents) {
    mount.options.push_back("lowerdir+=" + LayerPath(parent));
  }
  mount.options.push_back("upperdir=" + UpperPath(id));
  mount.options.push_back("workdir=" + WorkPath(id));
  // Layers are shared by many overlays; the inode index would tie a lower to one upper.
  mount.options.push_back("index=off");
  return std::vector<sys::Mount>{mount};
}

absl::StatusOr<std::vector<sys::Mount>> OverlayDriver::View(const Chain& chain) {
  if (chain.empty()) return absl::InvalidArgumentError("overlay: View of an empty chain");
  RETURN_IF_ERROR(CheckChain(chain, "layer"));
  if (chain.size() == 1) {
    return std::vector<sys::Mount>{{"bind", LayerPath(chain[0]), {"ro"}}};
  }
  sys::Mount mount{"overlay", "overlay", {}};
  for (const std::string& layer : chain) mount.options.push_back("lowerdir+=" + LayerPath(layer));
  mount.options.push_back("ro");
  return std::vector<sys::Mount>{mount};
}

absl::StatusOr<ApplyTarget> OverlayDriver::DirectWriteTarget(const std::string& id) {
  RETURN_IF_ERROR(CheckIds({id}, "snapshot"));
  ASSIGN_OR_RETURN(bool exists, PathExists(UpperPath(id)));
  if (!exists) return absl::NotFoundError("overlay: active snapshot " + id + " not found");
  return ApplyTarget{UpperPath(id), WhiteoutStyle::kOverlay};
}

absl::Status OverlayDriver::Commit(const std::string& layer_id, const std::string& id,
                                   const Chain& parents, CommitMode mode) {
  RETURN_IF_ERROR(CheckIds({layer_id, id}, "snapshot"));
  RETURN_IF_ERROR(CheckChain(parents, "parent layer"));
  if (layer_id == id) return absl::InvalidArgumentError("overlay: layer id equals snapshot id");
  const std::string layer = LayerPath(layer_id);
  const std::string upper = UpperPath(id);
  ASSIGN_OR_RETURN(bool layer_exists, PathExists(layer));
  ASSIGN_OR_RETURN(bool upper_exists, PathExists(upper));
  if (mode == CommitMode::kConsume) {
    if (layer_exists) {
      if (upper_exists) return absl::AlreadyExistsError("overlay: layer " + layer_id + " exists");
      // An earlier attempt renamed the upper and stopped before removing the rest: finish.
      return RemoveEntry(active_, id);
    }
    if (!upper_exists) return absl::NotFoundError("overlay: active snapshot " + id + " not found");
    RETURN_IF_ERROR(SyncFilesystem(upper));
    if (rename(upper.c_str(), layer.c_str()) != 0) return ErrnoStatus(errno, "rename", upper);
    RETURN_IF_ERROR(SyncDir(layers_));
    return RemoveEntry(active_, id);
  }
  if (layer_exists) return absl::AlreadyExistsError("overlay: layer " + layer_id + " exists");
  if (!upper_exists) return absl::NotFoundError("overlay: active snapshot " + id + " not found");
  // The active may be mounted and in use: only read its upper. syncfs first so that what the
  // overlay wrote through is on disk before we read and copy it.
  RETURN_IF_ERROR(SyncFilesystem(upper));
  const std::string temp = layers_ + "/" + TempName(layer_id);
  RETURN_IF_ERROR(RemoveTree(temp));
  RETURN_IF_ERROR(CopyTree(upper, temp));
  RETURN_IF_ERROR(SyncFilesystem(temp));
  if (rename(temp.c_str(), layer.c_str()) != 0) return ErrnoStatus(errno, "rename", temp);
  return SyncDir(layers_);
}

absl::Status OverlayDriver::Remove(const std::string& id) {
  RETURN_IF_ERROR(CheckIds({id}, "snapshot"));
  RETURN_IF_ERROR(RemoveEntry(layers_, id));
  const bool limited = quotas_->Owns(ActivePath(id), id).value_or(false);
  RETURN_IF_ERROR(RemoveEntry(active_, id));
  if (limited) quotas_->Release(id);
  return absl::OkStatus();
}

absl::StatusOr<bool> OverlayDriver::Expand(const std::string& id, int64_t capacity_bytes,
                                           const std::string&) {
  RETURN_IF_ERROR(CheckIds({id}, "snapshot"));
  if (capacity_bytes <= 0) return absl::InvalidArgumentError("overlay: capacity must be positive");
  ASSIGN_OR_RETURN(bool exists, PathExists(UpperPath(id)));
  if (!exists) return absl::NotFoundError("overlay: active snapshot " + id + " not found");
  RETURN_IF_ERROR(quotas_->Raise(ActivePath(id), id, capacity_bytes));
  return true;  // a quota applies to the mounted overlay at once: nothing waits for a mount
}

absl::StatusOr<Usage> OverlayDriver::GetUsage(const std::string& id) {
  RETURN_IF_ERROR(CheckIds({id}, "snapshot"));
  ASSIGN_OR_RETURN(bool is_layer, PathExists(LayerPath(id)));
  if (is_layer) return TreeUsage(LayerPath(id));
  ASSIGN_OR_RETURN(bool is_active, PathExists(UpperPath(id)));
  if (!is_active) return absl::NotFoundError("overlay: " + id + " not found");
  ASSIGN_OR_RETURN(std::optional<Usage> quota, quotas_->UsageOf(ActivePath(id), id));
  if (quota) return *quota;
  return TreeUsage(UpperPath(id));
}

absl::StatusOr<bool> OverlayDriver::Exists(const std::string& id) {
  RETURN_IF_ERROR(CheckIds({id}, "snapshot"));
  ASSIGN_OR_RETURN(bool is_layer, PathExists(LayerPath(id)));
  if (is_layer) return true;
  return PathExists(UpperPath(id));
}

absl::StatusOr<std::vector<std::string>> OverlayDriver::Walk() {
  ASSIGN_OR_RETURN(std::vector<std::string> ids, ListIds(layers_));
  ASSIGN_OR_RETURN(std::vector<std::string> active, ListIds(active_));
  ids.insert(ids.end(), active.begin(), active.end());
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

absl::StatusOr<int64_t> OverlayDriver::FreeBytes() { return FreeBytesAt(home_); }

absl::StatusOr<int64_t> OverlayDriver::TotalBytes() { return TotalBytesAt(home_); }

absl::StatusOr<ContentKind> OverlayDriver::Quarantine(const std::string& id,
                                                      const std::string& dest) {
  // A layer folder holds the diff itself; an active one holds {upper,work}: moved whole.
  absl::Status layer = MoveEntryOut(layers_, id, dest);
  if (layer.ok()) return ContentKind::kLayer;
  if (!absl::IsNotFound(layer)) return layer;
  RETURN_IF_ERROR(MoveEntryOut(active_, id, dest));
  return ContentKind::kActive;
}

absl::Status OverlayDriver::Unquarantine(const std::string& dest, ContentKind kind,
                                         const std::string& id) {
  if (kind == ContentKind::kUnknown) {
    ASSIGN_OR_RETURN(bool has_upper, PathExists(dest + "/upper"));
    kind = has_upper ? ContentKind::kActive : ContentKind::kLayer;
  }
  return MoveEntryIn(dest, kind == ContentKind::kLayer ? layers_ : active_, id);
}

absl::Status OverlayDriver::PurgeQuarantined(const std::string& dest) { return RemoveTree(dest); }

}  // namespace strata::drivers
