#pragma once
// Project quotas: how overlay and vfs enforce a volume's capacity, as Docker's overlay2 does
// with its `size` option. Each active snapshot's directory gets its own project id with
// PROJINHERIT (so everything created below it, overlayfs' copy-ups included, is charged to it)
// and a hard block limit; writes past it fail with EDQUOT (ext4) or ENOSPC (xfs). Works where the
// filesystem enforces project quotas: xfs mounted with `prjquota`/`pquota`, ext4 with the `project`
// and `quota` features mounted with `prjquota`. The kernel interface is quotactl_fd(2) (Linux
// >= 5.14) and FS_IOC_FSSETXATTR; a kernel without quota support (CONFIG_QUOTA off) reports "not
// enforced".
//
// ProjectQuota is the seam: the drivers take one, tests on a kernel without quotas use a fake.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "drivers/driver.h"

namespace strata::drivers {

struct QuotaSupport {
  bool enforced = false;
  std::string reason;  // why not, in words an admin can act on ("" when enforced)
};

class ProjectQuota {
 public:
  virtual ~ProjectQuota() = default;
  // Whether the filesystem holding directory `dir` enforces project quotas.
  virtual QuotaSupport Probe(const std::string& dir) = 0;
  // Sets project `project_id` with PROJINHERIT on directory `path` and on every directory and
  // regular file below it (other file types hold no blocks and are left). Never follows a
  // symlink, never opens a special file.
  virtual absl::Status AssignProject(const std::string& path, uint32_t project_id) = 0;
  // The project id of `path` (0: none).
  virtual absl::StatusOr<uint32_t> ProjectOf(const std::string& path) = 0;
  // Hard (and soft) block limit of `project_id` on the filesystem of `path`, in bytes rounded
  // up to KiB; 0 removes the limit.
  virtual absl::Status SetLimit(const std::string& path, uint32_t project_id,
                                int64_t limit_bytes) = 0;
  // What `project_id` uses on the filesystem of `path`: bytes and inodes, exact and current.
  virtual absl::StatusOr<Usage> GetUsage(const std::string& path, uint32_t project_id) = 0;
};

// What overlay and vfs share: one project per active snapshot directory, made when the
// snapshot is prepared with a capacity on a store that enforces project quotas.
class DirectoryQuotas {
 public:
  // Probes `home` (the driver's directory) once and logs what it found, so start-up says
  // whether capacity is enforced and, if not, why. `quota` null: the kernel's.
  DirectoryQuotas(std::shared_ptr<ProjectQuota> quota, std::string home, std::string driver);

  bool enforced() const { return support_.enforced; }
  const QuotaSupport& support() const { return support_; }

  // Gives directory `dir` (active `id`'s, before it is renamed into place) and everything in it
  // id's project and a limit of `capacity_bytes`. No-op with capacity 0 or without enforcement.
  absl::Status Limit(const std::string& dir, const std::string& id, int64_t capacity_bytes);
  // Whether `dir` carries id's project (it was limited by Limit).
  absl::StatusOr<bool> Owns(const std::string& dir, const std::string& id);
  // The project's usage when `dir` carries id's project, else nullopt (the caller walks).
  absl::StatusOr<std::optional<Usage>> UsageOf(const std::string& dir, const std::string& id);
  // A larger limit for `dir`'s project; OK and nothing done when `dir` has none (made without
  // a capacity, or before the store enforced: then capacity is only recorded).
  absl::Status Raise(const std::string& dir, const std::string& id, int64_t capacity_bytes);
  // Drops id's limit once its directory is gone (project ids are never reused). Best effort.
  void Release(const std::string& id);

 private:
  std::shared_ptr<ProjectQuota> quota_;
  std::string home_;
  QuotaSupport support_;
};

// The kernel's project quotas.
std::unique_ptr<ProjectQuota> NewLinuxProjectQuota();

// The project id Strata uses for driver id `id` (lowercase base 36, as Metadata::NewDriverId
// makes them): 2^30 + its value, so ids never collide and stay clear of the small ids admins
// hand out by hand. InvalidArgument when `id` is not base 36 or too large (> 2^30 - 1).
absl::StatusOr<uint32_t> ProjectIdFor(const std::string& id);

}  // namespace strata::drivers
