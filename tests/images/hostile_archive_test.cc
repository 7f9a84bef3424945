// Hostile image archives (issue 9): JSON nested or sized to hurt, FIFOs in image folders,
// decompression bombs, sparse files claiming a terabyte, entry floods, overlay xattrs, and the
// errors they give. Each must fail with a clear, bounded InvalidArgument and leave nothing behind.

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <future>
#include <string>

#include "gtest/gtest.h"
#include "node/images/image_archive.h"
#include "node/images/image_writer.h"
#include "node/images/layer_tar.h"
#include "node/images/limits.h"
#include "tests/images/archive_builder.h"
#include "tests/images/test_util.h"

namespace strata::images {
namespace {

using drivers::WhiteoutStyle;
using namespace imgtest;  // NOLINT: test helpers

size_t Count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

class ArchiveBoundsTest : public ::testing::Test {
 protected:
  void SetUp() override { MakeDirs(scratch()); }
  std::string scratch() const { return tmp_.Sub("scratch"); }
  bool ScratchIsEmpty() const { return std::filesystem::is_empty(scratch()); }
  // A docker-save folder of one image with one small layer, with `config` as its config.
  std::string FolderWithConfig(const std::string& config, const std::string& name = "plain") {
    const std::string dir = tmp_.Sub(name);
    MakeDirs(dir);
    SaveImage image;
    image.layer_blobs = {BuildTar({File("a", "a")})};
    image.tags = {"example.com/app:1"};
    image.config = config;
    WriteTree(dir, DockerSaveFiles({image}));
    return dir;
  }

  TempDir tmp_;
};

// Case 3: a config nested a million deep is refused at import, before it is parsed or stored.
TEST_F(ArchiveBoundsTest, DeeplyNestedConfigIsRefused) {
  const std::string layer = BuildTar({File("a", "a")});
  const std::string config = R"({"rootfs":{"type":"layers","diff_ids":[")" + Sha256SumData(layer) +
                             R"("]},"x":)" + NestedArrays(1000000) + "}";
  const std::string dir = tmp_.Sub("image");
  MakeDirs(dir);
  SaveImage image;
  image.layer_blobs = {layer};
  image.config = config;
  WriteTree(dir, DockerSaveFiles({image}));
  auto start = std::chrono::steady_clock::now();
  auto archive = ImageArchive::Open(dir, scratch());
  ASSERT_FALSE(archive.ok());
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  EXPECT_EQ(archive.status().code(), absl::StatusCode::kInvalidArgument) << archive.status();
  const std::string message(archive.status().message());
  EXPECT_NE(message.find(Sha256SumData(config).substr(7) + ".json"), std::string::npos) << message;
  EXPECT_NE(message.find("--max-json-depth"), std::string::npos) << message;
  EXPECT_LT(message.size(), 1024u);
  EXPECT_TRUE(ScratchIsEmpty());

  // The same archive with a plain config opens.
  auto ok = ImageArchive::Open(FolderWithConfig(""), scratch());
  ASSERT_TRUE(ok.ok()) << ok.status();
}

TEST_F(ArchiveBoundsTest, JsonDepthBoundIsExactAndIgnoresBracketsInStrings) {
  EXPECT_TRUE(ParseBoundedJson(NestedArrays(64), 1 << 20, 64, "doc").ok());
  auto deep = ParseBoundedJson(NestedArrays(65), 1 << 20, 64, "doc");
  EXPECT_EQ(deep.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(ParseBoundedJson(R"(["[[[[[[\"[[[[["])", 1 << 20, 2, "doc").ok());
  EXPECT_EQ(ParseBoundedJson("[1,2,3]", 6, 64, "doc").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseBoundedJson("[1,", 100, 64, "doc").status().code(),
            absl::StatusCode::kInvalidArgument);
  // The manifest.json too, with a stricter bound from the caller.
  const std::string dir = FolderWithConfig("");
  ImportLimits strict;
  strict.max_json_depth = 1;  // manifest.json is [ { "RepoTags": [ ... ] } ]: depth 3
  auto archive = ImageArchive::Open(dir, scratch(), strict);
  ASSERT_FALSE(archive.ok());
  EXPECT_NE(archive.status().message().find("manifest.json"), std::string::npos)
      << archive.status();
}

// Numbers grow when rendered ("1e14" is 4 bytes, dump() prints "100000000000000.0"), so the
// estimate Inspect bounds a stored config's rendering by must count them (bounded_json_fuzz
// checks the same for any document).
TEST_F(ArchiveBoundsTest, PrettyEstimateBoundsRenderedNumbers) {
  for (const std::string text :
       {"[1e14,1E2,1e14]", "-1.2345678901234567e-308", "[18446744073709551616]",
        R"({"a":[0.5,-0,12345678901234567,1e15],"b":"1e14"})", "[1,2,3]", "1e14"}) {
    auto doc = ParseBoundedJson(text, 1 << 20, 64, "doc");
    ASSERT_TRUE(doc.ok()) << text;
    const std::string pretty = doc->dump(2);
    EXPECT_LE(static_cast<int64_t>(pretty.size()), ScanJson(text, 64).pretty_bytes)
        << text << " renders as " << pretty;
  }
  // Strings and short integers are not charged extra: the estimate stays close for real configs.
  EXPECT_EQ(ScanJson("[123]", 64).pretty_bytes, ScanJson(R"(["1"])", 64).pretty_bytes);
  EXPECT_EQ(ScanJson(R"(["1e14"])", 64).pretty_bytes, ScanJson(R"(["1234"])", 64).pretty_bytes);
  EXPECT_GT(ScanJson("[1e14]", 64).pretty_bytes, ScanJson("[1234]", 64).pretty_bytes);
}

// Found by bounded_json_fuzz: the parser stopped at a NUL byte and accepted what came before,
// so "2\0[Z[1]]]" was a valid document (and "{...}\0junk" a valid config).
TEST_F(ArchiveBoundsTest, NulByteMakesJsonInvalid) {
  EXPECT_TRUE(ParseBoundedJson(std::string("[\"\\u0000\"]"), 100, 64, "doc").ok());
  for (const std::string& text :
       {std::string("2\0[Z[1]]]", 9), std::string("{}\0", 3), std::string("[\"a\0b\"]", 7)}) {
    auto doc = ParseBoundedJson(text, 100, 64, "doc");
    EXPECT_EQ(doc.status().code(), absl::StatusCode::kInvalidArgument) << text.size();
  }
}

TEST_F(ArchiveBoundsTest, OversizedConfigIsRefused) {
  ImportLimits limits;
  limits.max_json_bytes = 4096;
  const std::string layer = BuildTar({File("a", "a")});
  std::string config = MinimalConfig({Sha256SumData(layer)});
  config.insert(config.size() - 1, ",\"pad\":\"" + std::string(8192, 'p') + "\"");
  const std::string dir = tmp_.Sub("image");
  MakeDirs(dir);
  SaveImage image;
  image.layer_blobs = {layer};
  image.config = config;
  WriteTree(dir, DockerSaveFiles({image}));
  auto archive = ImageArchive::Open(dir, scratch(), limits);
  ASSERT_FALSE(archive.ok());
  EXPECT_EQ(archive.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(archive.status().message().find("--max-json-bytes"), std::string::npos)
      << archive.status();
}

// Case 4: a FIFO where a layer (or manifest.json) should be is refused at once, never opened for
// reading (that would block until a writer came).
TEST_F(ArchiveBoundsTest, FifoInImageFolderIsRefusedWithoutBlocking) {
  for (const std::string victim : {"layer", "manifest.json"}) {
    SCOPED_TRACE(victim);
    const std::string dir = FolderWithConfig("");
    std::string path = dir + "/manifest.json";
    if (victim == "layer") path = dir + "/" + BlobName(BuildTar({File("a", "a")}));
    ASSERT_EQ(unlink(path.c_str()), 0);
    ASSERT_EQ(mkfifo(path.c_str(), 0600), 0);
    auto future =
        std::async(std::launch::async, [&] { return ImageArchive::Open(dir, scratch()); });
    if (future.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
      ADD_FAILURE() << "ImageArchive::Open blocked on a FIFO";
      int unblock = open(path.c_str(), O_WRONLY | O_NONBLOCK);  // lets the blocked open return
      if (unblock >= 0) close(unblock);
    }
    auto archive = future.get();
    ASSERT_FALSE(archive.ok());
    EXPECT_EQ(archive.status().code(), absl::StatusCode::kInvalidArgument) << archive.status();
    EXPECT_NE(archive.status().message().find("not a regular file"), std::string::npos)
        << archive.status();
    std::filesystem::remove_all(dir);
  }
  // A FIFO handed to the layer extractor directly is refused too.
  const std::string fifo = tmp_.Sub("layer.fifo");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  MakeDirs(tmp_.Sub("target"));
  auto future = std::async(std::launch::async, [&] {
    return ExtractLayer(fifo, tmp_.Sub("target"), WhiteoutStyle::kApply, "");
  });
  if (future.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
    ADD_FAILURE() << "ExtractLayer blocked on a FIFO";
    int unblock = open(fifo.c_str(), O_WRONLY | O_NONBLOCK);
    if (unblock >= 0) close(unblock);
  }
  EXPECT_EQ(future.get().status().code(), absl::StatusCode::kInvalidArgument);
}

// Case 8: a gzip layer that expands far beyond the bound stops at the bound.
TEST_F(ArchiveBoundsTest, DecompressionBombStopsAtTheLayerBound) {
  const std::string tar = BuildTar({File("zeros", std::string(64 << 20, '\0'))});
  const std::string gz = Compress(tar, "gzip");
  ASSERT_LT(gz.size(), 200u << 10);
  WriteFile(tmp_.Sub("bomb.tar.gz"), gz);
  const std::string target = tmp_.Sub("target");
  MakeDirs(target);
  ExtractOptions options;
  options.display_name = "bomb.tar.gz";
  options.max_bytes = 16 << 20;
  auto result = ExtractLayer(tmp_.Sub("bomb.tar.gz"), target, WhiteoutStyle::kApply, "", options);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument) << result.status();
  const std::string message(result.status().message());
  EXPECT_NE(message.find("--max-layer-bytes"), std::string::npos) << message;
  EXPECT_NE(message.find("16 MiB"), std::string::npos) << message;
  EXPECT_EQ(message.find(tmp_.path()), std::string::npos) << message;
  struct stat st;
  if (stat((target + "/zeros").c_str(), &st) == 0) {
    EXPECT_LE(st.st_size, 17 << 20);
  }
  // Under the bound the same layer extracts.
  options.max_bytes = 128 << 20;
  std::filesystem::remove_all(target);
  MakeDirs(target);
  auto fine = ExtractLayer(tmp_.Sub("bomb.tar.gz"), target, WhiteoutStyle::kApply, "", options);
  EXPECT_TRUE(fine.ok()) << fine.status();
}

// Case 8: a tiny tar storing a 1 TiB sparse file is refused with the default bounds: the sparse
// entry counts at its real size.
TEST_F(ArchiveBoundsTest, SparseTerabyteIsRefusedByDefault) {
  const std::string src = tmp_.Sub("src");
  MakeDirs(src);
  RunCommand("truncate -s 1T '" + src + "/big' && printf x >> '" + src + "/big'");
  RunCommand("tar --sparse -b 1 -cf '" + tmp_.Sub("sparse.tar") + "' -C '" + src + "' big");
  std::filesystem::remove(src + "/big");
  ASSERT_LT(std::filesystem::file_size(tmp_.Sub("sparse.tar")), 4096u);
  const std::string target = tmp_.Sub("target");
  MakeDirs(target);
  auto result = ExtractLayer(tmp_.Sub("sparse.tar"), target, WhiteoutStyle::kApply, "");
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument) << result.status();
  const std::string message(result.status().message());
  EXPECT_NE(message.find("tar entry \"big\""), std::string::npos) << message;
  EXPECT_NE(message.find("--max-layer-bytes"), std::string::npos) << message;
  EXPECT_FALSE(std::filesystem::exists(target + "/big"));
  // A sparse file under the bound still extracts, at its full size.
  RunCommand("truncate -s 64M '" + src + "/mid' && printf x >> '" + src + "/mid'");
  RunCommand("tar --sparse -b 1 -cf '" + tmp_.Sub("mid.tar") + "' -C '" + src + "' mid");
  auto mid = ExtractLayer(tmp_.Sub("mid.tar"), target, WhiteoutStyle::kApply, "");
  ASSERT_TRUE(mid.ok()) << mid.status();
  EXPECT_EQ(std::filesystem::file_size(target + "/mid"), (64u << 20) + 1);
  EXPECT_EQ(mid->apparent_bytes, (64 << 20) + 1);
}

// Case 8: entries beyond the bound are refused.
TEST_F(ArchiveBoundsTest, EntryFloodIsRefused) {
  std::vector<TarEntry> entries;
  for (int i = 0; i < 101; ++i) entries.push_back(File("f" + std::to_string(i), ""));
  WriteFile(tmp_.Sub("many.tar"), BuildTar(entries));
  entries.pop_back();
  WriteFile(tmp_.Sub("enough.tar"), BuildTar(entries));
  ExtractOptions options;
  options.max_entries = 100;
  MakeDirs(tmp_.Sub("a"));
  MakeDirs(tmp_.Sub("b"));
  auto many = ExtractLayer(tmp_.Sub("many.tar"), tmp_.Sub("a"), WhiteoutStyle::kApply, "", options);
  ASSERT_FALSE(many.ok());
  EXPECT_EQ(many.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(many.status().message().find("--max-layer-entries"), std::string::npos)
      << many.status();
  auto enough =
      ExtractLayer(tmp_.Sub("enough.tar"), tmp_.Sub("b"), WhiteoutStyle::kApply, "", options);
  EXPECT_TRUE(enough.ok()) << enough.status();
  EXPECT_EQ(enough->entries, 100);
}

// Case 8, archive level: an archive tar's unpacked size is bounded by --max-import-bytes.
TEST_F(ArchiveBoundsTest, ArchiveTarIsBoundedByTheImportBound) {
  SaveImage image;
  image.layer_blobs = {BuildTar({File("a", std::string(1 << 20, 'a'))})};
  auto files = DockerSaveFiles({image});
  WriteFile(tmp_.Sub("app.tar"), TarOfFiles(files));
  ImportLimits limits;
  limits.max_import_bytes = 512 << 10;
  auto archive = ImageArchive::Open(tmp_.Sub("app.tar"), scratch(), limits);
  ASSERT_FALSE(archive.ok());
  EXPECT_EQ(archive.status().code(), absl::StatusCode::kInvalidArgument) << archive.status();
  EXPECT_NE(archive.status().message().find("--max-import-bytes"), std::string::npos)
      << archive.status();
  EXPECT_TRUE(ScratchIsEmpty());
}

// Case 9: overlay-private xattrs in a tar are dropped; other user xattrs are kept. (trusted.*
// with a real overlay mount: overlay_xattr_root_test.cc.)
TEST_F(ArchiveBoundsTest, OverlayUserXattrsAreDropped) {
  TarEntry dir = Dir("d");
  dir.xattrs = {
      {"user.overlay.redirect", "/secret"}, {"user.overlay.opaque", "y"}, {"user.kept", "yes"}};
  TarEntry file = File("d/f", "f");
  file.xattrs = {{"user.overlay.metacopy", ""}, {"user.kept", "yes"}};
  WriteFile(tmp_.Sub("x.tar"), BuildTar({dir, file}));
  const std::string target = tmp_.Sub("target");
  MakeDirs(target);
  if (setxattr(target.c_str(), "user.probe", "1", 1, 0) != 0) GTEST_SKIP() << "no user xattrs";
  auto result = ExtractLayer(tmp_.Sub("x.tar"), target, WhiteoutStyle::kOverlay, "");
  ASSERT_TRUE(result.ok()) << result.status();
  char value[64];
  for (const std::string& path : {target + "/d", target + "/d/f"}) {
    EXPECT_LT(lgetxattr(path.c_str(), "user.overlay.redirect", value, sizeof(value)), 0) << path;
    EXPECT_LT(lgetxattr(path.c_str(), "user.overlay.opaque", value, sizeof(value)), 0) << path;
    EXPECT_LT(lgetxattr(path.c_str(), "user.overlay.metacopy", value, sizeof(value)), 0) << path;
    EXPECT_EQ(lgetxattr(path.c_str(), "user.kept", value, sizeof(value)), 3) << path;
  }
  EXPECT_TRUE(IsOverlayXattr("trusted.overlay.redirect"));
  EXPECT_TRUE(IsOverlayXattr("user.overlay.origin"));
  EXPECT_FALSE(IsOverlayXattr("trusted.overlayfoo"));
  EXPECT_FALSE(IsOverlayXattr("security.capability"));
}

// Case 11: the entry is named once, hostile values are cut, the message is bounded.
TEST_F(ArchiveBoundsTest, ErrorsNameTheEntryOnceAndAreBounded) {
  WriteFile(tmp_.Sub("wh.tar"), BuildTar({File(".wh.", "")}));
  MakeDirs(tmp_.Sub("a"));
  ExtractOptions options;
  options.display_name = "blobs/sha256/abc";
  auto whiteout =
      ExtractLayer(tmp_.Sub("wh.tar"), tmp_.Sub("a"), WhiteoutStyle::kApply, "", options);
  ASSERT_FALSE(whiteout.ok());
  const std::string message(whiteout.status().message());
  EXPECT_EQ(Count(message, "tar entry \".wh.\""), 1u) << message;
  EXPECT_EQ(message.rfind("blobs/sha256/abc: ", 0), 0u) << message;
  EXPECT_EQ(message.find(tmp_.path()), std::string::npos) << message;

  const std::string long_name = "/" + std::string(20000, 'n');
  WriteFile(tmp_.Sub("long.tar"), BuildTar({File(long_name, "x")}));
  MakeDirs(tmp_.Sub("b"));
  auto long_entry = ExtractLayer(tmp_.Sub("long.tar"), tmp_.Sub("b"), WhiteoutStyle::kApply, "");
  ASSERT_FALSE(long_entry.ok());
  EXPECT_EQ(long_entry.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_LT(long_entry.status().message().size(), 2 * kMaxEchoBytes + 512)
      << long_entry.status().message().size();
  EXPECT_NE(long_entry.status().message().find("…"), std::string::npos);

  EXPECT_EQ(Echo("short"), "short");
  EXPECT_EQ(Echo(std::string(300, 'a')), std::string(kMaxEchoBytes, 'a') + "…");
  // Never cut inside a UTF-8 sequence.
  EXPECT_EQ(Echo("a\xC3\xA9", 2), "a…");
  EXPECT_EQ(BoundMessage(absl::InvalidArgumentError(std::string(5000, 'm'))).message().size(),
            kMaxErrorBytes + std::string("…").size());
}

// Case 11: a symlink loop as the import path is InvalidArgument, named, not UNKNOWN.
TEST_F(ArchiveBoundsTest, SymlinkLoopIsInvalidArgument) {
  const std::string a = tmp_.Sub("a.tar");
  const std::string b = tmp_.Sub("b.tar");
  ASSERT_EQ(symlink(b.c_str(), a.c_str()), 0);
  ASSERT_EQ(symlink(a.c_str(), b.c_str()), 0);
  auto archive = ImageArchive::Open(a, scratch());
  ASSERT_FALSE(archive.ok());
  EXPECT_EQ(archive.status().code(), absl::StatusCode::kInvalidArgument) << archive.status();
  EXPECT_NE(archive.status().message().find("symlink loop"), std::string::npos);
  EXPECT_NE(archive.status().message().find(a), std::string::npos);
  // A loop inside an image folder.
  const std::string dir = FolderWithConfig("");
  ASSERT_EQ(unlink((dir + "/manifest.json").c_str()), 0);
  ASSERT_EQ(symlink("loop", (dir + "/manifest.json").c_str()), 0);
  ASSERT_EQ(symlink("manifest.json", (dir + "/loop").c_str()), 0);
  auto inside = ImageArchive::Open(dir, scratch());
  EXPECT_EQ(inside.status().code(), absl::StatusCode::kInvalidArgument) << inside.status();
  EXPECT_NE(inside.status().message().find("symlink loop"), std::string::npos) << inside.status();
  auto missing = ImageArchive::Open(tmp_.Sub("nope.tar"), scratch());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound) << missing.status();
}

// Case 3, Save: a config an older version stored a million deep is refused, not serialized.
TEST_F(ArchiveBoundsTest, SaveRefusesAStoredConfigNestedTooDeep) {
  const std::string layer = BuildTar({File("a", "a")});
  WriteFile(tmp_.Sub("layer.tar"), layer);
  ImageToWrite image;
  image.references = {"example.com/app:1"};
  image.layers.push_back({tmp_.Sub("layer.tar"), Sha256SumData(layer), 0, ""});
  image.base_config_json = "{\"x\":" + NestedArrays(1000000) + "}";
  absl::Status status = WriteImage(image, tmp_.Sub("out.tar"), ImageFormat::kDockerSave);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_NE(status.message().find("nested deeper"), std::string::npos) << status;
  EXPECT_FALSE(std::filesystem::exists(tmp_.Sub("out.tar")));
  // Deep but within the ceiling still saves.
  image.base_config_json = "{\"x\":" + NestedArrays(500) + "}";
  status = WriteImage(image, tmp_.Sub("out.tar"), ImageFormat::kDockerSave);
  EXPECT_TRUE(status.ok()) << status;
}

}  // namespace
}  // namespace strata::images
