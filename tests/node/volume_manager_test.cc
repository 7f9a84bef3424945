// VolumeManager over real metadata and the vfs driver, with a FakeMounter: the lifecycle,
// idempotency, the errors the CSI layer maps to codes, and recovery after interrupted steps.

#include "node/volume_manager.h"

#include <unistd.h>

#include <functional>

#include "gtest/gtest.h"
#include "tests/node/node_test_util.h"

namespace strata::node {
namespace {

class VolumeManagerTest : public testing::StoreFixture {
 protected:
  void SetUp() override {
    StoreFixture::SetUp();
    AddLayer("base", "", "base.txt");
    AddLayer("top", "base", "top.txt");
    AddImage("demo:v1", "top");
  }
  CreateVolumeParams Params(const std::string& name, const std::string& image = "demo:v1") {
    CreateVolumeParams params;
    params.name = name;
    params.image = image;
    params.fingerprint = "image=" + image;
    return params;
  }
  std::string Staging(const std::string& volume) { return pods_ + "/staging-" + volume; }
  std::string Target(const std::string& pod) { return pods_ + "/" + pod; }
};

TEST_F(VolumeManagerTest, CreateIsIdempotentByNameAndStartsFromTheImage) {
  auto first = volumes_->Create(Params("pvc-1"));
  ASSERT_TRUE(first.ok()) << first.status();
  auto again = volumes_->Create(Params("pvc-1"));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(first->id, again->id);
  EXPECT_EQ(first->chain_id, "top");
  // vfs writable layers are full copies: both image files are there, and writes stay private.
  std::string tree = root_ + "/vfs/" + first->active_id;
  EXPECT_EQ(testing::ReadFile(tree + "/base.txt"), "base");
  EXPECT_EQ(testing::ReadFile(tree + "/top.txt"), "top");
  EXPECT_EQ(volumes_->List()->size(), 1u);
}

TEST_F(VolumeManagerTest, SameNameOtherParametersIsAlreadyExists) {
  ASSERT_TRUE(volumes_->Create(Params("pvc-1")).ok());
  CreateVolumeParams other = Params("pvc-1", "");
  EXPECT_TRUE(absl::IsAlreadyExists(volumes_->Create(other).status()));
}

TEST_F(VolumeManagerTest, UnknownImageIsNotFoundAndLeavesNothing) {
  auto created = volumes_->Create(Params("pvc-x", "nope:latest"));
  EXPECT_TRUE(absl::IsNotFound(created.status()));
  EXPECT_NE(created.status().message().find("stratactl import"), std::string::npos);
  EXPECT_TRUE(metadata_->ListVolumes()->empty());
}

TEST_F(VolumeManagerTest, StagePublishUnpublishUnstageDeleteWalk) {
  auto volume = *volumes_->Create(Params("pvc-1"));
  ASSERT_TRUE(volumes_->Stage(volume.id, Staging("a")).ok());
  ASSERT_TRUE(volumes_->Stage(volume.id, Staging("a")).ok()) << "stage is idempotent";
  EXPECT_EQ(mounter_.mounts().size(), 1u);
  ASSERT_TRUE(volumes_->Publish(volume.id, Staging("a"), Target("pod1"), false).ok());
  ASSERT_TRUE(volumes_->Publish(volume.id, Staging("a"), Target("pod2"), true).ok());
  ASSERT_TRUE(volumes_->Publish(volume.id, Staging("a"), Target("pod2"), true).ok());
  ASSERT_EQ(mounter_.mounts().size(), 3u);
  const auto ro_bind = mounter_.mounts()[2];
  EXPECT_EQ(ro_bind.mount.type, "bind");
  EXPECT_EQ(ro_bind.mount.source, Staging("a"));
  EXPECT_EQ(ro_bind.mount.options, (std::vector<std::string>{"ro", "nodev"}));
  // Same target, other read-only flag: incompatible.
  EXPECT_TRUE(
      absl::IsAlreadyExists(volumes_->Publish(volume.id, Staging("a"), Target("pod2"), false)));
  // In use: neither unstage nor delete may proceed.
  EXPECT_TRUE(absl::IsFailedPrecondition(volumes_->Unstage(volume.id, Staging("a"))));
  EXPECT_TRUE(absl::IsFailedPrecondition(volumes_->Delete(volume.id)));

  ASSERT_TRUE(volumes_->Unpublish(volume.id, Target("pod1")).ok());
  ASSERT_TRUE(volumes_->Unpublish(volume.id, Target("pod1")).ok()) << "unpublish is idempotent";
  ASSERT_TRUE(volumes_->Unpublish(volume.id, Target("pod2")).ok());
  ASSERT_TRUE(volumes_->Unstage(volume.id, Staging("a")).ok());
  ASSERT_TRUE(volumes_->Unstage(volume.id, Staging("a")).ok());
  EXPECT_TRUE(mounter_.mounts().empty());
  ASSERT_TRUE(volumes_->Delete(volume.id).ok());
  ASSERT_TRUE(volumes_->Delete(volume.id).ok()) << "delete is idempotent";
  EXPECT_NE(access((root_ + "/vfs/" + volume.active_id).c_str(), F_OK), 0);
}

TEST_F(VolumeManagerTest, EachMountPathCallMakesOneDurableCommit) {
  auto volume = *volumes_->Create(Params("pvc-1"));
  // The intents are volatile (they die only with the kernel, like the mounts they announce);
  // the outcome of each call is its one durable commit.
  auto durable_during = [&](const std::function<absl::Status()>& call) {
    int64_t before = metadata_->durable_commits();
    absl::Status status = call();
    EXPECT_TRUE(status.ok()) << status;
    return metadata_->durable_commits() - before;
  };
  EXPECT_EQ(durable_during([&] { return volumes_->Stage(volume.id, Staging("a")); }), 1);
  EXPECT_EQ(durable_during(
                [&] { return volumes_->Publish(volume.id, Staging("a"), Target("p"), false); }),
            1);
  EXPECT_EQ(durable_during([&] { return volumes_->Unpublish(volume.id, Target("p")); }), 1);
  EXPECT_EQ(durable_during([&] { return volumes_->Unstage(volume.id, Staging("a")); }), 1);
  // The volatile intents were real commits: the state they left is the one read back.
  EXPECT_EQ((*metadata_->GetVolume(volume.id))->state, kVolumeReady);
}

// Where a volume is mounted goes to the label's mounts file (not synced: mounts die with the
// kernel); the identity label, written durably at create, is not rewritten by the mount path.
TEST_F(VolumeManagerTest, MountPathRecordsMountsBesideTheIdentityLabelAndLeavesItAlone) {
  auto volume = *volumes_->Create(Params("pvc-1"));
  const std::string identity_path = root_ + "/labels/content/" + volume.active_id;
  const std::string mounts_path = root_ + "/labels/mounts/" + volume.active_id;
  const std::string identity = testing::ReadFile(identity_path);
  ASSERT_NE(identity.find("pvc-1"), std::string::npos) << identity;
  EXPECT_NE(access(mounts_path.c_str(), F_OK), 0) << "nothing is mounted yet";

  ASSERT_TRUE(volumes_->Stage(volume.id, Staging("a")).ok());
  ASSERT_TRUE(volumes_->Publish(volume.id, Staging("a"), Target("p"), true).ok());
  auto label = labels_->GetContent(volume.active_id);
  ASSERT_TRUE(label.ok() && label->has_value()) << label.status();
  EXPECT_EQ((*label)->volume.name, "pvc-1");
  EXPECT_EQ((*label)->volume.staging_path, Staging("a"));
  ASSERT_EQ((*label)->publications.size(), 1u);
  EXPECT_EQ((*label)->publications[0].target_path, Target("p"));
  EXPECT_TRUE((*label)->publications[0].read_only);
  EXPECT_EQ(testing::ReadFile(identity_path), identity)
      << "the mount path rewrote the identity label";

  ASSERT_TRUE(volumes_->Unpublish(volume.id, Target("p")).ok());
  label = labels_->GetContent(volume.active_id);
  ASSERT_TRUE(label.ok() && label->has_value());
  EXPECT_TRUE((*label)->publications.empty());
  EXPECT_EQ((*label)->volume.staging_path, Staging("a"));
  ASSERT_TRUE(volumes_->Unstage(volume.id, Staging("a")).ok());
  EXPECT_NE(access(mounts_path.c_str(), F_OK), 0) << "neither staged nor published: no file";
  label = labels_->GetContent(volume.active_id);
  ASSERT_TRUE(label.ok() && label->has_value());
  EXPECT_EQ((*label)->volume.staging_path, "");
  EXPECT_EQ(testing::ReadFile(identity_path), identity);

  // A delete removes both files.
  ASSERT_TRUE(volumes_->Stage(volume.id, Staging("a")).ok());
  ASSERT_TRUE(volumes_->Unstage(volume.id, Staging("a")).ok());
  ASSERT_TRUE(volumes_->Delete(volume.id).ok());
  EXPECT_NE(access(identity_path.c_str(), F_OK), 0);
  EXPECT_NE(access(mounts_path.c_str(), F_OK), 0);
}

// A power loss can leave the unsynced mounts file empty or torn: the label still reads, as a
// volume mounted nowhere (which after a power loss is the truth).
TEST_F(VolumeManagerTest, ATornMountsFileReadsAsMountedNowhere) {
  auto volume = *volumes_->Create(Params("pvc-1"));
  ASSERT_TRUE(volumes_->Stage(volume.id, Staging("a")).ok());
  for (const char* torn : {"", "{\"staging_path\":\"/x", "\x01\x02"}) {
    testing::WriteFile(root_ + "/labels/mounts/" + volume.active_id, torn);
    auto label = labels_->GetContent(volume.active_id);
    ASSERT_TRUE(label.ok()) << label.status();
    ASSERT_TRUE(label->has_value());
    EXPECT_EQ((*label)->volume.name, "pvc-1");
    EXPECT_EQ((*label)->volume.staging_path, "");
    EXPECT_TRUE((*label)->publications.empty());
  }
}

// Labels written before mounts had their own file carried staging_path and publications
// themselves; they still read the same.
TEST_F(VolumeManagerTest, AnOlderLabelWithMountsInsideStillReads) {
  auto volume = *volumes_->Create(Params("pvc-1"));
  const std::string identity_path = root_ + "/labels/content/" + volume.active_id;
  std::string text = testing::ReadFile(identity_path);
  ASSERT_EQ(text.front(), '{');
  text.insert(1,
              "\"staging_path\":\"/old/stage\",\"publications\":[{\"target_path\":"
              "\"/old/pod\",\"read_only\":false}],");
  testing::WriteFile(identity_path, text);
  auto label = labels_->GetContent(volume.active_id);
  ASSERT_TRUE(label.ok() && label->has_value()) << label.status();
  EXPECT_EQ((*label)->volume.staging_path, "/old/stage");
  ASSERT_EQ((*label)->publications.size(), 1u);
  EXPECT_EQ((*label)->publications[0].target_path, "/old/pod");
}

TEST_F(VolumeManagerTest, PublishBeforeStageIsFailedPrecondition) {
  auto volume = *volumes_->Create(Params("pvc-1"));
  EXPECT_TRUE(
      absl::IsFailedPrecondition(volumes_->Publish(volume.id, Staging("a"), Target("pod"), false)));
  EXPECT_TRUE(absl::IsNotFound(volumes_->Stage("vol-missing", Staging("a"))));
}

TEST_F(VolumeManagerTest, PathsInsideTheStoreAreRefused) {
  auto volume = *volumes_->Create(Params("pvc-1"));
  EXPECT_TRUE(absl::IsInvalidArgument(volumes_->Stage(volume.id, root_ + "/vfs/x")));
  ASSERT_TRUE(volumes_->Stage(volume.id, Staging("a")).ok());
  EXPECT_TRUE(
      absl::IsInvalidArgument(volumes_->Publish(volume.id, Staging("a"), root_ + "/vfs", false)));
}

TEST_F(VolumeManagerTest, FailedMountChangesNothingAndRetrySucceeds) {
  auto volume = *volumes_->Create(Params("pvc-1"));
  mounter_.FailNextMountAt(absl::InternalError("injected"));
  EXPECT_FALSE(volumes_->Stage(volume.id, Staging("a")).ok());
  EXPECT_EQ(volumes_->Get(volume.id)->state, kVolumeReady);
  EXPECT_TRUE(volumes_->Stage(volume.id, Staging("a")).ok());
  mounter_.FailNextMountAt(absl::InternalError("injected"));
  EXPECT_FALSE(volumes_->Publish(volume.id, Staging("a"), Target("pod"), false).ok());
  EXPECT_TRUE(volumes_->Publications(volume.id)->empty());
  EXPECT_TRUE(volumes_->Publish(volume.id, Staging("a"), Target("pod"), false).ok());
}

TEST_F(VolumeManagerTest, UsageReportsAbnormalWhenTheMountIsGone) {
  auto volume = *volumes_->Create(Params("pvc-1"));
  ASSERT_TRUE(volumes_->Stage(volume.id, Staging("a")).ok());
  auto usage = volumes_->Usage(volume.id, Staging("a"));
  ASSERT_TRUE(usage.ok()) << usage.status();
  EXPECT_FALSE(usage->abnormal);
  EXPECT_GT(usage->used_bytes, 0);
  EXPECT_TRUE(absl::IsNotFound(volumes_->Usage(volume.id, Target("elsewhere")).status()));
  ASSERT_TRUE(mounter_.Unmount(Staging("a")).ok());  // someone unmounted it behind our back
  usage = volumes_->Usage(volume.id, Staging("a"));
  ASSERT_TRUE(usage.ok());
  EXPECT_TRUE(usage->abnormal);
}

TEST_F(VolumeManagerTest, EphemeralVolumeLivesAndDiesWithItsPublication) {
  ASSERT_TRUE(volumes_->PublishEphemeral("csi-abc", "demo:v1", Target("pod"), false).ok());
  ASSERT_TRUE(volumes_->PublishEphemeral("csi-abc", "demo:v1", Target("pod"), false).ok());
  auto volume = volumes_->Get("csi-abc");
  ASSERT_TRUE(volume.ok());
  EXPECT_TRUE(volume->ephemeral);
  EXPECT_EQ(mounter_.mounts().size(), 2u);  // private staging + bind
  ASSERT_TRUE(volumes_->Unpublish("csi-abc", Target("pod")).ok());
  EXPECT_TRUE(mounter_.mounts().empty());
  EXPECT_TRUE(absl::IsNotFound(volumes_->Get("csi-abc").status()));
  EXPECT_NE(access((root_ + "/vfs/" + volume->active_id).c_str(), F_OK), 0);
  EXPECT_TRUE(volumes_->Unpublish("csi-abc", Target("pod")).ok()) << "retry after teardown";
}

TEST_F(VolumeManagerTest, RecoveryResolvesInterruptedSteps) {
  auto staged = *volumes_->Create(Params("pvc-staged"));
  auto unstaged = *volumes_->Create(Params("pvc-unstaged"));
  auto creating = *volumes_->Create(Params("pvc-creating"));
  // Crash right after the mount, before the outcome was written.
  VolumeRecord record = *volumes_->Get(staged.id);
  record.pending = "stage";
  record.staging_path = Staging("s");
  ASSERT_TRUE(metadata_->PutVolume(record).ok());
  ASSERT_TRUE(mounter_.MountAt({"bind", "/x", {"rw"}}, Staging("s")).ok());
  // Crash after the intent, before the mount.
  record = *volumes_->Get(unstaged.id);
  record.pending = "stage";
  record.staging_path = Staging("u");
  ASSERT_TRUE(metadata_->PutVolume(record).ok());
  // Crash in the middle of CreateVolume.
  record = *metadata_->GetVolume(creating.id).value();
  record.state = kVolumeCreating;
  ASSERT_TRUE(metadata_->PutVolume(record).ok());
  // Leftover driver content nobody knows.
  ASSERT_TRUE(driver_->Prepare("zz9", {}, {}).ok());

  ASSERT_TRUE(volumes_->Recover().ok());
  EXPECT_EQ(volumes_->Get(staged.id)->state, kVolumeStaged);
  EXPECT_EQ(volumes_->Get(unstaged.id)->state, kVolumeReady);
  EXPECT_TRUE(volumes_->Get(unstaged.id)->pending.empty());
  EXPECT_FALSE(metadata_->GetVolume(creating.id)->has_value());
  // The unknown content is quarantined, not deleted.
  auto quarantined = quarantine_->List();
  ASSERT_TRUE(quarantined.ok());
  ASSERT_EQ(quarantined->size(), 1u);
  EXPECT_EQ((*quarantined)[0].driver_id, "zz9");
  auto stored = driver_->Walk();
  ASSERT_TRUE(stored.ok());
  for (const std::string& id : *stored) {
    EXPECT_NE(id, "zz9");
    EXPECT_NE(id, creating.active_id);
  }
  // Writable layers of surviving volumes are never touched by recovery.
  EXPECT_EQ(access((root_ + "/vfs/" + staged.active_id).c_str(), F_OK), 0);
  EXPECT_EQ(access((root_ + "/vfs/" + unstaged.active_id).c_str(), F_OK), 0);
  // And the retried calls succeed.
  EXPECT_TRUE(volumes_->Stage(staged.id, Staging("s")).ok());
  EXPECT_TRUE(volumes_->Stage(unstaged.id, Staging("u")).ok());
  EXPECT_TRUE(volumes_->Create(Params("pvc-creating")).ok());
}

TEST_F(VolumeManagerTest, RecoveryTakesDownPrivateMountsAKilledPluginLeft) {
  // A flatten or a devmapper import killed mid-way leaves a private mount under the scratch dir.
  const std::string leftover = root_ + "/tmp/flatten-7";
  ASSERT_TRUE(MakeDirs(leftover).ok());
  ASSERT_TRUE(mounter_.MountAt({"overlay", "overlay", {"lowerdir+=/x"}}, leftover).ok());
  ASSERT_TRUE(mounter_.MountAt({"bind", "/y", {"rw"}}, Staging("kept")).ok());
  ASSERT_TRUE(volumes_->Recover().ok());
  ASSERT_EQ(mounter_.mounts().size(), 1u) << "only the leftover goes";
  EXPECT_EQ(mounter_.mounts()[0].target, Staging("kept"));
  EXPECT_NE(access((root_ + "/tmp").c_str(), F_OK), 0) << "the scratch dir is emptied";
}

TEST_F(VolumeManagerTest, GarbageCollectionKeepsWhatVolumesUse) {
  AddLayer("lonely", "", "lonely.txt");
  auto volume = *volumes_->Create(Params("pvc-1"));
  ASSERT_TRUE(layers_->RemoveImage("demo:v1").ok());
  auto dry = layers_->GarbageCollect(true);
  ASSERT_TRUE(dry.ok());
  EXPECT_EQ(dry->removed_chain_ids, std::vector<std::string>{"lonely"});
  EXPECT_TRUE(metadata_->GetLayer("lonely")->has_value()) << "dry run removes nothing";
  ASSERT_TRUE(layers_->GarbageCollect(false).ok());
  EXPECT_FALSE(metadata_->GetLayer("lonely")->has_value());
  EXPECT_TRUE(metadata_->GetLayer("top")->has_value()) << "the volume still uses top";
  ASSERT_TRUE(volumes_->Delete(volume.id).ok());
  auto all = layers_->GarbageCollect(false);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->removed_chain_ids.size(), 2u) << "top, then base in the same pass";
  EXPECT_TRUE(metadata_->ListLayers()->empty());
}

}  // namespace
}  // namespace strata::node
