#pragma once
// Helpers for tests of sparse files (holes kept through copies, exports and imports): making a
// file with a few written ranges and holes elsewhere, and reading back what a filesystem
// allocated for it. Header-only so every test folder can use it.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "common/sparse_file.h"
#include "gtest/gtest.h"

namespace strata::sparsetest {

constexpr int64_t kGiB = int64_t{1} << 30;
constexpr int64_t kMiB = int64_t{1} << 20;

struct Written {
  int64_t offset;
  std::string data;
};

// `size` bytes of deterministic, incompressible-looking data.
inline std::string Pattern(size_t size, uint32_t seed) {
  std::mt19937 random(seed);
  std::string data(size, '\0');
  for (char& c : data) c = static_cast<char>(random() & 0xff);
  return data;
}

// A file of `size` bytes (ftruncate) holding `writes` at their offsets and holes elsewhere.
inline void MakeSparseFile(const std::string& path, int64_t size,
                           const std::vector<Written>& writes) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0) << path;
  ASSERT_EQ(ftruncate(fd, size), 0) << path;
  for (const Written& w : writes) {
    ASSERT_EQ(pwrite(fd, w.data.data(), w.data.size(), w.offset),
              static_cast<ssize_t>(w.data.size()))
        << path;
  }
  ASSERT_EQ(fsync(fd), 0);
  close(fd);
}

// The example of the issue: 64 GiB with 1 MiB at the start, 2 MiB in the middle and 1 MiB
// (plus a partial block) near the end.
inline std::vector<Written> SixtyFourGiBWrites() {
  return {{0, Pattern(kMiB, 1)},
          {20 * kGiB + 12345, Pattern(2 * kMiB, 2)},
          {64 * kGiB - 3 * kMiB, Pattern(kMiB + 777, 3)}};
}

inline int64_t WrittenBytes(const std::vector<Written>& writes) {
  int64_t total = 0;
  for (const Written& w : writes) total += static_cast<int64_t>(w.data.size());
  return total;
}

inline struct stat Stat(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(lstat(path.c_str(), &st), 0) << path;
  return st;
}

// What `du` counts: allocated bytes.
inline int64_t AllocatedBytes(const std::string& path) {
  return static_cast<int64_t>(Stat(path).st_blocks) * 512;
}

inline std::vector<DataExtent> Extents(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  EXPECT_GE(fd, 0) << path;
  if (fd < 0) return {};
  auto extents = DataExtents(fd, Stat(path).st_size, path);
  close(fd);
  EXPECT_TRUE(extents.ok()) << extents.status();
  return extents.ok() ? *extents : std::vector<DataExtent>{};
}

inline std::string ReadAt(const std::string& path, int64_t offset, size_t length) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  EXPECT_GE(fd, 0) << path;
  std::string data(length, '\0');
  ssize_t n = pread(fd, data.data(), length, offset);
  close(fd);
  data.resize(n > 0 ? static_cast<size_t>(n) : 0);
  return data;
}

// Every check the issue asks of a sparse file after a copy, an export or an import: the
// apparent size, the written data at its offsets, zeros just around it, and the allocation
// (what du shows) within the written bytes plus `slack_per_extent` (default: a block each side)
// and 64 KiB on top for filesystems with larger allocation units.
inline void ExpectSparseCopy(const std::string& path, int64_t size,
                             const std::vector<Written>& writes,
                             int64_t slack_per_extent = 2 * 4096) {
  SCOPED_TRACE(path);
  struct stat st = Stat(path);
  EXPECT_EQ(st.st_size, size);
  EXPECT_LE(
      static_cast<int64_t>(st.st_blocks) * 512,
      WrittenBytes(writes) + static_cast<int64_t>(writes.size()) * slack_per_extent + 64 * 1024)
      << "holes were filled";
  for (const Written& w : writes) {
    EXPECT_TRUE(ReadAt(path, w.offset, w.data.size()) == w.data) << "data at " << w.offset;
    if (w.offset >= 4096) {
      EXPECT_TRUE(ReadAt(path, w.offset - 4096, 4096) == std::string(4096, '\0'))
          << "zeros before " << w.offset;
    }
  }
}

}  // namespace strata::sparsetest
