#include "node/metadata.h"

#include <sqlite3.h>

#include <set>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "node/paths.h"
#include "tests/node/node_test_util.h"

namespace strata::node {
namespace {

class MetadataTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::MakeTempDir();
    auto metadata = Metadata::Open(dir_ + "/strata.db");
    ASSERT_TRUE(metadata.ok()) << metadata.status();
    metadata_ = std::move(*metadata);
  }
  void TearDown() override {
    metadata_.reset();
    (void)RemoveTree(dir_);
  }
  LayerRecord Layer(const std::string& chain, const std::string& parent, int depth) {
    return LayerRecord{chain, "diff-" + chain, parent, "d" + chain, 10, 0, "ready", depth, ""};
  }
  std::string dir_;
  std::unique_ptr<Metadata> metadata_;
};

TEST_F(MetadataTest, DriverIdsAreShortUniqueAndSurviveReopen) {
  std::set<std::string> seen;
  for (int i = 0; i < 100; ++i) {
    auto id = metadata_->NewDriverId();
    ASSERT_TRUE(id.ok());
    EXPECT_TRUE(seen.insert(*id).second) << *id;
    EXPECT_LE(id->size(), 2u);
  }
  metadata_.reset();
  metadata_ = std::move(*Metadata::Open(dir_ + "/strata.db"));
  auto next = metadata_->NewDriverId();
  ASSERT_TRUE(next.ok());
  EXPECT_FALSE(seen.count(*next)) << "a driver id was reused after reopening: " << *next;
}

TEST_F(MetadataTest, ChainOfWalksFromTopToBase) {
  ASSERT_TRUE(metadata_->PutLayer(Layer("a", "", 1)).ok());
  ASSERT_TRUE(metadata_->PutLayer(Layer("b", "a", 2)).ok());
  ASSERT_TRUE(metadata_->PutLayer(Layer("c", "b", 3)).ok());
  auto chain = metadata_->ChainOf("c");
  ASSERT_TRUE(chain.ok()) << chain.status();
  ASSERT_EQ(chain->size(), 3u);
  EXPECT_EQ((*chain)[0].chain_id, "c");
  EXPECT_EQ((*chain)[2].chain_id, "a");
}

TEST_F(MetadataTest, ChainWithAMissingLinkIsNotFound) {
  ASSERT_TRUE(metadata_->PutLayer(Layer("b", "a", 2)).ok());
  EXPECT_TRUE(absl::IsNotFound(metadata_->ChainOf("b").status()));
  EXPECT_TRUE(absl::IsNotFound(metadata_->ChainOf("nope").status()));
}

TEST_F(MetadataTest, ReferencesCountImagesVolumesAndChildren) {
  ASSERT_TRUE(metadata_->PutLayer(Layer("a", "", 1)).ok());
  ASSERT_TRUE(metadata_->PutLayer(Layer("b", "a", 2)).ok());
  EXPECT_EQ(*metadata_->LayerReferences("a"), 1);  // child b
  EXPECT_EQ(*metadata_->LayerReferences("b"), 0);
  ASSERT_TRUE(metadata_->PutImage(ImageRecord{"img", "b", "{}", 0}).ok());
  VolumeRecord volume;
  volume.id = "vol-1";
  volume.name = "pvc-1";
  volume.chain_id = "b";
  volume.state = kVolumeReady;
  ASSERT_TRUE(metadata_->PutVolume(volume).ok());
  EXPECT_EQ(*metadata_->LayerReferences("b"), 2);
}

TEST_F(MetadataTest, FailedTransactionChangesNothing) {
  absl::Status status = metadata_->InTransaction([&]() -> absl::Status {
    EXPECT_TRUE(metadata_->PutImage(ImageRecord{"img", "x", "{}", 0}).ok());
    return absl::InternalError("boom");
  });
  EXPECT_FALSE(status.ok());
  auto image = metadata_->GetImage("img");
  ASSERT_TRUE(image.ok());
  EXPECT_FALSE(image->has_value());
}

TEST_F(MetadataTest, VolatileCommitsAreRealButNotSyncedAndLeaveLaterCommitsDurable) {
  VolumeRecord volume;
  volume.id = "v1";
  volume.name = "pvc-1";
  volume.state = kVolumeReady;
  int64_t before = metadata_->durable_commits();
  ASSERT_TRUE(metadata_->InVolatileTransaction([&] { return metadata_->PutVolume(volume); }).ok());
  EXPECT_EQ(metadata_->durable_commits(), before) << "a volatile commit synced the WAL";
  // A failed volatile transaction rolls back like any other.
  volume.pending = "stage";
  EXPECT_FALSE(metadata_
                   ->InVolatileTransaction([&] {
                     (void)metadata_->PutVolume(volume);
                     return absl::InternalError("step failed");
                   })
                   .ok());
  EXPECT_EQ((*metadata_->GetVolume("v1"))->pending, "");
  // The connection is back to synchronous=FULL: the next plain write is durable.
  volume.state = kVolumeStaged;
  ASSERT_TRUE(metadata_->PutVolume(volume).ok());
  EXPECT_EQ(metadata_->durable_commits(), before + 1);
  // Both commits are in the database a new process opens.
  metadata_.reset();
  metadata_ = std::move(*Metadata::Open(dir_ + "/strata.db"));
  auto read = metadata_->GetVolume("v1");
  ASSERT_TRUE(read.ok() && read->has_value());
  EXPECT_EQ((*read)->state, kVolumeStaged);
  EXPECT_EQ((*read)->pending, "stage");
}

TEST_F(MetadataTest, DeleteVolumeDropsItsPublications) {
  VolumeRecord volume;
  volume.id = "vol-1";
  volume.name = "pvc";
  volume.state = kVolumeStaged;
  ASSERT_TRUE(metadata_->PutVolume(volume).ok());
  ASSERT_TRUE(metadata_->PutPublication({"vol-1", "/t", false, "published"}).ok());
  ASSERT_TRUE(metadata_->DeleteVolume("vol-1").ok());
  EXPECT_TRUE(metadata_->ListPublications("vol-1")->empty());
  EXPECT_FALSE(metadata_->GetVolume("vol-1")->has_value());
}

TEST_F(MetadataTest, KeysetPagesSeeEveryVisibleRowOnceAndSurviveDeletes) {
  for (int i = 0; i < 10; ++i) {
    VolumeRecord volume;
    volume.id = absl::StrCat("vol-", i);
    volume.name = absl::StrCat("pvc-", i);
    volume.state = i == 4 ? kVolumeCreating : (i % 2 ? kVolumeStaged : kVolumeReady);
    ASSERT_TRUE(metadata_->PutVolume(volume).ok());
    SnapshotRecord snapshot;
    snapshot.id = absl::StrCat("snap-", i);
    snapshot.name = absl::StrCat("s-", i);
    snapshot.source_volume_id = i < 6 ? "vol-1" : "vol-2";
    snapshot.state = i == 3 ? "creating" : "ready";
    ASSERT_TRUE(metadata_->PutSnapshot(snapshot).ok());
  }
  const std::vector<std::string> visible = {kVolumeReady, kVolumeStaged};
  auto page = metadata_->ListVolumesFrom("", visible, 4);
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_EQ(page->size(), 4u);
  EXPECT_EQ((*page)[0].id, "vol-0");
  EXPECT_EQ((*page)[3].id, "vol-3");
  // The next page starts at the id after the last one seen; the volume that would open it is
  // deleted in between, and the listing simply goes on (vol-4 is still being created: hidden).
  ASSERT_TRUE(metadata_->DeleteVolume("vol-5").ok());
  page = metadata_->ListVolumesFrom("vol-4", visible, 4);
  ASSERT_TRUE(page.ok()) << page.status();
  std::vector<std::string> ids;
  for (const VolumeRecord& volume : *page) ids.push_back(volume.id);
  EXPECT_EQ(ids, (std::vector<std::string>{"vol-6", "vol-7", "vol-8", "vol-9"}));

  auto snapshots = metadata_->ListSnapshotsFrom("snap-2", "ready", "vol-1", 10);
  ASSERT_TRUE(snapshots.ok()) << snapshots.status();
  ids.clear();
  for (const SnapshotRecord& snapshot : *snapshots) ids.push_back(snapshot.id);
  EXPECT_EQ(ids, (std::vector<std::string>{"snap-2", "snap-4", "snap-5"}));
  snapshots = metadata_->ListSnapshotsFrom("", "ready", "", 100);
  ASSERT_TRUE(snapshots.ok());
  EXPECT_EQ(snapshots->size(), 9u);
}

}  // namespace
}  // namespace strata::node

namespace strata::node {
namespace {

TEST_F(MetadataTest, GroupSnapshotsKeepTheirMembersInOrderAndDeleteWhole) {
  GroupSnapshotRecord group{"group-1", "nightly", 42, "creating", {}};
  ASSERT_TRUE(metadata_->PutGroupSnapshot(group).ok());
  group.members = {{"vol-b", "snap-2"}, {"vol-a", "snap-1"}};
  group.state = "ready";
  ASSERT_TRUE(metadata_->PutGroupSnapshot(group).ok());
  auto by_name = metadata_->GetGroupSnapshotByName("nightly");
  ASSERT_TRUE(by_name.ok() && by_name->has_value());
  EXPECT_EQ((*by_name)->id, "group-1");
  EXPECT_EQ((*by_name)->state, "ready");
  EXPECT_EQ((*by_name)->created_unix, 42);
  EXPECT_EQ((*by_name)->members, group.members) << "members keep the order they were given in";
  // Replacing the record replaces its member rows rather than adding to them.
  group.members = {{"vol-c", "snap-3"}};
  ASSERT_TRUE(metadata_->PutGroupSnapshot(group).ok());
  EXPECT_EQ((*metadata_->GetGroupSnapshot("group-1"))->members, group.members);
  ASSERT_TRUE(metadata_->DeleteGroupSnapshot("group-1").ok());
  EXPECT_FALSE(metadata_->GetGroupSnapshot("group-1")->has_value());
  EXPECT_FALSE(metadata_->GetGroupSnapshotByName("nightly")->has_value());
}

TEST_F(MetadataTest, AStoreFromBeforeGroupSnapshotsGainsTheirTablesAndKeepsItsRows) {
  VolumeRecord volume;
  volume.id = "vol-old";
  volume.name = "old";
  volume.state = "ready";
  ASSERT_TRUE(metadata_->PutVolume(volume).ok());
  metadata_.reset();
  // Make the file look like schema 2 (before group snapshots): no group tables, version 2.
  const std::string db = dir_ + "/strata.db";
  sqlite3* raw = nullptr;
  ASSERT_EQ(sqlite3_open(db.c_str(), &raw), SQLITE_OK);
  EXPECT_EQ(sqlite3_exec(raw,
                         "DROP TABLE group_members; DROP TABLE group_snapshots; "
                         "PRAGMA user_version=2;",
                         nullptr, nullptr, nullptr),
            SQLITE_OK)
      << sqlite3_errmsg(raw);
  sqlite3_close(raw);
  auto reopened = Metadata::Open(db);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  metadata_ = std::move(*reopened);
  EXPECT_TRUE(metadata_->GetVolume("vol-old")->has_value());
  EXPECT_TRUE(metadata_->PutGroupSnapshot({"group-1", "g", 1, "ready", {{"vol-old", "s"}}}).ok());
}

}  // namespace
}  // namespace strata::node
