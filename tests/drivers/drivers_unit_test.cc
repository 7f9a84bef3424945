// Driver and mounter logic that needs no root: FakeMounter, ids, the registry, the mounts the
// drivers describe, the legacy overlay option-length check, and the tree helpers.

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "drivers/copy_tree.h"
#include "drivers/driver.h"
#include "drivers/fs_util.h"
#include "drivers/overlay/overlay_driver.h"
#include "drivers/registry.h"
#include "drivers/vfs/vfs_driver.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sys/fake_mounter.h"
#include "sys/mounter.h"

namespace strata {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string MakeTempDir() {
  char path[] = "/tmp/strata-unit-XXXXXX";
  EXPECT_NE(mkdtemp(path), nullptr);
  return path;
}

void WriteFile(const std::string& path, const std::string& content) {
  std::ofstream out(path);
  out << content;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// ---------------------------------------------------------------------------------------------
// FakeMounter

TEST(FakeMounterTest, RecordsMountsAndListsThem) {
  sys::FakeMounter mounter;
  sys::Mount bind{"bind", "/src", {"ro"}};
  ASSERT_TRUE(mounter.MountAt(bind, "/target").ok());
  EXPECT_TRUE(*mounter.IsMountPoint("/target"));
  EXPECT_FALSE(*mounter.IsMountPoint("/other"));
  auto list = mounter.List();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].target, "/target");
  EXPECT_EQ((*list)[0].source, "/src");
  EXPECT_EQ((*list)[0].fs_type, "bind");
  EXPECT_EQ((*list)[0].options, "ro");
  ASSERT_EQ(mounter.mounts().size(), 1u);
  EXPECT_EQ(mounter.mounts()[0].mount, bind);
}

TEST(FakeMounterTest, UnmountIsIdempotentAndRemovesTheLatestMount) {
  sys::FakeMounter mounter;
  ASSERT_TRUE(mounter.MountAt({"bind", "/a", {}}, "/t").ok());
  ASSERT_TRUE(mounter.MountAt({"bind", "/b", {}}, "/t").ok());
  ASSERT_TRUE(mounter.Unmount("/t").ok());
  ASSERT_EQ(mounter.mounts().size(), 1u);
  EXPECT_EQ(mounter.mounts()[0].mount.source, "/a");
  ASSERT_TRUE(mounter.Unmount("/t").ok());
  EXPECT_FALSE(*mounter.IsMountPoint("/t"));
  EXPECT_TRUE(mounter.Unmount("/t").ok());
  EXPECT_TRUE(mounter.Unmount("/never-mounted", true).ok());
  EXPECT_EQ(mounter.unmount_calls(), 4);
}

TEST(FakeMounterTest, InjectedFailuresApplyOncePerCallInOrder) {
  sys::FakeMounter mounter;
  mounter.FailNextMountAt(absl::PermissionDeniedError("no"));
  mounter.FailNextMountAt(absl::InternalError("boom"));
  EXPECT_EQ(mounter.MountAt({"bind", "/a", {}}, "/t").code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(mounter.MountAt({"bind", "/a", {}}, "/t").code(), absl::StatusCode::kInternal);
  EXPECT_FALSE(*mounter.IsMountPoint("/t"));
  EXPECT_TRUE(mounter.MountAt({"bind", "/a", {}}, "/t").ok());
  EXPECT_EQ(mounter.mount_calls(), 3);
  mounter.FailNextUnmount(absl::UnavailableError("busy"));
  EXPECT_EQ(mounter.Unmount("/t").code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(*mounter.IsMountPoint("/t"));
}

TEST(FakeMounterTest, RejectsRelativeTargets) {
  sys::FakeMounter mounter;
  EXPECT_EQ(mounter.MountAt({"bind", "/a", {}}, "rel").code(), absl::StatusCode::kInvalidArgument);
}

// ---------------------------------------------------------------------------------------------
// LinuxMounter checks that happen before any syscall.

TEST(LinuxMounterTest, LegacyOverlayRefusesOptionsLongerThanOnePage) {
  auto mounter = sys::NewLinuxMounter({.force_legacy_overlay = true});
  sys::Mount overlay{"overlay", "overlay", {}};
  // Lowers in different directories cannot be shortened to relative names.
  for (int i = 0; i < 100; ++i) {
    overlay.options.push_back(
        absl::StrCat("lowerdir+=/var/lib/strata-with-a-long-root/d", i, "/layer"));
  }
  absl::Status status = mounter->MountAt(overlay, "/nonexistent-target");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr("4095"));
  EXPECT_THAT(std::string(status.message()), HasSubstr("100 lower layers"));
}

TEST(LinuxMounterTest, LegacyOverlayRefusesSeparatorsInLowerPaths) {
  auto mounter = sys::NewLinuxMounter({.force_legacy_overlay = true});
  absl::Status status =
      mounter->MountAt({"overlay", "overlay", {"lowerdir+=/a:b", "lowerdir+=/c"}}, "/t");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
}

TEST(LinuxMounterTest, RejectsRelativeTarget) {
  auto mounter = sys::NewLinuxMounter();
  EXPECT_EQ(mounter->MountAt({"bind", "/", {}}, "relative").code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(LinuxMounterTest, ListAndIsMountPointReadTheMountTable) {
  auto mounter = sys::NewLinuxMounter();
  auto list = mounter->List();
  ASSERT_TRUE(list.ok()) << list.status();
  bool has_root = false;
  for (const auto& point : *list) has_root |= point.target == "/";
  EXPECT_TRUE(has_root);
  EXPECT_TRUE(*mounter->IsMountPoint("/"));
  EXPECT_TRUE(*mounter->IsMountPoint("/proc/"));  // normalised
  EXPECT_FALSE(*mounter->IsMountPoint("/proc/self/fd"));
  EXPECT_FALSE(*mounter->IsMountPoint("/no/such/path"));
}

// ---------------------------------------------------------------------------------------------
// Ids and the registry

TEST(DriverIdTest, AcceptsOnlyShortLowercaseAlphanumerics) {
  EXPECT_TRUE(drivers::IsValidDriverId("a"));
  EXPECT_TRUE(drivers::IsValidDriverId("0abc9z"));
  EXPECT_TRUE(drivers::IsValidDriverId(std::string(32, 'x')));
  EXPECT_FALSE(drivers::IsValidDriverId(""));
  EXPECT_FALSE(drivers::IsValidDriverId(std::string(33, 'x')));
  for (const char* bad : {"A", "a-b", "a/b", "..", ".", "a b", "a_b", ".tmp-a", "é"}) {
    EXPECT_FALSE(drivers::IsValidDriverId(bad)) << bad;
  }
}

TEST(RegistryTest, KnowsFourDriversAndBuildsTheImplementedOnes) {
  EXPECT_THAT(drivers::KnownDriverNames(), ElementsAre("overlay", "vfs", "btrfs", "devmapper"));
  std::string root = MakeTempDir();
  auto vfs = drivers::NewDriver("vfs", root);
  ASSERT_TRUE(vfs.ok()) << vfs.status();
  EXPECT_EQ((*vfs)->name(), "vfs");
  struct stat st;
  EXPECT_EQ(stat((root + "/vfs").c_str(), &st), 0);
  auto overlay = drivers::NewDriver("overlay", root);
  if (overlay.ok()) {
    EXPECT_EQ((*overlay)->name(), "overlay");
  } else {
    EXPECT_EQ(overlay.status().code(), absl::StatusCode::kFailedPrecondition);
  }
  // devmapper needs a thin pool (DriverOptions); without one it says how to get one.
  auto devmapper = drivers::NewDriver("devmapper", root);
  EXPECT_EQ(devmapper.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(devmapper.status().message()), HasSubstr("thin pool"));
  auto unknown = drivers::NewDriver("zfs", root);
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(unknown.status().message()), HasSubstr("overlay, vfs, btrfs, devmapper"));
  EXPECT_EQ(drivers::NewDriver("vfs", "relative/root").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(drivers::RemoveTree(root).ok());
}

// The btrfs driver refuses a root that is not on btrfs, says why, and leaves nothing behind;
// "auto" then picks overlay (or explains why neither can run), never vfs.
TEST(RegistryTest, BtrfsNeedsBtrfsAndAutoFallsBackToOverlay) {
  std::string root = MakeTempDir();
  struct statfs fs;
  ASSERT_EQ(statfs(root.c_str(), &fs), 0);
  if (static_cast<unsigned long>(fs.f_type) == BTRFS_SUPER_MAGIC) {
    GTEST_SKIP() << root << " is on btrfs; the root btrfs tests cover that case";
  }
  auto btrfs = drivers::NewDriver("btrfs", root);
  EXPECT_EQ(btrfs.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(btrfs.status().message()), HasSubstr(root + " is on "));
  EXPECT_THAT(std::string(btrfs.status().message()), HasSubstr("not btrfs"));
  struct stat st;
  EXPECT_NE(stat((root + "/btrfs").c_str(), &st), 0);
  auto automatic = drivers::NewDriver("auto", root);
  if (automatic.ok()) {
    EXPECT_EQ((*automatic)->name(), "overlay");
  } else {
    EXPECT_EQ(automatic.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(std::string(automatic.status().message()), HasSubstr("not btrfs"));
  }
  EXPECT_EQ(drivers::NewDriver("auto", "relative").status().code(),
            absl::StatusCode::kInvalidArgument);
  // A named thin pool means devmapper, whatever the root is on (the pool does not exist here).
  drivers::DriverOptions options;
  options.devmapper.thin_pool = "strata-unit-no-such-pool";
  auto pool = drivers::NewDriver("auto", root, options);
  EXPECT_FALSE(pool.ok());
  EXPECT_THAT(std::string(pool.status().message()),
              ::testing::AnyOf(HasSubstr("strata-unit-no-such-pool"), HasSubstr("device-mapper")));
  EXPECT_TRUE(drivers::RemoveTree(root).ok());
}

// ---------------------------------------------------------------------------------------------
// What the overlay driver asks to mount

class OverlayMountsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = MakeTempDir();
    auto driver = drivers::OverlayDriver::Create(root_);
    ASSERT_TRUE(driver.ok()) << driver.status();
    driver_ = std::move(*driver);
    layers_ = root_ + "/overlay/layers/";
    active_ = root_ + "/overlay/active/";
    // Three committed layers: a (base), b on a, c on b.
    drivers::Chain chain;
    for (const char* id : {"a", "b", "c"}) {
      std::string active = std::string("act") + id;
      ASSERT_TRUE(driver_->Prepare(active, chain, {}).ok());
      ASSERT_TRUE(driver_->Commit(id, active, chain, drivers::CommitMode::kConsume).ok());
      chain.insert(chain.begin(), id);
    }
  }
  void TearDown() override { EXPECT_TRUE(drivers::RemoveTree(root_).ok()); }

  std::string root_, layers_, active_;
  std::unique_ptr<drivers::OverlayDriver> driver_;
};

TEST_F(OverlayMountsTest, NoParentsIsAWritableBindOfTheUpper) {
  ASSERT_TRUE(driver_->Prepare("x", {}, {}).ok());
  auto mounts = driver_->Mounts("x", {});
  ASSERT_TRUE(mounts.ok()) << mounts.status();
  EXPECT_THAT(*mounts, ElementsAre(sys::Mount{"bind", active_ + "x/upper", {"rw"}}));
}

TEST_F(OverlayMountsTest, OneParentIsAnOverlayWithOneLower) {
  ASSERT_TRUE(driver_->Prepare("x", {"a"}, {}).ok());
  auto mounts = driver_->Mounts("x", {"a"});
  ASSERT_TRUE(mounts.ok()) << mounts.status();
  EXPECT_THAT(*mounts, ElementsAre(sys::Mount{
                           "overlay",
                           "overlay",
                           {"lowerdir+=" + layers_ + "a", "upperdir=" + active_ + "x/upper",
                            "workdir=" + active_ + "x/work", "index=off"}}));
}

TEST_F(OverlayMountsTest, ThreeParentsAreListedTopFirst) {
  ASSERT_TRUE(driver_->Prepare("x", {"c", "b", "a"}, {}).ok());
  auto mounts = driver_->Mounts("x", {"c", "b", "a"});
  ASSERT_TRUE(mounts.ok()) << mounts.status();
  EXPECT_THAT(*mounts, ElementsAre(sys::Mount{
                           "overlay",
                           "overlay",
                           {"lowerdir+=" + layers_ + "c", "lowerdir+=" + layers_ + "b",
                            "lowerdir+=" + layers_ + "a", "upperdir=" + active_ + "x/upper",
                            "workdir=" + active_ + "x/work", "index=off"}}));
}

TEST_F(OverlayMountsTest, ViewsAreReadOnly) {
  EXPECT_EQ(driver_->View({}).status().code(), absl::StatusCode::kInvalidArgument);
  auto one = driver_->View({"a"});
  ASSERT_TRUE(one.ok());
  EXPECT_THAT(*one, ElementsAre(sys::Mount{"bind", layers_ + "a", {"ro"}}));
  auto three = driver_->View({"c", "b", "a"});
  ASSERT_TRUE(three.ok());
  EXPECT_THAT(*three,
              ElementsAre(sys::Mount{"overlay",
                                     "overlay",
                                     {"lowerdir+=" + layers_ + "c", "lowerdir+=" + layers_ + "b",
                                      "lowerdir+=" + layers_ + "a", "ro"}}));
}

TEST_F(OverlayMountsTest, LimitsAndErrors) {
  EXPECT_EQ(driver_->limits().max_chain_depth, 500);
  EXPECT_FALSE(driver_->limits().layers_are_full_trees);
  drivers::Chain too_deep(501, "a");
  auto view = driver_->View(too_deep);
  EXPECT_EQ(view.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(view.status().message()), HasSubstr("limit of 500"));
  EXPECT_EQ(driver_->Prepare("y", too_deep, {}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(driver_->Prepare("y", {"missing"}, {}).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(driver_->Prepare("Bad", {}, {}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(driver_->Prepare("a", {}, {}).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(driver_->Mounts("nothere", {}).status().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(driver_->Prepare("x", {"a"}, {}).ok());
  auto target = driver_->DirectWriteTarget("x");
  ASSERT_TRUE(target.ok());
  EXPECT_EQ(target->directory, active_ + "x/upper");
  EXPECT_EQ(target->whiteouts, drivers::WhiteoutStyle::kOverlay);
  auto walk = driver_->Walk();
  ASSERT_TRUE(walk.ok());
  EXPECT_THAT(*walk, ElementsAre("a", "b", "c", "x"));
}

TEST(OverlayLegacyLimitTest, ClassicMountBoundsTheChainByOnePageOfOptions) {
  std::string root = MakeTempDir() + "/a/root/of/realistic/length/for/a/kubelet/plugin/dir";
  auto legacy =
      drivers::OverlayDriver::Create(root, {.legacy_mount = true, .project_quota = nullptr});
  ASSERT_TRUE(legacy.ok()) << legacy.status();
  auto modern =
      drivers::OverlayDriver::Create(root, {.legacy_mount = false, .project_quota = nullptr});
  ASSERT_TRUE(modern.ok());
  EXPECT_EQ((*modern)->limits().max_chain_depth, 500);
  const int depth = (*legacy)->limits().max_chain_depth;
  EXPECT_EQ(depth, (*legacy)->LegacyMaxChainDepth());
  // Worst case: 32-character ids. The options of a chain this deep fit; one more does not.
  auto options_bytes = [&](int layers) {
    std::string id(32, 'x');
    return static_cast<int>(std::string("lowerdir=").size() + layers * 33 - 1 +
                            (",upperdir=" + (*legacy)->UpperPath(id)).size() +
                            (",workdir=" + (*legacy)->WorkPath(id)).size() +
                            std::string(",index=off").size());
  };
  EXPECT_LE(options_bytes(depth), 4095);
  EXPECT_GT(options_bytes(depth + 1), 4095);
  EXPECT_GT(depth, 50);
  EXPECT_LT(depth, 500);
  auto view = (*legacy)->View(drivers::Chain(depth + 1, "a"));
  EXPECT_EQ(view.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(view.status().message()), HasSubstr("classic mount(2)"));
  EXPECT_TRUE(drivers::RemoveTree(root.substr(0, root.find("/a/root"))).ok());
}

TEST(VfsMountsTest, BindsTheTreeAndViewsTheTopLayer) {
  std::string root = MakeTempDir();
  auto driver = drivers::VfsDriver::Create(root);
  ASSERT_TRUE(driver.ok());
  ASSERT_TRUE((*driver)->Prepare("base", {}, {}).ok());
  WriteFile(root + "/vfs/base/f", "hello");
  ASSERT_TRUE((*driver)->Commit("l1", "base", {}, drivers::CommitMode::kConsume).ok());
  ASSERT_TRUE((*driver)->Prepare("x", {"l1"}, {}).ok());
  EXPECT_EQ(ReadFile(root + "/vfs/x/f"), "hello");  // Prepare copied the parent
  auto mounts = (*driver)->Mounts("x", {"l1"});
  ASSERT_TRUE(mounts.ok());
  EXPECT_THAT(*mounts, ElementsAre(sys::Mount{"bind", root + "/vfs/x", {"rw"}}));
  auto view = (*driver)->View({"l1"});
  ASSERT_TRUE(view.ok());
  EXPECT_THAT(*view, ElementsAre(sys::Mount{"bind", root + "/vfs/l1", {"ro"}}));
  auto target = (*driver)->DirectWriteTarget("x");
  ASSERT_TRUE(target.ok());
  EXPECT_EQ(target->whiteouts, drivers::WhiteoutStyle::kApply);
  EXPECT_TRUE((*driver)->limits().layers_are_full_trees);
  EXPECT_GE((*driver)->limits().max_chain_depth, 1 << 20);
  EXPECT_TRUE(drivers::RemoveTree(root).ok());
}

// ---------------------------------------------------------------------------------------------
// Tree helpers (the root-only parts, owners, devices and trusted xattrs, are in the conformance
// suite's CopyTree test).

TEST(CopyTreeTest, PreservesTypesModesTimesLinksAndUserXattrs) {
  std::string dir = MakeTempDir();
  std::string src = dir + "/src";
  ASSERT_EQ(mkdir(src.c_str(), 0750), 0);
  ASSERT_EQ(mkdir((src + "/sub").c_str(), 0700), 0);
  WriteFile(src + "/sub/file", "content");
  ASSERT_EQ(chmod((src + "/sub/file").c_str(), 04711), 0);
  ASSERT_EQ(link((src + "/sub/file").c_str(), (src + "/hard").c_str()), 0);
  ASSERT_EQ(symlink("/etc/passwd", (src + "/abs-link").c_str()), 0);  // never followed
  ASSERT_EQ(symlink("sub", (src + "/dir-link").c_str()), 0);
  ASSERT_EQ(mkfifo((src + "/fifo").c_str(), 0640), 0);
  bool xattrs = setxattr((src + "/sub/file").c_str(), "user.k", "v", 1, 0) == 0;
  struct timespec times[2] = {{1000, 5}, {2000, 7}};
  ASSERT_EQ(utimensat(AT_FDCWD, (src + "/sub/file").c_str(), times, 0), 0);
  ASSERT_EQ(utimensat(AT_FDCWD, (src + "/sub").c_str(), times, 0), 0);

  std::string dst = dir + "/dst";
  ASSERT_TRUE(drivers::CopyTree(src, dst).ok());
  EXPECT_EQ(drivers::CopyTree(src, dst).code(), absl::StatusCode::kAlreadyExists);

  struct stat st, hard;
  ASSERT_EQ(stat((dst).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0750u);
  ASSERT_EQ(lstat((dst + "/sub/file").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 04711u);
  EXPECT_EQ(st.st_mtim.tv_sec, 2000);
  EXPECT_EQ(st.st_mtim.tv_nsec, 7);
  EXPECT_EQ(ReadFile(dst + "/sub/file"), "content");
  ASSERT_EQ(lstat((dst + "/hard").c_str(), &hard), 0);
  EXPECT_EQ(hard.st_ino, st.st_ino);  // hardlink kept inside the copy
  EXPECT_EQ(st.st_nlink, 2u);
  ASSERT_EQ(lstat((dst + "/sub").c_str(), &st), 0);
  EXPECT_EQ(st.st_mtim.tv_sec, 2000);  // directory times set after its children
  char target[64] = {};
  ASSERT_GT(readlink((dst + "/abs-link").c_str(), target, sizeof(target) - 1), 0);
  EXPECT_STREQ(target, "/etc/passwd");
  ASSERT_EQ(lstat((dst + "/dir-link").c_str(), &st), 0);
  EXPECT_TRUE(S_ISLNK(st.st_mode));
  ASSERT_EQ(lstat((dst + "/fifo").c_str(), &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0640u);
  if (xattrs) {
    char value[8] = {};
    EXPECT_EQ(getxattr((dst + "/sub/file").c_str(), "user.k", value, sizeof(value)), 1);
    EXPECT_STREQ(value, "v");
  }

  auto usage = drivers::TreeUsage(dst);
  ASSERT_TRUE(usage.ok());
  EXPECT_EQ(usage->inodes, 6);  // dst, sub, file (+hard, same inode), 2 links, fifo
  EXPECT_GT(usage->bytes, 0);

  EXPECT_TRUE(drivers::RemoveTree(dir).ok());
  EXPECT_TRUE(drivers::RemoveTree(dir).ok());  // missing is fine
  EXPECT_EQ(access(dir.c_str(), F_OK), -1);
}

TEST(FsUtilTest, ListIdsReportsLeftoversUnderTheirIdAndSkipsJunk) {
  std::string dir = MakeTempDir();
  for (const char* name : {"abc", ".tmp-def", ".del-abc", ".tmp-Bad", "UPPER", "x-y"}) {
    ASSERT_EQ(mkdir((dir + "/" + name).c_str(), 0700), 0);
  }
  auto ids = drivers::ListIds(dir);
  ASSERT_TRUE(ids.ok());
  EXPECT_THAT(*ids, ElementsAre("abc", "def"));
  ASSERT_TRUE(drivers::RemoveEntry(dir, "abc").ok());
  ASSERT_TRUE(drivers::RemoveEntry(dir, "def").ok());
  ASSERT_TRUE(drivers::RemoveEntry(dir, "ghi").ok());
  ids = drivers::ListIds(dir);
  ASSERT_TRUE(ids.ok());
  EXPECT_TRUE(ids->empty());
  EXPECT_TRUE(drivers::RemoveTree(dir).ok());
}

}  // namespace
}  // namespace strata
