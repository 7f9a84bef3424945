#include "csi/group_controller_service.h"

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "csi/controller_service.h"
#include "csi/request_validation.h"

namespace strata::csi {
namespace {

using ::csi::v1::GroupControllerServiceCapability;

// A group cut holds every member's lock at once; the bound keeps one call from locking the
// node's every volume (and its reply and record small).
constexpr int kMaxGroupMembers = 64;

absl::StatusOr<std::vector<std::string>> ValidIds(
    const google::protobuf::RepeatedPtrField<std::string>& ids, const std::string& field,
    bool required) {
  if (ids.empty() && required) return absl::InvalidArgumentError(field + " is required");
  if (ids.size() > kMaxGroupMembers) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " has ", ids.size(), " entries; at most ", kMaxGroupMembers));
  }
  std::set<std::string> seen;
  for (const std::string& id : ids) {
    RETURN_IF_ERROR(ValidateId(id, field));
    if (!seen.insert(id).second)
      return absl::InvalidArgumentError(absl::StrCat(field, " names ", Echo(id), " twice"));
  }
  return std::vector<std::string>(ids.begin(), ids.end());
}

void FillGroup(const node::GroupSnapshot& group, ::csi::v1::VolumeGroupSnapshot* out) {
  out->set_group_snapshot_id(group.record.id);
  out->mutable_creation_time()->set_seconds(group.record.created_unix);
  bool ready =
      group.record.state == "ready" && group.snapshots.size() == group.record.members.size();
  for (const node::SnapshotRecord& snapshot : group.snapshots) {
    ::csi::v1::Snapshot* member = out->add_snapshots();
    ControllerService::FillSnapshot(snapshot, member);
    member->set_group_snapshot_id(group.record.id);
    ready = ready && member->ready_to_use();
  }
  out->set_ready_to_use(ready);
}

}  // namespace

grpc::Status GroupControllerService::GroupControllerGetCapabilities(
    grpc::ServerContext*, const ::csi::v1::GroupControllerGetCapabilitiesRequest*,
    ::csi::v1::GroupControllerGetCapabilitiesResponse* response) {
  return context_->Call("GroupControllerGetCapabilities", "", [&] {
    response->add_capabilities()->mutable_rpc()->set_type(
        GroupControllerServiceCapability::RPC::CREATE_DELETE_GET_VOLUME_GROUP_SNAPSHOT);
    return absl::OkStatus();
  });
}

grpc::Status GroupControllerService::CreateVolumeGroupSnapshot(
    grpc::ServerContext*, const ::csi::v1::CreateVolumeGroupSnapshotRequest* request,
    ::csi::v1::CreateVolumeGroupSnapshotResponse* response) {
  return context_->Call("CreateVolumeGroupSnapshot", Echo(request->name()), [&]() -> absl::Status {
    RETURN_IF_ERROR(ValidateName(request->name(), "name"));
    ASSIGN_OR_RETURN(std::vector<std::string> volume_ids,
                     ValidIds(request->source_volume_ids(), "source_volume_ids", true));
    RETURN_IF_ERROR(ValidateMap(request->parameters(), "parameters"));
    for (const auto& [key, value] : request->parameters()) {
      if (!absl::StartsWith(key, "csi.storage.k8s.io/")) {
        return absl::InvalidArgumentError(
            absl::StrCat("unknown group snapshot parameter ", Echo(key), "; Strata accepts none"));
      }
    }
    // The name's lock, then every volume's in id order: two groups over the same volumes can
    // never each hold one and wait for the other (TryAcquire also never waits).
    std::vector<node::VolumeLocks::Lock> locks;
    ASSIGN_OR_RETURN(node::VolumeLocks::Lock name_lock,
                     context_->locks->TryAcquire("group/" + request->name(),
                                                 "group snapshot " + request->name()));
    std::vector<std::string> sorted = volume_ids;
    std::sort(sorted.begin(), sorted.end());
    for (const std::string& id : sorted) {
      ASSIGN_OR_RETURN(node::VolumeLocks::Lock lock,
                       context_->locks->TryAcquire(id, "volume " + id));
      locks.push_back(std::move(lock));
    }
    ASSIGN_OR_RETURN(node::GroupSnapshot group,
                     context_->volumes->CreateGroupSnapshot(request->name(), volume_ids));
    FillGroup(group, response->mutable_group_snapshot());
    return absl::OkStatus();
  });
}

grpc::Status GroupControllerService::DeleteVolumeGroupSnapshot(
    grpc::ServerContext*, const ::csi::v1::DeleteVolumeGroupSnapshotRequest* request,
    ::csi::v1::DeleteVolumeGroupSnapshotResponse*) {
  return context_->Call(
      "DeleteVolumeGroupSnapshot", Echo(request->group_snapshot_id()), [&]() -> absl::Status {
        RETURN_IF_ERROR(ValidateId(request->group_snapshot_id(), "group_snapshot_id"));
        ASSIGN_OR_RETURN(std::vector<std::string> snapshot_ids,
                         ValidIds(request->snapshot_ids(), "snapshot_ids", false));
        ASSIGN_OR_RETURN(
            node::VolumeLocks::Lock lock,
            context_->locks->TryAcquire("group-id/" + request->group_snapshot_id(),
                                        "group snapshot " + request->group_snapshot_id()));
        return context_->volumes->DeleteGroupSnapshot(request->group_snapshot_id(), snapshot_ids);
      });
}

grpc::Status GroupControllerService::GetVolumeGroupSnapshot(
    grpc::ServerContext*, const ::csi::v1::GetVolumeGroupSnapshotRequest* request,
    ::csi::v1::GetVolumeGroupSnapshotResponse* response) {
  return context_->Call(
      "GetVolumeGroupSnapshot", Echo(request->group_snapshot_id()), [&]() -> absl::Status {
        RETURN_IF_ERROR(ValidateId(request->group_snapshot_id(), "group_snapshot_id"));
        ASSIGN_OR_RETURN(std::vector<std::string> snapshot_ids,
                         ValidIds(request->snapshot_ids(), "snapshot_ids", false));
        ASSIGN_OR_RETURN(
            node::GroupSnapshot group,
            context_->volumes->GetGroupSnapshot(request->group_snapshot_id(), snapshot_ids));
        FillGroup(group, response->mutable_group_snapshot());
        return absl::OkStatus();
      });
}

}  // namespace strata::csi
