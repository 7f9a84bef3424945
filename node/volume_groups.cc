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

#include <algorithm>
#include <ctime>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/status_macros.h"
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
  int fd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return absl::ErrnoToStatus(errno, absl::StrCat("open ", path, " to sync it"));
  int rc = syncfs(fd);
  int saved = errno;
  close(fd);
  if (rc != 0) return absl::ErrnoToStatus(saved, absl::StrCat("syncfs ", path));
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
    std::set<std::string> sources = SourcesOf(*existing);
    // A group cut short by a crash has fewer member rows than volumes: its planned sources are
    // the member names already made plus the rest, so compare what is known.
    bool compatible = existing->state == "ready" ? sources == wanted
                                                 : std::includes(wanted.begin(), wanted.end(),
                                                                 sources.begin(), sources.end());
    if (!compatible) {
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
  // Members first: a crash in between leaves the record, and the retry deletes the rest.
  for (const auto& [volume_id, snapshot_id] : group->members)
    RETURN_IF_ERROR(DeleteSnapshot(snapshot_id));
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
