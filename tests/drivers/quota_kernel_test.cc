// Overlay and vfs capacity through real project quotas (drivers/project_quota.h), on loop-file
// xfs mounted with prjquota and ext4 made with -O quota,project and mounted with prjquota.
// The build host's kernel has no quota support, so tools/dm-vm/run.sh runs this binary inside
// the QEMU guest with Debian's kernel (STRATA_REQUIRE_QUOTAS=1 there turns every skip into a
// failure); elsewhere the tests skip and say why.
//
// The writer is pod-like: a child process without CAP_SYS_RESOURCE (ext4 lets that capability
// ignore hard limits) writing through the mounted volume until the kernel refuses: EDQUOT on
// ext4, ENOSPC on xfs (xfs answers a full project, a directory tree quota, as a full disk).

#include <fcntl.h>
#include <linux/capability.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "drivers/copy_tree.h"
#include "drivers/overlay/overlay_driver.h"
#include "drivers/project_quota.h"
#include "drivers/vfs/vfs_driver.h"
#include "gtest/gtest.h"
#include "sys/mounter.h"
#include "tests/drivers/loop_filesystem.h"

namespace strata::drivers {
namespace {

constexpr int64_t kMiB = int64_t{1} << 20;
constexpr int64_t kLowerFileBytes = 2 * kMiB;  // in the image; the writer copies it up
constexpr int64_t kCapacity = 16 * kMiB;
constexpr int64_t kExpanded = 32 * kMiB;
// Directories, the overlay's work dir and the filesystem's own rounding: what a limit may hold
// besides what the writer wrote.
constexpr int64_t kSlack = 2 * kMiB;

struct QuotaCase {
  std::string filesystem;  // "xfs" or "ext4"
  std::string driver;      // "overlay" or "vfs"
};

std::string CaseName(const ::testing::TestParamInfo<QuotaCase>& info) {
  return info.param.driver + "_on_" + info.param.filesystem;
}

// What a writer child reports: how far it got and why it stopped.
struct WriteResult {
  int64_t written = 0;
  int error = 0;  // errno of the failing write (or fsync/close), 0 if it reached `limit`
};

// Drops CAP_SYS_RESOURCE from the calling process (a pod's container has none).
bool DropSysResource() {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  if (syscall(SYS_capget, &header, data) != 0) return false;
  data[CAP_SYS_RESOURCE / 32].effective &= ~(1u << (CAP_SYS_RESOURCE % 32));
  data[CAP_SYS_RESOURCE / 32].permitted &= ~(1u << (CAP_SYS_RESOURCE % 32));
  data[CAP_SYS_RESOURCE / 32].inheritable &= ~(1u << (CAP_SYS_RESOURCE % 32));
  return syscall(SYS_capset, &header, data) == 0;
}

// In a child without CAP_SYS_RESOURCE: optionally appends a byte to `append_to` (an overlay
// copy-up of the whole lower file), then writes 256 KiB chunks to `path` (created) until a
// write fails or `limit` bytes are written, and fsyncs.
WriteResult WriteAsPod(const std::string& path, const std::string& append_to, int64_t limit) {
  int pipe_fds[2];
  if (pipe(pipe_fds) != 0) return {0, errno};
  pid_t child = fork();
  if (child == 0) {
    close(pipe_fds[0]);
    WriteResult result;
    if (!DropSysResource()) {
      result.error = errno == 0 ? EPERM : errno;
    } else {
      if (!append_to.empty()) {
        int fd = open(append_to.c_str(), O_WRONLY | O_APPEND);
        if (fd < 0 || write(fd, "x", 1) != 1) result.error = errno;
        if (fd >= 0) close(fd);
      }
      int fd = result.error == 0 ? open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644) : -1;
      if (fd < 0 && result.error == 0) result.error = errno;
      std::vector<char> chunk(256 * 1024, 'q');
      while (fd >= 0 && result.written < limit) {
        ssize_t n = write(fd, chunk.data(), chunk.size());
        if (n < 0) {
          result.error = errno;
          break;
        }
        result.written += n;
        if (n < static_cast<ssize_t>(chunk.size())) continue;  // short: the next one fails
      }
      if (fd >= 0 && fsync(fd) != 0 && result.error == 0) result.error = errno;
      if (fd >= 0 && close(fd) != 0 && result.error == 0) result.error = errno;
    }
    (void)!write(pipe_fds[1], &result, sizeof(result));
    _exit(0);
  }
  close(pipe_fds[1]);
  WriteResult result;
  if (child < 0 || read(pipe_fds[0], &result, sizeof(result)) != sizeof(result)) {
    result.error = -1;
  }
  close(pipe_fds[0]);
  if (child > 0) waitpid(child, nullptr, 0);
  return result;
}

bool RequireQuotas() {
  const char* value = std::getenv("STRATA_REQUIRE_QUOTAS");
  return value != nullptr && std::string(value) == "1";
}

class QuotaKernelTest : public ::testing::TestWithParam<QuotaCase> {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (loop mounts, quotas)";
    const QuotaCase& param = GetParam();
    // xfs needs 300 MiB at least; ext4's project feature needs 256-byte inodes, which mke2fs
    // does not pick for a filesystem this small.
    auto fs = param.filesystem == "xfs"
                  ? testing::LoopFilesystem::Create("mkfs.xfs -q -f", 320 * kMiB, "prjquota")
                  : testing::LoopFilesystem::Create("mkfs.ext4 -q -F -I 256 -O quota,project",
                                                    128 * kMiB, "prjquota");
    if (!fs.ok()) {
      if (RequireQuotas()) FAIL() << fs.status();
      GTEST_SKIP() << fs.status();
    }
    fs_ = std::move(*fs);
    root_ = fs_->mount_point() + "/strata";
    ASSERT_EQ(mkdir(root_.c_str(), 0755), 0);
    StartDriver();
    if (!driver_->limits().enforces_capacity) {
      QuotaSupport support = NewLinuxProjectQuota()->Probe(fs_->mount_point());
      if (RequireQuotas()) FAIL() << "project quotas not enforced: " << support.reason;
      GTEST_SKIP() << "project quotas not enforced here: " << support.reason;
    }
    mounter_ = sys::NewLinuxMounter();
  }

  void TearDown() override {
    for (auto it = targets_.rbegin(); it != targets_.rend(); ++it) {
      while (mounter_ && mounter_->IsMountPoint(*it).value_or(false)) {
        if (!mounter_->Unmount(*it, /*detach=*/true).ok()) break;
      }
    }
    driver_.reset();
    fs_.reset();
  }

  // A fresh driver object on the same store: what a restart of the plugin sees.
  void StartDriver() {
    driver_.reset();
    if (GetParam().driver == "overlay") {
      auto driver = OverlayDriver::Create(root_, {});
      ASSERT_TRUE(driver.ok()) << driver.status();
      driver_ = std::move(*driver);
    } else {
      auto driver = VfsDriver::Create(root_);
      ASSERT_TRUE(driver.ok()) << driver.status();
      driver_ = std::move(*driver);
    }
  }

  // Layer `layer_id` holding lower.bin (kLowerFileBytes), made through active `scratch_id`.
  void MakeImageLayer(const std::string& scratch_id, const std::string& layer_id) {
    ASSERT_TRUE(driver_->Prepare(scratch_id, {}, {}).ok());
    auto target = driver_->DirectWriteTarget(scratch_id);
    ASSERT_TRUE(target.ok()) << target.status();
    const std::string file = target->directory + "/lower.bin";
    int fd = open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ASSERT_GE(fd, 0) << std::strerror(errno);
    std::vector<char> data(kLowerFileBytes, 'l');
    ASSERT_EQ(write(fd, data.data(), data.size()), static_cast<ssize_t>(data.size()));
    ASSERT_EQ(close(fd), 0);
    ASSERT_TRUE(driver_->Commit(layer_id, scratch_id, {}, CommitMode::kConsume).ok());
  }

  std::string Mount(const std::string& id, const Chain& parents) {
    auto mounts = driver_->Mounts(id, parents);
    EXPECT_TRUE(mounts.ok()) << mounts.status();
    if (!mounts.ok()) return "";
    std::string target = absl::StrCat(fs_->mount_point(), "/mnt", targets_.size());
    EXPECT_EQ(mkdir(target.c_str(), 0755), 0);
    targets_.push_back(target);
    for (const sys::Mount& mount : *mounts) {
      absl::Status mounted = mounter_->MountAt(mount, target);
      EXPECT_TRUE(mounted.ok()) << mounted;
    }
    return target;
  }

  // What a write past the limit fails with on this filesystem.
  int LimitErrno() const { return GetParam().filesystem == "xfs" ? ENOSPC : EDQUOT; }

  // The kernel's own figure for `id`'s project, after a syncfs (delayed allocations counted).
  Usage QuotaUsage(const std::string& id) {
    int fd = open(fs_->mount_point().c_str(), O_RDONLY | O_DIRECTORY);
    EXPECT_GE(fd, 0);
    if (fd >= 0) {
      EXPECT_EQ(syncfs(fd), 0);
      close(fd);
    }
    auto project = ProjectIdFor(id);
    EXPECT_TRUE(project.ok()) << project.status();
    auto usage = NewLinuxProjectQuota()->GetUsage(fs_->mount_point(), *project);
    EXPECT_TRUE(usage.ok()) << usage.status();
    return usage.ok() ? *usage : Usage{};
  }

  std::unique_ptr<testing::LoopFilesystem> fs_;
  std::string root_;
  std::unique_ptr<Driver> driver_;
  std::unique_ptr<sys::Mounter> mounter_;
  std::vector<std::string> targets_;
};

TEST_P(QuotaKernelTest, PodWriterHitsEdquotAtCapacityAndExpansionLetsItWriteFurther) {
  MakeImageLayer("a1", "a2");
  const Chain parents = {"a2"};
  ASSERT_TRUE(driver_->Prepare("a3", parents, {kCapacity}).ok());
  const std::string volume = Mount("a3", parents);
  ASSERT_FALSE(volume.empty());

  // Copies lower.bin up (overlay) and fills the rest: the project holds the image's file too
  // (vfs copied it, overlay copies it up), so the writer gets what is left of the capacity.
  WriteResult first = WriteAsPod(volume + "/fill", volume + "/lower.bin", 2 * kCapacity);
  EXPECT_EQ(first.error, LimitErrno()) << std::strerror(first.error) << " after " << first.written;
  EXPECT_LE(first.written + kLowerFileBytes, kCapacity);
  EXPECT_GE(first.written + kLowerFileBytes, kCapacity - kSlack);

  // Stats: what the driver reports for the volume is the kernel's project usage, and it covers
  // what the writer wrote plus the copied file.
  auto usage = driver_->GetUsage("a3");
  ASSERT_TRUE(usage.ok()) << usage.status();
  Usage kernel = QuotaUsage("a3");
  EXPECT_EQ(usage->bytes, kernel.bytes);
  EXPECT_EQ(usage->inodes, kernel.inodes);
  EXPECT_GE(usage->bytes, first.written + kLowerFileBytes);
  EXPECT_LE(usage->bytes, kCapacity);

  // Online expansion: the mounted volume takes more at once, up to the new capacity.
  auto expanded = driver_->Expand("a3", kExpanded, volume);
  ASSERT_TRUE(expanded.ok()) << expanded.status();
  EXPECT_TRUE(*expanded);
  WriteResult second = WriteAsPod(volume + "/fill2", "", 2 * kExpanded);
  EXPECT_EQ(second.error, LimitErrno())
      << std::strerror(second.error) << " after " << second.written;
  EXPECT_GE(second.written, kExpanded - kCapacity - kSlack);
  EXPECT_LE(first.written + second.written + kLowerFileBytes, kExpanded);

  usage = driver_->GetUsage("a3");
  ASSERT_TRUE(usage.ok()) << usage.status();
  EXPECT_EQ(usage->bytes, QuotaUsage("a3").bytes);
  EXPECT_GE(usage->bytes, first.written + second.written + kLowerFileBytes);
  EXPECT_LE(usage->bytes, kExpanded);

  // The lower layer itself is not charged to the volume and stays as it was.
  struct stat lower;
  ASSERT_EQ(stat((volume + "/lower.bin").c_str(), &lower), 0);
  EXPECT_EQ(lower.st_size, kLowerFileBytes + 1);
}

TEST_P(QuotaKernelTest, LimitSurvivesARestartAndAFullVolumeCanStillBeSnapshotted) {
  ASSERT_TRUE(driver_->Prepare("b1", {}, {kCapacity}).ok());
  std::string volume = Mount("b1", {});
  WriteResult fill = WriteAsPod(volume + "/fill", "", 2 * kCapacity);
  EXPECT_EQ(fill.error, LimitErrno()) << std::strerror(fill.error);

  // A new driver object (a plugin restart) finds the project again: stats from the quota,
  // expansion raises it.
  StartDriver();
  auto usage = driver_->GetUsage("b1");
  ASSERT_TRUE(usage.ok()) << usage.status();
  EXPECT_EQ(usage->bytes, QuotaUsage("b1").bytes);
  EXPECT_GE(usage->bytes, fill.written);

  // A snapshot of the full volume (a commit that keeps it in use) is not charged to it.
  ASSERT_TRUE(driver_->Commit("b2", "b1", {}, CommitMode::kKeep).ok());
  auto layer = driver_->GetUsage("b2");
  ASSERT_TRUE(layer.ok()) << layer.status();
  EXPECT_GE(layer->bytes, fill.written);
  EXPECT_EQ(QuotaUsage("b1").bytes, usage->bytes);

  // Still full until expanded; then it writes further.
  WriteResult refused = WriteAsPod(volume + "/more", "", kMiB);
  EXPECT_EQ(refused.error, LimitErrno()) << std::strerror(refused.error);
  ASSERT_TRUE(driver_->Expand("b1", kExpanded, volume).ok());
  WriteResult more = WriteAsPod(volume + "/more", "", 4 * kMiB);
  EXPECT_EQ(more.error, 0) << std::strerror(more.error);
  EXPECT_EQ(more.written, 4 * kMiB);

  // Removing the volume frees what its project held.
  ASSERT_TRUE(mounter_->Unmount(volume).ok());
  ASSERT_TRUE(driver_->Remove("b1").ok());
  // xfs frees a removed inode in the background (inodegc) and only then gives its blocks back
  // to the quota; syncfs does not wait for it. Measured in the guest: gone within 250 ms.
  int64_t left = QuotaUsage("b1").bytes;
  for (int waited_ms = 0; left != 0 && waited_ms < 10000; waited_ms += 50) {
    usleep(50 * 1000);
    left = QuotaUsage("b1").bytes;
  }
  EXPECT_EQ(left, 0);
}

TEST_P(QuotaKernelTest, VolumeWithoutCapacityIsNotLimited) {
  ASSERT_TRUE(driver_->Prepare("c1", {}, {}).ok());
  std::string volume = Mount("c1", {});
  WriteResult fill = WriteAsPod(volume + "/fill", "", kCapacity + 4 * kMiB);
  EXPECT_EQ(fill.error, 0) << std::strerror(fill.error);
  EXPECT_EQ(fill.written, kCapacity + 4 * kMiB);
  auto usage = driver_->GetUsage("c1");
  ASSERT_TRUE(usage.ok()) << usage.status();
  EXPECT_GE(usage->bytes, kCapacity + 4 * kMiB);  // walked: no project of its own
}

INSTANTIATE_TEST_SUITE_P(ProjectQuotas, QuotaKernelTest,
                         ::testing::Values(QuotaCase{"xfs", "overlay"},
                                           QuotaCase{"ext4", "overlay"}, QuotaCase{"xfs", "vfs"},
                                           QuotaCase{"ext4", "vfs"}),
                         CaseName);

}  // namespace
}  // namespace strata::drivers
