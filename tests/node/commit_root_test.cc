// Commits on real drivers and real mounts: a rich tree survives snapshot → restore on every
// driver (both the mounted, copy-on-commit path and the unmounted, rebase path), and a chain of
// 1,000 commits — flattened as it passes the depth limit — restores every snapshot. Needs root.
// Runs here on overlay, vfs and btrfs (a loop-file btrfs, tests/drivers/loop_filesystem.h); the
// devmapper kernel test (tests/devmapper) compiles this file in and runs it on devmapper inside
// a QEMU guest, with NewDriver routed to a loop-file thin pool.

#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <sstream>

#include "gtest/gtest.h"
#include "node/images/digest.h"
#include "sys/mounter.h"
#include "tests/drivers/loop_filesystem.h"
#include "tests/node/node_test_util.h"

namespace strata::node {
namespace {

// Commits in the long-chain test: the 1,000 on every driver that runs on the host; 50
// inside the QEMU guest, whose emulated CPU makes each devmapper commit ~0.5 s.
// STRATA_COMMIT_TEST_COMMITS overrides it.
int CommitCount(const std::string& driver) {
  if (const char* forced = std::getenv("STRATA_COMMIT_TEST_COMMITS"); forced && atoi(forced) > 0)
    return atoi(forced);
  if (driver == "devmapper") return 50;
  return 1000;
}

// Everything a commit must keep, per entry: type, mode, owner, size, mtime, content, link
// target, device, xattrs, and which entries are hardlinked together.
std::string TreeDigest(const std::string& dir) {
  static thread_local std::vector<std::string>* entries;
  static thread_local std::map<ino_t, std::string>* first_name;
  static thread_local size_t prefix;
  std::vector<std::string> collected;
  std::map<ino_t, std::string> inodes;
  entries = &collected;
  first_name = &inodes;
  prefix = dir.size();
  nftw(
      dir.c_str(),
      [](const char* path, const struct stat* st, int, struct FTW* ftw) -> int {
        if (ftw->level == 0) return 0;  // the mount point itself belongs to the mounter
        std::string name = path + prefix;
        std::ostringstream entry;
        entry << name << " mode=" << std::oct << st->st_mode << std::dec << " owner=" << st->st_uid
              << ":" << st->st_gid;
        if (!S_ISDIR(st->st_mode)) {
          entry << " size=" << st->st_size << " mtime=" << st->st_mtim.tv_sec << "."
                << st->st_mtim.tv_nsec;
        }
        if (S_ISREG(st->st_mode)) {
          entry << " data=" << images::Sha256Digest(testing::ReadFile(path));
          if (st->st_nlink > 1) {
            auto [it, fresh] = first_name->emplace(st->st_ino, name);
            entry << " link-group=" << (fresh ? name : it->second);
          }
        }
        if (S_ISLNK(st->st_mode)) {
          char target[4096];
          ssize_t n = readlink(path, target, sizeof(target));
          entry << " -> " << std::string(target, n > 0 ? n : 0);
        }
        if (S_ISCHR(st->st_mode) || S_ISBLK(st->st_mode))
          entry << " dev=" << major(st->st_rdev) << "," << minor(st->st_rdev);
        char names[4096];
        ssize_t length = llistxattr(path, names, sizeof(names));
        std::vector<std::string> xattrs;
        for (ssize_t i = 0; i < length; i += strlen(names + i) + 1) {
          std::string key = names + i;
          if (key.rfind("user.", 0) != 0) continue;  // trusted.* belongs to overlay itself
          char value[256];
          ssize_t size = lgetxattr(path, key.c_str(), value, sizeof(value));
          xattrs.push_back(key + "=" + std::string(value, size > 0 ? size : 0));
        }
        std::sort(xattrs.begin(), xattrs.end());
        for (const std::string& xattr : xattrs) entry << " " << xattr;
        entries->push_back(entry.str());
        return 0;
      },
      32, FTW_PHYS);
  std::sort(collected.begin(), collected.end());
  std::string joined;
  for (const std::string& entry : collected) joined += entry + "\n";
  return joined;
}

void SetTime(const std::string& path, time_t seconds) {
  struct timespec times[2] = {{seconds, 0}, {seconds, 123456789}};
  ASSERT_EQ(utimensat(AT_FDCWD, path.c_str(), times, AT_SYMLINK_NOFOLLOW), 0) << path;
}

class CommitRootTest : public testing::StoreFixture,
                       public ::testing::WithParamInterface<std::string> {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "commit tests mount filesystems: run as root";
    // Real driver, real mounts, under /var/tmp (overlay needs a filesystem that supports it);
    // btrfs needs its root on btrfs: a loop-file filesystem shared by the process' btrfs tests.
    std::string parent = "/var/tmp";
    if (GetParam() == "btrfs") {
      auto mount_point = strata::testing::SharedBtrfsMountPoint();
      if (!mount_point.ok())
        GTEST_SKIP() << "no btrfs for the btrfs driver: " << mount_point.status();
      parent = *mount_point;
    }
    std::string pattern = parent + "/strata-commit-XXXXXX";
    ASSERT_NE(mkdtemp(pattern.data()), nullptr) << pattern;
    root_ = pattern;
    pods_ = root_ + "-pods";
    ASSERT_TRUE(MakeDirs(pods_).ok());
    auto metadata = Metadata::Open(root_ + "/strata.db");
    ASSERT_TRUE(metadata.ok()) << metadata.status();
    metadata_ = std::move(*metadata);
    auto driver = drivers::NewDriver(GetParam(), root_);
    if (driver.status().code() == absl::StatusCode::kFailedPrecondition ||
        driver.status().code() == absl::StatusCode::kUnimplemented) {
      GTEST_SKIP() << driver.status();
    }
    ASSERT_TRUE(driver.ok()) << driver.status();
    driver_ = std::move(*driver);
    real_mounter_ = sys::NewLinuxMounter();
    layers_ = std::make_unique<LayerStore>(metadata_.get(), driver_.get(), real_mounter_.get(),
                                           root_ + "/tmp");
    volumes_ = std::make_unique<VolumeManager>(
        metadata_.get(), layers_.get(), driver_.get(), real_mounter_.get(), nullptr,
        VolumeManagerOptions{root_, root_ + "/volumes", root_ + "/tmp", 128});
  }
  void TearDown() override {
    if (root_.empty()) return;
    if (auto mounts =
            real_mounter_ ? real_mounter_->List() : absl::StatusOr<std::vector<sys::MountPoint>>();
        mounts.ok()) {
      for (auto it = mounts->rbegin(); it != mounts->rend(); ++it)
        if (it->target.rfind(root_, 0) == 0) (void)real_mounter_->Unmount(it->target, true);
    }
    // Through the driver first: btrfs layers are read-only subvolumes a tree walk cannot empty,
    // and devmapper's thin devices must go before their pool.
    volumes_.reset();
    layers_.reset();
    if (driver_) {
      for (const std::string& id : driver_->Walk().value_or(std::vector<std::string>{})) {
        absl::Status removed = driver_->Remove(id);
        EXPECT_TRUE(removed.ok()) << removed;
      }
    }
    StoreFixture::TearDown();
  }

  std::string NewVolume(const std::string& name) {
    CreateVolumeParams params;
    params.name = name;
    auto volume = volumes_->Create(params);
    EXPECT_TRUE(volume.ok()) << volume.status();
    return volume.ok() ? volume->id : "";
  }
  std::string Restore(const std::string& name, const std::string& snapshot_id) {
    CreateVolumeParams params;
    params.name = name;
    params.source_snapshot_id = snapshot_id;
    auto volume = volumes_->Create(params);
    EXPECT_TRUE(volume.ok()) << volume.status();
    return volume.ok() ? volume->id : "";
  }

  std::unique_ptr<sys::Mounter> real_mounter_;
};

TEST_P(CommitRootTest, RichTreeSurvivesSnapshotAndRestore) {
  const std::string id = NewVolume("rich");
  const std::string mnt = pods_ + "/rich";
  ASSERT_TRUE(volumes_->Stage(id, mnt).ok());
  ASSERT_EQ(mkdir((mnt + "/dir").c_str(), 0750), 0);
  ASSERT_EQ(mkdir((mnt + "/gone-later").c_str(), 0755), 0);
  testing::WriteFile(mnt + "/gone-later/old", "old");
  testing::WriteFile(mnt + "/dir/file", "content");
  ASSERT_EQ(chmod((mnt + "/dir/file").c_str(), 04751), 0);
  ASSERT_EQ(lchown((mnt + "/dir/file").c_str(), 1234, 5678), 0);
  ASSERT_EQ(link((mnt + "/dir/file").c_str(), (mnt + "/hardlink").c_str()), 0);
  ASSERT_EQ(symlink("dir/file", (mnt + "/symlink").c_str()), 0);
  ASSERT_EQ(mkfifo((mnt + "/fifo").c_str(), 0600), 0);
  ASSERT_EQ(setxattr((mnt + "/dir/file").c_str(), "user.color", "blue", 4, 0), 0);
  testing::WriteFile(mnt + "/renamed-later", "moving");
  SetTime(mnt + "/dir/file", 1000000000);
  std::string first = TreeDigest(mnt);

  // Mounted: the copy-on-commit path.
  auto snap1 = volumes_->CreateSnapshot(id, "rich-1");
  ASSERT_TRUE(snap1.ok()) << snap1.status();
  std::string restored = Restore("rich-restored-1", snap1->id);
  ASSERT_TRUE(volumes_->Stage(restored, pods_ + "/r1").ok());
  EXPECT_EQ(TreeDigest(pods_ + "/r1"), first);
  ASSERT_TRUE(volumes_->Unstage(restored, pods_ + "/r1").ok());

  // Changes over the committed layer: delete, replace a directory wholesale, rename, chown.
  ASSERT_EQ(unlink((mnt + "/fifo").c_str()), 0);
  ASSERT_TRUE(RemoveTree(mnt + "/gone-later").ok());
  ASSERT_EQ(mkdir((mnt + "/gone-later").c_str(), 0700), 0);
  testing::WriteFile(mnt + "/gone-later/new", "new");
  ASSERT_EQ(rename((mnt + "/renamed-later").c_str(), (mnt + "/renamed").c_str()), 0);
  ASSERT_EQ(lchown((mnt + "/hardlink").c_str(), 42, 42), 0);
  std::string second = TreeDigest(mnt);
  ASSERT_NE(first, second);

  // Unmounted: the rebase path, stacking on the first commit.
  ASSERT_TRUE(volumes_->Unstage(id, mnt).ok());
  auto snap2 = volumes_->CreateSnapshot(id, "rich-2");
  ASSERT_TRUE(snap2.ok()) << snap2.status();
  restored = Restore("rich-restored-2", snap2->id);
  ASSERT_TRUE(volumes_->Stage(restored, pods_ + "/r2").ok());
  EXPECT_EQ(TreeDigest(pods_ + "/r2"), second);
  EXPECT_FALSE(access((pods_ + "/r2/gone-later/old").c_str(), F_OK) == 0)
      << "the replaced directory's old content stays hidden";
  ASSERT_TRUE(volumes_->Unstage(restored, pods_ + "/r2").ok());
  // The volume itself still shows the second state after its rebase.
  ASSERT_TRUE(volumes_->Stage(id, mnt).ok());
  EXPECT_EQ(TreeDigest(mnt), second);
  ASSERT_TRUE(volumes_->Unstage(id, mnt).ok());
  // And the first snapshot is untouched by what came after it.
  restored = Restore("rich-restored-1b", snap1->id);
  ASSERT_TRUE(volumes_->Stage(restored, pods_ + "/r3").ok());
  EXPECT_EQ(TreeDigest(pods_ + "/r3"), first);
  ASSERT_TRUE(volumes_->Unstage(restored, pods_ + "/r3").ok());
}

TEST_P(CommitRootTest, RollbackIsItselfUndoable) {
  const std::string id = NewVolume("rb");
  const std::string mnt = pods_ + "/rb";
  ASSERT_TRUE(volumes_->Stage(id, mnt).ok());
  testing::WriteFile(mnt + "/state", "good");
  ASSERT_TRUE(volumes_->Unstage(id, mnt).ok());
  auto good = volumes_->CreateSnapshot(id, "good");
  ASSERT_TRUE(good.ok());
  ASSERT_TRUE(volumes_->Stage(id, mnt).ok());
  testing::WriteFile(mnt + "/state", "broken");
  EXPECT_TRUE(absl::IsFailedPrecondition(volumes_->Rollback(id, good->id).status()))
      << "a mounted volume is not rolled back under its pods";
  ASSERT_TRUE(volumes_->Unstage(id, mnt).ok());
  auto kept = volumes_->Rollback(id, good->id);
  ASSERT_TRUE(kept.ok()) << kept.status();
  ASSERT_TRUE(volumes_->Stage(id, mnt).ok());
  EXPECT_EQ(testing::ReadFile(mnt + "/state"), "good");
  ASSERT_TRUE(volumes_->Unstage(id, mnt).ok());
  // Undo the rollback with the snapshot it kept.
  ASSERT_TRUE(volumes_->Rollback(id, kept->id).ok());
  ASSERT_TRUE(volumes_->Stage(id, mnt).ok());
  EXPECT_EQ(testing::ReadFile(mnt + "/state"), "broken");
  ASSERT_TRUE(volumes_->Unstage(id, mnt).ok());
}

TEST_P(CommitRootTest, AThousandCommitsEachRestoreExactly) {
  const int kCommits = CommitCount(GetParam());
  const std::string id = NewVolume("history");
  const std::string mnt = pods_ + "/history";
  std::vector<std::string> snapshots;
  int deepest = 0, flattened = 0;
  for (int i = 1; i <= kCommits; ++i) {
    ASSERT_TRUE(volumes_->Stage(id, mnt).ok());
    testing::WriteFile(mnt + "/counter", std::to_string(i));
    testing::WriteFile(mnt + "/file-" + std::to_string(i), "x");
    if (i > 1) ASSERT_EQ(unlink((mnt + "/file-" + std::to_string(i - 1)).c_str()), 0);
    ASSERT_TRUE(volumes_->Unstage(id, mnt).ok());
    auto snapshot = volumes_->CreateSnapshot(id, "commit-" + std::to_string(i));
    ASSERT_TRUE(snapshot.ok()) << i << ": " << snapshot.status();
    snapshots.push_back(snapshot->id);
    auto layer = metadata_->GetLayer(snapshot->chain_id);
    ASSERT_TRUE(layer.ok() && layer->has_value());
    deepest = std::max(deepest, (*layer)->depth);
    flattened += (*layer)->depth == 1 && i > 1;
  }
  if (!driver_->limits().layers_are_full_trees) {
    EXPECT_LE(deepest, 128) << "chains are flattened at --flatten-depth";
    EXPECT_GE(flattened, kCommits / 128) << "flattening happened";
  }
  for (int i = 1; i <= kCommits; ++i) {
    std::string restored = Restore("restore-" + std::to_string(i), snapshots[i - 1]);
    const std::string at = pods_ + "/restore";
    ASSERT_TRUE(volumes_->Stage(restored, at).ok()) << i;
    EXPECT_EQ(testing::ReadFile(at + "/counter"), std::to_string(i));
    EXPECT_EQ(access((at + "/file-" + std::to_string(i)).c_str(), F_OK), 0) << i;
    EXPECT_NE(access((at + "/file-" + std::to_string(i - 1)).c_str(), F_OK), 0) << i;
    ASSERT_TRUE(volumes_->Unstage(restored, at).ok());
    ASSERT_TRUE(volumes_->Delete(restored).ok());
    if (HasFailure()) break;
  }
  std::cout << "[ figures  ] " << GetParam() << ": " << kCommits << " commits, deepest chain "
            << deepest << ", flattened " << flattened << " times\n";
}

INSTANTIATE_TEST_SUITE_P(Drivers, CommitRootTest, ::testing::Values("overlay", "vfs", "btrfs"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace strata::node
