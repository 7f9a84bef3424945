#pragma once
// The devmapper driver: every layer and active snapshot is a thin device in a device-mapper
// thin pool, holding a complete filesystem (ext4 or xfs). Like Docker's devicemapper and
// containerd's devmapper snapshotter.
//
//  - A base thin device of `base_size_bytes` is made and formatted once, then deactivated.
//  - Prepare = create_snap of the parent layer's thin device (or of the base) + activate.
//    A capacity above the parent's size grows the new device's table and its filesystem.
//  - Commit = create_snap of the active (suspended while the snapshot is taken, which flushes
//    and freezes a mounted filesystem) + activate the layer read-only; kConsume then removes the
//    active. Remove = deactivate + delete the thin device.
//  - Mounts/View: one mount of /dev/mapper/<pool>-snap-<id>; the caller mounts it. There is no
//    direct write target: content is written through a mount.
//
// Thin device ids (24 bits) are kept in a map, not derived from driver ids (which are up to 32
// base-36 characters): each device's record holds its dev_id, and a new device takes the next id
// above every recorded one (skipping ids the pool already has).
//
// Crash safety (containerd's recipe): <root>/devmapper/devices/<id>.json records each device and
// its state, written atomically BEFORE each device operation and updated AFTER it. At start-up
// (Create) devices left "creating" or "removing" are deleted, "active" ones re-activated (and
// resumed if a crash left them suspended); what cannot be fixed is marked "faulty". Walk
// reports every record, so the caller's recovery removes what its metadata does not know.

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "drivers/driver.h"
#include "sys/devmapper.h"

namespace strata::drivers {

struct DevmapperOptions {
  // Name of the thin pool (a dm device with a thin-pool table). Required.
  std::string thin_pool;
  // Size of the base device, which is every snapshot's size unless a capacity asks for more.
  int64_t base_size_bytes = int64_t{10} << 30;
  // "ext4" or "xfs".
  std::string fs_type = "ext4";
  // Prepare and Commit answer RESOURCE_EXHAUSTED when less than this percentage of the pool's
  // data or metadata space is free, before making anything.
  int min_free_percent = 10;
};

// Pool space, for metrics.
struct ThinPoolUsage {
  int64_t data_used_bytes = 0;
  int64_t data_total_bytes = 0;
  int64_t metadata_used_bytes = 0;
  int64_t metadata_total_bytes = 0;
};

// Runs a tool (argv[0] is its name: mkfs.ext4, mkfs.xfs, e2fsck, resize2fs), putting its
// stdout+stderr in `output`; returns the exit code. Tests substitute one.
using ToolRunner =
    std::function<absl::StatusOr<int>(const std::vector<std::string>& argv, std::string* output)>;

// The real ToolRunner: fork + exec, looking in /usr/sbin, /sbin, /usr/bin, /bin, then PATH.
absl::StatusOr<int> RunTool(const std::vector<std::string>& argv, std::string* output);

class DevmapperDriver : public Driver {
 public:
  // `strata_root` is Strata's --root; records live in <strata_root>/devmapper. `dm` is the
  // device-mapper to use (real or fake). Checks the pool, makes the base device when missing and
  // recovers devices left half-done by a crash. FailedPrecondition when the pool is missing.
  static absl::StatusOr<std::unique_ptr<DevmapperDriver>> Create(
      const std::string& strata_root, const DevmapperOptions& options,
      std::shared_ptr<sys::DeviceMapper> dm, ToolRunner tools = RunTool);

  std::string_view name() const override { return "devmapper"; }
  DriverLimits limits() const override;

  absl::Status Prepare(const std::string& id, const Chain& parents,
                       const PrepareOptions& options) override;
  // One mount: {fs_type, /dev/mapper/<device>, {"rw"}} (+ "nouuid" for xfs).
  absl::StatusOr<std::vector<sys::Mount>> Mounts(const std::string& id,
                                                 const Chain& parents) override;
  // One read-only mount of chain[0]'s device.
  absl::StatusOr<std::vector<sys::Mount>> View(const Chain& chain) override;
  // Always Unimplemented: the caller mounts Mounts() and writes there (WhiteoutStyle::kApply).
  absl::StatusOr<ApplyTarget> DirectWriteTarget(const std::string& id) override;
  absl::Status Commit(const std::string& layer_id, const std::string& id, const Chain& parents,
                      CommitMode mode) override;
  absl::Status Remove(const std::string& id) override;
  // Bytes the thin device maps in the pool (shared blocks included: thin-pool status does not
  // tell a device's own blocks from its origin's). Inodes are not known without a mount: 0.
  absl::StatusOr<Usage> GetUsage(const std::string& id) override;
  absl::StatusOr<std::vector<std::string>> Walk() override;
  // The device's record is there and readable (one file read; the pool is not asked).
  absl::StatusOr<bool> Exists(const std::string& id) override;
  // Free data bytes of the pool above the min_free_percent reserve.
  absl::StatusOr<int64_t> FreeBytes() override;
  absl::StatusOr<int64_t> TotalBytes() override;
  // Grows the thin device (a new table, swapped in online) and then, while mounted, its
  // filesystem (resize2fs for ext4, xfs_growfs for xfs); unmounted, the filesystem waits for
  // the next call with a mount point (false).
  absl::StatusOr<bool> Expand(const std::string& id, int64_t capacity_bytes,
                              const std::string& mount_point) override;
  absl::StatusOr<ContentKind> Quarantine(const std::string& id, const std::string& dest) override;
  absl::Status Unquarantine(const std::string& dest, ContentKind kind,
                            const std::string& id) override;
  absl::Status PurgeQuarantined(const std::string& dest) override;

  // Pool space for metrics.
  absl::StatusOr<ThinPoolUsage> PoolUsage();
  // Removes every device of this driver, the base included, and its records.
  absl::Status Destroy();

  // The dm device name of `id` ("<pool>-snap-<id>") and of the base ("<pool>-base").
  std::string DeviceName(const std::string& id) const;
  std::string BaseDeviceName() const;
  // Thin device id of `id` from its record (NotFound without one).
  absl::StatusOr<uint32_t> ThinId(const std::string& id);
  // Record state of `id`: "creating", "active", "deactivated", "removing", "faulty".
  absl::StatusOr<std::string> State(const std::string& id);

 private:
  struct Record;
  DevmapperDriver(std::string home, DevmapperOptions options, std::shared_ptr<sys::DeviceMapper> dm,
                  ToolRunner tools);
  absl::Status RunToolOk(const std::vector<std::string>& argv);

  // All below run with mu_ held.
  absl::Status Recover();
  absl::Status EnsureBase();
  absl::Status CheckFreeSpace(const std::string& what);
  absl::StatusOr<Record> ReadRecord(const std::string& file);
  absl::StatusOr<std::vector<Record>> ReadAllRecords();
  absl::Status WriteRecord(const Record& record);
  absl::Status DeleteRecord(const Record& record);
  std::string RecordPath(const Record& record) const;
  absl::StatusOr<uint32_t> NextDevId();
  // Makes thin device `record` as a snapshot of `origin` (suspending it when it is active and
  // writable) and activates it with `record.size_bytes`. Nothing remains on failure.
  absl::Status CreateSnapshotDevice(Record& record, const Record& origin);
  // Deactivates and deletes the device of `record`, then its record.
  absl::Status DestroyDevice(Record& record);
  absl::Status Activate(const Record& record);
  absl::Status GrowFilesystem(const std::string& device);
  absl::StatusOr<Record> FindLayer(const std::string& id, const std::string& what);
  std::string DeviceNameOf(const Record& record) const;

  const std::string home_;     // <strata root>/devmapper
  const std::string devices_;  // home_/devices
  const DevmapperOptions options_;
  const std::shared_ptr<sys::DeviceMapper> dm_;
  const ToolRunner tools_;
  std::mutex mu_;  // one device operation at a time; thin-pool messages serialize anyway
};

// For development and tests: a thin pool `name` on two sparse loop files in `dir`
// (<dir>/<name>.data, <dir>/<name>.metadata), with 64 KiB blocks and error_if_no_space. The
// loop devices detach when the pool is removed. OK when the pool already exists.
absl::Status CreateLoopThinPool(sys::DeviceMapper& dm, const std::string& dir,
                                const std::string& name, int64_t data_size, int64_t metadata_size);
absl::Status CreateLoopThinPool(const std::string& dir, const std::string& name, int64_t data_size,
                                int64_t metadata_size);
// Removes every dm device named "<name>-*", the pool `name`, and its loop files in `dir`.
absl::Status RemoveLoopThinPool(sys::DeviceMapper& dm, const std::string& dir,
                                const std::string& name);

// The devmapper driver over the real device-mapper: FailedPrecondition when the kernel has no
// device-mapper or no pool is named.
absl::StatusOr<std::unique_ptr<DevmapperDriver>> NewDevmapperDriver(
    const std::string& strata_root, const DevmapperOptions& options);

}  // namespace strata::drivers
