// The devmapper driver on a real kernel device-mapper (run inside a QEMU guest by
// tools/dm-vm/run.sh; skips where /dev/mapper/control is missing, as on the build host):
//  - the driver conformance suite (tests/drivers/drivers_conformance_test.cc, compiled in here
//    with a devmapper instantiation whose driver sits on a fresh loop-file thin pool per test);
//  - devmapper specifics: commit of a mounted device, capacity growth, pool-full
//    RESOURCE_EXHAUSTED, crash recovery on real devices, and timings;
//  - the node commit tests (tests/node/commit_root_test.cc), compiled in the same way.

#include <fcntl.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "drivers/copy_tree.h"
#include "drivers/devmapper/devmapper_driver.h"
#include "drivers/fs_util.h"
#include "drivers/registry.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sys/devmapper.h"
#include "sys/mounter.h"

namespace strata::drivers {

constexpr int64_t kKernelTestMiB = int64_t{1} << 20;
// Small, for TCG: every byte the guest writes is emulated.
constexpr int64_t kPoolData = 256 * kKernelTestMiB;
constexpr int64_t kPoolMetadata = 16 * kKernelTestMiB;
constexpr int64_t kBaseSize = 64 * kKernelTestMiB;
constexpr char kPoolDir[] = "/var/tmp/strata-dm-pools";

// A devmapper driver on its own loop-file pool; removing it removes the pool.
class PoolOwningDriver : public Driver {
 public:
  PoolOwningDriver(std::unique_ptr<DevmapperDriver> driver, std::shared_ptr<sys::DeviceMapper> dm,
                   std::string pool)
      : driver_(std::move(driver)), dm_(std::move(dm)), pool_(std::move(pool)) {}
  ~PoolOwningDriver() override {
    driver_.reset();
    absl::Status removed = RemoveLoopThinPool(*dm_, kPoolDir, pool_);
    if (!removed.ok()) std::fprintf(stderr, "pool removal: %s\n", removed.ToString().c_str());
  }
  std::string_view name() const override { return driver_->name(); }
  DriverLimits limits() const override { return driver_->limits(); }
  absl::Status Prepare(const std::string& id, const Chain& parents,
                       const PrepareOptions& options) override {
    return driver_->Prepare(id, parents, options);
  }
  absl::StatusOr<std::vector<sys::Mount>> Mounts(const std::string& id,
                                                 const Chain& parents) override {
    return driver_->Mounts(id, parents);
  }
  absl::StatusOr<std::vector<sys::Mount>> View(const Chain& chain) override {
    return driver_->View(chain);
  }
  absl::StatusOr<ApplyTarget> DirectWriteTarget(const std::string& id) override {
    return driver_->DirectWriteTarget(id);
  }
  absl::Status Commit(const std::string& layer_id, const std::string& id, const Chain& parents,
                      CommitMode mode) override {
    return driver_->Commit(layer_id, id, parents, mode);
  }
  absl::Status Remove(const std::string& id) override { return driver_->Remove(id); }
  absl::StatusOr<Usage> GetUsage(const std::string& id) override { return driver_->GetUsage(id); }
  absl::StatusOr<std::vector<std::string>> Walk() override { return driver_->Walk(); }
  absl::StatusOr<int64_t> FreeBytes() override { return driver_->FreeBytes(); }
  absl::StatusOr<int64_t> TotalBytes() override { return driver_->TotalBytes(); }
  // Every virtual is forwarded: a default left in place would test the wrapper, not devmapper.
  absl::StatusOr<bool> Exists(const std::string& id) override { return driver_->Exists(id); }
  absl::StatusOr<ContentKind> Quarantine(const std::string& id, const std::string& dest) override {
    return driver_->Quarantine(id, dest);
  }
  absl::Status Unquarantine(const std::string& dest, ContentKind kind,
                            const std::string& id) override {
    return driver_->Unquarantine(dest, kind, id);
  }
  absl::Status PurgeQuarantined(const std::string& dest) override {
    return driver_->PurgeQuarantined(dest);
  }

 private:
  std::unique_ptr<DevmapperDriver> driver_;
  std::shared_ptr<sys::DeviceMapper> dm_;
  std::string pool_;
};

std::atomic<int> pool_counter{0};

// The conformance suite's NewDriver, for this binary: devmapper gets a fresh pool.
absl::StatusOr<std::unique_ptr<Driver>> NewConformanceDriver(const std::string& name,
                                                             const std::string& root) {
  if (name != "devmapper") return NewDriver(name, root);
  RETURN_IF_ERROR(sys::DeviceMapperAvailable());
  std::shared_ptr<sys::DeviceMapper> dm = sys::NewLibdmDeviceMapper();
  const std::string pool = absl::StrCat("strata-conf", getpid(), "-", pool_counter++);
  RETURN_IF_ERROR(CreateLoopThinPool(*dm, kPoolDir, pool, kPoolData, kPoolMetadata));
  DevmapperOptions options;
  options.thin_pool = pool;
  options.base_size_bytes = kBaseSize;
  absl::StatusOr<std::unique_ptr<DevmapperDriver>> driver =
      DevmapperDriver::Create(root, options, dm);
  if (!driver.ok()) {
    (void)RemoveLoopThinPool(*dm, kPoolDir, pool);
    return driver.status();
  }
  return std::unique_ptr<Driver>(new PoolOwningDriver(std::move(*driver), dm, pool));
}

}  // namespace strata::drivers

// The shared conformance suite, with NewDriver(name, root) routed to NewConformanceDriver.
// (Its own instantiations for the other drivers are filtered out by tools/dm-vm/run.sh.)
#define NewDriver NewConformanceDriver
#include "tests/drivers/drivers_conformance_test.cc"
#undef NewDriver

// The commit tests (rich trees through snapshot and restore, rollback, a commit chain that
// restores exactly: tests/node/commit_root_test.cc) through VolumeManager, routed the same way;
// the chain is 50 commits long on devmapper (CommitCount there). Headers that could mention
// NewDriver come in before the macro.
#include "node/layer_store.h"
#include "node/metadata.h"
#include "node/volume_manager.h"
#include "tests/node/node_test_util.h"
#define NewDriver NewConformanceDriver
#include "tests/node/commit_root_test.cc"
#undef NewDriver

namespace strata::node {
namespace {

INSTANTIATE_TEST_SUITE_P(Devmapper, CommitRootTest, ::testing::Values(std::string("devmapper")),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace strata::node

namespace strata {
namespace {

INSTANTIATE_TEST_SUITE_P(Devmapper, DriverConformanceTest,
                         ::testing::Values(std::string("devmapper")),
                         [](const auto& info) { return info.param; });

using drivers::DevmapperDriver;
using drivers::kKernelTestMiB;

double Seconds(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

void WriteBytes(const std::string& path, int64_t bytes, char fill) {
  std::string chunk(kKernelTestMiB, fill);
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0) << path;
  for (int64_t done = 0; done < bytes; done += chunk.size()) {
    size_t n = std::min<int64_t>(chunk.size(), bytes - done);
    ASSERT_EQ(write(fd, chunk.data(), n), static_cast<ssize_t>(n)) << path << " " << errno;
  }
  ASSERT_EQ(fsync(fd), 0);
  close(fd);
}

int64_t FileSize(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 ? st.st_size : -1;
}

class DevmapperKernelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root";
    absl::Status available = sys::DeviceMapperAvailable();
    if (!available.ok()) GTEST_SKIP() << available;
    char base[] = "/var/tmp/strata-dmk-XXXXXX";
    ASSERT_NE(mkdtemp(base), nullptr);
    base_ = base;
    root_ = base_ + "/root";
    dm_ = sys::NewLibdmDeviceMapper();
    pool_ = absl::StrCat("strata-k", getpid(), "-", counter_++);
    ASSERT_TRUE(
        drivers::CreateLoopThinPool(*dm_, drivers::kPoolDir, pool_, pool_data_, 16 * kKernelTestMiB)
            .ok());
    options_.thin_pool = pool_;
    options_.base_size_bytes = drivers::kBaseSize;
    Start();
    mounter_ = sys::NewLinuxMounter();
  }

  void TearDown() override {
    if (base_.empty()) return;
    for (auto it = targets_.rbegin(); it != targets_.rend(); ++it) {
      while (mounter_ && *mounter_->IsMountPoint(*it)) {
        if (!mounter_->Unmount(*it, /*detach=*/true).ok()) break;
      }
    }
    if (driver_) EXPECT_TRUE(driver_->Destroy().ok());
    driver_.reset();
    // With the pool gone, its metadata must pass thin_check (thin-provisioning-tools; in the
    // guest only). thin_check uses O_DIRECT, which tmpfs files refuse: check through a loop.
    EXPECT_TRUE(dm_->Remove(pool_).ok());
    if (access("/usr/sbin/thin_check", X_OK) == 0) {
      std::string loop, output;
      ASSERT_EQ(*drivers::RunTool({"losetup", "-f"}, &loop), 0) << loop;
      while (!loop.empty() && loop.back() == '\n') loop.pop_back();
      const std::string metadata = absl::StrCat(drivers::kPoolDir, "/", pool_, ".metadata");
      ASSERT_EQ(*drivers::RunTool({"losetup", "-r", loop, metadata}, &output), 0) << output;
      auto code = drivers::RunTool({"thin_check", loop}, &output);
      (void)drivers::RunTool({"losetup", "-d", loop}, &output);
      ASSERT_TRUE(code.ok()) << code.status();
      EXPECT_EQ(*code, 0) << output;
    }
    EXPECT_TRUE(drivers::RemoveLoopThinPool(*dm_, drivers::kPoolDir, pool_).ok());
    EXPECT_TRUE(drivers::RemoveTree(base_).ok());
  }

  void Start() {
    driver_.reset();
    auto driver = DevmapperDriver::Create(root_, options_, dm_);
    ASSERT_TRUE(driver.ok()) << driver.status();
    driver_ = std::move(*driver);
  }

  std::string NewTarget() {
    std::string target = absl::StrCat(base_, "/mnt", targets_.size());
    EXPECT_EQ(mkdir(target.c_str(), 0755), 0);
    targets_.push_back(target);
    return target;
  }

  std::string MountActive(const std::string& id, const drivers::Chain& parents) {
    auto mounts = driver_->Mounts(id, parents);
    EXPECT_TRUE(mounts.ok()) << mounts.status();
    if (!mounts.ok()) return "";
    std::string target = NewTarget();
    absl::Status mounted = mounter_->MountAt(mounts->at(0), target);
    EXPECT_TRUE(mounted.ok()) << mounted;
    return target;
  }

  std::string MountView(const drivers::Chain& chain) {
    auto mounts = driver_->View(chain);
    EXPECT_TRUE(mounts.ok()) << mounts.status();
    if (!mounts.ok()) return "";
    std::string target = NewTarget();
    absl::Status mounted = mounter_->MountAt(mounts->at(0), target);
    EXPECT_TRUE(mounted.ok()) << mounted;
    return target;
  }

  static inline int counter_ = 0;
  int64_t pool_data_ = drivers::kPoolData;
  std::string base_, root_, pool_;
  std::shared_ptr<sys::DeviceMapper> dm_;
  drivers::DevmapperOptions options_;
  std::unique_ptr<DevmapperDriver> driver_;
  std::unique_ptr<sys::Mounter> mounter_;
  std::vector<std::string> targets_;
};

TEST_F(DevmapperKernelTest, CommitOfAMountedDeviceTimesAndContent) {
  // Above the 64 MiB base: room for 101 MiB of data.
  ASSERT_TRUE(driver_->Prepare("vol", {}, {.capacity_bytes = 192 * kKernelTestMiB}).ok());
  std::string target = MountActive("vol", {});
  ASSERT_FALSE(target.empty());
  for (int64_t mib : {1, 100}) {
    // Unsynced data must be in the layer: the suspend flushes and freezes the mounted fs.
    std::string chunk(kKernelTestMiB, 'a' + mib % 26);
    {
      std::ofstream out(absl::StrCat(target, "/data", mib), std::ios::binary);
      for (int64_t i = 0; i < mib; ++i) out << chunk;
      ASSERT_TRUE(out.good()) << "write failed";
    }
    const std::string layer = absl::StrCat("snap", mib);
    auto start = std::chrono::steady_clock::now();
    absl::Status committed = driver_->Commit(layer, "vol", {}, drivers::CommitMode::kKeep);
    double seconds = Seconds(std::chrono::steady_clock::now() - start);
    ASSERT_TRUE(committed.ok()) << committed;
    std::printf(
        "[ measure  ] devmapper kKeep commit of a mounted device after %lld MiB of "
        "unsynced writes: %.3f s\n",
        static_cast<long long>(mib), seconds);
    WriteBytes(target + "/after", kKernelTestMiB, 'z');  // the active keeps working
    std::string view = MountView({layer});
    ASSERT_FALSE(view.empty());
    EXPECT_EQ(FileSize(absl::StrCat(view, "/data", mib)), mib * kKernelTestMiB);
    EXPECT_EQ(FileSize(view + "/after"), mib == 1 ? -1 : kKernelTestMiB);
    ASSERT_TRUE(mounter_->Unmount(view).ok());
  }
  auto usage = driver_->GetUsage("snap100");
  ASSERT_TRUE(usage.ok()) << usage.status();
  EXPECT_GE(usage->bytes, 100 * kKernelTestMiB);
  auto pool = driver_->PoolUsage();
  ASSERT_TRUE(pool.ok());
  EXPECT_GE(pool->data_used_bytes, 100 * kKernelTestMiB);
  EXPECT_EQ(pool->data_total_bytes, drivers::kPoolData);
  std::printf("[ measure  ] pool after 101 MiB: data %lld/%lld MiB, metadata %lld/%lld KiB\n",
              static_cast<long long>(pool->data_used_bytes >> 20),
              static_cast<long long>(pool->data_total_bytes >> 20),
              static_cast<long long>(pool->metadata_used_bytes >> 10),
              static_cast<long long>(pool->metadata_total_bytes >> 10));
  ASSERT_TRUE(mounter_->Unmount(target).ok());
}

TEST_F(DevmapperKernelTest, StageOfATenLayerChain) {
  drivers::Chain chain;
  for (int i = 0; i < 10; ++i) {
    const std::string active = absl::StrCat("a", i), layer = absl::StrCat("l", i);
    ASSERT_TRUE(driver_->Prepare(active, chain, {}).ok());
    std::string target = MountActive(active, chain);
    ASSERT_FALSE(target.empty());
    WriteBytes(absl::StrCat(target, "/f", i), 64 * 1024, 'x');
    ASSERT_TRUE(mounter_->Unmount(target).ok());
    ASSERT_TRUE(driver_->Commit(layer, active, chain, drivers::CommitMode::kConsume).ok());
    chain.insert(chain.begin(), layer);
  }
  // Stage = Prepare on the chain + activation + mount (activation is part of Prepare).
  auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(driver_->Prepare("vol", chain, {}).ok());
  std::string target = MountActive("vol", chain);
  double seconds = Seconds(std::chrono::steady_clock::now() - start);
  ASSERT_FALSE(target.empty());
  for (int i = 0; i < 10; ++i) EXPECT_EQ(FileSize(absl::StrCat(target, "/f", i)), 64 * 1024);
  std::printf("[ measure  ] devmapper stage (prepare+activate+mount) on a 10-layer chain: %.3f s\n",
              seconds);
  ASSERT_TRUE(mounter_->Unmount(target).ok());
  // And with the device deactivated (as after a reboot): Mounts re-activates it.
  ASSERT_TRUE(dm_->Remove(driver_->DeviceName("vol")).ok());
  start = std::chrono::steady_clock::now();
  target = MountActive("vol", chain);
  seconds = Seconds(std::chrono::steady_clock::now() - start);
  ASSERT_FALSE(target.empty());
  std::printf("[ measure  ] devmapper activate+mount of an existing device: %.3f s\n", seconds);
  ASSERT_TRUE(mounter_->Unmount(target).ok());
}

TEST_F(DevmapperKernelTest, CapacityAboveTheBaseGrowsTheFilesystem) {
  ASSERT_TRUE(driver_->Prepare("big", {}, {.capacity_bytes = 160 * kKernelTestMiB}).ok());
  std::string target = MountActive("big", {});
  ASSERT_FALSE(target.empty());
  struct statvfs st;
  ASSERT_EQ(statvfs(target.c_str(), &st), 0);
  const int64_t total = static_cast<int64_t>(st.f_blocks) * st.f_frsize;
  EXPECT_GT(total, 140 * kKernelTestMiB);
  // More than the base size fits.
  WriteBytes(target + "/big", 96 * kKernelTestMiB, 'b');
  EXPECT_EQ(FileSize(target + "/big"), 96 * kKernelTestMiB);
  ASSERT_TRUE(mounter_->Unmount(target).ok());
  // A capacity within the base size: the base size.
  ASSERT_TRUE(driver_->Prepare("small", {}, {.capacity_bytes = kKernelTestMiB}).ok());
  target = MountActive("small", {});
  ASSERT_EQ(statvfs(target.c_str(), &st), 0);
  EXPECT_LT(static_cast<int64_t>(st.f_blocks) * st.f_frsize, drivers::kBaseSize + 1);
  ASSERT_TRUE(mounter_->Unmount(target).ok());
}

// Online expansion (ControllerExpandVolume + NodeExpandVolume on a staged volume): the device
// grows under the mounted ext4, resize2fs grows it in place, and more than the old size fits
// with what was written before intact.
TEST_F(DevmapperKernelTest, ExpandGrowsAMountedFilesystemOnline) {
  ASSERT_TRUE(driver_->Prepare("vol", {}, {}).ok());
  std::string target = MountActive("vol", {});
  ASSERT_FALSE(target.empty());
  WriteBytes(target + "/before", 16 * kKernelTestMiB, 'a');
  struct statvfs st;
  ASSERT_EQ(statvfs(target.c_str(), &st), 0);
  EXPECT_LE(static_cast<int64_t>(st.f_blocks) * st.f_frsize, drivers::kBaseSize);

  auto expanded = driver_->Expand("vol", 160 * kKernelTestMiB, target);
  ASSERT_TRUE(expanded.ok()) << expanded.status();
  EXPECT_TRUE(*expanded);
  ASSERT_EQ(statvfs(target.c_str(), &st), 0);
  EXPECT_GT(static_cast<int64_t>(st.f_blocks) * st.f_frsize, 140 * kKernelTestMiB);
  WriteBytes(target + "/after", 96 * kKernelTestMiB, 'b');
  EXPECT_EQ(FileSize(target + "/after"), 96 * kKernelTestMiB);
  EXPECT_EQ(FileSize(target + "/before"), 16 * kKernelTestMiB);
  ASSERT_TRUE(mounter_->Unmount(target).ok());
  // The size outlives the mount: mounted again, the filesystem is still the grown one.
  target = MountActive("vol", {});
  ASSERT_EQ(statvfs(target.c_str(), &st), 0);
  EXPECT_GT(static_cast<int64_t>(st.f_blocks) * st.f_frsize, 140 * kKernelTestMiB);
  ASSERT_TRUE(mounter_->Unmount(target).ok());
}

TEST_F(DevmapperKernelTest, PoolBelowMinimumIsResourceExhaustedWithNothingHalfMade) {
  ASSERT_TRUE(driver_->Prepare("vol", {}, {}).ok());
  std::string target = MountActive("vol", {});
  ASSERT_FALSE(target.empty());
  WriteBytes(target + "/fill", 40 * kKernelTestMiB, 'f');
  ASSERT_TRUE(mounter_->Unmount(target).ok());
  auto pool = driver_->PoolUsage();
  ASSERT_TRUE(pool.ok());
  const int used_percent = static_cast<int>(100 * pool->data_used_bytes / pool->data_total_bytes);
  ASSERT_GE(used_percent, 15);
  // Ask for more free space than is left.
  options_.min_free_percent = 100 - used_percent + 1;
  Start();
  auto devices_before = dm_->ListDevices();
  ASSERT_TRUE(devices_before.ok());
  absl::Status prepared = driver_->Prepare("vol2", {}, {});
  EXPECT_EQ(prepared.code(), absl::StatusCode::kResourceExhausted) << prepared;
  absl::Status committed = driver_->Commit("layer", "vol", {}, drivers::CommitMode::kKeep);
  EXPECT_EQ(committed.code(), absl::StatusCode::kResourceExhausted) << committed;
  std::printf("[ measure  ] pool-full refusal: %s\n", prepared.ToString().c_str());
  EXPECT_THAT(*driver_->Walk(), ::testing::ElementsAre("vol"));
  auto devices_after = dm_->ListDevices();
  ASSERT_TRUE(devices_after.ok());
  EXPECT_EQ(devices_before->size(), devices_after->size());
  EXPECT_EQ(*driver_->FreeBytes(), 0);
  options_.min_free_percent = 10;
  Start();
  EXPECT_TRUE(driver_->Prepare("vol2", {}, {}).ok());
}

// A pool that really ran out of data space (error_if_no_space: writes fail at once): the pool
// leaves "rw" mode and Prepare/Commit refuse even with no free-space minimum.
TEST_F(DevmapperKernelTest, PoolOutOfDataSpaceIsResourceExhausted) {
  options_.min_free_percent = 0;
  Start();
  ASSERT_TRUE(driver_->Prepare("vol", {}, {.capacity_bytes = 400 * kKernelTestMiB}).ok());
  std::string target = MountActive("vol", {});
  ASSERT_FALSE(target.empty());
  {
    // Fill the 256 MiB pool; the write (or the fsync) fails when the pool is full.
    std::string chunk(kKernelTestMiB, 'p');
    int fd = open((target + "/fill").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    ASSERT_GE(fd, 0);
    bool failed = false;
    for (int i = 0; i < 320 && !failed; ++i) {
      failed = write(fd, chunk.data(), chunk.size()) != static_cast<ssize_t>(chunk.size()) ||
               (i % 16 == 15 && fdatasync(fd) != 0);
    }
    failed = failed || fdatasync(fd) != 0;
    close(fd);
    EXPECT_TRUE(failed) << "320 MiB fit in a 256 MiB pool";
  }
  auto pool = driver_->PoolUsage();
  ASSERT_TRUE(pool.ok());
  std::printf("[ measure  ] full pool: data %lld/%lld MiB\n",
              static_cast<long long>(pool->data_used_bytes >> 20),
              static_cast<long long>(pool->data_total_bytes >> 20));
  absl::Status prepared = driver_->Prepare("vol2", {}, {});
  EXPECT_EQ(prepared.code(), absl::StatusCode::kResourceExhausted) << prepared;
  std::printf("[ measure  ] out-of-space refusal: %s\n", prepared.ToString().c_str());
  EXPECT_EQ(driver_->Commit("l", "vol", {}, drivers::CommitMode::kKeep).code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(*driver_->Walk(), ::testing::ElementsAre("vol"));
  (void)mounter_->Unmount(target, /*detach=*/true);
}

// Crash states made on real devices; a restart (DevmapperDriver::Create) must repair them.
TEST_F(DevmapperKernelTest, RestartRecoversRealDevices) {
  ASSERT_TRUE(driver_->Prepare("vol", {}, {}).ok());
  std::string target = MountActive("vol", {});
  WriteBytes(target + "/keep", kKernelTestMiB, 'k');
  ASSERT_TRUE(mounter_->Unmount(target).ok());
  ASSERT_TRUE(driver_->Commit("layer", "vol", {}, drivers::CommitMode::kKeep).ok());
  ASSERT_TRUE(driver_->Prepare("half", {"layer"}, {}).ok());
  const uint32_t half_id = *driver_->ThinId("half");
  const std::string records = root_ + "/devmapper/devices/";

  // 1. A device left "creating" (crash inside Prepare): deactivated and deleted.
  {
    std::ifstream in(records + "half.json");
    std::string json((std::istreambuf_iterator<char>(in)), {});
    json.replace(json.find("\"state\":\"active\""), 16, "\"state\":\"creating\"");
    std::ofstream(records + "half.json") << json;
  }
  // 2. A layer device gone (reboot) and the active left suspended (crash inside Commit).
  ASSERT_TRUE(dm_->Remove(driver_->DeviceName("layer")).ok());
  ASSERT_TRUE(dm_->Suspend(driver_->DeviceName("vol")).ok());
  Start();
  EXPECT_THAT(*driver_->Walk(), ::testing::ElementsAre("layer", "vol"));
  EXPECT_FALSE(dm_->GetDeviceInfo(driver_->DeviceName("half"))->exists);
  // The thin id is gone from the pool: activating it fails.
  EXPECT_FALSE(dm_->ActivateThin("strata-probe", pool_, half_id, kKernelTestMiB, true).ok());
  (void)dm_->Remove("strata-probe");
  EXPECT_FALSE(dm_->GetDeviceInfo(driver_->DeviceName("vol"))->suspended);
  std::string view = MountView({"layer"});
  EXPECT_EQ(FileSize(view + "/keep"), kKernelTestMiB);
  ASSERT_TRUE(mounter_->Unmount(view).ok());
  target = MountActive("vol", {});
  WriteBytes(target + "/more", kKernelTestMiB, 'm');  // resumed: writes go through
  ASSERT_TRUE(mounter_->Unmount(target).ok());

  // 3. A removal interrupted after deactivation: finished at start-up.
  {
    std::ifstream in(records + "layer.json");
    std::string json((std::istreambuf_iterator<char>(in)), {});
    json.replace(json.find("\"state\":\"active\""), 16, "\"state\":\"removing\"");
    std::ofstream(records + "layer.json") << json;
  }
  ASSERT_TRUE(dm_->Remove(driver_->DeviceName("layer")).ok());
  Start();
  EXPECT_THAT(*driver_->Walk(), ::testing::ElementsAre("vol"));
  // 4. A busy device cannot be removed: Remove says so and leaves it for a later attempt.
  target = MountActive("vol", {});
  EXPECT_EQ(driver_->Remove("vol").code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(mounter_->Unmount(target).ok());
  EXPECT_TRUE(driver_->Remove("vol").ok());
  EXPECT_THAT(*driver_->Walk(), ::testing::IsEmpty());
}

}  // namespace
}  // namespace strata
