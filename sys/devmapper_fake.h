#pragma once
// FakeDeviceMapper: an in-memory device-mapper for tests. It keeps pools, thin devices and dm
// devices like the kernel does, enforces the rules the driver must follow (no delete of an
// active thin device, snapshot origins suspended or read-only, no removal of a busy device),
// records every call, and fails any operation on request.

#include <cstdint>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "sys/devmapper.h"

namespace strata::sys {

// Thrown by a FakeDeviceMapper set to crash: unwinds the caller as if the process died there,
// leaving its on-disk records and the fake's devices as they were at that instant.
struct FakeCrash {
  std::string where;
};

class FakeDeviceMapper : public DeviceMapper {
 public:
  // A pool named `name` with `total_data_blocks` blocks of `data_block_bytes`.
  void AddPool(const std::string& name, uint64_t total_data_blocks,
               int64_t data_block_bytes = 64 * 1024, uint64_t total_metadata_blocks = 1024);
  // Sets the pool's used data/metadata blocks (what its status reports).
  void SetPoolUsage(const std::string& pool, uint64_t used_data_blocks,
                    uint64_t used_metadata_blocks = 0);
  // Marks dm device `name` open (mounted): Remove answers FailedPrecondition (EBUSY).
  void SetBusy(const std::string& name, bool busy);
  // Bytes the thin device `dev_id` of `pool` maps (reported by GetThinMappedBytes).
  void SetMappedBytes(const std::string& pool, uint32_t dev_id, int64_t bytes);

  // The next call of `operation` ("create_thin", "create_snap", "delete", "activate", "resize",
  // "suspend", "resume", "remove", "info", "pool_status", "list", "create_pool") — after
  // `skip` successful ones — fails with `status` without changing anything.
  void FailOn(const std::string& operation, absl::Status status, int skip = 0);

  // The next call of `operation` — after `skip` ones — throws FakeCrash, before changing
  // anything or (`after`) once its change is made.
  void CrashOn(const std::string& operation, bool after, int skip = 0);

  // Every call so far, e.g. "create_snap pool 2 1", "activate pool-id-x 2 ro", "suspend x".
  std::vector<std::string> calls() const;
  void ClearCalls();
  // Thin device ids that exist in `pool`.
  std::set<uint32_t> ThinIds(const std::string& pool) const;
  // dev_id -> origin dev_id (or itself when made by create_thin).
  std::map<uint32_t, uint32_t> ThinOrigins(const std::string& pool) const;

  absl::Status CreateThinPool(const std::string& name, const std::string& data_device,
                              const std::string& metadata_device, int64_t data_block_bytes,
                              int64_t low_water_blocks,
                              const std::vector<std::string>& features) override;
  absl::Status CreateThin(const std::string& pool, uint32_t dev_id) override;
  absl::Status CreateSnapshot(const std::string& pool, uint32_t dev_id,
                              uint32_t origin_id) override;
  absl::Status DeleteThin(const std::string& pool, uint32_t dev_id) override;
  absl::Status ActivateThin(const std::string& name, const std::string& pool, uint32_t dev_id,
                            int64_t size_bytes, bool read_only) override;
  absl::Status ResizeThin(const std::string& name, const std::string& pool, uint32_t dev_id,
                          int64_t size_bytes) override;
  absl::Status Suspend(const std::string& name) override;
  absl::Status Resume(const std::string& name) override;
  absl::Status Remove(const std::string& name) override;
  absl::StatusOr<DeviceInfo> GetDeviceInfo(const std::string& name) override;
  absl::StatusOr<ThinPoolStatus> GetPoolStatus(const std::string& pool) override;
  absl::StatusOr<int64_t> GetThinMappedBytes(const std::string& name) override;
  absl::StatusOr<std::vector<std::string>> ListDevices() override;
  std::string DevicePath(const std::string& name) const override { return "/dev/mapper/" + name; }

 private:
  struct Thin {
    uint32_t origin = 0;
    int64_t mapped_bytes = 0;
  };
  struct Pool {
    int64_t data_block_bytes = 0;
    uint64_t total_data_blocks = 0, used_data_blocks = 0;
    uint64_t total_metadata_blocks = 0, used_metadata_blocks = 0;
    std::map<uint32_t, Thin> thins;
  };
  struct Device {
    std::string pool;  // empty for a pool device itself
    uint32_t dev_id = 0;
    int64_t size_bytes = 0;
    bool read_only = false, suspended = false, busy = false;
  };
  struct Failure {
    absl::Status status;
    int skip = 0;
  };

  struct Crash {
    bool after = false;
    int skip = 0;
  };
  // Records the call; returns the injected failure for `operation`, if due; throws a due
  // crash-before.
  absl::Status Enter(const std::string& operation, const std::string& call);
  // Throws a due crash-after for `operation`; else OK.
  absl::Status Done(const std::string& operation);
  bool ThinActive(const std::string& pool, uint32_t dev_id, const Device** device) const;

  mutable std::mutex mu_;
  std::map<std::string, Pool> pools_;
  std::map<std::string, Device> devices_;
  std::map<std::string, Failure> failures_;
  std::map<std::string, Crash> crashes_;
  std::vector<std::string> calls_;
};

}  // namespace strata::sys
