#include "tests/e2e/csi_calls.h"

namespace strata::e2e {

::csi::v1::VolumeCapability MountCapability() {
  ::csi::v1::VolumeCapability capability;
  capability.mutable_mount();
  capability.mutable_access_mode()->set_mode(
      ::csi::v1::VolumeCapability::AccessMode::SINGLE_NODE_WRITER);
  return capability;
}

grpc::Status CreateVolume(PluginProcess& plugin, const std::string& name,
                          ::csi::v1::CreateVolumeResponse* response, const std::string& image) {
  ::csi::v1::CreateVolumeRequest request;
  request.set_name(name);
  if (!image.empty()) (*request.mutable_parameters())["image"] = image;
  *request.add_volume_capabilities() = MountCapability();
  return plugin.controller().CreateVolume(CallContext().get(), request, response);
}

grpc::Status StageVolume(PluginProcess& plugin, const std::string& id, const std::string& staging) {
  ::csi::v1::NodeStageVolumeRequest request;
  request.set_volume_id(id);
  request.set_staging_target_path(staging);
  *request.mutable_volume_capability() = MountCapability();
  ::csi::v1::NodeStageVolumeResponse response;
  return plugin.node().NodeStageVolume(CallContext().get(), request, &response);
}

grpc::Status UnstageVolume(PluginProcess& plugin, const std::string& id,
                           const std::string& staging) {
  ::csi::v1::NodeUnstageVolumeRequest request;
  request.set_volume_id(id);
  request.set_staging_target_path(staging);
  ::csi::v1::NodeUnstageVolumeResponse response;
  return plugin.node().NodeUnstageVolume(CallContext().get(), request, &response);
}

grpc::Status PublishVolume(PluginProcess& plugin, const std::string& id, const std::string& staging,
                           const std::string& target, const std::vector<std::string>& mount_flags) {
  ::csi::v1::NodePublishVolumeRequest request;
  request.set_volume_id(id);
  request.set_staging_target_path(staging);
  request.set_target_path(target);
  *request.mutable_volume_capability() = MountCapability();
  for (const std::string& flag : mount_flags)
    request.mutable_volume_capability()->mutable_mount()->add_mount_flags(flag);
  ::csi::v1::NodePublishVolumeResponse response;
  return plugin.node().NodePublishVolume(CallContext().get(), request, &response);
}

grpc::Status UnpublishVolume(PluginProcess& plugin, const std::string& id,
                             const std::string& target) {
  ::csi::v1::NodeUnpublishVolumeRequest request;
  request.set_volume_id(id);
  request.set_target_path(target);
  ::csi::v1::NodeUnpublishVolumeResponse response;
  return plugin.node().NodeUnpublishVolume(CallContext().get(), request, &response);
}

grpc::Status CreateSnapshot(PluginProcess& plugin, const std::string& volume_id,
                            const std::string& name, ::csi::v1::CreateSnapshotResponse* response) {
  ::csi::v1::CreateSnapshotRequest request;
  request.set_source_volume_id(volume_id);
  request.set_name(name);
  return plugin.controller().CreateSnapshot(CallContext().get(), request, response);
}

grpc::Status ListVolumes(PluginProcess& plugin, ::csi::v1::ListVolumesResponse* response) {
  return plugin.controller().ListVolumes(CallContext().get(), {}, response);
}

}  // namespace strata::e2e
