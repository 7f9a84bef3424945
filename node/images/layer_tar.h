#pragma once
// Safe extraction of image layer tars (and of whole image archives) into a directory.
//
// Input is hostile. Entry names are normalised ("./" stripped) and rejected when absolute, when
// they hold a ".." component or are empty. Every parent directory is opened with
// openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS) relative to the target
// directory and the entry is created with *at() calls on that fd, so nothing is ever written
// outside the target or through a symlink. Symlink entries themselves may point anywhere (they
// are data); hardlink targets must lie beneath the target and must not be directories.

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "drivers/driver.h"

namespace strata::images {

struct ExtractResult {
  std::string diff_id;             // "sha256:..." of the uncompressed tar stream
  int64_t uncompressed_bytes = 0;  // length of that stream, tar padding included
  int64_t entries = 0;             // tar entries processed (whiteouts included)
};

// Extracts the layer blob at `blob_path` (tar, tar+gzip or tar+zstd, detected from the bytes)
// into `target_dir`, which must exist. The blob is read once: its uncompressed bytes are hashed
// (the DiffID) while they feed the tar reader, and the stream is drained to its end.
//
// Whiteouts (`.wh.NAME`, `.wh..wh..opq`) are written as overlay whiteouts (kOverlay: 0:0 char
// device, trusted.overlay.opaque="y") or applied to the tree in `target_dir` (kApply: the lower
// path is deleted; an opaque directory loses every child this layer did not write). Mode
// (setuid/setgid/sticky too), owner, times and xattrs are preserved; directories' modes and times
// are set after all entries.
//
// Errors: NotFound (no blob), InvalidArgument (hostile or unsupported entry, named),
// DataLoss (corrupt stream, or DiffID differs from a non-empty `expected_diff_id`). On any
// error `target_dir` holds a partial layer: the caller deletes it.
absl::StatusOr<ExtractResult> ExtractLayer(const std::string& blob_path,
                                           const std::string& target_dir,
                                           drivers::WhiteoutStyle style,
                                           const std::string& expected_diff_id);

// Unpacks an image archive (docker save output, OCI layout tar; optionally gzip/zstd) into the
// existing directory `target_dir` with the same path rules. Only directories, regular files,
// symlinks and hardlinks are accepted; owners, modes, times and xattrs are not kept (files 0644,
// directories 0755), `.wh.` names are plain names.
absl::Status UnpackArchiveTar(const std::string& tar_path, const std::string& target_dir);

}  // namespace strata::images
