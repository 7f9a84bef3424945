#pragma once
// Small filesystem helpers for node/: request-path checks, directory creation and removal.

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace strata::node {

// A path from a CSI request: absolute, no "." or ".." components, no NUL, not empty, at most
// PATH_MAX. `field` names the request field in the error ("target_path").
absl::Status ValidateRequestPath(const std::string& path, const std::string& field);

// Creates `path` and missing parents (mode 0755 for parents, `mode` for the last).
absl::Status MakeDirs(const std::string& path, unsigned mode = 0755);

// A directory the plugin may mount onto: it exists (it is created when `create` and missing),
// is a directory, and is not itself a symlink (a symlink there could point anywhere).
absl::Status PrepareMountTarget(const std::string& path, bool create);

// Removes `path` recursively without following symlinks or crossing into other mounts.
// A missing path is OK.
absl::Status RemoveTree(const std::string& path);

// True when `path` resolves (symlinks followed) to `root` or something below it.
bool ResolvesWithin(const std::string& path, const std::string& root);

// `bytes` random bytes as lowercase hex.
std::string RandomHex(int bytes);

}  // namespace strata::node
