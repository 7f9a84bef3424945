#include "drivers/btrfs/btrfs_ops.h"

#include <btrfsutil.h>
#include <endian.h>
#include <fcntl.h>
#include <linux/btrfs.h>
#include <linux/btrfs_tree.h>
#include <linux/magic.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_format.h"
#include "common/errno_status.h"
#include "common/status_macros.h"
#include "common/unique_fd.h"

namespace strata::drivers::btrfs {
namespace {

// libbtrfsutil reports its own error code and leaves the failing syscall's errno in errno.
absl::Status UtilStatus(enum btrfs_util_error error, const char* what, const std::string& path) {
  const int saved_errno = errno;
  const std::string message = std::string(what) + " (" + btrfs_util_strerror(error) + ")";
  switch (error) {
    case BTRFS_UTIL_ERROR_NOT_BTRFS:
      return absl::FailedPreconditionError(message + ": " + path + " is not on btrfs");
    case BTRFS_UTIL_ERROR_NOT_SUBVOLUME:
      return absl::FailedPreconditionError(message + ": " + path + " is not a btrfs subvolume");
    case BTRFS_UTIL_ERROR_SUBVOLUME_NOT_FOUND:
      return absl::NotFoundError(message + ": " + path);
    default:
      break;
  }
  if (saved_errno != 0) return ErrnoStatus(saved_errno, message, path);
  return absl::InternalError(message + ": " + path);
}

std::string Hex(const uint8_t (&bytes)[16]) {
  std::string out;
  for (uint8_t byte : bytes) out += absl::StrFormat("%02x", byte);
  return out;
}

std::string FilesystemName(long type) {
  switch (static_cast<unsigned long>(type)) {
    case EXT4_SUPER_MAGIC:
      return "ext2/3/4";
    case XFS_SUPER_MAGIC:
      return "xfs";
    case TMPFS_MAGIC:
      return "tmpfs";
    case OVERLAYFS_SUPER_MAGIC:
      return "overlayfs";
    case NFS_SUPER_MAGIC:
      return "nfs";
    default:
      return absl::StrFormat("filesystem type 0x%x", static_cast<unsigned long>(type));
  }
}

// Reads the quota tree item with key (0, `type`, `offset`) into `item`. False when the item (or
// the whole quota tree: quotas never enabled, or disabled since) does not exist.
absl::StatusOr<bool> ReadQuotaItem(const std::string& path, uint32_t type, uint64_t offset,
                                   void* item, size_t size) {
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0) return ErrnoStatus(errno, "open", path);
  btrfs_ioctl_search_args args;
  std::memset(&args, 0, sizeof(args));
  args.key.tree_id = BTRFS_QUOTA_TREE_OBJECTID;
  args.key.min_objectid = args.key.max_objectid = 0;
  args.key.min_type = args.key.max_type = type;
  args.key.min_offset = args.key.max_offset = offset;
  args.key.min_transid = 0;
  args.key.max_transid = UINT64_MAX;
  args.key.nr_items = 1;
  if (ioctl(fd.get(), BTRFS_IOC_TREE_SEARCH, &args) != 0) {
    if (errno == ENOENT) return false;  // no quota tree
    return ErrnoStatus(errno, "BTRFS_IOC_TREE_SEARCH (quota tree)", path);
  }
  if (args.key.nr_items == 0) return false;
  btrfs_ioctl_search_header header;
  std::memcpy(&header, args.buf, sizeof(header));
  if (header.type != type || header.offset != offset || header.objectid != 0) return false;
  std::memset(item, 0, size);
  std::memcpy(item, args.buf + sizeof(header), std::min<size_t>(size, header.len));
  return true;
}

absl::StatusOr<uint64_t> SubvolumeId(const std::string& path) {
  uint64_t id = 0;
  enum btrfs_util_error error = btrfs_util_subvolume_id(path.c_str(), &id);
  if (error != BTRFS_UTIL_OK) return UtilStatus(error, "btrfs_util_subvolume_id", path);
  return id;
}

}  // namespace

absl::Status CheckOnBtrfs(const std::string& path) {
  struct statfs st;
  if (statfs(path.c_str(), &st) != 0) return ErrnoStatus(errno, "statfs", path);
  if (static_cast<unsigned long>(st.f_type) == BTRFS_SUPER_MAGIC) return absl::OkStatus();
  return absl::FailedPreconditionError(
      "btrfs driver unavailable: " + path + " is on " + FilesystemName(st.f_type) +
      ", not btrfs; mount a btrfs filesystem there (or put --root on one), or pick another "
      "--driver (overlay, vfs)");
}

absl::StatusOr<bool> IsSubvolume(const std::string& path) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return false;
    return ErrnoStatus(errno, "stat", path);
  }
  // A subvolume root is always inode 256 (BTRFS_FIRST_FREE_OBJECTID), which is also what
  // btrfs_util_is_subvolume checks after its statfs.
  if (!S_ISDIR(st.st_mode)) return false;
  enum btrfs_util_error error = btrfs_util_is_subvolume(path.c_str());
  if (error == BTRFS_UTIL_OK) return true;
  if (error == BTRFS_UTIL_ERROR_NOT_SUBVOLUME) return false;
  return UtilStatus(error, "btrfs_util_is_subvolume", path);
}

absl::Status CreateSubvolume(const std::string& path) {
  enum btrfs_util_error error = btrfs_util_create_subvolume(path.c_str(), 0, nullptr, nullptr);
  if (error != BTRFS_UTIL_OK) return UtilStatus(error, "btrfs_util_create_subvolume", path);
  if (chmod(path.c_str(), 0755) != 0) return ErrnoStatus(errno, "chmod", path);
  return absl::OkStatus();
}

absl::Status CreateSnapshot(const std::string& source, const std::string& path, bool read_only) {
  int flags = read_only ? BTRFS_UTIL_CREATE_SNAPSHOT_READ_ONLY : 0;
  enum btrfs_util_error error =
      btrfs_util_create_snapshot(source.c_str(), path.c_str(), flags, nullptr, nullptr);
  if (error != BTRFS_UTIL_OK) {
    return UtilStatus(error, "btrfs_util_create_snapshot", source + " -> " + path);
  }
  return absl::OkStatus();
}

absl::Status DeleteSubvolume(const std::string& path) {
  enum btrfs_util_error error =
      btrfs_util_delete_subvolume(path.c_str(), BTRFS_UTIL_DELETE_SUBVOLUME_RECURSIVE);
  if (error != BTRFS_UTIL_OK) return UtilStatus(error, "btrfs_util_delete_subvolume", path);
  return absl::OkStatus();
}

absl::StatusOr<bool> IsReadOnly(const std::string& path) {
  bool read_only = false;
  enum btrfs_util_error error = btrfs_util_get_subvolume_read_only(path.c_str(), &read_only);
  if (error != BTRFS_UTIL_OK) {
    return UtilStatus(error, "btrfs_util_get_subvolume_read_only", path);
  }
  return read_only;
}

absl::Status SetReadOnly(const std::string& path, bool read_only) {
  enum btrfs_util_error error = btrfs_util_set_subvolume_read_only(path.c_str(), read_only);
  if (error != BTRFS_UTIL_OK) {
    return UtilStatus(error, "btrfs_util_set_subvolume_read_only", path);
  }
  return absl::OkStatus();
}

absl::StatusOr<SubvolumeInfo> GetSubvolumeInfo(const std::string& path) {
  struct btrfs_util_subvolume_info raw;
  enum btrfs_util_error error = btrfs_util_subvolume_info(path.c_str(), 0, &raw);
  if (error != BTRFS_UTIL_OK) return UtilStatus(error, "btrfs_util_subvolume_info", path);
  SubvolumeInfo info;
  info.id = raw.id;
  info.read_only = (raw.flags & BTRFS_ROOT_SUBVOL_RDONLY) != 0;
  info.uuid = Hex(raw.uuid);
  static const uint8_t kZero[16] = {};
  info.is_snapshot = std::memcmp(raw.parent_uuid, kZero, sizeof(kZero)) != 0;
  if (info.is_snapshot) info.parent_uuid = Hex(raw.parent_uuid);
  info.otransid = raw.otransid;
  return info;
}

absl::StatusOr<QuotaState> GetQuotaState(const std::string& path) {
  btrfs_qgroup_status_item item;
  ASSIGN_OR_RETURN(bool found,
                   ReadQuotaItem(path, BTRFS_QGROUP_STATUS_KEY, 0, &item, sizeof(item)));
  QuotaState state;
  if (!found) return state;
  const uint64_t flags = le64toh(item.flags);
  state.enabled = (flags & BTRFS_QGROUP_STATUS_FLAG_ON) != 0;
  state.consistent =
      state.enabled &&
      (flags & (BTRFS_QGROUP_STATUS_FLAG_RESCAN | BTRFS_QGROUP_STATUS_FLAG_INCONSISTENT)) == 0;
  return state;
}

absl::Status SetReferencedLimit(const std::string& path, uint64_t max_referenced) {
  ASSIGN_OR_RETURN(uint64_t id, SubvolumeId(path));
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (fd.get() < 0) return ErrnoStatus(errno, "open", path);
  btrfs_ioctl_qgroup_limit_args args;
  std::memset(&args, 0, sizeof(args));
  args.qgroupid = id;  // level 0: the subvolume's own qgroup 0/<id>
  args.lim.flags = BTRFS_QGROUP_LIMIT_MAX_RFER;
  // The kernel reads max_rfer == (u64)-1 as "clear the limit".
  args.lim.max_rfer = max_referenced > 0 ? max_referenced : UINT64_MAX;
  if (ioctl(fd.get(), BTRFS_IOC_QGROUP_LIMIT, &args) != 0) {
    return ErrnoStatus(errno, absl::StrFormat("BTRFS_IOC_QGROUP_LIMIT 0/%d", id), path);
  }
  return absl::OkStatus();
}

absl::StatusOr<QgroupUsage> GetQgroupUsage(const std::string& path) {
  ASSIGN_OR_RETURN(uint64_t id, SubvolumeId(path));
  btrfs_qgroup_info_item info;
  ASSIGN_OR_RETURN(bool found, ReadQuotaItem(path, BTRFS_QGROUP_INFO_KEY, id, &info, sizeof(info)));
  if (!found) {
    return absl::NotFoundError(absl::StrFormat("no qgroup 0/%d for %s (quotas off?)", id, path));
  }
  QgroupUsage usage;
  usage.referenced = le64toh(info.rfer);
  usage.exclusive = le64toh(info.excl);
  btrfs_qgroup_limit_item limit;
  ASSIGN_OR_RETURN(found, ReadQuotaItem(path, BTRFS_QGROUP_LIMIT_KEY, id, &limit, sizeof(limit)));
  if (found && (le64toh(limit.flags) & BTRFS_QGROUP_LIMIT_MAX_RFER) != 0) {
    usage.max_referenced = le64toh(limit.max_rfer);
  }
  return usage;
}

}  // namespace strata::drivers::btrfs
