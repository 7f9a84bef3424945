#include "node/images/safe_fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/errno_status.h"
#include "common/status_macros.h"
#include "node/images/limits.h"

namespace strata::images {

UniqueFd::~UniqueFd() {
  if (fd_ >= 0) close(fd_);
}

UniqueFd& UniqueFd::operator=(UniqueFd&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) close(fd_);
    fd_ = other.release();
  }
  return *this;
}

absl::StatusOr<std::vector<std::string>> SplitRelativePath(const std::string& name) {
  if (name.empty()) return absl::InvalidArgumentError("empty path");
  if (name.find('\0') != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("path contains NUL: ", Echo(name.c_str())));
  }
  if (name[0] == '/')
    return absl::InvalidArgumentError(absl::StrCat("absolute path: ", Echo(name)));
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= name.size()) {
    size_t end = name.find('/', start);
    if (end == std::string::npos) end = name.size();
    std::string component = name.substr(start, end - start);
    if (component == "..") {
      return absl::InvalidArgumentError(absl::StrCat("path has a '..' component: ", Echo(name)));
    }
    if (!component.empty() && component != ".") out.push_back(std::move(component));
    start = end + 1;
  }
  return out;
}

std::string JoinPath(const std::vector<std::string>& components, size_t count) {
  std::string out;
  for (size_t i = 0; i < count && i < components.size(); ++i) {
    if (i > 0) out.push_back('/');
    out.append(components[i]);
  }
  return out;
}

absl::StatusOr<UniqueFd> OpenBeneath(int dirfd, const std::string& rel, int flags,
                                     uint64_t resolve) {
  struct open_how how;
  std::memset(&how, 0, sizeof(how));
  how.flags = static_cast<uint64_t>(flags | O_CLOEXEC);
  how.resolve = resolve;
  const char* path = rel.empty() ? "." : rel.c_str();
  int fd;
  do {
    fd = static_cast<int>(syscall(SYS_openat2, dirfd, path, &how, sizeof(how)));
  } while (fd < 0 && (errno == EINTR || errno == EAGAIN));
  if (fd < 0) {
    int err = errno;
    if (err == EXDEV) {
      return absl::InvalidArgumentError(absl::StrCat("path escapes its root: ", Echo(rel)));
    }
    if (err == ELOOP) {
      // With symlinks allowed, ELOOP is a loop (or a chain too long to follow).
      return absl::InvalidArgumentError(
          (resolve & RESOLVE_NO_SYMLINKS) != 0
              ? absl::StrCat("path goes through a symlink: ", Echo(rel))
              : absl::StrCat("path is a symlink loop: ", Echo(rel)));
    }
    return ErrnoStatus(err, "openat2", Echo(rel));
  }
  return UniqueFd(fd);
}

absl::Status RemoveChildrenAt(int dirfd) {
  int dup_fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dup_fd < 0) return ErrnoStatus(errno, "open directory for removal");
  DIR* dir = fdopendir(dup_fd);
  if (dir == nullptr) {
    int err = errno;
    close(dup_fd);
    return ErrnoStatus(err, "fdopendir");
  }
  std::vector<std::string> names;
  while (struct dirent* ent = readdir(dir)) {
    if (std::strcmp(ent->d_name, ".") == 0 || std::strcmp(ent->d_name, "..") == 0) continue;
    names.emplace_back(ent->d_name);
  }
  closedir(dir);
  for (const std::string& name : names) RETURN_IF_ERROR(RemoveTreeAt(dirfd, name));
  return absl::OkStatus();
}

absl::Status RemoveTreeAt(int dirfd, const std::string& name) {
  struct stat st;
  if (fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return ErrnoStatus(errno, "fstatat", name);
  }
  if (S_ISDIR(st.st_mode)) {
    int child = openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (child < 0) return ErrnoStatus(errno, "open", name);
    UniqueFd child_fd(child);
    RETURN_IF_ERROR(RemoveChildrenAt(child_fd.get()));
    if (unlinkat(dirfd, name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) {
      return ErrnoStatus(errno, "rmdir", name);
    }
    return absl::OkStatus();
  }
  if (unlinkat(dirfd, name.c_str(), 0) != 0 && errno != ENOENT) {
    return ErrnoStatus(errno, "unlink", name);
  }
  return absl::OkStatus();
}

absl::Status RemoveTree(const std::string& path) {
  if (path.empty() || path == "/") return absl::InvalidArgumentError("refusing to remove " + path);
  std::string parent = ".";
  std::string base = path;
  while (base.size() > 1 && base.back() == '/') base.pop_back();
  size_t slash = base.rfind('/');
  if (slash != std::string::npos) {
    parent = slash == 0 ? "/" : base.substr(0, slash);
    base = base.substr(slash + 1);
  }
  int fd = open(parent.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return ErrnoStatus(errno, "open", parent);
  }
  UniqueFd parent_fd(fd);
  return RemoveTreeAt(parent_fd.get(), base);
}

}  // namespace strata::images
