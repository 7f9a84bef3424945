#pragma once
// CSI Identity service: who the plugin is, what it offers, and whether it is ready.

#include "csi.grpc.pb.h"
#include "csi/plugin_context.h"

namespace strata::csi {

class IdentityService final : public ::csi::v1::Identity::Service {
 public:
  explicit IdentityService(PluginContext* context) : context_(context) {}

  grpc::Status GetPluginInfo(grpc::ServerContext*, const ::csi::v1::GetPluginInfoRequest*,
                             ::csi::v1::GetPluginInfoResponse* response) override;
  grpc::Status GetPluginCapabilities(grpc::ServerContext*,
                                     const ::csi::v1::GetPluginCapabilitiesRequest*,
                                     ::csi::v1::GetPluginCapabilitiesResponse* response) override;
  grpc::Status Probe(grpc::ServerContext*, const ::csi::v1::ProbeRequest*,
                     ::csi::v1::ProbeResponse* response) override;

 private:
  PluginContext* context_;
};

}  // namespace strata::csi
