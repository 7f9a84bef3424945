#pragma once
// Filesystem helpers shared by the drivers that keep layers as directories (overlay, vfs, and
// later btrfs): a tree copier that preserves everything a container layer can hold, a recursive
// remover, and a usage walker. None of them ever follows a symlink.

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/remove_tree.h"
#include "drivers/driver.h"

namespace strata::drivers {

// Copies the tree at `source` to `destination`, which must not exist, preserving file types
// (including overlay whiteouts, i.e. 0:0 char devices, and other device nodes, fifos, sockets),
// contents with their holes, owners, modes (incl. setuid/setgid/sticky), all xattrs (trusted.*,
// security.*, user.*; so the overlay opaque marker survives), atime/mtime, symlinks as symlinks,
// and hardlinks (files linked inside `source` are linked inside the copy). Works on a live tree
// (e.g. a mounted overlay upper): an entry that vanishes mid-copy is skipped. On failure the
// partial copy is left for the caller to remove (callers copy into a temp name).
//
// A regular file is copied data extent by data extent (SEEK_DATA/SEEK_HOLE, CopyFileData in
// common/sparse_file.h): holes stay holes, so a 64 GiB sparse file with 4 MiB written costs
// 4 MiB of reads and blocks, not 64 GiB. Extents go through copy_file_range(2), which shares
// them where the filesystem can (btrfs, xfs with reflink); a filesystem that cannot report
// holes gets a full copy.
absl::Status CopyTree(const std::string& source, const std::string& destination);

// Removes `path` and everything under it; a missing path is OK. Refuses to descend into another
// mount (a mount point left under the tree) and fails instead (common/remove_tree.h).
using ::strata::RemoveTree;

// Space used by the tree at `path`: bytes = sum of st_blocks * 512 (allocated space, so sparse
// files count what they really hold), each inode counted once (hardlinks), inodes = number of
// inodes including `path` itself.
absl::StatusOr<Usage> TreeUsage(const std::string& path);

}  // namespace strata::drivers
