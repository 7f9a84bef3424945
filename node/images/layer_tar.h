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
#include "node/images/limits.h"

namespace strata::images {

struct ExtractResult {
  std::string diff_id;             // "sha256:..." of the uncompressed tar stream
  int64_t uncompressed_bytes = 0;  // length of that stream, tar padding included
  int64_t entries = 0;             // tar entries processed (whiteouts included)
  int64_t apparent_bytes = 0;      // sum of regular files' sizes (sparse ones at full size)
};

// Bounds and naming for one extraction.
struct ExtractOptions {
  // How errors name the blob (e.g. "layer " + its path inside the user's archive); "" = its path.
  std::string display_name;
  // Refused (InvalidArgument) when the uncompressed stream, or the sum of the regular files'
  // apparent sizes, exceeds this; `max_bytes_flag` names the bound in the message.
  int64_t max_bytes = ImportLimits{}.max_layer_bytes;
  std::string max_bytes_flag = "--max-layer-bytes";
  int64_t max_entries = ImportLimits{}.max_layer_entries;
};

// Extracts the layer blob at `blob_path` (tar, tar+gzip or tar+zstd, detected from the bytes)
// into `target_dir`, which must exist. The blob is read once: its uncompressed bytes are hashed
// (the DiffID) while they feed the tar reader, and the stream is drained to its end.
//
// The blob must be a regular file (it is opened without blocking and checked, so a FIFO or a
// device is refused, never read). Bounds come from `options` (see ExtractOptions).
//
// Whiteouts (`.wh.NAME`, `.wh..wh..opq`) are written as overlay whiteouts (kOverlay: 0:0 char
// device, trusted.overlay.opaque="y") or applied to the tree in `target_dir` (kApply: the lower
// path is deleted; an opaque directory loses every child this layer did not write). Mode
// (setuid/setgid/sticky too), owner, times and xattrs are preserved; directories' modes and times
// are set after all entries. Overlay-private xattrs (trusted.overlay.*, user.overlay.*) in the
// tar are dropped: only the whiteout translation writes them, else an entry carrying
// trusted.overlay.redirect could make a directory show another layer's content.
//
// Errors: NotFound (no blob), InvalidArgument (hostile or unsupported entry, named),
// DataLoss (corrupt stream, or DiffID differs from a non-empty `expected_diff_id`). On any
// error `target_dir` holds a partial layer: the caller deletes it.
absl::StatusOr<ExtractResult> ExtractLayer(const std::string& blob_path,
                                           const std::string& target_dir,
                                           drivers::WhiteoutStyle style,
                                           const std::string& expected_diff_id,
                                           const ExtractOptions& options = {});

// Unpacks an image archive (docker save output, OCI layout tar; optionally gzip/zstd) into the
// existing directory `target_dir` with the same path rules. Only directories, regular files,
// symlinks and hardlinks are accepted; owners, modes, times and xattrs are not kept (files 0644,
// directories 0755), `.wh.` names are plain names.
absl::Status UnpackArchiveTar(const std::string& tar_path, const std::string& target_dir,
                              const ExtractOptions& options = {});

// True for xattr names overlayfs interprets (trusted.overlay.*, user.overlay.*).
bool IsOverlayXattr(const char* name);

}  // namespace strata::images
