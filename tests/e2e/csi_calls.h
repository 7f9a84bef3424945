#pragma once
// One CSI call each, made as kubelet and the external sidecars make them, against a
// PluginProcess: the small vocabulary the end-to-end tests are written in.

#include <string>
#include <vector>

#include "tests/e2e/plugin_process.h"

namespace strata::e2e {

// A mount-access capability, single-node writer.
::csi::v1::VolumeCapability MountCapability();

// CreateVolume on the empty base (no image), or on `image` when given.
grpc::Status CreateVolume(PluginProcess& plugin, const std::string& name,
                          ::csi::v1::CreateVolumeResponse* response, const std::string& image = "");
grpc::Status StageVolume(PluginProcess& plugin, const std::string& id, const std::string& staging);
grpc::Status UnstageVolume(PluginProcess& plugin, const std::string& id,
                           const std::string& staging);
grpc::Status PublishVolume(PluginProcess& plugin, const std::string& id, const std::string& staging,
                           const std::string& target,
                           const std::vector<std::string>& mount_flags = {});
grpc::Status UnpublishVolume(PluginProcess& plugin, const std::string& id,
                             const std::string& target);
grpc::Status CreateSnapshot(PluginProcess& plugin, const std::string& volume_id,
                            const std::string& name, ::csi::v1::CreateSnapshotResponse* response);
// Every volume ListVolumes returns (one page).
grpc::Status ListVolumes(PluginProcess& plugin, ::csi::v1::ListVolumesResponse* response);

}  // namespace strata::e2e
