#pragma once
// Driver: how a storage backend keeps layers, in the spirit of containerd's snapshotter.
//
// Vocabulary (fixed here, used everywhere):
//  - A *layer* is committed and read-only. Its content never changes after Commit.
//  - An *active snapshot* is a writable layer on top of a chain of layers.
//  - A *chain* lists layer ids from the top (nearest parent) down to the base layer; an empty
//    chain is the empty base.
//  - Ids are chosen by the caller (node/LayerStore): 1-32 chars of [a-z0-9], unique across
//    layers and active snapshots of one driver. Drivers reject anything else (InvalidArgument).
//
// The caller owns all metadata (parentage, names, refcounts) in one transactional store and
// passes the chain on every call that needs it; a driver stores content only, keyed by id.
// Drivers never mount: they return mounts as data (sys::Mount) and the caller's Mounter performs
// them. The caller never runs two calls for the same id at once; calls for different ids may run
// concurrently. Every call is safe to retry after a crash at any point (a retried Prepare or
// Commit whose earlier attempt half-ran cleans up and succeeds; Remove of a missing id is OK).

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "sys/mount_spec.h"

namespace strata::drivers {

using Chain = std::vector<std::string>;

// How whiteouts (deletions of lower paths) are written into a layer's own content.
enum class WhiteoutStyle {
  // The layer holds a diff: a deleted path is an overlay whiteout (0:0 char device) and an
  // opaque directory carries the xattr trusted.overlay.opaque="y".
  kOverlay,
  // The layer holds a full tree: a whiteout simply deletes the path (vfs, btrfs, devmapper).
  kApply,
};

// Where an active snapshot's content can be written without a mount (image import).
struct ApplyTarget {
  std::string directory;
  WhiteoutStyle whiteouts;
};

struct Usage {
  int64_t bytes = 0;  // bytes held by the layer or active snapshot itself (not its parents)
  int64_t inodes = 0;
};

struct DriverLimits {
  int max_chain_depth = 0;             // deepest chain Mounts/View can express
  bool layers_are_full_trees = false;  // vfs, btrfs, devmapper: no stacking at mount time
  bool enforces_capacity = false;      // capacity_bytes is a hard limit, not just recorded
  // Space is shared by every volume and allocated only as it is written (btrfs with quotas,
  // devmapper's thin pool), so promises may add up to more than the store: the
  // over-provisioning ratio (node/capacity_policy.h) decides how much more.
  bool thin_provisioned = false;
};

struct PrepareOptions {
  int64_t capacity_bytes = 0;  // 0 = unlimited
};

enum class CommitMode {
  // The active snapshot becomes the layer and is gone afterwards (import; unmounted volumes).
  // O(1) on every driver.
  kConsume,
  // The active snapshot stays as it is and keeps working (CSI snapshot of a live volume).
  // Overlay and vfs copy; btrfs and devmapper snapshot.
  kKeep,
};

// What a piece of driver content is, as far as the driver itself can tell.
enum class ContentKind {
  kLayer,    // a committed, read-only layer
  kActive,   // an active snapshot (a volume's writable layer, or scratch)
  kUnknown,  // the driver keeps both the same way (vfs)
};

class Driver {
 public:
  virtual ~Driver() = default;

  virtual std::string_view name() const = 0;
  virtual DriverLimits limits() const = 0;

  // Creates active snapshot `id` on `parents`. AlreadyExists if a complete one exists.
  virtual absl::Status Prepare(const std::string& id, const Chain& parents,
                               const PrepareOptions& options) = 0;

  // Mounts that show active snapshot `id` writable on `parents` (which must be the chain it was
  // prepared on).
  virtual absl::StatusOr<std::vector<sys::Mount>> Mounts(const std::string& id,
                                                         const Chain& parents) = 0;

  // Mounts that show `chain` read-only, with no active snapshot. Empty chain: InvalidArgument.
  virtual absl::StatusOr<std::vector<sys::Mount>> View(const Chain& chain) = 0;

  // Where the content of active snapshot `id` can be written directly, and how whiteouts must be
  // written there. Unimplemented when the driver needs the caller to mount Mounts() instead.
  virtual absl::StatusOr<ApplyTarget> DirectWriteTarget(const std::string& id) = 0;

  // Makes layer `layer_id` from active snapshot `id`: the layer's chain is `parents` and its
  // content is what `id` holds over them.
  virtual absl::Status Commit(const std::string& layer_id, const std::string& id,
                              const Chain& parents, CommitMode mode) = 0;

  // Removes a layer or an active snapshot (the caller unmounts first). Missing id: OK.
  virtual absl::Status Remove(const std::string& id) = 0;

  // Space used by the layer or active snapshot `id` alone.
  virtual absl::StatusOr<Usage> GetUsage(const std::string& id) = 0;

  // Every id the driver holds content for, complete or not; recovery quarantines the ones the
  // metadata cannot account for (node/quarantine.h), never removes them.
  virtual absl::StatusOr<std::vector<std::string>> Walk() = 0;

  // Whether complete content for layer or active snapshot `id` is there (a half-made or
  // half-removed leftover does not count). Cheap: one or two stats on the file-based drivers,
  // so start-up and every stage can check a volume's chain. The default asks Walk().
  virtual absl::StatusOr<bool> Exists(const std::string& id);

  // Bytes free for new content where the driver stores it (GetCapacity).
  virtual absl::StatusOr<int64_t> FreeBytes() = 0;

  // The store's size where the driver stores content (thin: the pool less its reserve); what
  // the over-provisioning ratio multiplies. The default is Unimplemented.
  virtual absl::StatusOr<int64_t> TotalBytes();

  // Raises active snapshot `id`'s capacity to `capacity_bytes` (callers refuse a shrink; a
  // value at or below what the driver already gives is a no-op). `mount_point` is where the
  // active is mounted, "" when it is not. Enforcing drivers raise their limit: btrfs its
  // qgroup's, devmapper the thin device's size and then its filesystem's (ext4 mounted or not,
  // xfs only while mounted). Drivers that only record capacity (overlay, vfs; btrfs without
  // quotas) do nothing. Idempotent: a call repeated after a crash finishes the work. Returns
  // false when part of it waits for the active to be mounted (call again with `mount_point`).
  virtual absl::StatusOr<bool> Expand(const std::string& id, int64_t capacity_bytes,
                                      const std::string& mount_point);

  // ---- Quarantine (issue 8) ----
  // Content the caller's metadata cannot account for is set aside, never deleted, until an admin
  // restores or purges it. The caller checks that the content is not mounted first.

  // Moves the content of `id` out of the driver's namespace to `dest` (a path that does not
  // exist yet, on the filesystem of the driver's store): directory drivers rename the tree there
  // (never a copy); devmapper keeps the thin device and moves its record there. Afterwards Walk
  // no longer lists `id` and `id` may be handed out again. Returns what the content was.
  // The default says Unimplemented: the caller then leaves the content where it is.
  virtual absl::StatusOr<ContentKind> Quarantine(const std::string& id, const std::string& dest);
  // Moves content quarantined at `dest` back into the driver as `id` (unused), as `kind`
  // (kLayer: a read-only layer; kActive: an active snapshot on the empty chain).
  virtual absl::Status Unquarantine(const std::string& dest, ContentKind kind,
                                    const std::string& id);
  // Deletes content quarantined at `dest` for good (`dest` is gone afterwards).
  virtual absl::Status PurgeQuarantined(const std::string& dest);
};

// True when `id` is a valid driver id (1-32 chars of [a-z0-9]).
bool IsValidDriverId(const std::string& id);

}  // namespace strata::drivers
