#pragma once
// The vfs driver: every layer and active snapshot is a complete tree, <strata root>/vfs/<id>.
// Works on any filesystem and needs no overlay support; costs a full copy per Prepare and per
// kKeep commit. Mounts are plain binds.

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "drivers/driver.h"
#include "drivers/project_quota.h"

namespace strata::drivers {

class VfsDriver : public Driver {
 public:
  // Chains cost nothing at mount time (only the top tree is mounted); this is only a sanity cap.
  static constexpr int kMaxChainDepth = 1 << 20;

  // `strata_root` is Strata's --root; content lives in <strata_root>/vfs.
  // `project_quota` null: the kernel's (drivers/project_quota.h); tests pass a fake.
  static absl::StatusOr<std::unique_ptr<VfsDriver>> Create(
      const std::string& strata_root, std::shared_ptr<ProjectQuota> project_quota = nullptr);

  std::string_view name() const override { return "vfs"; }
  DriverLimits limits() const override;

  // Copies the top parent's tree (empty parents: an empty directory, mode 0755). With a
  // capacity on a store with project quotas the tree gets its own project and hard limit (the
  // copied image counts, as on a block device of that size).
  absl::Status Prepare(const std::string& id, const Chain& parents,
                       const PrepareOptions& options) override;
  // A read-write bind of the snapshot's tree.
  absl::StatusOr<std::vector<sys::Mount>> Mounts(const std::string& id,
                                                 const Chain& parents) override;
  // A read-only bind of chain[0]'s tree.
  absl::StatusOr<std::vector<sys::Mount>> View(const Chain& chain) override;
  absl::StatusOr<ApplyTarget> DirectWriteTarget(const std::string& id) override;
  // kConsume renames the tree; kKeep copies it (not atomic against concurrent writers).
  absl::Status Commit(const std::string& layer_id, const std::string& id, const Chain& parents,
                      CommitMode mode) override;
  absl::Status Remove(const std::string& id) override;
  absl::StatusOr<bool> Expand(const std::string& id, int64_t capacity_bytes,
                              const std::string& mount_point) override;
  // Bytes are allocated blocks (st_blocks * 512) of the whole tree: vfs layers share nothing.
  absl::StatusOr<Usage> GetUsage(const std::string& id) override;
  absl::StatusOr<std::vector<std::string>> Walk() override;
  absl::StatusOr<bool> Exists(const std::string& id) override;
  absl::StatusOr<int64_t> FreeBytes() override;
  absl::StatusOr<int64_t> TotalBytes() override;
  absl::StatusOr<ContentKind> Quarantine(const std::string& id, const std::string& dest) override;
  absl::Status Unquarantine(const std::string& dest, ContentKind kind,
                            const std::string& id) override;
  absl::Status PurgeQuarantined(const std::string& dest) override;

  std::string TreePath(const std::string& id) const { return home_ + "/" + id; }

 private:
  explicit VfsDriver(std::string home) : home_(std::move(home)) {}

  const std::string home_;  // <strata root>/vfs
  std::unique_ptr<DirectoryQuotas> quotas_;
};

}  // namespace strata::drivers
