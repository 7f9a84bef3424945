#include "sys/devmapper_fake.h"

#include "absl/strings/str_cat.h"

namespace strata::sys {

void FakeDeviceMapper::AddPool(const std::string& name, uint64_t total_data_blocks,
                               int64_t data_block_bytes, uint64_t total_metadata_blocks) {
  std::lock_guard<std::mutex> lock(mu_);
  Pool& pool = pools_[name];
  pool.total_data_blocks = total_data_blocks;
  pool.data_block_bytes = data_block_bytes;
  pool.total_metadata_blocks = total_metadata_blocks;
  devices_[name] = Device{};
}

void FakeDeviceMapper::SetPoolUsage(const std::string& pool, uint64_t used_data_blocks,
                                    uint64_t used_metadata_blocks) {
  std::lock_guard<std::mutex> lock(mu_);
  pools_[pool].used_data_blocks = used_data_blocks;
  pools_[pool].used_metadata_blocks = used_metadata_blocks;
}

void FakeDeviceMapper::SetBusy(const std::string& name, bool busy) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = devices_.find(name);
  if (it != devices_.end()) it->second.busy = busy;
}

void FakeDeviceMapper::SetMappedBytes(const std::string& pool, uint32_t dev_id, int64_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = pools_[pool].thins.find(dev_id);
  if (it != pools_[pool].thins.end()) it->second.mapped_bytes = bytes;
}

void FakeDeviceMapper::FailOn(const std::string& operation, absl::Status status, int skip) {
  std::lock_guard<std::mutex> lock(mu_);
  failures_[operation] = Failure{std::move(status), skip};
}

std::vector<std::string> FakeDeviceMapper::calls() const {
  std::lock_guard<std::mutex> lock(mu_);
  return calls_;
}

void FakeDeviceMapper::ClearCalls() {
  std::lock_guard<std::mutex> lock(mu_);
  calls_.clear();
}

std::set<uint32_t> FakeDeviceMapper::ThinIds(const std::string& pool) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::set<uint32_t> ids;
  auto it = pools_.find(pool);
  if (it == pools_.end()) return ids;
  for (const auto& [id, thin] : it->second.thins) ids.insert(id);
  return ids;
}

std::map<uint32_t, uint32_t> FakeDeviceMapper::ThinOrigins(const std::string& pool) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::map<uint32_t, uint32_t> origins;
  auto it = pools_.find(pool);
  if (it == pools_.end()) return origins;
  for (const auto& [id, thin] : it->second.thins) origins[id] = thin.origin;
  return origins;
}

void FakeDeviceMapper::CrashOn(const std::string& operation, bool after, int skip) {
  std::lock_guard<std::mutex> lock(mu_);
  crashes_[operation] = Crash{after, skip};
}

absl::Status FakeDeviceMapper::Done(const std::string& operation) {
  auto it = crashes_.find(operation);
  if (it != crashes_.end() && it->second.after) {
    if (it->second.skip > 0) {
      --it->second.skip;
    } else {
      crashes_.erase(it);
      throw FakeCrash{"after " + operation};
    }
  }
  return absl::OkStatus();
}

absl::Status FakeDeviceMapper::Enter(const std::string& operation, const std::string& call) {
  auto crash = crashes_.find(operation);
  if (crash != crashes_.end() && !crash->second.after) {
    if (crash->second.skip > 0) {
      --crash->second.skip;
    } else {
      crashes_.erase(crash);
      throw FakeCrash{"before " + operation};
    }
  }
  auto it = failures_.find(operation);
  if (it != failures_.end()) {
    if (it->second.skip > 0) {
      --it->second.skip;
    } else {
      absl::Status status = it->second.status;
      failures_.erase(it);
      calls_.push_back(call + " -> " + status.ToString());
      return status;
    }
  }
  // Queries are not recorded: tests assert the changes the driver makes.
  if (operation != "info" && operation != "pool_status" && operation != "list" &&
      operation != "mapped") {
    calls_.push_back(call);
  }
  return absl::OkStatus();
}

bool FakeDeviceMapper::ThinActive(const std::string& pool, uint32_t dev_id,
                                  const Device** device) const {
  for (const auto& [name, candidate] : devices_) {
    if (candidate.pool == pool && candidate.dev_id == dev_id) {
      if (device) *device = &candidate;
      return true;
    }
  }
  return false;
}

absl::Status FakeDeviceMapper::CreateThinPool(const std::string& name,
                                              const std::string& data_device,
                                              const std::string& metadata_device,
                                              int64_t data_block_bytes, int64_t low_water_blocks,
                                              const std::vector<std::string>& features) {
  std::lock_guard<std::mutex> lock(mu_);
  if (absl::Status s = Enter("create_pool", "create_pool " + name); !s.ok()) return s;
  if (devices_.count(name)) return absl::AlreadyExistsError(name + " exists");
  Pool& pool = pools_[name];
  pool.data_block_bytes = data_block_bytes;
  pool.total_data_blocks = 4096;
  pool.total_metadata_blocks = 1024;
  devices_[name] = Device{};
  return Done("create_pool");
}

absl::Status FakeDeviceMapper::CreateThin(const std::string& pool, uint32_t dev_id) {
  std::lock_guard<std::mutex> lock(mu_);
  if (absl::Status s = Enter("create_thin", absl::StrCat("create_thin ", pool, " ", dev_id));
      !s.ok()) {
    return s;
  }
  auto it = pools_.find(pool);
  if (it == pools_.end()) return absl::NotFoundError("no pool " + pool);
  if (dev_id > kMaxThinDeviceId) return absl::InvalidArgumentError("dev_id too large");
  if (it->second.thins.count(dev_id)) return absl::AlreadyExistsError("thin id exists");
  it->second.thins[dev_id] = Thin{dev_id, 0};
  return Done("create_thin");
}

absl::Status FakeDeviceMapper::CreateSnapshot(const std::string& pool, uint32_t dev_id,
                                              uint32_t origin_id) {
  std::lock_guard<std::mutex> lock(mu_);
  if (absl::Status s =
          Enter("create_snap", absl::StrCat("create_snap ", pool, " ", dev_id, " ", origin_id));
      !s.ok()) {
    return s;
  }
  auto it = pools_.find(pool);
  if (it == pools_.end()) return absl::NotFoundError("no pool " + pool);
  if (dev_id > kMaxThinDeviceId) return absl::InvalidArgumentError("dev_id too large");
  if (it->second.thins.count(dev_id)) return absl::AlreadyExistsError("thin id exists");
  auto origin = it->second.thins.find(origin_id);
  if (origin == it->second.thins.end()) return absl::NotFoundError("no origin thin id");
  const Device* device = nullptr;
  if (ThinActive(pool, origin_id, &device) && !device->suspended && !device->read_only) {
    // The kernel would take it and maybe corrupt the snapshot; the driver must never do this.
    return absl::FailedPreconditionError(
        "fake: snapshot of an active writable, unsuspended origin");
  }
  it->second.thins[dev_id] = Thin{origin_id, origin->second.mapped_bytes};
  return Done("create_snap");
}

absl::Status FakeDeviceMapper::DeleteThin(const std::string& pool, uint32_t dev_id) {
  std::lock_guard<std::mutex> lock(mu_);
  if (absl::Status s = Enter("delete", absl::StrCat("delete ", pool, " ", dev_id)); !s.ok()) {
    return s;
  }
  auto it = pools_.find(pool);
  if (it == pools_.end()) return absl::NotFoundError("no pool " + pool);
  if (!it->second.thins.count(dev_id)) return absl::NotFoundError("no such thin id (ENODATA)");
  if (ThinActive(pool, dev_id, nullptr)) return absl::FailedPreconditionError("thin id active");
  it->second.thins.erase(dev_id);
  return Done("delete");
}

absl::Status FakeDeviceMapper::ActivateThin(const std::string& name, const std::string& pool,
                                            uint32_t dev_id, int64_t size_bytes, bool read_only) {
  std::lock_guard<std::mutex> lock(mu_);
  if (absl::Status s = Enter("activate", absl::StrCat("activate ", name, " ", dev_id, " ",
                                                      size_bytes, read_only ? " ro" : " rw"));
      !s.ok()) {
    return s;
  }
  if (devices_.count(name)) return absl::AlreadyExistsError(name + " exists");
  auto it = pools_.find(pool);
  if (it == pools_.end()) return absl::NotFoundError("no pool " + pool);
  if (!it->second.thins.count(dev_id)) return absl::NotFoundError("no such thin id");
  Device device;
  device.pool = pool;
  device.dev_id = dev_id;
  device.size_bytes = size_bytes;
  device.read_only = read_only;
  devices_[name] = device;
  return Done("activate");
}

absl::Status FakeDeviceMapper::ResizeThin(const std::string& name, const std::string& pool,
                                          uint32_t dev_id, int64_t size_bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  if (absl::Status s = Enter("resize", absl::StrCat("resize ", name, " ", size_bytes)); !s.ok()) {
    return s;
  }
  auto it = devices_.find(name);
  if (it == devices_.end()) return absl::NotFoundError("no device " + name);
  it->second.size_bytes = size_bytes;
  return Done("resize");
}

absl::Status FakeDeviceMapper::Suspend(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  if (absl::Status s = Enter("suspend", "suspend " + name); !s.ok()) return s;
  auto it = devices_.find(name);
  if (it == devices_.end()) return absl::NotFoundError("no device " + name);
  it->second.suspended = true;
  return Done("suspend");
}

absl::Status FakeDeviceMapper::Resume(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  if (absl::Status s = Enter("resume", "resume " + name); !s.ok()) return s;
  auto it = devices_.find(name);
  if (it == devices_.end()) return absl::NotFoundError("no device " + name);
  it->second.suspended = false;
  return Done("resume");
}

absl::Status FakeDeviceMapper::Remove(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  if (absl::Status s = Enter("remove", "remove " + name); !s.ok()) return s;
  auto it = devices_.find(name);
  if (it == devices_.end()) return absl::OkStatus();
  if (it->second.busy) return absl::FailedPreconditionError(name + " is busy (EBUSY)");
  devices_.erase(it);
  return Done("remove");
}

absl::StatusOr<DeviceInfo> FakeDeviceMapper::GetDeviceInfo(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  if (absl::Status s = Enter("info", "info " + name); !s.ok()) return s;
  DeviceInfo info;
  auto it = devices_.find(name);
  if (it == devices_.end()) return info;
  info.exists = true;
  info.has_live_table = true;
  info.suspended = it->second.suspended;
  info.read_only = it->second.read_only;
  info.size_bytes = it->second.size_bytes;
  return info;
}

absl::StatusOr<ThinPoolStatus> FakeDeviceMapper::GetPoolStatus(const std::string& pool) {
  std::lock_guard<std::mutex> lock(mu_);
  if (absl::Status s = Enter("pool_status", "pool_status " + pool); !s.ok()) return s;
  auto it = pools_.find(pool);
  if (it == pools_.end()) return absl::NotFoundError("device-mapper device " + pool + " missing");
  ThinPoolStatus status;
  status.data_block_bytes = it->second.data_block_bytes;
  status.total_data_blocks = it->second.total_data_blocks;
  status.used_data_blocks = it->second.used_data_blocks;
  status.total_metadata_blocks = it->second.total_metadata_blocks;
  status.used_metadata_blocks = it->second.used_metadata_blocks;
  status.mode = "rw";
  return status;
}

absl::StatusOr<int64_t> FakeDeviceMapper::GetThinMappedBytes(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  if (absl::Status s = Enter("mapped", "mapped " + name); !s.ok()) return s;
  auto it = devices_.find(name);
  if (it == devices_.end() || it->second.pool.empty()) {
    return absl::NotFoundError("no thin device " + name);
  }
  return pools_[it->second.pool].thins[it->second.dev_id].mapped_bytes;
}

absl::StatusOr<std::vector<std::string>> FakeDeviceMapper::ListDevices() {
  std::lock_guard<std::mutex> lock(mu_);
  if (absl::Status s = Enter("list", "list"); !s.ok()) return s;
  std::vector<std::string> names;
  for (const auto& [name, device] : devices_) names.push_back(name);
  return names;
}

}  // namespace strata::sys
