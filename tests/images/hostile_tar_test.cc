// Hostile layer tars: every one must fail with InvalidArgument and leave everything outside the
// target directory untouched.

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <string>

#include "gtest/gtest.h"
#include "node/images/layer_tar.h"
#include "node/images/safe_fs.h"
#include "tests/images/test_util.h"

namespace strata::images {
namespace {

using drivers::WhiteoutStyle;
using namespace imgtest;  // NOLINT: test helpers

struct HostileCase {
  std::string label;
  std::vector<TarEntry> lower;  // extracted first (kApply), must succeed
  std::vector<TarEntry> layer;  // must fail
  WhiteoutStyle style = WhiteoutStyle::kApply;
};

void PrintTo(const HostileCase& c, std::ostream* os) { *os << c.label; }

// Everything under the temp dir except the target itself.
std::map<std::string, std::string> Outside(const TempDir& tmp) {
  auto tree = Snapshot(tmp.path());
  std::map<std::string, std::string> out;
  for (auto& [path, desc] : tree) {
    if (path == "target" || path.rfind("target/", 0) == 0) continue;
    out[path] = desc;
  }
  return out;
}

class HostileTarTest : public ::testing::TestWithParam<HostileCase> {};

TEST_P(HostileTarTest, FailsAndWritesNothingOutside) {
  const HostileCase& c = GetParam();
  TempDir tmp;
  const std::string target = tmp.Sub("target");
  MakeDirs(target);
  MakeDirs(tmp.Sub("sentinel"));
  WriteFile(tmp.Sub("sentinel/file"), "precious");
  WriteFile(tmp.Sub("x"), "outside x");  // a whiteout of ../x must not delete it

  TempDir blobs;  // tars live outside the watched tree
  if (!c.lower.empty()) {
    WriteFile(blobs.Sub("lower.tar"), BuildTar(c.lower));
    auto lower = ExtractLayer(blobs.Sub("lower.tar"), target, WhiteoutStyle::kApply, "");
    ASSERT_TRUE(lower.ok()) << lower.status();
  }
  const auto before = Outside(tmp);
  struct stat passwd_before;
  ASSERT_EQ(stat("/etc/passwd", &passwd_before), 0);

  WriteFile(blobs.Sub("layer.tar"), BuildTar(c.layer));
  auto result = ExtractLayer(blobs.Sub("layer.tar"), target, c.style, "");
  ASSERT_FALSE(result.ok()) << c.label;
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument) << result.status();

  EXPECT_EQ(Outside(tmp), before);
  EXPECT_FALSE(std::filesystem::exists("/x"));
  EXPECT_FALSE(std::filesystem::exists("/etc/x"));
  EXPECT_FALSE(std::filesystem::exists("/strata-evil"));
  struct stat passwd_after;
  ASSERT_EQ(stat("/etc/passwd", &passwd_after), 0);
  EXPECT_EQ(passwd_after.st_nlink, passwd_before.st_nlink);
  // The failed target stays removable.
  EXPECT_TRUE(RemoveTree(target).ok());
  EXPECT_FALSE(std::filesystem::exists(target));
}

// A symlink to the sentinel directory by absolute path, resolved per test at run time.
TarEntry SymlinkToSentinel(const std::string& name) {
  TarEntry e = Symlink(name, "../sentinel");
  return e;
}

std::vector<HostileCase> Cases() {
  std::vector<HostileCase> cases;
  cases.push_back({"dotdot", {}, {File("../x", "evil")}});
  cases.push_back({"absolute", {}, {File("/etc/x", "evil")}});
  cases.push_back({"dotdot_inside", {}, {Dir("a"), File("a/../../x", "evil")}});
  cases.push_back({"dotdot_dir", {}, {Dir("../sentinel/newdir")}});
  cases.push_back({"symlink_root_then_write", {}, {Symlink("evil", "/"), File("evil/x", "evil")}});
  cases.push_back({"symlink_root_then_dir", {}, {Symlink("evil", "/"), Dir("evil/strata-evil")}});
  cases.push_back({"symlink_dotdot_then_write", {}, {Symlink("up", ".."), File("up/x", "evil")}});
  cases.push_back({"symlink_sentinel_then_overwrite",
                   {},
                   {SymlinkToSentinel("s"), File("s/file", "overwritten")}});
  cases.push_back(
      {"symlink_in_lower_then_write", {SymlinkToSentinel("s")}, {File("s/file", "overwritten")}});
  cases.push_back({"symlink_deep_parent",
                   {},
                   {Dir("a"), Symlink("a/b", "../../sentinel"), File("a/b/c/new", "x")}});
  cases.push_back({"hardlink_absolute", {}, {Hardlink("pw", "/etc/passwd")}});
  cases.push_back({"hardlink_dotdot", {}, {Hardlink("out", "../x")}});
  cases.push_back(
      {"hardlink_through_symlink", {}, {Symlink("etc", "/etc"), Hardlink("pw", "etc/passwd")}});
  cases.push_back({"hardlink_to_directory", {}, {Dir("d"), Hardlink("dl", "d")}});
  cases.push_back({"hardlink_missing", {}, {Hardlink("h", "nothing-here")}});
  cases.push_back({"whiteout_dotdot_name", {}, {File("../.wh.x", "")}});
  cases.push_back({"whiteout_of_dotdot", {{Dir("a")}}, {File("a/.wh...", "")}});
  cases.push_back({"whiteout_of_dot", {{Dir("a")}}, {File("a/.wh..", "")}});
  cases.push_back({"whiteout_empty", {}, {File(".wh.", "")}});
  cases.push_back({"whiteout_through_symlink", {SymlinkToSentinel("s")}, {File("s/.wh.file", "")}});
  cases.push_back(
      {"opaque_through_symlink", {SymlinkToSentinel("s")}, {File("s/.wh..wh..opq", "")}});
  cases.push_back({"overlay_whiteout_dotdot", {}, {File("a/.wh...", "")}, WhiteoutStyle::kOverlay});
  cases.push_back({"overlay_whiteout_through_symlink",
                   {},
                   {SymlinkToSentinel("s"), File("s/.wh.file", "")},
                   WhiteoutStyle::kOverlay});
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Hostile, HostileTarTest, ::testing::ValuesIn(Cases()),
                         [](const ::testing::TestParamInfo<HostileCase>& info) {
                           return info.param.label;
                         });

TEST(SplitRelativePathTest, NormalisesAndRejects) {
  auto ok = SplitRelativePath("./a//b/./c/");
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(*ok, (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_TRUE(SplitRelativePath("./")->empty());
  EXPECT_TRUE(SplitRelativePath(".wh...")->size() == 1);  // a name, judged by the caller
  for (const std::string& bad : std::vector<std::string>{"", "/etc/x", "../x", "a/../../x", "a/..",
                                                         std::string("a\0b", 3)}) {
    EXPECT_EQ(SplitRelativePath(bad).status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

TEST(HostileArchiveTest, UnpackArchiveTarRejectsDevicesAndEscapes) {
  TempDir tmp;
  MakeDirs(tmp.Sub("target"));
  TarEntry dev;
  dev.name = "null";
  dev.type = 'c';
  dev.dev_major = 1;
  dev.dev_minor = 3;
  for (const auto& entries : std::vector<std::vector<TarEntry>>{
           {dev}, {File("../x", "evil")}, {Symlink("evil", "/"), File("evil/x", "e")}}) {
    WriteFile(tmp.Sub("a.tar"), BuildTar(entries));
    absl::Status status = UnpackArchiveTar(tmp.Sub("a.tar"), tmp.Sub("target"));
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  }
  EXPECT_FALSE(std::filesystem::exists(tmp.Sub("x")));
  EXPECT_FALSE(std::filesystem::exists("/x"));
}

}  // namespace
}  // namespace strata::images
