// LinuxMounter::IsMountPoint on real mounts: the constant-time statx answer must agree with the
// kernel's mount table in every shape Strata meets (plain folders, missing paths, stacked
// mounts, file binds, symlinks to mount points). Needs root.

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "sys/mounter.h"

namespace strata::sys {
namespace {

class LinuxMounterRootTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (mounts)";
    char pattern[] = "/tmp/strata-mounter-XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    dir_ = pattern;
    mounter_ = NewLinuxMounter();
  }
  void TearDown() override {
    if (dir_.empty()) return;
    for (auto it = mounted_.rbegin(); it != mounted_.rend(); ++it) umount2(it->c_str(), MNT_DETACH);
    std::string command = "rm -rf --one-file-system " + dir_;
    EXPECT_EQ(system(command.c_str()), 0);
  }
  std::string Dir(const std::string& name) {
    std::string path = dir_ + "/" + name;
    EXPECT_EQ(mkdir(path.c_str(), 0755), 0) << path;
    return path;
  }
  void MountTmpfs(const std::string& target) {
    ASSERT_EQ(mount("tmpfs", target.c_str(), "tmpfs", 0, "size=1m"), 0) << target;
    mounted_.push_back(target);
  }
  // What the mount table says, the way the plugin read it before.
  bool InTable(const std::string& path) {
    char resolved[PATH_MAX];
    if (realpath(path.c_str(), resolved) == nullptr) return false;
    auto table = mounter_->List();
    EXPECT_TRUE(table.ok()) << table.status();
    for (const MountPoint& point : table.value_or(std::vector<MountPoint>{}))
      if (point.target == resolved) return true;
    return false;
  }
  void ExpectAnswer(const std::string& path, bool expected) {
    absl::StatusOr<bool> answer = mounter_->IsMountPoint(path);
    ASSERT_TRUE(answer.ok()) << answer.status();
    EXPECT_EQ(*answer, expected) << path;
    EXPECT_EQ(InTable(path), expected) << path << ": the table disagrees";
  }

  std::string dir_;
  std::vector<std::string> mounted_;
  std::unique_ptr<Mounter> mounter_;
};

TEST_F(LinuxMounterRootTest, PlainFoldersAndMissingPathsAreNotMountPoints) {
  const std::string plain = Dir("plain");
  ExpectAnswer(plain, false);
  ExpectAnswer(dir_ + "/missing", false);
  std::ofstream(dir_ + "/file") << "x";
  ExpectAnswer(dir_ + "/file/below", false);  // ENOTDIR
}

TEST_F(LinuxMounterRootTest, MountsStackedMountsAndTheirSubfolders) {
  const std::string target = Dir("target");
  MountTmpfs(target);
  ExpectAnswer(target, true);
  ASSERT_EQ(mkdir((target + "/sub").c_str(), 0755), 0);
  ExpectAnswer(target + "/sub", false);
  MountTmpfs(target);  // stacked on the first
  ExpectAnswer(target, true);
  ASSERT_EQ(umount2(target.c_str(), 0), 0);
  mounted_.pop_back();
  {
    SCOPED_TRACE("the lower mount is still there");
    ExpectAnswer(target, true);
  }
  ASSERT_EQ(umount2(target.c_str(), 0), 0);
  mounted_.pop_back();
  ExpectAnswer(target, false);
}

TEST_F(LinuxMounterRootTest, BindsOfFilesAndFoldersAndSymlinksToThem) {
  const std::string source = Dir("source");
  const std::string bound = Dir("bound");
  ASSERT_EQ(mount(source.c_str(), bound.c_str(), nullptr, MS_BIND, nullptr), 0);
  mounted_.push_back(bound);
  ExpectAnswer(bound, true);
  {
    SCOPED_TRACE("the bind's source is not itself a mount point");
    ExpectAnswer(source, false);
  }

  std::ofstream(dir_ + "/file-a") << "a";
  std::ofstream(dir_ + "/file-b") << "b";
  ASSERT_EQ(
      mount((dir_ + "/file-a").c_str(), (dir_ + "/file-b").c_str(), nullptr, MS_BIND, nullptr), 0);
  mounted_.push_back(dir_ + "/file-b");
  ExpectAnswer(dir_ + "/file-b", true);

  ASSERT_EQ(symlink(bound.c_str(), (dir_ + "/link").c_str()), 0);
  {
    SCOPED_TRACE("a symlink is followed, as realpath did");
    ExpectAnswer(dir_ + "/link", true);
  }
}

}  // namespace
}  // namespace strata::sys
