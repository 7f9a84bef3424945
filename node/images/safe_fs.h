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
#include "common/remove_tree.h"
#include "common/unique_fd.h"

namespace strata::images {

using ::strata::UniqueFd;  // common/unique_fd.h

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

// Tree removal that never follows a symlink nor crosses a mount point (common/remove_tree.h).
using ::strata::RemoveChildrenAt;
using ::strata::RemoveTree;
using ::strata::RemoveTreeAt;

}  // namespace strata::images
