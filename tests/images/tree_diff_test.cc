// DiffTrees on trees built by hand (no root needed: owners and trusted.* xattrs are in
// export_root_test.cc).

#include "node/images/tree_diff.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/images/test_util.h"
#include "tests/images/tree_test_util.h"

namespace strata::images {
namespace {

using imgtest::MakeDirs;
using imgtest::TempDir;
using imgtest::WriteFile;
using treetest::CopyAll;
using treetest::SetMtime;
using treetest::SetXattr;

std::string Render(const std::vector<TreeChange>& changes) {
  std::string out;
  for (const TreeChange& c : changes)
    out += std::string(1, TreeChangeLetter(c.kind)) + " " + c.path + "\n";
  return out;
}

// A lower tree whose every entry has a fixed mtime, so a copy made with cp -a compares equal.
void BuildLower(const std::string& root) {
  MakeDirs(root + "/d/sub");
  MakeDirs(root + "/s");
  MakeDirs(root + "/keepdir");
  WriteFile(root + "/a", "aaaa");
  WriteFile(root + "/same", "same");
  WriteFile(root + "/mode", "m");
  WriteFile(root + "/mt", "t");
  WriteFile(root + "/xa", "x");
  WriteFile(root + "/t", "becomes a dir");
  WriteFile(root + "/d/x", "x");
  WriteFile(root + "/d/sub/y", "y");
  WriteFile(root + "/s/old", "o");
  WriteFile(root + "/keepdir/k", "k");
  ASSERT_EQ(symlink("target1", (root + "/sym").c_str()), 0);
  for (const char* p : {"a", "same", "mode", "mt", "xa", "t", "d/x", "d/sub/y", "s/old",
                        "keepdir/k", "sym", "d/sub", "d", "s", "keepdir"}) {
    SetMtime(root + "/" + p, 1600000000, 123456789);
  }
}

TEST(DiffTreesTest, ReportsAddedChangedDeletedLikeDockerDiff) {
  TempDir tmp;
  const std::string lower = tmp.Sub("lower"), upper = tmp.Sub("upper");
  MakeDirs(lower);
  BuildLower(lower);
  CopyAll(lower, upper);
  ASSERT_EQ(Render(*DiffTrees(lower, upper)), "");  // an exact copy has no changes

  WriteFile(upper + "/n", "new");                        // A
  MakeDirs(upper + "/nd/sub");                           // A, A
  WriteFile(upper + "/nd/sub/f", "f");                   // A
  WriteFile(upper + "/a", "bbbb");                       // C (content, mtime moves)
  ASSERT_EQ(chmod((upper + "/mode").c_str(), 0600), 0);  // C
  SetMtime(upper + "/mt", 1600000000, 123456780);        // C (10 ns earlier)
  SetXattr(upper + "/xa", "user.k", "v");                // C
  ASSERT_EQ(unlink((upper + "/sym").c_str()), 0);        // C (target, same length and time)
  ASSERT_EQ(symlink("target2", (upper + "/sym").c_str()), 0);
  SetMtime(upper + "/sym", 1600000000, 123456789);
  std::filesystem::remove_all(upper + "/d");     // D once, not its children
  ASSERT_EQ(unlink((upper + "/t").c_str()), 0);  // C (file -> dir) + A child
  MakeDirs(upper + "/t");
  WriteFile(upper + "/t/c", "c");
  WriteFile(upper + "/s/new", "n");               // C parent, A child
  SetMtime(upper + "/s", 1600000000, 123456789);  // parent listed for the new child alone

  auto changes = DiffTrees(lower, upper);
  ASSERT_TRUE(changes.ok()) << changes.status();
  EXPECT_EQ(Render(*changes),
            "C /a\n"
            "D /d\n"
            "C /mode\n"
            "C /mt\n"
            "A /n\n"
            "A /nd\n"
            "A /nd/sub\n"
            "A /nd/sub/f\n"
            "C /s\n"
            "A /s/new\n"
            "C /sym\n"
            "C /t\n"
            "A /t/c\n"
            "C /xa\n");
}

TEST(DiffTreesTest, SameSizeAndTimeContentChangeNeedsCompareContent) {
  TempDir tmp;
  const std::string lower = tmp.Sub("lower"), upper = tmp.Sub("upper");
  MakeDirs(lower);
  BuildLower(lower);
  CopyAll(lower, upper);
  WriteFile(upper + "/same", "SAME");  // same size; the mtime is put back by hand
  SetMtime(upper + "/same", 1600000000, 123456789);
  EXPECT_EQ(Render(*DiffTrees(lower, upper)), "");
  DiffOptions options;
  options.compare_content = true;
  EXPECT_EQ(Render(*DiffTrees(lower, upper, options)), "C /same\n");
}

TEST(DiffTreesTest, DirectoryToFileListsOnlyTheEntry) {
  TempDir tmp;
  const std::string lower = tmp.Sub("lower"), upper = tmp.Sub("upper");
  MakeDirs(lower);
  BuildLower(lower);
  CopyAll(lower, upper);
  std::filesystem::remove_all(upper + "/d");
  WriteFile(upper + "/d", "now a file");
  EXPECT_EQ(Render(*DiffTrees(lower, upper)), "C /d\n");
}

TEST(DiffTreesTest, EmptyLowerListsEverythingInPathOrder) {
  TempDir tmp;
  const std::string upper = tmp.Sub("upper");
  MakeDirs(upper + "/a/b");
  WriteFile(upper + "/a-b", "1");
  WriteFile(upper + "/a/b/c", "2");
  WriteFile(upper + "/a.", "3");
  // A directory comes right before its contents: "/a", "/a/b", "/a/b/c", then "/a-b".
  EXPECT_EQ(Render(*DiffTrees("", upper)), "A /a\nA /a/b\nA /a/b/c\nA /a-b\nA /a.\n");
}

TEST(DiffTreesTest, DeletedNestedDirectoriesAreListedOnce) {
  TempDir tmp;
  const std::string lower = tmp.Sub("lower"), upper = tmp.Sub("upper");
  MakeDirs(lower + "/top/a/b/c");
  MakeDirs(lower + "/top/keep");
  WriteFile(lower + "/top/a/b/c/f", "f");
  SetMtime(lower + "/top", 1600000000, 0);
  CopyAll(lower, upper);
  std::filesystem::remove_all(upper + "/top/a");
  SetMtime(upper + "/top", 1600000000, 0);  // only the missing child marks /top changed
  EXPECT_EQ(Render(*DiffTrees(lower, upper)), "C /top\nD /top/a\n");
}

TEST(DiffTreesTest, Errors) {
  TempDir tmp;
  WriteFile(tmp.Sub("file"), "x");
  EXPECT_EQ(DiffTrees("", tmp.Sub("missing")).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(DiffTrees(tmp.Sub("missing"), tmp.path()).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(DiffTrees("", tmp.Sub("file")).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(DiffTreesTest, PathOrder) {
  using tree_internal::PathLess;
  EXPECT_TRUE(PathLess("a", "a/b"));
  EXPECT_TRUE(PathLess("a/b", "a-b"));
  EXPECT_TRUE(PathLess("a/z", "a0"));
  EXPECT_FALSE(PathLess("a-b", "a/b"));
  EXPECT_FALSE(PathLess("a", "a"));
  EXPECT_TRUE(PathLess("A", "a"));
}

}  // namespace
}  // namespace strata::images
