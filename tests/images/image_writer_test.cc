// WriteImage without root: what it writes is read back by ImageArchive (which checks every
// digest), and extracting the layers in order gives the original trees.

#include "node/images/image_writer.h"

#include <filesystem>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "node/images/image_archive.h"
#include "node/images/layer_export.h"
#include "node/images/layer_tar.h"
#include "tests/images/test_util.h"
#include "tests/images/tree_test_util.h"

namespace strata::images {
namespace {

using drivers::WhiteoutStyle;
using imgtest::MakeDirs;
using imgtest::TempDir;
using imgtest::WriteFile;
using nlohmann::json;
using treetest::CopyAll;
using treetest::FullSnapshot;
using treetest::SetMtime;
using treetest::SnapshotDiff;

constexpr char kBaseConfig[] =
    R"({"architecture":"arm64","os":"linux","config":{"Env":["PATH=/bin"],"Cmd":["/bin/sh"]},)"
    R"("rootfs":{"type":"layers","diff_ids":[]},"history":[{"created_by":"old"}]})";

// Two trees (base and child) and their exported layers.
class ImageWriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    base_ = tmp_.Sub("base");
    child_ = tmp_.Sub("child");
    MakeDirs(base_ + "/etc");
    MakeDirs(base_ + "/bin");
    WriteFile(base_ + "/etc/os-release", "ID=strata\n");
    WriteFile(base_ + "/bin/sh", "#!sh");
    WriteFile(base_ + "/bin/gone", "bye");
    SetMtime(base_ + "/etc", 1600000000, 1);
    CopyAll(base_, child_);
    WriteFile(child_ + "/etc/app.conf", "x=1\n");
    std::filesystem::remove(child_ + "/bin/gone");
    auto l0 = ExportTreeDiff("", base_, tmp_.Sub("l0.tar"));
    auto l1 = ExportTreeDiff(base_, child_, tmp_.Sub("l1.tar"));
    ASSERT_TRUE(l0.ok() && l1.ok());
    image_.references = {"registry.local/app:v1", "app"};
    image_.layers = {{tmp_.Sub("l0.tar"), l0->diff_id, 1600000000, "base"},
                     {tmp_.Sub("l1.tar"), l1->diff_id, 1700000000, "strata snapshot"}};
    image_.base_config_json = kBaseConfig;
  }

  // Opens `path`, checks the image, extracts its layers in order and compares with child_.
  void CheckReadsBack(const std::string& path, ArchiveFormat format) {
    MakeDirs(tmp_.Sub("scratch"));
    auto archive = ImageArchive::Open(path, tmp_.Sub("scratch"));
    ASSERT_TRUE(archive.ok()) << archive.status();
    EXPECT_EQ((*archive)->format(), format);
    ASSERT_EQ((*archive)->images().size(), 1u);
    const Image& image = (*archive)->images()[0];
    EXPECT_EQ(image.references, (std::vector<std::string>{"registry.local/app:v1", "app:latest"}));
    json config = json::parse(image.config_json);
    EXPECT_EQ(config["architecture"], "arm64");  // kept from the base config
    EXPECT_EQ(config["config"]["Cmd"][0], "/bin/sh");
    EXPECT_EQ(config["rootfs"]["diff_ids"],
              json::array({image_.layers[0].diff_id, image_.layers[1].diff_id}));
    ASSERT_EQ(config["history"].size(), 2u);
    EXPECT_EQ(config["history"][1]["created_by"], "strata snapshot");
    EXPECT_EQ(config["history"][1]["created"], "2023-11-14T22:13:20Z");
    EXPECT_EQ(config["created"], "2023-11-14T22:13:20Z");
    ASSERT_EQ(image.layers.size(), 2u);
    const std::string out = tmp_.Sub("rootfs-" + std::to_string(counter_++));
    MakeDirs(out);
    for (const LayerBlob& layer : image.layers) {
      auto extracted = ExtractLayer(layer.path, out, WhiteoutStyle::kApply, layer.diff_id);
      ASSERT_TRUE(extracted.ok()) << extracted.status();
    }
    EXPECT_EQ(SnapshotDiff(FullSnapshot(child_), FullSnapshot(out)), "");
  }

  std::vector<std::string> Leftovers() {
    std::vector<std::string> out;
    for (const auto& e : std::filesystem::directory_iterator(tmp_.path())) {
      std::string name = e.path().filename();
      if (name.find(".tmp-") != std::string::npos || name.find(".gz-") != std::string::npos) {
        out.push_back(name);
      }
    }
    return out;
  }

  TempDir tmp_;
  std::string base_, child_;
  ImageToWrite image_;
  int counter_ = 0;
};

TEST_F(ImageWriterTest, DockerSaveReadsBack) {
  ASSERT_TRUE(WriteImage(image_, tmp_.Sub("save.tar"), ImageFormat::kDockerSave).ok());
  CheckReadsBack(tmp_.Sub("save.tar"), ArchiveFormat::kDockerSaveClassic);
  // The classic layout around the layers.
  const std::string unpacked = tmp_.Sub("unpacked");
  MakeDirs(unpacked);
  imgtest::RunCommand("tar -xf '" + tmp_.Sub("save.tar") + "' -C '" + unpacked + "'");
  json manifest = json::parse(imgtest::ReadFile(unpacked + "/manifest.json"));
  const std::string top = manifest[0]["Layers"][1].get<std::string>().substr(0, 64);
  json v1 = json::parse(imgtest::ReadFile(unpacked + "/" + top + "/json"));
  EXPECT_EQ(v1["id"], top);
  EXPECT_EQ(v1["parent"], manifest[0]["Layers"][0].get<std::string>().substr(0, 64));
  EXPECT_EQ(imgtest::ReadFile(unpacked + "/" + top + "/VERSION"), "1.0");
  json repositories = json::parse(imgtest::ReadFile(unpacked + "/repositories"));
  EXPECT_EQ(repositories["registry.local/app"]["v1"], top);
  EXPECT_EQ(repositories["app"]["latest"], top);
  EXPECT_TRUE(Leftovers().empty());
}

TEST_F(ImageWriterTest, OciLayoutFolderTarAndGzipReadBack) {
  ASSERT_TRUE(WriteImage(image_, tmp_.Sub("layout"), ImageFormat::kOciLayout).ok());
  CheckReadsBack(tmp_.Sub("layout"), ArchiveFormat::kOciLayout);
  ASSERT_TRUE(WriteImage(image_, tmp_.Sub("layout.tar"), ImageFormat::kOciLayout).ok());
  CheckReadsBack(tmp_.Sub("layout.tar"), ArchiveFormat::kOciLayout);
  WriteImageOptions gzip;
  gzip.gzip_layers = true;
  ASSERT_TRUE(WriteImage(image_, tmp_.Sub("gz"), ImageFormat::kOciLayout, gzip).ok());
  CheckReadsBack(tmp_.Sub("gz"), ArchiveFormat::kOciLayout);
  EXPECT_TRUE(Leftovers().empty());
}

TEST_F(ImageWriterTest, OutputIsDeterministic) {
  ASSERT_TRUE(WriteImage(image_, tmp_.Sub("1.tar"), ImageFormat::kDockerSave).ok());
  ASSERT_TRUE(WriteImage(image_, tmp_.Sub("2.tar"), ImageFormat::kDockerSave).ok());
  EXPECT_EQ(imgtest::Sha256SumFile(tmp_.Sub("1.tar")), imgtest::Sha256SumFile(tmp_.Sub("2.tar")));
  WriteImageOptions gzip;
  gzip.gzip_layers = true;
  ASSERT_TRUE(WriteImage(image_, tmp_.Sub("3.tar"), ImageFormat::kOciLayout, gzip).ok());
  ASSERT_TRUE(WriteImage(image_, tmp_.Sub("4.tar"), ImageFormat::kOciLayout, gzip).ok());
  EXPECT_EQ(imgtest::Sha256SumFile(tmp_.Sub("3.tar")), imgtest::Sha256SumFile(tmp_.Sub("4.tar")));
}

TEST_F(ImageWriterTest, WrongDiffIdFailsAndLeavesNothing) {
  // Another layer's DiffID (the OCI writer stores one blob per digest), then any other digest.
  for (const std::string& wrong :
       {image_.layers[0].diff_id, imgtest::Sha256SumData("something else")}) {
    image_.layers[1].diff_id = wrong;
    for (ImageFormat format : {ImageFormat::kDockerSave, ImageFormat::kOciLayout}) {
      absl::Status status = WriteImage(image_, tmp_.Sub("bad.tar"), format);
      EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
      EXPECT_FALSE(std::filesystem::exists(tmp_.Sub("bad.tar")));
    }
  }
  EXPECT_EQ(WriteImage(image_, tmp_.Sub("bad"), ImageFormat::kOciLayout).code(),
            absl::StatusCode::kDataLoss);
  EXPECT_FALSE(std::filesystem::exists(tmp_.Sub("bad")));
  EXPECT_TRUE(Leftovers().empty());
}

TEST_F(ImageWriterTest, RejectsBadInput) {
  ImageToWrite empty;
  EXPECT_EQ(WriteImage(empty, tmp_.Sub("x.tar"), ImageFormat::kDockerSave).code(),
            absl::StatusCode::kInvalidArgument);
  ImageToWrite bad_ref = image_;
  bad_ref.references = {"app@sha256:abc"};
  EXPECT_EQ(WriteImage(bad_ref, tmp_.Sub("x.tar"), ImageFormat::kDockerSave).code(),
            absl::StatusCode::kInvalidArgument);
  ImageToWrite bad_config = image_;
  bad_config.base_config_json = "[1]";
  EXPECT_EQ(WriteImage(bad_config, tmp_.Sub("x.tar"), ImageFormat::kDockerSave).code(),
            absl::StatusCode::kInvalidArgument);
  ImageToWrite missing = image_;
  missing.layers[0].tar_path = tmp_.Sub("nope.tar");
  EXPECT_EQ(WriteImage(missing, tmp_.Sub("x.tar"), ImageFormat::kDockerSave).code(),
            absl::StatusCode::kNotFound);
  WriteImageOptions gzip;
  gzip.gzip_layers = true;
  EXPECT_EQ(WriteImage(image_, tmp_.Sub("x.tar"), ImageFormat::kDockerSave, gzip).code(),
            absl::StatusCode::kInvalidArgument);
  MakeDirs(tmp_.Sub("exists"));
  EXPECT_EQ(WriteImage(image_, tmp_.Sub("exists"), ImageFormat::kOciLayout).code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_FALSE(std::filesystem::exists(tmp_.Sub("x.tar")));
  EXPECT_TRUE(Leftovers().empty());
}

TEST_F(ImageWriterTest, UntaggedImage) {
  image_.references.clear();
  image_.base_config_json.clear();
  ASSERT_TRUE(WriteImage(image_, tmp_.Sub("untagged"), ImageFormat::kOciLayout).ok());
  MakeDirs(tmp_.Sub("scratch"));
  auto archive = ImageArchive::Open(tmp_.Sub("untagged"), tmp_.Sub("scratch"));
  ASSERT_TRUE(archive.ok()) << archive.status();
  ASSERT_EQ((*archive)->images().size(), 1u);
  EXPECT_TRUE((*archive)->images()[0].references.empty());
  json config = json::parse((*archive)->images()[0].config_json);
  EXPECT_EQ(config["os"], "linux");
  EXPECT_EQ(config["architecture"], "amd64");
}

}  // namespace
}  // namespace strata::images
