#pragma once
// DeviceMapper: the device-mapper operations Strata's devmapper driver needs, and nothing else.
// Real: NewLibdmDeviceMapper() (libdevmapper's dm_task_* ioctls). Tests: FakeDeviceMapper
// (sys/devmapper_fake.h). Thin-provisioning vocabulary (kernel's thin-provisioning.txt):
//  - a *pool* is a dm device with a "thin-pool" table over a data and a metadata device;
//  - a *thin device* is a number (dev_id, 24 bits) inside the pool, created and deleted by pool
//    messages; it holds data whether or not a dm device maps it;
//  - *activating* a thin device creates a dm device with the table "thin <pool dev> <dev_id>";
//    removing that dm device deactivates it and keeps the data.
// Every method is a single kernel request; none retries. Missing things: see each method.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace strata::sys {

// Thin device ids are 24 bits in the kernel's pool metadata.
inline constexpr uint32_t kMaxThinDeviceId = (1u << 24) - 1;

struct ThinPoolStatus {
  uint64_t transaction_id = 0;
  int64_t data_block_bytes = 0;  // the pool's data block size
  int64_t metadata_block_bytes = 4096;
  uint64_t used_data_blocks = 0;
  uint64_t total_data_blocks = 0;
  uint64_t used_metadata_blocks = 0;
  uint64_t total_metadata_blocks = 0;
  bool read_only = false;  // "ro" or "out_of_data_space" or "Fail": no new data can land
  std::string mode;        // "rw", "ro", "out_of_data_space", "Fail"
};

struct DeviceInfo {
  bool exists = false;
  bool suspended = false;
  bool read_only = false;
  bool has_live_table = false;
  int64_t size_bytes = 0;  // length of the live table
  uint32_t major = 0, minor = 0;
};

class DeviceMapper {
 public:
  virtual ~DeviceMapper() = default;

  // Creates pool `name` ("0 <data size> thin-pool <metadata> <data> <block sectors> <low water>
  // <features>"). The metadata device's first 4 KiB must be zero for a new pool. `features`
  // are thin-pool feature args, e.g. {"error_if_no_space"}.
  virtual absl::Status CreateThinPool(const std::string& name, const std::string& data_device,
                                      const std::string& metadata_device, int64_t data_block_bytes,
                                      int64_t low_water_blocks,
                                      const std::vector<std::string>& features) = 0;

  // Pool messages. CreateThin / CreateSnapshot: AlreadyExists when `dev_id` is taken.
  // CreateSnapshot's origin must be suspended (or inactive) if it can be written to.
  // DeleteThin: NotFound when `dev_id` does not exist; the device must not be active.
  virtual absl::Status CreateThin(const std::string& pool, uint32_t dev_id) = 0;
  virtual absl::Status CreateSnapshot(const std::string& pool, uint32_t dev_id,
                                      uint32_t origin_id) = 0;
  virtual absl::Status DeleteThin(const std::string& pool, uint32_t dev_id) = 0;

  // Creates dm device `name` mapping thin `dev_id` of `pool` with `size_bytes` (a multiple of
  // 512; may exceed the origin's size: reads past what was written are zeroes) and makes its
  // node /dev/mapper/<name>. AlreadyExists if `name` exists.
  virtual absl::Status ActivateThin(const std::string& name, const std::string& pool,
                                    uint32_t dev_id, int64_t size_bytes, bool read_only) = 0;
  // Loads a table of `size_bytes` into the existing thin device `name` and swaps it in
  // (suspend + resume). Used to grow a device.
  virtual absl::Status ResizeThin(const std::string& name, const std::string& pool, uint32_t dev_id,
                                  int64_t size_bytes) = 0;

  // Suspend flushes outstanding I/O and freezes a filesystem mounted on the device (the kernel's
  // lockfs), so a snapshot taken while suspended is consistent. Resume undoes it.
  virtual absl::Status Suspend(const std::string& name) = 0;
  virtual absl::Status Resume(const std::string& name) = 0;

  // Removes dm device `name` (deactivation: the thin device's data stays). Missing: OK.
  // FailedPrecondition when it is busy (mounted or open).
  virtual absl::Status Remove(const std::string& name) = 0;

  // exists=false (not an error) when there is no device `name`.
  virtual absl::StatusOr<DeviceInfo> GetDeviceInfo(const std::string& name) = 0;
  virtual absl::StatusOr<ThinPoolStatus> GetPoolStatus(const std::string& pool) = 0;
  // Bytes the active thin device `name` maps in the pool (its "thin" status, mapped sectors).
  virtual absl::StatusOr<int64_t> GetThinMappedBytes(const std::string& name) = 0;

  // Names of every dm device on the system.
  virtual absl::StatusOr<std::vector<std::string>> ListDevices() = 0;

  // The block device node of `name` (/dev/mapper/<name>).
  virtual std::string DevicePath(const std::string& name) const = 0;
};

// The real device-mapper over libdevmapper. Runs without udev: libdm is told not to wait for
// udev and device nodes are made by the library (or by us when it does not). Thread-safe: calls
// are serialized (libdm is not thread-safe).
std::unique_ptr<DeviceMapper> NewLibdmDeviceMapper();

// OK when the kernel offers device-mapper with the thin-pool target here; FailedPrecondition
// with the reason otherwise (e.g. no /dev/mapper/control, or dm-thin-pool not loadable).
absl::Status DeviceMapperAvailable();

}  // namespace strata::sys
