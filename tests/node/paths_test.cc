#include "node/paths.h"

#include <sys/stat.h>
#include <unistd.h>

#include "gtest/gtest.h"
#include "tests/node/node_test_util.h"

namespace strata::node {
namespace {

TEST(PathsTest, RequestPathsMustBeAbsoluteAndClean) {
  EXPECT_TRUE(ValidateRequestPath("/var/lib/kubelet/pods/x/mount", "target_path").ok());
  for (const char* bad : {"", "relative/path", "/a/../b", "/a/./b", "/.."}) {
    absl::Status status = ValidateRequestPath(bad, "target_path");
    EXPECT_TRUE(absl::IsInvalidArgument(status)) << bad << ": " << status;
  }
  EXPECT_TRUE(absl::IsInvalidArgument(ValidateRequestPath(std::string("/a\0b", 4), "p")));
}

TEST(PathsTest, MountTargetThatIsASymlinkIsRefused) {
  std::string dir = testing::MakeTempDir();
  ASSERT_EQ(symlink("/etc", (dir + "/link").c_str()), 0);
  EXPECT_TRUE(absl::IsInvalidArgument(PrepareMountTarget(dir + "/link", true)));
  EXPECT_TRUE(PrepareMountTarget(dir + "/new", true).ok());
  struct stat st;
  EXPECT_EQ(lstat((dir + "/new").c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_TRUE(RemoveTree(dir).ok());
}

TEST(PathsTest, ResolvesWithinSeesThroughSymlinks) {
  std::string root = testing::MakeTempDir();
  std::string other = testing::MakeTempDir();
  ASSERT_EQ(mkdir((root + "/inner").c_str(), 0755), 0);
  ASSERT_EQ(symlink((root + "/inner").c_str(), (other + "/sneaky").c_str()), 0);
  EXPECT_TRUE(ResolvesWithin(root + "/inner/x", root));
  EXPECT_TRUE(ResolvesWithin(other + "/sneaky/target", root));
  EXPECT_FALSE(ResolvesWithin(other + "/plain", root));
  EXPECT_FALSE(ResolvesWithin(root + "-sibling", root));
  EXPECT_TRUE(RemoveTree(root).ok());
  EXPECT_TRUE(RemoveTree(other).ok());
}

TEST(PathsTest, RemoveTreeRemovesEverythingAndToleratesMissing) {
  std::string dir = testing::MakeTempDir();
  ASSERT_EQ(mkdir((dir + "/a").c_str(), 0755), 0);
  testing::WriteFile(dir + "/a/f", "x");
  ASSERT_EQ(symlink("/etc/passwd", (dir + "/a/l").c_str()), 0);
  EXPECT_TRUE(RemoveTree(dir).ok());
  EXPECT_NE(access(dir.c_str(), F_OK), 0);
  EXPECT_EQ(access("/etc/passwd", F_OK), 0) << "must not follow symlinks";
  EXPECT_TRUE(RemoveTree(dir).ok());
}

}  // namespace
}  // namespace strata::node
