#include "drivers/project_quota.h"

#include <fcntl.h>
#include <ftw.h>
#include <linux/dqblk_xfs.h>
#include <linux/fs.h>
#include <linux/quota.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/errno_status.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "common/unique_fd.h"

#ifndef SYS_quotactl_fd
#define SYS_quotactl_fd 443  // x86_64, Linux 5.14
#endif

namespace strata::drivers {
namespace {

constexpr uint32_t kProjectBase = uint32_t{1} << 30;

absl::StatusOr<std::unique_ptr<UniqueFd>> OpenDirectory(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, "open", path);
  return std::make_unique<UniqueFd>(fd);
}

long QuotactlFd(int fd, int command, uint32_t id, void* data) {
  return syscall(SYS_quotactl_fd, fd, QCMD(command, PRJQUOTA), id, data);
}

// Sets the project on one open file or directory (its own inode only).
absl::Status SetProjectOn(int fd, uint32_t project_id, bool inherit, const char* path) {
  struct fsxattr attributes;
  if (ioctl(fd, FS_IOC_FSGETXATTR, &attributes) != 0)
    return ErrnoStatus(errno, "FS_IOC_FSGETXATTR", path);
  attributes.fsx_projid = project_id;
  if (inherit) attributes.fsx_xflags |= FS_XFLAG_PROJINHERIT;
  if (ioctl(fd, FS_IOC_FSSETXATTR, &attributes) != 0)
    return ErrnoStatus(errno, "FS_IOC_FSSETXATTR", path);
  return absl::OkStatus();
}

// nftw has no user pointer: one walk at a time per thread.
thread_local uint32_t walk_project = 0;
thread_local absl::Status* walk_status = nullptr;

int AssignOne(const char* path, const struct stat* st, int type, struct FTW*) {
  if (type != FTW_F && type != FTW_D) return 0;  // symlinks (FTW_PHYS), unreadable dirs: left
  const bool directory = S_ISDIR(st->st_mode);
  if (!directory && !S_ISREG(st->st_mode)) return 0;  // devices, fifos, sockets: never opened
  int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    if (errno == ENOENT) return 0;  // vanished meanwhile
    *walk_status = ErrnoStatus(errno, "open", path);
    return 1;
  }
  UniqueFd closer(fd);
  struct stat opened;
  // Swapped for something else between the walk's lstat and the open: leave it.
  if (fstat(fd, &opened) != 0 || opened.st_ino != st->st_ino || opened.st_dev != st->st_dev)
    return 0;
  absl::Status set = SetProjectOn(fd, walk_project, directory, path);
  if (!set.ok()) {
    *walk_status = set;
    return 1;
  }
  return 0;
}

class LinuxProjectQuota : public ProjectQuota {
 public:
  QuotaSupport Probe(const std::string& dir) override {
    QuotaSupport support;
    absl::StatusOr<std::unique_ptr<UniqueFd>> fd = OpenDirectory(dir);
    if (!fd.ok()) {
      support.reason = std::string(fd.status().message());
      return support;
    }
    struct fs_quota_statv state;
    std::memset(&state, 0, sizeof(state));
    state.qs_version = FS_QSTATV_VERSION1;
    if (QuotactlFd((*fd)->get(), Q_XGETQSTATV, 0, &state) != 0) {
      const int error = errno;
      if (error == ENOSYS) {
        support.reason = "the kernel has no quota support (quotactl_fd: ENOSYS; CONFIG_QUOTA off)";
      } else if (error == ENOTSUP || error == EOPNOTSUPP || error == ESRCH || error == ENOENT) {
        support.reason = absl::StrCat(
            dir,
            "'s filesystem does not account project quotas (mount xfs with prjquota, or "
            "ext4 made with -O quota,project and mounted with prjquota): ",
            std::strerror(error));
      } else {
        support.reason =
            absl::StrCat("quotactl_fd(Q_XGETQSTATV) on ", dir, ": ", std::strerror(error));
      }
      return support;
    }
    if ((state.qs_flags & FS_QUOTA_PDQ_ENFD) == 0) {
      support.reason = absl::StrCat(dir,
                                    "'s filesystem accounts project quotas but does not enforce "
                                    "them (xfs pqnoenforce?)");
      return support;
    }
    support.enforced = true;
    return support;
  }

  absl::Status AssignProject(const std::string& path, uint32_t project_id) override {
    absl::Status status;
    walk_project = project_id;
    walk_status = &status;
    int rc = nftw(path.c_str(), AssignOne, 16, FTW_PHYS | FTW_MOUNT);
    walk_status = nullptr;
    if (!status.ok()) return status;
    if (rc != 0) return ErrnoStatus(errno, "walk", path);
    return absl::OkStatus();
  }

  absl::StatusOr<uint32_t> ProjectOf(const std::string& path) override {
    ASSIGN_OR_RETURN(std::unique_ptr<UniqueFd> fd, OpenDirectory(path));
    struct fsxattr attributes;
    if (ioctl(fd->get(), FS_IOC_FSGETXATTR, &attributes) != 0)
      return ErrnoStatus(errno, "FS_IOC_FSGETXATTR", path);
    return attributes.fsx_projid;
  }

  absl::Status SetLimit(const std::string& path, uint32_t project_id,
                        int64_t limit_bytes) override {
    if (limit_bytes < 0) return absl::InvalidArgumentError("negative quota limit");
    ASSIGN_OR_RETURN(std::unique_ptr<UniqueFd> fd, OpenDirectory(path));
    struct if_dqblk limit;
    std::memset(&limit, 0, sizeof(limit));
    const uint64_t blocks = (static_cast<uint64_t>(limit_bytes) + 1023) / 1024;  // QIF_DQBLKSIZE
    limit.dqb_bhardlimit = blocks;
    limit.dqb_bsoftlimit = blocks;
    limit.dqb_valid = QIF_BLIMITS;
    if (QuotactlFd(fd->get(), Q_SETQUOTA, project_id, &limit) != 0)
      return ErrnoStatus(errno, absl::StrCat("set the quota of project ", project_id), path);
    return absl::OkStatus();
  }

  absl::StatusOr<Usage> GetUsage(const std::string& path, uint32_t project_id) override {
    ASSIGN_OR_RETURN(std::unique_ptr<UniqueFd> fd, OpenDirectory(path));
    struct if_dqblk quota;
    std::memset(&quota, 0, sizeof(quota));
    Usage usage;
    if (QuotactlFd(fd->get(), Q_GETQUOTA, project_id, &quota) != 0) {
      // xfs keeps no record of a project with neither usage nor limits: it uses nothing.
      if (errno == ENOENT) return usage;
      return ErrnoStatus(errno, absl::StrCat("read the quota of project ", project_id), path);
    }
    usage.bytes = static_cast<int64_t>(quota.dqb_curspace);
    usage.inodes = static_cast<int64_t>(quota.dqb_curinodes);
    return usage;
  }
};

}  // namespace

DirectoryQuotas::DirectoryQuotas(std::shared_ptr<ProjectQuota> quota, std::string home,
                                 std::string driver)
    : quota_(quota ? std::move(quota) : std::shared_ptr<ProjectQuota>(NewLinuxProjectQuota())),
      home_(std::move(home)) {
  support_ = quota_->Probe(home_);
  if (support_.enforced) {
    LogInfo("project quotas enforce volume capacity", {{"driver", driver}, {"directory", home_}});
  } else {
    LogInfo("volume capacity is recorded, not enforced: no project quotas",
            {{"driver", driver}, {"directory", home_}, {"reason", support_.reason}});
  }
}

absl::Status DirectoryQuotas::Limit(const std::string& dir, const std::string& id,
                                    int64_t capacity_bytes) {
  if (capacity_bytes <= 0 || !support_.enforced) return absl::OkStatus();
  ASSIGN_OR_RETURN(uint32_t project, ProjectIdFor(id));
  // The limit first: the files are charged the moment they carry the project.
  RETURN_IF_ERROR(quota_->SetLimit(dir, project, capacity_bytes));
  return quota_->AssignProject(dir, project);
}

absl::StatusOr<bool> DirectoryQuotas::Owns(const std::string& dir, const std::string& id) {
  if (!support_.enforced) return false;
  absl::StatusOr<uint32_t> project = ProjectIdFor(id);
  if (!project.ok()) return false;  // never limited
  ASSIGN_OR_RETURN(uint32_t carried, quota_->ProjectOf(dir));
  return carried == *project;
}

absl::StatusOr<std::optional<Usage>> DirectoryQuotas::UsageOf(const std::string& dir,
                                                              const std::string& id) {
  ASSIGN_OR_RETURN(bool owns, Owns(dir, id));
  if (!owns) return std::optional<Usage>();
  ASSIGN_OR_RETURN(uint32_t project, ProjectIdFor(id));
  ASSIGN_OR_RETURN(Usage usage, quota_->GetUsage(dir, project));
  return std::optional<Usage>(usage);
}

absl::Status DirectoryQuotas::Raise(const std::string& dir, const std::string& id,
                                    int64_t capacity_bytes) {
  ASSIGN_OR_RETURN(bool owns, Owns(dir, id));
  if (!owns) return absl::OkStatus();
  ASSIGN_OR_RETURN(uint32_t project, ProjectIdFor(id));
  return quota_->SetLimit(dir, project, capacity_bytes);
}

void DirectoryQuotas::Release(const std::string& id) {
  if (!support_.enforced) return;
  absl::StatusOr<uint32_t> project = ProjectIdFor(id);
  if (!project.ok()) return;
  absl::Status cleared = quota_->SetLimit(home_, *project, 0);
  if (!cleared.ok()) {
    LogWarning("could not drop a removed snapshot's quota limit (harmless: ids are not reused)",
               {{"id", id}, {"error", cleared.ToString()}});
  }
}

std::unique_ptr<ProjectQuota> NewLinuxProjectQuota() {
  return std::make_unique<LinuxProjectQuota>();
}

absl::StatusOr<uint32_t> ProjectIdFor(const std::string& id) {
  uint64_t value = 0;
  if (id.empty()) return absl::InvalidArgumentError("empty driver id");
  for (char c : id) {
    int digit;
    if (c >= '0' && c <= '9') {
      digit = c - '0';
    } else if (c >= 'a' && c <= 'z') {
      digit = c - 'a' + 10;
    } else {
      return absl::InvalidArgumentError(absl::StrCat("driver id ", id, " is not base 36"));
    }
    value = value * 36 + static_cast<uint64_t>(digit);
    if (value >= kProjectBase) {
      return absl::InvalidArgumentError(
          absl::StrCat("driver id ", id, " is too large for a project id"));
    }
  }
  return kProjectBase + static_cast<uint32_t>(value);
}

}  // namespace strata::drivers
