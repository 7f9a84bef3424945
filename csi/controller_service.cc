#include "csi/controller_service.h"

#include <algorithm>
#include <map>
#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "csi/capabilities.h"
#include "csi/request_validation.h"

namespace strata::csi {

using ::csi::v1::ControllerServiceCapability;

namespace {

constexpr char kImageParameter[] = "image";
// "true": the volume's capacity must be a hard limit on this node (docs/operations.md).
constexpr char kEnforceCapacityParameter[] = "enforceCapacity";
// Keys external-provisioner adds with --extra-create-metadata; accepted and not stored.
constexpr char kProvisionerPrefix[] = "csi.storage.k8s.io/";

absl::Status CheckCapabilities(
    const google::protobuf::RepeatedPtrField<::csi::v1::VolumeCapability>& capabilities) {
  if (capabilities.empty())
    return absl::InvalidArgumentError("volume_capabilities must not be empty");
  for (const auto& capability : capabilities) {
    absl::Status status = CheckCapability(capability);
    // CreateVolume has no "exceeds capabilities" code: an unsupported capability is a bad
    // argument for it.
    if (!status.ok()) return absl::InvalidArgumentError(status.message());
  }
  return absl::OkStatus();
}

// Page tokens are "<kind prefix><id of the first entry of the next page>": opaque to the CO,
// and anything else (a token from another call, a made-up string) is the spec's ABORTED.
constexpr char kVolumeToken[] = "v1:";
constexpr char kSnapshotToken[] = "s1:";

absl::StatusOr<std::string> ParsePageToken(const std::string& token, const std::string& prefix) {
  if (token.empty()) return std::string();
  if (!absl::StartsWith(token, prefix) || !ValidateId(token.substr(prefix.size()), "token").ok()) {
    return absl::AbortedError(absl::StrCat("starting_token \"", Echo(token),
                                           "\" is not a token this plugin gave; list again"));
  }
  return token.substr(prefix.size());
}

}  // namespace

bool ControllerService::IsThisNode(const ::csi::v1::Topology& topology) const {
  auto it = topology.segments().find(kTopologyKey);
  return it == topology.segments().end() || it->second == context_->node_id;
}

void ControllerService::FillVolume(const node::VolumeRecord& record,
                                   ::csi::v1::Volume* volume) const {
  volume->set_volume_id(record.id);
  volume->set_capacity_bytes(record.capacity_bytes);
  if (!record.image.empty()) (*volume->mutable_volume_context())[kImageParameter] = record.image;
  (*volume->add_accessible_topology()->mutable_segments())[kTopologyKey] = context_->node_id;
}

grpc::Status ControllerService::CreateVolume(grpc::ServerContext*,
                                             const ::csi::v1::CreateVolumeRequest* request,
                                             ::csi::v1::CreateVolumeResponse* response) {
  return context_->Call("CreateVolume", Echo(request->name()), [&]() -> absl::Status {
    RETURN_IF_ERROR(ValidateName(request->name(), "name"));
    RETURN_IF_ERROR(CheckCapabilities(request->volume_capabilities()));
    RETURN_IF_ERROR(ValidateMap(request->parameters(), "parameters"));
    std::string image;
    bool require_enforced_capacity = false;
    std::vector<std::string> unknown;
    for (const auto& [key, value] : request->parameters()) {
      if (key == kImageParameter) {
        image = value;
      } else if (key == kEnforceCapacityParameter) {
        if (value != "true" && value != "false") {
          return absl::InvalidArgumentError(absl::StrCat("parameters.", kEnforceCapacityParameter,
                                                         " must be \"true\" or \"false\", not ",
                                                         Echo(value)));
        }
        require_enforced_capacity = value == "true";
      } else if (!absl::StartsWith(key, kProvisionerPrefix)) {
        unknown.push_back(Echo(key));
      }
    }
    if (!unknown.empty()) {
      std::sort(unknown.begin(), unknown.end());
      return absl::InvalidArgumentError(
          absl::StrCat("unknown parameter(s) ", absl::StrJoin(unknown, ", "),
                       "; Strata accepts: image, ", kEnforceCapacityParameter));
    }
    std::string source_snapshot, source_volume;
    if (request->has_volume_content_source()) {
      const auto& source = request->volume_content_source();
      if (source.has_snapshot()) {
        source_snapshot = source.snapshot().snapshot_id();
        RETURN_IF_ERROR(ValidateOptionalId(source_snapshot, "volume_content_source.snapshot_id"));
      } else if (source.has_volume()) {
        source_volume = source.volume().volume_id();
        RETURN_IF_ERROR(ValidateOptionalId(source_volume, "volume_content_source.volume_id"));
      }
      if (source_snapshot.empty() && source_volume.empty()) {
        return absl::InvalidArgumentError(
            "volume_content_source must name a snapshot_id or a volume_id");
      }
      if (!image.empty()) {
        return absl::InvalidArgumentError(
            "give either parameters.image or a volume_content_source, not both");
      }
    }
    int64_t required = request->capacity_range().required_bytes();
    int64_t limit = request->capacity_range().limit_bytes();
    if (required < 0 || limit < 0)
      return absl::InvalidArgumentError("capacity_range bytes must not be negative");
    if (limit > 0 && required > limit) {
      return absl::OutOfRangeError(
          absl::StrCat("required_bytes ", required, " exceeds limit_bytes ", limit));
    }
    if (request->has_accessibility_requirements() &&
        !request->accessibility_requirements().requisite().empty()) {
      bool reachable = false;
      for (const auto& topology : request->accessibility_requirements().requisite())
        reachable = reachable || IsThisNode(topology);
      if (!reachable) {
        return absl::ResourceExhaustedError(
            absl::StrCat("this plugin creates volumes on node ", context_->node_id,
                         ", which is not in the requisite topology"));
      }
    }
    // Whether the store can promise this much is the core's decision (node/capacity_policy.h),
    // taken where the promise is recorded: RESOURCE_EXHAUSTED from CreateVolume below.
    int64_t capacity = required > 0 ? required : limit;
    node::CreateVolumeParams params;
    params.name = request->name();
    params.image = image;
    params.capacity_bytes = capacity;
    params.source_snapshot_id = source_snapshot;
    params.source_volume_id = source_volume;
    params.require_enforced_capacity = require_enforced_capacity;
    // enforceCapacity is left out: it decides whether a volume is made, not what it is.
    params.fingerprint =
        absl::StrCat("image=", image, " required_bytes=", required, " limit_bytes=", limit,
                     " snapshot=", source_snapshot, " volume=", source_volume);
    ASSIGN_OR_RETURN(
        node::VolumeLocks::Lock lock,
        context_->locks->TryAcquire("name/" + request->name(), "volume name " + request->name()));
    // A clone commits its source: hold the source's lock like any operation on it.
    std::optional<node::VolumeLocks::Lock> source_lock;
    if (!source_volume.empty()) {
      ASSIGN_OR_RETURN(node::VolumeLocks::Lock held,
                       context_->locks->TryAcquire(source_volume, "volume " + source_volume));
      source_lock.emplace(std::move(held));
    }
    ASSIGN_OR_RETURN(node::VolumeRecord record, context_->volumes->Create(params));
    FillVolume(record, response->mutable_volume());
    if (!source_snapshot.empty()) {
      response->mutable_volume()->mutable_content_source()->mutable_snapshot()->set_snapshot_id(
          source_snapshot);
    } else if (!source_volume.empty()) {
      response->mutable_volume()->mutable_content_source()->mutable_volume()->set_volume_id(
          source_volume);
    }
    return absl::OkStatus();
  });
}

grpc::Status ControllerService::DeleteVolume(grpc::ServerContext*,
                                             const ::csi::v1::DeleteVolumeRequest* request,
                                             ::csi::v1::DeleteVolumeResponse*) {
  return context_->Call("DeleteVolume", Echo(request->volume_id()), [&]() -> absl::Status {
    RETURN_IF_ERROR(ValidateId(request->volume_id(), "volume_id"));
    ASSIGN_OR_RETURN(
        node::VolumeLocks::Lock lock,
        context_->locks->TryAcquire(request->volume_id(), "volume " + request->volume_id()));
    return context_->volumes->Delete(request->volume_id());
  });
}

grpc::Status ControllerService::ValidateVolumeCapabilities(
    grpc::ServerContext*, const ::csi::v1::ValidateVolumeCapabilitiesRequest* request,
    ::csi::v1::ValidateVolumeCapabilitiesResponse* response) {
  return context_->Call(
      "ValidateVolumeCapabilities", Echo(request->volume_id()), [&]() -> absl::Status {
        RETURN_IF_ERROR(ValidateId(request->volume_id(), "volume_id"));
        if (request->volume_capabilities().empty())
          return absl::InvalidArgumentError("volume_capabilities must not be empty");
        ASSIGN_OR_RETURN(node::VolumeRecord record, context_->volumes->Get(request->volume_id()));
        for (const auto& capability : request->volume_capabilities()) {
          absl::Status status = CheckCapability(capability);
          if (absl::IsInvalidArgument(status)) return status;
          if (!status.ok()) {
            response->set_message(std::string(status.message()));
            return absl::OkStatus();  // not confirmed: `confirmed` stays unset
          }
        }
        for (const auto& [key, value] : request->parameters()) {
          if (key != kImageParameter && key != kEnforceCapacityParameter &&
              !absl::StartsWith(key, kProvisionerPrefix)) {
            response->set_message(absl::StrCat("unknown parameter ", Echo(key)));
            return absl::OkStatus();
          }
        }
        auto* confirmed = response->mutable_confirmed();
        *confirmed->mutable_volume_context() = request->volume_context();
        *confirmed->mutable_volume_capabilities() = request->volume_capabilities();
        *confirmed->mutable_parameters() = request->parameters();
        return absl::OkStatus();
      });
}

grpc::Status ControllerService::ListVolumes(grpc::ServerContext*,
                                            const ::csi::v1::ListVolumesRequest* request,
                                            ::csi::v1::ListVolumesResponse* response) {
  return context_->Call("ListVolumes", "", [&]() -> absl::Status {
    if (request->max_entries() < 0)
      return absl::InvalidArgumentError("max_entries must not be negative");
    ASSIGN_OR_RETURN(std::string from, ParsePageToken(request->starting_token(), kVolumeToken));
    // Keyset paging: one page read per call, and a volume created or deleted between pages
    // neither repeats nor shifts the others. One row more than asked tells whether more follow.
    const int64_t limit = request->max_entries() > 0 ? request->max_entries() : INT32_MAX;
    ASSIGN_OR_RETURN(std::vector<node::VolumeRecord> volumes,
                     context_->volumes->ListFrom(from, limit + 1));
    for (int64_t i = 0; i < static_cast<int64_t>(volumes.size()) && i < limit; ++i)
      FillVolume(volumes[i], response->add_entries()->mutable_volume());
    if (static_cast<int64_t>(volumes.size()) > limit)
      response->set_next_token(absl::StrCat(kVolumeToken, volumes[limit].id));
    return absl::OkStatus();
  });
}

grpc::Status ControllerService::GetCapacity(grpc::ServerContext*,
                                            const ::csi::v1::GetCapacityRequest* request,
                                            ::csi::v1::GetCapacityResponse* response) {
  return context_->Call("GetCapacity", "", [&]() -> absl::Status {
    for (const auto& capability : request->volume_capabilities()) {
      if (!IsSupported(capability)) {
        response->set_available_capacity(0);
        return absl::OkStatus();
      }
    }
    if (request->has_accessible_topology() && !IsThisNode(request->accessible_topology())) {
      response->set_available_capacity(0);
      return absl::OkStatus();
    }
    // A class that demands enforced capacity gets nothing here when this node cannot enforce
    // it, so capacity tracking schedules its pods where CreateVolume will succeed.
    auto enforce = request->parameters().find(kEnforceCapacityParameter);
    if (enforce != request->parameters().end() && enforce->second == "true" &&
        !context_->volumes->CapacityEnforced()) {
      response->set_available_capacity(0);
      return absl::OkStatus();
    }
    // What CreateVolume would accept now: free space, or on a thin store what the
    // over-provisioning ratio still allows (node/capacity_policy.h).
    ASSIGN_OR_RETURN(int64_t provisionable, context_->volumes->ProvisionableBytes());
    response->set_available_capacity(provisionable);
    return absl::OkStatus();
  });
}

// Not advertised (see ControllerGetCapabilities); for callers on the volume's own node.
grpc::Status ControllerService::ControllerExpandVolume(
    grpc::ServerContext*, const ::csi::v1::ControllerExpandVolumeRequest* request,
    ::csi::v1::ControllerExpandVolumeResponse* response) {
  return context_->Call(
      "ControllerExpandVolume", Echo(request->volume_id()), [&]() -> absl::Status {
        RETURN_IF_ERROR(ValidateId(request->volume_id(), "volume_id"));
        if (!request->has_capacity_range())
          return absl::InvalidArgumentError("capacity_range is required");
        const int64_t required = request->capacity_range().required_bytes();
        const int64_t limit = request->capacity_range().limit_bytes();
        if (required < 0 || limit < 0)
          return absl::InvalidArgumentError("capacity_range bytes must not be negative");
        if (required == 0 && limit == 0)
          return absl::InvalidArgumentError("capacity_range needs required_bytes or limit_bytes");
        if (limit > 0 && required > limit) {
          return absl::OutOfRangeError(
              absl::StrCat("required_bytes ", required, " exceeds limit_bytes ", limit));
        }
        if (request->has_volume_capability())
          RETURN_IF_ERROR(CheckCapability(request->volume_capability()));
        ASSIGN_OR_RETURN(
            node::VolumeLocks::Lock lock,
            context_->locks->TryAcquire(request->volume_id(), "volume " + request->volume_id()));
        ASSIGN_OR_RETURN(
            node::VolumeManager::ExpandResult expanded,
            context_->volumes->Expand(request->volume_id(), required > 0 ? required : limit));
        response->set_capacity_bytes(expanded.capacity_bytes);
        response->set_node_expansion_required(expanded.node_expansion_required);
        return absl::OkStatus();
      });
}

void ControllerService::FillSnapshot(const node::SnapshotRecord& record,
                                     ::csi::v1::Snapshot* snapshot) {
  snapshot->set_snapshot_id(record.id);
  snapshot->set_source_volume_id(record.source_volume_id);
  snapshot->set_size_bytes(record.size_bytes);
  snapshot->mutable_creation_time()->set_seconds(record.created_unix);
  snapshot->set_ready_to_use(record.state == "ready");
  // A group member is named "<group id>/<source volume id>" (node/volume_groups.cc).
  const std::string member_suffix = "/" + record.source_volume_id;
  if (absl::StartsWith(record.name, "group-") && absl::EndsWith(record.name, member_suffix)) {
    snapshot->set_group_snapshot_id(
        record.name.substr(0, record.name.size() - member_suffix.size()));
  }
}

grpc::Status ControllerService::CreateSnapshot(grpc::ServerContext*,
                                               const ::csi::v1::CreateSnapshotRequest* request,
                                               ::csi::v1::CreateSnapshotResponse* response) {
  return context_->Call("CreateSnapshot", Echo(request->source_volume_id()), [&]() -> absl::Status {
    RETURN_IF_ERROR(ValidateName(request->name(), "name"));
    RETURN_IF_ERROR(ValidateId(request->source_volume_id(), "source_volume_id"));
    RETURN_IF_ERROR(ValidateMap(request->parameters(), "parameters"));
    for (const auto& [key, value] : request->parameters()) {
      if (!absl::StartsWith(key, kProvisionerPrefix)) {
        return absl::InvalidArgumentError(
            absl::StrCat("unknown snapshot parameter ", Echo(key), "; Strata accepts none"));
      }
    }
    // One commit per volume at a time, and one call per snapshot name: concurrent calls for
    // the same snapshot get ABORTED and, retried, the snapshot the first one made.
    ASSIGN_OR_RETURN(
        node::VolumeLocks::Lock name_lock,
        context_->locks->TryAcquire("snapshot/" + request->name(), "snapshot " + request->name()));
    ASSIGN_OR_RETURN(node::VolumeLocks::Lock volume_lock,
                     context_->locks->TryAcquire(request->source_volume_id(),
                                                 "volume " + request->source_volume_id()));
    ASSIGN_OR_RETURN(
        node::SnapshotRecord snapshot,
        context_->volumes->CreateSnapshot(request->source_volume_id(), request->name()));
    FillSnapshot(snapshot, response->mutable_snapshot());
    return absl::OkStatus();
  });
}

grpc::Status ControllerService::DeleteSnapshot(grpc::ServerContext*,
                                               const ::csi::v1::DeleteSnapshotRequest* request,
                                               ::csi::v1::DeleteSnapshotResponse*) {
  return context_->Call("DeleteSnapshot", Echo(request->snapshot_id()), [&]() -> absl::Status {
    RETURN_IF_ERROR(ValidateId(request->snapshot_id(), "snapshot_id"));
    ASSIGN_OR_RETURN(node::VolumeLocks::Lock lock,
                     context_->locks->TryAcquire("snapshot-id/" + request->snapshot_id(),
                                                 "snapshot " + request->snapshot_id()));
    return context_->volumes->DeleteSnapshot(request->snapshot_id());
  });
}

grpc::Status ControllerService::ListSnapshots(grpc::ServerContext*,
                                              const ::csi::v1::ListSnapshotsRequest* request,
                                              ::csi::v1::ListSnapshotsResponse* response) {
  return context_->Call("ListSnapshots", Echo(request->source_volume_id()), [&]() -> absl::Status {
    RETURN_IF_ERROR(ValidateOptionalId(request->snapshot_id(), "snapshot_id"));
    RETURN_IF_ERROR(ValidateOptionalId(request->source_volume_id(), "source_volume_id"));
    if (request->max_entries() < 0)
      return absl::InvalidArgumentError("max_entries must not be negative");
    ASSIGN_OR_RETURN(std::string from, ParsePageToken(request->starting_token(), kSnapshotToken));
    const int64_t limit = request->max_entries() > 0 ? request->max_entries() : INT32_MAX;
    if (!request->snapshot_id().empty()) {
      // One snapshot by id: at most one entry, never a next page.
      absl::StatusOr<node::SnapshotRecord> snapshot =
          context_->volumes->GetSnapshot(request->snapshot_id());
      if (absl::IsNotFound(snapshot.status())) return absl::OkStatus();
      RETURN_IF_ERROR(snapshot.status());
      if (snapshot->state == "ready" && snapshot->id >= from &&
          (request->source_volume_id().empty() ||
           snapshot->source_volume_id == request->source_volume_id()))
        FillSnapshot(*snapshot, response->add_entries()->mutable_snapshot());
      return absl::OkStatus();
    }
    // Snapshots not cut yet are never listed. Keyset paging as in ListVolumes.
    ASSIGN_OR_RETURN(
        std::vector<node::SnapshotRecord> snapshots,
        context_->volumes->ListReadySnapshotsFrom(from, request->source_volume_id(), limit + 1));
    for (int64_t i = 0; i < static_cast<int64_t>(snapshots.size()) && i < limit; ++i)
      FillSnapshot(snapshots[i], response->add_entries()->mutable_snapshot());
    if (static_cast<int64_t>(snapshots.size()) > limit)
      response->set_next_token(absl::StrCat(kSnapshotToken, snapshots[limit].id));
    return absl::OkStatus();
  });
}

grpc::Status ControllerService::GetSnapshot(grpc::ServerContext*,
                                            const ::csi::v1::GetSnapshotRequest* request,
                                            ::csi::v1::GetSnapshotResponse* response) {
  return context_->Call("GetSnapshot", Echo(request->snapshot_id()), [&]() -> absl::Status {
    RETURN_IF_ERROR(ValidateId(request->snapshot_id(), "snapshot_id"));
    ASSIGN_OR_RETURN(node::SnapshotRecord snapshot,
                     context_->volumes->GetSnapshot(request->snapshot_id()));
    FillSnapshot(snapshot, response->mutable_snapshot());
    return absl::OkStatus();
  });
}

grpc::Status ControllerService::ControllerGetCapabilities(
    grpc::ServerContext*, const ::csi::v1::ControllerGetCapabilitiesRequest*,
    ::csi::v1::ControllerGetCapabilitiesResponse* response) {
  return context_->Call("ControllerGetCapabilities", "", [&] {
    // EXPAND_VOLUME is not advertised, though ControllerExpandVolume works: csi-resizer runs
    // one elected instance for the cluster, whose local plugin does not hold a volume of
    // another node. Advertising only the node's EXPAND_VOLUME makes it mark the PV and leave
    // the expansion to NodeExpandVolume on the volume's own node.
    for (auto type : {ControllerServiceCapability::RPC::CREATE_DELETE_VOLUME,
                      ControllerServiceCapability::RPC::LIST_VOLUMES,
                      ControllerServiceCapability::RPC::GET_CAPACITY,
                      ControllerServiceCapability::RPC::CREATE_DELETE_SNAPSHOT,
                      ControllerServiceCapability::RPC::LIST_SNAPSHOTS,
                      ControllerServiceCapability::RPC::GET_SNAPSHOT,
                      ControllerServiceCapability::RPC::CLONE_VOLUME}) {
      response->add_capabilities()->mutable_rpc()->set_type(type);
    }
    return absl::OkStatus();
  });
}

}  // namespace strata::csi
