#pragma once
// CSI Node service: stage (mount the layered filesystem), publish (bind it into a pod), their
// reverses, stats, and ephemeral inline volumes.

#include <string>

#include "absl/status/status.h"
#include "csi.grpc.pb.h"
#include "csi/plugin_context.h"

namespace strata::csi {

class NodeService final : public ::csi::v1::Node::Service {
 public:
  explicit NodeService(PluginContext* context) : context_(context) {}

  grpc::Status NodeStageVolume(grpc::ServerContext*,
                               const ::csi::v1::NodeStageVolumeRequest* request,
                               ::csi::v1::NodeStageVolumeResponse* response) override;
  grpc::Status NodeUnstageVolume(grpc::ServerContext*,
                                 const ::csi::v1::NodeUnstageVolumeRequest* request,
                                 ::csi::v1::NodeUnstageVolumeResponse* response) override;
  grpc::Status NodePublishVolume(grpc::ServerContext*,
                                 const ::csi::v1::NodePublishVolumeRequest* request,
                                 ::csi::v1::NodePublishVolumeResponse* response) override;
  grpc::Status NodeUnpublishVolume(grpc::ServerContext*,
                                   const ::csi::v1::NodeUnpublishVolumeRequest* request,
                                   ::csi::v1::NodeUnpublishVolumeResponse* response) override;
  grpc::Status NodeGetVolumeStats(grpc::ServerContext*,
                                  const ::csi::v1::NodeGetVolumeStatsRequest* request,
                                  ::csi::v1::NodeGetVolumeStatsResponse* response) override;
  grpc::Status NodeExpandVolume(grpc::ServerContext*,
                                const ::csi::v1::NodeExpandVolumeRequest* request,
                                ::csi::v1::NodeExpandVolumeResponse* response) override;
  grpc::Status NodeGetCapabilities(grpc::ServerContext*,
                                   const ::csi::v1::NodeGetCapabilitiesRequest* request,
                                   ::csi::v1::NodeGetCapabilitiesResponse* response) override;
  grpc::Status NodeGetInfo(grpc::ServerContext*, const ::csi::v1::NodeGetInfoRequest* request,
                           ::csi::v1::NodeGetInfoResponse* response) override;

 private:
  // FAILED_PRECONDITION when the volume is published at a path other than `target_path`.
  absl::Status RequireNoOtherPublication(const std::string& volume_id,
                                         const std::string& target_path);

  PluginContext* context_;
};

}  // namespace strata::csi
