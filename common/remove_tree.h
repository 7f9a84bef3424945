#pragma once
// RemoveTree: the one way Strata deletes a directory tree. It never follows a symlink and never
// crosses into another mount: a mount point found anywhere in the tree (a pod's volume left
// mounted under a scratch folder, a bind mount an admin made) stops the removal with
// FAILED_PRECONDITION before anything under it is touched, so a delete can only ever remove what
// lives on the tree's own filesystem.

#include <string>

#include "absl/status/status.h"

namespace strata {

// Removes `path` and everything under it; a missing path is OK. "" and "/" are refused.
absl::Status RemoveTree(const std::string& path);

// Removes the entry `name` (one path component, no '/') of the directory `dir_fd` and, for a
// directory, everything under it. `where` names `dir_fd` in error messages.
absl::Status RemoveTreeAt(int dir_fd, const std::string& name, const std::string& where = "");

// Removes every entry inside the directory `dir_fd`, not the directory itself.
absl::Status RemoveChildrenAt(int dir_fd, const std::string& where = "");

}  // namespace strata
