#pragma once
// CSI GroupController service: volume group snapshots, a commit of each of several volumes under
// one group record (node/volume_groups.cc says what consistency the cut gives).

#include "csi.grpc.pb.h"
#include "csi/plugin_context.h"

namespace strata::csi {

class GroupControllerService final : public ::csi::v1::GroupController::Service {
 public:
  explicit GroupControllerService(PluginContext* context) : context_(context) {}

  grpc::Status GroupControllerGetCapabilities(
      grpc::ServerContext*, const ::csi::v1::GroupControllerGetCapabilitiesRequest* request,
      ::csi::v1::GroupControllerGetCapabilitiesResponse* response) override;
  grpc::Status CreateVolumeGroupSnapshot(
      grpc::ServerContext*, const ::csi::v1::CreateVolumeGroupSnapshotRequest* request,
      ::csi::v1::CreateVolumeGroupSnapshotResponse* response) override;
  grpc::Status DeleteVolumeGroupSnapshot(
      grpc::ServerContext*, const ::csi::v1::DeleteVolumeGroupSnapshotRequest* request,
      ::csi::v1::DeleteVolumeGroupSnapshotResponse* response) override;
  grpc::Status GetVolumeGroupSnapshot(grpc::ServerContext*,
                                      const ::csi::v1::GetVolumeGroupSnapshotRequest* request,
                                      ::csi::v1::GetVolumeGroupSnapshotResponse* response) override;

 private:
  PluginContext* context_;
};

}  // namespace strata::csi
