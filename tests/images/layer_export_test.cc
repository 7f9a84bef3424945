// Layer export without root: ExportTreeDiff -> ExtractLayer(kApply) round trips, determinism,
// the tar's shape, and failures that leave nothing behind.

#include "node/images/layer_export.h"

#include <archive.h>
#include <archive_entry.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "node/images/layer_tar.h"
#include "tests/images/test_util.h"
#include "tests/images/tree_test_util.h"

namespace strata::images {
namespace {

using drivers::WhiteoutStyle;
using imgtest::MakeDirs;
using imgtest::TempDir;
using imgtest::WriteFile;
using treetest::CopyAll;
using treetest::FullSnapshot;
using treetest::SetMtime;
using treetest::SetXattr;
using treetest::SnapshotDiff;

// The names in a tar, in order; hardlinks as "name => target", symlinks "name -> target".
std::vector<std::string> TarNames(const std::string& path) {
  std::vector<std::string> out;
  archive* a = archive_read_new();
  archive_read_support_format_tar(a);
  EXPECT_EQ(archive_read_open_filename(a, path.c_str(), 1 << 16), ARCHIVE_OK);
  archive_entry* e;
  while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
    std::string name = archive_entry_pathname(e);
    if (archive_entry_hardlink(e) != nullptr)
      name += std::string(" => ") + archive_entry_hardlink(e);
    out.push_back(name);
  }
  archive_read_free(a);
  return out;
}

std::vector<std::string> DirNames(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) out.push_back(e.path().filename());
  std::sort(out.begin(), out.end());
  return out;
}

// A tree with every kind of entry a layer can hold without root.
void BuildBase(const std::string& root) {
  MakeDirs(root + "/etc/conf.d");
  MakeDirs(root + "/usr/bin");
  MakeDirs(root + "/var/cache/big");
  MakeDirs(root + "/opt/app");
  WriteFile(root + "/etc/passwd", "root:x:0:0\n");
  WriteFile(root + "/etc/conf.d/a.conf", "a=1\n");
  WriteFile(root + "/usr/bin/tool", "#!/bin/sh\necho hi\n");
  ASSERT_EQ(chmod((root + "/usr/bin/tool").c_str(), 04755), 0);
  ASSERT_EQ(symlink("tool", (root + "/usr/bin/tool-link").c_str()), 0);
  ASSERT_EQ(link((root + "/usr/bin/tool").c_str(), (root + "/usr/bin/tool-hard").c_str()), 0);
  ASSERT_EQ(mkfifo((root + "/opt/app/fifo").c_str(), 0640), 0);
  WriteFile(root + "/var/cache/big/blob", std::string(300000, 'z'));
  WriteFile(root + "/opt/app/data", "data");
  WriteFile(root + "/opt/app/unchanged-linked", "shared");
  SetXattr(root + "/opt/app/data", "user.mime", "text/plain");
  ASSERT_EQ(chmod((root + "/opt/app").c_str(), 01777), 0);
  WriteFile(root + "/" + std::string(120, 'L'), "long name");
  WriteFile(root + "/caf\xc3\xa9", "utf-8 name");
  int n = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(root)) {
    // Distinct times per entry (the argument order of n++ and n was unsequenced).
    SetMtime(e.path(), 1600000000 + n, 101 + n);
    ++n;
  }
  SetMtime(root + "/opt/app", 1600000500, 999999999);
}

// What a container might do on top of it.
void Mutate(const std::string& root) {
  std::filesystem::remove_all(root + "/var/cache/big");              // dir deleted
  ASSERT_EQ(unlink((root + "/etc/conf.d/a.conf").c_str()), 0);       // file deleted
  WriteFile(root + "/etc/passwd", "root:x:0:0\napp:x:1000:1000\n");  // changed
  ASSERT_EQ(chmod((root + "/usr/bin/tool-link").c_str(), 0755), 0);  // follows: tool 0755
  MakeDirs(root + "/srv/www/html");                                  // added subtree
  WriteFile(root + "/srv/www/html/index.html", "<h1>hi</h1>");
  ASSERT_EQ(link((root + "/opt/app/unchanged-linked").c_str(),  // new link to an
                 (root + "/srv/linked-again").c_str()),
            0);                                            // unchanged file
  ASSERT_EQ(unlink((root + "/opt/app/data").c_str()), 0);  // file -> dir
  MakeDirs(root + "/opt/app/data");
  WriteFile(root + "/opt/app/data/inner", "inner");
  SetXattr(root + "/etc/passwd", "user.changed", "yes");
  SetMtime(root + "/srv", 1700000000, 5);
}

TEST(LayerExportTest, TreeDiffRoundTripsOntoTheLowerTree) {
  TempDir tmp;
  const std::string lower = tmp.Sub("lower"), upper = tmp.Sub("upper"), work = tmp.Sub("work");
  MakeDirs(lower);
  BuildBase(lower);
  CopyAll(lower, upper);
  Mutate(upper);

  auto exported = ExportTreeDiff(lower, upper, tmp.Sub("layer.tar"));
  ASSERT_TRUE(exported.ok()) << exported.status();
  EXPECT_EQ(exported->diff_id, imgtest::Sha256SumFile(tmp.Sub("layer.tar")));
  EXPECT_EQ(exported->size, static_cast<int64_t>(std::filesystem::file_size(tmp.Sub("layer.tar"))));

  CopyAll(lower, work);
  auto extracted =
      ExtractLayer(tmp.Sub("layer.tar"), work, WhiteoutStyle::kApply, exported->diff_id);
  ASSERT_TRUE(extracted.ok()) << extracted.status();
  EXPECT_EQ(extracted->entries, exported->entries);
  EXPECT_EQ(SnapshotDiff(FullSnapshot(upper), FullSnapshot(work)), "");

  // The layer holds the changes only: whiteouts for deletions, no unchanged files, and the
  // unchanged file that gained a link comes along with it.
  std::vector<std::string> names = TarNames(tmp.Sub("layer.tar"));
  auto has = [&](const std::string& n) {
    return std::find(names.begin(), names.end(), n) != names.end();
  };
  EXPECT_TRUE(has("etc/conf.d/.wh.a.conf"));
  EXPECT_TRUE(has("var/cache/.wh.big"));
  EXPECT_FALSE(has("var/cache/big/blob"));
  EXPECT_FALSE(has("caf\xc3\xa9"));
  EXPECT_TRUE(has("opt/app/unchanged-linked"));
  EXPECT_TRUE(has("srv/linked-again => opt/app/unchanged-linked"));
  EXPECT_TRUE(has("usr/bin/tool-hard => usr/bin/tool"));
}

TEST(LayerExportTest, BaseLayerIsTheWholeTree) {
  TempDir tmp;
  const std::string tree = tmp.Sub("tree"), out = tmp.Sub("out");
  MakeDirs(tree);
  MakeDirs(out);
  BuildBase(tree);
  auto exported = ExportTreeDiff("", tree, tmp.Sub("base.tar"));
  ASSERT_TRUE(exported.ok()) << exported.status();
  ASSERT_TRUE(
      ExtractLayer(tmp.Sub("base.tar"), out, WhiteoutStyle::kApply, exported->diff_id).ok());
  EXPECT_EQ(SnapshotDiff(FullSnapshot(tree), FullSnapshot(out)), "");
  // Parents come before their children; no root entry.
  std::vector<std::string> names = TarNames(tmp.Sub("base.tar"));
  ASSERT_FALSE(names.empty());
  EXPECT_NE(names[0], "./");
  auto index = [&](const std::string& n) {
    return std::find(names.begin(), names.end(), n) - names.begin();
  };
  EXPECT_LT(index("etc/"), index("etc/conf.d/"));
  EXPECT_LT(index("etc/conf.d/"), index("etc/conf.d/a.conf"));
}

TEST(LayerExportTest, SameContentGivesTheSameDiffId) {
  TempDir tmp;
  const std::string a = tmp.Sub("a"), b = tmp.Sub("b");
  MakeDirs(a);
  BuildBase(a);
  CopyAll(a, b);  // other inodes, other directory order on disk
  auto first = ExportTreeDiff("", a, tmp.Sub("1.tar"));
  auto second = ExportTreeDiff("", a, tmp.Sub("2.tar"));
  auto copy = ExportTreeDiff("", b, tmp.Sub("3.tar"));
  ASSERT_TRUE(first.ok() && second.ok() && copy.ok());
  EXPECT_EQ(first->diff_id, second->diff_id);
  EXPECT_EQ(first->diff_id, copy->diff_id);
  EXPECT_EQ(imgtest::ReadFile(tmp.Sub("1.tar")), imgtest::ReadFile(tmp.Sub("3.tar")));
  // A changed mtime is a different layer.
  SetMtime(b + "/etc/passwd", 1, 1);
  auto touched = ExportTreeDiff("", b, tmp.Sub("4.tar"));
  ASSERT_TRUE(touched.ok());
  EXPECT_NE(first->diff_id, touched->diff_id);
}

TEST(LayerExportTest, NothingChangedIsAnEmptyTar) {
  TempDir tmp;
  MakeDirs(tmp.Sub("a"));
  BuildBase(tmp.Sub("a"));
  CopyAll(tmp.Sub("a"), tmp.Sub("b"));
  auto exported = ExportTreeDiff(tmp.Sub("a"), tmp.Sub("b"), tmp.Sub("empty.tar"));
  ASSERT_TRUE(exported.ok()) << exported.status();
  EXPECT_EQ(exported->entries, 0);
  EXPECT_EQ(exported->size, 1024);  // the two end-of-archive blocks
}

TEST(LayerExportTest, FailuresLeaveNothing) {
  TempDir tmp;
  MakeDirs(tmp.Sub("out"));
  EXPECT_EQ(ExportTreeDiff("", tmp.Sub("missing"), tmp.Sub("out/x.tar")).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(ExportOverlayLayer(tmp.Sub("missing"), tmp.Sub("out/y.tar")).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_FALSE(ExportTreeDiff("", tmp.path(), tmp.Sub("no/such/dir.tar")).ok());
  EXPECT_TRUE(DirNames(tmp.Sub("out")).empty());
}

}  // namespace
}  // namespace strata::images
