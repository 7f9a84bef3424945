#include "common/remove_tree.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "common/errno_status.h"
#include "common/status_macros.h"
#include "common/unique_fd.h"

namespace strata {
namespace {

// Which mount `name` in `dir_fd` ("" = dir_fd itself) lives on. The mount id tells bind mounts
// of one filesystem apart; kernels before 5.8 have no mount id, and there the device has to do.
absl::StatusOr<uint64_t> MountOf(int dir_fd, const char* name, const std::string& where) {
  struct statx stx;
  if (statx(dir_fd, name, AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH, STATX_MNT_ID, &stx) != 0) {
    return ErrnoStatus(errno, "statx", where);
  }
  if (stx.stx_mask & STATX_MNT_ID) return stx.stx_mnt_id;
  return (static_cast<uint64_t>(stx.stx_dev_major) << 32) | stx.stx_dev_minor;
}

std::string Join(const std::string& where, const std::string& name) {
  return where.empty() ? name : absl::StrCat(where, "/", name);
}

absl::StatusOr<std::vector<std::string>> Names(int dir_fd, const std::string& where) {
  int dup_fd = fcntl(dir_fd, F_DUPFD_CLOEXEC, 0);
  if (dup_fd < 0) return ErrnoStatus(errno, "dup", where);
  DIR* dir = fdopendir(dup_fd);
  if (dir == nullptr) {
    int error = errno;
    close(dup_fd);
    return ErrnoStatus(error, "fdopendir", where);
  }
  rewinddir(dir);  // the duplicate shares the original's offset
  std::vector<std::string> names;
  errno = 0;
  while (dirent* entry = readdir(dir)) {
    std::string name = entry->d_name;
    if (name != "." && name != "..") names.push_back(std::move(name));
    errno = 0;
  }
  int error = errno;
  closedir(dir);
  if (error != 0) return ErrnoStatus(error, "readdir", where);
  return names;
}

absl::Status RemoveChildrenOn(int dir_fd, uint64_t mount, const std::string& where);

// Removes `name` in `dir_fd`, refusing when it is a directory on another mount than `mount`.
absl::Status RemoveEntryOn(int dir_fd, const std::string& name, uint64_t mount,
                           const std::string& where) {
  const std::string path = Join(where, name);
  struct stat st;
  if (fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return ErrnoStatus(errno, "stat", path);
  }
  if (!S_ISDIR(st.st_mode)) {
    if (unlinkat(dir_fd, name.c_str(), 0) != 0 && errno != ENOENT) {
      return ErrnoStatus(errno, "unlink", path);
    }
    return absl::OkStatus();
  }
  UniqueFd child(openat(dir_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!child.valid()) {
    if (errno == ENOENT) return absl::OkStatus();
    return ErrnoStatus(errno, "open", path);
  }
  ASSIGN_OR_RETURN(uint64_t child_mount, MountOf(child.get(), "", path));
  if (child_mount != mount) {
    return absl::FailedPreconditionError(
        absl::StrCat("refusing to remove ", path, ": it is a mount point (unmount it first)"));
  }
  RETURN_IF_ERROR(RemoveChildrenOn(child.get(), mount, path));
  if (unlinkat(dir_fd, name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) {
    return ErrnoStatus(errno, "rmdir", path);
  }
  return absl::OkStatus();
}

absl::Status RemoveChildrenOn(int dir_fd, uint64_t mount, const std::string& where) {
  ASSIGN_OR_RETURN(std::vector<std::string> names, Names(dir_fd, where));
  for (const std::string& name : names) RETURN_IF_ERROR(RemoveEntryOn(dir_fd, name, mount, where));
  return absl::OkStatus();
}

}  // namespace

absl::Status RemoveTreeAt(int dir_fd, const std::string& name, const std::string& where) {
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("refusing to remove \"", name, "\" in ", where, ": not one path component"));
  }
  ASSIGN_OR_RETURN(uint64_t mount, MountOf(dir_fd, "", where));
  return RemoveEntryOn(dir_fd, name, mount, where);
}

absl::Status RemoveChildrenAt(int dir_fd, const std::string& where) {
  ASSIGN_OR_RETURN(uint64_t mount, MountOf(dir_fd, "", where));
  return RemoveChildrenOn(dir_fd, mount, where);
}

absl::Status RemoveTree(const std::string& path) {
  std::string base = path;
  while (base.size() > 1 && base.back() == '/') base.pop_back();
  if (base.empty() || base == "/") {
    return absl::InvalidArgumentError(absl::StrCat("refusing to remove \"", path, "\""));
  }
  std::string parent = ".";
  size_t slash = base.rfind('/');
  if (slash != std::string::npos) {
    parent = slash == 0 ? "/" : base.substr(0, slash);
    base = base.substr(slash + 1);
  }
  if (base == "." || base == "..") {
    return absl::InvalidArgumentError(absl::StrCat("refusing to remove \"", path, "\""));
  }
  UniqueFd parent_fd(open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!parent_fd.valid()) {
    if (errno == ENOENT) return absl::OkStatus();
    return ErrnoStatus(errno, "open", parent);
  }
  return RemoveTreeAt(parent_fd.get(), base, parent);
}

}  // namespace strata
