// Group snapshots: one snapshot (commit) of each of several volumes under one group record.
//
// Consistency: every member's filesystem is synced first (syncfs of each staged volume), then
// the members are committed one after another while the caller holds every volume's lock, so
// no CSI call changes any of them during the cut. Pods are not paused: overlayfs cannot be
// frozen, so a write a pod makes *during* the cut can be in a later member and not an earlier
// one. docs/snapshots.md says so; quiesce the application for a point-in-time group.
//
// Crash safety: the group row is written ("creating") before any member is cut, and member
// snapshots have names derived from the group id, so a retried call finds the members already
// made and finishes the same group. A call that fails removes what it made.

#include <fcntl.h>
#include <unistd.h>

#include <ctime>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/crash_point.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "node/images/safe_fs.h"
#include "node/paths.h"
#include "node/volume_manager.h"

namespace strata::node {
namespace {

std::string MemberName(const std::string& group_id, const std::string& volume_id) {
  return absl::StrCat(group_id, "/", volume_id);
}

std::set<std::string> SourcesOf(const GroupSnapshotRecord& group) {
  std::set<std::string> sources;
  for (const auto& [volume_id, snapshot_id] : group.members) sources.insert(volume_id);
  return sources;
}

// INVALID_ARGUMENT when `snapshot_ids` is given and is not exactly the group's members.
absl::Status CheckMembers(const GroupSnapshotRecord& group,
                          const std::vector<std::string>& snapshot_ids) {
  if (snapshot_ids.empty()) return absl::OkStatus();
  std::set<std::string> given(snapshot_ids.begin(), snapshot_ids.end());
  std::set<std::string> members;
  for (const auto& [volume_id, snapshot_id] : group.members) members.insert(snapshot_id);
  if (given == members) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("snapshot_ids do not match group snapshot ",
                                                 group.id, ", which has ", members.size(),
                                                 " member snapshots"));
}

// Flushes a mounted volume's filesystem: what pods wrote before the group call is on disk
// (and in the writable layer) before the first member is cut.
absl::Status SyncMount(const std::string& path) {
  images::UniqueFd fd(open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd.valid()) return absl::ErrnoToStatus(errno, absl::StrCat("open ", path, " to sync it"));
  if (syncfs(fd.get()) != 0) return absl::ErrnoToStatus(errno, absl::StrCat("syncfs ", path));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<GroupSnapshot> VolumeManager::CreateGroupSnapshot(
    const std::string& name, const std::vector<std::string>& volume_ids) {
  const std::set<std::string> wanted(volume_ids.begin(), volume_ids.end());
  ASSIGN_OR_RETURN(std::optional<GroupSnapshotRecord> existing,
                   metadata_->GetGroupSnapshotByName(name));
  // Every volume is looked at before anything is written: a bad id changes nothing.
  std::vector<VolumeRecord> volumes;
  for (const std::string& id : volume_ids) {
    ASSIGN_OR_RETURN(VolumeRecord volume, MustGet(id));
    if (volume.ephemeral) {
      return absl::FailedPreconditionError(
          absl::StrCat("volume ", id, " is an ephemeral inline volume; it has no snapshots"));
    }
    volumes.push_back(std::move(volume));
  }
  GroupSnapshotRecord group;
  if (existing) {
    // The intent already names every planned source, so a group cut short by a crash is
    // compared the same way as a finished one.
    if (SourcesOf(*existing) != wanted) {
      return absl::AlreadyExistsError(
          absl::StrCat("group snapshot \"", name, "\" already exists with other source volumes"));
    }
    if (existing->state == "ready") return GetGroupSnapshot(existing->id, {});
    group = *existing;
  } else {
    group.id = absl::StrCat("group-", RandomHex(8));
    group.name = name;
    group.created_unix = static_cast<int64_t>(std::time(nullptr));
    group.state = "creating";
    // The planned members: sources known, snapshot ids not yet.
    for (const std::string& id : volume_ids) group.members.emplace_back(id, "");
    RETURN_IF_ERROR(metadata_->PutGroupSnapshot(group));
  }
  for (const VolumeRecord& volume : volumes) {
    if (volume.state == kVolumeStaged) RETURN_IF_ERROR(SyncMount(volume.staging_path));
  }
  GroupSnapshot result;
  group.members.clear();
  for (const VolumeRecord& volume : volumes) {
    absl::StatusOr<SnapshotRecord> snapshot =
        CreateSnapshot(volume.id, MemberName(group.id, volume.id));
    if (!snapshot.ok()) {
      // Remove what this group made, so a failed call leaks no snapshots (the spec asks it).
      for (const SnapshotRecord& made : result.snapshots) (void)DeleteSnapshot(made.id);
      (void)metadata_->DeleteGroupSnapshot(group.id);
      return snapshot.status();
    }
    group.members.emplace_back(volume.id, snapshot->id);
    result.snapshots.push_back(*std::move(snapshot));
    CrashPoint("group-after-member");
  }
  group.state = "ready";
  RETURN_IF_ERROR(metadata_->PutGroupSnapshot(group));
  LogInfo("group snapshot created", {{"group_snapshot", group.id},
                                     {"name", name},
                                     {"members", std::to_string(group.members.size())}});
  result.record = std::move(group);
  return result;
}

absl::Status VolumeManager::DeleteGroupSnapshot(const std::string& group_id,
                                                const std::vector<std::string>& snapshot_ids) {
  ASSIGN_OR_RETURN(std::optional<GroupSnapshotRecord> group, metadata_->GetGroupSnapshot(group_id));
  if (!group) return absl::OkStatus();
  RETURN_IF_ERROR(CheckMembers(*group, snapshot_ids));
  // Members first: a crash in between leaves the record, and the retry deletes the rest. A
  // cut a crash stopped has members recorded only by their source: find them by name.
  for (const auto& [volume_id, snapshot_id] : group->members) {
    if (!snapshot_id.empty()) {
      RETURN_IF_ERROR(DeleteSnapshot(snapshot_id));
      continue;
    }
    ASSIGN_OR_RETURN(std::optional<SnapshotRecord> made,
                     metadata_->GetSnapshotByName(MemberName(group_id, volume_id)));
    if (made) RETURN_IF_ERROR(DeleteSnapshot(made->id));
  }
  RETURN_IF_ERROR(metadata_->DeleteGroupSnapshot(group_id));
  LogInfo("group snapshot deleted", {{"group_snapshot", group_id}});
  return absl::OkStatus();
}

absl::StatusOr<GroupSnapshot> VolumeManager::GetGroupSnapshot(
    const std::string& group_id, const std::vector<std::string>& snapshot_ids) {
  ASSIGN_OR_RETURN(std::optional<GroupSnapshotRecord> group, metadata_->GetGroupSnapshot(group_id));
  if (!group) {
    return absl::NotFoundError(absl::StrCat("group snapshot ", group_id, " not found"));
  }
  RETURN_IF_ERROR(CheckMembers(*group, snapshot_ids));
  GroupSnapshot result;
  for (const auto& [volume_id, snapshot_id] : group->members) {
    ASSIGN_OR_RETURN(std::optional<SnapshotRecord> snapshot, metadata_->GetSnapshot(snapshot_id));
    if (snapshot) result.snapshots.push_back(*std::move(snapshot));
  }
  result.record = *std::move(group);
  return result;
}

}  // namespace strata::node
