#include "tests/drivers/loop_filesystem.h"

#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace strata::testing {
namespace {

bool OnPath(const char* program) {
  return RunCommand(absl::StrCat("command -v ", program, " >/dev/null 2>&1")).ok();
}

}  // namespace

absl::Status RunCommand(const std::string& command) {
  std::string output;
  FILE* pipe = popen(("(" + command + ") 2>&1").c_str(), "r");
  if (pipe == nullptr) return absl::InternalError("popen failed: " + command);
  char buffer[512];
  size_t n;
  while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) output.append(buffer, n);
  int status = pclose(pipe);
  if (status != 0) {
    return absl::InternalError(absl::StrCat("`", command, "` failed (", status, "): ", output));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<LoopFilesystem>> LoopFilesystem::Create(
    const std::string& mkfs, int64_t size_bytes, const std::string& mount_options) {
  if (geteuid() != 0) return absl::FailedPreconditionError("needs root (loop mounts)");
  const std::string program = mkfs.substr(0, mkfs.find(' '));
  if (!OnPath(program.c_str())) {
    return absl::FailedPreconditionError(program + " not found (btrfs-progs, xfsprogs, e2fsprogs)");
  }
  if (access("/dev/loop-control", F_OK) != 0) {
    return absl::FailedPreconditionError("no loop devices (/dev/loop-control missing)");
  }
  char dir[] = "/var/tmp/strata-loopfs-XXXXXX";
  if (mkdtemp(dir) == nullptr) return absl::InternalError("mkdtemp failed");
  const std::string image = std::string(dir) + "/img", mount_point = std::string(dir) + "/mnt";
  absl::Status status = RunCommand(absl::StrCat("truncate -s ", size_bytes, " ", image, " && ",
                                                mkfs, " ", image, " && mkdir ", mount_point));
  if (status.ok()) {
    status = RunCommand(absl::StrCat("mount -o loop", mount_options.empty() ? "" : ",",
                                     mount_options, " ", image, " ", mount_point));
    if (!status.ok()) {
      status = absl::FailedPreconditionError("cannot loop-mount a " + program +
                                             " image here: " + std::string(status.message()));
    }
  }
  unlink(image.c_str());  // the loop device keeps it open; space goes when it is detached
  if (!status.ok()) {
    rmdir(mount_point.c_str());
    rmdir(dir);
    return status;
  }
  return std::unique_ptr<LoopFilesystem>(new LoopFilesystem(dir, mount_point));
}

LoopFilesystem::~LoopFilesystem() {
  // The loop device was set up with autoclear by mount(8): unmounting detaches it.
  if (umount2(mount_point_.c_str(), 0) != 0 && errno == EBUSY) {
    umount2(mount_point_.c_str(), MNT_DETACH);
  }
  rmdir(mount_point_.c_str());
  rmdir(dir_.c_str());
}

absl::Status LoopFilesystem::EnableQuotas() {
  return RunCommand(absl::StrCat("btrfs quota enable ", mount_point_, " && btrfs quota rescan -w ",
                                 mount_point_));
}

namespace {

std::mutex shared_mutex;
std::unique_ptr<LoopBtrfs>* shared_fs = nullptr;  // guarded by shared_mutex
absl::Status* shared_error = nullptr;             // guarded by shared_mutex

class SharedBtrfsEnvironment : public ::testing::Environment {
 public:
  void TearDown() override {
    std::lock_guard<std::mutex> lock(shared_mutex);
    if (shared_fs != nullptr) shared_fs->reset();
  }
};

::testing::Environment* const environment =
    ::testing::AddGlobalTestEnvironment(new SharedBtrfsEnvironment);

}  // namespace

absl::StatusOr<std::string> SharedBtrfsMountPoint() {
  std::lock_guard<std::mutex> lock(shared_mutex);
  if (shared_error != nullptr) return *shared_error;
  if (shared_fs == nullptr) shared_fs = new std::unique_ptr<LoopBtrfs>();
  if (*shared_fs == nullptr) {
    auto made = LoopBtrfs::Create();
    if (!made.ok()) {
      shared_error = new absl::Status(made.status());  // say it once, skip every test the same
      return made.status();
    }
    *shared_fs = std::move(*made);
  }
  return (*shared_fs)->mount_point();
}

}  // namespace strata::testing
