#include "tests/admin/admin_test_util.h"

#include <archive.h>
#include <archive_entry.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "drivers/registry.h"
#include "nlohmann/json.hpp"
#include "node/images/digest.h"

namespace strata::admintest {
namespace {

using Json = nlohmann::ordered_json;

void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary);
  out << data;
  ASSERT_TRUE(out.good()) << path;
}

la_ssize_t AppendToString(struct archive*, void* data, const void* buffer, size_t size) {
  static_cast<std::string*>(data)->append(static_cast<const char*>(buffer), size);
  return static_cast<la_ssize_t>(size);
}

std::string Hex(const std::string& digest) { return digest.substr(digest.find(':') + 1); }

}  // namespace

TempDir::TempDir() {
  char pattern[] = "/tmp/strata-admin-test-XXXXXX";
  char* dir = mkdtemp(pattern);
  EXPECT_NE(dir, nullptr);
  path_ = dir ? dir : "";
}

TempDir::~TempDir() {
  std::error_code error;
  if (!path_.empty()) std::filesystem::remove_all(path_, error);
}

std::string LayerTar(const LayerFiles& files) {
  std::string out;
  struct archive* writer = archive_write_new();
  archive_write_set_format_pax_restricted(writer);
  archive_write_set_bytes_in_last_block(writer, 1);
  archive_write_open(writer, &out, nullptr, AppendToString, nullptr);
  std::set<std::string> dirs;
  for (const auto& [name, content] : files) {
    for (size_t slash = name.find('/'); slash != std::string::npos;
         slash = name.find('/', slash + 1)) {
      dirs.insert(name.substr(0, slash));
    }
  }
  auto add = [&](const std::string& name, bool dir, const std::string& content) {
    struct archive_entry* entry = archive_entry_new();
    archive_entry_set_pathname(entry, name.c_str());
    archive_entry_set_filetype(entry, dir ? AE_IFDIR : AE_IFREG);
    archive_entry_set_perm(entry, dir ? 0755 : 0644);
    archive_entry_set_uid(entry, getuid());
    archive_entry_set_gid(entry, getgid());
    archive_entry_set_mtime(entry, 1500000000, 0);
    archive_entry_set_size(entry, dir ? 0 : static_cast<la_int64_t>(content.size()));
    archive_write_header(writer, entry);
    if (!dir) archive_write_data(writer, content.data(), content.size());
    archive_entry_free(entry);
  };
  for (const std::string& dir : dirs) add(dir, true, "");
  for (const auto& [name, content] : files) add(name, false, content);
  archive_write_close(writer);
  archive_write_free(writer);
  return out;
}

std::string OciLayout::DiffId(const std::string& tar) { return images::Sha256Digest(tar); }

void OciLayout::AddImage(const std::string& reference, const std::vector<std::string>& layers) {
  images_.emplace_back(reference, layers);
}

void OciLayout::Write(const std::string& dir) const {
  std::filesystem::create_directories(dir + "/blobs/sha256");
  auto put_blob = [&](const std::string& data) {
    std::string digest = images::Sha256Digest(data);
    WriteFile(dir + "/blobs/sha256/" + Hex(digest), data);
    return Json{{"digest", digest}, {"size", data.size()}};
  };
  WriteFile(dir + "/oci-layout", R"({"imageLayoutVersion":"1.0.0"})");
  Json manifests = Json::array();
  for (const auto& [reference, layers] : images_) {
    Json diff_ids = Json::array(), layer_descriptors = Json::array();
    for (const std::string& tar : layers) {
      diff_ids.push_back(DiffId(tar));
      Json descriptor{{"mediaType", "application/vnd.oci.image.layer.v1.tar"}};
      descriptor.update(put_blob(tar));
      layer_descriptors.push_back(descriptor);
    }
    // History as a Dockerfile build leaves it: an empty_layer entry, then one per layer.
    Json history = Json::array({{{"created_by", "ENV PATH=/bin"}, {"empty_layer", true}}});
    for (size_t i = 0; i < layers.size(); ++i)
      history.push_back({{"created_by", "ADD layer" + std::to_string(i) + " /"}});
    Json config{{"created", "2026-01-01T00:00:00Z"},
                {"history", history},
                {"architecture", "amd64"},
                {"os", "linux"},
                {"config", {{"Env", {"PATH=/bin"}}, {"Labels", {{"test.image", reference}}}}},
                {"rootfs", {{"type", "layers"}, {"diff_ids", diff_ids}}}};
    Json config_descriptor{{"mediaType", "application/vnd.oci.image.config.v1+json"}};
    config_descriptor.update(put_blob(config.dump()));
    Json manifest{{"schemaVersion", 2},
                  {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                  {"config", config_descriptor},
                  {"layers", layer_descriptors}};
    Json manifest_descriptor{{"mediaType", "application/vnd.oci.image.manifest.v1+json"}};
    manifest_descriptor.update(put_blob(manifest.dump()));
    manifest_descriptor["annotations"] = {{"org.opencontainers.image.ref.name", reference}};
    manifests.push_back(manifest_descriptor);
  }
  WriteFile(dir + "/index.json", Json{{"schemaVersion", 2}, {"manifests", manifests}}.dump());
}

node::CreateVolumeParams MakeParams(const std::string& name, const std::string& image,
                                    const std::string& fingerprint) {
  node::CreateVolumeParams params;
  params.name = name;
  params.image = image;
  params.fingerprint = fingerprint;
  return params;
}

void AdminFixture::SetUp() {
  root_ = std::make_unique<TempDir>();
  work_ = std::make_unique<TempDir>();
  auto metadata = node::Metadata::Open(root_->path() + "/strata.db");
  ASSERT_TRUE(metadata.ok()) << metadata.status();
  metadata_ = std::move(*metadata);
  auto driver = drivers::NewDriver("vfs", root_->path());
  ASSERT_TRUE(driver.ok()) << driver.status();
  driver_ = std::move(*driver);
  layers_ = std::make_unique<node::LayerStore>(metadata_.get(), driver_.get(), &mounter_,
                                               root_->path() + "/tmp");
  volumes_ = std::make_unique<node::VolumeManager>(
      metadata_.get(), layers_.get(), driver_.get(), &mounter_, nullptr,
      node::VolumeManagerOptions{root_->path(), root_->path() + "/volumes",
                                 root_->path() + "/tmp"});
  exporter_ = std::make_unique<node::Exporter>(metadata_.get(), layers_.get(), driver_.get(),
                                               &mounter_, root_->path() + "/export");
  service_ = std::make_unique<csi::AdminService>(layers_.get(), volumes_.get(), metadata_.get(),
                                                 &locks_, exporter_.get());
  grpc::ServerBuilder builder;
  builder.AddListeningPort(endpoint(), grpc::InsecureServerCredentials());
  builder.RegisterService(service_.get());
  server_ = builder.BuildAndStart();
  ASSERT_NE(server_, nullptr) << "cannot listen on " << endpoint();
  stub_ = strata::admin::v1::Admin::NewStub(
      grpc::CreateChannel(endpoint(), grpc::InsecureChannelCredentials()));
}

void AdminFixture::TearDown() {
  stub_.reset();
  if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  server_.reset();
  service_.reset();
  exporter_.reset();
  volumes_.reset();
  layers_.reset();
  driver_.reset();
  metadata_.reset();
  work_.reset();
  root_.reset();
}

}  // namespace strata::admintest
