#include "csi/node_service.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "csi/capabilities.h"
#include "csi/request_validation.h"
#include "node/paths.h"

namespace strata::csi {

using ::csi::v1::NodeServiceCapability;
using ::csi::v1::VolumeUsage;

namespace {

constexpr char kEphemeralKey[] = "csi.storage.k8s.io/ephemeral";

absl::Status RequireVolumeId(const std::string& volume_id) {
  return ValidateId(volume_id, "volume_id");
}

absl::Status RequireCapability(bool has_capability, const ::csi::v1::VolumeCapability& capability) {
  if (!has_capability) return absl::InvalidArgumentError("volume_capability is required");
  return CheckCapability(capability);
}

}  // namespace

grpc::Status NodeService::NodeStageVolume(grpc::ServerContext*,
                                          const ::csi::v1::NodeStageVolumeRequest* request,
                                          ::csi::v1::NodeStageVolumeResponse*) {
  return context_->Call("NodeStageVolume", Echo(request->volume_id()), [&]() -> absl::Status {
    RETURN_IF_ERROR(RequireVolumeId(request->volume_id()));
    RETURN_IF_ERROR(ValidatePath(request->staging_target_path(), "staging_target_path"));
    RETURN_IF_ERROR(
        RequireCapability(request->has_volume_capability(), request->volume_capability()));
    ASSIGN_OR_RETURN(
        node::VolumeLocks::Lock lock,
        context_->locks->TryAcquire(request->volume_id(), "volume " + request->volume_id()));
    return context_->volumes->Stage(request->volume_id(), request->staging_target_path());
  });
}

grpc::Status NodeService::NodeUnstageVolume(grpc::ServerContext*,
                                            const ::csi::v1::NodeUnstageVolumeRequest* request,
                                            ::csi::v1::NodeUnstageVolumeResponse*) {
  return context_->Call("NodeUnstageVolume", Echo(request->volume_id()), [&]() -> absl::Status {
    RETURN_IF_ERROR(RequireVolumeId(request->volume_id()));
    RETURN_IF_ERROR(ValidatePath(request->staging_target_path(), "staging_target_path"));
    ASSIGN_OR_RETURN(
        node::VolumeLocks::Lock lock,
        context_->locks->TryAcquire(request->volume_id(), "volume " + request->volume_id()));
    return context_->volumes->Unstage(request->volume_id(), request->staging_target_path());
  });
}

// SINGLE_NODE_SINGLE_WRITER (Kubernetes' ReadWriteOncePod): the spec's second-publish table
// answers FAILED_PRECONDITION for any other target path, read-only or not. Publications do not
// record their access mode, so the new request's mode decides; the same target path stays
// idempotent (Publish compares the rest). Called under the volume's lock.
absl::Status NodeService::RequireNoOtherPublication(const std::string& volume_id,
                                                    const std::string& target_path) {
  ASSIGN_OR_RETURN(std::vector<node::PublicationRecord> publications,
                   context_->volumes->Publications(volume_id));
  for (const node::PublicationRecord& publication : publications) {
    if (CleanPath(publication.target_path) == CleanPath(target_path)) continue;
    return absl::FailedPreconditionError(absl::StrCat(
        "volume ", volume_id, " is SINGLE_NODE_SINGLE_WRITER and already published at ",
        Echo(publication.target_path), "; unpublish it there first"));
  }
  return absl::OkStatus();
}

grpc::Status NodeService::NodePublishVolume(grpc::ServerContext*,
                                            const ::csi::v1::NodePublishVolumeRequest* request,
                                            ::csi::v1::NodePublishVolumeResponse*) {
  return context_->Call("NodePublishVolume", Echo(request->volume_id()), [&]() -> absl::Status {
    RETURN_IF_ERROR(RequireVolumeId(request->volume_id()));
    RETURN_IF_ERROR(ValidatePath(request->target_path(), "target_path"));
    RETURN_IF_ERROR(
        RequireCapability(request->has_volume_capability(), request->volume_capability()));
    RETURN_IF_ERROR(ValidateMap(request->volume_context(), "volume_context"));
    if (!request->staging_target_path().empty()) {
      RETURN_IF_ERROR(ValidatePath(request->staging_target_path(), "staging_target_path"));
      // Publishing at the staging path would mount the volume over itself, and the unpublish
      // would then take the staging mount away under every other publication.
      if (CleanPath(request->target_path()) == CleanPath(request->staging_target_path())) {
        return absl::InvalidArgumentError("target_path must differ from staging_target_path: \"" +
                                          Echo(request->target_path()) + "\"");
      }
    }
    bool read_only =
        request->readonly() || request->volume_capability().access_mode().mode() ==
                                   ::csi::v1::VolumeCapability::AccessMode::SINGLE_NODE_READER_ONLY;
    // ro/rw decide read_only; the other safe flags (checked by RequireCapability) go to the
    // bind mount the pod sees.
    std::vector<std::string> flags;
    for (const std::string& flag : request->volume_capability().mount().mount_flags()) {
      if (flag == "ro")
        read_only = true;
      else if (flag != "rw")
        flags.push_back(flag);
    }
    const auto& context = request->volume_context();
    auto ephemeral = context.find(kEphemeralKey);
    bool is_ephemeral = ephemeral != context.end() && ephemeral->second == "true";
    ASSIGN_OR_RETURN(
        node::VolumeLocks::Lock lock,
        context_->locks->TryAcquire(request->volume_id(), "volume " + request->volume_id()));
    if (is_ephemeral) {
      auto image = context.find("image");
      return context_->volumes->PublishEphemeral(request->volume_id(),
                                                 image == context.end() ? "" : image->second,
                                                 request->target_path(), read_only, flags);
    }
    if (request->staging_target_path().empty()) {
      return absl::FailedPreconditionError(
          "staging_target_path is required: Strata stages volumes (STAGE_UNSTAGE_VOLUME)");
    }
    if (request->volume_capability().access_mode().mode() ==
        ::csi::v1::VolumeCapability::AccessMode::SINGLE_NODE_SINGLE_WRITER) {
      RETURN_IF_ERROR(RequireNoOtherPublication(request->volume_id(), request->target_path()));
    }
    return context_->volumes->Publish(request->volume_id(), request->staging_target_path(),
                                      request->target_path(), read_only, flags);
  });
}

grpc::Status NodeService::NodeUnpublishVolume(grpc::ServerContext*,
                                              const ::csi::v1::NodeUnpublishVolumeRequest* request,
                                              ::csi::v1::NodeUnpublishVolumeResponse*) {
  return context_->Call("NodeUnpublishVolume", Echo(request->volume_id()), [&]() -> absl::Status {
    RETURN_IF_ERROR(RequireVolumeId(request->volume_id()));
    RETURN_IF_ERROR(ValidatePath(request->target_path(), "target_path"));
    ASSIGN_OR_RETURN(
        node::VolumeLocks::Lock lock,
        context_->locks->TryAcquire(request->volume_id(), "volume " + request->volume_id()));
    return context_->volumes->Unpublish(request->volume_id(), request->target_path());
  });
}

grpc::Status NodeService::NodeGetVolumeStats(grpc::ServerContext*,
                                             const ::csi::v1::NodeGetVolumeStatsRequest* request,
                                             ::csi::v1::NodeGetVolumeStatsResponse* response) {
  return context_->Call("NodeGetVolumeStats", Echo(request->volume_id()), [&]() -> absl::Status {
    RETURN_IF_ERROR(RequireVolumeId(request->volume_id()));
    RETURN_IF_ERROR(ValidatePath(request->volume_path(), "volume_path"));
    // Stats only read; they take no lock so a slow walk never makes a publish ABORT.
    ASSIGN_OR_RETURN(node::VolumeUsage usage,
                     context_->volumes->Usage(request->volume_id(), request->volume_path()));
    VolumeUsage* bytes = response->add_usage();
    bytes->set_unit(VolumeUsage::BYTES);
    bytes->set_used(usage.used_bytes);
    bytes->set_total(usage.total_bytes);
    bytes->set_available(usage.available_bytes);
    // Filesystems without a fixed inode table (btrfs) report none: say nothing rather than 0.
    if (usage.total_inodes > 0) {
      VolumeUsage* inodes = response->add_usage();
      inodes->set_unit(VolumeUsage::INODES);
      inodes->set_used(usage.used_inodes);
      inodes->set_total(usage.total_inodes);
      inodes->set_available(usage.available_inodes);
    }
    response->mutable_volume_condition()->set_abnormal(usage.abnormal);
    response->mutable_volume_condition()->set_message(usage.condition_message);
    return absl::OkStatus();
  });
}

grpc::Status NodeService::NodeExpandVolume(grpc::ServerContext*,
                                           const ::csi::v1::NodeExpandVolumeRequest* request,
                                           ::csi::v1::NodeExpandVolumeResponse* response) {
  return context_->Call("NodeExpandVolume", Echo(request->volume_id()), [&]() -> absl::Status {
    RETURN_IF_ERROR(RequireVolumeId(request->volume_id()));
    RETURN_IF_ERROR(ValidatePath(request->volume_path(), "volume_path"));
    if (!request->staging_target_path().empty())
      RETURN_IF_ERROR(ValidatePath(request->staging_target_path(), "staging_target_path"));
    if (request->has_volume_capability())
      RETURN_IF_ERROR(CheckCapability(request->volume_capability()));
    const int64_t required = request->capacity_range().required_bytes();
    const int64_t limit = request->capacity_range().limit_bytes();
    if (required < 0 || limit < 0)
      return absl::InvalidArgumentError("capacity_range bytes must not be negative");
    ASSIGN_OR_RETURN(
        node::VolumeLocks::Lock lock,
        context_->locks->TryAcquire(request->volume_id(), "volume " + request->volume_id()));
    // Strata expands here, on the volume's node: csi-resizer (one elected instance for the
    // cluster) only marks the PV, and kubelet on the node calls this with the new size.
    ASSIGN_OR_RETURN(int64_t capacity,
                     context_->volumes->ExpandOnNode(request->volume_id(), request->volume_path(),
                                                     required > 0 ? required : limit));
    response->set_capacity_bytes(capacity > 0 ? capacity : required);
    return absl::OkStatus();
  });
}

grpc::Status NodeService::NodeGetCapabilities(grpc::ServerContext*,
                                              const ::csi::v1::NodeGetCapabilitiesRequest*,
                                              ::csi::v1::NodeGetCapabilitiesResponse* response) {
  return context_->Call("NodeGetCapabilities", "", [&] {
    for (auto type : {NodeServiceCapability::RPC::STAGE_UNSTAGE_VOLUME,
                      NodeServiceCapability::RPC::GET_VOLUME_STATS,
                      NodeServiceCapability::RPC::SINGLE_NODE_MULTI_WRITER,
                      NodeServiceCapability::RPC::VOLUME_CONDITION,
                      NodeServiceCapability::RPC::EXPAND_VOLUME}) {
      response->add_capabilities()->mutable_rpc()->set_type(type);
    }
    return absl::OkStatus();
  });
}

grpc::Status NodeService::NodeGetInfo(grpc::ServerContext*, const ::csi::v1::NodeGetInfoRequest*,
                                      ::csi::v1::NodeGetInfoResponse* response) {
  return context_->Call("NodeGetInfo", "", [&] {
    response->set_node_id(context_->node_id);
    (*response->mutable_accessible_topology()->mutable_segments())[kTopologyKey] =
        context_->node_id;
    return absl::OkStatus();
  });
}

}  // namespace strata::csi
