// ImageArchive on archives built by hand here: classic docker save (folder and tar) and OCI
// layouts with gzip/zstd layers and nested indexes; tampering and hostile paths.

#include "node/images/image_archive.h"

#include <unistd.h>

#include <filesystem>
#include <map>
#include <string>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "node/images/layer_tar.h"
#include "tests/images/test_util.h"

namespace strata::images {
namespace {

using drivers::WhiteoutStyle;
using nlohmann::json;
using namespace imgtest;  // NOLINT: test helpers

std::string Hex(const std::string& digest) { return digest.substr(7); }

// Two layers: the second changes etc/a, deletes etc/b and makes opq opaque.
std::vector<std::vector<TarEntry>> TwoLayers() {
  return {
      {Dir("etc"), File("etc/a", "a1"), File("etc/b", "b"), Dir("opq"), File("opq/old", "o")},
      {File("etc/a", "a2"), File("etc/.wh.b", ""), File("opq/.wh..wh..opq", ""),
       File("opq/new", "n")},
  };
}

const std::map<std::string, std::string> kTwoLayersTree = {
    {"etc", "d 0755"}, {"etc/a", "f 0644 a2"}, {"opq", "d 0755"}, {"opq/new", "f 0644 n"}};

json ConfigFor(const std::vector<std::string>& diff_ids) {
  json config = {{"architecture", "amd64"},
                 {"os", "linux"},
                 {"created", "2024-01-02T03:04:05Z"},
                 {"config", json::object()},
                 {"rootfs", {{"type", "layers"}, {"diff_ids", diff_ids}}},
                 {"history", json::array()}};
  for (size_t i = 0; i < diff_ids.size(); ++i) {
    config["history"].push_back({{"created", "2024-01-02T03:04:0" + std::to_string(i) + "Z"}});
  }
  return config;
}

// Files of a classic `docker save` archive, relative path -> bytes.
std::map<std::string, std::string> ClassicDockerSave(const std::vector<std::string>& layer_tars,
                                                     std::vector<std::string>* diff_ids) {
  std::map<std::string, std::string> files;
  json layers = json::array();
  std::string parent;
  for (size_t i = 0; i < layer_tars.size(); ++i) {
    diff_ids->push_back(Sha256SumData(layer_tars[i]));
    const std::string id = Hex(Sha256SumData("v1 id " + std::to_string(i)));
    files[id + "/layer.tar"] = layer_tars[i];
    files[id + "/VERSION"] = "1.0";
    json v1 = {{"id", id}};
    if (!parent.empty()) v1["parent"] = parent;
    files[id + "/json"] = v1.dump();
    layers.push_back(id + "/layer.tar");
    parent = id;
  }
  const std::string config = ConfigFor(*diff_ids).dump();
  const std::string config_name = Hex(Sha256SumData(config)) + ".json";
  files[config_name] = config;
  files["manifest.json"] =
      json::array({{{"Config", config_name},
                    {"RepoTags", {"example.com/app:1", "example.com/app:latest"}},
                    {"Layers", layers}}})
          .dump();
  files["repositories"] = json{{"example.com/app", {{"1", parent}}}}.dump();
  return files;
}

void WriteTree(const std::string& root, const std::map<std::string, std::string>& files) {
  for (const auto& [rel, data] : files) {
    MakeDirs(std::filesystem::path(root + "/" + rel).parent_path());
    WriteFile(root + "/" + rel, data);
  }
}

std::string TarOf(const std::map<std::string, std::string>& files) {
  std::vector<TarEntry> entries;
  for (const auto& [rel, data] : files) entries.push_back(File(rel, data));
  return BuildTar(entries);
}

class ImageArchiveTest : public ::testing::Test {
 protected:
  void SetUp() override {
    MakeDirs(scratch());
    for (const auto& layer : TwoLayers()) tars_.push_back(BuildTar(layer));
  }
  std::string scratch() const { return tmp_.Sub("scratch"); }
  bool ScratchIsEmpty() const { return std::filesystem::is_empty(scratch()); }

  // Extracts every layer in order (kApply) and returns the tree.
  std::map<std::string, std::string> ApplyAll(const Image& image) {
    const std::string out = tmp_.Sub("rootfs");
    std::filesystem::remove_all(out);
    MakeDirs(out);
    for (const LayerBlob& layer : image.layers) {
      auto result = ExtractLayer(layer.path, out, WhiteoutStyle::kApply, layer.diff_id);
      EXPECT_TRUE(result.ok()) << result.status();
    }
    return Snapshot(out, false);
  }

  TempDir tmp_;
  std::vector<std::string> tars_;
};

TEST_F(ImageArchiveTest, ClassicDockerSaveAsFolderAndTar) {
  std::vector<std::string> diff_ids;
  auto files = ClassicDockerSave(tars_, &diff_ids);
  WriteTree(tmp_.Sub("folder"), files);
  WriteFile(tmp_.Sub("save.tar"), TarOf(files));

  for (const std::string& input :
       std::vector<std::string>{tmp_.Sub("folder"), tmp_.Sub("save.tar")}) {
    SCOPED_TRACE(input);
    {
      auto archive = ImageArchive::Open(input, scratch());
      ASSERT_TRUE(archive.ok()) << archive.status();
      EXPECT_EQ((*archive)->format(), ArchiveFormat::kDockerSaveClassic);
      ASSERT_EQ((*archive)->images().size(), 1u);
      const Image& image = (*archive)->images()[0];
      EXPECT_EQ(image.references,
                (std::vector<std::string>{"example.com/app:1", "example.com/app:latest"}));
      EXPECT_EQ(image.config_digest, Sha256SumData(image.config_json));
      EXPECT_EQ(json::parse(image.config_json)["history"].size(), 2u);
      ASSERT_EQ(image.layers.size(), 2u);
      for (size_t i = 0; i < 2; ++i) {
        EXPECT_EQ(image.layers[i].diff_id, diff_ids[i]);
        EXPECT_EQ(image.layers[i].blob_digest, diff_ids[i]);
        EXPECT_EQ(image.layers[i].size, static_cast<int64_t>(tars_[i].size()));
        EXPECT_EQ(image.layers[i].media_type, "application/vnd.oci.image.layer.v1.tar");
        EXPECT_EQ(ReadFile(image.layers[i].path), tars_[i]);
      }
      EXPECT_EQ(ApplyAll(image), kTwoLayersTree);
      EXPECT_EQ(input.ends_with(".tar"), !ScratchIsEmpty());
    }
    EXPECT_TRUE(ScratchIsEmpty());  // the destructor removed the unpacked archive
  }
}

TEST_F(ImageArchiveTest, CompressedDockerSaveLayerIsCheckedAtExtraction) {
  std::vector<std::string> diff_ids;
  auto files = ClassicDockerSave(tars_, &diff_ids);
  for (auto& [rel, data] : files) {
    if (data == tars_[1]) data = Compress(data, "gzip");
  }
  WriteTree(tmp_.Sub("folder"), files);
  auto archive = ImageArchive::Open(tmp_.Sub("folder"), scratch());
  ASSERT_TRUE(archive.ok()) << archive.status();
  const Image& image = (*archive)->images()[0];
  EXPECT_EQ(image.layers[1].media_type, "application/vnd.oci.image.layer.v1.tar+gzip");
  EXPECT_NE(image.layers[1].blob_digest, image.layers[1].diff_id);
  EXPECT_EQ(ApplyAll(image), kTwoLayersTree);
}

TEST_F(ImageArchiveTest, ClassicTamperingAndMalformedManifests) {
  std::vector<std::string> diff_ids;
  const auto good = ClassicDockerSave(tars_, &diff_ids);
  std::string second_layer;
  for (const auto& [rel, data] : good) {
    if (data == tars_[1]) second_layer = rel;
  }
  std::string config_name;
  for (const auto& [rel, data] : good) {
    if (rel.ends_with(".json") && rel != "manifest.json") config_name = rel;
  }
  auto open_with = [&](std::map<std::string, std::string> files, bool as_tar) {
    const std::string dir = tmp_.Sub("case");
    std::filesystem::remove_all(dir);
    std::filesystem::remove(tmp_.Sub("case.tar"));
    WriteTree(dir, files);
    if (as_tar) WriteFile(tmp_.Sub("case.tar"), TarOf(files));
    auto result = ImageArchive::Open(as_tar ? tmp_.Sub("case.tar") : dir, scratch());
    EXPECT_TRUE(ScratchIsEmpty());  // a failed Open cleans up at once
    return result.status();
  };

  auto flipped = good;
  flipped[second_layer][flipped[second_layer].size() / 3] ^= 0x01;
  absl::Status status = open_with(flipped, true);
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;

  auto missing = good;
  missing.erase(second_layer);
  status = open_with(missing, true);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_NE(status.message().find(second_layer), absl::string_view::npos) << status;

  auto renamed = good;  // config content changed, name not
  renamed[config_name] = json::parse(renamed[config_name]).dump(2);
  status = open_with(renamed, false);
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;

  auto escape = good;
  json manifest = json::parse(escape["manifest.json"]);
  manifest[0]["Layers"][1] = "../../../../etc/passwd";
  escape["manifest.json"] = manifest.dump();
  status = open_with(escape, false);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;

  auto short_layers = good;
  manifest = json::parse(short_layers["manifest.json"]);
  manifest[0]["Layers"].erase(1);
  short_layers["manifest.json"] = manifest.dump();
  status = open_with(short_layers, false);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_NE(status.message().find("diff_ids"), absl::string_view::npos) << status;

  auto bad_json = good;
  bad_json["manifest.json"] = "[{";
  status = open_with(bad_json, true);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_NE(status.message().find("manifest.json"), absl::string_view::npos) << status;

  status = open_with({{"README", "hello"}}, false);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;

  EXPECT_EQ(ImageArchive::Open(tmp_.Sub("no-such"), scratch()).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(ImageArchiveTest, SymlinkOutOfTheArchiveIsRejected) {
  std::vector<std::string> diff_ids;
  auto files = ClassicDockerSave(tars_, &diff_ids);
  std::string second_layer;
  for (const auto& [rel, data] : files) {
    if (data == tars_[1]) second_layer = rel;
  }
  WriteTree(tmp_.Sub("folder"), files);
  std::filesystem::remove(tmp_.Sub("folder/" + second_layer));
  std::filesystem::create_symlink("/etc/passwd", tmp_.Sub("folder/" + second_layer));
  auto archive = ImageArchive::Open(tmp_.Sub("folder"), scratch());
  EXPECT_EQ(archive.status().code(), absl::StatusCode::kInvalidArgument) << archive.status();

  // Inside the archive a symlink is fine (skopeo writes <id>/layer.tar -> ../<hex>.tar).
  std::filesystem::remove(tmp_.Sub("folder/" + second_layer));
  WriteFile(tmp_.Sub("folder/" + Hex(diff_ids[1]) + ".tar"), tars_[1]);
  std::filesystem::create_symlink("../" + Hex(diff_ids[1]) + ".tar",
                                  tmp_.Sub("folder/" + second_layer));
  archive = ImageArchive::Open(tmp_.Sub("folder"), scratch());
  ASSERT_TRUE(archive.ok()) << archive.status();
  EXPECT_EQ((*archive)->images()[0].layers[1].path,
            std::filesystem::canonical(tmp_.Sub("folder/" + Hex(diff_ids[1]) + ".tar")).string());
}

// A hand-made OCI layout.
class OciBuilder {
 public:
  explicit OciBuilder(std::string root) : root_(std::move(root)) {
    MakeDirs(root_ + "/blobs/sha256");
    WriteFile(root_ + "/oci-layout", R"({"imageLayoutVersion":"1.0.0"})");
  }
  json Blob(const std::string& bytes, const std::string& media_type) {
    const std::string digest = Sha256SumData(bytes);
    WriteFile(root_ + "/blobs/sha256/" + Hex(digest), bytes);
    return {{"mediaType", media_type},
            {"digest", digest},
            {"size", static_cast<int64_t>(bytes.size())}};
  }
  void Index(const json& manifests) {
    WriteFile(root_ + "/index.json", json{{"schemaVersion", 2}, {"manifests", manifests}}.dump());
  }

 private:
  std::string root_;
};

constexpr char kManifestType[] = "application/vnd.oci.image.manifest.v1+json";
constexpr char kIndexType[] = "application/vnd.oci.image.index.v1+json";

TEST_F(ImageArchiveTest, OciLayoutWithCompressedLayersAndNestedIndex) {
  const std::string root = tmp_.Sub("oci");
  OciBuilder oci(root);
  std::vector<std::string> diff_ids = {Sha256SumData(tars_[0]), Sha256SumData(tars_[1])};
  json layer0 = oci.Blob(Compress(tars_[0], "gzip"), "application/vnd.oci.image.layer.v1.tar+gzip");
  json layer1 = oci.Blob(Compress(tars_[1], "zstd"), "application/vnd.oci.image.layer.v1.tar+zstd");
  json config = oci.Blob(ConfigFor(diff_ids).dump(), "application/vnd.oci.image.config.v1+json");
  json amd64 =
      oci.Blob(json{{"schemaVersion", 2}, {"config", config}, {"layers", {layer0, layer1}}}.dump(),
               kManifestType);
  amd64["platform"] = {{"os", "linux"}, {"architecture", "amd64"}};
  // Another platform's manifest, never read: its blobs do not even exist.
  json arm64 = {{"mediaType", kManifestType},
                {"digest", Sha256SumData("absent")},
                {"size", 10},
                {"platform", {{"os", "linux"}, {"architecture", "arm64"}}}};
  json nested =
      oci.Blob(json{{"schemaVersion", 2}, {"manifests", {arm64, amd64}}}.dump(), kIndexType);
  nested["annotations"] = {{"org.opencontainers.image.ref.name", "v1"}};
  json direct = amd64;
  direct.erase("platform");
  direct["annotations"] = {{"org.opencontainers.image.ref.name", "latest"}};
  oci.Index(json::array({nested, direct}));
  WriteFile(tmp_.Sub("oci.tar"), RunCommand("tar -C '" + root + "' -cf - ."));

  for (const std::string& input : std::vector<std::string>{root, tmp_.Sub("oci.tar")}) {
    SCOPED_TRACE(input);
    auto archive = ImageArchive::Open(input, scratch());
    ASSERT_TRUE(archive.ok()) << archive.status();
    EXPECT_EQ((*archive)->format(), ArchiveFormat::kOciLayout);
    ASSERT_EQ((*archive)->images().size(), 1u);  // both entries name the same manifest
    const Image& image = (*archive)->images()[0];
    EXPECT_EQ(image.references, (std::vector<std::string>{"v1", "latest"}));
    EXPECT_EQ(image.config_digest, config["digest"]);
    ASSERT_EQ(image.layers.size(), 2u);
    EXPECT_EQ(image.layers[0].diff_id, diff_ids[0]);
    EXPECT_EQ(image.layers[1].diff_id, diff_ids[1]);
    EXPECT_EQ(image.layers[1].blob_digest, layer1["digest"]);
    EXPECT_EQ(image.layers[1].media_type, "application/vnd.oci.image.layer.v1.tar+zstd");
    EXPECT_EQ(ApplyAll(image), kTwoLayersTree);
  }
  EXPECT_TRUE(ScratchIsEmpty());

  // Tampering: a flipped byte, a wrong size, a missing blob.
  const std::string layer_path = root + "/blobs/sha256/" + Hex(layer1["digest"]);
  const std::string original = ReadFile(layer_path);
  std::string flipped = original;
  flipped[flipped.size() / 2] ^= 0x20;
  WriteFile(layer_path, flipped);
  auto status = ImageArchive::Open(root, scratch()).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
  WriteFile(layer_path, original + "x");
  status = ImageArchive::Open(root, scratch()).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
  std::filesystem::remove(layer_path);
  status = ImageArchive::Open(root, scratch()).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_NE(status.message().find(layer1["digest"].get<std::string>()), absl::string_view::npos)
      << status;
}

TEST_F(ImageArchiveTest, OciLayoutRejectsUnknownLayerTypesAndBadDescriptors) {
  const std::string root = tmp_.Sub("oci");
  OciBuilder oci(root);
  std::vector<std::string> diff_ids = {Sha256SumData(tars_[0])};
  json config = oci.Blob(ConfigFor(diff_ids).dump(), "application/vnd.oci.image.config.v1+json");
  json layer = oci.Blob(tars_[0], "application/vnd.example.unknown");
  json manifest = oci.Blob(
      json{{"schemaVersion", 2}, {"config", config}, {"layers", {layer}}}.dump(), kManifestType);
  oci.Index(json::array({manifest}));
  auto status = ImageArchive::Open(root, scratch()).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_NE(status.message().find("mediaType"), absl::string_view::npos) << status.ToString();

  json bad = manifest;
  bad["digest"] = "sha256:../../../etc/passwd";
  oci.Index(json::array({bad}));
  status = ImageArchive::Open(root, scratch()).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_NE(status.message().find("digest"), absl::string_view::npos) << status;
}

}  // namespace
}  // namespace strata::images
