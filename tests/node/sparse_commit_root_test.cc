// Holes survive a volume's whole life on real drivers: a 64 GiB sparse file in a writable layer
// is snapshotted (mounted: the copy-on-commit path), restored, committed past --flatten-depth
// (the merged tree is copied) and saved (Exporter::Save, docker-save archive read back with GNU
// tar); each time the file keeps its size, its written data and its holes (allocated blocks
// within the written bytes plus a block or two per extent). Needs root; overlay, vfs and btrfs
// (a loop-file btrfs, tests/drivers/loop_filesystem.h).

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <fstream>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "node/exporter.h"
#include "sys/mounter.h"
#include "tests/drivers/loop_filesystem.h"
#include "tests/node/node_test_util.h"
#include "tests/sparse_test_util.h"

namespace strata::node {
namespace {

using sparsetest::kGiB;
using sparsetest::Written;

class SparseCommitRootTest : public testing::StoreFixture,
                             public ::testing::WithParamInterface<std::string> {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "commit tests mount filesystems: run as root";
    std::string parent = "/var/tmp";
    if (GetParam() == "btrfs") {
      auto mount_point = strata::testing::SharedBtrfsMountPoint();
      if (!mount_point.ok())
        GTEST_SKIP() << "no btrfs for the btrfs driver: " << mount_point.status();
      parent = *mount_point;
    }
    std::string pattern = parent + "/strata-sparse-XXXXXX";
    ASSERT_NE(mkdtemp(pattern.data()), nullptr) << pattern;
    root_ = pattern;
    pods_ = root_ + "-pods";
    ASSERT_TRUE(MakeDirs(pods_).ok());
    auto metadata = Metadata::Open(root_ + "/strata.db");
    ASSERT_TRUE(metadata.ok()) << metadata.status();
    metadata_ = std::move(*metadata);
    auto driver = drivers::NewDriver(GetParam(), root_);
    if (driver.status().code() == absl::StatusCode::kFailedPrecondition ||
        driver.status().code() == absl::StatusCode::kUnimplemented) {
      GTEST_SKIP() << driver.status();
    }
    ASSERT_TRUE(driver.ok()) << driver.status();
    driver_ = std::move(*driver);
    real_mounter_ = sys::NewLinuxMounter();
    layers_ = std::make_unique<LayerStore>(metadata_.get(), driver_.get(), real_mounter_.get(),
                                           root_ + "/tmp");
    // Depth 1: a commit on top of a committed layer is flattened (on drivers that layer at all).
    volumes_ = std::make_unique<VolumeManager>(
        metadata_.get(), layers_.get(), driver_.get(), real_mounter_.get(), nullptr,
        VolumeManagerOptions{root_, root_ + "/volumes", root_ + "/tmp", 1});
    exporter_ = std::make_unique<Exporter>(metadata_.get(), layers_.get(), driver_.get(),
                                           real_mounter_.get(), root_ + "/export");
  }
  void TearDown() override {
    if (root_.empty()) return;
    if (auto mounts =
            real_mounter_ ? real_mounter_->List() : absl::StatusOr<std::vector<sys::MountPoint>>();
        mounts.ok()) {
      for (auto it = mounts->rbegin(); it != mounts->rend(); ++it)
        if (it->target.rfind(root_, 0) == 0) (void)real_mounter_->Unmount(it->target, true);
    }
    exporter_.reset();
    volumes_.reset();
    layers_.reset();
    if (driver_) {
      for (const std::string& id : driver_->Walk().value_or(std::vector<std::string>{})) {
        absl::Status removed = driver_->Remove(id);
        EXPECT_TRUE(removed.ok()) << removed;
      }
    }
    StoreFixture::TearDown();
  }

  std::string Create(const std::string& name, const std::string& snapshot_id = "") {
    CreateVolumeParams params;
    params.name = name;
    params.source_snapshot_id = snapshot_id;
    auto volume = volumes_->Create(params);
    EXPECT_TRUE(volume.ok()) << volume.status();
    return volume.ok() ? volume->id : "";
  }

  // Restores `snapshot_id` into a new volume and checks the sparse file there.
  void ExpectRestored(const std::string& snapshot_id, const std::vector<Written>& writes) {
    SCOPED_TRACE("restored " + snapshot_id);
    std::string restored = Create("restored-" + snapshot_id, snapshot_id);
    const std::string at = pods_ + "/restored";
    ASSERT_TRUE(volumes_->Stage(restored, at).ok());
    sparsetest::ExpectSparseCopy(at + "/big", 64 * kGiB, writes, Slack());
    ASSERT_TRUE(volumes_->Unstage(restored, at).ok());
    ASSERT_TRUE(volumes_->Delete(restored).ok());
  }

  // Overlayfs' own copy-up (a pod writing to a file of a lower layer) keeps holes in 1 MiB
  // chunks (OVL_COPY_UP_CHUNK_SIZE): an extent may grow to the chunks it touches. Others: a
  // block each side.
  int64_t Slack() const { return GetParam() == "overlay" ? 2 << 20 : 2 * 4096; }

  std::unique_ptr<sys::Mounter> real_mounter_;
  std::unique_ptr<Exporter> exporter_;
};

TEST_P(SparseCommitRootTest, SixtyFourGiBFileKeepsItsHolesThroughSnapshotsFlattenAndSave) {
  const std::string id = Create("sparse");
  const std::string mnt = pods_ + "/sparse";
  ASSERT_TRUE(volumes_->Stage(id, mnt).ok());
  std::vector<Written> writes = sparsetest::SixtyFourGiBWrites();
  sparsetest::MakeSparseFile(mnt + "/big", 64 * kGiB, writes);

  // Mounted: the copy-on-commit path (overlay copies the upper dir, vfs the tree).
  auto started = std::chrono::steady_clock::now();
  auto snap1 = volumes_->CreateSnapshot(id, "sparse-1");
  std::chrono::duration<double> took = std::chrono::steady_clock::now() - started;
  ASSERT_TRUE(snap1.ok()) << snap1.status();
  std::cout << "[ figures  ] " << GetParam() << ": snapshot of a 64 GiB sparse file ("
            << sparsetest::WrittenBytes(writes) << " bytes written): " << took.count() * 1000
            << " ms, layer " << snap1->size_bytes << " bytes\n";
  EXPECT_LT(snap1->size_bytes, sparsetest::WrittenBytes(writes) + (1 << 20));
  ExpectRestored(snap1->id, writes);

  // Three more commits, each writing one more extent: the second mounted, the third unmounted
  // (the rebase path: the volume now stands on it), the fourth passes --flatten-depth 1.
  for (int i = 2; i <= 4; ++i) {
    Written more{(static_cast<int64_t>(i) * 10 + 10) * kGiB, sparsetest::Pattern(1 << 20, 10 + i)};
    if (i == 4) ASSERT_TRUE(volumes_->Stage(id, mnt).ok());
    int fd = open((mnt + "/big").c_str(), O_WRONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(pwrite(fd, more.data.data(), more.data.size(), more.offset),
              static_cast<ssize_t>(more.data.size()));
    close(fd);
    writes.push_back(more);
    if (i >= 3) ASSERT_TRUE(volumes_->Unstage(id, mnt).ok());  // the rebase path
    auto snap = volumes_->CreateSnapshot(id, "sparse-" + std::to_string(i));
    ASSERT_TRUE(snap.ok()) << snap.status();
    ExpectRestored(snap->id, writes);
    if (i == 4) {
      auto layer = metadata_->GetLayer(snap->chain_id);
      ASSERT_TRUE(layer.ok() && layer->has_value());
      if (!driver_->limits().layers_are_full_trees) {
        EXPECT_EQ((*layer)->depth, 1) << "flattened (it stands on a committed layer)";
      }

      // Saved: a docker-save archive of about the written bytes; GNU tar gives the file back.
      const std::string out = pods_ + "/saved.tar";
      started = std::chrono::steady_clock::now();
      auto saved = exporter_->Save(snap->id, out, images::ImageFormat::kDockerSave, {});
      took = std::chrono::steady_clock::now() - started;
      ASSERT_TRUE(saved.ok()) << saved.status();
      std::cout << "[ figures  ] " << GetParam() << ": save: " << took.count() * 1000 << " ms, "
                << saved->bytes << " bytes\n";
      EXPECT_LT(saved->bytes, sparsetest::WrittenBytes(writes) * 3 + (4 << 20));
      const std::string unpacked = pods_ + "/unpacked";
      const std::string rootfs = pods_ + "/rootfs";
      ASSERT_TRUE(MakeDirs(unpacked).ok());
      ASSERT_TRUE(MakeDirs(rootfs).ok());
      ASSERT_TRUE(strata::testing::RunCommand("tar -xf " + out + " -C " + unpacked).ok());
      std::ifstream manifest_file(unpacked + "/manifest.json");
      auto manifest = nlohmann::json::parse(manifest_file);
      ASSERT_EQ(manifest.size(), 1u);
      for (const auto& layer_tar : manifest[0]["Layers"]) {
        ASSERT_TRUE(strata::testing::RunCommand("tar -xf " + unpacked + "/" +
                                                layer_tar.get<std::string>() + " -C " + rootfs)
                        .ok());
      }
      sparsetest::ExpectSparseCopy(rootfs + "/big", 64 * kGiB, writes, Slack());
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Drivers, SparseCommitRootTest,
                         ::testing::Values("overlay", "vfs", "btrfs"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace strata::node
