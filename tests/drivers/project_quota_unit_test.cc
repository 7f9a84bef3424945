// Overlay and vfs capacity through project quotas (drivers/project_quota.h), with a fake
// ProjectQuota: which directory gets which project and limit, when, and what usage and
// expansion read and write. The same drivers on real xfs and ext4 with quotas run in the dm-vm
// guest (tests/drivers/quota_kernel_test.cc); this kernel has no quota support.

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <map>
#include <memory>
#include <string>

#include "drivers/copy_tree.h"
#include "drivers/overlay/overlay_driver.h"
#include "drivers/project_quota.h"
#include "drivers/vfs/vfs_driver.h"
#include "gtest/gtest.h"

namespace strata::drivers {
namespace {

class FakeProjectQuota : public ProjectQuota {
 public:
  explicit FakeProjectQuota(bool enforced) : enforced_(enforced) {}

  QuotaSupport Probe(const std::string&) override {
    return enforced_ ? QuotaSupport{true, ""} : QuotaSupport{false, "fake: no quotas"};
  }
  absl::Status AssignProject(const std::string& path, uint32_t project_id) override {
    projects[path] = project_id;
    entries_when_assigned[path] = CountEntries(path);
    return absl::OkStatus();
  }
  absl::StatusOr<uint32_t> ProjectOf(const std::string& path) override {
    auto it = projects.find(path);
    return it == projects.end() ? 0u : it->second;
  }
  absl::Status SetLimit(const std::string&, uint32_t project_id, int64_t limit_bytes) override {
    if (projects_limited_before_assign.count(project_id) == 0) {
      bool assigned = false;
      for (const auto& [path, id] : projects) assigned = assigned || id == project_id;
      projects_limited_before_assign[project_id] = !assigned;
    }
    limits[project_id] = limit_bytes;
    return absl::OkStatus();
  }
  absl::StatusOr<Usage> GetUsage(const std::string&, uint32_t project_id) override {
    return usage[project_id];
  }

  static int CountEntries(const std::string& path) {
    int count = 0;
    if (DIR* d = opendir(path.c_str())) {
      while (dirent* e = readdir(d)) count += e->d_name[0] != '.';
      closedir(d);
    }
    return count;
  }

  std::map<std::string, uint32_t> projects;
  std::map<std::string, int> entries_when_assigned;
  std::map<uint32_t, int64_t> limits;
  std::map<uint32_t, bool> projects_limited_before_assign;
  std::map<uint32_t, Usage> usage;

 private:
  bool enforced_;
};

class ProjectQuotaDriversTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/strata-pq-XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    root_ = pattern;
  }
  void TearDown() override { (void)RemoveTree(root_); }

  // Whatever path a project was assigned to ends in "/<id>" or "/.tmp-<id>"-like temp names
  // that are renamed into place: find the one for `project`.
  int Assignments(const FakeProjectQuota& fake, uint32_t project) {
    int count = 0;
    for (const auto& [path, id] : fake.projects) count += id == project;
    return count;
  }

  std::string root_;
};

TEST(ProjectIdFor, Base36IdsMapAboveTwoToTheThirtyWithoutCollisions) {
  EXPECT_EQ(*ProjectIdFor("0"), uint32_t{1} << 30);
  EXPECT_EQ(*ProjectIdFor("1"), (uint32_t{1} << 30) + 1);
  EXPECT_EQ(*ProjectIdFor("z"), (uint32_t{1} << 30) + 35);
  EXPECT_EQ(*ProjectIdFor("10"), (uint32_t{1} << 30) + 36);
  EXPECT_FALSE(ProjectIdFor("").ok());
  EXPECT_FALSE(ProjectIdFor("Vol").ok());           // not base 36 lowercase
  EXPECT_FALSE(ProjectIdFor("zzzzzzzzzzzz").ok());  // too large for 32 bits
}

TEST_F(ProjectQuotaDriversTest, OverlayLimitsTheActiveBeforeUpperAndWorkExist) {
  auto fake = std::make_shared<FakeProjectQuota>(true);
  OverlayDriverOptions options;
  options.project_quota = fake;
  auto driver = OverlayDriver::Create(root_, options);
  ASSERT_TRUE(driver.ok()) << driver.status();
  EXPECT_TRUE((*driver)->limits().enforces_capacity);
  EXPECT_TRUE((*driver)->limits().thin_provisioned);

  ASSERT_TRUE((*driver)->Prepare("a1", {}, {8 << 20}).ok());
  const uint32_t project = *ProjectIdFor("a1");
  EXPECT_EQ(fake->limits[project], 8 << 20);
  EXPECT_TRUE(fake->projects_limited_before_assign[project]);
  ASSERT_EQ(Assignments(*fake, project), 1);
  // Assigned on the (temp) active directory while it was empty: upper and work inherit.
  for (const auto& [path, id] : fake->projects) {
    if (id == project) {
      EXPECT_EQ(fake->entries_when_assigned[path], 0) << path;
    }
  }
  // The driver asks the directory now in place: make the fake's record follow the rename.
  fake->projects[(*driver)->ActivePath("a1")] = project;

  fake->usage[project] = Usage{12345, 7};
  auto usage = (*driver)->GetUsage("a1");
  ASSERT_TRUE(usage.ok()) << usage.status();
  EXPECT_EQ(usage->bytes, 12345);
  EXPECT_EQ(usage->inodes, 7);

  auto expanded = (*driver)->Expand("a1", 32 << 20, "");
  ASSERT_TRUE(expanded.ok()) << expanded.status();
  EXPECT_TRUE(*expanded);
  EXPECT_EQ(fake->limits[project], 32 << 20);

  ASSERT_TRUE((*driver)->Remove("a1").ok());
  EXPECT_EQ(fake->limits[project], 0);  // released
}

TEST_F(ProjectQuotaDriversTest, OverlayWithoutCapacityOrQuotasMakesNoProject) {
  auto fake = std::make_shared<FakeProjectQuota>(true);
  OverlayDriverOptions options;
  options.project_quota = fake;
  auto driver = OverlayDriver::Create(root_, options);
  ASSERT_TRUE(driver.ok());
  ASSERT_TRUE((*driver)->Prepare("b1", {}, {}).ok());  // capacity 0: unlimited
  EXPECT_TRUE(fake->projects.empty());
  EXPECT_TRUE(fake->limits.empty());
  ASSERT_TRUE((*driver)->Expand("b1", 1 << 20, "").ok());  // nothing to raise: recorded only
  EXPECT_TRUE(fake->limits.empty());

  auto off = std::make_shared<FakeProjectQuota>(false);
  options.project_quota = off;
  auto plain = OverlayDriver::Create(root_ + "/other", options);
  ASSERT_TRUE(plain.ok());
  EXPECT_FALSE((*plain)->limits().enforces_capacity);
  EXPECT_FALSE((*plain)->limits().thin_provisioned);
  ASSERT_TRUE((*plain)->Prepare("c1", {}, {8 << 20}).ok());
  EXPECT_TRUE(off->projects.empty());
  EXPECT_TRUE(off->limits.empty());
  // Usage is the walk of the upper, as without quotas.
  auto usage = (*plain)->GetUsage("c1");
  ASSERT_TRUE(usage.ok());
  EXPECT_EQ(usage->inodes, 1);
}

TEST_F(ProjectQuotaDriversTest, VfsChargesTheCopiedTreeToTheVolumesProject) {
  auto fake = std::make_shared<FakeProjectQuota>(true);
  auto driver = VfsDriver::Create(root_, fake);
  ASSERT_TRUE(driver.ok());
  EXPECT_TRUE((*driver)->limits().enforces_capacity);
  ASSERT_TRUE((*driver)->Prepare("l1", {}, {}).ok());
  ASSERT_TRUE((*driver)->Commit("l2", "l1", {}, CommitMode::kConsume).ok());  // a layer, no project
  EXPECT_TRUE(fake->projects.empty());
  ASSERT_TRUE((*driver)->Prepare("v1", {"l2"}, {16 << 20}).ok());
  const uint32_t project = *ProjectIdFor("v1");
  EXPECT_EQ(fake->limits[project], 16 << 20);
  EXPECT_TRUE(fake->projects_limited_before_assign[project]);
  EXPECT_EQ(Assignments(*fake, project), 1);
  fake->projects[(*driver)->TreePath("v1")] = project;
  ASSERT_TRUE((*driver)->Expand("v1", 64 << 20, "").ok());
  EXPECT_EQ(fake->limits[project], 64 << 20);
  ASSERT_TRUE((*driver)->Remove("v1").ok());
  EXPECT_EQ(fake->limits[project], 0);
}

}  // namespace
}  // namespace strata::drivers
