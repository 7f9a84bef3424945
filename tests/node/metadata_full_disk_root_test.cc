// Metadata on a full disk (root: a tiny tmpfs): writes fail with RESOURCE_EXHAUSTED, a store
// reopens without writing, the reserve lets deletes work, and a backup is a consistent copy.

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "node/metadata.h"
#include "node/paths.h"
#include "tests/node/node_test_util.h"

namespace strata::node {
namespace {

class FullDiskTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root to mount a tmpfs";
    dir_ = testing::MakeTempDir();
    ASSERT_EQ(mount("tmpfs", dir_.c_str(), "tmpfs", 0, "size=16m"), 0) << strerror(errno);
    mounted_ = true;
  }
  void TearDown() override {
    if (mounted_) umount2(dir_.c_str(), MNT_DETACH);
    if (!dir_.empty()) rmdir(dir_.c_str());
  }
  // Fills the filesystem with a file until write() fails.
  void Fill() {
    int fd = open((dir_ + "/filler").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    ASSERT_GE(fd, 0);
    std::string block(64 << 10, 'x');
    while (write(fd, block.data(), block.size()) > 0) {
    }
    std::string byte(1, 'x');
    while (write(fd, byte.data(), 1) > 0) {
    }
    close(fd);
  }
  VolumeRecord Volume(int i) {
    VolumeRecord volume;
    volume.id = absl::StrCat("vol-", i);
    volume.name = absl::StrCat("pvc-", i, std::string(200, 'n'));
    volume.request_fingerprint = std::string(500, 'f');
    volume.active_id = absl::StrCat("a", i);
    volume.state = kVolumeReady;
    return volume;
  }
  std::string dir_;
  bool mounted_ = false;
};

TEST_F(FullDiskTest, WritesOnAFullDiskAreResourceExhaustedAndAReopenWritesNothing) {
  auto metadata = Metadata::Open(dir_ + "/strata.db", /*reserve_bytes=*/0);
  ASSERT_TRUE(metadata.ok()) << metadata.status();
  ASSERT_TRUE((*metadata)->PutVolume(Volume(0)).ok());
  Fill();
  absl::Status status;
  for (int i = 1; i < 100000 && status.ok(); ++i) status = (*metadata)->PutVolume(Volume(i));
  EXPECT_TRUE(absl::IsResourceExhausted(status)) << status;
  EXPECT_NE(status.message().find("full"), absl::string_view::npos) << status;
  metadata->reset();
  // Start-up on the still-full disk: a current store opens without writing.
  auto reopened = Metadata::Open(dir_ + "/strata.db", 0);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  auto volume = (*reopened)->GetVolume("vol-0");
  ASSERT_TRUE(volume.ok() && volume->has_value());
}

TEST_F(FullDiskTest, TheReserveLetsADeleteWriteOnAFullDiskAndComesBackAfterwards) {
  const int64_t reserve = 1 << 20;
  auto metadata = Metadata::Open(dir_ + "/strata.db", reserve);
  ASSERT_TRUE(metadata.ok()) << metadata.status();
  struct stat st;
  ASSERT_EQ(stat((dir_ + "/strata.db.reserve").c_str(), &st), 0) << "reserve made at open";
  EXPECT_GE(st.st_blocks * 512, reserve);
  for (int i = 0; i < 20; ++i) ASSERT_TRUE((*metadata)->PutVolume(Volume(i)).ok());
  Fill();
  absl::Status status;
  for (int i = 20; i < 100000 && status.ok(); ++i) status = (*metadata)->PutVolume(Volume(i));
  ASSERT_TRUE(absl::IsResourceExhausted(status)) << status;
  // A delete makes room first, then its writes succeed although the disk was full.
  (*metadata)->MakeRoomForDelete();
  EXPECT_NE(stat((dir_ + "/strata.db.reserve").c_str(), &st), 0) << "reserve released";
  for (int i = 0; i < 20; ++i) {
    VolumeRecord deleting = Volume(i);
    deleting.state = kVolumeDeleting;
    ASSERT_TRUE((*metadata)->PutVolume(deleting).ok()) << i;
    ASSERT_TRUE((*metadata)->DeleteVolume(deleting.id).ok()) << i;
  }
  // Space freed (the pod's data went): the reserve is made again.
  ASSERT_EQ(unlink((dir_ + "/filler").c_str()), 0);
  (*metadata)->RestoreReserve();
  ASSERT_EQ(stat((dir_ + "/strata.db.reserve").c_str(), &st), 0);
  EXPECT_GE(st.st_blocks * 512, reserve);
}

TEST_F(FullDiskTest, BackupIsAConsistentCopyAndNeverReplacesAFile) {
  auto metadata = Metadata::Open(dir_ + "/strata.db", 0);
  ASSERT_TRUE(metadata.ok()) << metadata.status();
  for (int i = 0; i < 5; ++i) ASSERT_TRUE((*metadata)->PutVolume(Volume(i)).ok());
  const std::string backup = dir_ + "/backup.db";
  ASSERT_TRUE((*metadata)->Backup(backup).ok());
  absl::Status again = (*metadata)->Backup(backup);
  EXPECT_FALSE(again.ok()) << "an existing file is never replaced";
  auto copy = Metadata::Open(backup, 0);
  ASSERT_TRUE(copy.ok()) << copy.status();
  auto volumes = (*copy)->ListVolumes();
  ASSERT_TRUE(volumes.ok());
  EXPECT_EQ(volumes->size(), 5u);
}

TEST_F(FullDiskTest, ANewDatabaseLooksNewAndDriverIdsSkipWhatTheDiskHolds) {
  auto metadata = Metadata::Open(dir_ + "/strata.db", 0);
  ASSERT_TRUE(metadata.ok());
  auto fresh = (*metadata)->LooksNew();
  ASSERT_TRUE(fresh.ok());
  EXPECT_TRUE(*fresh);
  ASSERT_TRUE((*metadata)->ReserveDriverIdsThrough("z").ok());  // 35 in base 36
  auto id = (*metadata)->NewDriverId();
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(*id, "10");  // 36: never an id the disk already holds
  auto used = (*metadata)->LooksNew();
  ASSERT_TRUE(used.ok());
  EXPECT_FALSE(*used);
}

}  // namespace
}  // namespace strata::node
