#include "common/sparse_file.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <limits>

#include "common/errno_status.h"

namespace strata {
namespace {

constexpr size_t kBufferSize = 1 << 20;
constexpr int64_t kMaxCopyChunk = 1 << 30;

bool CopyFileRangeUnsupported(int error) {
  // EXDEV: different filesystems (this kernel refuses most cross-filesystem copies); EINVAL,
  // ENOSYS, EOPNOTSUPP: a filesystem or kernel without it.
  return error == EXDEV || error == EINVAL || error == ENOSYS || error == EOPNOTSUPP;
}

// Copies [offset, offset + length) of `in` to the same offsets of `out`, stopping early at
// `in`'s end. Returns the bytes copied.
absl::StatusOr<int64_t> CopyRange(int in, int out, int64_t offset, int64_t length,
                                  bool* use_copy_file_range, std::vector<char>* buffer,
                                  const std::string& where) {
  int64_t done = 0;
  while (done < length) {
    const int64_t chunk = std::min(length - done, kMaxCopyChunk);
    if (*use_copy_file_range) {
      loff_t in_offset = offset + done;
      loff_t out_offset = offset + done;
      ssize_t n = copy_file_range(in, &in_offset, out, &out_offset, static_cast<size_t>(chunk), 0);
      if (n > 0) {
        done += n;
        continue;
      }
      if (n == 0) break;  // end of file (it shrank)
      if (errno == EINTR) continue;
      if (!CopyFileRangeUnsupported(errno)) return ErrnoStatus(errno, "copy_file_range", where);
      *use_copy_file_range = false;
    }
    if (buffer->empty()) buffer->resize(kBufferSize);
    ssize_t n = pread(in, buffer->data(),
                      static_cast<size_t>(std::min<int64_t>(chunk, kBufferSize)), offset + done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, "read", where);
    }
    if (n == 0) break;
    for (ssize_t written = 0; written < n;) {
      ssize_t w = pwrite(out, buffer->data() + written, static_cast<size_t>(n - written),
                         offset + done + written);
      if (w < 0) {
        if (errno == EINTR) continue;
        return ErrnoStatus(errno, "write copy of", where);
      }
      written += w;
    }
    done += n;
  }
  return done;
}

}  // namespace

absl::StatusOr<std::vector<DataExtent>> DataExtents(int fd, int64_t size,
                                                    const std::string& where) {
  std::vector<DataExtent> extents;
  for (int64_t position = 0; position < size;) {
    off_t data = lseek(fd, position, SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break;  // only a hole (or the end) from here
      if (errno == EINVAL) {      // the filesystem cannot tell: all of it is data
        extents.push_back({position, size - position});
        break;
      }
      return ErrnoStatus(errno, "seek data", where);
    }
    if (data >= size) break;
    off_t hole = lseek(fd, data, SEEK_HOLE);
    if (hole < 0) {
      if (errno == ENXIO) break;  // shrank meanwhile
      return ErrnoStatus(errno, "seek hole", where);
    }
    const int64_t end = std::min<int64_t>(std::max<int64_t>(hole, data + 1), size);
    extents.push_back({data, end - data});
    position = end;
  }
  return extents;
}

void CoalesceExtents(std::vector<DataExtent>* extents, size_t max_extents) {
  max_extents = std::max<size_t>(max_extents, 1);
  for (int64_t gap = 4096; extents->size() > max_extents; gap *= 2) {
    std::vector<DataExtent> merged;
    merged.reserve(extents->size());
    for (const DataExtent& extent : *extents) {
      if (!merged.empty() && extent.offset - (merged.back().offset + merged.back().length) <= gap) {
        merged.back().length = extent.offset + extent.length - merged.back().offset;
      } else {
        merged.push_back(extent);
      }
    }
    *extents = std::move(merged);
  }
}

absl::StatusOr<CopyFileStats> CopyFileData(int in, int out, const std::string& where,
                                           const CopyFileOptions& options) {
  CopyFileStats stats;
  if (options.clone) {
    int result;
    do {
      result = ioctl(out, FICLONE, in);
    } while (result != 0 && errno == EINTR);
    if (result == 0) {
      stats.cloned = true;
      stats.holes_known = true;  // the clone shares the extent map, holes and all
      return stats;
    }
    // EOPNOTSUPP / EXDEV / EINVAL are the usual "cannot share here" (ext4, tmpfs, another
    // filesystem, a NOCOW file on btrfs). Whatever the reason, the copy below reports real
    // errors itself; a clone that stopped part way leaves nothing the copy keeps.
    if (ftruncate(out, 0) != 0) return ErrnoStatus(errno, "truncate copy of", where);
  }
  stats.holes_known = options.keep_holes;
  bool use_copy_file_range = options.copy_file_range;
  std::vector<char> buffer;
  for (int64_t position = 0;;) {
    if (!stats.holes_known) {
      absl::StatusOr<int64_t> copied =
          CopyRange(in, out, position, std::numeric_limits<int64_t>::max() - position,
                    &use_copy_file_range, &buffer, where);
      if (!copied.ok()) return copied.status();
      stats.data_bytes += *copied;
      if (*copied > 0) ++stats.extents;
      break;
    }
    off_t data = lseek(in, position, SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break;  // only a hole (or the end) from here
      if (errno == EINVAL) {      // the filesystem cannot tell holes: copy every byte
        stats.holes_known = false;
        continue;
      }
      return ErrnoStatus(errno, "seek data", where);
    }
    off_t hole = lseek(in, data, SEEK_HOLE);
    if (hole < 0) {
      if (errno == ENXIO) break;  // shrank meanwhile
      return ErrnoStatus(errno, "seek hole", where);
    }
    if (hole <= data) {  // a filesystem that lies: do not loop, copy the rest whole
      stats.holes_known = false;
      position = data;
      continue;
    }
    absl::StatusOr<int64_t> copied =
        CopyRange(in, out, data, hole - data, &use_copy_file_range, &buffer, where);
    if (!copied.ok()) return copied.status();
    stats.data_bytes += *copied;
    ++stats.extents;
    position = data + *copied;
    if (*copied < hole - data) break;  // shrank meanwhile
  }
  // The size last: a trailing hole has no data to extend the copy, and a file that shrank
  // while being copied is cut where it now ends.
  struct stat st;
  if (fstat(in, &st) != 0) return ErrnoStatus(errno, "stat", where);
  if (ftruncate(out, st.st_size) != 0) return ErrnoStatus(errno, "truncate copy of", where);
  return stats;
}

}  // namespace strata
