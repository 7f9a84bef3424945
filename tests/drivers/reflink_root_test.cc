// Reflinked copies, for real: on a store whose filesystem shares extents (xfs made with
// reflink=1, btrfs), the tree copier clones each file (FICLONE) instead of copying its bytes, so
// an overlay commit of a big writable layer costs almost no time or space; on one that cannot
// (ext4, xfs with reflink=0) the same copy falls back to copying, and holes stay holes either
// way. Loop-file filesystems; needs root (skips otherwise).

#include <fcntl.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "common/remove_tree.h"
#include "common/sparse_file.h"
#include "drivers/copy_tree.h"
#include "drivers/registry.h"
#include "gtest/gtest.h"
#include "node/images/safe_fs.h"
#include "tests/drivers/loop_filesystem.h"
#include "tests/sparse_test_util.h"

namespace strata::drivers {
namespace {

using sparsetest::kMiB;
using sparsetest::Pattern;
using sparsetest::Written;

constexpr int64_t kBigFile = 256 * kMiB;

struct Store {
  const char* name;
  const char* mkfs;
  bool shares_extents;
};

// Counts the extents of `path` and how many of them the filesystem reports as shared.
struct ExtentCount {
  int total = 0;
  int shared = 0;
};
ExtentCount CountExtents(const std::string& path) {
  ExtentCount count;
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  EXPECT_GE(fd, 0) << path;
  if (fd < 0) return count;
  constexpr int kMaxExtents = 512;
  std::vector<char> buffer(sizeof(fiemap) + kMaxExtents * sizeof(fiemap_extent));
  auto* map = reinterpret_cast<fiemap*>(buffer.data());
  map->fm_start = 0;
  map->fm_length = FIEMAP_MAX_OFFSET;
  map->fm_flags = FIEMAP_FLAG_SYNC;
  map->fm_extent_count = kMaxExtents;
  EXPECT_EQ(ioctl(fd, FS_IOC_FIEMAP, map), 0) << path << ": " << strerror(errno);
  for (unsigned i = 0; i < map->fm_mapped_extents; ++i) {
    ++count.total;
    if (map->fm_extents[i].fe_flags & FIEMAP_EXTENT_SHARED) ++count.shared;
  }
  close(fd);
  return count;
}

int64_t UsedBytes(const std::string& mount_point) {
  struct statvfs fs;
  EXPECT_EQ(statvfs(mount_point.c_str(), &fs), 0);
  return static_cast<int64_t>((fs.f_blocks - fs.f_bfree) * fs.f_frsize);
}

// `size` bytes of incompressible data at `path`, synced so its extents are allocated.
void WriteBigFile(const std::string& path, int64_t size) {
  sparsetest::MakeSparseFile(path, size, {});
  const std::string block = Pattern(4 * kMiB, 7);
  int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  for (int64_t offset = 0; offset < size; offset += static_cast<int64_t>(block.size())) {
    ASSERT_EQ(pwrite(fd, block.data(), block.size(), offset), static_cast<ssize_t>(block.size()));
  }
  ASSERT_EQ(fsync(fd), 0);
  close(fd);
}

bool SameContent(const std::string& a, const std::string& b) {
  int fa = open(a.c_str(), O_RDONLY | O_CLOEXEC), fb = open(b.c_str(), O_RDONLY | O_CLOEXEC);
  bool same = fa >= 0 && fb >= 0;
  std::vector<char> ba(kMiB), bb(kMiB);
  while (same) {
    ssize_t na = read(fa, ba.data(), ba.size()), nb = read(fb, bb.data(), bb.size());
    if (na != nb || na < 0) same = false;
    if (na <= 0) break;
    if (same && memcmp(ba.data(), bb.data(), static_cast<size_t>(na)) != 0) same = false;
  }
  if (fa >= 0) close(fa);
  if (fb >= 0) close(fb);
  return same;
}

class ReflinkTest : public ::testing::TestWithParam<Store> {
 protected:
  void SetUp() override {
    auto fs = testing::LoopFilesystem::Create(GetParam().mkfs, int64_t{1} << 30);
    if (!fs.ok()) GTEST_SKIP() << fs.status();
    fs_ = std::move(*fs);
    root_ = fs_->mount_point();
  }

  std::unique_ptr<testing::LoopFilesystem> fs_;
  std::string root_;
};

TEST_P(ReflinkTest, CopyFileDataClonesWhereTheStoreSharesExtents) {
  WriteBigFile(root_ + "/big", 8 * kMiB);
  int in = open((root_ + "/big").c_str(), O_RDONLY | O_CLOEXEC);
  int out = open((root_ + "/copy").c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  ASSERT_GE(in, 0);
  ASSERT_GE(out, 0);
  auto stats = CopyFileData(in, out, "big");
  close(in);
  close(out);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->cloned, GetParam().shares_extents);
  EXPECT_TRUE(SameContent(root_ + "/big", root_ + "/copy"));
}

TEST_P(ReflinkTest, TreeCopySharesBigFilesAndKeepsHoles) {
  ASSERT_EQ(mkdir((root_ + "/src").c_str(), 0755), 0);
  WriteBigFile(root_ + "/src/big", kBigFile);
  const std::vector<Written> writes = {{4 * kMiB, Pattern(kMiB, 1)}};
  sparsetest::MakeSparseFile(root_ + "/src/sparse", 64 * kMiB, writes);
  sync();
  const int64_t used_before = UsedBytes(root_);

  ASSERT_TRUE(CopyTree(root_ + "/src", root_ + "/dst").ok());
  sync();
  const int64_t grew = UsedBytes(root_) - used_before;

  EXPECT_TRUE(SameContent(root_ + "/src/big", root_ + "/dst/big"));
  // 1 MiB of slack: xfs allocates a written range in larger pieces than it was asked for
  // (speculative preallocation); a filled hole would show as the file's whole 64 MiB.
  sparsetest::ExpectSparseCopy(root_ + "/dst/sparse", 64 * kMiB, writes, /*slack_per_extent=*/kMiB);
  ExtentCount extents = CountExtents(root_ + "/dst/big");
  ASSERT_GT(extents.total, 0);
  if (GetParam().shares_extents) {
    EXPECT_EQ(extents.shared, extents.total) << "every extent of the copy is the original's";
    EXPECT_LT(grew, 16 * kMiB) << "a reflinked copy of 256 MiB takes metadata, not data";
  } else {
    EXPECT_EQ(extents.shared, 0);
    EXPECT_GE(grew, kBigFile) << "a copy that cannot share takes the data again";
  }
}

// What the issue asks: an overlay commit of a large writable layer on such a store is near
// O(1) in its size, because the commit (kKeep: the volume stays in use) is a tree copy.
TEST_P(ReflinkTest, OverlayCommitOfALargeUpperSharesItsExtents) {
  auto driver = NewDriver("overlay", root_ + "/store");
  ASSERT_TRUE(driver.ok()) << driver.status();
  ASSERT_TRUE((*driver)->Prepare("vol", {}, {}).ok());
  auto upper = (*driver)->DirectWriteTarget("vol");
  ASSERT_TRUE(upper.ok()) << upper.status();
  WriteBigFile(upper->directory + "/big", kBigFile);
  sync();
  const int64_t used_before = UsedBytes(root_);

  ASSERT_TRUE((*driver)->Commit("layer", "vol", {}, CommitMode::kKeep).ok());
  sync();
  const int64_t grew = UsedBytes(root_) - used_before;

  auto view = (*driver)->View({"layer"});
  ASSERT_TRUE(view.ok()) << view.status();
  ASSERT_EQ(view->size(), 1u);
  const std::string layer = (*view)[0].source;  // a single-layer view binds the layer itself
  EXPECT_TRUE(SameContent(upper->directory + "/big", layer + "/big"));
  ExtentCount extents = CountExtents(layer + "/big");
  if (GetParam().shares_extents) {
    EXPECT_EQ(extents.shared, extents.total);
    EXPECT_LT(grew, 16 * kMiB);
  } else {
    EXPECT_GE(grew, kBigFile);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Stores, ReflinkTest,
    ::testing::Values(Store{"xfs_reflink", "mkfs.xfs -q -f -m reflink=1", true},
                      Store{"btrfs", "mkfs.btrfs -q -f", true},
                      Store{"xfs_no_reflink", "mkfs.xfs -q -f -m reflink=0", false},
                      Store{"ext4", "mkfs.ext4 -q -F", false}),
    [](const ::testing::TestParamInfo<Store>& info) { return std::string(info.param.name); });

// The one RemoveTree (drivers and images alike) never crosses into another mount: a bind mount
// deep in the tree stops the removal and what it shows survives, as does the tree's mount point.
TEST(RemoveTreeRootTest, RefusesToCrossAMountPointAnywhereInTheTree) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to bind mount";
  char pattern[] = "/tmp/strata-remove-tree-XXXXXX";
  ASSERT_NE(mkdtemp(pattern), nullptr);
  const std::string base = pattern;
  for (const char* dir : {"/precious", "/tree", "/tree/a", "/tree/a/b", "/tree/a/b/mnt"})
    ASSERT_EQ(mkdir((base + dir).c_str(), 0755), 0) << dir;
  const std::string precious = base + "/precious/data";
  { std::ofstream(precious) << "keep me"; }
  ASSERT_EQ(mount((base + "/precious").c_str(), (base + "/tree/a/b/mnt").c_str(), nullptr, MS_BIND,
                  nullptr),
            0);
  for (auto remove : {&::strata::RemoveTree, &images::RemoveTree}) {
    absl::Status removed = remove(base + "/tree");
    EXPECT_TRUE(absl::IsFailedPrecondition(removed)) << removed;
    EXPECT_EQ(access(precious.c_str(), F_OK), 0) << "a file under the bind mount was removed";
    // The top of a tree that is itself a mount point is refused too.
    removed = remove(base + "/tree/a/b/mnt");
    EXPECT_TRUE(absl::IsFailedPrecondition(removed)) << removed;
    EXPECT_EQ(access(precious.c_str(), F_OK), 0);
  }
  ASSERT_EQ(umount2((base + "/tree/a/b/mnt").c_str(), MNT_DETACH), 0);
  EXPECT_TRUE(RemoveTree(base + "/tree").ok());
  EXPECT_NE(access((base + "/tree").c_str(), F_OK), 0);
  EXPECT_EQ(access(precious.c_str(), F_OK), 0);
  EXPECT_TRUE(RemoveTree(base).ok());
}

}  // namespace
}  // namespace strata::drivers
