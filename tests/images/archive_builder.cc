#include "tests/images/archive_builder.h"

#include <filesystem>

#include "nlohmann/json.hpp"
#include "tests/images/test_util.h"

namespace strata::images::imgtest {

using nlohmann::json;

std::string MinimalConfig(const std::vector<std::string>& diff_ids) {
  return json{{"architecture", "amd64"},
              {"os", "linux"},
              {"config", json::object()},
              {"rootfs", {{"type", "layers"}, {"diff_ids", diff_ids}}}}
      .dump();
}

std::string NestedArrays(int depth) {
  return std::string(static_cast<size_t>(depth), '[') +
         std::string(static_cast<size_t>(depth), ']');
}

std::string BlobName(const std::string& blob) { return Sha256SumData(blob).substr(7) + ".tar"; }

std::map<std::string, std::string> DockerSaveFiles(const std::vector<SaveImage>& images) {
  std::map<std::string, std::string> files;
  json manifest = json::array();
  for (const SaveImage& image : images) {
    std::vector<std::string> diff_ids = image.diff_ids;
    json layers = json::array();
    for (const std::string& blob : image.layer_blobs) {
      if (image.diff_ids.empty()) diff_ids.push_back(Sha256SumData(blob));
      files[BlobName(blob)] = blob;
      layers.push_back(BlobName(blob));
    }
    const std::string config = image.config.empty() ? MinimalConfig(diff_ids) : image.config;
    const std::string config_name = Sha256SumData(config).substr(7) + ".json";
    files[config_name] = config;
    manifest.push_back({{"Config", config_name}, {"RepoTags", image.tags}, {"Layers", layers}});
  }
  files["manifest.json"] = manifest.dump();
  return files;
}

void WriteTree(const std::string& root, const std::map<std::string, std::string>& files) {
  for (const auto& [rel, data] : files) {
    MakeDirs(std::filesystem::path(root + "/" + rel).parent_path());
    WriteFile(root + "/" + rel, data);
  }
}

std::string TarOfFiles(const std::map<std::string, std::string>& files) {
  std::vector<TarEntry> entries;
  for (const auto& [rel, data] : files) entries.push_back(File(rel, data));
  return BuildTar(entries);
}

}  // namespace strata::images::imgtest
