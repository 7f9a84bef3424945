#pragma once
// Shared fixtures for node/ unit tests: a temp store with real metadata, the vfs driver (plain
// directories, no root needed) and a FakeMounter.

#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <memory>
#include <string>

#include "drivers/registry.h"
#include "gtest/gtest.h"
#include "node/layer_store.h"
#include "node/metadata.h"
#include "node/paths.h"
#include "node/volume_manager.h"
#include "sys/fake_mounter.h"

namespace strata::node::testing {

inline std::string MakeTempDir() {
  char pattern[] = "/tmp/strata-node-test-XXXXXX";
  char* dir = mkdtemp(pattern);
  EXPECT_NE(dir, nullptr);
  return dir ? dir : "";
}

inline void WriteFile(const std::string& path, const std::string& content) {
  std::ofstream out(path);
  out << content;
}

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

class StoreFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = MakeTempDir();
    auto metadata = Metadata::Open(root_ + "/strata.db");
    ASSERT_TRUE(metadata.ok()) << metadata.status();
    metadata_ = std::move(*metadata);
    auto driver = drivers::NewDriver("vfs", root_);
    ASSERT_TRUE(driver.ok()) << driver.status();
    driver_ = std::move(*driver);
    labels_ = std::make_unique<Labels>(root_ + "/labels");
    ASSERT_TRUE(labels_->Init().ok());
    quarantine_ =
        std::make_unique<Quarantine>(root_ + "/quarantine", driver_.get(), &mounter_, nullptr);
    layers_ = std::make_unique<LayerStore>(metadata_.get(), driver_.get(), &mounter_,
                                           root_ + "/tmp", images::ImportLimits{},
                                           StoreFiles{labels_.get(), quarantine_.get()});
    volumes_ = std::make_unique<VolumeManager>(
        metadata_.get(), layers_.get(), driver_.get(), &mounter_, nullptr,
        VolumeManagerOptions{root_, root_ + "/volumes", root_ + "/tmp", flatten_depth_});
    pods_ = MakeTempDir();
  }
  void TearDown() override {
    volumes_.reset();
    layers_.reset();
    quarantine_.reset();
    labels_.reset();
    driver_.reset();
    metadata_.reset();
    (void)RemoveTree(root_);
    (void)RemoveTree(pods_);
  }

  // Adds a ready layer holding `file` (content = chain id) on `parent`, as an import would.
  std::string AddLayer(const std::string& chain_id, const std::string& parent,
                       const std::string& file) {
    auto chain = layers_->DriverChain(parent);
    EXPECT_TRUE(chain.ok()) << chain.status();
    std::string layer_id = *metadata_->NewDriverId();
    std::string active_id = *metadata_->NewDriverId();
    EXPECT_TRUE(driver_->Prepare(active_id, *chain, {}).ok());
    auto target = driver_->DirectWriteTarget(active_id);
    EXPECT_TRUE(target.ok()) << target.status();
    WriteFile(target->directory + "/" + file, chain_id);
    EXPECT_TRUE(driver_->Commit(layer_id, active_id, *chain, drivers::CommitMode::kConsume).ok());
    int depth = parent.empty() ? 1 : (*metadata_->GetLayer(parent))->depth + 1;
    LayerRecord layer{chain_id, "sha256:diff-" + chain_id, parent, layer_id, 1, 0, "ready", depth,
                      ""};
    EXPECT_TRUE(labels_->PutLayer(layer).ok());  // as an import labels it
    EXPECT_TRUE(metadata_->PutLayer(layer).ok());
    return layer_id;
  }

  void AddImage(const std::string& name, const std::string& chain_id) {
    ASSERT_TRUE(labels_->PutImage(ImageRecord{name, chain_id, "{}", 0}).ok());
    ASSERT_TRUE(metadata_->PutImage(ImageRecord{name, chain_id, "{}", 0}).ok());
  }

  int flatten_depth_ = 128;
  std::string root_;
  std::string pods_;
  std::unique_ptr<Metadata> metadata_;
  std::unique_ptr<drivers::Driver> driver_;
  sys::FakeMounter mounter_;
  std::unique_ptr<Labels> labels_;
  std::unique_ptr<Quarantine> quarantine_;
  std::unique_ptr<LayerStore> layers_;
  std::unique_ptr<VolumeManager> volumes_;
};

}  // namespace strata::node::testing
