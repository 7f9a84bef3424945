// Issue 8 in node/: content missing on disk (start-up marks the volume abnormal, stage refuses,
// stats report it, the gauge counts it), VolumeManager::Check and its safe repairs, and
// Metadata::Backup's stepped copy (calls proceed between steps). vfs driver, FakeMounter.

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>

#include "gtest/gtest.h"
#include "metrics/metrics.h"
#include "node/volume_locks.h"
#include "node/volume_manager.h"
#include "tests/node/node_test_util.h"

namespace strata::node {
namespace {

double Gauge(metrics::Metrics& metrics, const std::string& name) {
  for (const auto& family : metrics.registry()->Collect())
    if (family.name == name && !family.metric.empty()) return family.metric[0].gauge.value;
  return -1;
}

class VolumeCheckTest : public testing::StoreFixture {
 protected:
  void SetUp() override {
    StoreFixture::SetUp();
    AddLayer("base", "", "base.txt");
    AddLayer("top", "base", "top.txt");
    AddImage("demo:v1", "top");
    // The fixture's manager has no metrics: this one counts abnormal volumes.
    volumes_ = std::make_unique<VolumeManager>(
        metadata_.get(), layers_.get(), driver_.get(), &mounter_, &metrics_,
        VolumeManagerOptions{root_, root_ + "/volumes", root_ + "/tmp", flatten_depth_});
  }
  VolumeRecord MakeVolume(const std::string& name) {
    CreateVolumeParams params;
    params.name = name;
    params.image = "demo:v1";
    params.fingerprint = "image=demo:v1";
    auto volume = volumes_->Create(params);
    EXPECT_TRUE(volume.ok()) << volume.status();
    return *volume;
  }
  std::string DriverIdOf(const std::string& chain_id) {
    return (*metadata_->GetLayer(chain_id))->driver_id;
  }
  std::string Staging(const std::string& name) { return pods_ + "/staging-" + name; }

  metrics::Metrics metrics_;
};

TEST_F(VolumeCheckTest, RecoveryMarksVolumesMissingALayerAbnormal) {
  VolumeRecord healthy = MakeVolume("pvc-healthy");
  VolumeRecord broken = MakeVolume("pvc-broken");
  ASSERT_TRUE(volumes_->Stage(broken.id, Staging("broken")).ok());
  ASSERT_TRUE(volumes_->Recover().ok());
  EXPECT_TRUE(volumes_->AbnormalVolumes().empty());
  EXPECT_EQ(Gauge(metrics_, "strata_volumes_abnormal"), 0);

  const std::string lost = DriverIdOf("base");
  ASSERT_TRUE(RemoveTree(root_ + "/vfs/" + lost).ok());
  ASSERT_TRUE(volumes_->Recover().ok());
  std::map<std::string, std::string> abnormal = volumes_->AbnormalVolumes();
  // Both volumes stand on "base"; the message names the missing layer.
  ASSERT_EQ(abnormal.size(), 2u);
  EXPECT_NE(abnormal[broken.id].find("layer base (vfs id " + lost + ")"), std::string::npos)
      << abnormal[broken.id];
  EXPECT_EQ(Gauge(metrics_, "strata_volumes_abnormal"), 2);

  auto usage = volumes_->Usage(broken.id, Staging("broken"));
  ASSERT_TRUE(usage.ok()) << usage.status();
  EXPECT_TRUE(usage->abnormal);
  EXPECT_NE(usage->condition_message.find(lost), std::string::npos) << usage->condition_message;

  // A retried stage of the staged volume, and a first stage of the other: both refused.
  absl::Status again = volumes_->Stage(broken.id, Staging("broken"));
  EXPECT_TRUE(absl::IsFailedPrecondition(again)) << again;
  absl::Status first = volumes_->Stage(healthy.id, Staging("healthy"));
  EXPECT_TRUE(absl::IsFailedPrecondition(first)) << first;
  EXPECT_FALSE(mounter_.IsMountPoint(Staging("healthy")).value_or(true));

  // Deleting a volume takes it off the count.
  ASSERT_TRUE(volumes_->Delete(healthy.id).ok());
  EXPECT_EQ(Gauge(metrics_, "strata_volumes_abnormal"), 1);
}

TEST_F(VolumeCheckTest, UsageReportsAMissingWritableLayerAsTheCondition) {
  VolumeRecord volume = MakeVolume("pvc-1");
  ASSERT_TRUE(volumes_->Stage(volume.id, Staging("a")).ok());
  ASSERT_TRUE(RemoveTree(root_ + "/vfs/" + volume.active_id).ok());
  auto usage = volumes_->Usage(volume.id, Staging("a"));
  ASSERT_TRUE(usage.ok()) << usage.status();
  EXPECT_TRUE(usage->abnormal);
  EXPECT_NE(usage->condition_message.find("writable layer"), std::string::npos);
}

TEST_F(VolumeCheckTest, CheckReportsAndRepairsOnlyWhatIsSafe) {
  VolumeLocks locks;
  VolumeRecord volume = MakeVolume("pvc-1");
  auto clean = volumes_->Check(/*repair=*/false, &locks);
  ASSERT_TRUE(clean.ok()) << clean.status();
  EXPECT_TRUE(clean->findings.empty());
  EXPECT_EQ(clean->volumes, 1);
  EXPECT_EQ(clean->layers, 2);

  // A removed layer, planted unknown content, a half-made volume whose content is gone, and a
  // half-made one whose content is there.
  ASSERT_TRUE(RemoveTree(root_ + "/vfs/" + DriverIdOf("top")).ok());
  ASSERT_TRUE(MakeDirs(root_ + "/vfs/zzplanted").ok());
  testing::WriteFile(root_ + "/vfs/zzplanted/data", "precious");
  VolumeRecord gone;
  gone.id = "vol-gone";
  gone.name = "pvc-gone";
  gone.active_id = "zzgone";
  gone.state = kVolumeCreating;
  ASSERT_TRUE(metadata_->PutVolume(gone).ok());
  VolumeRecord kept = gone;
  kept.id = "vol-kept";
  kept.name = "pvc-kept";
  kept.active_id = "zzkept";
  kept.state = kVolumeDeleting;
  ASSERT_TRUE(driver_->Prepare(kept.active_id, {}, {}).ok());
  ASSERT_TRUE(metadata_->PutVolume(kept).ok());

  auto report = volumes_->Check(/*repair=*/false, &locks);
  ASSERT_TRUE(report.ok()) << report.status();
  std::map<std::string, std::string> kinds;
  for (const CheckFinding& finding : report->findings) {
    kinds[finding.subject] = finding.kind;
    EXPECT_FALSE(finding.repaired);
  }
  EXPECT_EQ(kinds["top"], "missing-layer");
  EXPECT_EQ(kinds[volume.id], "missing-layer");
  EXPECT_EQ(kinds["zzplanted"], "unknown-content");
  EXPECT_EQ(kinds["vol-gone"], "half-made");
  EXPECT_EQ(kinds["vol-kept"], "half-made");
  EXPECT_EQ(volumes_->AbnormalVolumes().count(volume.id), 1u);

  // A volume busy with a call is not touched.
  {
    auto busy = locks.TryAcquire("vol-gone", "test");
    ASSERT_TRUE(busy.ok());
    ASSERT_TRUE(volumes_->Check(/*repair=*/true, &locks).ok());
    EXPECT_TRUE((*metadata_->GetVolume("vol-gone")).has_value());
  }
  auto repaired = volumes_->Check(/*repair=*/true, &locks);
  ASSERT_TRUE(repaired.ok()) << repaired.status();
  int repaired_count = 0;
  for (const CheckFinding& finding : repaired->findings) {
    if (finding.repaired) {
      ++repaired_count;
      EXPECT_EQ(finding.subject, "vol-gone");
    }
  }
  EXPECT_EQ(repaired_count, 1);
  EXPECT_FALSE((*metadata_->GetVolume("vol-gone")).has_value()) << "only an intent was left";
  EXPECT_TRUE((*metadata_->GetVolume("vol-kept")).has_value()) << "its content is there";
  EXPECT_TRUE(*driver_->Exists("zzkept"));
  EXPECT_EQ(testing::ReadFile(root_ + "/vfs/zzplanted/data"), "precious") << "never deleted";
  EXPECT_TRUE((*metadata_->GetLayer("top")).has_value()) << "a missing layer's record stays";
}

TEST(MetadataDirectoryTest, DirectoryOfADatabaseDirectlyUnderTheRoot) {
  EXPECT_EQ(DirectoryOf("/strata.db"), "/");
  EXPECT_EQ(DirectoryOf("strata.db"), ".");
  EXPECT_EQ(DirectoryOf("/var/lib/strata/strata.db"), "/var/lib/strata");
}

// The old Backup held the store's mutex for the whole copy: every call waited for it.
TEST(MetadataBackupTest, CallsProceedBetweenTheStepsOfALargeBackup) {
  std::string dir = testing::MakeTempDir();
  auto metadata = Metadata::Open(dir + "/strata.db", /*reserve_bytes=*/0);
  ASSERT_TRUE(metadata.ok()) << metadata.status();
  // ~16 MB of rows, so the copy takes many steps.
  ASSERT_TRUE((*metadata)
                  ->InTransaction([&]() -> absl::Status {
                    for (int i = 0; i < 64; ++i) {
                      VolumeRecord volume;
                      volume.id = "vol-" + std::to_string(i);
                      volume.name = volume.id;
                      volume.request_fingerprint = std::string(256 << 10, 'x');
                      volume.state = kVolumeReady;
                      absl::Status put = (*metadata)->PutVolume(volume);
                      if (!put.ok()) return put;
                    }
                    return absl::OkStatus();
                  })
                  .ok());
  Metadata::BackupOptions options;
  options.pages_per_step = 16;
  std::atomic<int> writes_during_backup{0};
  bool asked = false;
  options.between_steps = [&](int remaining, int total) {
    if (asked || remaining <= 0) return;
    asked = true;
    // Another thread (a CSI call) writes while the backup is under way.
    std::future<absl::Status> write = std::async(std::launch::async, [&] {
      VolumeRecord volume;
      volume.id = "vol-during";
      volume.name = "vol-during";
      volume.state = kVolumeReady;
      return (*metadata)->PutVolume(volume);
    });
    if (write.wait_for(std::chrono::seconds(10)) == std::future_status::ready && write.get().ok())
      ++writes_during_backup;
  };
  auto result = (*metadata)->Backup(dir + "/backup.db", options);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_GT(result->steps, 10);
  EXPECT_GT(result->bytes, 16 << 20);
  EXPECT_EQ(writes_during_backup.load(), 1);
  // The copy is a working store that has every row (the one written during the copy too:
  // SQLite carries changes made through the source connection into the backup).
  auto copy = Metadata::Open(dir + "/backup.db", 0);
  ASSERT_TRUE(copy.ok()) << copy.status();
  auto volumes = (*copy)->ListVolumes();
  ASSERT_TRUE(volumes.ok());
  EXPECT_EQ(volumes->size(), 65u);
  (void)RemoveTree(dir);
}

}  // namespace
}  // namespace strata::node
