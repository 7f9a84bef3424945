// The driver conformance suite: every driver, real mounts through LinuxMounter. Needs root.
//
// A new driver joins by being listed in kDrivers; driver-specific leftovers for the crash tests
// are described in LeftoverPaths().

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "drivers/copy_tree.h"
#include "drivers/driver.h"
#include "drivers/fs_util.h"
#include "drivers/overlay/overlay_driver.h"
#include "drivers/registry.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sys/mounter.h"
#include "tests/drivers/loop_filesystem.h"

namespace strata {
namespace {

namespace fs = std::filesystem;
using drivers::Chain;
using drivers::CommitMode;
using ::testing::HasSubstr;

const std::vector<std::string> kDrivers = {"overlay", "vfs", "btrfs"};

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

// Everything visible under `dir`: relative path -> "file:<content>", "dir", "link:<target>".
std::map<std::string, std::string> Tree(const std::string& dir) {
  std::map<std::string, std::string> tree;
  for (auto it = fs::recursive_directory_iterator(dir); it != fs::recursive_directory_iterator();
       ++it) {
    std::string relative = it->path().lexically_relative(dir).string();  // no symlink resolution
    if (it->is_symlink()) {
      tree[relative] = "link:" + fs::read_symlink(it->path()).string();
    } else if (it->is_directory()) {
      tree[relative] = "dir";
    } else {
      tree[relative] = "file:" + ReadFile(it->path());
    }
  }
  return tree;
}

double Millis(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

class DriverConformanceTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (real mounts)";
    std::string parent = "/var/tmp";
    if (GetParam() == "btrfs") {
      // A real btrfs on a loop file, shared by the process' btrfs tests
      // (tests/drivers/loop_filesystem.h).
      auto mount_point = testing::SharedBtrfsMountPoint();
      if (!mount_point.ok())
        GTEST_SKIP() << "no btrfs for the btrfs driver: " << mount_point.status();
      parent = *mount_point;
    }
    std::string base = parent + "/strata-test-XXXXXX";
    ASSERT_NE(mkdtemp(base.data()), nullptr);
    base_ = base;
    // A realistic, long root: the legacy overlay path must really use short relative names.
    root_ = base_ + "/var/lib/kubelet/plugins/strata.csi.storage.example.com/node-root";
    ASSERT_TRUE(drivers::MakeDirs(root_).ok());
    auto driver = drivers::NewDriver(GetParam(), root_);
    if (driver.status().code() == absl::StatusCode::kFailedPrecondition ||
        driver.status().code() == absl::StatusCode::kUnimplemented) {
      GTEST_SKIP() << driver.status();
    }
    ASSERT_TRUE(driver.ok()) << driver.status();
    driver_ = std::move(*driver);
    mounter_ = sys::NewLinuxMounter();
  }

  void TearDown() override {
    if (base_.empty()) return;
    for (auto it = targets_.rbegin(); it != targets_.rend(); ++it) {
      for (int i = 0; i < 4 && mounter_ && *mounter_->IsMountPoint(*it); ++i) {
        EXPECT_TRUE(mounter_->Unmount(*it, /*detach=*/true).ok());
      }
    }
    // Through the driver first: btrfs layers are read-only subvolumes a tree walk cannot empty.
    if (driver_) {
      auto ids = driver_->Walk();
      EXPECT_TRUE(ids.ok()) << ids.status();
      for (const std::string& id : ids.value_or(std::vector<std::string>{})) {
        absl::Status status = driver_->Remove(id);
        EXPECT_TRUE(status.ok()) << status;
      }
    }
    absl::Status removed = drivers::RemoveTree(base_);
    EXPECT_TRUE(removed.ok()) << removed;
  }

  bool full_trees() const { return driver_->limits().layers_are_full_trees; }

  std::string NewTarget() {
    std::string target = absl::StrCat(base_, "/mnt/", targets_.size());
    EXPECT_TRUE(drivers::MakeDirs(target).ok());
    targets_.push_back(target);
    return target;
  }

  absl::Status MountAll(sys::Mounter& mounter, const std::vector<sys::Mount>& mounts,
                        const std::string& target) {
    for (const sys::Mount& mount : mounts) {
      absl::Status status = mounter.MountAt(mount, target);
      if (!status.ok()) return status;
    }
    return absl::OkStatus();
  }

  absl::Status UnmountAll(const std::string& target, size_t count) {
    for (size_t i = 0; i < count; ++i) {
      absl::Status status = mounter_->Unmount(target);
      if (!status.ok()) return status;
    }
    return absl::OkStatus();
  }

  // Prepares active `id` on `parents` and mounts it; returns the mount point.
  std::string PrepareAndMount(const std::string& id, const Chain& parents) {
    absl::Status prepared = driver_->Prepare(id, parents, {});
    EXPECT_TRUE(prepared.ok()) << prepared;
    auto mounts = driver_->Mounts(id, parents);
    EXPECT_TRUE(mounts.ok()) << mounts.status();
    if (!mounts.ok()) return "";
    std::string target = NewTarget();
    absl::Status mounted = MountAll(*mounter_, *mounts, target);
    EXPECT_TRUE(mounted.ok()) << mounted;
    mounted_count_[target] = mounts->size();
    return target;
  }

  void UnmountTarget(const std::string& target) {
    absl::Status status = UnmountAll(target, mounted_count_[target]);
    EXPECT_TRUE(status.ok()) << status;
  }

  // Builds layer `layer_id` on `parents`: prepares an active, mounts it, runs `edit` on the mount
  // point, unmounts, commits (kConsume).
  void MakeLayer(const std::string& layer_id, const Chain& parents,
                 const std::function<void(const std::string&)>& edit) {
    std::string active = "a" + layer_id;
    std::string target = PrepareAndMount(active, parents);
    ASSERT_FALSE(target.empty());
    edit(target);
    UnmountTarget(target);
    absl::Status committed = driver_->Commit(layer_id, active, parents, CommitMode::kConsume);
    ASSERT_TRUE(committed.ok()) << committed;
  }

  // What a read-only view of `chain` shows.
  std::map<std::string, std::string> ViewTree(const Chain& chain) {
    auto mounts = driver_->View(chain);
    EXPECT_TRUE(mounts.ok()) << mounts.status();
    if (!mounts.ok()) return {};
    std::string target = NewTarget();
    absl::Status mounted = MountAll(*mounter_, *mounts, target);
    EXPECT_TRUE(mounted.ok()) << mounted;
    if (!mounted.ok()) return {};
    // Read-only for real.
    EXPECT_EQ(open((target + "/must-fail").c_str(), O_CREAT | O_WRONLY, 0600), -1);
    EXPECT_EQ(errno, EROFS);
    auto tree = Tree(target);
    EXPECT_TRUE(UnmountAll(target, mounts->size()).ok());
    return tree;
  }

  // Where a half-made Prepare of `id` / kKeep Commit of `layer` leaves its temp copy.
  std::string PrepareLeftover(const std::string& id) const {
    if (GetParam() == "overlay") return root_ + "/overlay/active/.tmp-" + id;
    return root_ + "/" + GetParam() + "/.tmp-" + id;
  }
  std::string CommitLeftover(const std::string& layer) const {
    if (GetParam() == "overlay") return root_ + "/overlay/layers/.tmp-" + layer;
    return root_ + "/" + GetParam() + "/.tmp-" + layer;
  }

  std::string base_, root_;
  std::unique_ptr<drivers::Driver> driver_;
  std::unique_ptr<sys::Mounter> mounter_;
  std::vector<std::string> targets_;
  std::map<std::string, size_t> mounted_count_;
};

TEST_P(DriverConformanceTest, PrepareWriteCommitConsumeAndStack) {
  MakeLayer("base", {}, [](const std::string& dir) {
    WriteFile(dir + "/hello", "world");
    fs::create_directory(dir + "/etc");
    WriteFile(dir + "/etc/conf", "v1");
    fs::create_symlink("etc/conf", dir + "/link");
  });
  auto walk = driver_->Walk();
  ASSERT_TRUE(walk.ok());
  EXPECT_THAT(*walk, ::testing::ElementsAre("base"));  // the active is gone after kConsume
  EXPECT_EQ(driver_->Mounts("abase", {}).status().code(), absl::StatusCode::kNotFound);

  std::map<std::string, std::string> base_tree = {
      {"hello", "file:world"}, {"etc", "dir"}, {"etc/conf", "file:v1"}, {"link", "link:etc/conf"}};
  EXPECT_EQ(ViewTree({"base"}), base_tree);

  MakeLayer("child", {"base"}, [](const std::string& dir) {
    EXPECT_EQ(ReadFile(dir + "/hello"), "world");  // the parent shows through
    WriteFile(dir + "/etc/conf", "v2");
    WriteFile(dir + "/new", "n");
  });
  auto child = ViewTree({"child", "base"});
  EXPECT_EQ(child["etc/conf"], "file:v2");
  EXPECT_EQ(child["new"], "file:n");
  EXPECT_EQ(child["hello"], "file:world");
  EXPECT_EQ(ViewTree({"base"}), base_tree);  // layers never change
}

// Quarantine (issue 8): a layer and an active leave the driver by one rename and come back
// intact under new ids; purge deletes only what was quarantined.
TEST_P(DriverConformanceTest, QuarantineMovesContentOutAndBackIntact) {
  MakeLayer("base", {}, [](const std::string& dir) { WriteFile(dir + "/hello", "world"); });
  ASSERT_TRUE(driver_->Prepare("vol", {}, {}).ok());
  auto target = driver_->DirectWriteTarget("vol");
  if (target.ok()) WriteFile(target->directory + "/pod", "data");
  const std::string quarantine = root_ + "/quarantine";
  ASSERT_TRUE(drivers::MakeDirs(quarantine).ok());
  auto layer_kind = driver_->Quarantine("base", quarantine + "/base");
  ASSERT_TRUE(layer_kind.ok()) << layer_kind.status();
  auto active_kind = driver_->Quarantine("vol", quarantine + "/vol");
  ASSERT_TRUE(active_kind.ok()) << active_kind.status();
  if (GetParam() != "vfs") {
    EXPECT_EQ(*layer_kind, drivers::ContentKind::kLayer);
    EXPECT_EQ(*active_kind, drivers::ContentKind::kActive);
  }
  EXPECT_TRUE(driver_->Walk()->empty());
  EXPECT_EQ(driver_->Quarantine("gone", quarantine + "/gone").status().code(),
            absl::StatusCode::kNotFound);
  ASSERT_TRUE(driver_->Unquarantine(quarantine + "/base", *layer_kind, "base2").ok());
  EXPECT_EQ(ViewTree({"base2"}), (std::map<std::string, std::string>{{"hello", "file:world"}}));
  ASSERT_TRUE(driver_->Unquarantine(quarantine + "/vol", *active_kind, "vol2").ok());
  auto back = driver_->DirectWriteTarget("vol2");
  if (back.ok()) EXPECT_EQ(ReadFile(back->directory + "/pod"), "data");
  EXPECT_THAT(*driver_->Walk(), ::testing::ElementsAre("base2", "vol2"));
  ASSERT_TRUE(driver_->Quarantine("vol2", quarantine + "/again").ok());
  ASSERT_TRUE(driver_->PurgeQuarantined(quarantine + "/again").ok());
  EXPECT_FALSE(fs::exists(quarantine + "/again"));
  EXPECT_THAT(*driver_->Walk(), ::testing::ElementsAre("base2"));
}

TEST_P(DriverConformanceTest, CommitKeepOfAMountedActive) {
  MakeLayer("base", {}, [](const std::string& dir) { WriteFile(dir + "/a", "1"); });
  std::string target = PrepareAndMount("vol", {"base"});
  WriteFile(target + "/b", "2");
  WriteFile(target + "/a", "changed");
  absl::Status committed = driver_->Commit("snap", "vol", {"base"}, CommitMode::kKeep);
  ASSERT_TRUE(committed.ok()) << committed;
  // The active keeps working, and later writes do not reach the layer.
  WriteFile(target + "/c", "3");
  EXPECT_EQ(ReadFile(target + "/b"), "2");
  fs::remove(target + "/a");
  auto snap = ViewTree({"snap", "base"});
  EXPECT_EQ(snap["a"], "file:changed");
  EXPECT_EQ(snap["b"], "file:2");
  EXPECT_EQ(snap.count("c"), 0u);
  EXPECT_EQ(driver_->Commit("snap", "vol", {"base"}, CommitMode::kKeep).code(),
            absl::StatusCode::kAlreadyExists);
  UnmountTarget(target);
  // The active survives its own kKeep commit with everything written to it.
  std::string again = NewTarget();
  auto mounts = driver_->Mounts("vol", {"base"});
  ASSERT_TRUE(mounts.ok());
  ASSERT_TRUE(MountAll(*mounter_, *mounts, again).ok());
  EXPECT_EQ(ReadFile(again + "/c"), "3");
  EXPECT_FALSE(Exists(again + "/a"));
  ASSERT_TRUE(UnmountAll(again, mounts->size()).ok());
  auto walk = driver_->Walk();
  ASSERT_TRUE(walk.ok());
  EXPECT_THAT(*walk, ::testing::ElementsAre("base", "snap", "vol"));
}

TEST_P(DriverConformanceTest, DeletedLowerFileStaysHiddenInChildren) {
  MakeLayer("base", {}, [](const std::string& dir) {
    WriteFile(dir + "/gone", "x");
    WriteFile(dir + "/kept", "y");
  });
  MakeLayer("del", {"base"}, [](const std::string& dir) { fs::remove(dir + "/gone"); });
  MakeLayer("top", {"del", "base"}, [](const std::string& dir) {
    EXPECT_FALSE(Exists(dir + "/gone"));
    WriteFile(dir + "/more", "z");
  });
  auto tree = ViewTree({"top", "del", "base"});
  std::map<std::string, std::string> want = {{"kept", "file:y"}, {"more", "file:z"}};
  EXPECT_EQ(tree, want);
}

TEST_P(DriverConformanceTest, RecreatedDirectoryIsOpaque) {
  MakeLayer("base", {}, [](const std::string& dir) {
    fs::create_directories(dir + "/d/sub");
    WriteFile(dir + "/d/old", "o");
    WriteFile(dir + "/d/sub/deep", "o");
  });
  MakeLayer("redo", {"base"}, [](const std::string& dir) {
    fs::remove_all(dir + "/d");
    fs::create_directory(dir + "/d");
    WriteFile(dir + "/d/new", "n");
  });
  MakeLayer("top", {"redo", "base"}, [](const std::string& dir) {
    EXPECT_FALSE(Exists(dir + "/d/old"));
    WriteFile(dir + "/d/top", "t");
  });
  std::map<std::string, std::string> want = {
      {"d", "dir"}, {"d/new", "file:n"}, {"d/top", "file:t"}};
  EXPECT_EQ(ViewTree({"top", "redo", "base"}), want);
}

TEST_P(DriverConformanceTest, RenameOfLowerFileAndDirectory) {
  MakeLayer("base", {}, [](const std::string& dir) {
    WriteFile(dir + "/f", "file");
    fs::create_directories(dir + "/D/inner");
    WriteFile(dir + "/D/inner/x", "x");
  });
  MakeLayer("mv", {"base"}, [](const std::string& dir) {
    fs::rename(dir + "/f", dir + "/g");
    // overlayfs without redirect_dir answers EXDEV for a lower directory; do what mv(1) does.
    std::error_code error;
    fs::rename(dir + "/D", dir + "/E", error);
    if (error) {
      ASSERT_EQ(error.value(), EXDEV) << error.message();
      fs::copy(dir + "/D", dir + "/E", fs::copy_options::recursive);
      fs::remove_all(dir + "/D");
    }
  });
  std::map<std::string, std::string> want = {
      {"g", "file:file"}, {"E", "dir"}, {"E/inner", "dir"}, {"E/inner/x", "file:x"}};
  EXPECT_EQ(ViewTree({"mv", "base"}), want);
}

TEST_P(DriverConformanceTest, ChownAndChmodOfLowerFile) {
  MakeLayer("base", {}, [](const std::string& dir) {
    WriteFile(dir + "/f", "data");
    ASSERT_EQ(chmod((dir + "/f").c_str(), 0644), 0);
  });
  MakeLayer("own", {"base"}, [](const std::string& dir) {
    ASSERT_EQ(chown((dir + "/f").c_str(), 1234, 5678), 0);
    ASSERT_EQ(chmod((dir + "/f").c_str(), 0600), 0);
  });
  auto check = [&](const Chain& chain, uid_t uid, gid_t gid, mode_t mode) {
    auto mounts = driver_->View(chain);
    ASSERT_TRUE(mounts.ok());
    std::string target = NewTarget();
    ASSERT_TRUE(MountAll(*mounter_, *mounts, target).ok());
    struct stat st;
    ASSERT_EQ(stat((target + "/f").c_str(), &st), 0);
    EXPECT_EQ(st.st_uid, uid);
    EXPECT_EQ(st.st_gid, gid);
    EXPECT_EQ(st.st_mode & 07777, mode);
    EXPECT_EQ(ReadFile(target + "/f"), "data");
    ASSERT_TRUE(UnmountAll(target, mounts->size()).ok());
  };
  check({"own", "base"}, 1234, 5678, 0600);
  check({"base"}, 0, 0, 0644);
}

// Each layer i adds f<i>, rewrites "counter" and deletes f<i-2>: only the last two survive.
TEST_P(DriverConformanceTest, Chain128) {
  Chain chain;
  for (int i = 0; i < 128; ++i) {
    std::string id = absl::StrCat("l", i);
    MakeLayer(id, chain, [i](const std::string& dir) {
      WriteFile(absl::StrCat(dir, "/f", i), absl::StrCat(i));
      WriteFile(dir + "/counter", absl::StrCat(i));
      if (i >= 2) fs::remove(absl::StrCat(dir, "/f", i - 2));
    });
    if (HasFatalFailure()) return;
    chain.insert(chain.begin(), id);
  }
  std::map<std::string, std::string> want = {
      {"f126", "file:126"}, {"f127", "file:127"}, {"counter", "file:127"}};
  EXPECT_EQ(ViewTree(chain), want);
  // And as the parents of a writable snapshot.
  std::string target = PrepareAndMount("vol", chain);
  EXPECT_EQ(Tree(target), want);
  UnmountTarget(target);
}

TEST_P(DriverConformanceTest, WalkRemoveUsageFreeBytes) {
  MakeLayer("base", {}, [](const std::string& dir) {
    WriteFile(dir + "/big", std::string(1 << 20, 'x'));
    fs::create_directory(dir + "/d");
    WriteFile(dir + "/d/small", "s");
  });
  ASSERT_TRUE(driver_->Prepare("vol", {"base"}, {}).ok());
  auto usage = driver_->GetUsage("base");
  ASSERT_TRUE(usage.ok()) << usage.status();
  EXPECT_GE(usage->bytes, 1 << 20);
  EXPECT_EQ(usage->inodes, 4);  // root, big, d, d/small
  auto vol_usage = driver_->GetUsage("vol");
  ASSERT_TRUE(vol_usage.ok()) << vol_usage.status();
  if (full_trees()) {
    EXPECT_GE(vol_usage->bytes, 1 << 20);
  } else {
    EXPECT_LT(vol_usage->bytes, 1 << 20);  // a diff driver holds only the changes
  }
  EXPECT_EQ(driver_->GetUsage("nothere").status().code(), absl::StatusCode::kNotFound);
  auto free_bytes = driver_->FreeBytes();
  ASSERT_TRUE(free_bytes.ok());
  EXPECT_GT(*free_bytes, 0);

  auto walk = driver_->Walk();
  ASSERT_TRUE(walk.ok());
  EXPECT_THAT(*walk, ::testing::ElementsAre("base", "vol"));
  // Exists: a layer and an active are there, an unknown id is not.
  EXPECT_TRUE(driver_->Exists("base").value_or(false));
  EXPECT_TRUE(driver_->Exists("vol").value_or(false));
  EXPECT_FALSE(driver_->Exists("nothere").value_or(true));
  EXPECT_EQ(driver_->Exists("../etc").status().code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(driver_->Remove("vol").ok());
  ASSERT_TRUE(driver_->Remove("base").ok());
  EXPECT_FALSE(driver_->Exists("base").value_or(true));
  EXPECT_FALSE(driver_->Exists("vol").value_or(true));
  EXPECT_TRUE(driver_->Remove("base").ok());  // missing: OK
  EXPECT_TRUE(driver_->Remove("neverwas").ok());
  walk = driver_->Walk();
  ASSERT_TRUE(walk.ok());
  EXPECT_TRUE(walk->empty());
  EXPECT_EQ(driver_->Remove("../etc").code(), absl::StatusCode::kInvalidArgument);
}

TEST_P(DriverConformanceTest, ArgumentErrors) {
  ASSERT_TRUE(driver_->Prepare("vol", {}, {}).ok());
  EXPECT_EQ(driver_->Prepare("vol", {}, {}).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(driver_->Prepare("x", {"missing"}, {}).code(), absl::StatusCode::kNotFound);
  for (const char* bad : {"", "..", "a/b", "UP", "a.b", "/etc"}) {
    EXPECT_EQ(driver_->Prepare(bad, {}, {}).code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_EQ(driver_->Prepare("ok", {bad}, {}).code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(driver_->View({bad}).status().code(), absl::StatusCode::kInvalidArgument);
  }
  EXPECT_EQ(driver_->View({}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(driver_->Commit("l", "missing", {}, CommitMode::kConsume).code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(driver_->Commit("l", "missing", {}, CommitMode::kKeep).code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(driver_->DirectWriteTarget("missing").status().code(), absl::StatusCode::kNotFound);
}

TEST_P(DriverConformanceTest, DirectWriteTargetFeedsTheLayer) {
  ASSERT_TRUE(driver_->Prepare("imp", {}, {}).ok());
  auto target = driver_->DirectWriteTarget("imp");
  ASSERT_TRUE(target.ok()) << target.status();
  WriteFile(target->directory + "/imported", "i");
  ASSERT_TRUE(driver_->Commit("base", "imp", {}, CommitMode::kConsume).ok());
  ASSERT_TRUE(driver_->Prepare("imp2", {"base"}, {}).ok());
  target = driver_->DirectWriteTarget("imp2");
  ASSERT_TRUE(target.ok());
  if (target->whiteouts == drivers::WhiteoutStyle::kOverlay) {
    ASSERT_EQ(mknod((target->directory + "/imported").c_str(), S_IFCHR | 0, makedev(0, 0)), 0);
  } else {
    ASSERT_EQ(unlink((target->directory + "/imported").c_str()), 0);
  }
  WriteFile(target->directory + "/second", "2");
  ASSERT_TRUE(driver_->Commit("top", "imp2", {"base"}, CommitMode::kConsume).ok());
  std::map<std::string, std::string> want = {{"second", "file:2"}};
  EXPECT_EQ(ViewTree({"top", "base"}), want);
}

// driver.h: calls for different ids may run concurrently.
TEST_P(DriverConformanceTest, ConcurrentCallsOnDifferentIds) {
  MakeLayer("base", {}, [](const std::string& dir) { WriteFile(dir + "/shared", "s"); });
  std::vector<std::thread> threads;
  std::vector<absl::Status> results(4);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 8 && results[t].ok(); ++i) {
        std::string active = absl::StrCat("t", t, "a", i), layer = absl::StrCat("t", t, "l", i);
        absl::Status status = driver_->Prepare(active, {"base"}, {});
        if (status.ok()) {
          auto target = driver_->DirectWriteTarget(active);
          status = target.status();
          if (target.ok()) WriteFile(absl::StrCat(target->directory, "/f", t, "-", i), "x");
        }
        if (status.ok()) {
          CommitMode mode = i % 2 ? CommitMode::kKeep : CommitMode::kConsume;
          status = driver_->Commit(layer, active, {"base"}, mode);
        }
        if (status.ok()) status = driver_->Walk().status();
        if (status.ok() && i % 3 == 0) status = driver_->Remove(layer);
        results[t] = status;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  for (const absl::Status& status : results) EXPECT_TRUE(status.ok()) << status;
  auto walk = driver_->Walk();
  ASSERT_TRUE(walk.ok());
  // Per thread: base + 8 commits - 3 removed layers + 4 kept actives.
  EXPECT_EQ(walk->size(), 1u + 4 * (8 - 3 + 4));
  auto tree = ViewTree({"t2l7", "base"});
  EXPECT_EQ(tree["f2-7"], "file:x");
  EXPECT_EQ(tree["shared"], "file:s");
}

TEST_P(DriverConformanceTest, RetryAfterHalfDonePrepareAndCommit) {
  // A Prepare that crashed after making its temp directory.
  ASSERT_TRUE(drivers::MakeDirs(PrepareLeftover("vol") + "/upper/junk").ok());
  auto walk = driver_->Walk();
  ASSERT_TRUE(walk.ok());
  EXPECT_THAT(*walk, ::testing::ElementsAre("vol"));  // leftovers are reported for recovery
  ASSERT_TRUE(driver_->Prepare("vol", {}, {}).ok());
  EXPECT_FALSE(Exists(PrepareLeftover("vol")));
  std::string target = PrepareAndMount("vol2", {});
  WriteFile(target + "/data", "d");
  UnmountTarget(target);

  // A kKeep Commit that crashed mid-copy.
  ASSERT_TRUE(drivers::MakeDirs(CommitLeftover("snap") + "/partial").ok());
  ASSERT_TRUE(driver_->Commit("snap", "vol2", {}, CommitMode::kKeep).ok());
  EXPECT_FALSE(Exists(CommitLeftover("snap")));
  std::map<std::string, std::string> want = {{"data", "file:d"}};
  EXPECT_EQ(ViewTree({"snap"}), want);

  // Recovery removes an id it does not know, leftovers included.
  ASSERT_TRUE(drivers::MakeDirs(PrepareLeftover("orphan") + "/x").ok());
  ASSERT_TRUE(driver_->Remove("orphan").ok());
  walk = driver_->Walk();
  ASSERT_TRUE(walk.ok());
  EXPECT_THAT(*walk, ::testing::ElementsAre("snap", "vol", "vol2"));

  if (GetParam() == "overlay") {
    // kConsume stopped after renaming the upper into layers/ and before removing the active.
    std::string active = root_ + "/overlay/active/vol2";
    ASSERT_EQ(rename((active + "/upper").c_str(), (root_ + "/overlay/layers/done").c_str()), 0);
    ASSERT_TRUE(driver_->Commit("done", "vol2", {}, CommitMode::kConsume).ok());
    EXPECT_FALSE(Exists(active));
    EXPECT_EQ(ViewTree({"done"}), want);
  } else {
    ASSERT_TRUE(driver_->Commit("done", "vol2", {}, CommitMode::kConsume).ok());
    EXPECT_TRUE(driver_->Commit("done", "vol2", {}, CommitMode::kConsume).ok());  // retried
  }
  // A half-done Remove (renamed away, not yet deleted) is finished by the next Remove.
  walk = driver_->Walk();
  ASSERT_TRUE(walk.ok());
  EXPECT_THAT(*walk, ::testing::ElementsAre("done", "snap", "vol"));
}

// The deepest chain the driver supports mounts, through both overlay mount methods, and one
// more layer fails clearly. Also measures mount+umount latency by depth.
TEST_P(DriverConformanceTest, DeepestChain) {
  if (full_trees()) {
    GTEST_SKIP() << "full-tree driver: mounts cost nothing per layer (Chain128 covers depth)";
  }
  const int depth = driver_->limits().max_chain_depth;
  ASSERT_LE(depth, 1000) << "test builds every layer; raise with care";
  // Build depth+1 layers quickly through DirectWriteTarget: layer i holds file f<i>.
  Chain chain;
  for (int i = 0; i <= depth; ++i) {
    std::string id = absl::StrCat("d", i);
    std::string active = absl::StrCat("x", i);
    ASSERT_TRUE(driver_->Prepare(active, {}, {}).ok());
    auto target = driver_->DirectWriteTarget(active);
    ASSERT_TRUE(target.ok()) << target.status();
    WriteFile(absl::StrCat(target->directory, "/f", i), absl::StrCat(i));
    ASSERT_TRUE(driver_->Commit(id, active, {}, CommitMode::kConsume).ok());
    chain.insert(chain.begin(), id);
  }
  Chain deepest(chain.begin() + 1, chain.end());  // d<depth-1> ... d0
  ASSERT_EQ(deepest.size(), static_cast<size_t>(depth));

  auto legacy = sys::NewLinuxMounter({.force_legacy_overlay = true});
  for (sys::Mounter* mounter : {mounter_.get(), legacy.get()}) {
    const char* method = mounter == legacy.get() ? "legacy mount(2)" : "new mount API";
    SCOPED_TRACE(method);
    auto view = driver_->View(deepest);
    ASSERT_TRUE(view.ok()) << view.status();
    std::string target = NewTarget();
    absl::Status mounted = MountAll(*mounter, *view, target);
    ASSERT_TRUE(mounted.ok()) << mounted;
    EXPECT_EQ(ReadFile(absl::StrCat(target, "/f", depth - 1)), absl::StrCat(depth - 1));
    EXPECT_EQ(ReadFile(absl::StrCat(target, "/f", depth - 2)), absl::StrCat(depth - 2));
    EXPECT_EQ(ReadFile(target + "/f0"), "0");
    EXPECT_EQ(std::distance(fs::directory_iterator(target), fs::directory_iterator()), depth);
    ASSERT_TRUE(UnmountAll(target, view->size()).ok());

    // An active on the deepest chain: the upper does not count against the lower-layer limit.
    std::string active = mounter == legacy.get() ? "deeplegacy" : "deepnew";
    ASSERT_TRUE(driver_->Prepare(active, deepest, {}).ok());
    auto mounts = driver_->Mounts(active, deepest);
    ASSERT_TRUE(mounts.ok()) << mounts.status();
    target = NewTarget();
    mounted = MountAll(*mounter, *mounts, target);
    ASSERT_TRUE(mounted.ok()) << mounted;
    WriteFile(target + "/written", "w");
    EXPECT_EQ(ReadFile(target + "/f0"), "0");
    ASSERT_TRUE(UnmountAll(target, mounts->size()).ok());
    std::printf("[ measure  ] %s %s: deepest chain that mounts = %d lowers (+ upper)\n",
                GetParam().c_str(), method, depth);
  }

  // One layer more: the driver refuses with a clear error before the kernel is asked...
  auto too_deep = driver_->View(chain);
  EXPECT_EQ(too_deep.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(too_deep.status().message()), HasSubstr(absl::StrCat(depth + 1)));
  // ...and for overlay, the kernel agrees that this is its hard limit.
  if (GetParam() == "overlay") {
    auto* overlay = static_cast<drivers::OverlayDriver*>(driver_.get());
    sys::Mount raw{"overlay", "overlay", {"ro"}};
    for (const std::string& id : chain)
      raw.options.push_back("lowerdir+=" + overlay->LayerPath(id));
    std::string target = NewTarget();
    absl::Status status = mounter_->MountAt(raw, target);
    EXPECT_FALSE(status.ok());
    std::printf("[ measure  ] overlay %zu lowers, new API: %s\n", chain.size(),
                status.ToString().c_str());
    status = legacy->MountAt(raw, target);
    EXPECT_FALSE(status.ok());
    std::printf("[ measure  ] overlay %zu lowers, legacy: %s\n", chain.size(),
                status.ToString().c_str());
    EXPECT_FALSE(*mounter_->IsMountPoint(target));
  }

  // Mount + umount latency of a writable snapshot by depth (printed, not asserted).
  for (int lowers : {1, 10, 100, depth}) {
    Chain sub(deepest.begin(), deepest.begin() + lowers);
    std::string active = absl::StrCat("lat", lowers);
    ASSERT_TRUE(driver_->Prepare(active, sub, {}).ok());
    auto mounts = driver_->Mounts(active, sub);
    ASSERT_TRUE(mounts.ok()) << mounts.status();
    std::string target = NewTarget();
    for (sys::Mounter* mounter : {mounter_.get(), legacy.get()}) {
      std::vector<double> samples;
      for (int i = 0; i < 15; ++i) {
        auto start = std::chrono::steady_clock::now();
        ASSERT_TRUE(MountAll(*mounter, *mounts, target).ok());
        ASSERT_TRUE(UnmountAll(target, mounts->size()).ok());
        samples.push_back(Millis(std::chrono::steady_clock::now() - start));
      }
      std::sort(samples.begin(), samples.end());
      std::printf("[ measure  ] %s mount+umount, %3d lowers + upper, %-15s: median %.3f ms\n",
                  GetParam().c_str(), lowers,
                  mounter == legacy.get() ? "legacy mount(2)" : "new mount API",
                  samples[samples.size() / 2]);
    }
  }
}

// On kernels without "lowerdir+" the driver's limit is what one page of classic mount(2) options
// holds with worst-case ids; prove a chain that deep of 32-character ids mounts that way, and that
// the helper-thread chdir leaves the process' working directory alone.
TEST(OverlayLegacyRootTest, LegacyLimitWithLongIdsMounts) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root";
  char base[] = "/var/tmp/strata-legacy-XXXXXX";
  ASSERT_NE(mkdtemp(base), nullptr);
  std::string root = std::string(base) + "/var/lib/kubelet/plugins/strata.csi.example.com/root";
  auto created =
      drivers::OverlayDriver::Create(root, {.legacy_mount = true, .project_quota = nullptr});
  ASSERT_TRUE(created.ok()) << created.status();
  drivers::OverlayDriver& driver = **created;
  const int depth = driver.limits().max_chain_depth;
  Chain chain;
  for (int i = 0; i < depth; ++i) {
    char id[33];
    std::snprintf(id, sizeof(id), "%032d", i);
    std::string active = absl::StrCat("x", i);
    ASSERT_TRUE(driver.Prepare(active, {}, {}).ok());
    WriteFile(absl::StrCat(driver.UpperPath(active), "/f", i), "x");
    ASSERT_TRUE(driver.Commit(id, active, {}, CommitMode::kConsume).ok());
    chain.insert(chain.begin(), id);
  }
  ASSERT_TRUE(driver.Prepare(std::string(32, 'v'), chain, {}).ok());
  auto mounts = driver.Mounts(std::string(32, 'v'), chain);
  ASSERT_TRUE(mounts.ok()) << mounts.status();
  std::string target = std::string(base) + "/mnt";
  ASSERT_EQ(mkdir(target.c_str(), 0755), 0);
  char cwd_before[4096];
  ASSERT_NE(getcwd(cwd_before, sizeof(cwd_before)), nullptr);
  auto legacy = sys::NewLinuxMounter({.force_legacy_overlay = true});
  absl::Status status = legacy->MountAt((*mounts)[0], target);
  EXPECT_TRUE(status.ok()) << status;
  char cwd_after[4096];
  ASSERT_NE(getcwd(cwd_after, sizeof(cwd_after)), nullptr);
  EXPECT_STREQ(cwd_before, cwd_after);
  if (status.ok()) {
    EXPECT_TRUE(Exists(absl::StrCat(target, "/f", depth - 1)));
    EXPECT_TRUE(Exists(target + "/f0"));
    EXPECT_TRUE(legacy->Unmount(target).ok());
  }
  std::printf("[ measure  ] overlay legacy limit with 32-char ids under a %zu-byte root: %d\n",
              root.size(), depth);
  chain.insert(chain.begin(), "extra");
  EXPECT_EQ(driver.View(chain).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(drivers::RemoveTree(base).ok());
}

// CopyTree keeps what only root can make: owners, whiteouts, trusted xattrs (opaque marker).
TEST(CopyTreeRootTest, PreservesOwnersDevicesAndTrustedXattrs) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root";
  char base[] = "/var/tmp/strata-copy-XXXXXX";
  ASSERT_NE(mkdtemp(base), nullptr);
  std::string src = std::string(base) + "/src", dst = std::string(base) + "/dst";
  ASSERT_EQ(mkdir(src.c_str(), 0755), 0);
  ASSERT_EQ(mkdir((src + "/opaque").c_str(), 0755), 0);
  ASSERT_EQ(setxattr((src + "/opaque").c_str(), "trusted.overlay.opaque", "y", 1, 0), 0);
  ASSERT_EQ(mknod((src + "/whiteout").c_str(), S_IFCHR | 0, makedev(0, 0)), 0);
  ASSERT_EQ(mknod((src + "/null").c_str(), S_IFCHR | 0666, makedev(1, 3)), 0);
  ASSERT_EQ(chmod((src + "/null").c_str(), 0666), 0);  // past the umask
  WriteFile(src + "/owned", "x");
  ASSERT_EQ(chown((src + "/owned").c_str(), 1000, 2000), 0);
  ASSERT_EQ(chmod((src + "/owned").c_str(), 02755), 0);
  ASSERT_EQ(symlink("owned", (src + "/link").c_str()), 0);
  ASSERT_EQ(lchown((src + "/link").c_str(), 3000, 4000), 0);
  ASSERT_EQ(lsetxattr((src + "/link").c_str(), "trusted.k", "v", 1, 0), 0);

  ASSERT_TRUE(drivers::CopyTree(src, dst).ok());
  char value[4] = {};
  EXPECT_EQ(getxattr((dst + "/opaque").c_str(), "trusted.overlay.opaque", value, 4), 1);
  EXPECT_EQ(value[0], 'y');
  struct stat st;
  ASSERT_EQ(lstat((dst + "/whiteout").c_str(), &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode));
  EXPECT_EQ(st.st_rdev, makedev(0, 0));
  ASSERT_EQ(lstat((dst + "/null").c_str(), &st), 0);
  EXPECT_EQ(st.st_rdev, makedev(1, 3));
  EXPECT_EQ(st.st_mode & 0777, 0666u);
  ASSERT_EQ(lstat((dst + "/owned").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 1000u);
  EXPECT_EQ(st.st_gid, 2000u);
  EXPECT_EQ(st.st_mode & 07777, 02755u);  // setgid survives the chown
  ASSERT_EQ(lstat((dst + "/link").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 3000u);
  EXPECT_EQ(lgetxattr((dst + "/link").c_str(), "trusted.k", value, 4), 1);

  // RemoveTree refuses to cross into a mount point under the tree.
  auto mounter = sys::NewLinuxMounter();
  ASSERT_TRUE(mounter->MountAt({"bind", src, {"ro"}}, dst + "/opaque").ok());
  EXPECT_EQ(drivers::RemoveTree(dst).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(Exists(src + "/owned"));
  ASSERT_TRUE(mounter->Unmount(dst + "/opaque").ok());
  EXPECT_TRUE(mounter->Unmount(dst + "/opaque").ok());  // idempotent
  EXPECT_TRUE(drivers::RemoveTree(base).ok());
}

TEST(LinuxMounterRootTest, BindReadOnlyAndPathsWithSpaces) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root";
  char base[] = "/var/tmp/strata-mnt-XXXXXX";
  ASSERT_NE(mkdtemp(base), nullptr);
  std::string src = std::string(base) + "/src dir", target = std::string(base) + "/tar get";
  ASSERT_EQ(mkdir(src.c_str(), 0755), 0);
  ASSERT_EQ(mkdir(target.c_str(), 0755), 0);
  WriteFile(src + "/f", "x");
  auto mounter = sys::NewLinuxMounter();
  ASSERT_TRUE(mounter->MountAt({"bind", src, {"ro", "nosuid"}}, target).ok());
  EXPECT_TRUE(*mounter->IsMountPoint(target));
  EXPECT_TRUE(*mounter->IsMountPoint(target + "/"));
  EXPECT_EQ(ReadFile(target + "/f"), "x");
  EXPECT_EQ(open((target + "/g").c_str(), O_CREAT | O_WRONLY, 0600), -1);
  EXPECT_EQ(errno, EROFS);
  auto list = mounter->List();
  ASSERT_TRUE(list.ok());
  bool found = false;
  for (const auto& point : *list) {
    if (point.target == target) {
      found = true;
      EXPECT_THAT(point.options, HasSubstr("ro"));
      EXPECT_THAT(point.options, HasSubstr("nosuid"));
    }
  }
  EXPECT_TRUE(found);
  ASSERT_TRUE(mounter->Unmount(target).ok());
  EXPECT_FALSE(*mounter->IsMountPoint(target));
  EXPECT_TRUE(mounter->Unmount(target).ok());
  // Overlay failures carry the kernel's own words.
  absl::Status status = mounter->MountAt(
      {"overlay", "overlay", {"lowerdir+=" + src + "/missing", "lowerdir+=" + src}}, target);
  EXPECT_FALSE(status.ok());
  EXPECT_FALSE(*mounter->IsMountPoint(target));
  std::printf("[ measure  ] overlay error text: %s\n", status.ToString().c_str());
  EXPECT_TRUE(drivers::RemoveTree(base).ok());
}

INSTANTIATE_TEST_SUITE_P(AllDrivers, DriverConformanceTest, ::testing::ValuesIn(kDrivers),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace strata
