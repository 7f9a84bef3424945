#include "node/paths.h"

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/errno_status.h"

namespace strata::node {

absl::Status ValidateRequestPath(const std::string& path, const std::string& field) {
  if (path.empty()) return absl::InvalidArgumentError(absl::StrCat(field, " is required"));
  if (path.size() >= PATH_MAX)
    return absl::InvalidArgumentError(absl::StrCat(field, " is longer than PATH_MAX"));
  if (path.find('\0') != std::string::npos)
    return absl::InvalidArgumentError(absl::StrCat(field, " contains a NUL byte"));
  if (path[0] != '/')
    return absl::InvalidArgumentError(absl::StrCat(field, " must be absolute: ", path));
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    if (part == "." || part == "..") {
      return absl::InvalidArgumentError(
          absl::StrCat(field, " must not contain '.' or '..' components: ", path));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ChildPath(const std::string& dir, const std::string& name) {
  if (name.empty() || name == "." || name == ".." || name.size() > NAME_MAX ||
      name.find('/') != std::string::npos || name.find('\0') != std::string::npos) {
    // The name is not quoted: it may be megabytes of anything.
    return absl::InvalidArgumentError(
        absl::StrCat("a ", name.size(), "-byte name is not a single path component inside ", dir));
  }
  return absl::StrCat(dir, "/", name);
}

absl::Status PrepareMountTarget(const std::string& path, bool create) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) {
    if (errno != ENOENT || !create) return ErrnoStatus(errno, "stat", path);
    if (mkdir(path.c_str(), 0750) != 0 && errno != EEXIST) return ErrnoStatus(errno, "mkdir", path);
    if (lstat(path.c_str(), &st) != 0) return ErrnoStatus(errno, "stat", path);
  }
  if (S_ISLNK(st.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, " is a symlink; refusing to mount through it"));
  }
  if (!S_ISDIR(st.st_mode))
    return absl::InvalidArgumentError(absl::StrCat(path, " is not a directory"));
  return absl::OkStatus();
}

bool ResolvesWithin(const std::string& path, const std::string& root) {
  char resolved_path[PATH_MAX];
  char resolved_root[PATH_MAX];
  if (realpath(root.c_str(), resolved_root) == nullptr) return false;
  // A target that does not exist yet: judge by its parent.
  std::string probe = path;
  while (realpath(probe.c_str(), resolved_path) == nullptr) {
    size_t slash = probe.rfind('/');
    if (slash == std::string::npos || slash == 0) return false;
    probe.resize(slash);
  }
  std::string candidate(resolved_path);
  std::string base(resolved_root);
  if (base == "/") return true;
  return candidate == base ||
         (candidate.size() > base.size() && candidate.compare(0, base.size(), base) == 0 &&
          candidate[base.size()] == '/');
}

std::string RandomHex(int bytes) {
  static thread_local std::random_device device;
  std::string out;
  for (int i = 0; i < bytes; ++i)
    absl::StrAppend(&out, absl::Hex(device() & 0xff, absl::kZeroPad2));
  return out;
}

}  // namespace strata::node
