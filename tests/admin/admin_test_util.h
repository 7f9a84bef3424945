#pragma once
// Shared fixture for the admin tests: a real store (SQLite metadata, the vfs driver, a
// FakeMounter) behind AdminService on a real gRPC server bound to a unix socket in a temp dir,
// and a builder for small OCI image layouts written byte by byte (no root, no external tools).

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "csi/admin_service.h"
#include "drivers/driver.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "node/exporter.h"
#include "node/layer_store.h"
#include "node/metadata.h"
#include "node/volume_locks.h"
#include "node/volume_manager.h"
#include "strata_admin.grpc.pb.h"
#include "sys/fake_mounter.h"

namespace strata::admintest {

// A fresh directory under /tmp, removed recursively on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Files of one layer: relative path -> content (parent directories are added).
using LayerFiles = std::map<std::string, std::string>;

// An uncompressed tar of `files`, owned by the current user, with fixed times: the same files
// always give the same bytes, hence the same DiffID.
std::string LayerTar(const LayerFiles& files);

// Writes an OCI image layout: every image is a manifest in index.json named by the
// org.opencontainers.image.ref.name annotation; identical layers share one blob. Each config's
// history has an empty_layer entry "ENV PATH=/bin", then "ADD layerN /" for layer N (base 0).
class OciLayout {
 public:
  // `layers` are tars (LayerTar), base first.
  void AddImage(const std::string& reference, const std::vector<std::string>& layers);
  // Writes the layout into the new directory `dir`.
  void Write(const std::string& dir) const;
  // DiffID (= blob digest, the layers are uncompressed) of a layer tar.
  static std::string DiffId(const std::string& tar);

 private:
  std::vector<std::pair<std::string, std::vector<std::string>>> images_;
};

// Parameters of a plain volume on `image` ("" = empty base), by field name: the struct grows.
node::CreateVolumeParams MakeParams(const std::string& name, const std::string& image,
                                    const std::string& fingerprint);

class AdminFixture : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  std::string endpoint() const { return "unix://" + root_->path() + "/admin.sock"; }

  std::unique_ptr<TempDir> root_;  // the store's --root
  std::unique_ptr<TempDir> work_;  // image layouts, staging and target paths
  std::unique_ptr<node::Metadata> metadata_;
  std::unique_ptr<drivers::Driver> driver_;
  sys::FakeMounter mounter_;
  std::unique_ptr<node::LayerStore> layers_;
  std::unique_ptr<node::VolumeManager> volumes_;
  // Views go through the FakeMounter here: History works, Diff and Save need the root tests.
  std::unique_ptr<node::Exporter> exporter_;
  node::VolumeLocks locks_;
  std::unique_ptr<csi::AdminService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<strata::admin::v1::Admin::Stub> stub_;
};

}  // namespace strata::admintest
