#include "drivers/fs_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "common/errno_status.h"
#include "common/status_macros.h"
#include "drivers/copy_tree.h"
#include "drivers/driver.h"

namespace strata::drivers {

absl::Status MakeDirs(const std::string& path, unsigned mode) {
  if (path.empty()) return absl::InvalidArgumentError("empty path");
  for (size_t end = 1; end <= path.size(); ++end) {
    if (end != path.size() && path[end] != '/') continue;
    std::string prefix = path.substr(0, end);
    if (mkdir(prefix.c_str(), mode) != 0 && errno != EEXIST) {
      return ErrnoStatus(errno, "mkdir", prefix);
    }
  }
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return ErrnoStatus(errno, "stat", path);
  if (!S_ISDIR(st.st_mode)) return absl::FailedPreconditionError(path + " is not a directory");
  return absl::OkStatus();
}

absl::StatusOr<bool> PathExists(const std::string& path) {
  struct stat st;
  if (lstat(path.c_str(), &st) == 0) return true;
  if (errno == ENOENT) return false;
  return ErrnoStatus(errno, "stat", path);
}

absl::Status SyncDir(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, "open", path);
  int rc = fsync(fd);
  int error = errno;
  close(fd);
  if (rc != 0) return ErrnoStatus(error, "fsync", path);
  return absl::OkStatus();
}

absl::Status SyncFilesystem(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, "open", path);
  int rc = syncfs(fd);
  int error = errno;
  close(fd);
  if (rc != 0) return ErrnoStatus(error, "syncfs", path);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> ListIds(const std::string& dir) {
  DIR* stream = opendir(dir.c_str());
  if (stream == nullptr) {
    if (errno == ENOENT) return std::vector<std::string>{};
    return ErrnoStatus(errno, "opendir", dir);
  }
  std::vector<std::string> ids;
  errno = 0;
  while (dirent* entry = readdir(stream)) {
    std::string name = entry->d_name;
    errno = 0;
    if (name.rfind(".tmp-", 0) == 0 || name.rfind(".del-", 0) == 0) name = name.substr(5);
    if (IsValidDriverId(name)) ids.push_back(name);
  }
  int error = errno;
  closedir(stream);
  if (error != 0) return ErrnoStatus(error, "readdir", dir);
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

absl::Status RemoveEntry(const std::string& dir, const std::string& id) {
  const std::string path = dir + "/" + id;
  const std::string doomed = dir + "/" + DeleteName(id);
  ASSIGN_OR_RETURN(bool exists, PathExists(path));
  if (exists) {
    RETURN_IF_ERROR(RemoveTree(doomed));  // an earlier attempt's leftover
    if (rename(path.c_str(), doomed.c_str()) != 0) return ErrnoStatus(errno, "rename", path);
  }
  RETURN_IF_ERROR(RemoveTree(doomed));
  return RemoveTree(dir + "/" + TempName(id));
}

absl::Status MoveEntryOut(const std::string& dir, const std::string& id, const std::string& dest) {
  RETURN_IF_ERROR(CheckIds({id}, "snapshot"));
  RETURN_IF_ERROR(RemoveTree(dir + "/" + DeleteName(id)));
  RETURN_IF_ERROR(RemoveTree(dir + "/" + TempName(id)));
  const std::string path = dir + "/" + id;
  ASSIGN_OR_RETURN(bool exists, PathExists(path));
  if (!exists) return absl::NotFoundError(path + " does not exist");
  ASSIGN_OR_RETURN(bool taken, PathExists(dest));
  if (taken) return absl::AlreadyExistsError(dest + " exists");
  if (rename(path.c_str(), dest.c_str()) != 0) return ErrnoStatus(errno, "rename", path);
  RETURN_IF_ERROR(SyncDir(dest.substr(0, dest.rfind('/'))));
  return SyncDir(dir);
}

absl::Status MoveEntryIn(const std::string& source, const std::string& dir, const std::string& id) {
  RETURN_IF_ERROR(CheckIds({id}, "snapshot"));
  const std::string path = dir + "/" + id;
  ASSIGN_OR_RETURN(bool taken, PathExists(path));
  if (taken) return absl::AlreadyExistsError(path + " exists");
  RETURN_IF_ERROR(MakeDirs(dir));
  if (rename(source.c_str(), path.c_str()) != 0) return ErrnoStatus(errno, "rename", source);
  RETURN_IF_ERROR(SyncDir(source.substr(0, source.rfind('/'))));
  return SyncDir(dir);
}

absl::StatusOr<int64_t> FreeBytesAt(const std::string& path) {
  struct statvfs st;
  if (statvfs(path.c_str(), &st) != 0) return ErrnoStatus(errno, "statvfs", path);
  return static_cast<int64_t>(st.f_bavail) * static_cast<int64_t>(st.f_frsize);
}

absl::StatusOr<int64_t> TotalBytesAt(const std::string& path) {
  struct statvfs st;
  if (statvfs(path.c_str(), &st) != 0) return ErrnoStatus(errno, "statvfs", path);
  return static_cast<int64_t>(st.f_blocks) * static_cast<int64_t>(st.f_frsize);
}

absl::Status CheckIds(const std::vector<std::string>& ids, const std::string& what) {
  for (const std::string& id : ids) {
    if (!IsValidDriverId(id)) {
      return absl::InvalidArgumentError("invalid " + what + " id \"" + id +
                                        "\": want 1-32 characters of [a-z0-9]");
    }
  }
  return absl::OkStatus();
}

}  // namespace strata::drivers
