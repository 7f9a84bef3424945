// ImageArchive on images made by real tools: umoci builds an OCI layout layer by layer (unpack
// needs root), skopeo converts it to zstd layers and to a docker-save archive. The oracle is
// umoci's own final rootfs: extracting every layer in order must give exactly that tree.

#include <unistd.h>

#include <filesystem>
#include <map>
#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "node/images/image_archive.h"
#include "node/images/layer_tar.h"
#include "tests/images/test_util.h"

namespace strata::images {
namespace {

using drivers::WhiteoutStyle;
using nlohmann::json;
using namespace imgtest;  // NOLINT: test helpers

std::string Q(const std::string& s) { return "'" + s + "'"; }

class ImageArchiveRootTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (geteuid() != 0) return;
    tmp_ = new TempDir();
    const std::string layout = tmp_->Sub("oci");
    const std::string bundle = tmp_->Sub("bundle");
    const std::string rootfs = bundle + "/rootfs";
    RunCommand("umoci init --layout " + Q(layout));
    RunCommand("umoci new --image " + Q(layout + ":v1"));
    RunCommand("umoci unpack --image " + Q(layout + ":v1") + " " + Q(bundle));
    auto repack = [&] {
      RunCommand("umoci repack --refresh-bundle --image " + Q(layout + ":v1") + " " + Q(bundle));
    };
    // Layer 1: a small tree.
    RunCommand("cd " + Q(rootfs) +
               " && mkdir -p etc bin opq/sub keep && printf a1 > etc/a && printf b > etc/b"
               " && printf tool > bin/tool && chmod 4755 bin/tool && ln -s etc/a link"
               " && printf o1 > opq/old && printf o2 > opq/sub/old && ln bin/tool bin/hard"
               " && mkfifo keep/fifo && chown 1000:1000 keep");
    repack();
    // Layer 2: change, delete, replace a directory's contents.
    RunCommand("cd " + Q(rootfs) +
               " && printf a2 > etc/a && rm etc/b && rm -rf opq && mkdir opq && printf n > opq/new"
               " && chmod 0700 keep");
    repack();
    // Layer 3: delete a symlink, add a deep file.
    RunCommand("cd " + Q(rootfs) + " && rm link && mkdir -p d/e && printf f > d/e/f");
    repack();
    oracle_ = new std::map<std::string, std::string>(Snapshot(rootfs));
  }
  static void TearDownTestSuite() {
    delete oracle_;
    oracle_ = nullptr;
    delete tmp_;
    tmp_ = nullptr;
  }
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (umoci unpack)";
    MakeDirs(scratch());
  }
  std::string layout() const { return tmp_->Sub("oci"); }
  std::string scratch() const { return work_.Sub("scratch"); }

  std::map<std::string, std::string> ApplyAll(const Image& image) {
    const std::string out = work_.Sub("rootfs");
    std::filesystem::remove_all(out);
    MakeDirs(out);
    for (const LayerBlob& layer : image.layers) {
      auto result = ExtractLayer(layer.path, out, WhiteoutStyle::kApply, layer.diff_id);
      EXPECT_TRUE(result.ok()) << result.status();
    }
    return Snapshot(out);
  }

  static TempDir* tmp_;
  static std::map<std::string, std::string>* oracle_;
  TempDir work_;
};

TempDir* ImageArchiveRootTest::tmp_ = nullptr;
std::map<std::string, std::string>* ImageArchiveRootTest::oracle_ = nullptr;

TEST_F(ImageArchiveRootTest, UmociLayoutAsFolderAndAsTar) {
  // The oracle itself holds what the three layers made.
  EXPECT_EQ(oracle_->at("bin/tool"), "f 4755 0:0 tool");
  EXPECT_EQ(oracle_->at("bin/hard"), "f 4755 0:0 tool");
  EXPECT_EQ(oracle_->at("keep"), "d 0700 1000:1000");
  EXPECT_EQ(oracle_->at("keep/fifo"), "p 0644 0:0");
  EXPECT_EQ(oracle_->at("etc/a"), "f 0644 0:0 a2");
  EXPECT_EQ(oracle_->at("opq/new"), "f 0644 0:0 n");
  EXPECT_EQ(oracle_->at("d/e/f"), "f 0644 0:0 f");
  for (const char* gone : {"etc/b", "link", "opq/old", "opq/sub"}) {
    EXPECT_EQ(oracle_->count(gone), 0u) << gone;
  }
  RunCommand("tar -C " + Q(layout()) + " -cf " + Q(work_.Sub("oci.tar")) + " .");
  for (const std::string& input : std::vector<std::string>{layout(), work_.Sub("oci.tar")}) {
    SCOPED_TRACE(input);
    auto archive = ImageArchive::Open(input, scratch());
    ASSERT_TRUE(archive.ok()) << archive.status();
    EXPECT_EQ((*archive)->format(), ArchiveFormat::kOciLayout);
    ASSERT_EQ((*archive)->images().size(), 1u);
    const Image& image = (*archive)->images()[0];
    EXPECT_EQ(image.references, std::vector<std::string>{"v1"});
    ASSERT_EQ(image.layers.size(), 3u);
    for (const LayerBlob& layer : image.layers) {
      EXPECT_EQ(layer.media_type, "application/vnd.oci.image.layer.v1.tar+gzip");
      // The DiffID by other means: gzip -d | sha256sum.
      EXPECT_EQ(layer.diff_id,
                "sha256:" + RunCommand("gzip -dc " + Q(layer.path) + " | sha256sum").substr(0, 64));
      EXPECT_EQ(layer.blob_digest, Sha256SumFile(layer.path));
    }
    EXPECT_EQ(json::parse(image.config_json)["history"].size(), 3u);
    EXPECT_EQ(ApplyAll(image), *oracle_);
  }
  EXPECT_TRUE(std::filesystem::is_empty(scratch()));
}

TEST_F(ImageArchiveRootTest, SkopeoZstdLayout) {
  const std::string zstd = work_.Sub("zstd");
  RunCommand("skopeo copy --dest-compress-format zstd oci:" + Q(layout() + ":v1") +
             " oci:" + Q(zstd + ":v1"));
  auto archive = ImageArchive::Open(zstd, scratch());
  ASSERT_TRUE(archive.ok()) << archive.status();
  const Image& image = (*archive)->images()[0];
  ASSERT_EQ(image.layers.size(), 3u);
  for (const LayerBlob& layer : image.layers) {
    EXPECT_EQ(layer.media_type, "application/vnd.oci.image.layer.v1.tar+zstd");
  }
  EXPECT_EQ(ApplyAll(image), *oracle_);
}

TEST_F(ImageArchiveRootTest, SkopeoDockerArchiveAndTheCurrentDockerSaveForm) {
  const std::string tar = work_.Sub("docker.tar");
  RunCommand("skopeo copy oci:" + Q(layout() + ":v1") +
             " docker-archive:" + Q(tar + ":example.com/app:v1"));
  auto oci = ImageArchive::Open(layout(), scratch());
  ASSERT_TRUE(oci.ok()) << oci.status();
  std::vector<std::string> diff_ids;
  for (const LayerBlob& layer : (*oci)->images()[0].layers) diff_ids.push_back(layer.diff_id);

  {
    auto archive = ImageArchive::Open(tar, scratch());
    ASSERT_TRUE(archive.ok()) << archive.status();
    EXPECT_EQ((*archive)->format(), ArchiveFormat::kDockerSaveClassic);
    const Image& image = (*archive)->images()[0];
    EXPECT_EQ(image.references, std::vector<std::string>{"example.com/app:v1"});
    std::vector<std::string> got;
    for (const LayerBlob& layer : image.layers) got.push_back(layer.diff_id);
    EXPECT_EQ(got, diff_ids);
    EXPECT_EQ(ApplyAll(image), *oracle_);
  }
  EXPECT_TRUE(std::filesystem::is_empty(scratch()));

  // Docker >= 25 writes manifest.json next to an OCI layout whose blobs hold the layers.
  const std::string current = work_.Sub("current");
  MakeDirs(current + "/unpacked");
  RunCommand("tar -C " + Q(current + "/unpacked") + " -xf " + Q(tar));
  json old_manifest = json::parse(ReadFile(current + "/unpacked/manifest.json"));
  MakeDirs(current + "/out/blobs/sha256");
  json layers = json::array();
  for (const auto& rel : old_manifest[0]["Layers"]) {
    const std::string hex =
        Sha256SumFile(current + "/unpacked/" + rel.get<std::string>()).substr(7);
    std::filesystem::copy_file(current + "/unpacked/" + rel.get<std::string>(),
                               current + "/out/blobs/sha256/" + hex);
    layers.push_back("blobs/sha256/" + hex);
  }
  const std::string config_src =
      current + "/unpacked/" + old_manifest[0]["Config"].get<std::string>();
  const std::string config_hex = Sha256SumFile(config_src).substr(7);
  std::filesystem::copy_file(config_src, current + "/out/blobs/sha256/" + config_hex);
  WriteFile(current + "/out/manifest.json", json::array({{{"Config", "blobs/sha256/" + config_hex},
                                                          {"RepoTags", {"example.com/app:v2"}},
                                                          {"Layers", layers}}})
                                                .dump());
  WriteFile(current + "/out/oci-layout", R"({"imageLayoutVersion":"1.0.0"})");
  WriteFile(current + "/out/index.json", R"({"schemaVersion":2,"manifests":[]})");
  RunCommand("tar -C " + Q(current + "/out") + " -cf " + Q(current + "/save.tar") + " .");
  auto archive = ImageArchive::Open(current + "/save.tar", scratch());
  ASSERT_TRUE(archive.ok()) << archive.status();
  EXPECT_EQ((*archive)->format(), ArchiveFormat::kDockerSaveOci);
  const Image& image = (*archive)->images()[0];
  EXPECT_EQ(image.references, std::vector<std::string>{"example.com/app:v2"});
  EXPECT_EQ(image.config_digest, "sha256:" + config_hex);
  EXPECT_EQ(ApplyAll(image), *oracle_);
}

TEST_F(ImageArchiveRootTest, TamperedUmociLayout) {
  const std::string copy = work_.Sub("copy");
  RunCommand("cp -a " + Q(layout()) + " " + Q(copy));
  auto archive = ImageArchive::Open(copy, scratch());
  ASSERT_TRUE(archive.ok()) << archive.status();
  const LayerBlob layer = (*archive)->images()[0].layers[1];
  archive->reset();

  const std::string original = ReadFile(layer.path);
  std::string flipped = original;
  flipped[flipped.size() / 2] ^= 0x01;
  WriteFile(layer.path, flipped);
  RunCommand("tar -C " + Q(copy) + " -cf " + Q(work_.Sub("t.tar")) + " .");
  for (const std::string& input : std::vector<std::string>{copy, work_.Sub("t.tar")}) {
    auto status = ImageArchive::Open(input, scratch()).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
  }
  EXPECT_TRUE(std::filesystem::is_empty(scratch()));

  std::filesystem::remove(layer.path);
  auto status = ImageArchive::Open(copy, scratch()).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_NE(status.message().find(layer.blob_digest), absl::string_view::npos) << status;

  // A layer whose content differs from the config's DiffID (re-compressed tampered tar, with a
  // matching descriptor) is caught when extracting.
  WriteFile(layer.path, original);
  const std::string out = work_.Sub("x");
  MakeDirs(out);
  auto wrong = ExtractLayer(layer.path, out, WhiteoutStyle::kApply, Sha256SumData("not it"));
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kDataLoss) << wrong.status();
}

}  // namespace
}  // namespace strata::images
