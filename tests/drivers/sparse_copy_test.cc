// The tree copier keeps holes: CopyTree copies a regular file extent by extent (SEEK_DATA /
// SEEK_HOLE) and leaves holes unallocated; a file without holes, a hole-only file and the
// full-copy fallbacks (no hole support, no copy_file_range) behave. Runs without root on any
// filesystem with SEEK_DATA (ext4, xfs, btrfs, tmpfs) under /tmp.

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>

#include "common/sparse_file.h"
#include "drivers/copy_tree.h"
#include "gtest/gtest.h"
#include "tests/sparse_test_util.h"

namespace strata::drivers {
namespace {

using sparsetest::kGiB;
using sparsetest::kMiB;
using sparsetest::Pattern;
using sparsetest::Written;

class SparseCopyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/strata-sparse-copy-XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    dir_ = pattern;
    src_ = dir_ + "/src";
    ASSERT_EQ(mkdir(src_.c_str(), 0755), 0);
  }
  void TearDown() override {
    if (!dir_.empty()) {
      EXPECT_TRUE(RemoveTree(dir_).ok());
    }
  }

  std::string dir_, src_;
};

std::string ReadAll(const std::string& path) {
  return sparsetest::ReadAt(path, 0, static_cast<size_t>(sparsetest::Stat(path).st_size));
}

// The whole content of both files, compared without printing megabytes on a failure.
void ExpectSameBytes(const std::string& a, const std::string& b) {
  std::string data_a = ReadAll(a);
  std::string data_b = ReadAll(b);
  EXPECT_EQ(data_a.size(), data_b.size());
  EXPECT_TRUE(data_a == data_b) << a << " and " << b << " differ";
}

TEST_F(SparseCopyTest, HolesAtStartMiddleAndEndStayHoles) {
  // hole [0, 4 MiB), data 1 MiB, hole 5 MiB, data 4 KiB + 100 bytes (a partial block), hole to
  // 16 MiB.
  const std::vector<Written> writes = {{4 * kMiB, Pattern(kMiB, 1)},
                                       {10 * kMiB, Pattern(4096 + 100, 2)}};
  sparsetest::MakeSparseFile(src_ + "/holes", 16 * kMiB, writes);
  ASSERT_EQ(chmod((src_ + "/holes").c_str(), 0640), 0);
  ASSERT_TRUE(CopyTree(src_, dir_ + "/dst").ok());
  const std::string copy = dir_ + "/dst/holes";
  EXPECT_EQ(sparsetest::Stat(copy).st_blocks, sparsetest::Stat(src_ + "/holes").st_blocks);
  EXPECT_EQ(sparsetest::Extents(copy), sparsetest::Extents(src_ + "/holes"));
  EXPECT_EQ(sparsetest::Extents(copy).size(), 2u);
  EXPECT_EQ(sparsetest::Stat(copy).st_mode & 07777, 0640u);
  sparsetest::ExpectSparseCopy(copy, 16 * kMiB, writes);
  ExpectSameBytes(src_ + "/holes", copy);
}

TEST_F(SparseCopyTest, FileWithoutHolesIsCopiedWhole) {
  sparsetest::MakeSparseFile(src_ + "/dense", 3 * kMiB + 5, {{0, Pattern(3 * kMiB + 5, 3)}});
  ASSERT_TRUE(CopyTree(src_, dir_ + "/dst").ok());
  EXPECT_EQ(sparsetest::Stat(dir_ + "/dst/dense").st_blocks,
            sparsetest::Stat(src_ + "/dense").st_blocks);
  EXPECT_EQ(sparsetest::Extents(dir_ + "/dst/dense"), (std::vector<DataExtent>{{0, 3 * kMiB + 5}}));
  ExpectSameBytes(src_ + "/dense", dir_ + "/dst/dense");
}

TEST_F(SparseCopyTest, AllocatedZerosStayAllocated) {
  sparsetest::MakeSparseFile(src_ + "/zeros", kMiB, {{0, std::string(kMiB, '\0')}});
  ASSERT_TRUE(CopyTree(src_, dir_ + "/dst").ok());
  EXPECT_EQ(sparsetest::Stat(dir_ + "/dst/zeros").st_blocks,
            sparsetest::Stat(src_ + "/zeros").st_blocks);
  EXPECT_GE(sparsetest::AllocatedBytes(dir_ + "/dst/zeros"), kMiB);
}

TEST_F(SparseCopyTest, HoleOnlyFileCopiesToNoBlocks) {
  sparsetest::MakeSparseFile(src_ + "/truncated", 8 * kGiB, {});
  sparsetest::MakeSparseFile(src_ + "/empty", 0, {});
  ASSERT_TRUE(CopyTree(src_, dir_ + "/dst").ok());
  EXPECT_EQ(sparsetest::Stat(dir_ + "/dst/truncated").st_size, 8 * kGiB);
  EXPECT_EQ(sparsetest::Stat(dir_ + "/dst/truncated").st_blocks, 0);
  EXPECT_EQ(sparsetest::Stat(dir_ + "/dst/empty").st_size, 0);
}

TEST_F(SparseCopyTest, SixtyFourGiBFileCopiesWhatItHolds) {
  const auto writes = sparsetest::SixtyFourGiBWrites();
  sparsetest::MakeSparseFile(src_ + "/big", 64 * kGiB, writes);
  ASSERT_EQ(link((src_ + "/big").c_str(), (src_ + "/big-link").c_str()), 0);
  auto started = std::chrono::steady_clock::now();
  ASSERT_TRUE(CopyTree(src_, dir_ + "/dst").ok());
  std::chrono::duration<double> took = std::chrono::steady_clock::now() - started;
  sparsetest::ExpectSparseCopy(dir_ + "/dst/big", 64 * kGiB, writes);
  EXPECT_EQ(sparsetest::Extents(dir_ + "/dst/big"), sparsetest::Extents(src_ + "/big"));
  EXPECT_EQ(sparsetest::Stat(dir_ + "/dst/big").st_ino,
            sparsetest::Stat(dir_ + "/dst/big-link").st_ino);
  EXPECT_LT(took.count(), 20.0) << "a copy of 4 MiB must not take the time of 64 GiB";
  std::cout << "[ figures  ] CopyTree of a 64 GiB sparse file with "
            << sparsetest::WrittenBytes(writes) << " bytes written: " << took.count() * 1000
            << " ms, " << sparsetest::AllocatedBytes(dir_ + "/dst/big") << " bytes allocated\n";
}

// The seams of CopyFileData: each fallback on its own.
class CopyFileDataTest : public SparseCopyTest {
 protected:
  absl::StatusOr<CopyFileStats> Copy(const std::string& from, const std::string& to,
                                     const CopyFileOptions& options) {
    int in = open(from.c_str(), O_RDONLY | O_CLOEXEC);
    int out = open(to.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    EXPECT_GE(in, 0);
    EXPECT_GE(out, 0);
    auto stats = CopyFileData(in, out, from, options);
    close(in);
    close(out);
    return stats;
  }
  const std::vector<Written> writes_ = {{kMiB, Pattern(kMiB, 4)}, {6 * kMiB, Pattern(100, 5)}};
};

TEST_F(CopyFileDataTest, WithoutHoleSupportCopiesEveryByte) {
  sparsetest::MakeSparseFile(src_ + "/f", 8 * kMiB, writes_);
  CopyFileOptions options;
  options.keep_holes = false;  // what a filesystem without SEEK_DATA (EINVAL) gets
  options.clone = false;       // (a reflink-capable /tmp would share the file instead)
  auto stats = Copy(src_ + "/f", dir_ + "/full", options);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_FALSE(stats->holes_known);
  EXPECT_EQ(stats->data_bytes, 8 * kMiB);
  EXPECT_GE(sparsetest::AllocatedBytes(dir_ + "/full"), 8 * kMiB) << "a full copy";
  ExpectSameBytes(src_ + "/f", dir_ + "/full");
}

TEST_F(CopyFileDataTest, WithoutCopyFileRangeStillKeepsHoles) {
  sparsetest::MakeSparseFile(src_ + "/f", 8 * kMiB, writes_);
  CopyFileOptions options;
  options.copy_file_range = false;  // what EXDEV / EOPNOTSUPP / ENOSYS fall back to
  options.clone = false;
  auto stats = Copy(src_ + "/f", dir_ + "/rw", options);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_TRUE(stats->holes_known);
  EXPECT_EQ(stats->extents, 2);
  EXPECT_LT(stats->data_bytes, 2 * kMiB);
  EXPECT_EQ(sparsetest::Stat(dir_ + "/rw").st_blocks, sparsetest::Stat(src_ + "/f").st_blocks);
  sparsetest::ExpectSparseCopy(dir_ + "/rw", 8 * kMiB, writes_);
  ExpectSameBytes(src_ + "/f", dir_ + "/rw");
}

TEST_F(CopyFileDataTest, NeitherSeamKeepsContent) {
  sparsetest::MakeSparseFile(src_ + "/f", 8 * kMiB, writes_);
  auto stats = Copy(src_ + "/f", dir_ + "/plain", CopyFileOptions{false, false, false});
  ASSERT_TRUE(stats.ok()) << stats.status();
  ExpectSameBytes(src_ + "/f", dir_ + "/plain");
}

TEST(DataExtentsTest, ReportsDataAndClipsToSize) {
  char pattern[] = "/tmp/strata-extents-XXXXXX";
  int fd = mkstemp(pattern);
  ASSERT_GE(fd, 0);
  unlink(pattern);
  ASSERT_EQ(ftruncate(fd, 10 * kMiB), 0);
  std::string block = Pattern(8192, 6);
  ASSERT_EQ(pwrite(fd, block.data(), block.size(), 2 * kMiB), 8192);
  auto extents = DataExtents(fd, 10 * kMiB, "f");
  ASSERT_TRUE(extents.ok()) << extents.status();
  EXPECT_EQ(*extents, (std::vector<DataExtent>{{2 * kMiB, 8192}}));
  extents = DataExtents(fd, 2 * kMiB + 100, "f");  // clipped to what the caller asks
  ASSERT_TRUE(extents.ok());
  EXPECT_EQ(*extents, (std::vector<DataExtent>{{2 * kMiB, 100}}));
  extents = DataExtents(fd, kMiB, "f");
  ASSERT_TRUE(extents.ok());
  EXPECT_TRUE(extents->empty());
  close(fd);
}

TEST(CoalesceExtentsTest, MergesSmallestHolesFirstAndKeepsAllData) {
  std::vector<DataExtent> extents = {
      {0, 4096}, {8192, 4096}, {1 << 20, 4096}, {(1 << 20) + 20480, 4096}, {8 << 20, 4096}};
  CoalesceExtents(&extents, 10);
  EXPECT_EQ(extents.size(), 5u) << "under the limit: untouched";
  CoalesceExtents(&extents, 3);
  // The 4 KiB hole goes first, then the 16 KiB one; the MiB-sized holes stay.
  EXPECT_EQ(extents,
            (std::vector<DataExtent>{{0, 12288}, {1 << 20, 20480 + 4096}, {8 << 20, 4096}}));
  CoalesceExtents(&extents, 1);
  EXPECT_EQ(extents, (std::vector<DataExtent>{{0, (8 << 20) + 4096}}));
}

}  // namespace
}  // namespace strata::drivers
