// Issue 8: recovery never deletes what it cannot account for. Real metadata, the vfs driver and
// a FakeMounter: unknown content goes to quarantine (never while mounted), a lost database
// makes start-up refuse and then re-adopt every volume from its labels, and quarantined content
// can be restored as a volume or purged.

#include "node/quarantine.h"

#include <unistd.h>

#include "gtest/gtest.h"
#include "tests/node/node_test_util.h"

namespace strata::node {
namespace {

class QuarantineTest : public testing::StoreFixture {
 protected:
  void SetUp() override {
    StoreFixture::SetUp();
    AddLayer("base", "", "base.txt");
    AddImage("demo:v1", "base");
  }
  CreateVolumeParams Params(const std::string& name) {
    CreateVolumeParams params;
    params.name = name;
    params.image = "demo:v1";
    params.fingerprint = "image=demo:v1 " + name;
    params.capacity_bytes = 1 << 20;
    return params;
  }
  std::string Tree(const std::string& driver_id) { return root_ + "/vfs/" + driver_id; }
  // The plugin restarted on a database that lost everything (WAL removed, or strata.db gone).
  void LoseTheDatabase() {
    volumes_.reset();
    layers_.reset();
    metadata_.reset();
    ASSERT_EQ(unlink((root_ + "/strata.db").c_str()), 0);
    (void)unlink((root_ + "/strata.db-wal").c_str());
    (void)unlink((root_ + "/strata.db-shm").c_str());
    auto metadata = Metadata::Open(root_ + "/strata.db");
    ASSERT_TRUE(metadata.ok()) << metadata.status();
    metadata_ = std::move(*metadata);
    layers_ = std::make_unique<LayerStore>(metadata_.get(), driver_.get(), &mounter_,
                                           root_ + "/tmp", images::ImportLimits{},
                                           StoreFiles{labels_.get(), quarantine_.get()});
    volumes_ = std::make_unique<VolumeManager>(
        metadata_.get(), layers_.get(), driver_.get(), &mounter_, nullptr,
        VolumeManagerOptions{root_, root_ + "/volumes", root_ + "/tmp", flatten_depth_});
  }
};

TEST_F(QuarantineTest, UnknownContentIsMovedToQuarantineByteIdenticalNeverDeleted) {
  auto kept = volumes_->Create(Params("pvc-kept"));
  ASSERT_TRUE(kept.ok()) << kept.status();
  ASSERT_TRUE(driver_->Prepare("zz9", {}, {}).ok());  // no record, no label
  testing::WriteFile(Tree("zz9") + "/data.txt", "precious bytes");

  ASSERT_TRUE(volumes_->Recover().ok());
  auto entries = quarantine_->List();
  ASSERT_TRUE(entries.ok()) << entries.status();
  ASSERT_EQ(entries->size(), 1u);
  const QuarantineEntry& entry = (*entries)[0];
  EXPECT_EQ(entry.driver_id, "zz9");
  EXPECT_TRUE(entry.label.empty());
  EXPECT_EQ(testing::ReadFile(root_ + "/quarantine/" + entry.name + "/content/data.txt"),
            "precious bytes");
  EXPECT_NE(access(Tree("zz9").c_str(), F_OK), 0) << "moved out of the driver";
  EXPECT_EQ(access(Tree(kept->active_id).c_str(), F_OK), 0);
  // A second start finds nothing new to quarantine.
  ASSERT_TRUE(volumes_->Recover().ok());
  EXPECT_EQ(quarantine_->List()->size(), 1u);
}

TEST_F(QuarantineTest, MountedUnknownContentIsNeverTouched) {
  ASSERT_TRUE(driver_->Prepare("zz8", {}, {}).ok());
  testing::WriteFile(Tree("zz8") + "/data.txt", "in use");
  ASSERT_TRUE(mounter_.MountAt({"bind", Tree("zz8"), {"rw"}}, pods_ + "/pod").ok());
  ASSERT_TRUE(volumes_->Recover().ok());
  EXPECT_TRUE(quarantine_->List()->empty());
  EXPECT_EQ(testing::ReadFile(Tree("zz8") + "/data.txt"), "in use");
  EXPECT_EQ(mounter_.mounts().size(), 1u) << "nothing unmounted";
}

TEST_F(QuarantineTest, ContentTheStoreWasDeletingOrScratchIsRemoved) {
  ASSERT_TRUE(driver_->Prepare("zz7", {}, {}).ok());
  ASSERT_TRUE(labels_->PutScratch("zz7").ok());
  auto doomed = volumes_->Create(Params("pvc-doomed"));
  ASSERT_TRUE(doomed.ok());
  ASSERT_TRUE(labels_->MarkDeleting(doomed->active_id).ok());
  ASSERT_TRUE(metadata_->DeleteVolume(doomed->id).ok());  // a delete killed after forgetting it
  ASSERT_TRUE(volumes_->Recover().ok());
  EXPECT_TRUE(quarantine_->List()->empty());
  EXPECT_NE(access(Tree("zz7").c_str(), F_OK), 0);
  EXPECT_NE(access(Tree(doomed->active_id).c_str(), F_OK), 0);
}

TEST_F(QuarantineTest, LostDatabaseRefusesToStartThenReadoptsEveryVolume) {
  auto published = volumes_->Create(Params("pvc-published"));
  auto idle = volumes_->Create(Params("pvc-idle"));
  ASSERT_TRUE(published.ok() && idle.ok());
  testing::WriteFile(Tree(idle->active_id) + "/idle.txt", "idle data");
  auto snapshot = volumes_->CreateSnapshot(idle->id, "snap-1");  // rebases pvc-idle
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  const std::string staging = pods_ + "/staging";
  const std::string target = pods_ + "/target";
  ASSERT_TRUE(volumes_->Stage(published->id, staging).ok());
  ASSERT_TRUE(volumes_->Publish(published->id, staging, target, false).ok());
  testing::WriteFile(Tree(published->active_id) + "/pod.txt", "the pod's file");
  auto before = driver_->Walk();
  ASSERT_TRUE(before.ok());

  LoseTheDatabase();
  absl::Status refused = volumes_->Recover();
  EXPECT_TRUE(absl::IsFailedPrecondition(refused)) << refused;
  EXPECT_NE(refused.message().find("--recover-unknown=readopt"), std::string::npos) << refused;
  EXPECT_NE(refused.message().find("backup"), std::string::npos) << refused;
  EXPECT_EQ(*driver_->Walk(), *before) << "a refused start changes nothing";
  EXPECT_TRUE(quarantine_->List()->empty());

  ASSERT_TRUE(volumes_->Recover(UnknownContentPolicy::kReadopt).ok());
  EXPECT_EQ(*driver_->Walk(), *before) << "nothing removed";
  EXPECT_TRUE(quarantine_->List()->empty());
  auto again = volumes_->Get(published->id);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->name, "pvc-published");
  EXPECT_EQ(again->active_id, published->active_id);
  EXPECT_EQ(again->chain_id, published->chain_id);
  EXPECT_EQ(again->capacity_bytes, 1 << 20);
  EXPECT_EQ(again->request_fingerprint, published->request_fingerprint);
  EXPECT_EQ(again->state, kVolumeStaged) << "its staging mount survived";
  auto publications = volumes_->Publications(published->id);
  ASSERT_EQ(publications->size(), 1u);
  EXPECT_EQ((*publications)[0].target_path, target);
  EXPECT_EQ(testing::ReadFile(Tree(again->active_id) + "/pod.txt"), "the pod's file");
  // The kubelet's retries succeed; the new driver ids never collide with the ones on disk.
  EXPECT_TRUE(volumes_->Stage(published->id, staging).ok());
  EXPECT_TRUE(volumes_->Publish(published->id, staging, target, false).ok());
  EXPECT_EQ(mounter_.mounts().size(), 2u) << "no mount added or removed";
  auto idle_again = volumes_->Get(idle->id);
  ASSERT_TRUE(idle_again.ok());
  EXPECT_EQ(idle_again->chain_id, snapshot->chain_id) << "the newest writable layer wins";
  auto snapshot_again = volumes_->GetSnapshot(snapshot->id);
  ASSERT_TRUE(snapshot_again.ok()) << snapshot_again.status();
  CreateVolumeParams restore = Params("pvc-restored");
  restore.image = "";
  restore.source_snapshot_id = snapshot->id;
  restore.fingerprint = "from snap-1";
  auto restored = volumes_->Create(restore);
  ASSERT_TRUE(restored.ok()) << restored.status();
  auto chain = layers_->DriverChain(restored->chain_id);
  ASSERT_TRUE(chain.ok());
  EXPECT_EQ(testing::ReadFile(Tree(chain->front()) + "/idle.txt"), "idle data");
  EXPECT_TRUE(layers_->ResolveImage("demo:v1").ok());
}

TEST_F(QuarantineTest, OlderDatabaseRefusesThenReadoptMergesWhatItLost) {
  auto old_volume = volumes_->Create(Params("pvc-old"));
  ASSERT_TRUE(old_volume.ok());
  ASSERT_TRUE(metadata_->Backup(root_ + "/backup.db").ok());
  auto new_volume = volumes_->Create(Params("pvc-new"));
  ASSERT_TRUE(new_volume.ok());
  testing::WriteFile(Tree(new_volume->active_id) + "/new.txt", "made after the backup");
  // The database goes back to the backup (a WAL lost after a checkpoint looks the same).
  volumes_.reset();
  layers_.reset();
  metadata_.reset();
  ASSERT_EQ(rename((root_ + "/backup.db").c_str(), (root_ + "/strata.db").c_str()), 0);
  (void)unlink((root_ + "/strata.db-wal").c_str());
  (void)unlink((root_ + "/strata.db-shm").c_str());
  metadata_ = std::move(*Metadata::Open(root_ + "/strata.db"));
  layers_ = std::make_unique<LayerStore>(metadata_.get(), driver_.get(), &mounter_, root_ + "/tmp",
                                         images::ImportLimits{},
                                         StoreFiles{labels_.get(), quarantine_.get()});
  volumes_ = std::make_unique<VolumeManager>(
      metadata_.get(), layers_.get(), driver_.get(), &mounter_, nullptr,
      VolumeManagerOptions{root_, root_ + "/volumes", root_ + "/tmp", flatten_depth_});
  absl::Status refused = volumes_->Recover();
  EXPECT_TRUE(absl::IsFailedPrecondition(refused)) << refused;
  ASSERT_TRUE(volumes_->Recover(UnknownContentPolicy::kReadopt).ok());
  EXPECT_TRUE(volumes_->Get(old_volume->id).ok());
  auto back = volumes_->Get(new_volume->id);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(testing::ReadFile(Tree(back->active_id) + "/new.txt"), "made after the backup");
  EXPECT_TRUE(quarantine_->List()->empty());
  // A new volume gets an id no content on disk has.
  auto third = volumes_->Create(Params("pvc-third"));
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_NE(third->active_id, new_volume->active_id);
}

TEST_F(QuarantineTest, LostDatabaseWithQuarantinePolicyKeepsEverythingAside) {
  auto volume = volumes_->Create(Params("pvc-one"));
  ASSERT_TRUE(volume.ok());
  testing::WriteFile(Tree(volume->active_id) + "/f.txt", "kept aside");
  LoseTheDatabase();
  ASSERT_TRUE(volumes_->Recover(UnknownContentPolicy::kQuarantine).ok());
  EXPECT_TRUE(driver_->Walk()->empty());
  auto entries = quarantine_->List();
  ASSERT_EQ(entries->size(), 2u);  // the image's layer and the writable layer
  // Restore puts the writable layer back as its own volume (its label names it).
  std::string writable;
  for (const QuarantineEntry& entry : *entries)
    if (entry.driver_id == volume->active_id) writable = entry.name;
  ASSERT_FALSE(writable.empty());
  auto restored = volumes_->RestoreQuarantined(writable, "");
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_EQ(restored->volume.name, "pvc-one");
  EXPECT_EQ(restored->volume.id, volume->id);
  EXPECT_EQ(testing::ReadFile(Tree(restored->volume.active_id) + "/f.txt"), "kept aside");
}

TEST_F(QuarantineTest, RestoreMakesAVolumeAndPurgeIsTheOnlyDelete) {
  ASSERT_TRUE(driver_->Prepare("zz6", {}, {}).ok());
  testing::WriteFile(Tree("zz6") + "/a.txt", "A");
  ASSERT_TRUE(driver_->Prepare("zz5", {}, {}).ok());
  testing::WriteFile(Tree("zz5") + "/b.txt", "B");
  ASSERT_TRUE(volumes_->Recover().ok());
  auto entries = quarantine_->List();
  ASSERT_EQ(entries->size(), 2u);
  std::string first = (*entries)[0].driver_id == "zz6" ? (*entries)[0].name : (*entries)[1].name;
  std::string second = (*entries)[0].driver_id == "zz6" ? (*entries)[1].name : (*entries)[0].name;

  EXPECT_TRUE(absl::IsInvalidArgument(volumes_->RestoreQuarantined(first, "").status()))
      << "an unlabelled writable layer needs a name";
  EXPECT_TRUE(absl::IsInvalidArgument(quarantine_->Purge("../x")));
  auto restored = volumes_->RestoreQuarantined(first, "pvc-from-quarantine");
  ASSERT_TRUE(restored.ok()) << restored.status();
  auto volume = volumes_->Get(restored->volume.id);
  ASSERT_TRUE(volume.ok());
  EXPECT_EQ(volume->name, "pvc-from-quarantine");
  EXPECT_EQ(testing::ReadFile(Tree(volume->active_id) + "/a.txt"), "A");
  EXPECT_TRUE(volumes_->Stage(volume->id, pods_ + "/s").ok());

  ASSERT_TRUE(quarantine_->Purge(second).ok());
  EXPECT_TRUE(quarantine_->List()->empty());
  EXPECT_NE(access((root_ + "/quarantine/" + second).c_str(), F_OK), 0);
  EXPECT_TRUE(absl::IsNotFound(quarantine_->Purge(second)));
  // Restarting keeps the restored volume: it is known now.
  ASSERT_TRUE(volumes_->Recover().ok());
  EXPECT_TRUE(quarantine_->List()->empty());
  EXPECT_TRUE(volumes_->Get(volume->id).ok());
}

}  // namespace
}  // namespace strata::node
