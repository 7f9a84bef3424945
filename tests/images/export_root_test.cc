// Layer export and image writing with root: a genuine overlay upper dir (written through a real
// overlay mount) exported and extracted in both whiteout styles and compared with what overlay
// itself shows; owners, devices and trusted.* xattrs in tree diffs; mounts not crossed; and
// skopeo/umoci reading what WriteImage writes. Every test skips without root.

#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "node/images/image_archive.h"
#include "node/images/image_writer.h"
#include "node/images/layer_export.h"
#include "node/images/layer_tar.h"
#include "node/images/tree_diff.h"
#include "tests/images/test_util.h"
#include "tests/images/tree_test_util.h"

namespace strata::images {
namespace {

using drivers::WhiteoutStyle;
using imgtest::MakeDirs;
using imgtest::RunCommand;
using imgtest::TempDir;
using imgtest::WriteFile;
using treetest::CopyAll;
using treetest::FullSnapshot;
using treetest::SetMtime;
using treetest::SetXattr;
using treetest::SnapshotDiff;

std::string Q(const std::string& s) { return "'" + s + "'"; }

std::string Render(const std::vector<TreeChange>& changes) {
  std::string out;
  for (const TreeChange& c : changes) {
    out += std::string(1, TreeChangeLetter(c.kind)) + " " + c.path + "\n";
  }
  return out;
}

class ExportRootTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (mount, mknod, chown, trusted.* xattrs)";
    lower_ = tmp_.Sub("lower");
    MakeDirs(lower_);
    BuildLower(lower_);
  }
  void TearDown() override {
    for (auto it = mounts_.rbegin(); it != mounts_.rend(); ++it) umount2(it->c_str(), MNT_DETACH);
  }

  void Mount(const std::string& target, const std::string& options, unsigned long flags = 0) {
    MakeDirs(target);
    ASSERT_EQ(mount("overlay", target.c_str(), "overlay", flags, options.c_str()), 0)
        << options << ": " << strerror(errno);
    mounts_.push_back(target);
  }
  void Unmount(const std::string& target) {
    ASSERT_EQ(umount2(target.c_str(), 0), 0) << target;
    mounts_.erase(std::find(mounts_.begin(), mounts_.end(), target));
  }

  static void BuildLower(const std::string& root) {
    MakeDirs(root + "/etc");
    MakeDirs(root + "/var/lib/db");
    MakeDirs(root + "/opt/app/sub");
    MakeDirs(root + "/usr/bin");
    MakeDirs(root + "/dev");
    WriteFile(root + "/etc/passwd", "root:x:0:0\n");
    WriteFile(root + "/etc/old", "old");
    WriteFile(root + "/etc/owned", "owned");
    ASSERT_EQ(chown((root + "/etc/owned").c_str(), 1000, 1000), 0);
    WriteFile(root + "/var/lib/db/data", "db");
    WriteFile(root + "/opt/app/sub/f", "f");
    WriteFile(root + "/opt/app/g", "g");
    WriteFile(root + "/usr/bin/x", "x");
    ASSERT_EQ(link((root + "/usr/bin/x").c_str(), (root + "/usr/bin/y").c_str()), 0);
    ASSERT_EQ(mknod((root + "/dev/null").c_str(), S_IFCHR | 0666, makedev(1, 3)), 0);
    ASSERT_EQ(mknod((root + "/dev/loop9").c_str(), S_IFBLK | 0660, makedev(7, 9)), 0);
    SetXattr(root + "/usr/bin/x", "security.capability",
             std::string("\x01\x00\x00\x02\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
                         "\x00\x00\x00\x00",
                         20));
    SetXattr(root + "/etc/passwd", "trusted.strata", "t");
    ASSERT_EQ(chown((root + "/var/lib").c_str(), 5, 5), 0);
    for (const auto& e : std::filesystem::recursive_directory_iterator(root)) {
      SetMtime(e.path(), 1600000000, 42);
    }
  }

  // Writes through a real overlay mount on lower_, so upper_ is a genuine overlay layer.
  void WriteUpperThroughOverlay() {
    upper_ = tmp_.Sub("upper");
    MakeDirs(upper_);
    MakeDirs(tmp_.Sub("work"));
    const std::string m = tmp_.Sub("m");
    Mount(m, "lowerdir=" + lower_ + ",upperdir=" + upper_ + ",workdir=" + tmp_.Sub("work") +
                 ",index=off");
    ASSERT_EQ(unlink((m + "/etc/old").c_str()), 0);  // whiteout
    std::filesystem::remove_all(m + "/var/lib/db");  // whiteout of a directory
    std::filesystem::remove_all(m + "/opt/app");     // then recreated: opaque
    MakeDirs(m + "/opt/app");
    WriteFile(m + "/opt/app/new", "new");
    WriteFile(m + "/etc/passwd", "root:x:0:0\napp:x:1000:1000\n");  // copy-up keeps xattrs
    ASSERT_EQ(chown((m + "/etc/owned").c_str(), 2000, 2001), 0);    // metadata copy-up
    ASSERT_EQ(chmod((m + "/usr").c_str(), 0700), 0);
    MakeDirs(m + "/srv");
    WriteFile(m + "/srv/a", "linked");
    ASSERT_EQ(link((m + "/srv/a").c_str(), (m + "/srv/b").c_str()), 0);
    ASSERT_EQ(mkfifo((m + "/srv/fifo").c_str(), 0600), 0);
    ASSERT_EQ(mknod((m + "/srv/zero").c_str(), S_IFCHR | 0666, makedev(1, 5)), 0);
    ASSERT_EQ(symlink("/etc/passwd", (m + "/srv/pw").c_str()), 0);
    SetXattr(m + "/srv/a", "trusted.app", "1");
    SetXattr(m + "/srv", "user.dir", "d");
    ASSERT_EQ(lchown((m + "/srv/pw").c_str(), 7, 8), 0);
    SetMtime(m + "/srv/a", 1650000000, 123);
    Unmount(m);
  }

  // What overlay shows for `layers` ("top:...:bottom"), read-only.
  std::map<std::string, std::string> OverlayView(const std::string& layers) {
    const std::string v = tmp_.Sub("view" + std::to_string(views_++));
    Mount(v, "lowerdir=" + layers, MS_RDONLY);
    auto snapshot = FullSnapshot(v);
    Unmount(v);
    return snapshot;
  }

  TempDir tmp_;
  std::string lower_, upper_;
  std::vector<std::string> mounts_;
  int views_ = 0;
};

TEST_F(ExportRootTest, OverlayLayerRoundTripsInBothStyles) {
  WriteUpperThroughOverlay();
  const auto expected = OverlayView(upper_ + ":" + lower_);

  auto exported = ExportOverlayLayer(upper_, tmp_.Sub("layer.tar"));
  ASSERT_TRUE(exported.ok()) << exported.status();
  auto again = ExportOverlayLayer(upper_, tmp_.Sub("again.tar"));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(exported->diff_id, again->diff_id);

  // kApply onto a copy of the parent: the child's full tree.
  const std::string full = tmp_.Sub("full");
  CopyAll(lower_, full);
  auto applied =
      ExtractLayer(tmp_.Sub("layer.tar"), full, WhiteoutStyle::kApply, exported->diff_id);
  ASSERT_TRUE(applied.ok()) << applied.status();
  EXPECT_EQ(SnapshotDiff(expected, FullSnapshot(full)), "");

  // kOverlay into an empty layer: the same diff as the original upper, and overlay shows the
  // same tree on top of the parent.
  const std::string diff = tmp_.Sub("diff");
  MakeDirs(diff);
  auto extracted =
      ExtractLayer(tmp_.Sub("layer.tar"), diff, WhiteoutStyle::kOverlay, exported->diff_id);
  ASSERT_TRUE(extracted.ok()) << extracted.status();
  EXPECT_EQ(SnapshotDiff(FullSnapshot(upper_), FullSnapshot(diff)), "");
  EXPECT_EQ(SnapshotDiff(expected, OverlayView(diff + ":" + lower_)), "");
  // And a layer re-exported from there is the same layer.
  auto reexported = ExportOverlayLayer(diff, tmp_.Sub("re.tar"));
  ASSERT_TRUE(reexported.ok());
  EXPECT_EQ(reexported->diff_id, exported->diff_id);
}

TEST_F(ExportRootTest, DiffOverlayLayerWithAndWithoutTheLower) {
  WriteUpperThroughOverlay();
  auto with_lower = DiffOverlayLayer(upper_, lower_);
  ASSERT_TRUE(with_lower.ok()) << with_lower.status();
  EXPECT_EQ(Render(*with_lower),
            "C /etc\n"
            "D /etc/old\n"
            "C /etc/owned\n"
            "C /etc/passwd\n"
            "C /opt\n"
            "C /opt/app\n"
            "A /opt/app/new\n"
            "A /srv\n"
            "A /srv/a\n"
            "A /srv/b\n"
            "A /srv/fifo\n"
            "A /srv/pw\n"
            "A /srv/zero\n"
            "C /usr\n"
            "C /var\n"
            "C /var/lib\n"
            "D /var/lib/db\n");
  auto without = DiffOverlayLayer(upper_);
  ASSERT_TRUE(without.ok()) << without.status();
  // Without the lower, files are A and directories C (the new /srv too).
  EXPECT_EQ(Render(*without),
            "C /etc\n"
            "D /etc/old\n"
            "A /etc/owned\n"
            "A /etc/passwd\n"
            "C /opt\n"
            "C /opt/app\n"
            "A /opt/app/new\n"
            "C /srv\n"
            "A /srv/a\n"
            "A /srv/b\n"
            "A /srv/fifo\n"
            "A /srv/pw\n"
            "A /srv/zero\n"
            "C /usr\n"
            "C /var\n"
            "C /var/lib\n"
            "D /var/lib/db\n");
}

TEST_F(ExportRootTest, TreeDiffKeepsOwnersDevicesAndTrustedXattrs) {
  const std::string upper = tmp_.Sub("upper-full");
  CopyAll(lower_, upper);
  ASSERT_EQ(chown((upper + "/etc/owned").c_str(), 3000, 3001), 0);
  ASSERT_EQ(unlink((upper + "/dev/null").c_str()), 0);
  ASSERT_EQ(mknod((upper + "/dev/null").c_str(), S_IFCHR | 0666, makedev(1, 7)), 0);
  SetXattr(upper + "/etc/passwd", "trusted.strata", "changed");
  SetMtime(upper + "/dev/null", 1600000000, 42);
  SetMtime(upper + "/dev", 1600000000, 42);
  SetMtime(upper + "/etc/passwd", 1600000000, 42);
  std::filesystem::remove_all(upper + "/var/lib/db");
  auto changes = DiffTrees(lower_, upper);
  ASSERT_TRUE(changes.ok());
  EXPECT_EQ(Render(*changes),
            "C /dev/null\nC /etc/owned\nC /etc/passwd\nC /var/lib\nD /var/lib/db\n");

  auto exported = ExportTreeDiff(lower_, upper, tmp_.Sub("l.tar"));
  ASSERT_TRUE(exported.ok()) << exported.status();
  const std::string work = tmp_.Sub("work-apply");
  CopyAll(lower_, work);
  ASSERT_TRUE(ExtractLayer(tmp_.Sub("l.tar"), work, WhiteoutStyle::kApply, exported->diff_id).ok());
  EXPECT_EQ(SnapshotDiff(FullSnapshot(upper), FullSnapshot(work)), "");
  // The same tar as an overlay layer on the parent.
  const std::string diff = tmp_.Sub("diff");
  MakeDirs(diff);
  ASSERT_TRUE(
      ExtractLayer(tmp_.Sub("l.tar"), diff, WhiteoutStyle::kOverlay, exported->diff_id).ok());
  EXPECT_EQ(SnapshotDiff(FullSnapshot(upper), OverlayView(diff + ":" + lower_)), "");
}

TEST_F(ExportRootTest, MountsInsideATreeAreNotCrossed) {
  const std::string upper = tmp_.Sub("upper-full");
  CopyAll(lower_, upper);
  MakeDirs(upper + "/mnt");
  SetMtime(upper, 1600000000, 42);
  MakeDirs(tmp_.Sub("elsewhere"));
  WriteFile(tmp_.Sub("elsewhere/secret"), "not part of the tree");
  ASSERT_EQ(
      mount(tmp_.Sub("elsewhere").c_str(), (upper + "/mnt").c_str(), nullptr, MS_BIND, nullptr), 0);
  mounts_.push_back(upper + "/mnt");
  auto changes = DiffTrees(lower_, upper);
  ASSERT_TRUE(changes.ok());
  EXPECT_EQ(Render(*changes), "");
  auto exported = ExportTreeDiff("", upper, tmp_.Sub("base.tar"));
  ASSERT_TRUE(exported.ok());
  const std::string out = tmp_.Sub("out");
  MakeDirs(out);
  ASSERT_TRUE(ExtractLayer(tmp_.Sub("base.tar"), out, WhiteoutStyle::kApply, "").ok());
  EXPECT_FALSE(std::filesystem::exists(out + "/mnt"));
  EXPECT_EQ(SnapshotDiff(FullSnapshot(lower_), FullSnapshot(out)), "");
}

// skopeo and umoci accept what WriteImage writes, and umoci's rootfs is our tree.
TEST_F(ExportRootTest, SkopeoAndUmociReadWhatWeWrite) {
  WriteUpperThroughOverlay();
  const auto expected = OverlayView(upper_ + ":" + lower_);
  auto l0 = ExportTreeDiff("", lower_, tmp_.Sub("l0.tar"));
  auto l1 = ExportOverlayLayer(upper_, tmp_.Sub("l1.tar"));
  ASSERT_TRUE(l0.ok() && l1.ok());
  ImageToWrite image;
  image.references = {"example.com/strata/app:snap"};
  image.layers = {{tmp_.Sub("l0.tar"), l0->diff_id, 1600000000, "base"},
                  {tmp_.Sub("l1.tar"), l1->diff_id, 1700000000, "strata snapshot"}};
  const std::string save = tmp_.Sub("save.tar"), layout = tmp_.Sub("layout");
  ASSERT_TRUE(WriteImage(image, save, ImageFormat::kDockerSave).ok());
  ASSERT_TRUE(WriteImage(image, layout, ImageFormat::kOciLayout).ok());

  std::string inspect = RunCommand("skopeo inspect docker-archive:" + Q(save));
  EXPECT_NE(inspect.find(l1->diff_id), std::string::npos) << inspect;
  inspect = RunCommand("skopeo inspect oci:" + Q(layout + ":example.com/strata/app:snap"));
  EXPECT_NE(inspect.find(l1->diff_id), std::string::npos) << inspect;

  // docker-archive -> OCI (skopeo) -> rootfs (umoci).
  const std::string converted = tmp_.Sub("converted");
  RunCommand("skopeo copy docker-archive:" + Q(save) + " oci:" + Q(converted + ":t"));
  RunCommand("umoci unpack --image " + Q(converted + ":t") + " " + Q(tmp_.Sub("bundle1")));
  // Our OCI layout -> rootfs (umoci) directly.
  RunCommand("umoci unpack --image " + Q(layout + ":example.com/strata/app:snap") + " " +
             Q(tmp_.Sub("bundle2")));
  for (const char* bundle : {"bundle1", "bundle2"}) {
    EXPECT_EQ(SnapshotDiff(expected, FullSnapshot(tmp_.Sub(bundle) + "/rootfs")), "") << bundle;
  }

  // Our OCI layout -> docker-archive (skopeo) -> ImageArchive -> the same tree.
  const std::string back = tmp_.Sub("back.tar");
  RunCommand("skopeo copy oci:" + Q(layout + ":example.com/strata/app:snap") +
             " docker-archive:" + Q(back + ":example.com/strata/app:snap"));
  MakeDirs(tmp_.Sub("scratch"));
  auto archive = ImageArchive::Open(back, tmp_.Sub("scratch"));
  ASSERT_TRUE(archive.ok()) << archive.status();
  const std::string rootfs = tmp_.Sub("rootfs");
  MakeDirs(rootfs);
  for (const LayerBlob& layer : (*archive)->images()[0].layers) {
    ASSERT_TRUE(ExtractLayer(layer.path, rootfs, WhiteoutStyle::kApply, layer.diff_id).ok());
  }
  EXPECT_EQ(SnapshotDiff(expected, FullSnapshot(rootfs)), "");
}

}  // namespace
}  // namespace strata::images
