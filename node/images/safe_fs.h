#pragma once
// Filesystem helpers for hostile paths (tar entry names, paths inside image archives): every
// lookup is done with openat2(RESOLVE_BENEATH) relative to a directory fd, so nothing outside
// that directory is ever opened, created or deleted.

#include <linux/openat2.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace strata::images {

// Owns a file descriptor; closes it on destruction.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd();
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept;
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }

 private:
  int fd_ = -1;
};

// Splits a relative name into its components: strips leading "./", drops empty and "."
// components. InvalidArgument for an empty name, an absolute name, a ".." component or a NUL.
// A name that is only "." or "./" gives no components (the root itself).
absl::StatusOr<std::vector<std::string>> SplitRelativePath(const std::string& name);

// Joins components with "/" ("" for none).
std::string JoinPath(const std::vector<std::string>& components, size_t count);

// Resolve flags for looking up paths beneath a root: never through any symlink (for writing),
// or through symlinks that stay beneath it (for reading archives).
inline constexpr uint64_t kResolveNoSymlinks =
    RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
inline constexpr uint64_t kResolveBeneath = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;

// openat2(dirfd, rel, flags, resolve). `rel` empty opens dirfd's directory itself.
// Errors: NotFound (ENOENT), InvalidArgument (escapes the root: EXDEV; ELOOP: a symlink where
// none is allowed, or a symlink loop), otherwise the errno mapping.
absl::StatusOr<UniqueFd> OpenBeneath(int dirfd, const std::string& rel, int flags,
                                     uint64_t resolve);

// Deletes `name` in `dirfd` and, for a directory, everything under it, never following
// symlinks. A missing `name` is OK.
absl::Status RemoveTreeAt(int dirfd, const std::string& name);

// Deletes every entry inside the directory `dirfd` (not the directory itself).
absl::Status RemoveChildrenAt(int dirfd);

// Deletes `path` and everything under it; a missing path is OK.
absl::Status RemoveTree(const std::string& path);

}  // namespace strata::images
