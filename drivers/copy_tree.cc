#include "drivers/copy_tree.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "common/errno_status.h"
#include "common/sparse_file.h"
#include "common/status_macros.h"
#include "common/unique_fd.h"

namespace strata::drivers {
namespace {

// The names in directory `dir_fd` (not "." or ".."). `dir_fd` stays open and owned by the caller.
absl::StatusOr<std::vector<std::string>> ListDir(int dir_fd, const std::string& where) {
  int dup_fd = fcntl(dir_fd, F_DUPFD_CLOEXEC, 0);
  if (dup_fd < 0) return ErrnoStatus(errno, "dup", where);
  DIR* dir = fdopendir(dup_fd);
  if (dir == nullptr) {
    int error = errno;
    close(dup_fd);
    return ErrnoStatus(error, "fdopendir", where);
  }
  rewinddir(dir);
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

std::string ProcPath(int dir_fd, const std::string& name) {
  return "/proc/self/fd/" + std::to_string(dir_fd) + "/" + name;
}

// Copies every xattr. `list`/`get` read the source; `set` writes the destination.
template <typename List, typename Get, typename Set>
absl::Status CopyXattrs(List list, Get get, Set set, const std::string& where) {
  std::vector<char> names;
  for (;;) {
    ssize_t size = list(nullptr, 0);
    if (size < 0) {
      if (errno == ENOTSUP || errno == ENOENT) return absl::OkStatus();
      return ErrnoStatus(errno, "listxattr", where);
    }
    if (size == 0) return absl::OkStatus();
    names.resize(size);
    size = list(names.data(), names.size());
    if (size >= 0) {
      names.resize(size);
      break;
    }
    if (errno != ERANGE) return ErrnoStatus(errno, "listxattr", where);
  }
  std::vector<char> value;
  for (size_t i = 0; i < names.size();) {
    const char* name = &names[i];
    i += strlen(name) + 1;
    ssize_t size;
    for (;;) {
      size = get(name, nullptr, 0);
      if (size < 0) break;
      value.resize(size);
      size = get(name, value.data(), value.size());
      if (size >= 0 || errno != ERANGE) break;
    }
    if (size < 0) {
      if (errno == ENODATA) continue;  // removed meanwhile
      return ErrnoStatus(errno, std::string("getxattr ") + name, where);
    }
    if (set(name, value.data(), static_cast<size_t>(size)) != 0) {
      return ErrnoStatus(errno, std::string("setxattr ") + name, where);
    }
  }
  return absl::OkStatus();
}

class Copier {
 public:
  Copier(int destination_root_fd, std::string source_root)
      : destination_root_fd_(destination_root_fd), source_root_(std::move(source_root)) {}

  // Copies the children of `source_fd` into `destination_fd`; `relative` is their path under
  // the roots ("" for the roots themselves).
  absl::Status CopyChildren(int source_fd, int destination_fd, const std::string& relative) {
    std::string where = source_root_ + (relative.empty() ? "" : "/" + relative);
    ASSIGN_OR_RETURN(std::vector<std::string> names, ListDir(source_fd, where));
    for (const std::string& name : names) {
      RETURN_IF_ERROR(CopyEntry(source_fd, destination_fd,
                                relative.empty() ? name : relative + "/" + name, name));
    }
    return absl::OkStatus();
  }

  // Owner, mode, xattrs and times of a directory or regular file, through fds. Order matters:
  // chown clears setuid bits and security.capability, so it goes first; times go last.
  static absl::Status CopyMetadataFd(int source_fd, int destination_fd, const struct stat& st,
                                     const std::string& where) {
    if (fchown(destination_fd, st.st_uid, st.st_gid) != 0) {
      return ErrnoStatus(errno, "chown", where);
    }
    if (fchmod(destination_fd, st.st_mode & 07777) != 0) {
      return ErrnoStatus(errno, "chmod", where);
    }
    RETURN_IF_ERROR(
        CopyXattrs([&](char* list, size_t size) { return flistxattr(source_fd, list, size); },
                   [&](const char* name, void* value, size_t size) {
                     return fgetxattr(source_fd, name, value, size);
                   },
                   [&](const char* name, const void* value, size_t size) {
                     return fsetxattr(destination_fd, name, value, size, 0);
                   },
                   where));
    struct timespec times[2] = {st.st_atim, st.st_mtim};
    if (futimens(destination_fd, times) != 0) return ErrnoStatus(errno, "utimens", where);
    return absl::OkStatus();
  }

 private:
  absl::Status CopyEntry(int source_dir, int destination_dir, const std::string& relative,
                         const std::string& name) {
    std::string where = source_root_ + "/" + relative;
    struct stat st;
    if (fstatat(source_dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) return absl::OkStatus();  // deleted while we copy a live tree
      return ErrnoStatus(errno, "stat", where);
    }
    if (S_ISDIR(st.st_mode)) {
      UniqueFd source(
          openat(source_dir, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (source.get() < 0) {
        if (errno == ENOENT || errno == ENOTDIR || errno == ELOOP) return absl::OkStatus();
        return ErrnoStatus(errno, "open", where);
      }
      if (mkdirat(destination_dir, name.c_str(), 0700) != 0) {
        return ErrnoStatus(errno, "mkdir copy of", where);
      }
      UniqueFd destination(
          openat(destination_dir, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (destination.get() < 0) return ErrnoStatus(errno, "open copy of", where);
      RETURN_IF_ERROR(CopyChildren(source.get(), destination.get(), relative));
      return CopyMetadataFd(source.get(), destination.get(), st, where);
    }

    // Hardlinks: the second and later names of an inode link to the first copy.
    const std::pair<dev_t, ino_t> key{st.st_dev, st.st_ino};
    if (st.st_nlink > 1) {
      auto it = links_.find(key);
      if (it != links_.end()) {
        if (linkat(destination_root_fd_, it->second.c_str(), destination_dir, name.c_str(), 0) !=
            0) {
          return ErrnoStatus(errno, "link copy of", where);
        }
        return absl::OkStatus();
      }
    }

    if (S_ISREG(st.st_mode)) {
      UniqueFd source(openat(source_dir, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
      if (source.get() < 0) {
        if (errno == ENOENT || errno == ELOOP) return absl::OkStatus();
        return ErrnoStatus(errno, "open", where);
      }
      struct stat now;
      if (fstat(source.get(), &now) != 0) return ErrnoStatus(errno, "stat", where);
      UniqueFd destination(openat(destination_dir, name.c_str(),
                                  O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
      if (destination.get() < 0) return ErrnoStatus(errno, "create copy of", where);
      absl::StatusOr<CopyFileStats> copied = CopyFileData(source.get(), destination.get(), where);
      if (!copied.ok()) return copied.status();
      RETURN_IF_ERROR(CopyMetadataFd(source.get(), destination.get(), now, where));
    } else {
      if (S_ISLNK(st.st_mode)) {
        std::vector<char> target(PATH_MAX + 1);
        ssize_t n = readlinkat(source_dir, name.c_str(), target.data(), target.size() - 1);
        if (n < 0) {
          if (errno == ENOENT) return absl::OkStatus();
          return ErrnoStatus(errno, "readlink", where);
        }
        target[n] = '\0';
        if (symlinkat(target.data(), destination_dir, name.c_str()) != 0) {
          return ErrnoStatus(errno, "symlink copy of", where);
        }
      } else {
        // Char/block devices (incl. overlay whiteouts, 0:0), fifos, sockets.
        if (mknodat(destination_dir, name.c_str(), st.st_mode & (S_IFMT | 0777), st.st_rdev) != 0) {
          return ErrnoStatus(errno, "mknod copy of", where);
        }
      }
      if (fchownat(destination_dir, name.c_str(), st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW) != 0) {
        return ErrnoStatus(errno, "chown", where);
      }
      if (!S_ISLNK(st.st_mode) &&
          fchmodat(destination_dir, name.c_str(), st.st_mode & 07777, 0) != 0) {
        return ErrnoStatus(errno, "chmod", where);
      }
      // No fd can be opened on these without following or opening a device: go through
      // /proc/self/fd/<dir>/<name> with the l* calls, which do not follow the last component.
      std::string source_path = ProcPath(source_dir, name);
      std::string destination_path = ProcPath(destination_dir, name);
      RETURN_IF_ERROR(CopyXattrs(
          [&](char* list, size_t size) { return llistxattr(source_path.c_str(), list, size); },
          [&](const char* xname, void* value, size_t size) {
            return lgetxattr(source_path.c_str(), xname, value, size);
          },
          [&](const char* xname, const void* value, size_t size) {
            return lsetxattr(destination_path.c_str(), xname, value, size, 0);
          },
          where));
      struct timespec times[2] = {st.st_atim, st.st_mtim};
      if (utimensat(destination_dir, name.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0) {
        return ErrnoStatus(errno, "utimens", where);
      }
    }
    if (st.st_nlink > 1) links_.emplace(key, relative);
    return absl::OkStatus();
  }

  const int destination_root_fd_;
  const std::string source_root_;
  std::map<std::pair<dev_t, ino_t>, std::string> links_;  // inode -> first copy, relative
};

absl::Status AddUsage(int dir_fd, const std::string& where, std::set<std::pair<dev_t, ino_t>>* seen,
                      Usage* usage) {
  ASSIGN_OR_RETURN(std::vector<std::string> names, ListDir(dir_fd, where));
  for (const std::string& name : names) {
    std::string path = where + "/" + name;
    struct stat st;
    if (fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) continue;
      return ErrnoStatus(errno, "stat", path);
    }
    if (st.st_nlink > 1 && !S_ISDIR(st.st_mode) && !seen->insert({st.st_dev, st.st_ino}).second) {
      continue;
    }
    usage->bytes += static_cast<int64_t>(st.st_blocks) * 512;
    usage->inodes += 1;
    if (S_ISDIR(st.st_mode)) {
      UniqueFd child(openat(dir_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (child.get() < 0) {
        if (errno == ENOENT) continue;
        return ErrnoStatus(errno, "open", path);
      }
      RETURN_IF_ERROR(AddUsage(child.get(), path, seen, usage));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CopyTree(const std::string& source, const std::string& destination) {
  UniqueFd source_fd(open(source.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (source_fd.get() < 0) return ErrnoStatus(errno, "open", source);
  struct stat st;
  if (fstat(source_fd.get(), &st) != 0) return ErrnoStatus(errno, "stat", source);
  if (mkdir(destination.c_str(), 0700) != 0) return ErrnoStatus(errno, "mkdir", destination);
  UniqueFd destination_fd(
      open(destination.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (destination_fd.get() < 0) return ErrnoStatus(errno, "open", destination);
  Copier copier(destination_fd.get(), source);
  RETURN_IF_ERROR(copier.CopyChildren(source_fd.get(), destination_fd.get(), ""));
  return Copier::CopyMetadataFd(source_fd.get(), destination_fd.get(), st, source);
}

absl::StatusOr<Usage> TreeUsage(const std::string& path) {
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (fd.get() < 0) return ErrnoStatus(errno, "open", path);
  struct stat st;
  if (fstat(fd.get(), &st) != 0) return ErrnoStatus(errno, "stat", path);
  Usage usage;
  usage.bytes = static_cast<int64_t>(st.st_blocks) * 512;
  usage.inodes = 1;
  std::set<std::pair<dev_t, ino_t>> seen;
  RETURN_IF_ERROR(AddUsage(fd.get(), path, &seen, &usage));
  return usage;
}

}  // namespace strata::drivers
