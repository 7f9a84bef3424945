#pragma once
// Writes a layer back out as a standard OCI / docker layer tar (uncompressed, PAX format), the
// inverse of ExtractLayer (layer_tar.h): extracting the tar on top of the layer's parent gives
// the layer's tree again, with either WhiteoutStyle.
//
// The tar is deterministic: entries in PathLess order (a directory right before its contents,
// siblings bytewise), numeric owners only (no user/group names), mtimes kept to the nanosecond
// as they are on disk, no atime/ctime, xattrs sorted (SCHILY.xattr records), the first path of a
// hardlink group (in that order) written as the file and the others as links to it. Exporting
// the same content twice gives the same bytes, hence the same DiffID.
//
// Kept: regular files, directories, symlinks, hardlinks, char/block devices, fifos, owners, modes
// (setuid/setgid/sticky too), mtimes, xattrs, holes. Not kept: sockets (skipped, as docker does),
// overlay's own trusted.overlay.* xattrs, the root directory's own metadata (no "./" entry, like
// docker's layers).
//
// A file with holes (SEEK_DATA/SEEK_HOLE) is written as a GNU sparse 1.0 PAX entry (read by GNU
// tar, libarchive, Go's archive/tar and so containerd): its map lists the data extents and only
// their bytes are stored, so a 64 GiB file with 4 MiB written costs about 4 MiB of tar. The map
// is the holes as the filesystem reports them (allocated zeros are data and stay in the tar), at
// most 16,384 extents (a more fragmented file has its smallest holes stored as zeros). A file
// without holes is an ordinary entry, as before.
//
// Whiteouts are written the OCI way: `DIR/.wh.NAME` (empty regular file, 0:0, mode 0644, mtime 0)
// for a deleted path and `DIR/.wh..wh..opq` (same) for an opaque directory.
//
// The tar is written to a temporary name beside `out_tar_path`, synced and renamed into place, so
// a failed export leaves nothing. Works on a live tree: an entry that vanishes midway is skipped,
// a file that shrinks is padded with zeros and one that grows is cut at its size when read.

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace strata::images {

struct ExportResult {
  std::string diff_id;  // "sha256:<hex>" of the tar's bytes
  int64_t size = 0;     // bytes in the tar
  int64_t entries = 0;  // tar entries written (whiteouts included)
};

// `layer_dir` holds a diff with overlay-native whiteouts (overlay driver layers, or an overlay
// upper dir at rest): a 0:0 char device becomes `.wh.NAME`, a directory with
// trusted.overlay.opaque="y" gets a `.wh..wh..opq` entry after its own. Layers using
// redirect_dir or metacopy (trusted.overlay.redirect / .metacopy): FailedPrecondition.
absl::StatusOr<ExportResult> ExportOverlayLayer(const std::string& layer_dir,
                                                const std::string& out_tar_path);

// For drivers whose layers are full trees (vfs, btrfs, devmapper): what `upper_dir` adds and
// changes over `lower_dir` (DiffTrees), plus `.wh.NAME` for what it deleted, plus every parent
// directory of those (extracting an entry rewrites its parent, whose metadata then comes back
// from its own entry; containerd does the same). A file that gained
// or kept hardlinks is written with its whole hardlink group, so links are rebuilt on extraction.
// `lower_dir` "" makes a base layer: the whole of `upper_dir`.
absl::StatusOr<ExportResult> ExportTreeDiff(const std::string& lower_dir,
                                            const std::string& upper_dir,
                                            const std::string& out_tar_path);

}  // namespace strata::images
