#pragma once
// Small filesystem helpers for node/: request-path checks, directory creation and removal.

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "drivers/copy_tree.h"
#include "drivers/fs_util.h"

namespace strata::node {

// mkdir -p and a recursive removal that never follows symlinks nor crosses into a mount: the
// drivers' own, shared rather than written twice.
using drivers::MakeDirs;
using drivers::RemoveTree;

// A path from a CSI request: absolute, no "." or ".." components, no NUL, not empty, at most
// PATH_MAX. `field` names the request field in the error ("target_path").
absl::Status ValidateRequestPath(const std::string& path, const std::string& field);

// `dir` + "/" + `name` when `name` is one path component that stays inside `dir`: not empty,
// not "." or "..", no '/' or NUL, at most NAME_MAX bytes. InvalidArgument otherwise. Every
// on-disk path the node builds from request data (an ephemeral volume id) goes through it.
absl::StatusOr<std::string> ChildPath(const std::string& dir, const std::string& name);

// A directory the plugin may mount onto: it exists (it is created when `create` and missing),
// is a directory, and is not itself a symlink (a symlink there could point anywhere).
absl::Status PrepareMountTarget(const std::string& path, bool create);

// True when `path` resolves (symlinks followed) to `root` or something below it.
bool ResolvesWithin(const std::string& path, const std::string& root);

// `bytes` random bytes as lowercase hex.
std::string RandomHex(int bytes);

}  // namespace strata::node
