// AdminService over a real gRPC unix socket and a real store: imports, listings with shared
// layers, inspect by every kind of id, remove + garbage collection (dry run first), and the
// codes bad requests get.

#include "csi/admin_service.h"

#include <algorithm>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "node/images/digest.h"
#include "strata/version.h"
#include "tests/admin/admin_test_util.h"

namespace strata::admintest {
namespace {

namespace pb = strata::admin::v1;
using Json = nlohmann::json;

std::vector<std::string> Sorted(std::vector<std::string> values) {
  std::sort(values.begin(), values.end());
  return values;
}

template <typename Repeated>
std::vector<std::string> SortedStrings(const Repeated& repeated) {
  return Sorted(std::vector<std::string>(repeated.begin(), repeated.end()));
}

// Three images over three layers: base:1 = [A], app:1 = [A, B], app:2 = [A, C].
class AdminServiceTest : public AdminFixture {
 protected:
  void SetUp() override {
    AdminFixture::SetUp();
    if (HasFatalFailure()) return;
    layer_a_ = LayerTar({{"etc/os-release", "ID=strata-test\n"}, {"bin/sh", "#!shell\n"}});
    layer_b_ = LayerTar({{"app/one.txt", "version one\n"}});
    layer_c_ = LayerTar({{"app/two.txt", "version two, longer\n"}});
    chain_a_ = OciLayout::DiffId(layer_a_);
    chain_b_ = images::ChainId(chain_a_, OciLayout::DiffId(layer_b_));
    chain_c_ = images::ChainId(chain_a_, OciLayout::DiffId(layer_c_));
    OciLayout layout;
    layout.AddImage("base:1", {layer_a_});
    layout.AddImage("app:1", {layer_a_, layer_b_});
    layout.AddImage("app:2", {layer_a_, layer_c_});
    layout_dir_ = work_->path() + "/layout";
    layout.Write(layout_dir_);
  }

  grpc::Status Import(const std::string& path, const std::string& name,
                      pb::ImportImageResponse* response) {
    grpc::ClientContext context;
    pb::ImportImageRequest request;
    request.set_path(path);
    request.set_name(name);
    return stub_->ImportImage(&context, request, response);
  }
  void ImportAll() {
    pb::ImportImageResponse response;
    grpc::Status status = Import(layout_dir_, "", &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }
  pb::ListImagesResponse Images() {
    grpc::ClientContext context;
    pb::ListImagesResponse response;
    grpc::Status status = stub_->ListImages(&context, {}, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response;
  }
  pb::ListLayersResponse Layers() {
    grpc::ClientContext context;
    pb::ListLayersResponse response;
    grpc::Status status = stub_->ListLayers(&context, {}, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response;
  }
  pb::ListVolumesResponse Volumes() {
    grpc::ClientContext context;
    pb::ListVolumesResponse response;
    grpc::Status status = stub_->ListVolumes(&context, {}, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response;
  }
  grpc::Status Inspect(const std::string& id, Json* document) {
    grpc::ClientContext context;
    pb::InspectRequest request;
    request.set_id(id);
    pb::InspectResponse response;
    grpc::Status status = stub_->Inspect(&context, request, &response);
    if (status.ok()) *document = Json::parse(response.json());
    return status;
  }
  grpc::Status RemoveImage(const std::string& name) {
    grpc::ClientContext context;
    pb::RemoveImageRequest request;
    request.set_name(name);
    pb::RemoveImageResponse response;
    return stub_->RemoveImage(&context, request, &response);
  }
  pb::GarbageCollectResponse Gc(bool dry_run) {
    grpc::ClientContext context;
    pb::GarbageCollectRequest request;
    request.set_dry_run(dry_run);
    pb::GarbageCollectResponse response;
    grpc::Status status = stub_->GarbageCollect(&context, request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response;
  }
  const pb::Layer* FindLayer(const pb::ListLayersResponse& list, const std::string& chain_id) {
    for (const pb::Layer& layer : list.layers())
      if (layer.chain_id() == chain_id) return &layer;
    return nullptr;
  }
  std::vector<std::string> LayerIds() {
    std::vector<std::string> ids;
    pb::ListLayersResponse list = Layers();
    for (const pb::Layer& layer : list.layers()) ids.push_back(layer.chain_id());
    return Sorted(ids);
  }
  // A volume made from `image`, staged, and published at one target.
  node::VolumeRecord StagedVolume(const std::string& name, const std::string& image) {
    auto volume = volumes_->Create(MakeParams(name, image, "image=" + image));
    EXPECT_TRUE(volume.ok()) << volume.status();
    if (!volume.ok()) return {};
    std::string staging = work_->path() + "/staging-" + name;
    EXPECT_TRUE(volumes_->Stage(volume->id, staging).ok());
    EXPECT_TRUE(volumes_->Publish(volume->id, staging, work_->path() + "/pod-" + name, false).ok());
    return *volumes_->Get(volume->id);
  }

  std::string layer_a_, layer_b_, layer_c_;
  std::string chain_a_, chain_b_, chain_c_;
  std::string layout_dir_;
};

TEST_F(AdminServiceTest, ImportStoresSharedLayersOnceAndIsIdempotent) {
  pb::ImportImageResponse first;
  grpc::Status status = Import(layout_dir_, "", &first);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(SortedStrings(first.names()), Sorted({"app:1", "app:2", "base:1"}));
  EXPECT_EQ(first.layers_total(), 5);
  EXPECT_EQ(first.layers_new(), 3);
  EXPECT_GT(first.bytes_new(), 0);

  pb::ImportImageResponse again;
  ASSERT_TRUE(Import(layout_dir_, "", &again).ok());
  EXPECT_EQ(again.layers_total(), 5);
  EXPECT_EQ(again.layers_new(), 0);
  EXPECT_EQ(again.bytes_new(), 0);
  EXPECT_EQ(LayerIds(), Sorted({chain_a_, chain_b_, chain_c_}));
}

TEST_F(AdminServiceTest, ImportUnderANameNeedsAOneImageArchive) {
  OciLayout single;
  single.AddImage("ignored:tag", {layer_a_, layer_b_});
  std::string dir = work_->path() + "/single";
  single.Write(dir);
  pb::ImportImageResponse response;
  grpc::Status status = Import(dir, "renamed:v9", &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(std::vector<std::string>(response.names().begin(), response.names().end()),
            std::vector<std::string>{"renamed:v9"});
  EXPECT_EQ(response.chain_id(), chain_b_);

  pb::ImportImageResponse rejected;
  EXPECT_EQ(Import(layout_dir_, "one:name", &rejected).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(AdminServiceTest, ListImagesCountsChainLayersAndSize) {
  ImportAll();
  pb::ListLayersResponse layers = Layers();
  ASSERT_EQ(layers.layers_size(), 3);
  int64_t size_a = FindLayer(layers, chain_a_)->size_bytes();
  int64_t size_b = FindLayer(layers, chain_b_)->size_bytes();
  EXPECT_GT(size_a, 0);
  EXPECT_GT(size_b, 0);

  pb::ListImagesResponse images = Images();
  ASSERT_EQ(images.images_size(), 3);
  for (const pb::Image& image : images.images()) {
    if (image.name() == "app:1") {
      EXPECT_EQ(image.chain_id(), chain_b_);
      EXPECT_EQ(image.layers(), 2);
      EXPECT_EQ(image.size_bytes(), size_a + size_b);
      EXPECT_GT(image.created_unix(), 0);
    } else if (image.name() == "base:1") {
      EXPECT_EQ(image.chain_id(), chain_a_);
      EXPECT_EQ(image.layers(), 1);
      EXPECT_EQ(image.size_bytes(), size_a);
    } else {
      EXPECT_EQ(image.name(), "app:2");
      EXPECT_EQ(image.chain_id(), chain_c_);
    }
  }
}

TEST_F(AdminServiceTest, ListLayersShowsParentsReferencesImagesAndVolumes) {
  ImportAll();
  node::VolumeRecord volume = StagedVolume("pvc-1", "app:1");
  pb::ListLayersResponse layers = Layers();
  ASSERT_EQ(layers.layers_size(), 3);
  const pb::Layer* a = FindLayer(layers, chain_a_);
  const pb::Layer* b = FindLayer(layers, chain_b_);
  const pb::Layer* c = FindLayer(layers, chain_c_);
  ASSERT_TRUE(a && b && c);
  EXPECT_EQ(a->parent_chain_id(), "");
  EXPECT_EQ(b->parent_chain_id(), chain_a_);
  EXPECT_EQ(a->diff_id(), chain_a_);  // a base layer's ChainID is its DiffID
  EXPECT_EQ(b->diff_id(), OciLayout::DiffId(layer_b_));
  // A: image base:1 + child layers B and C. B: image app:1 + the volume.
  EXPECT_EQ(a->references(), 3);
  EXPECT_EQ(b->references(), 2);
  EXPECT_EQ(c->references(), 1);
  EXPECT_EQ(SortedStrings(a->image_names()), Sorted({"app:1", "app:2", "base:1"}));
  EXPECT_EQ(SortedStrings(b->image_names()), std::vector<std::string>{"app:1"});
  EXPECT_EQ(SortedStrings(a->volume_ids()), std::vector<std::string>{volume.id});
  EXPECT_EQ(SortedStrings(b->volume_ids()), std::vector<std::string>{volume.id});
  EXPECT_TRUE(c->volume_ids().empty());
  EXPECT_EQ(a->state(), "ready");
}

TEST_F(AdminServiceTest, ListVolumesShowsPublicationsDepthAndUsage) {
  ImportAll();
  node::VolumeRecord staged = StagedVolume("pvc-1", "app:1");
  auto idle = volumes_->Create(MakeParams("pvc-2", "", "empty"));
  ASSERT_TRUE(idle.ok()) << idle.status();
  pb::ListVolumesResponse list = Volumes();
  ASSERT_EQ(list.volumes_size(), 2);
  for (const pb::Volume& volume : list.volumes()) {
    if (volume.volume_id() == staged.id) {
      EXPECT_EQ(volume.name(), "pvc-1");
      EXPECT_EQ(volume.image(), "app:1");
      EXPECT_EQ(volume.chain_id(), chain_b_);
      EXPECT_EQ(volume.state(), "staged");
      EXPECT_EQ(volume.chain_depth(), 2);
      EXPECT_EQ(volume.staging_path(), work_->path() + "/staging-pvc-1");
      ASSERT_EQ(volume.target_paths_size(), 1);
      EXPECT_EQ(volume.target_paths(0), work_->path() + "/pod-pvc-1");
      // vfs writable layers are full copies of the chain: the image's files count.
      EXPECT_GT(volume.used_bytes(), 0);
    } else {
      EXPECT_EQ(volume.volume_id(), idle->id);
      EXPECT_EQ(volume.state(), "ready");
      EXPECT_EQ(volume.chain_depth(), 0);
      EXPECT_EQ(volume.used_bytes(), 0) << "not staged: not measured";
      EXPECT_TRUE(volume.target_paths().empty());
    }
  }
}

TEST_F(AdminServiceTest, ListVolumesSkipsUsageOfABusyVolume) {
  ImportAll();
  node::VolumeRecord staged = StagedVolume("pvc-1", "app:1");
  auto lock = locks_.TryAcquire(staged.id, "test");
  ASSERT_TRUE(lock.ok());
  pb::ListVolumesResponse list = Volumes();
  ASSERT_EQ(list.volumes_size(), 1);
  EXPECT_EQ(list.volumes(0).used_bytes(), 0);
}

TEST_F(AdminServiceTest, InspectResolvesVolumesImagesAndLayerPrefixes) {
  ImportAll();
  node::VolumeRecord volume = StagedVolume("pvc-1", "app:2");

  Json image;
  ASSERT_TRUE(Inspect("app:1", &image).ok());
  EXPECT_EQ(image["kind"], "image");
  EXPECT_EQ(image["chain_id"], chain_b_);
  ASSERT_EQ(image["layers"].size(), 2u);
  EXPECT_EQ(image["layers"][0]["chain_id"], chain_a_) << "base layer first";
  EXPECT_EQ(image["layers"][1]["diff_id"], OciLayout::DiffId(layer_b_));
  EXPECT_EQ(image["config"]["config"]["Labels"]["test.image"], "app:1");

  // The whole ChainID, a 12-digit prefix with "sha256:", and without it.
  for (const std::string& id : {chain_c_, chain_c_.substr(0, 7 + 12), chain_c_.substr(7, 12)}) {
    Json layer;
    grpc::Status status = Inspect(id, &layer);
    ASSERT_TRUE(status.ok()) << id << ": " << status.error_message();
    EXPECT_EQ(layer["kind"], "layer");
    EXPECT_EQ(layer["chain_id"], chain_c_);
    EXPECT_EQ(layer["parent_chain_id"], chain_a_);
    EXPECT_EQ(layer["top_of_images"], Json::array({"app:2"}));
    EXPECT_EQ(layer["volumes"], Json::array({volume.id}));
  }
  Json base;
  ASSERT_TRUE(Inspect(chain_a_, &base).ok());
  EXPECT_EQ(base["children"].size(), 2u);
  EXPECT_EQ(base["references"], 3);

  Json record;
  ASSERT_TRUE(Inspect(volume.id, &record).ok());
  EXPECT_EQ(record["kind"], "volume");
  EXPECT_EQ(record["name"], "pvc-1");
  EXPECT_EQ(record["state"], "staged");
  ASSERT_EQ(record["publications"].size(), 1u);
  EXPECT_EQ(record["publications"][0]["target_path"], work_->path() + "/pod-pvc-1");
  EXPECT_EQ(record["layers"].size(), 2u);
  EXPECT_TRUE(record.contains("usage"));
}

TEST_F(AdminServiceTest, InspectRejectsBadAndUnknownIds) {
  ImportAll();
  Json ignored;
  EXPECT_EQ(Inspect("", &ignored).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Inspect(chain_a_.substr(0, 7 + 11), &ignored).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT)
      << "11 hex digits are too few to name a layer";
  EXPECT_EQ(Inspect("nope:latest", &ignored).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Inspect("sha256:" + std::string(64, '0'), &ignored).error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Inspect(std::string("bad\nid"), &ignored).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(AdminServiceTest, RemoveImageThenGcDryRunThenGc) {
  ImportAll();
  ASSERT_TRUE(RemoveImage("app:1").ok());
  std::vector<std::string> names;
  pb::ListImagesResponse images = Images();
  for (const pb::Image& image : images.images()) names.push_back(image.name());
  EXPECT_EQ(Sorted(names), Sorted({"app:2", "base:1"}));
  EXPECT_EQ(LayerIds().size(), 3u) << "removing an image keeps its layers until gc";

  int64_t size_b = FindLayer(Layers(), chain_b_)->size_bytes();
  pb::GarbageCollectResponse dry = Gc(/*dry_run=*/true);
  EXPECT_EQ(SortedStrings(dry.removed_chain_ids()), std::vector<std::string>{chain_b_});
  EXPECT_EQ(dry.bytes_freed(), size_b);
  EXPECT_EQ(LayerIds().size(), 3u) << "a dry run removes nothing";

  pb::GarbageCollectResponse real = Gc(/*dry_run=*/false);
  EXPECT_EQ(SortedStrings(real.removed_chain_ids()), std::vector<std::string>{chain_b_});
  EXPECT_EQ(LayerIds(), Sorted({chain_a_, chain_c_}));
  EXPECT_TRUE(Gc(false).removed_chain_ids().empty()) << "nothing left to collect";
}

TEST_F(AdminServiceTest, GcKeepsLayersAVolumeUses) {
  ImportAll();
  node::VolumeRecord volume = StagedVolume("pvc-1", "app:2");
  for (const char* name : {"app:1", "app:2", "base:1"}) ASSERT_TRUE(RemoveImage(name).ok());
  EXPECT_TRUE(Images().images().empty());
  pb::GarbageCollectResponse collected = Gc(false);
  EXPECT_EQ(SortedStrings(collected.removed_chain_ids()), std::vector<std::string>{chain_b_});
  EXPECT_EQ(LayerIds(), Sorted({chain_a_, chain_c_})) << "the volume's chain stays";

  // Once the volume is gone, its whole chain goes in one collection.
  ASSERT_TRUE(volumes_->Unpublish(volume.id, work_->path() + "/pod-pvc-1").ok());
  ASSERT_TRUE(volumes_->Unstage(volume.id, volume.staging_path).ok());
  ASSERT_TRUE(volumes_->Delete(volume.id).ok());
  EXPECT_EQ(SortedStrings(Gc(false).removed_chain_ids()), Sorted({chain_a_, chain_c_}));
  EXPECT_TRUE(Layers().layers().empty());
}

TEST_F(AdminServiceTest, BadRequestsGetInvalidArgumentOrNotFound) {
  pb::ImportImageResponse response;
  grpc::Status empty = Import("", "", &response);
  EXPECT_EQ(empty.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(empty.error_message().find("path"), std::string::npos) << empty.error_message();
  EXPECT_EQ(Import("relative/layout", "", &response).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Import(layout_dir_ + "/../layout", "", &response).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Import(work_->path() + "/missing", "", &response).error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Import(layout_dir_, "bad name!", &response).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(RemoveImage("").error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(RemoveImage("never:imported").error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_TRUE(Images().images().empty()) << "failed imports leave no image";
  EXPECT_TRUE(Layers().layers().empty());
}

TEST_F(AdminServiceTest, VersionIsTheBuildVersion) {
  grpc::ClientContext context;
  pb::VersionResponse response;
  ASSERT_TRUE(stub_->Version(&context, {}, &response).ok());
  EXPECT_EQ(response.version(), kVersion);
}

TEST_F(AdminServiceTest, CommitNamesTheNewChainAndHistoryListsItFirst) {
  ImportAll();
  auto volume = volumes_->Create(MakeParams("pvc-h", "app:1", "x"));
  ASSERT_TRUE(volume.ok()) << volume.status();
  grpc::ClientContext context;
  pb::CommitRequest request;
  request.set_volume_id(volume->id);
  request.set_tag("app:snap");
  pb::CommitResponse commit;
  grpc::Status status = stub_->Commit(&context, request, &commit);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(commit.depth(), 3);
  EXPECT_TRUE(commit.previous_chain_id().empty());

  Json image;
  ASSERT_TRUE(Inspect("app:snap", &image).ok());
  EXPECT_EQ(image["chain_id"], commit.chain_id());
  // The commit keeps the source image's config.
  EXPECT_EQ(image["config"]["config"]["Labels"]["test.image"], "app:1");

  grpc::ClientContext history_context;
  pb::HistoryRequest history_request;
  history_request.set_ref("app:snap");
  pb::HistoryResponse history;
  status = stub_->History(&history_context, history_request, &history);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(history.layers_size(), 3);
  EXPECT_EQ(history.layers(0).chain_id(), commit.chain_id());
  EXPECT_EQ(history.layers(0).comment(), "commit of volume " + volume->id);
  EXPECT_EQ(history.layers(1).chain_id(), chain_b_);
  EXPECT_EQ(history.layers(1).comment(), "ADD layer1 /");
  EXPECT_EQ(history.layers(2).chain_id(), chain_a_);

  // The layer listing carries the comment.
  pb::ListLayersResponse listed = Layers();
  const pb::Layer* layer = FindLayer(listed, commit.chain_id());
  ASSERT_NE(layer, nullptr);
  EXPECT_EQ(layer->comment(), "commit of volume " + volume->id);
  EXPECT_EQ(layer->diff_id(), "");
}

TEST_F(AdminServiceTest, SnapshotsAreListedAndInspectable) {
  ImportAll();
  auto one = volumes_->Create(MakeParams("pvc-1", "base:1", "x"));
  auto two = volumes_->Create(MakeParams("pvc-2", "base:1", "x"));
  ASSERT_TRUE(one.ok() && two.ok());
  auto s1 = volumes_->CreateSnapshot(one->id, "s1");
  auto s2 = volumes_->CreateSnapshot(two->id, "s2");
  ASSERT_TRUE(s1.ok() && s2.ok());
  grpc::ClientContext context;
  pb::ListSnapshotsRequest request;
  request.set_volume_id(two->id);
  pb::ListSnapshotsResponse list;
  ASSERT_TRUE(stub_->ListSnapshots(&context, request, &list).ok());
  ASSERT_EQ(list.snapshots_size(), 1);
  EXPECT_EQ(list.snapshots(0).name(), "s2");
  EXPECT_EQ(list.snapshots(0).snapshot_id(), s2->id);
  EXPECT_EQ(list.snapshots(0).chain_id(), s2->chain_id);
  EXPECT_EQ(list.snapshots(0).state(), "ready");

  Json document;
  ASSERT_TRUE(Inspect("s1", &document).ok());
  EXPECT_EQ(document["kind"], "snapshot");
  EXPECT_EQ(document["id"], s1->id);
  EXPECT_EQ(document["layers"].size(), 2u);
  pb::ListLayersResponse listed = Layers();
  const pb::Layer* layer = FindLayer(listed, s1->chain_id);
  ASSERT_NE(layer, nullptr);
  EXPECT_EQ(SortedStrings(layer->snapshot_names()), std::vector<std::string>{"s1"});
}

TEST_F(AdminServiceTest, WithoutAnExporterHistoryDiffAndSaveAreUnimplemented) {
  csi::AdminService bare(layers_.get(), volumes_.get(), metadata_.get(), &locks_);
  pb::HistoryRequest history_request;
  history_request.set_ref("base:1");
  pb::HistoryResponse history;
  EXPECT_EQ(bare.History(nullptr, &history_request, &history).error_code(),
            grpc::StatusCode::UNIMPLEMENTED);
  pb::DiffRequest diff_request;
  diff_request.set_from_ref("a");
  diff_request.set_to_ref("b");
  pb::DiffResponse diff;
  EXPECT_EQ(bare.Diff(nullptr, &diff_request, &diff).error_code(), grpc::StatusCode::UNIMPLEMENTED);
  pb::SaveRequest save_request;
  save_request.set_ref("base:1");
  save_request.set_path("/tmp/x.tar");
  pb::SaveResponse save;
  EXPECT_EQ(bare.Save(nullptr, &save_request, &save).error_code(), grpc::StatusCode::UNIMPLEMENTED);
}

}  // namespace
}  // namespace strata::admintest
