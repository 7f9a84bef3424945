// End-to-end: the real strata-csi binary, driven over its unix socket exactly as kubelet, the
// external-provisioner and stratactl drive it, on real mounts (overlay, vfs, and btrfs with the
// store on a loop-file btrfs, tests/drivers/loop_filesystem.h). Needs root. The devmapper cases skip
// without a kernel device-mapper; tools/dm-vm/run.sh runs them in a QEMU guest, each on its own
// loop-file thin pool, with the sample image prepared on the host (STRATA_E2E_SAMPLES).

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "drivers/devmapper/devmapper_driver.h"
#include "drivers/registry.h"
#include "gtest/gtest.h"
#include "node/images/digest.h"
#include "node/paths.h"
#include "sys/devmapper.h"
#include "tests/drivers/loop_filesystem.h"
#include "tests/e2e/e2e_util.h"
#include "tests/e2e/plugin_process.h"

#ifndef STRATA_CSI_BINARY
#error "STRATA_CSI_BINARY must name the strata-csi binary"
#endif

namespace strata::e2e {
namespace {

using ::csi::v1::VolumeCapability;

// A digest of everything in a tree (names, types, modes, owners, sizes, contents, link targets),
// to prove that layers are never written to.
std::string TreeDigest(const std::string& dir) {
  static thread_local std::vector<std::string>* entries;
  static thread_local size_t prefix;
  std::vector<std::string> collected;
  entries = &collected;
  prefix = dir.size();
  nftw(
      dir.c_str(),
      [](const char* path, const struct stat* st, int, struct FTW*) -> int {
        std::ostringstream entry;
        entry << (path + prefix) << ' ' << std::oct << st->st_mode << std::dec << ' ' << st->st_uid
              << ':' << st->st_gid << ' ' << st->st_size << ' ' << major(st->st_rdev) << ','
              << minor(st->st_rdev);
        if (S_ISREG(st->st_mode)) entry << ' ' << images::Sha256Digest(Slurp(path));
        if (S_ISLNK(st->st_mode)) {
          char target[4096];
          ssize_t n = readlink(path, target, sizeof(target));
          entry << " -> " << std::string(target, n > 0 ? n : 0);
        }
        entries->push_back(entry.str());
        return 0;
      },
      32, FTW_PHYS);
  std::sort(collected.begin(), collected.end());
  std::string joined;
  for (const std::string& entry : collected) joined += entry + "\n";
  return images::Sha256Digest(joined);
}

VolumeCapability MountCapability(
    VolumeCapability::AccessMode::Mode mode = VolumeCapability::AccessMode::SINGLE_NODE_WRITER) {
  VolumeCapability capability;
  capability.mutable_mount();
  capability.mutable_access_mode()->set_mode(mode);
  return capability;
}

// The sample image (tools/make-sample-image.sh) as an OCI layout and as a docker-save archive,
// built once for the whole suite, or taken from STRATA_E2E_SAMPLES (made beforehand where umoci
// and skopeo are missing, as in the devmapper guest; left as found).
std::string g_samples;
bool g_samples_given = false;

class E2eEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    if (geteuid() != 0) return;
    if (const char* given = std::getenv("STRATA_E2E_SAMPLES"); given && *given) {
      g_samples = given;
      g_samples_given = true;
      return;
    }
    // One folder per test process: ctest runs the discovered tests in parallel processes.
    char pattern[] = "/var/tmp/strata-e2e-samples-XXXXXX";
    g_samples = mkdtemp(pattern);
    std::string script = std::string(STRATA_SOURCE_DIR) + "/tools/make-sample-image.sh";
    std::string command = script + " " + g_samples + "/layout v1 >/dev/null && skopeo copy -q " +
                          "oci:" + g_samples + "/layout:v1 docker-archive:" + g_samples +
                          "/docker-save.tar:sample/docker:v1 >/dev/null";
    ASSERT_EQ(std::system(command.c_str()), 0) << command;
  }
  void TearDown() override {
    if (!g_samples.empty() && !g_samples_given) (void)node::RemoveTree(g_samples);
  }
};
const auto* const kEnvironment = ::testing::AddGlobalTestEnvironment(new E2eEnvironment);

class E2eTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "end-to-end tests mount filesystems: run as root";
    char pattern[] = "/var/tmp/strata-e2e-XXXXXX";
    dir_ = mkdtemp(pattern);
    pods_ = dir_ + "/kubelet";
    ASSERT_TRUE(node::MakeDirs(pods_).ok());
    if (GetParam() == "btrfs") {
      // The store must be on btrfs: a loop-file filesystem for this test process.
      auto mount_point = strata::testing::SharedBtrfsMountPoint();
      if (!mount_point.ok())
        GTEST_SKIP() << "no btrfs for the btrfs driver: " << mount_point.status();
      std::string pattern = *mount_point + "/strata-e2e-XXXXXX";
      ASSERT_NE(mkdtemp(pattern.data()), nullptr) << pattern;
      store_dir_ = pattern;
    }
    if (GetParam() == "devmapper") {
      // A thin pool of its own on loop files (small: every byte is emulated in the guest).
      absl::Status available = sys::DeviceMapperAvailable();
      if (!available.ok())
        GTEST_SKIP() << "no device-mapper for the devmapper driver: " << available;
      pool_ = "strata-e2e-" + dir_.substr(dir_.rfind('-') + 1);
      absl::Status made =
          drivers::CreateLoopThinPool(kPoolDir, pool_, int64_t{512} << 20, int64_t{16} << 20);
      ASSERT_TRUE(made.ok()) << made;
    }
    plugin_ = NewPlugin();
    StartPlugin();
  }
  void TearDown() override {
    if (dir_.empty()) return;
    if (plugin_) plugin_->Kill();
    for (const std::string& dir : {dir_, store_dir_})
      if (!dir.empty()) UnmountAllUnder(dir);
    if (!pool_.empty()) {
      // Removes the pool's thin devices (every "<pool>-*"), the pool and its loop files.
      std::shared_ptr<sys::DeviceMapper> dm = sys::NewLibdmDeviceMapper();
      absl::Status removed = drivers::RemoveLoopThinPool(*dm, kPoolDir, pool_);
      EXPECT_TRUE(removed.ok()) << removed;
    }
    if (!store_dir_.empty()) {
      // btrfs layers are read-only subvolumes a tree walk cannot remove: through the driver.
      if (auto driver = drivers::NewDriver(GetParam(), plugin_->root()); driver.ok()) {
        for (const std::string& id : (*driver)->Walk().value_or(std::vector<std::string>{}))
          (void)(*driver)->Remove(id);
      }
      (void)node::RemoveTree(store_dir_);  // the loop filesystem goes with the process anyway
    }
    if (!HasFailure())
      (void)node::RemoveTree(dir_);
    else
      std::cerr << "kept " << dir_ << " for inspection (plugin.log)\n";
  }

  // A plugin on this test's socket and store.
  std::unique_ptr<PluginProcess> NewPlugin(std::vector<std::string> extra = {}) {
    if (!pool_.empty()) {
      extra.push_back("--dm-thinpool=" + pool_);
      extra.push_back("--dm-base-size=64MiB");
    }
    return std::make_unique<PluginProcess>(STRATA_CSI_BINARY, dir_, GetParam(),
                                           store_dir_.empty() ? "" : store_dir_ + "/root", extra);
  }

  void StartPlugin(const std::map<std::string, std::string>& env = {}) {
    std::string error;
    ASSERT_TRUE(plugin_->Start(env, &error)) << error << "\n" << Slurp(dir_ + "/plugin.log");
  }

  strata::admin::v1::ImportImageResponse Import(const std::string& path, const std::string& name) {
    strata::admin::v1::ImportImageRequest request;
    request.set_path(path);
    request.set_name(name);
    strata::admin::v1::ImportImageResponse response;
    grpc::Status status = plugin_->admin().ImportImage(CallContext(120).get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response;
  }

  grpc::Status Create(const std::string& name, const std::string& image,
                      ::csi::v1::CreateVolumeResponse* response, int64_t required = 0) {
    ::csi::v1::CreateVolumeRequest request;
    request.set_name(name);
    if (!image.empty()) (*request.mutable_parameters())["image"] = image;
    *request.add_volume_capabilities() = MountCapability();
    if (required) request.mutable_capacity_range()->set_required_bytes(required);
    return plugin_->controller().CreateVolume(CallContext().get(), request, response);
  }
  grpc::Status Stage(const std::string& id, const std::string& staging) {
    ::csi::v1::NodeStageVolumeRequest request;
    request.set_volume_id(id);
    request.set_staging_target_path(staging);
    *request.mutable_volume_capability() = MountCapability();
    ::csi::v1::NodeStageVolumeResponse response;
    return plugin_->node().NodeStageVolume(CallContext().get(), request, &response);
  }
  grpc::Status Publish(const std::string& id, const std::string& staging, const std::string& target,
                       bool read_only = false) {
    ::csi::v1::NodePublishVolumeRequest request;
    request.set_volume_id(id);
    request.set_staging_target_path(staging);
    request.set_target_path(target);
    request.set_readonly(read_only);
    *request.mutable_volume_capability() = MountCapability();
    ::csi::v1::NodePublishVolumeResponse response;
    return plugin_->node().NodePublishVolume(CallContext().get(), request, &response);
  }
  grpc::Status Unpublish(const std::string& id, const std::string& target) {
    ::csi::v1::NodeUnpublishVolumeRequest request;
    request.set_volume_id(id);
    request.set_target_path(target);
    ::csi::v1::NodeUnpublishVolumeResponse response;
    return plugin_->node().NodeUnpublishVolume(CallContext().get(), request, &response);
  }
  grpc::Status Unstage(const std::string& id, const std::string& staging) {
    ::csi::v1::NodeUnstageVolumeRequest request;
    request.set_volume_id(id);
    request.set_staging_target_path(staging);
    ::csi::v1::NodeUnstageVolumeResponse response;
    return plugin_->node().NodeUnstageVolume(CallContext().get(), request, &response);
  }
  grpc::Status Delete(const std::string& id) {
    ::csi::v1::DeleteVolumeRequest request;
    request.set_volume_id(id);
    ::csi::v1::DeleteVolumeResponse response;
    return plugin_->controller().DeleteVolume(CallContext().get(), request, &response);
  }

  grpc::Status Snapshot(const std::string& volume_id, const std::string& name,
                        ::csi::v1::CreateSnapshotResponse* response) {
    ::csi::v1::CreateSnapshotRequest request;
    request.set_source_volume_id(volume_id);
    request.set_name(name);
    return plugin_->controller().CreateSnapshot(CallContext().get(), request, response);
  }
  grpc::Status DeleteSnapshot(const std::string& id) {
    ::csi::v1::DeleteSnapshotRequest request;
    request.set_snapshot_id(id);
    ::csi::v1::DeleteSnapshotResponse response;
    return plugin_->controller().DeleteSnapshot(CallContext().get(), request, &response);
  }
  grpc::Status CreateFrom(const std::string& name, const std::string& snapshot_id,
                          const std::string& volume_id, ::csi::v1::CreateVolumeResponse* response,
                          int64_t required = 0) {
    ::csi::v1::CreateVolumeRequest request;
    request.set_name(name);
    *request.add_volume_capabilities() = MountCapability();
    if (!snapshot_id.empty())
      request.mutable_volume_content_source()->mutable_snapshot()->set_snapshot_id(snapshot_id);
    if (!volume_id.empty())
      request.mutable_volume_content_source()->mutable_volume()->set_volume_id(volume_id);
    if (required) request.mutable_capacity_range()->set_required_bytes(required);
    return plugin_->controller().CreateVolume(CallContext().get(), request, response);
  }
  // Entries (files and dirs) in the store's layer folder: what commits leave behind. On the
  // flat layouts (vfs, btrfs) volumes' writable trees sit there too.
  int LayerEntries() const {
    int count = 0;
    if (DIR* d = opendir(LayersDir().c_str())) {
      while (dirent* e = readdir(d)) count += e->d_name[0] != '.';
      closedir(d);
    }
    return count;
  }

  // The kernel is told to publish the sample image; this checks what a pod would see.
  void ExpectSampleImageContent(const std::string& mount) {
    EXPECT_EQ(Slurp(mount + "/etc/motd"), "Welcome to a Strata layered volume.\n");
    EXPECT_FALSE(Exists(mount + "/data/readme")) << "layer 2's whiteout must hide it";
    EXPECT_TRUE(Exists(mount + "/data")) << "only the file went, not its directory";
    EXPECT_FALSE(Exists(mount + "/app/config/a.conf")) << "layer 2 replaced app/config";
    EXPECT_EQ(Slurp(mount + "/app/config/c.conf"), "mode=c\n");
    EXPECT_EQ(Slurp(mount + "/app/current"), "1.0.0\n") << "symlink from layer 3";
    struct stat st;
    ASSERT_EQ(stat((mount + "/bin/hello").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0755u);
  }

  // Where the driver keeps its layers (drivers/*/*_driver.h): overlay separates layers from
  // actives; vfs and btrfs keep both flat in <root>/<driver>/<id>; devmapper keeps one record
  // per layer or active device in <root>/devmapper/devices/<id>.json (its base device is not
  // counted there), so on devmapper the digest covers records, not contents.
  std::string LayersDir() const {
    if (GetParam() == "overlay") return plugin_->root() + "/overlay/layers";
    if (GetParam() == "devmapper") return plugin_->root() + "/devmapper/devices";
    return plugin_->root() + "/" + GetParam();
  }
  static constexpr char kPoolDir[] = "/var/tmp/strata-e2e-pools";
  std::string pool_;  // the devmapper test's thin pool

  std::string dir_;
  std::string store_dir_;  // holds the store (root) when it must be elsewhere than dir_
  std::string pods_;
  std::unique_ptr<PluginProcess> plugin_;
};

TEST_P(E2eTest, IdentityAndCapabilities) {
  ::csi::v1::GetPluginInfoResponse info;
  ASSERT_TRUE(plugin_->identity().GetPluginInfo(CallContext().get(), {}, &info).ok());
  EXPECT_EQ(info.name(), "strata.csi.dev");
  EXPECT_FALSE(info.vendor_version().empty());
  ::csi::v1::GetPluginCapabilitiesResponse plugin_caps;
  ASSERT_TRUE(
      plugin_->identity().GetPluginCapabilities(CallContext().get(), {}, &plugin_caps).ok());
  std::set<int> services;
  for (const auto& capability : plugin_caps.capabilities())
    services.insert(capability.service().type());
  EXPECT_TRUE(services.count(::csi::v1::PluginCapability::Service::CONTROLLER_SERVICE));
  EXPECT_TRUE(
      services.count(::csi::v1::PluginCapability::Service::VOLUME_ACCESSIBILITY_CONSTRAINTS));
  ::csi::v1::NodeGetInfoResponse node_info;
  ASSERT_TRUE(plugin_->node().NodeGetInfo(CallContext().get(), {}, &node_info).ok());
  EXPECT_EQ(node_info.node_id(), "e2e-node");
  EXPECT_EQ(node_info.accessible_topology().segments().at("topology.strata.dev/node"), "e2e-node");
  ::csi::v1::NodeGetCapabilitiesResponse node_caps;
  ASSERT_TRUE(plugin_->node().NodeGetCapabilities(CallContext().get(), {}, &node_caps).ok());
  EXPECT_EQ(node_caps.capabilities_size(), 5);  // stage, stats, multi-writer, condition, expand
  ::csi::v1::GetCapacityResponse capacity;
  ASSERT_TRUE(plugin_->controller().GetCapacity(CallContext().get(), {}, &capacity).ok());
  EXPECT_GT(capacity.available_capacity(), 0);
}

TEST_P(E2eTest, ImageVolumeLifecycleAsKubeletDrivesIt) {
  auto oci = Import(g_samples + "/layout", "sample:oci");
  EXPECT_EQ(oci.layers_new(), 3);
  // The same image as `docker save` writes it (skopeo names it docker.io/...): every layer is
  // already stored, by ChainID, so nothing is stored twice.
  auto docker = Import(g_samples + "/docker-save.tar", "");
  ASSERT_EQ(docker.names_size(), 1);
  EXPECT_EQ(docker.names(0), "docker.io/sample/docker:v1");
  EXPECT_EQ(docker.layers_total(), 3);
  EXPECT_EQ(docker.layers_new(), 0);
  EXPECT_EQ(docker.chain_id(), oci.chain_id());
  std::string layers_before = TreeDigest(LayersDir());

  for (const std::string image : {"sample:oci", "docker.io/sample/docker:v1"}) {
    SCOPED_TRACE(image);
    ::csi::v1::CreateVolumeResponse created;
    grpc::Status status = Create("pvc-" + std::to_string(image.size()), image, &created);
    ASSERT_TRUE(status.ok()) << status.error_message();
    const std::string id = created.volume().volume_id();
    EXPECT_EQ(created.volume().accessible_topology(0).segments().at("topology.strata.dev/node"),
              "e2e-node");
    std::string staging = pods_ + "/staging-" + id;
    std::string target = pods_ + "/pod-a-" + id;
    std::string readonly_target = pods_ + "/pod-b-" + id;
    ASSERT_TRUE(Stage(id, staging).ok());
    ASSERT_TRUE(Stage(id, staging).ok()) << "retry of a completed stage";
    ASSERT_TRUE(Publish(id, staging, target).ok());
    ASSERT_TRUE(Publish(id, staging, target).ok()) << "retry of a completed publish";
    ASSERT_TRUE(Publish(id, staging, readonly_target, /*read_only=*/true).ok());
    ExpectSampleImageContent(target);

    // A pod writes: a new file and a change to a lower file (copy-up).
    Spit(target + "/data/new.txt", "written by pod a");
    Spit(target + "/etc/motd", "changed by pod a\n");
    EXPECT_EQ(Slurp(readonly_target + "/data/new.txt"), "written by pod a");
    EXPECT_EQ(open((readonly_target + "/x").c_str(), O_CREAT | O_WRONLY, 0644), -1);
    EXPECT_EQ(errno, EROFS);

    ::csi::v1::NodeGetVolumeStatsRequest stats_request;
    stats_request.set_volume_id(id);
    stats_request.set_volume_path(target);
    ::csi::v1::NodeGetVolumeStatsResponse stats;
    ASSERT_TRUE(
        plugin_->node().NodeGetVolumeStats(CallContext().get(), stats_request, &stats).ok());
    // Bytes, then inodes where the filesystem counts them (btrfs has no inode table: none).
    ASSERT_EQ(stats.usage_size(), GetParam() == "btrfs" ? 1 : 2);
    EXPECT_EQ(stats.usage(0).unit(), ::csi::v1::VolumeUsage::BYTES);
    EXPECT_GT(stats.usage(0).used(), 0);
    if (stats.usage_size() == 2) {
      EXPECT_EQ(stats.usage(1).unit(), ::csi::v1::VolumeUsage::INODES);
      EXPECT_GT(stats.usage(1).total(), 0);
    }
    EXPECT_FALSE(stats.volume_condition().abnormal());

    ASSERT_TRUE(Unpublish(id, readonly_target).ok());
    ASSERT_TRUE(Unpublish(id, target).ok());
    ASSERT_TRUE(Unpublish(id, target).ok()) << "retry of a completed unpublish";
    EXPECT_FALSE(Exists(target)) << "the target directory is removed";
    ASSERT_TRUE(Unstage(id, staging).ok());
    ASSERT_TRUE(Unstage(id, staging).ok());
    EXPECT_TRUE(MountsUnder(pods_).empty());

    // The data stays in the volume across unstage and a new stage.
    ASSERT_TRUE(Stage(id, staging).ok());
    EXPECT_EQ(Slurp(staging + "/data/new.txt"), "written by pod a");
    EXPECT_EQ(Slurp(staging + "/etc/motd"), "changed by pod a\n");
    ASSERT_TRUE(Unstage(id, staging).ok());
    ASSERT_TRUE(Delete(id).ok());
    ASSERT_TRUE(Delete(id).ok()) << "retry of a completed delete";
  }
  EXPECT_EQ(TreeDigest(LayersDir()), layers_before)
      << "writes must land only in the volumes' writable layers";
  EXPECT_TRUE(MountsUnder(dir_).empty());
}

TEST_P(E2eTest, BadRequestsGetTheSpecCodesAndChangeNothing) {
  Import(g_samples + "/layout", "sample:oci");
  ::csi::v1::CreateVolumeResponse created;
  EXPECT_EQ(Create("", "sample:oci", &created).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  grpc::Status missing = Create("pvc-missing", "nope:1", &created);
  EXPECT_EQ(missing.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_NE(missing.error_message().find("nope:1"), std::string::npos);
  {
    ::csi::v1::CreateVolumeRequest request;
    request.set_name("pvc-bad-param");
    (*request.mutable_parameters())["color"] = "blue";
    *request.add_volume_capabilities() = MountCapability();
    EXPECT_EQ(
        plugin_->controller().CreateVolume(CallContext().get(), request, &created).error_code(),
        grpc::StatusCode::INVALID_ARGUMENT);
    request.clear_parameters();
    request.clear_volume_capabilities();
    EXPECT_EQ(
        plugin_->controller().CreateVolume(CallContext().get(), request, &created).error_code(),
        grpc::StatusCode::INVALID_ARGUMENT)
        << "no capabilities";
    *request.add_volume_capabilities() =
        MountCapability(VolumeCapability::AccessMode::MULTI_NODE_MULTI_WRITER);
    EXPECT_EQ(
        plugin_->controller().CreateVolume(CallContext().get(), request, &created).error_code(),
        grpc::StatusCode::INVALID_ARGUMENT)
        << "multi-node access on a node-local volume";
  }
  ASSERT_TRUE(Create("pvc-1", "sample:oci", &created).ok());
  const std::string id = created.volume().volume_id();
  ::csi::v1::CreateVolumeResponse other;
  EXPECT_EQ(Create("pvc-1", "", &other).error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_EQ(Create("pvc-1", "sample:oci", &other, 1 << 20).error_code(),
            grpc::StatusCode::ALREADY_EXISTS);

  std::string staging = pods_ + "/staging";
  EXPECT_EQ(Stage("vol-unknown", staging).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Stage(id, "relative/path").error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Stage(id, pods_ + "/../escape").error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Stage(id, plugin_->root() + "/overlay").error_code(),
            grpc::StatusCode::INVALID_ARGUMENT)
      << "never mount over the store";
  {
    ::csi::v1::NodeStageVolumeRequest request;
    request.set_volume_id(id);
    request.set_staging_target_path(staging);
    ::csi::v1::NodeStageVolumeResponse response;
    EXPECT_EQ(plugin_->node().NodeStageVolume(CallContext().get(), request, &response).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT)
        << "no capability";
    request.mutable_volume_capability()->mutable_block();
    request.mutable_volume_capability()->mutable_access_mode()->set_mode(
        VolumeCapability::AccessMode::SINGLE_NODE_WRITER);
    EXPECT_EQ(plugin_->node().NodeStageVolume(CallContext().get(), request, &response).error_code(),
              grpc::StatusCode::FAILED_PRECONDITION)
        << "block access exceeds what Strata offers";
  }
  EXPECT_EQ(Publish(id, staging, pods_ + "/pod").error_code(),
            grpc::StatusCode::FAILED_PRECONDITION)
      << "publish before stage";
  EXPECT_EQ(Publish(id, "", pods_ + "/pod").error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  // A symlinked target must not be followed.
  ASSERT_EQ(symlink("/etc", (pods_ + "/evil").c_str()), 0);
  ASSERT_TRUE(Stage(id, staging).ok());
  EXPECT_EQ(Publish(id, staging, pods_ + "/evil").error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Delete(id).error_code(), grpc::StatusCode::FAILED_PRECONDITION) << "still staged";
  EXPECT_EQ(Delete("").error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(Delete("vol-never-existed").ok());
  {
    ::csi::v1::ListVolumesRequest request;
    request.set_starting_token("bogus");
    ::csi::v1::ListVolumesResponse response;
    EXPECT_EQ(
        plugin_->controller().ListVolumes(CallContext().get(), request, &response).error_code(),
        grpc::StatusCode::ABORTED);
  }
  // None of that changed the volume.
  ::csi::v1::ListVolumesResponse listed;
  ASSERT_TRUE(plugin_->controller().ListVolumes(CallContext().get(), {}, &listed).ok());
  ASSERT_EQ(listed.entries_size(), 1);
  EXPECT_EQ(listed.entries(0).volume().volume_id(), id);
  ASSERT_TRUE(Unstage(id, staging).ok());
  ASSERT_TRUE(Delete(id).ok());
}

TEST_P(E2eTest, ListVolumesPagesThroughEveryVolumeOnce) {
  std::set<std::string> made;
  for (int i = 0; i < 7; ++i) {
    ::csi::v1::CreateVolumeResponse created;
    ASSERT_TRUE(Create("pvc-page-" + std::to_string(i), "", &created).ok());
    made.insert(created.volume().volume_id());
  }
  std::set<std::string> seen;
  std::string token;
  int pages = 0;
  do {
    ::csi::v1::ListVolumesRequest request;
    request.set_max_entries(3);
    request.set_starting_token(token);
    ::csi::v1::ListVolumesResponse response;
    ASSERT_TRUE(plugin_->controller().ListVolumes(CallContext().get(), request, &response).ok());
    EXPECT_LE(response.entries_size(), 3);
    for (const auto& entry : response.entries())
      EXPECT_TRUE(seen.insert(entry.volume().volume_id()).second) << "listed twice";
    token = response.next_token();
    ++pages;
  } while (!token.empty() && pages < 10);
  EXPECT_EQ(pages, 3);
  EXPECT_EQ(seen, made);
}

TEST_P(E2eTest, EphemeralInlineVolume) {
  Import(g_samples + "/layout", "sample:oci");
  ::csi::v1::NodePublishVolumeRequest request;
  request.set_volume_id("csi-ephemeral-1");
  request.set_target_path(pods_ + "/inline");
  *request.mutable_volume_capability() = MountCapability();
  (*request.mutable_volume_context())["csi.storage.k8s.io/ephemeral"] = "true";
  (*request.mutable_volume_context())["image"] = "sample:oci";
  ::csi::v1::NodePublishVolumeResponse response;
  grpc::Status status = plugin_->node().NodePublishVolume(CallContext().get(), request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ExpectSampleImageContent(pods_ + "/inline");
  Spit(pods_ + "/inline/scratch", "temporary");
  ASSERT_TRUE(Unpublish("csi-ephemeral-1", pods_ + "/inline").ok());
  EXPECT_TRUE(MountsUnder(dir_).empty());
  // Gone with its pod: a new inline volume with the same id starts clean.
  ASSERT_TRUE(plugin_->node().NodePublishVolume(CallContext().get(), request, &response).ok());
  EXPECT_FALSE(Exists(pods_ + "/inline/scratch"));
  ASSERT_TRUE(Unpublish("csi-ephemeral-1", pods_ + "/inline").ok());
}

TEST_P(E2eTest, SigtermStopsCleanlyAndARestartSeesEverything) {
  Import(g_samples + "/layout", "sample:oci");
  ::csi::v1::CreateVolumeResponse created;
  ASSERT_TRUE(Create("pvc-1", "sample:oci", &created).ok());
  const std::string id = created.volume().volume_id();
  std::string staging = pods_ + "/staging";
  ASSERT_TRUE(Stage(id, staging).ok());
  ASSERT_TRUE(Publish(id, staging, pods_ + "/pod").ok());
  Spit(pods_ + "/pod/kept", "survives restarts");
  EXPECT_EQ(plugin_->Stop(), 0);
  EXPECT_FALSE(Exists(plugin_->csi_socket())) << "socket removed on clean exit";
  EXPECT_EQ(Slurp(pods_ + "/pod/kept"), "survives restarts") << "mounts outlive the plugin";
  StartPlugin();
  ASSERT_TRUE(Publish(id, staging, pods_ + "/pod").ok());
  ASSERT_TRUE(Unpublish(id, pods_ + "/pod").ok());
  ASSERT_TRUE(Unstage(id, staging).ok());
  ASSERT_TRUE(Stage(id, staging).ok());
  EXPECT_EQ(Slurp(staging + "/kept"), "survives restarts");
  ASSERT_TRUE(Unstage(id, staging).ok());
  ASSERT_TRUE(Delete(id).ok());
}

TEST_P(E2eTest, ASecondPluginOnTheSameSocketRefusesToStart) {
  std::unique_ptr<PluginProcess> second = NewPlugin();
  EXPECT_EQ(second->RunExpectingExit(60000), 1);
  EXPECT_NE(Slurp(dir_ + "/plugin-second.log").find("another"), std::string::npos)
      << Slurp(dir_ + "/plugin-second.log");
  // The first one is undisturbed.
  ::csi::v1::ProbeResponse probe;
  EXPECT_TRUE(plugin_->identity().Probe(CallContext().get(), {}, &probe).ok());
  // And a stale socket left by a killed plugin is replaced.
  plugin_->Kill();
  EXPECT_TRUE(Exists(plugin_->csi_socket()));
  StartPlugin();
}

// kill -9 at every step of a volume's life, then restart and retry as kubelet would: the walk
// completes, the pod's data survives, and nothing is leaked.
TEST_P(E2eTest, KillNineAtEveryStepThenRetrySucceeds) {
  Import(g_samples + "/layout", "sample:oci");
  const std::vector<std::string> crash_points = {
      "create-after-intent",   "create-after-prepare", "stage-after-intent",
      "stage-after-mount",     "publish-after-mount",  "unstage-after-intent",
      "unstage-after-unmount", "delete-after-intent",  "delete-after-remove"};
  for (const std::string& point : crash_points) {
    SCOPED_TRACE(point);
    plugin_->Kill();
    StartPlugin({{"STRATA_CRASH_POINT", point}});
    std::string name = "pvc-" + point;
    std::string staging = pods_ + "/staging-" + point;
    std::string target = pods_ + "/pod-" + point;
    std::string volume_id;
    bool crashed = false;
    // Each step is retried after a restart until it succeeds, exactly as kubelet retries.
    auto step = [&](const std::function<grpc::Status()>& call) {
      grpc::Status status = call();
      if (status.ok()) return;
      ASSERT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
      ASSERT_TRUE(plugin_->WaitForDeath(60000));
      ASSERT_FALSE(crashed) << "crashed twice";
      crashed = true;
      StartPlugin();
      status = call();
      ASSERT_TRUE(status.ok()) << status.error_message();
    };
    step([&] {
      ::csi::v1::CreateVolumeResponse created;
      grpc::Status status = Create(name, "sample:oci", &created);
      volume_id = created.volume().volume_id();
      return status;
    });
    if (HasFatalFailure()) return;
    step([&] { return Stage(volume_id, staging); });
    step([&] { return Publish(volume_id, staging, target); });
    if (HasFatalFailure()) return;
    Spit(target + "/precious", point);
    step([&] { return Unpublish(volume_id, target); });
    step([&] { return Unstage(volume_id, staging); });
    if (HasFatalFailure()) return;
    // The pod's data is intact: stage again (no crash point armed now) and read it.
    if (!crashed) {
      plugin_->Kill();
      StartPlugin();
    }
    ASSERT_TRUE(Stage(volume_id, staging).ok());
    EXPECT_EQ(Slurp(staging + "/precious"), point);
    ASSERT_TRUE(Unstage(volume_id, staging).ok());
    if (point.rfind("delete", 0) == 0) {
      plugin_->Kill();
      StartPlugin({{"STRATA_CRASH_POINT", point}});
      crashed = false;
    }
    step([&] { return Delete(volume_id); });
    if (HasFatalFailure()) return;
    EXPECT_TRUE(crashed) << "the crash point was never reached";
  }
  // Nothing leaked: no mounts, no writable layers, only the image's layers.
  plugin_->Kill();
  StartPlugin();
  EXPECT_TRUE(MountsUnder(dir_).empty());
  ::csi::v1::ListVolumesResponse listed;
  ASSERT_TRUE(plugin_->controller().ListVolumes(CallContext().get(), {}, &listed).ok());
  EXPECT_EQ(listed.entries_size(), 0);
  if (GetParam() == "overlay") {
    std::string active = plugin_->root() + "/overlay/active";
    int left = 0;
    if (DIR* d = opendir(active.c_str())) {
      while (dirent* e = readdir(d)) left += e->d_name[0] != '.';
      closedir(d);
    }
    EXPECT_EQ(left, 0) << "writable layers leaked under " << active;
  } else {
    EXPECT_EQ(LayerEntries(), 3) << "only the image's layers are left under " << LayersDir();
  }
}

// A delete killed after its intent or after removing the writable layer: the retried delete
// (and the recovery before it) frees the volume's commit layers too, with no manual gc.
TEST_P(E2eTest, KillDuringDeleteLeaksNoCommitLayers) {
  Import(g_samples + "/layout", "sample:oci");
  const int image_layers = LayerEntries();
  for (const std::string point : {"delete-after-intent", "delete-after-remove"}) {
    SCOPED_TRACE(point);
    ::csi::v1::CreateVolumeResponse created;
    ASSERT_TRUE(Create("pvc-" + point, "sample:oci", &created).ok());
    const std::string volume_id = created.volume().volume_id();
    // A snapshot of the unmounted volume rebases it onto a commit layer; deleting the
    // snapshot leaves that layer alive only through the volume's chain.
    ::csi::v1::CreateSnapshotResponse snapshot;
    ASSERT_TRUE(Snapshot(volume_id, "snap-" + point, &snapshot).ok());
    ASSERT_TRUE(DeleteSnapshot(snapshot.snapshot().snapshot_id()).ok());
    ASSERT_GT(LayerEntries(), image_layers) << "the commit layer is in the volume's chain";
    plugin_->Kill();
    StartPlugin({{"STRATA_CRASH_POINT", point}});
    grpc::Status status = Delete(volume_id);
    ASSERT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
    ASSERT_TRUE(plugin_->WaitForDeath(60000));
    StartPlugin();
    status = Delete(volume_id);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(LayerEntries(), image_layers) << "commit layers leaked under " << LayersDir();
  }
}

// Issue 8: a lost database (WAL and shm removed after kill -9, or strata.db itself) must not
// delete anything. Start-up refuses and names the flag; a start with --recover-unknown=readopt
// brings back every volume (ids, names, chains) with byte-identical trees, the snapshots
// restorable, and the published pod's mount working throughout.
class LostDatabaseE2eTest : public E2eTest {
 protected:
  void Run(bool remove_db_file, int count) {
    Import(g_samples + "/layout", "sample:oci");
    std::vector<std::string> ids;
    std::map<std::string, std::string> digests;  // volume id -> TreeDigest of its staged tree
    const std::string target = pods_ + "/pod";
    std::string published;
    std::string snapshot_id;
    std::string snapshot_digest;
    for (int i = 0; i < count; ++i) {
      ::csi::v1::CreateVolumeResponse created;
      grpc::Status status = Create("pvc-" + std::to_string(i), "sample:oci", &created);
      ASSERT_TRUE(status.ok()) << status.error_message();
      const std::string id = created.volume().volume_id();
      ids.push_back(id);
      const std::string staging = pods_ + "/staging-" + std::to_string(i);
      ASSERT_TRUE(Stage(id, staging).ok());
      Spit(staging + "/data/volume.txt", "volume " + std::to_string(i));
      if (i == 0) {
        ASSERT_TRUE(Publish(id, staging, target).ok());
        for (int f = 0; f < 20; ++f)
          Spit(target + "/data/pod-" + std::to_string(f), std::string(1000 + f, 'a' + f % 26));
        published = id;
      }
      if (i == 1) {  // a snapshot of a mounted volume: the volume keeps its writable layer
        ::csi::v1::CreateSnapshotResponse snapshot;
        ASSERT_TRUE(Snapshot(id, "snap-live", &snapshot).ok());
        snapshot_id = snapshot.snapshot().snapshot_id();
        snapshot_digest = TreeDigest(staging);
        Spit(staging + "/data/after-snapshot.txt", "later");
      }
      digests[id] = TreeDigest(staging);
      if (i == 0) continue;
      ASSERT_TRUE(Unstage(id, staging).ok());
      if (i == 2) {  // a snapshot of an unmounted volume: it is rebased onto the new layer
        ::csi::v1::CreateSnapshotResponse snapshot;
        ASSERT_TRUE(Snapshot(id, "snap-rebased", &snapshot).ok());
      }
    }
    const std::string pod_digest = TreeDigest(target);

    plugin_->Kill();
    const std::string db = plugin_->root() + "/strata.db";
    (void)unlink((db + "-wal").c_str());
    (void)unlink((db + "-shm").c_str());
    if (remove_db_file) {
      ASSERT_EQ(unlink(db.c_str()), 0);
    }
    EXPECT_EQ(TreeDigest(target), pod_digest) << "the pod's files outlive the plugin";

    std::unique_ptr<PluginProcess> refused = NewPlugin();
    EXPECT_EQ(refused->RunExpectingExit(90000), 1);
    const std::string log = Slurp(dir_ + "/plugin-second.log");
    EXPECT_NE(log.find("--recover-unknown=readopt"), std::string::npos) << log;
    EXPECT_NE(log.find("backup"), std::string::npos) << log;
    EXPECT_EQ(TreeDigest(target), pod_digest) << "a refused start touches nothing";

    plugin_ = NewPlugin({"--recover-unknown=readopt"});
    auto started = std::chrono::steady_clock::now();
    StartPlugin();
    double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    std::cout << "re-adopted " << count << " volumes on " << GetParam() << " in " << seconds
              << " s (start to ready)\n";
    EXPECT_EQ(TreeDigest(target), pod_digest) << "the published mount kept its files";

    strata::admin::v1::QuarantineListResponse quarantined;
    ASSERT_TRUE(plugin_->admin().QuarantineList(CallContext().get(), {}, &quarantined).ok());
    EXPECT_EQ(quarantined.entries_size(), 0) << "every piece of content was labelled";

    ::csi::v1::ListVolumesResponse listed;
    ASSERT_TRUE(plugin_->controller().ListVolumes(CallContext().get(), {}, &listed).ok());
    std::set<std::string> listed_ids;
    for (const auto& entry : listed.entries()) listed_ids.insert(entry.volume().volume_id());
    int lost = 0;
    for (int i = 0; i < count; ++i) {
      const std::string& id = ids[i];
      EXPECT_TRUE(listed_ids.count(id)) << id;
      const std::string staging = pods_ + "/staging-" + std::to_string(i);
      // kubelet retries: stage (a no-op for the published one, whose mount survived).
      grpc::Status staged = Stage(id, staging);
      ASSERT_TRUE(staged.ok()) << id << ": " << staged.error_message();
      if (TreeDigest(staging) != digests[id]) ++lost;
      EXPECT_EQ(TreeDigest(staging), digests[id]) << "volume " << i << " differs";
    }
    std::cout << "volumes whose tree differs after re-adoption: " << lost << "\n";
    ASSERT_TRUE(Publish(published, pods_ + "/staging-0", target).ok());
    EXPECT_EQ(TreeDigest(target), pod_digest);

    // The snapshot restores to what it held.
    ::csi::v1::CreateVolumeResponse restored;
    grpc::Status status = CreateFrom("pvc-restored", snapshot_id, "", &restored);
    ASSERT_TRUE(status.ok()) << status.error_message();
    const std::string restored_staging = pods_ + "/staging-restored";
    ASSERT_TRUE(Stage(restored.volume().volume_id(), restored_staging).ok());
    EXPECT_EQ(TreeDigest(restored_staging), snapshot_digest);
    // And the store works as before: a new volume, a delete.
    ::csi::v1::CreateVolumeResponse fresh;
    ASSERT_TRUE(Create("pvc-new", "sample:oci", &fresh).ok());
    ASSERT_TRUE(Delete(fresh.volume().volume_id()).ok());
  }
};

TEST_P(LostDatabaseE2eTest, LostWalRefusesThenReadoptsEveryVolumeByteIdentical) {
  Run(/*remove_db_file=*/false, GetParam() == "overlay" ? 100 : 12);
}

TEST_P(LostDatabaseE2eTest, LostDatabaseFileRefusesThenReadoptsEveryVolumeByteIdentical) {
  Run(/*remove_db_file=*/true, 6);
}

// Snapshots are commits: what the external-snapshotter and the provisioner do for a
// VolumeSnapshot, a PVC restored from it, and a PVC cloned from another.
TEST_P(E2eTest, SnapshotRestoreAndCloneAsTheSidecarsDoThem) {
  Import(g_samples + "/layout", "sample:oci");
  ::csi::v1::CreateVolumeResponse created;
  ASSERT_TRUE(Create("pvc-src", "sample:oci", &created).ok());
  const std::string source = created.volume().volume_id();
  const std::string staging = pods_ + "/staging-src";
  ASSERT_TRUE(Stage(source, staging).ok());
  Spit(staging + "/data/state.txt", "version 1");
  ASSERT_EQ(unlink((staging + "/etc/motd").c_str()), 0);

  ::csi::v1::CreateSnapshotResponse snap1;
  grpc::Status status = Snapshot(source, "snap-1", &snap1);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_TRUE(snap1.snapshot().ready_to_use());
  EXPECT_EQ(snap1.snapshot().source_volume_id(), source);
  EXPECT_GT(snap1.snapshot().size_bytes(), 0);
  EXPECT_GT(snap1.snapshot().creation_time().seconds(), 0);
  ::csi::v1::CreateSnapshotResponse again;
  ASSERT_TRUE(Snapshot(source, "snap-1", &again).ok()) << "CreateSnapshot is idempotent";
  EXPECT_EQ(again.snapshot().snapshot_id(), snap1.snapshot().snapshot_id());

  // The volume keeps working on its own writable layer; later writes are not in snap-1.
  Spit(staging + "/data/state.txt", "version 2");
  Spit(staging + "/data/later.txt", "after the snapshot");

  ::csi::v1::CreateVolumeResponse restored;
  status = CreateFrom("pvc-restored", snap1.snapshot().snapshot_id(), "", &restored);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(restored.volume().content_source().snapshot().snapshot_id(),
            snap1.snapshot().snapshot_id());
  const std::string restored_staging = pods_ + "/staging-restored";
  ASSERT_TRUE(Stage(restored.volume().volume_id(), restored_staging).ok());
  EXPECT_EQ(Slurp(restored_staging + "/data/state.txt"), "version 1");
  EXPECT_FALSE(Exists(restored_staging + "/data/later.txt"));
  EXPECT_FALSE(Exists(restored_staging + "/etc/motd")) << "the deletion was committed too";
  EXPECT_EQ(Slurp(restored_staging + "/app/config/c.conf"), "mode=c\n") << "image underneath";

  ::csi::v1::CreateVolumeResponse clone;
  status = CreateFrom("pvc-clone", "", source, &clone);
  ASSERT_TRUE(status.ok()) << status.error_message();
  const std::string clone_staging = pods_ + "/staging-clone";
  ASSERT_TRUE(Stage(clone.volume().volume_id(), clone_staging).ok());
  EXPECT_EQ(Slurp(clone_staging + "/data/state.txt"), "version 2");
  EXPECT_EQ(Slurp(clone_staging + "/data/later.txt"), "after the snapshot");
  // Three volumes, three independent writable layers.
  Spit(clone_staging + "/data/state.txt", "clone's own");
  EXPECT_EQ(Slurp(staging + "/data/state.txt"), "version 2");
  EXPECT_EQ(Slurp(restored_staging + "/data/state.txt"), "version 1");

  // A commit of an unmounted volume stacks on the previous one.
  ASSERT_TRUE(Unstage(source, staging).ok());
  ::csi::v1::CreateSnapshotResponse snap2;
  ASSERT_TRUE(Snapshot(source, "snap-2", &snap2).ok());
  ASSERT_TRUE(Stage(source, staging).ok());
  EXPECT_EQ(Slurp(staging + "/data/state.txt"), "version 2") << "rebased, nothing lost";
  Spit(staging + "/data/state.txt", "version 3");

  // Listing, filtered and paged.
  ::csi::v1::ListSnapshotsRequest list;
  list.set_source_volume_id(source);
  ::csi::v1::ListSnapshotsResponse listed;
  ASSERT_TRUE(plugin_->controller().ListSnapshots(CallContext().get(), list, &listed).ok());
  EXPECT_EQ(listed.entries_size(), 2);
  list.set_max_entries(1);
  ASSERT_TRUE(plugin_->controller().ListSnapshots(CallContext().get(), list, &listed).ok());
  ASSERT_EQ(listed.entries_size(), 1);
  ASSERT_FALSE(listed.next_token().empty());
  list.clear_source_volume_id();
  list.set_max_entries(0);
  list.set_snapshot_id(snap2.snapshot().snapshot_id());
  listed.Clear();
  ASSERT_TRUE(plugin_->controller().ListSnapshots(CallContext().get(), list, &listed).ok());
  ASSERT_EQ(listed.entries_size(), 1);
  EXPECT_EQ(listed.entries(0).snapshot().snapshot_id(), snap2.snapshot().snapshot_id());

  // Errors the spec names.
  ::csi::v1::CreateSnapshotResponse ignored;
  EXPECT_EQ(Snapshot(restored.volume().volume_id(), "snap-1", &ignored).error_code(),
            grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_EQ(Snapshot("vol-missing", "snap-x", &ignored).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Snapshot(source, "", &ignored).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  ::csi::v1::CreateVolumeResponse failed;
  EXPECT_EQ(CreateFrom("pvc-x", "snap-missing", "", &failed).error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(CreateFrom("pvc-y", "", "vol-missing", &failed).error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(CreateFrom("pvc-z", snap1.snapshot().snapshot_id(), "", &failed, 1).error_code(),
            grpc::StatusCode::OUT_OF_RANGE)
      << "capacity smaller than the snapshot";

  // Delete in an awkward order: the source first, then a snapshot a volume was restored from.
  ASSERT_TRUE(Unstage(source, staging).ok());
  ASSERT_TRUE(Delete(source).ok());
  ASSERT_TRUE(DeleteSnapshot(snap1.snapshot().snapshot_id()).ok());
  ASSERT_TRUE(DeleteSnapshot(snap1.snapshot().snapshot_id()).ok()) << "idempotent";
  ::csi::v1::CreateVolumeResponse from_snap2;
  ASSERT_TRUE(CreateFrom("pvc-from-2", snap2.snapshot().snapshot_id(), "", &from_snap2).ok())
      << "a snapshot outlives its source volume";
  EXPECT_EQ(Slurp(restored_staging + "/data/state.txt"), "version 1")
      << "a restored volume outlives its snapshot";
  for (const auto& [id, path] : std::vector<std::pair<std::string, std::string>>{
           {restored.volume().volume_id(), restored_staging},
           {clone.volume().volume_id(), clone_staging}}) {
    ASSERT_TRUE(Unstage(id, path).ok());
    ASSERT_TRUE(Delete(id).ok());
  }
  ASSERT_TRUE(Delete(from_snap2.volume().volume_id()).ok());
  ASSERT_TRUE(DeleteSnapshot(snap2.snapshot().snapshot_id()).ok());
  EXPECT_EQ(LayerEntries(), 3) << "every commit layer is freed; the image's 3 layers stay";
  EXPECT_TRUE(MountsUnder(dir_).empty());
}

TEST_P(E2eTest, ConcurrentSnapshotsOfOneVolumeMakeOneCommit) {
  ::csi::v1::CreateVolumeResponse created;
  ASSERT_TRUE(Create("pvc-busy", "", &created).ok());
  const std::string id = created.volume().volume_id();
  ASSERT_TRUE(Stage(id, pods_ + "/s").ok());
  std::string big(8 << 20, 'x');  // big enough that the commits overlap
  Spit(pods_ + "/s/big", big);
  std::vector<std::thread> threads;
  std::vector<grpc::Status> results(6);
  std::vector<std::string> ids(6);
  for (int i = 0; i < 6; ++i) {
    threads.emplace_back([&, i] {
      ::csi::v1::CreateSnapshotResponse response;
      results[i] = Snapshot(id, "same-snapshot", &response);
      ids[i] = response.snapshot().snapshot_id();
    });
  }
  for (auto& thread : threads) thread.join();
  std::set<std::string> made;
  for (int i = 0; i < 6; ++i) {
    if (results[i].ok())
      made.insert(ids[i]);
    else
      EXPECT_EQ(results[i].error_code(), grpc::StatusCode::ABORTED);
  }
  ::csi::v1::CreateSnapshotResponse settled;
  ASSERT_TRUE(Snapshot(id, "same-snapshot", &settled).ok());
  made.insert(settled.snapshot().snapshot_id());
  EXPECT_EQ(made.size(), 1u) << "one commit, one snapshot";
  ::csi::v1::ListSnapshotsResponse listed;
  ASSERT_TRUE(plugin_->controller().ListSnapshots(CallContext().get(), {}, &listed).ok());
  EXPECT_EQ(listed.entries_size(), 1);
  ASSERT_TRUE(Unstage(id, pods_ + "/s").ok());
}

// kill -9 in the middle of a commit, restart, retry: one snapshot, the volume's data intact,
// nothing leaked.
TEST_P(E2eTest, KillNineDuringACommitThenRetry) {
  for (const std::string point :
       {"commit-after-intent", "commit-after-layer", "commit-after-outcome"}) {
    for (bool mounted : {true, false}) {
      SCOPED_TRACE(point + std::string(mounted ? " mounted" : " unmounted"));
      plugin_->Kill();
      StartPlugin({{"STRATA_CRASH_POINT", point}});
      std::string name = std::string("pvc-") + point + (mounted ? "-m" : "-u");
      ::csi::v1::CreateVolumeResponse created;
      ASSERT_TRUE(Create(name, "", &created).ok());
      const std::string id = created.volume().volume_id();
      const std::string staging = pods_ + "/" + name;
      ASSERT_TRUE(Stage(id, staging).ok());
      Spit(staging + "/precious", name);
      if (!mounted) {
        ASSERT_TRUE(Unstage(id, staging).ok());
      }
      int layers_before = LayerEntries();
      ::csi::v1::CreateSnapshotResponse snapshot;
      grpc::Status status = Snapshot(id, "snap-" + name, &snapshot);
      ASSERT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << "the crash point fired";
      ASSERT_TRUE(plugin_->WaitForDeath(60000));
      StartPlugin();
      status = Snapshot(id, "snap-" + name, &snapshot);
      ASSERT_TRUE(status.ok()) << status.error_message();
      ::csi::v1::ListSnapshotsRequest list;
      list.set_source_volume_id(id);
      ::csi::v1::ListSnapshotsResponse listed;
      ASSERT_TRUE(plugin_->controller().ListSnapshots(CallContext().get(), list, &listed).ok());
      EXPECT_EQ(listed.entries_size(), 1);
      ASSERT_TRUE(Stage(id, staging).ok());
      EXPECT_EQ(Slurp(staging + "/precious"), name) << "the volume's data survived";
      ::csi::v1::CreateVolumeResponse restored;
      ASSERT_TRUE(CreateFrom("r-" + name, snapshot.snapshot().snapshot_id(), "", &restored).ok());
      ASSERT_TRUE(Stage(restored.volume().volume_id(), staging + "-r").ok());
      EXPECT_EQ(Slurp(staging + "-r/precious"), name) << "and the snapshot has it";
      ASSERT_TRUE(Unstage(restored.volume().volume_id(), staging + "-r").ok());
      ASSERT_TRUE(Delete(restored.volume().volume_id()).ok());
      ASSERT_TRUE(Unstage(id, staging).ok());
      // Exactly one new layer, whether the crash came before or after the commit was recorded.
      EXPECT_EQ(LayerEntries(), layers_before + 1);
      ASSERT_TRUE(Delete(id).ok());
      ASSERT_TRUE(DeleteSnapshot(snapshot.snapshot().snapshot_id()).ok());
      EXPECT_EQ(LayerEntries(), 0) << "no commit layer leaked";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Drivers, E2eTest,
                         ::testing::Values("overlay", "vfs", "btrfs", "devmapper"),
                         [](const auto& info) { return info.param; });
INSTANTIATE_TEST_SUITE_P(Drivers, LostDatabaseE2eTest,
                         ::testing::Values("overlay", "vfs", "btrfs", "devmapper"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace strata::e2e
