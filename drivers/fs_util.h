#pragma once
// Small filesystem steps the directory-based drivers (overlay, vfs) build their crash-safe
// operations from. Convention: anything being made is created under ".tmp-<id>" and renamed into
// place; anything being removed is first renamed to ".del-<id>". Both prefixes start with '.',
// which no valid id does, so leftovers can never be mistaken for content.

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace strata::drivers {

inline std::string TempName(const std::string& id) { return ".tmp-" + id; }
inline std::string DeleteName(const std::string& id) { return ".del-" + id; }

// mkdir -p with `mode` for the directories it creates.
absl::Status MakeDirs(const std::string& path, unsigned mode = 0700);

// lstat-based: true when something (of any type) is at `path`.
absl::StatusOr<bool> PathExists(const std::string& path);

// fsync a directory, so a rename inside it survives a crash.
absl::Status SyncDir(const std::string& path);

// syncfs(2) on the filesystem holding `path`: makes file data durable before a rename publishes.
absl::Status SyncFilesystem(const std::string& path);

// Valid ids with entries in `dir`, including ids that only have ".tmp-"/".del-" leftovers.
absl::StatusOr<std::vector<std::string>> ListIds(const std::string& dir);

// Removes `dir`/<id> (renamed to ".del-<id>" first, so a crash never leaves a half-deleted entry
// under its real name) and any ".tmp-<id>"/".del-<id>" leftovers. Missing: OK.
absl::Status RemoveEntry(const std::string& dir, const std::string& id);

// Quarantine (issue 8): renames `dir`/<id> to `dest` (one rename on the same filesystem, never a
// copy; EXDEV is an error and nothing moves), after removing the ".tmp-<id>"/".del-<id>"
// leftovers (half-made, or being deleted by the store: not content). NotFound when `dir`/<id>
// does not exist (its leftovers are removed all the same).
absl::Status MoveEntryOut(const std::string& dir, const std::string& id, const std::string& dest);
// Renames `source` to `dir`/<id>; AlreadyExists when that is taken.
absl::Status MoveEntryIn(const std::string& source, const std::string& dir, const std::string& id);

// Free bytes for unprivileged writers on the filesystem holding `path` (statvfs f_bavail).
absl::StatusOr<int64_t> FreeBytesAt(const std::string& path);
// Size of the filesystem holding `path` (statvfs f_blocks).
absl::StatusOr<int64_t> TotalBytesAt(const std::string& path);

// InvalidArgument unless every id is valid (`what` names them in the message).
absl::Status CheckIds(const std::vector<std::string>& ids, const std::string& what);

}  // namespace strata::drivers
