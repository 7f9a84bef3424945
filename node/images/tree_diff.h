#pragma once
// What one directory tree changes over another, as `docker diff` reports it (A/C/D per path).
//
// DiffTrees compares two full trees (e.g. a vfs layer and its parent, or two read-only views);
// DiffOverlayLayer reads the changes an overlay diff layer (upper dir) makes over its lowers.
// Neither follows symlinks, and neither crosses into another mount: a mount root found inside a
// tree (statx STATX_ATTR_MOUNT_ROOT) is left out of that tree as if it were not there.

#include <sys/types.h>

#include <cstdint>
#include <ctime>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace strata::images {

struct TreeChange {
  enum Kind { kAdded, kChanged, kDeleted };
  std::string path;  // "/a/b": absolute within the tree, never "/" itself
  Kind kind = kAdded;

  bool operator==(const TreeChange& other) const {
    return path == other.path && kind == other.kind;
  }
};

// 'A', 'C' or 'D', as docker diff prints them.
char TreeChangeLetter(TreeChange::Kind kind);

struct DiffOptions {
  // Entries whose metadata all match (type, mode, uid/gid, size, mtime in ns, xattrs, device
  // numbers, symlink target) are unchanged by default, as docker, containerd and rsync treat
  // them: any write moves mtime, so a different mtime already reports the file as changed and
  // reading both copies could only add files whose content changed while mtime was reset by hand.
  // With true, regular files whose metadata match are also compared byte by byte (costs reading
  // both trees; meant for paranoid commits and tests).
  bool compare_content = false;
};

// Changes that turn `lower` into `upper`, sorted by path (bytewise). `lower` may be "" for the
// empty tree (then everything in `upper` is kAdded).
//  - kAdded: in upper only. Every entry under an added directory is listed too.
//  - kDeleted: in lower only. A deleted directory is listed alone, not its children.
//  - kChanged: in both, with a different type or metadata (or content, see DiffOptions); a
//    directory also when a child was added or deleted. A type change (file -> dir) is one
//    kChanged entry; the new directory's children are kAdded, the old one's are not listed.
// Errors: NotFound when a root is missing, InvalidArgument when a root is not a directory,
// otherwise the errno mapping of the failing call (naming the path).
absl::StatusOr<std::vector<TreeChange>> DiffTrees(const std::string& lower,
                                                  const std::string& upper,
                                                  const DiffOptions& options = {});

// Changes an overlay diff layer (overlay-native whiteouts: 0:0 char devices; opaque directories
// carrying trusted.overlay.opaque="y") makes over the lowers it was written on:
//  - a whiteout: kDeleted (whiteouts inside an opaque directory hide nothing and are skipped);
//  - an opaque directory: kChanged, and everything in it kAdded;
//  - anything else: kChanged when `lower` (a full tree of the parent chain, e.g. a read-only
//    view; "" if unknown) has something at that path, kAdded otherwise. Without `lower`,
//    directories are kChanged (overlay copies parent directories up, so a non-opaque directory
//    in an upper dir nearly always exists below) and other entries kAdded.
// With `lower`, whiteouts of paths the lower does not have are dropped.
// Layers written with redirect_dir or metacopy (trusted.overlay.redirect / .metacopy) cannot be
// read without their lowers' content: FailedPrecondition.
absl::StatusOr<std::vector<TreeChange>> DiffOverlayLayer(const std::string& layer_dir,
                                                         const std::string& lower = "");

// Building blocks shared with layer_export.cc; not for other callers.
namespace tree_internal {

// One entry's metadata as read with statx (never following a symlink).
struct FsEntry {
  std::string rel;  // "a/b", relative to the tree's root
  mode_t mode = 0;  // type and permission bits
  uid_t uid = 0;
  gid_t gid = 0;
  int64_t size = 0;
  struct timespec mtime = {0, 0};
  unsigned rdev_major = 0;
  unsigned rdev_minor = 0;
  uint64_t dev = 0;  // the filesystem's device (st_dev) and the inode: hardlink identity
  uint64_t ino = 0;
  uint64_t nlink = 0;
  bool mount_root = false;
  std::string link_target;                                  // symlinks
  std::vector<std::pair<std::string, std::string>> xattrs;  // sorted by name
};

// Reads `name` in the directory `dir_fd`; `rel` is its path from the tree's root. NotFound when it
// vanished (a live tree).
absl::StatusOr<FsEntry> ReadEntry(int dir_fd, const std::string& name, const std::string& rel);

// The names in the directory `dir_fd` except "." and "..", sorted bytewise.
absl::StatusOr<std::vector<std::string>> ListNames(int dir_fd);

// Orders paths so that a directory comes right before everything under it ("a", "a/b", "a-b"):
// bytewise, with '/' below every other byte. The order of DiffTrees and of exported tars.
bool PathLess(const std::string& a, const std::string& b);

// kAdded and kChanged carry the upper entry; kDeleted carries only `rel`.
struct DetailedChange {
  TreeChange::Kind kind;
  FsEntry entry;
};

struct DetailedDiff {
  std::vector<DetailedChange> changes;  // PathLess order
  // Every non-directory of upper with more than one link, by (dev, ino): the hardlink groups
  // an export must keep whole.
  std::map<std::pair<uint64_t, uint64_t>, std::vector<FsEntry>> linked;
};

absl::StatusOr<DetailedDiff> DiffTreesDetailed(const std::string& lower, const std::string& upper,
                                               const DiffOptions& options);

}  // namespace tree_internal
}  // namespace strata::images
