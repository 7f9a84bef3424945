#include "csi/identity_service.h"

#include "strata/version.h"

namespace strata::csi {

using ::csi::v1::PluginCapability;

grpc::Status IdentityService::GetPluginInfo(grpc::ServerContext*,
                                            const ::csi::v1::GetPluginInfoRequest*,
                                            ::csi::v1::GetPluginInfoResponse* response) {
  return context_->CallIdentity("GetPluginInfo", [&] {
    response->set_name(context_->driver_name);
    response->set_vendor_version(kVersion);
    return absl::OkStatus();
  });
}

grpc::Status IdentityService::GetPluginCapabilities(
    grpc::ServerContext*, const ::csi::v1::GetPluginCapabilitiesRequest*,
    ::csi::v1::GetPluginCapabilitiesResponse* response) {
  return context_->CallIdentity("GetPluginCapabilities", [&] {
    for (auto type : {PluginCapability::Service::CONTROLLER_SERVICE,
                      PluginCapability::Service::GROUP_CONTROLLER_SERVICE,
                      PluginCapability::Service::VOLUME_ACCESSIBILITY_CONSTRAINTS}) {
      response->add_capabilities()->mutable_service()->set_type(type);
    }
    // Every driver grows a volume while it is in use (docs/drivers/*.md, "Expansion").
    response->add_capabilities()->mutable_volume_expansion()->set_type(
        PluginCapability::VolumeExpansion::ONLINE);
    return absl::OkStatus();
  });
}

grpc::Status IdentityService::Probe(grpc::ServerContext*, const ::csi::v1::ProbeRequest*,
                                    ::csi::v1::ProbeResponse* response) {
  return context_->CallIdentity("Probe", [&] {
    response->mutable_ready()->set_value(context_->gate.ready());
    return absl::OkStatus();
  });
}

}  // namespace strata::csi
