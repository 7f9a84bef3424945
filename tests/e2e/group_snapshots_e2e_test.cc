// End-to-end, CSI volume group snapshots (issue 11): the real strata-csi on the overlay driver,
// driven as the external-snapshotter's group controller drives it. A group of three published
// volumes restores all three to the moment of the cut; the calls are idempotent, validate their
// input with the spec's codes, survive a restart, and Delete removes every member. Needs root.

#include <sys/stat.h>
#include <unistd.h>

#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "node/paths.h"
#include "tests/e2e/csi_calls.h"
#include "tests/e2e/e2e_util.h"
#include "tests/e2e/overlay_plugin_test.h"
#include "tests/e2e/plugin_process.h"

namespace strata::e2e {
namespace {

class GroupSnapshotsTest : public OverlayPluginTest {
 protected:
  GroupSnapshotsTest() : OverlayPluginTest("strata-groups") {}

  // A volume (restored from `snapshot_id` when given), staged and published; returns its id and
  // sets `target` to where a pod would see it.
  std::string PublishedVolume(const std::string& name, std::string* target,
                              const std::string& snapshot_id = "") {
    ::csi::v1::CreateVolumeRequest request;
    request.set_name(name);
    *request.add_volume_capabilities() = MountCapability();
    if (!snapshot_id.empty())
      request.mutable_volume_content_source()->mutable_snapshot()->set_snapshot_id(snapshot_id);
    ::csi::v1::CreateVolumeResponse created;
    grpc::Status status =
        plugin_->controller().CreateVolume(CallContext().get(), request, &created);
    EXPECT_TRUE(status.ok()) << name << ": " << status.error_message();
    const std::string id = created.volume().volume_id();
    const std::string staging = dir_ + "/staging-" + name;
    *target = dir_ + "/pod-" + name;
    EXPECT_TRUE(StageVolume(*plugin_, id, staging).ok());
    status = PublishVolume(*plugin_, id, staging, *target);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return id;
  }

  grpc::Status CreateGroup(const std::string& name, const std::vector<std::string>& volume_ids,
                           ::csi::v1::CreateVolumeGroupSnapshotResponse* response) {
    ::csi::v1::CreateVolumeGroupSnapshotRequest request;
    request.set_name(name);
    for (const std::string& id : volume_ids) request.add_source_volume_ids(id);
    return plugin_->group_controller().CreateVolumeGroupSnapshot(CallContext().get(), request,
                                                                 response);
  }
  grpc::Status GetGroup(const std::string& group_id, const std::vector<std::string>& snapshot_ids,
                        ::csi::v1::GetVolumeGroupSnapshotResponse* response) {
    ::csi::v1::GetVolumeGroupSnapshotRequest request;
    request.set_group_snapshot_id(group_id);
    for (const std::string& id : snapshot_ids) request.add_snapshot_ids(id);
    return plugin_->group_controller().GetVolumeGroupSnapshot(CallContext().get(), request,
                                                              response);
  }
  grpc::Status DeleteGroup(const std::string& group_id,
                           const std::vector<std::string>& snapshot_ids) {
    ::csi::v1::DeleteVolumeGroupSnapshotRequest request;
    request.set_group_snapshot_id(group_id);
    for (const std::string& id : snapshot_ids) request.add_snapshot_ids(id);
    ::csi::v1::DeleteVolumeGroupSnapshotResponse response;
    return plugin_->group_controller().DeleteVolumeGroupSnapshot(CallContext().get(), request,
                                                                 &response);
  }
  std::set<std::string> SnapshotIds() {
    ::csi::v1::ListSnapshotsResponse listed;
    EXPECT_TRUE(plugin_->controller().ListSnapshots(CallContext().get(), {}, &listed).ok());
    std::set<std::string> ids;
    for (const auto& entry : listed.entries()) ids.insert(entry.snapshot().snapshot_id());
    return ids;
  }
};

std::vector<std::string> MemberIds(const ::csi::v1::VolumeGroupSnapshot& group) {
  std::vector<std::string> ids;
  for (const auto& snapshot : group.snapshots()) ids.push_back(snapshot.snapshot_id());
  return ids;
}

TEST_F(GroupSnapshotsTest, AGroupOfThreeRestoresAllThreeToTheCut) {
  ::csi::v1::GetPluginCapabilitiesResponse plugin_capabilities;
  ASSERT_TRUE(plugin_->identity()
                  .GetPluginCapabilities(CallContext().get(), {}, &plugin_capabilities)
                  .ok());
  bool advertised = false;
  for (const auto& capability : plugin_capabilities.capabilities())
    advertised |= capability.service().type() ==
                  ::csi::v1::PluginCapability::Service::GROUP_CONTROLLER_SERVICE;
  EXPECT_TRUE(advertised);
  ::csi::v1::GroupControllerGetCapabilitiesResponse group_capabilities;
  ASSERT_TRUE(plugin_->group_controller()
                  .GroupControllerGetCapabilities(CallContext().get(), {}, &group_capabilities)
                  .ok());
  ASSERT_EQ(group_capabilities.capabilities_size(), 1);
  EXPECT_EQ(
      group_capabilities.capabilities(0).rpc().type(),
      ::csi::v1::GroupControllerServiceCapability::RPC::CREATE_DELETE_GET_VOLUME_GROUP_SNAPSHOT);

  std::vector<std::string> ids, targets(3);
  for (int i = 0; i < 3; ++i) {
    ids.push_back(PublishedVolume("db-" + std::to_string(i), &targets[i]));
    Spit(targets[i] + "/journal", "moment 1 of volume " + std::to_string(i));
  }
  ::csi::v1::CreateVolumeGroupSnapshotResponse created;
  grpc::Status status = CreateGroup("nightly", ids, &created);
  ASSERT_TRUE(status.ok()) << status.error_message();
  const ::csi::v1::VolumeGroupSnapshot& group = created.group_snapshot();
  EXPECT_TRUE(group.ready_to_use());
  EXPECT_GT(group.creation_time().seconds(), 0);
  ASSERT_EQ(group.snapshots_size(), 3);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(group.snapshots(i).source_volume_id(), ids[i]);
    EXPECT_EQ(group.snapshots(i).group_snapshot_id(), group.group_snapshot_id());
    EXPECT_TRUE(group.snapshots(i).ready_to_use());
    Spit(targets[i] + "/journal", "moment 2 of volume " + std::to_string(i));
  }
  // Members are snapshots like any other: listed, and restorable one by one.
  std::set<std::string> listed = SnapshotIds();
  for (const std::string& id : MemberIds(group)) EXPECT_TRUE(listed.count(id)) << id;
  for (int i = 0; i < 3; ++i) {
    std::string restored_target;
    PublishedVolume("restored-" + std::to_string(i), &restored_target,
                    group.snapshots(i).snapshot_id());
    EXPECT_EQ(Slurp(restored_target + "/journal"), "moment 1 of volume " + std::to_string(i));
    EXPECT_EQ(Slurp(targets[i] + "/journal"), "moment 2 of volume " + std::to_string(i))
        << "the source volume keeps writing on top of the cut";
  }
}

TEST_F(GroupSnapshotsTest, CallsAreIdempotentValidatedAndSurviveARestart) {
  std::vector<std::string> ids, targets(3);
  for (int i = 0; i < 3; ++i) ids.push_back(PublishedVolume("v" + std::to_string(i), &targets[i]));
  ::csi::v1::CreateVolumeGroupSnapshotResponse first, again, response;
  ASSERT_TRUE(CreateGroup("g", {ids[0], ids[1]}, &first).ok());
  const std::string group_id = first.group_snapshot().group_snapshot_id();
  const std::vector<std::string> members = MemberIds(first.group_snapshot());
  ASSERT_TRUE(CreateGroup("g", {ids[1], ids[0]}, &again).ok()) << "same set, other order";
  EXPECT_EQ(again.group_snapshot().group_snapshot_id(), group_id);
  EXPECT_EQ(MemberIds(again.group_snapshot()), members);
  EXPECT_EQ(CreateGroup("g", {ids[0], ids[2]}, &response).error_code(),
            grpc::StatusCode::ALREADY_EXISTS);

  // Bad input changes nothing.
  const std::set<std::string> before = SnapshotIds();
  EXPECT_EQ(CreateGroup("", {ids[0]}, &response).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(CreateGroup("h", {}, &response).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(CreateGroup("h", {ids[0], ids[0]}, &response).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(CreateGroup("h", {ids[0], "no-such-volume"}, &response).error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(CreateGroup("h", std::vector<std::string>(65, ids[0]), &response).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(SnapshotIds(), before);

  // The group is a record in the store: a restarted plugin still knows it.
  ASSERT_EQ(plugin_->Stop(), 0);
  std::string error;
  ASSERT_TRUE(plugin_->Start({}, &error)) << error;
  ::csi::v1::GetVolumeGroupSnapshotResponse got;
  ASSERT_TRUE(GetGroup(group_id, members, &got).ok());
  EXPECT_EQ(MemberIds(got.group_snapshot()), members);
  EXPECT_TRUE(got.group_snapshot().ready_to_use());
  ASSERT_TRUE(GetGroup(group_id, {}, &got).ok()) << "snapshot_ids is checked only when given";
  EXPECT_EQ(GetGroup(group_id, {members[0]}, &got).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);

  // A mismatched delete deletes nothing; the right one deletes every member, then is a no-op.
  EXPECT_EQ(DeleteGroup(group_id, {members[0], "snap-other"}).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(SnapshotIds(), before);
  ASSERT_TRUE(DeleteGroup(group_id, members).ok());
  for (const std::string& id : members) EXPECT_FALSE(SnapshotIds().count(id)) << id;
  EXPECT_EQ(GetGroup(group_id, {}, &got).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_TRUE(DeleteGroup(group_id, members).ok());
  // The name is free again.
  ASSERT_TRUE(CreateGroup("g", {ids[0], ids[2]}, &response).ok());
  EXPECT_NE(response.group_snapshot().group_snapshot_id(), group_id);
}

TEST_F(GroupSnapshotsTest, ACutStoppedByACrashIsFinishedByTheRetryOrDeletedWhole) {
  std::vector<std::string> ids, targets(3);
  for (int i = 0; i < 3; ++i) ids.push_back(PublishedVolume("c" + std::to_string(i), &targets[i]));
  const std::set<std::string> before = SnapshotIds();
  // Killed after the first member is cut: the group is recorded, its other members are not.
  plugin_->Kill();
  ASSERT_TRUE(plugin_->Start({{"STRATA_CRASH_POINT", "group-after-member"}}));
  ::csi::v1::CreateVolumeGroupSnapshotResponse response;
  EXPECT_FALSE(CreateGroup("crashed", ids, &response).ok());
  ASSERT_TRUE(plugin_->WaitForDeath(60000)) << "the crash point did not fire";
  std::string error;
  ASSERT_TRUE(plugin_->Start({}, &error)) << error;
  EXPECT_EQ(SnapshotIds().size(), before.size() + 1) << "the first member was cut";

  // The planned sources are in the record: other volumes under the name are refused.
  EXPECT_EQ(CreateGroup("crashed", {ids[0], ids[1]}, &response).error_code(),
            grpc::StatusCode::ALREADY_EXISTS);
  // The same call finishes the group, reusing the member already made.
  ASSERT_TRUE(CreateGroup("crashed", ids, &response).ok());
  ASSERT_EQ(response.group_snapshot().snapshots_size(), 3);
  EXPECT_TRUE(response.group_snapshot().ready_to_use());
  EXPECT_EQ(SnapshotIds().size(), before.size() + 3);
  ASSERT_TRUE(DeleteGroup(response.group_snapshot().group_snapshot_id(),
                          MemberIds(response.group_snapshot()))
                  .ok());
  EXPECT_EQ(SnapshotIds(), before);

  // Crashed again, then deleted instead of retried: the member made so far goes too.
  plugin_->Kill();
  ASSERT_TRUE(plugin_->Start({{"STRATA_CRASH_POINT", "group-after-member"}}));
  EXPECT_FALSE(CreateGroup("abandoned", ids, &response).ok());
  ASSERT_TRUE(plugin_->WaitForDeath(60000));
  ASSERT_TRUE(plugin_->Start({}, &error)) << error;
  ASSERT_EQ(SnapshotIds().size(), before.size() + 1);
  // The CO never got the id; an admin (or a later tool) deletes by the recorded group.
  // Find it through a member's group_snapshot_id, as ListSnapshots reports it.
  ::csi::v1::ListSnapshotsResponse listed;
  ASSERT_TRUE(plugin_->controller().ListSnapshots(CallContext().get(), {}, &listed).ok());
  std::string group_id;
  for (const auto& entry : listed.entries())
    if (!before.count(entry.snapshot().snapshot_id()))
      group_id = entry.snapshot().group_snapshot_id();
  ASSERT_FALSE(group_id.empty());
  ASSERT_TRUE(DeleteGroup(group_id, {}).ok());
  EXPECT_EQ(SnapshotIds(), before);
}

}  // namespace
}  // namespace strata::e2e
