// ExtractLayer on tars built here with libarchive's writer (no root needed).

#include "node/images/layer_tar.h"

#include <sys/stat.h>
#include <sys/xattr.h>

#include <filesystem>
#include <map>
#include <string>

#include "gtest/gtest.h"
#include "node/images/safe_fs.h"
#include "tests/images/test_util.h"

namespace strata::images {
namespace {

using drivers::WhiteoutStyle;
using namespace imgtest;  // NOLINT: test helpers

class LayerTarTest : public ::testing::Test {
 protected:
  void SetUp() override { MakeDirs(target()); }
  std::string target() const { return tmp_.Sub("target"); }
  std::string WriteBlob(const std::string& bytes, const std::string& name = "layer.tar") {
    WriteFile(tmp_.Sub(name), bytes);
    return tmp_.Sub(name);
  }
  absl::StatusOr<ExtractResult> Extract(const std::vector<TarEntry>& entries,
                                        WhiteoutStyle style = WhiteoutStyle::kApply,
                                        const std::string& expected = "") {
    return ExtractLayer(WriteBlob(BuildTar(entries)), target(), style, expected);
  }
  TempDir tmp_;
};

TEST_F(LayerTarTest, PreservesFilesDirsLinksModesAndTimes) {
  TarEntry exec = File("bin/tool", "#!/bin/sh\n", 04755);
  exec.mtime = 1234567890;
  exec.mtime_nsec = 123456789;
  TarEntry dir = Dir("bin", 0750);
  dir.mtime = 1111111111;
  TarEntry sticky = Dir("tmp", 01777);
  TarEntry empty = File("empty", "", 0600);
  TarEntry fifo;
  fifo.name = "run/fifo";
  fifo.type = 'p';
  fifo.mode = 0620;
  std::vector<TarEntry> entries = {Dir("./", 0755),
                                   dir,
                                   exec,
                                   sticky,
                                   empty,
                                   Symlink("bin/sh", "/usr/bin/dash"),
                                   Symlink("rel", "bin/tool"),
                                   Hardlink("bin/tool2", "bin/tool"),
                                   fifo,
                                   File("./deep/a/b/c.txt", "deep")};
  auto result = Extract(entries);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->entries, static_cast<int64_t>(entries.size()));

  auto tree = Snapshot(target(), /*with_owner=*/false);
  std::map<std::string, std::string> expected = {
      {"bin", "d 0750"},
      {"bin/tool", "f 4755 #!/bin/sh\n"},
      {"bin/tool2", "f 4755 #!/bin/sh\n"},
      {"bin/sh", "l -> /usr/bin/dash"},
      {"rel", "l -> bin/tool"},
      {"tmp", "d 1777"},
      {"empty", "f 0600 "},
      {"run", "d 0755"},  // implicit parent
      {"run/fifo", "p 0620"},
      {"deep", "d 0755"},
      {"deep/a", "d 0755"},
      {"deep/a/b", "d 0755"},
      {"deep/a/b/c.txt", "f 0644 deep"},
  };
  EXPECT_EQ(tree, expected);

  struct stat a, b;
  ASSERT_EQ(stat((target() + "/bin/tool").c_str(), &a), 0);
  ASSERT_EQ(stat((target() + "/bin/tool2").c_str(), &b), 0);
  EXPECT_EQ(a.st_ino, b.st_ino);
  EXPECT_EQ(a.st_mtim.tv_sec, 1234567890);
  EXPECT_EQ(a.st_mtim.tv_nsec, 123456789);
  struct stat d;
  ASSERT_EQ(stat((target() + "/bin").c_str(), &d), 0);
  EXPECT_EQ(d.st_mtim.tv_sec, 1111111111);  // set after its children were written
  struct stat l;
  ASSERT_EQ(lstat((target() + "/rel").c_str(), &l), 0);
  EXPECT_EQ(l.st_mtim.tv_sec, 1500000000);
}

TEST_F(LayerTarTest, DiffIdIsTheSha256OfTheUncompressedTar) {
  std::vector<TarEntry> entries = {Dir("etc"), File("etc/hosts", "127.0.0.1 localhost\n")};
  const std::string tar = BuildTar(entries);
  const std::string diff_id = Sha256SumData(tar);
  for (const std::string tool : {"", "gzip", "zstd"}) {
    SCOPED_TRACE(tool);
    const std::string blob = tool.empty() ? tar : Compress(tar, tool);
    if (!tool.empty()) {
      EXPECT_NE(blob, tar);
    }
    ASSERT_TRUE(RemoveTree(target()).ok());
    MakeDirs(target());
    auto result = ExtractLayer(WriteBlob(blob), target(), WhiteoutStyle::kApply, diff_id);
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_EQ(result->diff_id, diff_id);
    EXPECT_EQ(result->uncompressed_bytes, static_cast<int64_t>(tar.size()));
    EXPECT_EQ(ReadFile(target() + "/etc/hosts"), "127.0.0.1 localhost\n");
  }
}

TEST_F(LayerTarTest, TrailingPaddingIsPartOfTheDiffId) {
  std::string tar = BuildTar({File("a", "x")});
  tar.append(10240, '\0');  // extra zero blocks after the end-of-archive marker
  auto result = ExtractLayer(WriteBlob(tar), target(), WhiteoutStyle::kApply, "");
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->diff_id, Sha256SumData(tar));
  EXPECT_EQ(result->uncompressed_bytes, static_cast<int64_t>(tar.size()));
}

TEST_F(LayerTarTest, DiffIdMismatchIsDataLoss) {
  auto result = Extract({File("a", "x")}, WhiteoutStyle::kApply, Sha256SumData("other"));
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kDataLoss) << result.status();
  EXPECT_TRUE(RemoveTree(target()).ok());
  EXPECT_FALSE(std::filesystem::exists(target()));
}

TEST_F(LayerTarTest, CorruptCompressedStreamIsDataLoss) {
  std::string blob = Compress(BuildTar({File("a", std::string(100000, 'q'))}), "gzip");
  blob[blob.size() / 2] ^= 0x55;
  auto result = ExtractLayer(WriteBlob(blob), target(), WhiteoutStyle::kApply, "");
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kDataLoss) << result.status();
}

TEST_F(LayerTarTest, MissingBlobIsNotFound) {
  auto result = ExtractLayer(tmp_.Sub("nope.tar"), target(), WhiteoutStyle::kApply, "");
  EXPECT_EQ(result.status().code(), absl::StatusCode::kNotFound) << result.status();
}

TEST_F(LayerTarTest, UserXattrsAreKept) {
  TarEntry f = File("f", "data");
  f.xattrs = {{"user.color", "blue"}, {"user.bin", std::string("\0\1\2", 3)}};
  TarEntry d = Dir("d");
  d.xattrs = {{"user.dir", "yes"}};
  auto result = Extract({f, d});
  ASSERT_TRUE(result.ok()) << result.status();
  char value[16];
  ssize_t n = getxattr((target() + "/f").c_str(), "user.color", value, sizeof(value));
  ASSERT_EQ(n, 4);
  EXPECT_EQ(std::string(value, 4), "blue");
  n = getxattr((target() + "/f").c_str(), "user.bin", value, sizeof(value));
  ASSERT_EQ(n, 3);
  EXPECT_EQ(std::string(value, 3), std::string("\0\1\2", 3));
  n = getxattr((target() + "/d").c_str(), "user.dir", value, sizeof(value));
  ASSERT_EQ(n, 3);
}

TEST_F(LayerTarTest, SparseFileFromGnuTar) {
  TempDir src;
  const std::string path = src.Sub("sparse");
  RunCommand("truncate -s 8M '" + path + "' && printf middle | dd of='" + path +
             "' bs=1 seek=4194304 conv=notrunc status=none && printf end | dd of='" + path +
             "' bs=1 seek=8388605 conv=notrunc status=none");
  RunCommand("tar --sparse -C '" + src.path() + "' -cf '" + tmp_.Sub("sparse.tar") + "' sparse");
  auto result = ExtractLayer(tmp_.Sub("sparse.tar"), target(), WhiteoutStyle::kApply, "");
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(ReadFile(target() + "/sparse"), ReadFile(path));
  EXPECT_EQ(result->diff_id, Sha256SumFile(tmp_.Sub("sparse.tar")));
}

TEST_F(LayerTarTest, ExistingEntriesAreReplacedOrUpdated) {
  ASSERT_TRUE(Extract({Dir("d", 0700), File("d/keep", "1"), File("x", "old"), Dir("y"),
                       File("y/child", "c"), Symlink("s", "old-target")})
                  .ok());
  // Directory over directory: kept (children stay), metadata updated. File over file, dir over
  // file-less path, file over dir, symlink over symlink: replaced.
  auto result = Extract(
      {Dir("d", 0755), File("x", "new"), File("y", "now a file"), Symlink("s", "new-target")});
  ASSERT_TRUE(result.ok()) << result.status();
  auto tree = Snapshot(target(), false);
  std::map<std::string, std::string> expected = {{"d", "d 0755"},
                                                 {"d/keep", "f 0644 1"},
                                                 {"x", "f 0644 new"},
                                                 {"y", "f 0644 now a file"},
                                                 {"s", "l -> new-target"}};
  EXPECT_EQ(tree, expected);
}

TEST_F(LayerTarTest, ApplyStyleWhiteoutsAndOpaqueDirectories) {
  // Lower layer.
  ASSERT_TRUE(
      Extract({Dir("etc"), File("etc/a", "a"), File("etc/b", "b"), Dir("etc/sub"),
               File("etc/sub/c", "c"), Dir("opq"), File("opq/old1", "1"), Dir("opq/olddir"),
               File("opq/olddir/x", "x"), Dir("opq/keepdir"), File("opq/keepdir/lower", "l"),
               File("gone", "g"), Dir("gonedir"), File("gonedir/f", "f")})
          .ok());
  // Upper layer: delete etc/a, gone, gonedir (recursively); make opq opaque while writing
  // opq/new and opq/keepdir/upper (the entry comes before the marker on purpose).
  auto result =
      Extract({File("opq/new", "n"), File("opq/keepdir/upper", "u"), File(".wh.gone", ""),
               File("etc/.wh.a", ""), File(".wh.gonedir", ""), File("opq/.wh..wh..opq", ""),
               File(".wh..wh.plnk", ""), File("etc/.wh.never-existed", "")});
  ASSERT_TRUE(result.ok()) << result.status();
  auto tree = Snapshot(target(), false);
  std::map<std::string, std::string> expected = {
      {"etc", "d 0755"},         {"etc/b", "f 0644 b"},
      {"etc/sub", "d 0755"},     {"etc/sub/c", "f 0644 c"},
      {"opq", "d 0755"},         {"opq/new", "f 0644 n"},
      {"opq/keepdir", "d 0755"}, {"opq/keepdir/upper", "f 0644 u"},
  };
  EXPECT_EQ(tree, expected);
}

}  // namespace
}  // namespace strata::images
