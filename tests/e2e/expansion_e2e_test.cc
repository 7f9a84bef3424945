// End-to-end, volume expansion (issue 11) on the real strata-csi with the overlay driver: the
// capabilities csi-resizer and kubelet look for (node expansion only, so the cluster's one
// csi-resizer leaves the work to kubelet on the volume's node), NodeExpandVolume and
// ControllerExpandVolume raising the recorded capacity (what NodeGetVolumeStats and ListVolumes
// then report), the spec's codes for a shrink, a missing range, an unknown volume or a path
// where the volume is not, and a plugin killed in the middle of an expansion finishing it on
// the retry. Needs root.
// (Enforcement of the larger capacity is the drivers' part: btrfs_driver_test and the
// devmapper guest test write past the old limit.)

#include <string>

#include "gtest/gtest.h"
#include "tests/e2e/csi_calls.h"
#include "tests/e2e/e2e_util.h"
#include "tests/e2e/overlay_plugin_test.h"
#include "tests/e2e/plugin_process.h"

namespace strata::e2e {
namespace {

constexpr int64_t kMiB = int64_t{1} << 20;

class ExpansionTest : public OverlayPluginTest {
 protected:
  ExpansionTest() : OverlayPluginTest("strata-expand") {}

  std::string CreateWithCapacity(const std::string& name, int64_t bytes) {
    ::csi::v1::CreateVolumeRequest request;
    request.set_name(name);
    *request.add_volume_capabilities() = MountCapability();
    request.mutable_capacity_range()->set_required_bytes(bytes);
    ::csi::v1::CreateVolumeResponse response;
    grpc::Status status =
        plugin_->controller().CreateVolume(CallContext().get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response.volume().volume_id();
  }

  grpc::Status Expand(const std::string& id, int64_t bytes,
                      ::csi::v1::ControllerExpandVolumeResponse* response) {
    ::csi::v1::ControllerExpandVolumeRequest request;
    request.set_volume_id(id);
    if (bytes >= 0) request.mutable_capacity_range()->set_required_bytes(bytes);
    *request.mutable_volume_capability() = MountCapability();
    return plugin_->controller().ControllerExpandVolume(CallContext().get(), request, response);
  }

  grpc::Status NodeExpand(const std::string& id, const std::string& path, int64_t bytes,
                          ::csi::v1::NodeExpandVolumeResponse* response) {
    ::csi::v1::NodeExpandVolumeRequest request;
    request.set_volume_id(id);
    request.set_volume_path(path);
    request.mutable_capacity_range()->set_required_bytes(bytes);
    return plugin_->node().NodeExpandVolume(CallContext().get(), request, response);
  }

  int64_t StatsTotalBytes(const std::string& id, const std::string& path) {
    ::csi::v1::NodeGetVolumeStatsRequest request;
    request.set_volume_id(id);
    request.set_volume_path(path);
    ::csi::v1::NodeGetVolumeStatsResponse response;
    grpc::Status status =
        plugin_->node().NodeGetVolumeStats(CallContext().get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response.usage_size() > 0 ? response.usage(0).total() : -1;
  }

  int64_t ListedCapacity(const std::string& id) {
    ::csi::v1::ListVolumesResponse response;
    EXPECT_TRUE(ListVolumes(*plugin_, &response).ok());
    for (const auto& entry : response.entries())
      if (entry.volume().volume_id() == id) return entry.volume().capacity_bytes();
    return -1;
  }
};

TEST_F(ExpansionTest, AdvertisesOnlineNodeExpansionOnly) {
  ::csi::v1::GetPluginCapabilitiesResponse plugin;
  ASSERT_TRUE(plugin_->identity().GetPluginCapabilities(CallContext().get(), {}, &plugin).ok());
  bool online = false;
  for (const auto& capability : plugin.capabilities())
    online = online || (capability.has_volume_expansion() &&
                        capability.volume_expansion().type() ==
                            ::csi::v1::PluginCapability::VolumeExpansion::ONLINE);
  EXPECT_TRUE(online);
  ::csi::v1::ControllerGetCapabilitiesResponse controller;
  ASSERT_TRUE(
      plugin_->controller().ControllerGetCapabilities(CallContext().get(), {}, &controller).ok());
  bool controller_expand = false;
  for (const auto& capability : controller.capabilities())
    controller_expand =
        controller_expand ||
        capability.rpc().type() == ::csi::v1::ControllerServiceCapability::RPC::EXPAND_VOLUME;
  EXPECT_FALSE(controller_expand)
      << "csi-resizer would call ControllerExpandVolume on its own node's plugin, which does not "
         "hold the volume";
  ::csi::v1::NodeGetCapabilitiesResponse node;
  ASSERT_TRUE(plugin_->node().NodeGetCapabilities(CallContext().get(), {}, &node).ok());
  bool node_expand = false;
  for (const auto& capability : node.capabilities())
    node_expand = node_expand ||
                  capability.rpc().type() == ::csi::v1::NodeServiceCapability::RPC::EXPAND_VOLUME;
  EXPECT_TRUE(node_expand);
}

TEST_F(ExpansionTest, KubeletsNodeExpandGrowsAPublishedVolume) {
  const std::string id = CreateWithCapacity("grow", 8 * kMiB);
  const std::string staging = dir_ + "/staging", target = dir_ + "/pod";
  ASSERT_TRUE(StageVolume(*plugin_, id, staging).ok());
  ASSERT_TRUE(PublishVolume(*plugin_, id, staging, target).ok());
  Spit(target + "/kept", "written before the expansion");
  EXPECT_EQ(StatsTotalBytes(id, target), 8 * kMiB);

  // What kubelet does after csi-resizer's trivial resize: NodeExpandVolume with the new size
  // on the published path.
  ::csi::v1::NodeExpandVolumeResponse node;
  grpc::Status status = NodeExpand(id, target, 32 * kMiB, &node);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(node.capacity_bytes(), 32 * kMiB);
  EXPECT_EQ(StatsTotalBytes(id, target), 32 * kMiB);
  EXPECT_EQ(ListedCapacity(id), 32 * kMiB);
  // A retry, and a call without a size (finish what is pending), change nothing.
  ASSERT_TRUE(NodeExpand(id, target, 32 * kMiB, &node).ok());
  ASSERT_TRUE(NodeExpand(id, staging, 0, &node).ok());
  EXPECT_EQ(node.capacity_bytes(), 32 * kMiB);
  EXPECT_EQ(Slurp(target + "/kept"), "written before the expansion");

  // ControllerExpandVolume (for callers on this node) grows it the same way.
  ::csi::v1::ControllerExpandVolumeResponse expanded;
  status = Expand(id, 48 * kMiB, &expanded);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(expanded.capacity_bytes(), 48 * kMiB);
  EXPECT_FALSE(expanded.node_expansion_required()) << "overlay has no filesystem to grow";
  EXPECT_EQ(StatsTotalBytes(id, target), 48 * kMiB);

  // The capacity survives a restart (the record and the label both hold it).
  plugin_->Kill();
  std::string error;
  ASSERT_TRUE(plugin_->Start({}, &error)) << error;
  EXPECT_EQ(ListedCapacity(id), 48 * kMiB);
}

TEST_F(ExpansionTest, RefusalsUseTheSpecsCodesAndChangeNothing) {
  const std::string id = CreateWithCapacity("refusals", 16 * kMiB);
  ::csi::v1::ControllerExpandVolumeResponse expanded;
  EXPECT_EQ(Expand(id, 8 * kMiB, &expanded).error_code(), grpc::StatusCode::OUT_OF_RANGE)
      << "a shrink";
  EXPECT_EQ(Expand(id, -1, &expanded).error_code(), grpc::StatusCode::INVALID_ARGUMENT)
      << "no capacity_range";
  EXPECT_EQ(Expand("vol-0000000000000000", 32 * kMiB, &expanded).error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Expand("../escape", 32 * kMiB, &expanded).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(ListedCapacity(id), 16 * kMiB);

  const std::string staging = dir_ + "/staging";
  ASSERT_TRUE(StageVolume(*plugin_, id, staging).ok());
  ::csi::v1::NodeExpandVolumeResponse node;
  EXPECT_EQ(NodeExpand(id, dir_ + "/elsewhere", 16 * kMiB, &node).error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(NodeExpand(id, "relative/path", 16 * kMiB, &node).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(NodeExpand("vol-0000000000000000", staging, 16 * kMiB, &node).error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(NodeExpand(id, staging, 8 * kMiB, &node).error_code(), grpc::StatusCode::OUT_OF_RANGE)
      << "a shrink on the node";
  EXPECT_EQ(ListedCapacity(id), 16 * kMiB);
}

TEST_F(ExpansionTest, AKillDuringAnExpansionIsFinishedByTheRetry) {
  const std::string id = CreateWithCapacity("crash", 8 * kMiB);
  plugin_->Kill();
  std::string error;
  ASSERT_TRUE(plugin_->Start({{"STRATA_CRASH_POINT", "expand-after-driver"}}, &error)) << error;
  const std::string staging = dir_ + "/staging";
  ASSERT_TRUE(StageVolume(*plugin_, id, staging).ok());
  ::csi::v1::NodeExpandVolumeResponse node;
  (void)NodeExpand(id, staging, 24 * kMiB, &node);
  ASSERT_TRUE(plugin_->WaitForDeath(60000)) << "the crash point did not fire";
  ASSERT_TRUE(plugin_->Start({}, &error)) << error;
  EXPECT_EQ(ListedCapacity(id), 8 * kMiB) << "the record changes only after the driver";
  grpc::Status status = NodeExpand(id, staging, 24 * kMiB, &node);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(node.capacity_bytes(), 24 * kMiB);
  EXPECT_EQ(ListedCapacity(id), 24 * kMiB);
}

}  // namespace
}  // namespace strata::e2e
