#pragma once
// The btrfs operations the btrfs driver is built from: thin wrappers over libbtrfsutil and, for
// quota groups (which libbtrfsutil 6.2 does not cover beyond creation-time inheritance), the
// kernel's btrfs ioctls. Every failure comes back as an absl::Status naming the call and path.
// Creating, snapshotting and deleting subvolumes and reading quota state need CAP_SYS_ADMIN.

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace strata::drivers::btrfs {

// OK when `path` is on a btrfs filesystem (statfs f_type == BTRFS_SUPER_MAGIC);
// FailedPrecondition naming the path, the filesystem found and what to do otherwise.
absl::Status CheckOnBtrfs(const std::string& path);

// True when `path` is the root of a subvolume. False for anything else, missing paths included.
absl::StatusOr<bool> IsSubvolume(const std::string& path);

// A new empty subvolume at `path` (mode 0755).
absl::Status CreateSubvolume(const std::string& path);

// A snapshot of subvolume `source` at `path`; read-only or writable. The kernel flushes the
// source's dirty data and makes the snapshot in a transaction commit, so it appears atomically
// (whole or not at all, even across a crash) and is durable when this returns. With quotas on,
// the snapshot's qgroup starts with a copy of the source qgroup's limits (the kernel applies
// them after, and so over, any limits passed at creation).
absl::Status CreateSnapshot(const std::string& source, const std::string& path, bool read_only);

// Deletes subvolume `path`, read-only or not, and any subvolumes nested under it.
absl::Status DeleteSubvolume(const std::string& path);

absl::StatusOr<bool> IsReadOnly(const std::string& path);
absl::Status SetReadOnly(const std::string& path, bool read_only);

// What the driver reads from a subvolume's root item.
struct SubvolumeInfo {
  uint64_t id = 0;
  bool read_only = false;
  bool is_snapshot = false;  // parent_uuid is set
  std::string uuid;          // 32 hex digits
  std::string parent_uuid;   // 32 hex digits, or "" when not a snapshot
  uint64_t otransid = 0;     // transaction that created it
};
absl::StatusOr<SubvolumeInfo> GetSubvolumeInfo(const std::string& path);

// Quota (qgroup) state of the filesystem holding `path`, from the quota tree's status item.
struct QuotaState {
  bool enabled = false;
  // False while a rescan runs or when the kernel marked the numbers inconsistent: usage from the
  // qgroups is then wrong (limits are still enforced).
  bool consistent = false;
};
absl::StatusOr<QuotaState> GetQuotaState(const std::string& path);

// Sets the referenced-bytes limit (max_rfer, what `btrfs qgroup limit SIZE` sets) of subvolume
// `path`'s own qgroup 0/<id>; 0 removes it (`btrfs qgroup limit none`). Writes that would take
// the qgroup past its limit fail with EDQUOT.
absl::Status SetReferencedLimit(const std::string& path, uint64_t max_referenced);

// The qgroup 0/<id> of subvolume `path`: its limit and usage as of the last committed
// transaction (btrfs updates qgroup numbers at commit, every 30 s by default or on sync).
struct QgroupUsage {
  uint64_t referenced = 0;      // bytes of every extent the subvolume refers to (shared or not)
  uint64_t exclusive = 0;       // bytes only this subvolume refers to
  uint64_t max_referenced = 0;  // 0 = no limit
};
// NotFound when quotas are off or the qgroup does not exist.
absl::StatusOr<QgroupUsage> GetQgroupUsage(const std::string& path);

}  // namespace strata::drivers::btrfs
