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

}  // namespace strata::images
