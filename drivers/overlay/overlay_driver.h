#pragma once
// The overlay driver: layers are overlayfs diffs (native whiteouts), stacked at mount time.
//
// Layout under <strata root>/overlay (docs/architecture.md, docs/drivers/overlay.md):
//   layers/<id>               a layer's content directory itself. All layers are siblings, so
//                             a classic mount(2) can name them relative to layers/.
//   active/<id>/{upper,work}  an active snapshot's upperdir and overlay workdir.
//   */.tmp-<id>, */.del-<id>  half-made and half-removed entries (crash leftovers).

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "drivers/driver.h"
#include "drivers/project_quota.h"

namespace strata::drivers {

// OK when overlayfs can run for a driver keeping its content in `directory`: the kernel knows
// overlay (module loaded on demand) and `directory` is not itself on overlayfs (an upperdir
// cannot be). FailedPrecondition with the reason otherwise.
absl::Status OverlaySupported(const std::string& directory);

struct OverlayDriverOptions {
  // Whether the caller's Mounter will use classic mount(2) (kernels before 6.8, or
  // sys::LinuxMounterOptions::force_legacy_overlay), whose one page of options bounds the chain
  // depth. Unset: decided from the running kernel's version, as the LinuxMounter does.
  std::optional<bool> legacy_mount;
  // Project quotas (drivers/project_quota.h); null: the kernel's. Tests pass a fake.
  std::shared_ptr<ProjectQuota> project_quota;
};

class OverlayDriver : public Driver {
 public:
  // Kernel overlayfs' hard limit on lower layers (OVL_MAX_STACK), whatever the mount API. The
  // upperdir of an active snapshot does not count against it.
  static constexpr int kMaxLowerLayers = 500;

  // `strata_root` is Strata's --root; content lives in <strata_root>/overlay. Creates the
  // directories; does not check that overlayfs works (see OverlaySupported).
  static absl::StatusOr<std::unique_ptr<OverlayDriver>> Create(
      const std::string& strata_root, const OverlayDriverOptions& options = {});

  // The deepest chain classic mount(2) can take here whatever the ids: the lowerdir= list of
  // worst-case (32-character) ids plus upperdir= and workdir= must fit in 4095 bytes.
  int LegacyMaxChainDepth() const;

  std::string_view name() const override { return "overlay"; }
  // max_chain_depth: 500 with the new mount API, LegacyMaxChainDepth() (~110 under a 100-byte
  // root) with classic mount(2). enforces_capacity (and thin_provisioned) when the store's
  // filesystem enforces project quotas.
  DriverLimits limits() const override;

  // With a capacity on a store with project quotas, active/<id> (upper and work below it, so
  // copy-ups too) gets its own project and a hard block limit: writes past it fail with EDQUOT
  // (ext4) or ENOSPC (xfs).
  absl::Status Prepare(const std::string& id, const Chain& parents,
                       const PrepareOptions& options) override;
  // Raises the project's limit (online: the mounted overlay writes further at once).
  absl::StatusOr<bool> Expand(const std::string& id, int64_t capacity_bytes,
                              const std::string& mount_point) override;
  // No parents: a read-write bind of the upper. Else one overlay mount: "lowerdir+=" per parent
  // (topmost first), "upperdir=", "workdir=", "index=off".
  absl::StatusOr<std::vector<sys::Mount>> Mounts(const std::string& id,
                                                 const Chain& parents) override;
  // One layer: a read-only bind (overlayfs needs two lowers without an upper). More: an overlay
  // of lowers only, "ro".
  absl::StatusOr<std::vector<sys::Mount>> View(const Chain& chain) override;
  absl::StatusOr<ApplyTarget> DirectWriteTarget(const std::string& id) override;
  // kConsume renames the upper into layers/ (O(1)); kKeep syncs, copies the upper to
  // layers/.tmp-<layer_id> and renames it. Both syncfs before publishing the layer.
  absl::Status Commit(const std::string& layer_id, const std::string& id, const Chain& parents,
                      CommitMode mode) override;
  absl::Status Remove(const std::string& id) override;
  // Bytes are allocated blocks (st_blocks * 512) of the layer dir, or of an active's upper;
  // an active with a project quota reports the quota's usage (exact, what the limit checks).
  absl::StatusOr<Usage> GetUsage(const std::string& id) override;
  absl::StatusOr<std::vector<std::string>> Walk() override;
  absl::StatusOr<bool> Exists(const std::string& id) override;
  absl::StatusOr<int64_t> FreeBytes() override;
  absl::StatusOr<int64_t> TotalBytes() override;
  absl::StatusOr<ContentKind> Quarantine(const std::string& id, const std::string& dest) override;
  absl::Status Unquarantine(const std::string& dest, ContentKind kind,
                            const std::string& id) override;
  absl::Status PurgeQuarantined(const std::string& dest) override;

  std::string LayerPath(const std::string& id) const { return layers_ + "/" + id; }
  std::string ActivePath(const std::string& id) const { return active_ + "/" + id; }
  std::string UpperPath(const std::string& id) const { return ActivePath(id) + "/upper"; }
  std::string WorkPath(const std::string& id) const { return ActivePath(id) + "/work"; }

 private:
  OverlayDriver(std::string home, bool legacy_mount);
  absl::Status CheckChain(const Chain& chain, const std::string& what) const;

  const std::string home_;    // <strata root>/overlay
  const std::string layers_;  // home_/layers
  const std::string active_;  // home_/active
  const int max_chain_depth_;
  std::unique_ptr<DirectoryQuotas> quotas_;
};

}  // namespace strata::drivers
