#pragma once
// Sparse files: where a file's data lies (lseek SEEK_DATA / SEEK_HOLE) and a copy that keeps its
// holes as holes. A pod's `truncate -s 64G` file holds no blocks; copying or exporting it byte by
// byte would allocate (or write) 64 GiB of zeros.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace strata {

// A run of a file that the filesystem reports as data. Allocated zeros are data too: only holes
// (ranges with no blocks) are left out.
struct DataExtent {
  int64_t offset = 0;
  int64_t length = 0;
  bool operator==(const DataExtent& other) const {
    return offset == other.offset && length == other.length;
  }
};

// The data extents of the first `size` bytes of the regular file open as `fd`, in order, disjoint
// and not adjacent, clipped to `size`; the gaps are holes. A filesystem that cannot report holes
// (lseek gives EINVAL) gives [0, size) as one extent. A file shorter than `size` (it shrank) has
// no extent past its end.
absl::StatusOr<std::vector<DataExtent>> DataExtents(int fd, int64_t size, const std::string& where);

// Merges extents separated by the smallest holes (their zeros become data) until at most
// `max_extents` are left, so a pathologically fragmented file gives a bounded map. Merging
// never drops data: every byte of the input extents stays inside an output extent.
void CoalesceExtents(std::vector<DataExtent>* extents, size_t max_extents);

struct CopyFileOptions {
  // Look for holes with SEEK_DATA / SEEK_HOLE; false copies every byte (the path taken anyway
  // when the filesystem cannot report holes).
  bool keep_holes = true;
  // Copy data with copy_file_range(2) (which shares extents where the filesystem can: btrfs,
  // xfs reflink); false, or a filesystem pair it does not support, copies with pread/pwrite.
  bool copy_file_range = true;
  // First try to share the whole file with FICLONE (btrfs, xfs with reflink=1): one ioctl, near
  // O(1) in the file's size, holes included. Any failure falls back to the copy above.
  bool clone = true;
};

struct CopyFileStats {
  int64_t data_bytes = 0;    // bytes copied from data extents (holes not counted)
  int64_t extents = 0;       // data extents copied
  bool holes_known = false;  // the source reported its holes (else a full copy was made)
  bool cloned = false;       // shared whole with FICLONE: no data was copied
};

// Copies the content of the regular file open as `in` (read from its start) into `out`, an
// empty regular file open for writing on the same filesystem or another: shared whole by a
// clone where the filesystem can, else the data extents at the same offsets, the holes left
// unwritten, and `out` cut or extended to `in`'s size at the end (so a trailing hole stays a
// hole). Works on a file that changes meanwhile (a live layer): a clone is a point-in-time copy
// of it, a copy holds what it held at each read.
absl::StatusOr<CopyFileStats> CopyFileData(int in, int out, const std::string& where,
                                           const CopyFileOptions& options = {});

}  // namespace strata
