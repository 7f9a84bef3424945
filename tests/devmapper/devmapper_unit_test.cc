// The devmapper driver against the fake device-mapper (no root, no kernel device-mapper): the
// messages each call sends, crash recovery from every point a call can die at, pool-full
// refusals that leave nothing behind, thin id mapping, and the capacity growth path.

#include <unistd.h>

#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "drivers/copy_tree.h"
#include "drivers/devmapper/devmapper_driver.h"
#include "drivers/fs_util.h"
#include "drivers/registry.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sys/devmapper_fake.h"

namespace strata {
namespace {

using drivers::CommitMode;
using drivers::DevmapperDriver;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr int64_t kMiB = 1 << 20;
constexpr int64_t kBase = 64 * kMiB;

class DevmapperUnitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char path[] = "/tmp/strata-dm-unit-XXXXXX";
    ASSERT_NE(mkdtemp(path), nullptr);
    root_ = path;
    dm_ = std::make_shared<sys::FakeDeviceMapper>();
    dm_->AddPool("pool", /*total_data_blocks=*/4096);  // 256 MiB of 64 KiB blocks
    options_.thin_pool = "pool";
    options_.base_size_bytes = kBase;
  }

  void TearDown() override {
    driver_.reset();
    if (!root_.empty()) {
      EXPECT_TRUE(drivers::RemoveTree(root_).ok());
    }
  }

  drivers::ToolRunner Tools() {
    return
        [this](const std::vector<std::string>& argv, std::string* output) -> absl::StatusOr<int> {
          tool_calls_.push_back(absl::StrJoin(argv, " "));
          auto it = tool_exit_.find(argv[0]);
          return it == tool_exit_.end() ? 0 : it->second;
        };
  }

  absl::StatusOr<std::unique_ptr<DevmapperDriver>> NewDriver() {
    return DevmapperDriver::Create(root_, options_, dm_, Tools());
  }

  // Starts (or restarts, running recovery) the driver.
  void Start() {
    driver_.reset();
    auto driver = NewDriver();
    ASSERT_TRUE(driver.ok()) << driver.status();
    driver_ = std::move(*driver);
  }

  std::vector<std::string> Walk() {
    auto walk = driver_->Walk();
    EXPECT_TRUE(walk.ok()) << walk.status();
    return walk.ok() ? *walk : std::vector<std::string>{};
  }

  // The fake's state matches the records: every thin id belongs to a record (or the base), every
  // dm device but the pool is an active record's, nothing is suspended, no record is transitional.
  void ExpectConsistent() {
    std::set<uint32_t> recorded;
    std::set<std::string> want_devices = {"pool"};
    for (const std::string& id : Walk()) {
      auto state = driver_->State(id);
      ASSERT_TRUE(state.ok());
      EXPECT_EQ(*state, "active") << id;
      recorded.insert(*driver_->ThinId(id));
      want_devices.insert(driver_->DeviceName(id));
    }
    std::set<uint32_t> thins = dm_->ThinIds("pool");
    EXPECT_EQ(thins.size(), recorded.size() + 1) << "one base device besides the records";
    for (uint32_t id : recorded) EXPECT_TRUE(thins.count(id)) << id;
    auto devices = dm_->ListDevices();
    ASSERT_TRUE(devices.ok());
    EXPECT_EQ(std::set<std::string>(devices->begin(), devices->end()), want_devices);
    for (const std::string& name : want_devices) {
      EXPECT_FALSE(dm_->GetDeviceInfo(name)->suspended) << name;
    }
  }

  std::string root_;
  std::shared_ptr<sys::FakeDeviceMapper> dm_;
  drivers::DevmapperOptions options_;
  std::unique_ptr<DevmapperDriver> driver_;
  std::vector<std::string> tool_calls_;
  std::map<std::string, int> tool_exit_;
};

TEST_F(DevmapperUnitTest, StartMakesAndFormatsTheBaseOnce) {
  Start();
  EXPECT_THAT(dm_->calls(),
              ElementsAre("create_thin pool 1", absl::StrCat("activate pool-base 1 ", kBase, " rw"),
                          "remove pool-base"));
  EXPECT_THAT(tool_calls_, ElementsAre("mkfs.ext4 -q -F -E "
                                       "nodiscard,lazy_itable_init=0,lazy_journal_init=0 "
                                       "/dev/mapper/pool-base",
                                       "debugfs -w -R rmdir lost+found /dev/mapper/pool-base"));
  dm_->ClearCalls();
  Start();  // a restart keeps the base
  EXPECT_THAT(dm_->calls(), IsEmpty());
  EXPECT_EQ(tool_calls_.size(), 2u);
  EXPECT_THAT(Walk(), IsEmpty());  // the base is not a driver id
}

TEST_F(DevmapperUnitTest, OptionsAreChecked) {
  options_.thin_pool = "";
  EXPECT_EQ(NewDriver().status().code(), absl::StatusCode::kFailedPrecondition);
  options_.thin_pool = "nopool";
  EXPECT_EQ(NewDriver().status().code(), absl::StatusCode::kFailedPrecondition);
  options_.thin_pool = "pool";
  options_.fs_type = "btrfs";
  EXPECT_EQ(NewDriver().status().code(), absl::StatusCode::kInvalidArgument);
  options_.fs_type = "ext4";
  options_.base_size_bytes = 3 * kMiB + 1;
  EXPECT_EQ(NewDriver().status().code(), absl::StatusCode::kInvalidArgument);
  options_.base_size_bytes = kBase;
  options_.min_free_percent = 100;
  EXPECT_EQ(NewDriver().status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(DevmapperUnitTest, MkfsFailureLeavesNoBase) {
  tool_exit_["mkfs.ext4"] = 1;
  auto driver = NewDriver();
  EXPECT_EQ(driver.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(dm_->ThinIds("pool"), IsEmpty());
  EXPECT_THAT(*dm_->ListDevices(), ElementsAre("pool"));
  tool_exit_.clear();
  Start();
  EXPECT_EQ(dm_->ThinIds("pool").size(), 1u);
}

TEST_F(DevmapperUnitTest, PrepareCommitRemoveSendTheRightMessages) {
  Start();
  dm_->ClearCalls();
  ASSERT_TRUE(driver_->Prepare("vol", {}, {}).ok());
  EXPECT_THAT(dm_->calls(), ElementsAre("create_snap pool 2 1",
                                        absl::StrCat("activate pool-snap-vol 2 ", kBase, " rw")));
  auto mounts = driver_->Mounts("vol", {});
  ASSERT_TRUE(mounts.ok());
  EXPECT_THAT(*mounts, ElementsAre(sys::Mount{"ext4", "/dev/mapper/pool-snap-vol", {"rw"}}));
  EXPECT_EQ(driver_->DirectWriteTarget("vol").status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_EQ(driver_->DirectWriteTarget("none").status().code(), absl::StatusCode::kNotFound);

  // kKeep of a live (possibly mounted) active: suspended around the snapshot.
  dm_->ClearCalls();
  ASSERT_TRUE(driver_->Commit("snap", "vol", {}, CommitMode::kKeep).ok());
  EXPECT_THAT(dm_->calls(),
              ElementsAre("suspend pool-snap-vol", "create_snap pool 3 2", "resume pool-snap-vol",
                          absl::StrCat("activate pool-snap-snap 3 ", kBase, " ro")));
  auto view = driver_->View({"snap"});
  ASSERT_TRUE(view.ok());
  EXPECT_THAT(*view, ElementsAre(sys::Mount{"ext4", "/dev/mapper/pool-snap-snap", {"ro"}}));
  EXPECT_THAT(Walk(), ElementsAre("snap", "vol"));

  // A child of the layer: read-only origin, no suspend needed.
  dm_->ClearCalls();
  ASSERT_TRUE(driver_->Prepare("child", {"snap"}, {}).ok());
  EXPECT_THAT(dm_->calls(), ElementsAre("create_snap pool 4 3",
                                        absl::StrCat("activate pool-snap-child 4 ", kBase, " rw")));

  // kConsume: snapshot, then the active goes.
  dm_->ClearCalls();
  ASSERT_TRUE(driver_->Commit("top", "child", {"snap"}, CommitMode::kConsume).ok());
  EXPECT_THAT(dm_->calls(), ElementsAre("suspend pool-snap-child", "create_snap pool 5 4",
                                        "resume pool-snap-child",
                                        absl::StrCat("activate pool-snap-top 5 ", kBase, " ro"),
                                        "remove pool-snap-child", "delete pool 4"));
  EXPECT_THAT(Walk(), ElementsAre("snap", "top", "vol"));
  EXPECT_EQ(driver_->Mounts("child", {"snap"}).status().code(), absl::StatusCode::kNotFound);
  // Retried kConsume after success: OK; the same layer id from another active: AlreadyExists.
  EXPECT_TRUE(driver_->Commit("top", "child", {"snap"}, CommitMode::kConsume).ok());
  EXPECT_EQ(driver_->Commit("top", "vol", {}, CommitMode::kKeep).code(),
            absl::StatusCode::kAlreadyExists);

  dm_->ClearCalls();
  ASSERT_TRUE(driver_->Remove("snap").ok());
  EXPECT_THAT(dm_->calls(), ElementsAre("remove pool-snap-snap", "delete pool 3"));
  EXPECT_TRUE(driver_->Remove("snap").ok());  // missing: OK
  EXPECT_THAT(Walk(), ElementsAre("top", "vol"));
  // The layer made from snap's child still works: thin snapshots are independent devices.
  EXPECT_TRUE(driver_->View({"top", "snap"}).ok());
  ExpectConsistent();
}

// Quarantine (issue 8): the thin device stays in the pool, deactivated; only its record moves.
// Verified with the fake only (this kernel has no device-mapper).
TEST_F(DevmapperUnitTest, QuarantineKeepsTheThinDeviceRestoreAndPurge) {
  Start();
  ASSERT_TRUE(driver_->Prepare("vol", {}, {}).ok());
  ASSERT_TRUE(driver_->Commit("lay", "vol", {}, CommitMode::kKeep).ok());
  const std::set<uint32_t> before = dm_->ThinIds("pool");
  const std::string dest = root_ + "/q-vol";
  // A mounted (open) device refuses to deactivate: nothing moves.
  dm_->SetBusy("pool-snap-vol", true);
  EXPECT_FALSE(driver_->Quarantine("vol", dest).ok());
  EXPECT_THAT(Walk(), ElementsAre("lay", "vol"));
  dm_->SetBusy("pool-snap-vol", false);

  auto kind = driver_->Quarantine("vol", dest);
  ASSERT_TRUE(kind.ok()) << kind.status();
  EXPECT_EQ(*kind, drivers::ContentKind::kActive);
  EXPECT_THAT(Walk(), ElementsAre("lay"));
  EXPECT_EQ(dm_->ThinIds("pool"), before) << "the data stays in the pool";
  EXPECT_EQ(access((dest + "/device.json").c_str(), F_OK), 0);
  EXPECT_EQ(driver_->Quarantine("none", root_ + "/q-none").status().code(),
            absl::StatusCode::kNotFound);
  // A restart (driver recovery) leaves the quarantined device alone.
  Start();
  EXPECT_EQ(dm_->ThinIds("pool"), before);
  auto layer_kind = driver_->Quarantine("lay", root_ + "/q-lay");
  ASSERT_TRUE(layer_kind.ok());
  EXPECT_EQ(*layer_kind, drivers::ContentKind::kLayer);

  // Restore under a new id: the same thin device, activated under the new name.
  ASSERT_TRUE(driver_->Unquarantine(dest, drivers::ContentKind::kActive, "back").ok());
  EXPECT_THAT(Walk(), ElementsAre("back"));
  EXPECT_TRUE(driver_->Mounts("back", {}).ok());
  EXPECT_EQ(dm_->ThinIds("pool"), before);

  // Purge deletes the layer's thin device, and only it.
  ASSERT_TRUE(driver_->PurgeQuarantined(root_ + "/q-lay").ok());
  EXPECT_EQ(dm_->ThinIds("pool").size(), before.size() - 1);
  EXPECT_NE(access((root_ + "/q-lay").c_str(), F_OK), 0);
  EXPECT_THAT(Walk(), ElementsAre("back"));
  ExpectConsistent();
}

TEST_F(DevmapperUnitTest, ArgumentErrors) {
  Start();
  ASSERT_TRUE(driver_->Prepare("vol", {}, {}).ok());
  EXPECT_EQ(driver_->Prepare("vol", {}, {}).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(driver_->Prepare("x", {"missing"}, {}).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(driver_->Prepare("x", {"vol"}, {}).code(), absl::StatusCode::kNotFound)
      << "an active is not a parent layer";
  for (const char* bad : {"", "..", "a/b", "UP", "a.b", "/etc", "x.json"}) {
    EXPECT_EQ(driver_->Prepare(bad, {}, {}).code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_EQ(driver_->View({bad}).status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(driver_->Remove(bad).code(), absl::StatusCode::kInvalidArgument);
  }
  EXPECT_EQ(driver_->View({}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(driver_->View({"vol"}).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(driver_->Commit("l", "missing", {}, CommitMode::kConsume).code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(driver_->Commit("vol", "vol", {}, CommitMode::kKeep).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(driver_->GetUsage("nothere").status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Walk(), ElementsAre("vol"));
}

TEST_F(DevmapperUnitTest, UsageAndPoolSpace) {
  Start();
  ASSERT_TRUE(driver_->Prepare("vol", {}, {}).ok());
  dm_->SetMappedBytes("pool", *driver_->ThinId("vol"), 5 * kMiB);
  auto usage = driver_->GetUsage("vol");
  ASSERT_TRUE(usage.ok()) << usage.status();
  EXPECT_EQ(usage->bytes, 5 * kMiB);
  dm_->SetPoolUsage("pool", 1024, 100);
  auto pool = driver_->PoolUsage();
  ASSERT_TRUE(pool.ok());
  EXPECT_EQ(pool->data_total_bytes, 256 * kMiB);
  EXPECT_EQ(pool->data_used_bytes, 64 * kMiB);
  EXPECT_EQ(pool->metadata_total_bytes, 1024 * 4096);
  EXPECT_EQ(pool->metadata_used_bytes, 100 * 4096);
  // Free above the 10% reserve: 256 - 64 - 25.6 MiB.
  auto free_bytes = driver_->FreeBytes();
  ASSERT_TRUE(free_bytes.ok());
  EXPECT_EQ(*free_bytes, 256 * kMiB - 64 * kMiB - 256 * kMiB / 100 * 10);
  dm_->SetPoolUsage("pool", 4096);
  EXPECT_EQ(*driver_->FreeBytes(), 0);
}

TEST_F(DevmapperUnitTest, PoolBelowMinimumFreeRefusesWithNothingHalfMade) {
  Start();
  ASSERT_TRUE(driver_->Prepare("vol", {}, {}).ok());
  dm_->ClearCalls();
  dm_->SetPoolUsage("pool", 3700);  // 9.7% free < 10%
  absl::Status prepared = driver_->Prepare("vol2", {}, {});
  EXPECT_EQ(prepared.code(), absl::StatusCode::kResourceExhausted) << prepared;
  EXPECT_THAT(std::string(prepared.message()), HasSubstr("9.7%"));
  absl::Status committed = driver_->Commit("layer", "vol", {}, CommitMode::kKeep);
  EXPECT_EQ(committed.code(), absl::StatusCode::kResourceExhausted) << committed;
  EXPECT_THAT(dm_->calls(), IsEmpty());  // not even a suspend
  EXPECT_THAT(Walk(), ElementsAre("vol"));
  // Metadata space counts too.
  dm_->SetPoolUsage("pool", 0, 1000);
  EXPECT_EQ(driver_->Prepare("vol2", {}, {}).code(), absl::StatusCode::kResourceExhausted);
  // Below the threshold again: works.
  dm_->SetPoolUsage("pool", 3600);
  EXPECT_TRUE(driver_->Prepare("vol2", {}, {}).ok());
  ExpectConsistent();
}

TEST_F(DevmapperUnitTest, ThinIdsComeFromRecordsAndSkipForeignOnes) {
  Start();
  // A thin id the pool has but no record knows (another user of the pool): skipped.
  ASSERT_TRUE(dm_->CreateThin("pool", 2).ok());
  ASSERT_TRUE(driver_->Prepare("a", {}, {}).ok());
  EXPECT_EQ(*driver_->ThinId("a"), 3u);
  ASSERT_TRUE(driver_->Prepare("b", {}, {}).ok());
  EXPECT_EQ(*driver_->ThinId("b"), 4u);
  // Ids are not derived from names: any valid 32-char id works.
  const std::string long_id(32, 'z');
  ASSERT_TRUE(driver_->Prepare(long_id, {}, {}).ok());
  EXPECT_EQ(*driver_->ThinId(long_id), 5u);
  ASSERT_TRUE(driver_->Remove(long_id).ok());
  ASSERT_TRUE(driver_->Remove("b").ok());
  ASSERT_TRUE(driver_->Prepare("c", {}, {}).ok());
  EXPECT_EQ(*driver_->ThinId("c"), 4u);  // above the highest recorded id

  // At the 24-bit ceiling the lowest free id is taken.
  const std::string record = root_ + "/devmapper/devices/top.json";
  ASSERT_TRUE(dm_->CreateThin("pool", sys::kMaxThinDeviceId).ok());
  {
    std::ofstream out(record);
    out << R"({"id":"top","kind":"active","state":"active","dev_id":16777215,)"
        << R"("size_bytes":67108864})";
  }
  Start();  // recovery activates it
  EXPECT_TRUE(dm_->GetDeviceInfo("pool-snap-top")->exists);
  ASSERT_TRUE(driver_->Prepare("d", {}, {}).ok());
  EXPECT_EQ(*driver_->ThinId("d"), 5u);
  EXPECT_LE(*driver_->ThinId("top"), sys::kMaxThinDeviceId);
}

TEST_F(DevmapperUnitTest, CapacityAboveTheBaseGrowsDeviceAndFilesystem) {
  Start();
  tool_calls_.clear();
  ASSERT_TRUE(driver_->Prepare("small", {}, {.capacity_bytes = 10 * kMiB}).ok());
  EXPECT_THAT(tool_calls_, IsEmpty());  // up to the base size: nothing to grow
  EXPECT_EQ(dm_->GetDeviceInfo("pool-snap-small")->size_bytes, kBase);

  dm_->ClearCalls();
  ASSERT_TRUE(driver_->Prepare("big", {}, {.capacity_bytes = 100 * kMiB + 1}).ok());
  const int64_t grown = 101 * kMiB;  // rounded up to MiB
  EXPECT_THAT(dm_->calls(), ElementsAre("create_snap pool 3 1",
                                        absl::StrCat("activate pool-snap-big 3 ", grown, " rw")));
  EXPECT_THAT(tool_calls_, ElementsAre("resize2fs -f /dev/mapper/pool-snap-big"));
  // Its layer and the layer's children keep the size without growing again.
  ASSERT_TRUE(driver_->Commit("bigl", "big", {}, CommitMode::kConsume).ok());
  tool_calls_.clear();
  ASSERT_TRUE(driver_->Prepare("child", {"bigl"}, {}).ok());
  EXPECT_EQ(dm_->GetDeviceInfo("pool-snap-child")->size_bytes, grown);
  EXPECT_THAT(tool_calls_, IsEmpty());

  // A failed resize leaves nothing.
  tool_exit_["resize2fs"] = 1;
  EXPECT_EQ(driver_->Prepare("bad2", {}, {.capacity_bytes = 200 * kMiB}).code(),
            absl::StatusCode::kInternal);
  EXPECT_THAT(Walk(), ElementsAre("bigl", "child", "small"));
  ExpectConsistent();
}

TEST_F(DevmapperUnitTest, XfsMountsAndNoGrowth) {
  options_.fs_type = "xfs";
  Start();
  EXPECT_THAT(tool_calls_, ElementsAre("mkfs.xfs -q -f -K /dev/mapper/pool-base"));
  ASSERT_TRUE(driver_->Prepare("vol", {}, {}).ok());
  EXPECT_THAT(*driver_->Mounts("vol", {}),
              ElementsAre(sys::Mount{"xfs", "/dev/mapper/pool-snap-vol", {"rw", "nouuid"}}));
  ASSERT_TRUE(driver_->Commit("l", "vol", {}, CommitMode::kKeep).ok());
  EXPECT_THAT(
      *driver_->View({"l"}),
      ElementsAre(sys::Mount{"xfs", "/dev/mapper/pool-snap-l", {"ro", "nouuid", "norecovery"}}));
  dm_->ClearCalls();
  EXPECT_EQ(driver_->Prepare("big", {}, {.capacity_bytes = 2 * kBase}).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(dm_->calls(), IsEmpty());
}

// Expansion: the thin device gets a larger table at once (online: a table swap), the
// filesystem grows only while mounted (resize2fs online for ext4, xfs_growfs for xfs), and a
// repeat grows nothing more.
TEST_F(DevmapperUnitTest, ExpandGrowsTheDeviceThenTheMountedFilesystem) {
  Start();
  ASSERT_TRUE(driver_->Prepare("vol", {}, {}).ok());
  (void)driver_->Mounts("vol", {});  // activates the device
  dm_->ClearCalls();
  tool_calls_.clear();
  const int64_t grown = 2 * kBase;
  auto unmounted = driver_->Expand("vol", grown, "");
  ASSERT_TRUE(unmounted.ok()) << unmounted.status();
  EXPECT_FALSE(*unmounted) << "the filesystem waits for a mount";
  EXPECT_THAT(dm_->calls(), Contains(absl::StrCat("resize pool-snap-vol ", grown)));
  EXPECT_THAT(tool_calls_, IsEmpty());
  EXPECT_EQ(dm_->GetDeviceInfo("pool-snap-vol")->size_bytes, grown);

  dm_->ClearCalls();
  auto mounted = driver_->Expand("vol", grown, "/staging/vol");
  ASSERT_TRUE(mounted.ok()) << mounted.status();
  EXPECT_TRUE(*mounted);
  EXPECT_THAT(dm_->calls(), ::testing::Not(Contains(HasSubstr("resize"))))
      << "the device is already that size";
  EXPECT_THAT(tool_calls_, ElementsAre("resize2fs /dev/mapper/pool-snap-vol"));

  // A smaller size than the device has changes nothing; an unknown id is NotFound.
  dm_->ClearCalls();
  ASSERT_TRUE(driver_->Expand("vol", kBase, "").ok());
  EXPECT_THAT(dm_->calls(), ::testing::Not(Contains(HasSubstr("resize"))));
  EXPECT_TRUE(absl::IsNotFound(driver_->Expand("nosuch", grown, "").status()));

  // The record keeps the size: a restart (recovery) re-activates the device at it.
  Start();
  (void)driver_->Mounts("vol", {});
  EXPECT_EQ(dm_->GetDeviceInfo("pool-snap-vol")->size_bytes, grown);
  ExpectConsistent();
}

TEST_F(DevmapperUnitTest, ExpandGrowsXfsThroughItsMountPoint) {
  options_.fs_type = "xfs";
  Start();
  ASSERT_TRUE(driver_->Prepare("vol", {}, {}).ok());
  (void)driver_->Mounts("vol", {});
  tool_calls_.clear();
  auto expanded = driver_->Expand("vol", 2 * kBase, "/staging/vol");
  ASSERT_TRUE(expanded.ok()) << expanded.status();
  EXPECT_TRUE(*expanded);
  EXPECT_THAT(tool_calls_, ElementsAre("xfs_growfs /staging/vol"));
}

TEST_F(DevmapperUnitTest, DeviceFailuresLeaveNothingHalfMade) {
  Start();
  ASSERT_TRUE(driver_->Prepare("vol", {}, {}).ok());
  for (const char* operation : {"create_snap", "activate", "suspend"}) {
    SCOPED_TRACE(operation);
    dm_->FailOn(operation, absl::InternalError("injected"));
    EXPECT_FALSE(driver_->Commit("layer", "vol", {}, CommitMode::kKeep).ok());
    EXPECT_THAT(Walk(), ElementsAre("vol"));
    ExpectConsistent();
  }
  dm_->FailOn("create_snap", absl::InternalError("injected"));
  EXPECT_FALSE(driver_->Prepare("v2", {}, {}).ok());
  EXPECT_THAT(Walk(), ElementsAre("vol"));
  ExpectConsistent();
}

TEST_F(DevmapperUnitTest, RemoveOfABusyDeviceFailsAndIsFinishedLater) {
  Start();
  ASSERT_TRUE(driver_->Prepare("vol", {}, {}).ok());
  dm_->SetBusy("pool-snap-vol", true);
  EXPECT_EQ(driver_->Remove("vol").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(*driver_->State("vol"), "removing");
  EXPECT_THAT(Walk(), ElementsAre("vol"));  // reported, so recovery can finish it
  dm_->SetBusy("pool-snap-vol", false);
  EXPECT_TRUE(driver_->Remove("vol").ok());
  EXPECT_THAT(Walk(), IsEmpty());
  ExpectConsistent();
}

TEST_F(DevmapperUnitTest, RecoveryActivatesResumesAndMarksFaulty) {
  Start();
  ASSERT_TRUE(driver_->Prepare("vol", {}, {}).ok());
  ASSERT_TRUE(driver_->Commit("layer", "vol", {}, CommitMode::kKeep).ok());
  // A reboot: every dm device is gone, the pool's thin devices remain.
  driver_.reset();
  ASSERT_TRUE(dm_->Remove("pool-snap-vol").ok());
  ASSERT_TRUE(dm_->Remove("pool-snap-layer").ok());
  Start();
  EXPECT_TRUE(dm_->GetDeviceInfo("pool-snap-vol")->exists);
  EXPECT_TRUE(dm_->GetDeviceInfo("pool-snap-layer")->read_only);
  ExpectConsistent();

  // A device that cannot be re-activated becomes faulty, is reported, and Remove clears it.
  driver_.reset();
  ASSERT_TRUE(dm_->Remove("pool-snap-vol").ok());
  dm_->FailOn("activate", absl::InternalError("injected"));
  Start();
  EXPECT_EQ(*driver_->State("vol"), "faulty");
  EXPECT_THAT(Walk(), ElementsAre("layer", "vol"));
  EXPECT_EQ(driver_->Mounts("vol", {}).status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(driver_->Remove("vol").ok());
  ExpectConsistent();
}

// A crash (FakeCrash thrown from the device-mapper) before or after every device operation of
// each driver call; a restart must leave a consistent state and the retried call must succeed.
struct CrashCase {
  std::string call;  // "prepare", "keep", "consume", "remove", "base"
  std::string operation;
  bool after;
  int skip;
};

std::string CrashName(const CrashCase& c) {
  return absl::StrCat(c.call, "_", c.after ? "after_" : "before_", c.operation, "_", c.skip);
}

void PrintTo(const CrashCase& c, std::ostream* os) { *os << CrashName(c); }

class DevmapperCrashTest : public DevmapperUnitTest,
                           public ::testing::WithParamInterface<CrashCase> {};

TEST_P(DevmapperCrashTest, RestartRecoversAndRetrySucceeds) {
  const CrashCase& c = GetParam();
  if (c.call != "base") {
    Start();
    ASSERT_TRUE(driver_->Prepare("vol", {}, {}).ok());
    if (c.call == "remove")
      ASSERT_TRUE(driver_->Commit("layer", "vol", {}, CommitMode::kKeep).ok());
  }
  auto run = [&]() -> absl::Status {
    if (c.call == "base") return NewDriver().status();
    if (c.call == "prepare") return driver_->Prepare("new", {}, {.capacity_bytes = 2 * kBase});
    if (c.call == "keep") return driver_->Commit("layer", "vol", {}, CommitMode::kKeep);
    if (c.call == "consume") return driver_->Commit("layer", "vol", {}, CommitMode::kConsume);
    return driver_->Remove("layer");
  };
  dm_->CrashOn(c.operation, c.after, c.skip);
  bool crashed = false;
  try {
    (void)run();
  } catch (const sys::FakeCrash&) {
    crashed = true;
  }
  ASSERT_TRUE(crashed) << "the call never reached " << CrashName(c);
  Start();  // recovery
  ExpectConsistent();
  // The retried call succeeds, with the result it promises.
  absl::Status retried = c.call == "base" ? absl::OkStatus() : run();
  ASSERT_TRUE(retried.ok()) << retried;
  ExpectConsistent();
  std::vector<std::string> want;
  if (c.call == "prepare") want = {"new", "vol"};
  if (c.call == "keep") want = {"layer", "vol"};
  if (c.call == "consume") want = {"layer"};
  if (c.call == "remove") want = {"vol"};
  EXPECT_EQ(Walk(), want);
  if (c.call == "prepare") {
    EXPECT_EQ(dm_->GetDeviceInfo("pool-snap-new")->size_bytes, 2 * kBase);
  }
}

INSTANTIATE_TEST_SUITE_P(
    EveryStep, DevmapperCrashTest,
    ::testing::Values(
        CrashCase{"base", "create_thin", false, 0}, CrashCase{"base", "create_thin", true, 0},
        CrashCase{"base", "activate", true, 0}, CrashCase{"base", "remove", false, 0},
        CrashCase{"base", "remove", true, 0}, CrashCase{"prepare", "create_snap", false, 0},
        CrashCase{"prepare", "create_snap", true, 0}, CrashCase{"prepare", "activate", false, 0},
        CrashCase{"prepare", "activate", true, 0},  // before the fs grows
        CrashCase{"keep", "suspend", true, 0}, CrashCase{"keep", "create_snap", false, 0},
        CrashCase{"keep", "create_snap", true, 0}, CrashCase{"keep", "resume", true, 0},
        CrashCase{"keep", "activate", true, 0}, CrashCase{"consume", "create_snap", true, 0},
        CrashCase{"consume", "activate", true, 0}, CrashCase{"consume", "remove", false, 0},
        CrashCase{"consume", "remove", true, 0}, CrashCase{"consume", "delete", false, 0},
        CrashCase{"consume", "delete", true, 0}, CrashCase{"remove", "remove", false, 0},
        CrashCase{"remove", "remove", true, 0}, CrashCase{"remove", "delete", false, 0},
        CrashCase{"remove", "delete", true, 0}),
    [](const auto& info) { return CrashName(info.param); });

TEST(DevmapperRegistryTest, TwoArgumentNewDriverNeedsAPool) {
  auto driver = drivers::NewDriver("devmapper", "/tmp/strata-dm-registry");
  EXPECT_EQ(driver.status().code(), absl::StatusCode::kFailedPrecondition) << driver.status();
}

}  // namespace
}  // namespace strata
