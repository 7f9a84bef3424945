// ExtractLayer features that need root: owners, devices, trusted.* xattrs, overlay whiteouts
// (checked through a real overlay mount).

#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <map>
#include <string>

#include "gtest/gtest.h"
#include "node/images/layer_tar.h"
#include "tests/images/test_util.h"

namespace strata::images {
namespace {

using drivers::WhiteoutStyle;
using namespace imgtest;  // NOLINT: test helpers

class LayerTarRootTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root";
  }
  void TearDown() override {
    if (!mounted_.empty()) umount2(mounted_.c_str(), MNT_DETACH);
  }
  absl::StatusOr<ExtractResult> Extract(const std::vector<TarEntry>& entries,
                                        const std::string& dir, WhiteoutStyle style) {
    MakeDirs(dir);
    WriteFile(tmp_.Sub("layer.tar"), BuildTar(entries));
    return ExtractLayer(tmp_.Sub("layer.tar"), dir, style, "");
  }
  TempDir tmp_;
  std::string mounted_;
};

TarEntry Owned(TarEntry e, int64_t uid, int64_t gid) {
  e.uid = uid;
  e.gid = gid;
  return e;
}

TarEntry Node(const std::string& name, char type, unsigned major, unsigned minor, mode_t mode) {
  TarEntry e;
  e.name = name;
  e.type = type;
  e.dev_major = major;
  e.dev_minor = minor;
  e.mode = mode;
  return e;
}

TEST_F(LayerTarRootTest, OwnersDevicesAndTrustedXattrs) {
  TarEntry secret = Owned(File("home/user/secret", "s", 0600), 1000, 1000);
  secret.xattrs = {{"trusted.strata", "t"}, {"user.note", "n"}};
  std::vector<TarEntry> entries = {
      Owned(Dir("home", 0755), 0, 0),
      Owned(Dir("home/user", 0750), 1000, 1000),
      secret,
      Owned(File("usr/bin/su", "su", 04755), 0, 0),
      Owned(File("usr/bin/wall", "wall", 02755), 0, 5),
      Owned(File("usr/bin/ping", "ping", 04711), 1234, 5678),  // setuid survives the chown
      Owned(Symlink("home/user/link", "secret"), 1000, 1001),
      Owned(Node("dev/null", 'c', 1, 3, 0666), 0, 0),
      Owned(Node("dev/loop7", 'b', 7, 7, 0660), 0, 6),
      Owned(Node("run/fifo", 'p', 0, 0, 0640), 33, 33),
      Owned(Dir("tmp", 01777), 0, 0),
  };
  auto result = Extract(entries, tmp_.Sub("t"), WhiteoutStyle::kApply);
  ASSERT_TRUE(result.ok()) << result.status();
  auto tree = Snapshot(tmp_.Sub("t"));
  std::map<std::string, std::string> expected = {
      {"home", "d 0755 0:0"},
      {"home/user", "d 0750 1000:1000"},
      {"home/user/secret", "f 0600 1000:1000 s"},
      {"home/user/link", "l -> secret 1000:1001"},
      {"usr", "d 0755 0:0"},
      {"usr/bin", "d 0755 0:0"},
      {"usr/bin/su", "f 4755 0:0 su"},
      {"usr/bin/wall", "f 2755 0:5 wall"},
      {"usr/bin/ping", "f 4711 1234:5678 ping"},
      {"dev", "d 0755 0:0"},
      {"dev/null", "c 0666 0:0 1:3"},
      {"dev/loop7", "b 0660 0:6 7:7"},
      {"run", "d 0755 0:0"},
      {"run/fifo", "p 0640 33:33"},
      {"tmp", "d 1777 0:0"},
  };
  EXPECT_EQ(tree, expected);
  char value[8];
  ASSERT_EQ(getxattr(tmp_.Sub("t/home/user/secret").c_str(), "trusted.strata", value, 8), 1);
  EXPECT_EQ(value[0], 't');
  ASSERT_EQ(getxattr(tmp_.Sub("t/home/user/secret").c_str(), "user.note", value, 8), 1);
}

TEST_F(LayerTarRootTest, OverlayWhiteoutsMatchApplyThroughARealOverlayMount) {
  const std::vector<TarEntry> lower = {
      Dir("etc"),         File("etc/a", "a"),    File("etc/old", "o"),   Dir("opq"),
      File("opq/x", "x"), Dir("opq/sub"),        File("opq/sub/y", "y"), File("gone", "g"),
      Dir("gonedir"),     File("gonedir/z", "z")};
  const std::vector<TarEntry> upper = {File("etc/.wh.old", ""), File(".wh.gone", ""),
                                       File(".wh.gonedir", ""), File("opq/.wh..wh..opq", ""),
                                       File("opq/new", "n"),    File(".wh..wh.plnk", ""),
                                       File("etc/a", "a2")};

  // kOverlay: the upper layer as a diff.
  auto diff = Extract(upper, tmp_.Sub("diff"), WhiteoutStyle::kOverlay);
  ASSERT_TRUE(diff.ok()) << diff.status();
  auto diff_tree = Snapshot(tmp_.Sub("diff"));
  std::map<std::string, std::string> expected_diff = {
      {"etc", "d 0755 0:0"},      {"etc/old", "c 0000 0:0 0:0"}, {"etc/a", "f 0644 0:0 a2"},
      {"gone", "c 0000 0:0 0:0"}, {"gonedir", "c 0000 0:0 0:0"}, {"opq", "d 0755 0:0"},
      {"opq/new", "f 0644 0:0 n"}};
  EXPECT_EQ(diff_tree, expected_diff);
  char value[4];
  ASSERT_EQ(getxattr(tmp_.Sub("diff/opq").c_str(), "trusted.overlay.opaque", value, 4), 1);
  EXPECT_EQ(value[0], 'y');

  // kApply: both layers applied to one tree.
  ASSERT_TRUE(Extract(lower, tmp_.Sub("lower"), WhiteoutStyle::kApply).ok());
  ASSERT_TRUE(Extract(lower, tmp_.Sub("full"), WhiteoutStyle::kApply).ok());
  ASSERT_TRUE(Extract(upper, tmp_.Sub("full"), WhiteoutStyle::kApply).ok());

  // The kernel's view of diff over lower must equal the applied tree.
  MakeDirs(tmp_.Sub("merged"));
  const std::string options = "lowerdir=" + tmp_.Sub("diff") + ":" + tmp_.Sub("lower");
  ASSERT_EQ(mount("overlay", tmp_.Sub("merged").c_str(), "overlay", MS_RDONLY, options.c_str()),
            0)
      << strerror(errno);
  mounted_ = tmp_.Sub("merged");
  EXPECT_EQ(Snapshot(tmp_.Sub("merged")), Snapshot(tmp_.Sub("full")));
  std::map<std::string, std::string> expected_full = {{"etc", "d 0755 0:0"},
                                                      {"etc/a", "f 0644 0:0 a2"},
                                                      {"opq", "d 0755 0:0"},
                                                      {"opq/new", "f 0644 0:0 n"}};
  EXPECT_EQ(Snapshot(tmp_.Sub("full")), expected_full);
}

}  // namespace
}  // namespace strata::images
