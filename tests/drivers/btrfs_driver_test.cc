// What only the btrfs driver does, on real loop-file btrfs filesystems: the refusal of a root
// that is not on btrfs, commits that are snapshots (not copies), crash leftovers that are real
// subvolumes, qgroup capacity limits, and "auto". Needs root; skips with the reason otherwise.
// The conformance suite (drivers_conformance_test.cc) covers the common contract.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "drivers/btrfs/btrfs_driver.h"
#include "drivers/btrfs/btrfs_ops.h"
#include "drivers/copy_tree.h"
#include "drivers/fs_util.h"
#include "drivers/overlay/overlay_driver.h"
#include "drivers/registry.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sys/mounter.h"
#include "tests/drivers/loop_filesystem.h"

namespace strata {
namespace {

namespace btrfs = drivers::btrfs;
using drivers::BtrfsDriver;
using drivers::CommitMode;
using ::testing::HasSubstr;

void WriteFile(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::trunc);
  out << content;
  ASSERT_TRUE(out.good()) << path;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

bool Exists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

// Writes `bytes` of non-zero data to `path` in 1 MiB chunks; returns the errno of the first
// failing write (or fsync/close), 0 when everything was written.
int WriteBytes(const std::string& path, int64_t bytes) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return errno;
  std::string chunk(1 << 20, 'q');
  int error = 0;
  for (int64_t done = 0; done < bytes && error == 0;) {
    size_t n = static_cast<size_t>(std::min<int64_t>(chunk.size(), bytes - done));
    ssize_t written = write(fd, chunk.data(), n);
    if (written < 0) {
      error = errno;
    } else {
      done += written;
    }
  }
  if (error == 0 && fsync(fd) != 0) error = errno;
  if (close(fd) != 0 && error == 0) error = errno;
  return error;
}

double Millis(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

// A fresh directory on the process' shared loop btrfs, and a btrfs driver rooted in it.
class BtrfsDriverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto mount_point = testing::SharedBtrfsMountPoint();
    if (!mount_point.ok()) GTEST_SKIP() << "no btrfs: " << mount_point.status();
    std::string base = *mount_point + "/strata-btrfs-test-XXXXXX";
    ASSERT_NE(mkdtemp(base.data()), nullptr);
    base_ = base;
    root_ = base_ + "/root";
    auto driver = BtrfsDriver::Create(root_);
    ASSERT_TRUE(driver.ok()) << driver.status();
    driver_ = std::move(*driver);
  }

  void TearDown() override {
    if (base_.empty()) return;
    if (driver_) {
      auto ids = driver_->Walk();
      for (const std::string& id : ids.value_or(std::vector<std::string>{})) {
        absl::Status status = driver_->Remove(id);
        EXPECT_TRUE(status.ok()) << status;
      }
    }
    absl::Status removed = drivers::RemoveTree(base_);
    EXPECT_TRUE(removed.ok()) << removed;
  }

  // Makes layer `id` on `parents` holding file `name` = `content`, through DirectWriteTarget.
  void MakeLayer(const std::string& id, const drivers::Chain& parents, const std::string& name,
                 const std::string& content) {
    ASSERT_TRUE(driver_->Prepare("a" + id, parents, {}).ok());
    auto target = driver_->DirectWriteTarget("a" + id);
    ASSERT_TRUE(target.ok()) << target.status();
    WriteFile(target->directory + "/" + name, content);
    absl::Status committed = driver_->Commit(id, "a" + id, parents, CommitMode::kConsume);
    ASSERT_TRUE(committed.ok()) << committed;
  }

  std::string Path(const std::string& id) const { return driver_->SubvolumePath(id); }

  std::string base_, root_;
  std::unique_ptr<BtrfsDriver> driver_;
};

TEST(BtrfsRootTest, RefusesARootNotOnBtrfs) {
  char base[] = "/var/tmp/strata-notbtrfs-XXXXXX";
  ASSERT_NE(mkdtemp(base), nullptr);
  const std::string root = std::string(base) + "/root";
  if (btrfs::CheckOnBtrfs(base).ok()) GTEST_SKIP() << "/var/tmp is on btrfs here";
  auto driver = BtrfsDriver::Create(root);
  EXPECT_EQ(driver.status().code(), absl::StatusCode::kFailedPrecondition);
  const std::string message(driver.status().message());
  EXPECT_THAT(message, HasSubstr(root + " is on "));  // names the path and what it is on
  EXPECT_THAT(message, HasSubstr("not btrfs"));
  EXPECT_THAT(message, HasSubstr("mount a btrfs filesystem there"));  // and what to do
  EXPECT_FALSE(Exists(root + "/btrfs"));  // a refused driver leaves nothing behind
  auto named = drivers::NewDriver("btrfs", root);
  EXPECT_EQ(named.status().code(), absl::StatusCode::kFailedPrecondition);

  // A btrfs mounted at <root>/btrfs is enough, whatever holds <root>.
  auto mount_point = testing::SharedBtrfsMountPoint();
  if (mount_point.ok()) {
    std::string source = *mount_point + "/bound-XXXXXX";
    ASSERT_NE(mkdtemp(source.data()), nullptr);
    ASSERT_TRUE(drivers::MakeDirs(root + "/btrfs").ok());
    auto mounter = sys::NewLinuxMounter();
    ASSERT_TRUE(mounter->MountAt({"bind", source, {"rw"}}, root + "/btrfs").ok());
    auto bound = BtrfsDriver::Create(root);
    EXPECT_TRUE(bound.ok()) << bound.status();
    if (bound.ok()) {
      EXPECT_TRUE((*bound)->Prepare("vol", {}, {}).ok());
      EXPECT_TRUE((*bound)->Remove("vol").ok());
    }
    EXPECT_TRUE(mounter->Unmount(root + "/btrfs").ok());
    EXPECT_EQ(rmdir(source.c_str()), 0);
  }
  EXPECT_TRUE(drivers::RemoveTree(base).ok());
}

// kKeep is a read-only snapshot of the active (constant time whatever it holds), Prepare a
// writable snapshot of the top layer, kConsume freezes the active itself (same subvolume).
TEST_F(BtrfsDriverTest, CommitsAndPreparesAreSnapshots) {
  MakeLayer("base", {}, "f", "base");
  auto base = btrfs::GetSubvolumeInfo(Path("base"));
  ASSERT_TRUE(base.ok()) << base.status();
  EXPECT_TRUE(base->read_only);
  EXPECT_FALSE(base->is_snapshot);  // a new subvolume, then frozen and renamed: not a copy

  ASSERT_TRUE(driver_->Prepare("vol", {"base"}, {}).ok());
  auto vol = btrfs::GetSubvolumeInfo(Path("vol"));
  ASSERT_TRUE(vol.ok());
  EXPECT_FALSE(vol->read_only);
  EXPECT_EQ(vol->parent_uuid, base->uuid);  // a snapshot of the chain's top layer
  WriteFile(Path("vol") + "/g", "vol");

  ASSERT_TRUE(driver_->Commit("snap", "vol", {"base"}, CommitMode::kKeep).ok());
  auto snap = btrfs::GetSubvolumeInfo(Path("snap"));
  ASSERT_TRUE(snap.ok());
  EXPECT_TRUE(snap->read_only);
  EXPECT_EQ(snap->parent_uuid, vol->uuid);  // a snapshot of the active, not a copy
  EXPECT_EQ(ReadFile(Path("snap") + "/g"), "vol");
  auto still = btrfs::GetSubvolumeInfo(Path("vol"));
  ASSERT_TRUE(still.ok());
  EXPECT_FALSE(still->read_only);  // the active keeps working

  ASSERT_TRUE(driver_->Commit("done", "vol", {"base"}, CommitMode::kConsume).ok());
  auto done = btrfs::GetSubvolumeInfo(Path("done"));
  ASSERT_TRUE(done.ok());
  EXPECT_EQ(done->uuid, vol->uuid);  // the very subvolume, frozen
  EXPECT_TRUE(done->read_only);
  EXPECT_FALSE(Exists(Path("vol")));

  // A layer is read-only for real, and cannot be mounted writable or be a parent while active.
  EXPECT_EQ(open((Path("done") + "/new").c_str(), O_CREAT | O_WRONLY, 0600), -1);
  EXPECT_EQ(errno, EROFS);
  EXPECT_EQ(driver_->Mounts("done", {"base"}).status().code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(driver_->Prepare("other", {}, {}).ok());
  EXPECT_EQ(driver_->Prepare("x", {"other"}, {}).code(), absl::StatusCode::kFailedPrecondition);
}

// Crash leftovers are real subvolumes here: a frozen-but-not-renamed active, a read-only
// snapshot left under a temp name, nested subvolumes a workload created in its volume.
TEST_F(BtrfsDriverTest, RetriesFinishWhatACrashLeft) {
  ASSERT_TRUE(driver_->Prepare("vol", {}, {}).ok());
  WriteFile(Path("vol") + "/data", "d");
  // kConsume stopped after freezing the active, before the rename.
  ASSERT_TRUE(btrfs::SetReadOnly(Path("vol"), true).ok());
  EXPECT_EQ(driver_->Mounts("vol", {}).status().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(driver_->Commit("layer", "vol", {}, CommitMode::kConsume).ok());
  EXPECT_EQ(ReadFile(Path("layer") + "/data"), "d");
  EXPECT_TRUE(driver_->Commit("layer", "vol", {}, CommitMode::kConsume).ok());  // once more

  // A read-only subvolume left as .tmp-snap (kKeep snapshots straight to the final name now;
  // older builds, or anything else, may leave one).
  ASSERT_TRUE(driver_->Prepare("live", {"layer"}, {}).ok());
  WriteFile(Path("live") + "/more", "m");
  const std::string temp = root_ + "/btrfs/.tmp-snap";
  ASSERT_TRUE(btrfs::CreateSnapshot(Path("layer"), temp, /*read_only=*/true).ok());
  auto walk = driver_->Walk();
  ASSERT_TRUE(walk.ok());
  EXPECT_THAT(*walk, ::testing::ElementsAre("layer", "live", "snap"));
  ASSERT_TRUE(driver_->Commit("snap", "live", {"layer"}, CommitMode::kKeep).ok());
  EXPECT_FALSE(Exists(temp));
  EXPECT_EQ(ReadFile(Path("snap") + "/more"), "m");

  // An empty-parent Prepare stopped before its rename; and an orphan only recovery knows.
  ASSERT_TRUE(btrfs::CreateSnapshot(Path("layer"), root_ + "/btrfs/.tmp-vol2", false).ok());
  ASSERT_TRUE(driver_->Prepare("vol2", {}, {}).ok());
  EXPECT_FALSE(Exists(Path("vol2") + "/data"));  // the fresh empty subvolume, not the leftover
  ASSERT_TRUE(btrfs::CreateSnapshot(Path("layer"), root_ + "/btrfs/.tmp-orphan", true).ok());
  ASSERT_TRUE(driver_->Remove("orphan").ok());
  EXPECT_FALSE(Exists(root_ + "/btrfs/.tmp-orphan"));

  // A workload made a subvolume inside its volume: Remove takes it too.
  ASSERT_TRUE(btrfs::CreateSubvolume(Path("vol2") + "/nested").ok());
  ASSERT_TRUE(driver_->Remove("vol2").ok());
  EXPECT_FALSE(Exists(Path("vol2")));
  walk = driver_->Walk();
  ASSERT_TRUE(walk.ok());
  EXPECT_THAT(*walk, ::testing::ElementsAre("layer", "live", "snap"));
}

// With quotas on, a volume's capacity is a qgroup limit on its referenced bytes: writing past it
// fails with EDQUOT, and GetUsage reports the qgroup's numbers.
TEST(BtrfsQuotaTest, CapacityIsEnforcedWithQuotas) {
  auto fs = testing::LoopBtrfs::Create();  // its own filesystem: quotas stay off elsewhere
  if (!fs.ok()) GTEST_SKIP() << "no btrfs: " << fs.status();
  const std::string root = (*fs)->mount_point() + "/root";
  auto created = BtrfsDriver::Create(root);
  ASSERT_TRUE(created.ok()) << created.status();
  BtrfsDriver& driver = **created;
  EXPECT_FALSE(driver.limits().enforces_capacity);
  // Without quotas a capacity is only recorded.
  ASSERT_TRUE(driver.Prepare("free", {}, {.capacity_bytes = 1 << 20}).ok());
  EXPECT_EQ(WriteBytes(driver.SubvolumePath("free") + "/f", 4 << 20), 0);

  absl::Status enabled = (*fs)->EnableQuotas();
  ASSERT_TRUE(enabled.ok()) << enabled;
  auto quota = btrfs::GetQuotaState(root);
  ASSERT_TRUE(quota.ok()) << quota.status();
  EXPECT_TRUE(quota->enabled);
  EXPECT_TRUE(driver.limits().enforces_capacity);

  // A base layer of 4 MiB, and a volume of 16 MiB capacity on it: the limit counts what the
  // volume refers to, its image included (like a block device of that size).
  ASSERT_TRUE(driver.Prepare("abase", {}, {}).ok());
  ASSERT_EQ(WriteBytes(driver.SubvolumePath("abase") + "/image", 4 << 20), 0);
  ASSERT_TRUE(driver.Commit("base", "abase", {}, CommitMode::kConsume).ok());
  constexpr int64_t kCapacity = 16 << 20;
  ASSERT_TRUE(driver.Prepare("vol", {"base"}, {.capacity_bytes = kCapacity}).ok());
  auto limit = btrfs::GetQgroupUsage(driver.SubvolumePath("vol"));
  ASSERT_TRUE(limit.ok()) << limit.status();
  EXPECT_EQ(limit->max_referenced, static_cast<uint64_t>(kCapacity));

  const std::string vol = driver.SubvolumePath("vol");
  EXPECT_EQ(WriteBytes(vol + "/fits", 8 << 20), 0);
  int error = WriteBytes(vol + "/too-much", 16 << 20);
  EXPECT_EQ(error, EDQUOT) << strerror(error);
  ASSERT_EQ(unlink((vol + "/too-much").c_str()), 0);
  ASSERT_TRUE(drivers::SyncFilesystem(vol).ok());  // qgroup numbers move at transaction commit
  auto usage = driver.GetUsage("vol");
  ASSERT_TRUE(usage.ok()) << usage.status();
  EXPECT_GE(usage->bytes, 12 << 20);  // image (shared with the base) + what the volume wrote
  EXPECT_LE(usage->bytes, kCapacity);
  EXPECT_EQ(usage->inodes, 3);  // root, image, fits
  std::printf("[ measure  ] btrfs qgroup usage of a %lld-byte volume after EDQUOT: %lld bytes\n",
              static_cast<long long>(kCapacity), static_cast<long long>(usage->bytes));

  // A volume on no parents gets its limit too (set before its rename).
  ASSERT_TRUE(driver.Prepare("empty", {}, {.capacity_bytes = 4 << 20}).ok());
  auto empty_limit = btrfs::GetQgroupUsage(driver.SubvolumePath("empty"));
  ASSERT_TRUE(empty_limit.ok()) << empty_limit.status();
  EXPECT_EQ(empty_limit->max_referenced, 4u << 20);
  error = WriteBytes(driver.SubvolumePath("empty") + "/f", 8 << 20);
  EXPECT_EQ(error, EDQUOT) << strerror(error);

  // Expansion (online: nothing is unmounted) raises the limit, and the write that failed fits.
  ASSERT_EQ(unlink((driver.SubvolumePath("empty") + "/f").c_str()), 0);
  auto expanded = driver.Expand("empty", 16 << 20, "");
  ASSERT_TRUE(expanded.ok()) << expanded.status();
  EXPECT_TRUE(*expanded);
  auto raised = btrfs::GetQgroupUsage(driver.SubvolumePath("empty"));
  ASSERT_TRUE(raised.ok()) << raised.status();
  EXPECT_EQ(raised->max_referenced, 16u << 20);
  error = WriteBytes(driver.SubvolumePath("empty") + "/f", 8 << 20);
  EXPECT_EQ(error, 0) << strerror(error);
  EXPECT_TRUE(absl::IsNotFound(driver.Expand("nosuch", 16 << 20, "").status()));

  // A layer frozen from a limited volume carries the limit, and btrfs copies a snapshot
  // source's limit: a volume prepared on it without capacity must still be unlimited.
  ASSERT_TRUE(driver.Prepare("lim", {"base"}, {.capacity_bytes = 8 << 20}).ok());
  ASSERT_TRUE(driver.Commit("frozen", "lim", {"base"}, CommitMode::kConsume).ok());
  ASSERT_TRUE(driver.Prepare("child", {"frozen", "base"}, {}).ok());
  auto child = btrfs::GetQgroupUsage(driver.SubvolumePath("child"));
  ASSERT_TRUE(child.ok()) << child.status();
  EXPECT_EQ(child->max_referenced, 0u);
  EXPECT_EQ(WriteBytes(driver.SubvolumePath("child") + "/f", 12 << 20), 0);

  // A volume without capacity is unlimited, and a kKeep of the limited one still works.
  ASSERT_TRUE(driver.Prepare("big", {"base"}, {}).ok());
  EXPECT_EQ(WriteBytes(driver.SubvolumePath("big") + "/f", 24 << 20), 0);
  EXPECT_TRUE(driver.Commit("snap", "vol", {"base"}, CommitMode::kKeep).ok());
  for (const char* id : {"free", "base", "vol", "empty", "frozen", "child", "big", "snap"}) {
    EXPECT_TRUE(driver.Remove(id).ok()) << id;
  }
  EXPECT_TRUE(drivers::RemoveTree(root).ok());
}

TEST(BtrfsAutoTest, AutoPicksBtrfsOnBtrfsAndOverlayElsewhere) {
  auto mount_point = testing::SharedBtrfsMountPoint();
  if (!mount_point.ok()) GTEST_SKIP() << "no btrfs: " << mount_point.status();
  std::string on_btrfs = *mount_point + "/auto-XXXXXX";
  ASSERT_NE(mkdtemp(on_btrfs.data()), nullptr);
  auto picked = drivers::NewDriver("auto", on_btrfs + "/root");
  ASSERT_TRUE(picked.ok()) << picked.status();
  EXPECT_EQ((*picked)->name(), "btrfs");
  EXPECT_FALSE(Exists(on_btrfs + "/root/overlay"));

  char elsewhere[] = "/var/tmp/strata-auto-XXXXXX";
  ASSERT_NE(mkdtemp(elsewhere), nullptr);
  if (!btrfs::CheckOnBtrfs(elsewhere).ok()) {
    auto other = drivers::NewDriver("auto", std::string(elsewhere) + "/root");
    if (drivers::OverlaySupported(elsewhere).ok()) {
      ASSERT_TRUE(other.ok()) << other.status();
      EXPECT_EQ((*other)->name(), "overlay");
    } else {
      EXPECT_EQ(other.status().code(), absl::StatusCode::kFailedPrecondition);
    }
    EXPECT_FALSE(Exists(std::string(elsewhere) + "/root/btrfs"));
  }
  EXPECT_TRUE(drivers::RemoveTree(elsewhere).ok());
  EXPECT_TRUE(drivers::RemoveTree(on_btrfs).ok());
}

// Figures for docs/drivers/btrfs.md, printed, never asserted. kKeep commit of a volume holding
// 1 MiB (and, with STRATA_BTRFS_BENCH_GIB=1, 1 GiB) of fresh changes: btrfs on a loop file vs
// overlay on /var/tmp's filesystem; and Prepare + mount of a volume on a 10-layer chain.
TEST(BtrfsMeasureTest, CommitAndPrepareMountTimes) {
  const bool gib = std::getenv("STRATA_BTRFS_BENCH_GIB") != nullptr;
  auto fs = testing::LoopBtrfs::Create(gib ? int64_t{6} << 30 : int64_t{1} << 30);
  if (!fs.ok()) GTEST_SKIP() << "no btrfs: " << fs.status();
  char other[] = "/var/tmp/strata-measure-XXXXXX";
  ASSERT_NE(mkdtemp(other), nullptr);
  auto btrfs_driver = drivers::NewDriver("btrfs", (*fs)->mount_point() + "/root");
  ASSERT_TRUE(btrfs_driver.ok()) << btrfs_driver.status();
  auto overlay_driver = drivers::NewDriver("overlay", std::string(other) + "/root");
  std::vector<drivers::Driver*> all = {btrfs_driver->get()};
  if (overlay_driver.ok()) all.push_back(overlay_driver->get());
  auto mounter = sys::NewLinuxMounter();
  const std::string target = std::string(other) + "/mnt";
  ASSERT_EQ(mkdir(target.c_str(), 0755), 0);

  std::vector<int64_t> sizes = {int64_t{1} << 20};
  if (gib) sizes.push_back(int64_t{1} << 30);
  for (drivers::Driver* driver : all) {
    const std::string name(driver->name());
    // Base: 10 layers of one small file each.
    drivers::Chain chain;
    for (int i = 0; i < 10; ++i) {
      std::string id = absl::StrCat("l", i), active = absl::StrCat("a", i);
      ASSERT_TRUE(driver->Prepare(active, chain, {}).ok());
      auto dir = driver->DirectWriteTarget(active);
      ASSERT_TRUE(dir.ok());
      WriteFile(absl::StrCat(dir->directory, "/f", i), "x");
      ASSERT_TRUE(driver->Commit(id, active, chain, CommitMode::kConsume).ok());
      chain.insert(chain.begin(), id);
    }
    // Prepare + mount (and, untimed, unmount + remove) of a volume on the 10-layer chain.
    std::vector<double> total, prepare, mount;
    for (int i = 0; i < 15; ++i) {
      std::string vol = absl::StrCat("p", i);
      auto start = std::chrono::steady_clock::now();
      ASSERT_TRUE(driver->Prepare(vol, chain, {}).ok());
      auto prepared = std::chrono::steady_clock::now();
      auto mounts = driver->Mounts(vol, chain);
      ASSERT_TRUE(mounts.ok()) << mounts.status();
      ASSERT_EQ(mounts->size(), 1u);
      ASSERT_TRUE(mounter->MountAt((*mounts)[0], target).ok());
      auto end = std::chrono::steady_clock::now();
      total.push_back(Millis(end - start));
      prepare.push_back(Millis(prepared - start));
      mount.push_back(Millis(end - prepared));
      EXPECT_EQ(ReadFile(target + "/f0"), "x");
      ASSERT_TRUE(mounter->Unmount(target).ok());
      ASSERT_TRUE(driver->Remove(vol).ok());
    }
    for (auto* samples : {&total, &prepare, &mount}) std::sort(samples->begin(), samples->end());
    std::printf(
        "[ measure  ] %-7s Prepare+mount on a 10-layer chain: median %.2f ms (min %.2f, "
        "max %.2f); Prepare %.2f ms, Mounts+mount %.2f ms\n",
        name.c_str(), total[7], total.front(), total.back(), prepare[7], mount[7]);

    for (int64_t size : sizes) {
      for (bool synced : {false, true}) {
        std::string vol = absl::StrCat("v", size, synced), layer = absl::StrCat("k", size, synced);
        ASSERT_TRUE(driver->Prepare(vol, chain, {}).ok());
        auto mounts = driver->Mounts(vol, chain);
        ASSERT_TRUE(mounts.ok());
        ASSERT_TRUE(mounter->MountAt((*mounts)[0], target).ok());
        for (int64_t written = 0; written < size; written += int64_t{64} << 20) {
          int64_t part = std::min<int64_t>(int64_t{64} << 20, size - written);
          int fd = open(absl::StrCat(target, "/d", written).c_str(), O_WRONLY | O_CREAT, 0644);
          ASSERT_GE(fd, 0);
          std::string chunk(1 << 20, 'z');
          for (int64_t done = 0; done < part; done += chunk.size()) {
            ASSERT_EQ(write(fd, chunk.data(), std::min<int64_t>(chunk.size(), part - done)),
                      std::min<int64_t>(chunk.size(), part - done));
          }
          ASSERT_EQ(close(fd), 0);
        }
        if (synced) {
          ASSERT_TRUE(drivers::SyncFilesystem(target).ok());
        }
        auto start = std::chrono::steady_clock::now();
        absl::Status committed = driver->Commit(layer, vol, chain, CommitMode::kKeep);
        double ms = Millis(std::chrono::steady_clock::now() - start);
        ASSERT_TRUE(committed.ok()) << committed;
        std::printf("[ measure  ] %-7s kKeep commit of %5lld MiB of changes (%s): %.1f ms\n",
                    name.c_str(), static_cast<long long>(size >> 20),
                    synced ? "already synced" : "fresh, unsynced", ms);
        ASSERT_TRUE(mounter->Unmount(target).ok());
        ASSERT_TRUE(driver->Remove(layer).ok());
        ASSERT_TRUE(driver->Remove(vol).ok());
      }
    }
    for (const std::string& id : chain) {
      ASSERT_TRUE(driver->Remove(id).ok());
    }
  }
  EXPECT_TRUE(drivers::RemoveTree(other).ok());
}

}  // namespace
}  // namespace strata
