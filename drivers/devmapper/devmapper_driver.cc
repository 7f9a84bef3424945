#include "drivers/devmapper/devmapper_driver.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/crash_point.h"
#include "common/errno_status.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "drivers/copy_tree.h"
#include "drivers/fs_util.h"
#include "nlohmann/json.hpp"

namespace strata::drivers {
namespace {

constexpr int64_t kMiB = int64_t{1} << 20;
constexpr char kCreating[] = "creating";
constexpr char kActive[] = "active";
constexpr char kDeactivated[] = "deactivated";
constexpr char kRemoving[] = "removing";
constexpr char kFaulty[] = "faulty";

int64_t RoundUp(int64_t value, int64_t unit) { return (value + unit - 1) / unit * unit; }

// The absolute path of tool `name`: containers often lack /sbin in PATH.
std::string FindTool(const std::string& name) {
  for (const char* dir : {"/usr/sbin/", "/sbin/", "/usr/bin/", "/bin/"}) {
    std::string path = dir + name;
    if (access(path.c_str(), X_OK) == 0) return path;
  }
  return name;  // execvp searches PATH
}

}  // namespace

absl::StatusOr<int> RunTool(const std::vector<std::string>& argv, std::string* output) {
  const std::string program = FindTool(argv[0]);
  std::vector<char*> args;
  for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) return ErrnoStatus(errno, "pipe2");
  pid_t pid = fork();
  if (pid < 0) {
    int error = errno;
    close(pipe_fds[0]);
    close(pipe_fds[1]);
    return ErrnoStatus(error, "fork");
  }
  if (pid == 0) {
    // Only async-signal-safe calls between fork and exec.
    dup2(pipe_fds[1], STDOUT_FILENO);
    dup2(pipe_fds[1], STDERR_FILENO);
    int null_fd = open("/dev/null", O_RDONLY);
    if (null_fd >= 0) dup2(null_fd, STDIN_FILENO);
    execvp(program.c_str(), args.data());
    _exit(127);
  }
  close(pipe_fds[1]);
  char buffer[4096];
  ssize_t n;
  while ((n = read(pipe_fds[0], buffer, sizeof(buffer))) != 0) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    if (output->size() < 65536) output->append(buffer, n);
  }
  close(pipe_fds[0]);
  int wstatus = 0;
  while (waitpid(pid, &wstatus, 0) < 0) {
    if (errno != EINTR) return ErrnoStatus(errno, "waitpid", argv[0]);
  }
  if (WIFEXITED(wstatus)) {
    if (WEXITSTATUS(wstatus) == 127) {
      return absl::FailedPreconditionError(
          absl::StrCat(argv[0], " not found or not runnable: ", *output));
    }
    return WEXITSTATUS(wstatus);
  }
  return absl::InternalError(absl::StrCat(argv[0], " killed by signal ", WTERMSIG(wstatus)));
}

namespace {

absl::Status RunToolOk(const ToolRunner& tools, const std::vector<std::string>& argv) {
  std::string output;
  ASSIGN_OR_RETURN(int code, tools(argv, &output));
  if (code != 0) {
    return absl::InternalError(
        absl::StrCat(absl::StrJoin(argv, " "), " exited with ", code, ": ", output));
  }
  return absl::OkStatus();
}

absl::Status WriteFileAtomically(const std::string& dir, const std::string& name,
                                 const std::string& content) {
  const std::string temp = dir + "/.tmp-" + name;
  const std::string path = dir + "/" + name;
  int fd = open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return ErrnoStatus(errno, "open", temp);
  size_t done = 0;
  while (done < content.size()) {
    ssize_t n = write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int error = errno;
      close(fd);
      return ErrnoStatus(error, "write", temp);
    }
    done += n;
  }
  if (fsync(fd) != 0) {
    int error = errno;
    close(fd);
    return ErrnoStatus(error, "fsync", temp);
  }
  close(fd);
  if (rename(temp.c_str(), path.c_str()) != 0) return ErrnoStatus(errno, "rename", temp);
  return SyncDir(dir);
}

}  // namespace

struct DevmapperDriver::Record {
  std::string id;    // driver id; empty for the base device
  std::string kind;  // "base", "layer", "active"
  std::string state;
  uint32_t dev_id = 0;
  int64_t size_bytes = 0;
  std::string consumed_from;  // a layer made by kConsume: the active it came from
};

DevmapperDriver::DevmapperDriver(std::string home, DevmapperOptions options,
                                 std::shared_ptr<sys::DeviceMapper> dm, ToolRunner tools)
    : home_(std::move(home)),
      devices_(home_ + "/devices"),
      options_(std::move(options)),
      dm_(std::move(dm)),
      tools_(std::move(tools)) {}

absl::Status DevmapperDriver::RunToolOk(const std::vector<std::string>& argv) {
  return drivers::RunToolOk(tools_, argv);
}

absl::StatusOr<std::unique_ptr<DevmapperDriver>> DevmapperDriver::Create(
    const std::string& strata_root, const DevmapperOptions& options,
    std::shared_ptr<sys::DeviceMapper> dm, ToolRunner tools) {
  if (strata_root.empty() || strata_root[0] != '/') {
    return absl::InvalidArgumentError("driver root must be an absolute path: " + strata_root);
  }
  if (options.thin_pool.empty()) {
    return absl::FailedPreconditionError(
        "devmapper needs a thin pool: name one with --dm-thinpool (for development, make one on "
        "loop files with `stratactl dm-pool create`)");
  }
  if (options.fs_type != "ext4" && options.fs_type != "xfs") {
    return absl::InvalidArgumentError("devmapper filesystem must be ext4 or xfs, not " +
                                      options.fs_type);
  }
  if (options.base_size_bytes < 16 * kMiB || options.base_size_bytes % kMiB != 0) {
    return absl::InvalidArgumentError("devmapper base size must be a whole number of MiB >= 16");
  }
  if (options.min_free_percent < 0 || options.min_free_percent >= 100) {
    return absl::InvalidArgumentError("devmapper min free percent must be in [0, 100)");
  }
  absl::StatusOr<sys::ThinPoolStatus> pool = dm->GetPoolStatus(options.thin_pool);
  if (absl::IsNotFound(pool.status())) {
    return absl::FailedPreconditionError("devmapper thin pool \"" + options.thin_pool +
                                         "\" does not exist: " + pool.status().ToString());
  }
  RETURN_IF_ERROR(pool.status());
  std::unique_ptr<DevmapperDriver> driver(
      new DevmapperDriver(strata_root + "/devmapper", options, std::move(dm), std::move(tools)));
  RETURN_IF_ERROR(MakeDirs(driver->devices_));
  std::lock_guard<std::mutex> lock(driver->mu_);
  RETURN_IF_ERROR(driver->Recover());
  RETURN_IF_ERROR(driver->EnsureBase());
  return driver;
}

DriverLimits DevmapperDriver::limits() const {
  DriverLimits limits;
  limits.max_chain_depth = 1 << 20;  // snapshots of snapshots: depth costs nothing at mount
  limits.layers_are_full_trees = true;
  // A volume can never write more than its device, but the device is at least the base size:
  // the requested capacity is a floor, not the limit.
  limits.enforces_capacity = false;
  limits.thin_provisioned = true;  // blocks come from the pool only as they are written
  return limits;
}

std::string DevmapperDriver::DeviceName(const std::string& id) const {
  return options_.thin_pool + "-snap-" + id;
}
std::string DevmapperDriver::BaseDeviceName() const { return options_.thin_pool + "-base"; }
std::string DevmapperDriver::DeviceNameOf(const Record& record) const {
  return record.kind == "base" ? BaseDeviceName() : DeviceName(record.id);
}
std::string DevmapperDriver::RecordPath(const Record& record) const {
  return record.kind == "base" ? home_ + "/base.json" : devices_ + "/" + record.id + ".json";
}

absl::StatusOr<DevmapperDriver::Record> DevmapperDriver::ReadRecord(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError("no record " + path);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  nlohmann::json json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  Record record;
  if (!json.is_object() || !json["kind"].is_string() || !json["state"].is_string() ||
      !json["dev_id"].is_number_unsigned() || !json["size_bytes"].is_number()) {
    return absl::DataLossError("devmapper: unreadable record " + path);
  }
  record.id = json.value("id", "");
  record.kind = json["kind"];
  record.state = json["state"];
  record.dev_id = json["dev_id"];
  record.size_bytes = json["size_bytes"];
  record.consumed_from = json.value("consumed_from", "");
  if ((record.kind != "base" && !IsValidDriverId(record.id)) || record.dev_id == 0 ||
      record.dev_id > sys::kMaxThinDeviceId) {
    return absl::DataLossError("devmapper: bad record " + path);
  }
  return record;
}

absl::Status DevmapperDriver::WriteRecord(const Record& record) {
  nlohmann::json json = {{"id", record.id},
                         {"kind", record.kind},
                         {"state", record.state},
                         {"dev_id", record.dev_id},
                         {"size_bytes", record.size_bytes},
                         {"pool", options_.thin_pool}};
  if (!record.consumed_from.empty()) json["consumed_from"] = record.consumed_from;
  const std::string path = RecordPath(record);
  const std::string dir = path.substr(0, path.rfind('/'));
  return WriteFileAtomically(dir, path.substr(dir.size() + 1), json.dump() + "\n");
}

absl::Status DevmapperDriver::DeleteRecord(const Record& record) {
  const std::string path = RecordPath(record);
  if (unlink(path.c_str()) != 0 && errno != ENOENT) return ErrnoStatus(errno, "unlink", path);
  return SyncDir(path.substr(0, path.rfind('/')));
}

absl::StatusOr<std::vector<DevmapperDriver::Record>> DevmapperDriver::ReadAllRecords() {
  std::vector<Record> records;
  DIR* dir = opendir(devices_.c_str());
  if (dir == nullptr) return ErrnoStatus(errno, "opendir", devices_);
  std::vector<std::string> names;
  while (dirent* entry = readdir(dir)) {
    std::string name = entry->d_name;
    if (name.size() > 5 && name[0] != '.' && absl::EndsWith(name, ".json")) names.push_back(name);
  }
  closedir(dir);
  std::sort(names.begin(), names.end());
  for (const std::string& name : names) {
    ASSIGN_OR_RETURN(Record record, ReadRecord(devices_ + "/" + name));
    if (record.id + ".json" != name) {
      return absl::DataLossError("devmapper: record " + name + " names " + record.id);
    }
    records.push_back(record);
  }
  return records;
}

absl::StatusOr<uint32_t> DevmapperDriver::NextDevId() {
  ASSIGN_OR_RETURN(std::vector<Record> records, ReadAllRecords());
  std::set<uint32_t> used;
  absl::StatusOr<Record> base = ReadRecord(home_ + "/base.json");
  if (base.ok()) used.insert(base->dev_id);
  for (const Record& record : records) used.insert(record.dev_id);
  uint32_t next = used.empty() ? 1 : *used.rbegin() + 1;
  if (next <= sys::kMaxThinDeviceId) return next;
  for (uint32_t id = 1; id <= sys::kMaxThinDeviceId; ++id) {
    if (!used.count(id)) return id;
  }
  return absl::ResourceExhaustedError("devmapper: all 2^24-1 thin device ids are in use");
}

absl::Status DevmapperDriver::CheckFreeSpace(const std::string& what) {
  ASSIGN_OR_RETURN(sys::ThinPoolStatus pool, dm_->GetPoolStatus(options_.thin_pool));
  if (pool.read_only) {
    return absl::ResourceExhaustedError(absl::StrCat("devmapper: thin pool ", options_.thin_pool,
                                                     " is ", pool.mode, "; cannot ", what));
  }
  auto free_percent = [](uint64_t used, uint64_t total) {
    return total == 0 ? 0.0 : 100.0 * static_cast<double>(total - std::min(used, total)) / total;
  };
  const double data_free = free_percent(pool.used_data_blocks, pool.total_data_blocks);
  const double metadata_free = free_percent(pool.used_metadata_blocks, pool.total_metadata_blocks);
  if (data_free < options_.min_free_percent || metadata_free < options_.min_free_percent) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "devmapper: thin pool %s has %.1f%% data and %.1f%% metadata space free, below the "
        "%d%% minimum; cannot %s",
        options_.thin_pool, data_free, metadata_free, options_.min_free_percent, what));
  }
  return absl::OkStatus();
}

absl::Status DevmapperDriver::Activate(const Record& record) {
  return dm_->ActivateThin(DeviceNameOf(record), options_.thin_pool, record.dev_id,
                           record.size_bytes, /*read_only=*/record.kind == "layer");
}

absl::Status DevmapperDriver::DestroyDevice(Record& record) {
  if (record.state != kRemoving) {
    record.state = kRemoving;
    RETURN_IF_ERROR(WriteRecord(record));
  }
  CrashPoint("devmapper-remove-before-deactivate");
  RETURN_IF_ERROR(dm_->Remove(DeviceNameOf(record)));
  CrashPoint("devmapper-remove-before-delete");
  absl::Status deleted = dm_->DeleteThin(options_.thin_pool, record.dev_id);
  if (!deleted.ok() && !absl::IsNotFound(deleted)) return deleted;
  return DeleteRecord(record);
}

absl::Status DevmapperDriver::CreateSnapshotDevice(Record& record, const Record& origin) {
  const std::string origin_name = DeviceNameOf(origin);
  ASSIGN_OR_RETURN(sys::DeviceInfo origin_info, dm_->GetDeviceInfo(origin_name));
  // A writable origin may be mounted and written to: suspend it so the snapshot is consistent.
  // dm suspend flushes in-flight I/O and freezes a mounted filesystem (the kernel's lockfs, as
  // FIFREEZE does: ext4 flushes its journal), so a separate FIFREEZE would only repeat that.
  const bool suspend = origin_info.exists && !origin_info.read_only && !origin_info.suspended;
  for (int attempt = 0;; ++attempt) {
    record.state = kCreating;
    RETURN_IF_ERROR(WriteRecord(record));
    CrashPoint("devmapper-create-after-record");
    if (suspend) {
      absl::Status suspended = dm_->Suspend(origin_name);
      if (!suspended.ok()) {
        (void)DeleteRecord(record);
        return suspended;
      }
    }
    absl::Status created = dm_->CreateSnapshot(options_.thin_pool, record.dev_id, origin.dev_id);
    if (suspend) {
      absl::Status resumed = dm_->Resume(origin_name);
      if (!resumed.ok()) {
        // Start-up recovery resumes it; report the failure now (the new device is cleaned up).
        LogError("devmapper: resume after snapshot failed",
                 {{"device", origin_name}, {"error", resumed.ToString()}});
        if (created.ok()) (void)DestroyDevice(record);
        return resumed;
      }
    }
    if (absl::IsAlreadyExists(created) && attempt < 16) {
      // Not ours (no record has it): take the next id.
      record.dev_id = record.dev_id + 1 > sys::kMaxThinDeviceId ? 1 : record.dev_id + 1;
      continue;
    }
    if (!created.ok()) {
      (void)DeleteRecord(record);
      return created;
    }
    break;
  }
  CrashPoint("devmapper-create-after-snapshot");
  absl::Status activated = Activate(record);
  if (!activated.ok()) {
    absl::Status cleaned = DestroyDevice(record);
    if (!cleaned.ok()) LogError("devmapper: cleanup failed", {{"error", cleaned.ToString()}});
    return activated;
  }
  return absl::OkStatus();
}

absl::Status DevmapperDriver::GrowFilesystem(const std::string& device) {
  if (options_.fs_type != "ext4") {
    return absl::FailedPreconditionError(
        "devmapper: xfs grows only while mounted; raise --dm-base-size instead of asking for a "
        "capacity above it");
  }
  // -f: resize2fs would first want `e2fsck -f`, which costs a full check per Prepare and
  // recreates lost+found; the origin is a committed layer (unmounted, or frozen by the suspend
  // of a kKeep commit), so its filesystem is consistent.
  return RunToolOk({"resize2fs", "-f", device});
}

absl::Status DevmapperDriver::EnsureBase() {
  absl::StatusOr<Record> existing = ReadRecord(home_ + "/base.json");
  if (existing.ok() && existing->state == kDeactivated) return absl::OkStatus();
  if (existing.ok()) RETURN_IF_ERROR(DestroyDevice(*existing));  // half-made: start over
  Record base;
  base.kind = "base";
  base.size_bytes = options_.base_size_bytes;
  ASSIGN_OR_RETURN(base.dev_id, NextDevId());
  for (int attempt = 0;; ++attempt) {
    base.state = kCreating;
    RETURN_IF_ERROR(WriteRecord(base));
    absl::Status created = dm_->CreateThin(options_.thin_pool, base.dev_id);
    if (absl::IsAlreadyExists(created) && attempt < 16) {
      ++base.dev_id;
      continue;
    }
    if (!created.ok()) {
      (void)DeleteRecord(base);
      return created;
    }
    break;
  }
  absl::Status status = Activate(base);
  const std::string device = dm_->DevicePath(BaseDeviceName());
  if (status.ok()) {
    if (options_.fs_type == "ext4") {
      // Initialise inode tables and journal now, once: lazy init would write them again in
      // every snapshot, allocating pool blocks per device (Docker does the same).
      status = RunToolOk({"mkfs.ext4", "-q", "-F", "-E",
                          "nodiscard,lazy_itable_init=0,lazy_journal_init=0", device});
      // A volume shows the filesystem's root: no lost+found in it (e2fsck makes one if needed).
      if (status.ok()) status = RunToolOk({"debugfs", "-w", "-R", "rmdir lost+found", device});
    } else {
      status = RunToolOk({"mkfs.xfs", "-q", "-f", "-K", device});
    }
  }
  if (status.ok()) status = dm_->Remove(BaseDeviceName());  // snapshots need no active origin
  if (!status.ok()) {
    absl::Status cleaned = DestroyDevice(base);
    if (!cleaned.ok()) LogError("devmapper: base cleanup failed", {{"error", cleaned.ToString()}});
    return status;
  }
  base.state = kDeactivated;
  RETURN_IF_ERROR(WriteRecord(base));
  LogInfo("devmapper base device made", {{"pool", options_.thin_pool},
                                         {"dev_id", std::to_string(base.dev_id)},
                                         {"bytes", std::to_string(base.size_bytes)},
                                         {"fs", options_.fs_type}});
  return absl::OkStatus();
}

absl::Status DevmapperDriver::Recover() {
  // Leftover temp files of interrupted record writes.
  for (const std::string& dir : {home_, devices_}) {
    DIR* d = opendir(dir.c_str());
    if (d == nullptr) continue;
    std::vector<std::string> temps;
    while (dirent* entry = readdir(d)) {
      if (absl::StartsWith(entry->d_name, ".tmp-")) temps.push_back(dir + "/" + entry->d_name);
    }
    closedir(d);
    for (const std::string& temp : temps) unlink(temp.c_str());
  }
  ASSIGN_OR_RETURN(std::vector<Record> records, ReadAllRecords());
  absl::StatusOr<Record> base = ReadRecord(home_ + "/base.json");
  if (base.ok()) records.push_back(*base);
  for (Record& record : records) {
    absl::Status status;
    const std::string name = DeviceNameOf(record);
    if (record.state == kCreating || record.state == kRemoving) {
      status = DestroyDevice(record);
      if (status.ok()) {
        LogInfo("devmapper: removed a half-done device",
                {{"id", record.id}, {"dev_id", std::to_string(record.dev_id)}});
        continue;
      }
    } else if (record.state == kActive) {
      absl::StatusOr<sys::DeviceInfo> info = dm_->GetDeviceInfo(name);
      status = info.status();
      if (info.ok() && !info->exists) {
        status = Activate(record);
      } else if (info.ok() && info->suspended) {
        status = dm_->Resume(name);  // a crash between suspend and resume
      }
    } else if (record.state == kDeactivated) {
      absl::StatusOr<sys::DeviceInfo> info = dm_->GetDeviceInfo(name);
      status = info.status();
      if (info.ok() && info->exists) status = dm_->Remove(name);
    }
    if (!status.ok()) {
      LogError("devmapper: device marked faulty at start-up",
               {{"id", record.id}, {"device", name}, {"error", status.ToString()}});
      record.state = kFaulty;
      RETURN_IF_ERROR(WriteRecord(record));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<DevmapperDriver::Record> DevmapperDriver::FindLayer(const std::string& id,
                                                                   const std::string& what) {
  absl::StatusOr<Record> record = ReadRecord(devices_ + "/" + id + ".json");
  if (absl::IsNotFound(record.status()) ||
      (record.ok() && (record->kind != "layer" || record->state != kActive))) {
    return absl::NotFoundError("devmapper: " + what + " " + id + " not found");
  }
  return record;
}

absl::Status DevmapperDriver::Prepare(const std::string& id, const Chain& parents,
                                      const PrepareOptions& options) {
  RETURN_IF_ERROR(CheckIds({id}, "snapshot"));
  RETURN_IF_ERROR(CheckIds(parents, "parent layer"));
  std::lock_guard<std::mutex> lock(mu_);
  absl::StatusOr<Record> existing = ReadRecord(devices_ + "/" + id + ".json");
  if (existing.ok()) {
    if (existing->state == kActive) {
      return absl::AlreadyExistsError("devmapper: " + id + " already exists");
    }
    RETURN_IF_ERROR(DestroyDevice(*existing));  // a half-done earlier attempt
  } else if (!absl::IsNotFound(existing.status())) {
    return existing.status();
  }
  Record origin;
  if (parents.empty()) {
    ASSIGN_OR_RETURN(origin, ReadRecord(home_ + "/base.json"));
  } else {
    ASSIGN_OR_RETURN(origin, FindLayer(parents[0], "parent layer"));
  }
  RETURN_IF_ERROR(CheckFreeSpace("prepare " + id));
  Record record;
  record.id = id;
  record.kind = "active";
  record.size_bytes = std::max(origin.size_bytes, RoundUp(options.capacity_bytes, kMiB));
  if (record.size_bytes > origin.size_bytes && options_.fs_type != "ext4") {
    return GrowFilesystem("");  // FailedPrecondition with the reason, before making anything
  }
  ASSIGN_OR_RETURN(record.dev_id, NextDevId());
  RETURN_IF_ERROR(CreateSnapshotDevice(record, origin));
  if (record.size_bytes > origin.size_bytes) {
    absl::Status grown = GrowFilesystem(dm_->DevicePath(DeviceName(id)));
    if (!grown.ok()) {
      absl::Status cleaned = DestroyDevice(record);
      if (!cleaned.ok()) LogError("devmapper: cleanup failed", {{"error", cleaned.ToString()}});
      return grown;
    }
  }
  CrashPoint("devmapper-prepare-before-active");
  record.state = kActive;
  return WriteRecord(record);
}

absl::StatusOr<bool> DevmapperDriver::Expand(const std::string& id, int64_t capacity_bytes,
                                             const std::string& mount_point) {
  RETURN_IF_ERROR(CheckIds({id}, "snapshot"));
  if (capacity_bytes <= 0)
    return absl::InvalidArgumentError("devmapper: capacity must be positive");
  std::lock_guard<std::mutex> lock(mu_);
  absl::StatusOr<Record> record = ReadRecord(devices_ + "/" + id + ".json");
  if (absl::IsNotFound(record.status()) ||
      (record.ok() && (record->kind != "active" || record->state != kActive))) {
    return absl::NotFoundError("devmapper: active snapshot " + id + " not found");
  }
  RETURN_IF_ERROR(record.status());
  const int64_t size = RoundUp(capacity_bytes, kMiB);
  if (size > record->size_bytes) {
    RETURN_IF_ERROR(CheckFreeSpace("expand " + id));
    ASSIGN_OR_RETURN(sys::DeviceInfo info, dm_->GetDeviceInfo(DeviceName(id)));
    // An inactive device takes the new size from the record when it is next activated.
    if (info.exists) {
      RETURN_IF_ERROR(dm_->ResizeThin(DeviceName(id), options_.thin_pool, record->dev_id, size));
    }
    CrashPoint("devmapper-expand-after-table");
    record->size_bytes = size;
    RETURN_IF_ERROR(WriteRecord(*record));
  }
  // The filesystem grows to the device's size, online: growing one that already fills it
  // changes nothing, so a retry (or NodeExpandVolume after ControllerExpandVolume) is safe.
  // Unmounted, it waits: an offline resize2fs wants a fresh `e2fsck -f` first, and xfs grows
  // only while mounted; kubelet calls NodeExpandVolume once the volume is staged again.
  if (mount_point.empty()) return false;
  if (options_.fs_type == "xfs") {
    RETURN_IF_ERROR(RunToolOk({"xfs_growfs", mount_point}));
  } else {
    RETURN_IF_ERROR(RunToolOk({"resize2fs", dm_->DevicePath(DeviceName(id))}));
  }
  return true;
}

absl::StatusOr<std::vector<sys::Mount>> DevmapperDriver::Mounts(const std::string& id,
                                                                const Chain& parents) {
  RETURN_IF_ERROR(CheckIds({id}, "snapshot"));
  RETURN_IF_ERROR(CheckIds(parents, "parent layer"));
  std::lock_guard<std::mutex> lock(mu_);
  absl::StatusOr<Record> record = ReadRecord(devices_ + "/" + id + ".json");
  if (absl::IsNotFound(record.status()) ||
      (record.ok() && (record->kind != "active" || record->state != kActive))) {
    return absl::NotFoundError("devmapper: active snapshot " + id + " not found");
  }
  RETURN_IF_ERROR(record.status());
  ASSIGN_OR_RETURN(sys::DeviceInfo info, dm_->GetDeviceInfo(DeviceName(id)));
  if (!info.exists) RETURN_IF_ERROR(Activate(*record));
  sys::Mount mount{options_.fs_type, dm_->DevicePath(DeviceName(id)), {"rw"}};
  if (options_.fs_type == "xfs") mount.options.push_back("nouuid");  // snapshots share a UUID
  return std::vector<sys::Mount>{mount};
}

absl::StatusOr<std::vector<sys::Mount>> DevmapperDriver::View(const Chain& chain) {
  if (chain.empty()) return absl::InvalidArgumentError("devmapper: View of an empty chain");
  RETURN_IF_ERROR(CheckIds(chain, "layer"));
  std::lock_guard<std::mutex> lock(mu_);
  ASSIGN_OR_RETURN(Record record, FindLayer(chain[0], "layer"));
  ASSIGN_OR_RETURN(sys::DeviceInfo info, dm_->GetDeviceInfo(DeviceName(chain[0])));
  if (!info.exists) RETURN_IF_ERROR(Activate(record));
  sys::Mount mount{options_.fs_type, dm_->DevicePath(DeviceName(chain[0])), {"ro"}};
  if (options_.fs_type == "xfs")
    mount.options.insert(mount.options.end(), {"nouuid", "norecovery"});
  return std::vector<sys::Mount>{mount};
}

absl::StatusOr<ApplyTarget> DevmapperDriver::DirectWriteTarget(const std::string& id) {
  RETURN_IF_ERROR(CheckIds({id}, "snapshot"));
  {
    std::lock_guard<std::mutex> lock(mu_);
    absl::StatusOr<Record> record = ReadRecord(devices_ + "/" + id + ".json");
    if (!record.ok() || record->kind != "active") {
      return absl::NotFoundError("devmapper: active snapshot " + id + " not found");
    }
  }
  return absl::UnimplementedError("devmapper: content is written through a mount of Mounts()");
}

absl::Status DevmapperDriver::Commit(const std::string& layer_id, const std::string& id,
                                     const Chain& parents, CommitMode mode) {
  RETURN_IF_ERROR(CheckIds({layer_id, id}, "snapshot"));
  RETURN_IF_ERROR(CheckIds(parents, "parent layer"));
  if (layer_id == id) return absl::InvalidArgumentError("devmapper: layer id equals snapshot id");
  std::lock_guard<std::mutex> lock(mu_);
  absl::StatusOr<Record> active = ReadRecord(devices_ + "/" + id + ".json");
  if (!active.ok() && !absl::IsNotFound(active.status())) return active.status();
  absl::StatusOr<Record> existing = ReadRecord(devices_ + "/" + layer_id + ".json");
  if (existing.ok()) {
    if (existing->state == kActive) {
      if (mode == CommitMode::kConsume && existing->consumed_from == id) {
        // An earlier attempt made the layer; finish removing the active.
        if (active.ok()) return DestroyDevice(*active);
        return absl::OkStatus();
      }
      return absl::AlreadyExistsError("devmapper: layer " + layer_id + " exists");
    }
    RETURN_IF_ERROR(DestroyDevice(*existing));  // a half-done earlier attempt
  } else if (!absl::IsNotFound(existing.status())) {
    return existing.status();
  }
  if (!active.ok() || active->kind != "active" || active->state != kActive) {
    return absl::NotFoundError("devmapper: active snapshot " + id + " not found");
  }
  RETURN_IF_ERROR(CheckFreeSpace("commit " + layer_id));
  Record layer;
  layer.id = layer_id;
  layer.kind = "layer";
  layer.size_bytes = active->size_bytes;
  if (mode == CommitMode::kConsume) layer.consumed_from = id;
  ASSIGN_OR_RETURN(layer.dev_id, NextDevId());
  RETURN_IF_ERROR(CreateSnapshotDevice(layer, *active));
  CrashPoint("devmapper-commit-before-active");
  layer.state = kActive;
  RETURN_IF_ERROR(WriteRecord(layer));
  CrashPoint("devmapper-commit-after-layer");
  // kConsume: the layer is a snapshot of the active, which then goes (one metadata operation
  // each; re-labelling the active's thin device instead would need a third crash state).
  if (mode == CommitMode::kConsume) return DestroyDevice(*active);
  return absl::OkStatus();
}

absl::Status DevmapperDriver::Remove(const std::string& id) {
  RETURN_IF_ERROR(CheckIds({id}, "snapshot"));
  std::lock_guard<std::mutex> lock(mu_);
  absl::StatusOr<Record> record = ReadRecord(devices_ + "/" + id + ".json");
  if (absl::IsNotFound(record.status())) {
    return dm_->Remove(DeviceName(id));  // no record: at most a stray dm device
  }
  RETURN_IF_ERROR(record.status());
  return DestroyDevice(*record);
}

absl::StatusOr<Usage> DevmapperDriver::GetUsage(const std::string& id) {
  RETURN_IF_ERROR(CheckIds({id}, "snapshot"));
  std::lock_guard<std::mutex> lock(mu_);
  absl::StatusOr<Record> record = ReadRecord(devices_ + "/" + id + ".json");
  if (absl::IsNotFound(record.status()) || (record.ok() && record->state != kActive)) {
    return absl::NotFoundError("devmapper: " + id + " not found");
  }
  RETURN_IF_ERROR(record.status());
  ASSIGN_OR_RETURN(sys::DeviceInfo info, dm_->GetDeviceInfo(DeviceName(id)));
  if (!info.exists) RETURN_IF_ERROR(Activate(*record));
  Usage usage;
  ASSIGN_OR_RETURN(usage.bytes, dm_->GetThinMappedBytes(DeviceName(id)));
  return usage;
}

absl::StatusOr<bool> DevmapperDriver::Exists(const std::string& id) {
  RETURN_IF_ERROR(CheckIds({id}, "snapshot"));
  std::lock_guard<std::mutex> lock(mu_);
  absl::StatusOr<Record> record = ReadRecord(devices_ + "/" + id + ".json");
  if (absl::IsNotFound(record.status())) return false;
  RETURN_IF_ERROR(record.status());
  // Half-made or half-removed devices do not count (driver.h); a faulty one is reported by
  // the calls that use it.
  return record->state != kCreating && record->state != kRemoving;
}

absl::StatusOr<std::vector<std::string>> DevmapperDriver::Walk() {
  std::lock_guard<std::mutex> lock(mu_);
  ASSIGN_OR_RETURN(std::vector<Record> records, ReadAllRecords());
  std::vector<std::string> ids;
  for (const Record& record : records) ids.push_back(record.id);
  return ids;
}

// Quarantine (issue 8): the thin device stays in the pool, deactivated; its record moves (one
// rename, so exactly one place ever names the device) into `dest`/device.json, so Walk no longer
// lists it and its id may be reused (the dm name follows the id, the thin dev_id does not).
absl::StatusOr<ContentKind> DevmapperDriver::Quarantine(const std::string& id,
                                                        const std::string& dest) {
  RETURN_IF_ERROR(CheckIds({id}, "snapshot"));
  std::lock_guard<std::mutex> lock(mu_);
  const std::string path = devices_ + "/" + id + ".json";
  absl::StatusOr<Record> record = ReadRecord(path);
  if (absl::IsNotFound(record.status())) {
    RETURN_IF_ERROR(dm_->Remove(DeviceName(id)));  // no record: at most a stray dm device
    return absl::NotFoundError("devmapper: " + id + " not found");
  }
  RETURN_IF_ERROR(record.status());
  // Busy (mounted or open) devices refuse to deactivate: then nothing moves.
  RETURN_IF_ERROR(dm_->Remove(DeviceNameOf(*record)));
  RETURN_IF_ERROR(MakeDirs(dest));
  const std::string moved = dest + "/device.json";
  if (rename(path.c_str(), moved.c_str()) != 0) return ErrnoStatus(errno, "rename", path);
  RETURN_IF_ERROR(SyncDir(dest));
  RETURN_IF_ERROR(SyncDir(devices_));
  return record->kind == "layer" ? ContentKind::kLayer : ContentKind::kActive;
}

absl::Status DevmapperDriver::Unquarantine(const std::string& dest, ContentKind kind,
                                           const std::string& id) {
  RETURN_IF_ERROR(CheckIds({id}, "snapshot"));
  std::lock_guard<std::mutex> lock(mu_);
  const std::string path = devices_ + "/" + id + ".json";
  if (access(path.c_str(), F_OK) == 0)
    return absl::AlreadyExistsError("devmapper: " + id + " exists");
  ASSIGN_OR_RETURN(Record record, ReadRecord(dest + "/device.json"));
  record.id = id;
  if (kind == ContentKind::kLayer) record.kind = "layer";
  if (kind == ContentKind::kActive) record.kind = "active";
  record.state = kActive;
  record.consumed_from.clear();
  // Rewrite the record in the quarantine folder first, then move it: a crash in between leaves
  // the entry intact (its record merely names the new id), never two records of one device.
  nlohmann::json json = {{"id", record.id},
                         {"kind", record.kind},
                         {"state", record.state},
                         {"dev_id", record.dev_id},
                         {"size_bytes", record.size_bytes},
                         {"pool", options_.thin_pool}};
  RETURN_IF_ERROR(WriteFileAtomically(dest, "device.json", json.dump() + "\n"));
  if (rename((dest + "/device.json").c_str(), path.c_str()) != 0)
    return ErrnoStatus(errno, "rename", dest + "/device.json");
  RETURN_IF_ERROR(SyncDir(devices_));
  (void)rmdir(dest.c_str());
  return Activate(record);
}

absl::Status DevmapperDriver::PurgeQuarantined(const std::string& dest) {
  std::lock_guard<std::mutex> lock(mu_);
  const std::string moved = dest + "/device.json";
  absl::StatusOr<Record> record = ReadRecord(moved);
  if (record.ok()) {
    // Deactivated when it was quarantined; the dm name may belong to a new device by now.
    absl::Status deleted = dm_->DeleteThin(options_.thin_pool, record->dev_id);
    if (!deleted.ok() && !absl::IsNotFound(deleted)) return deleted;
  } else if (!absl::IsNotFound(record.status())) {
    return record.status();
  }
  return RemoveTree(dest);
}

absl::StatusOr<int64_t> DevmapperDriver::FreeBytes() {
  ASSIGN_OR_RETURN(ThinPoolUsage usage, PoolUsage());
  const int64_t reserve = usage.data_total_bytes / 100 * options_.min_free_percent;
  return std::max<int64_t>(0, usage.data_total_bytes - usage.data_used_bytes - reserve);
}

absl::StatusOr<int64_t> DevmapperDriver::TotalBytes() {
  ASSIGN_OR_RETURN(ThinPoolUsage usage, PoolUsage());
  const int64_t reserve = usage.data_total_bytes / 100 * options_.min_free_percent;
  return std::max<int64_t>(0, usage.data_total_bytes - reserve);
}

absl::StatusOr<ThinPoolUsage> DevmapperDriver::PoolUsage() {
  ASSIGN_OR_RETURN(sys::ThinPoolStatus pool, dm_->GetPoolStatus(options_.thin_pool));
  ThinPoolUsage usage;
  usage.data_used_bytes = static_cast<int64_t>(pool.used_data_blocks) * pool.data_block_bytes;
  usage.data_total_bytes = static_cast<int64_t>(pool.total_data_blocks) * pool.data_block_bytes;
  usage.metadata_used_bytes =
      static_cast<int64_t>(pool.used_metadata_blocks) * pool.metadata_block_bytes;
  usage.metadata_total_bytes =
      static_cast<int64_t>(pool.total_metadata_blocks) * pool.metadata_block_bytes;
  return usage;
}

absl::Status DevmapperDriver::Destroy() {
  std::lock_guard<std::mutex> lock(mu_);
  ASSIGN_OR_RETURN(std::vector<Record> records, ReadAllRecords());
  absl::StatusOr<Record> base = ReadRecord(home_ + "/base.json");
  if (base.ok()) records.push_back(*base);
  absl::Status first;
  for (Record& record : records) {
    absl::Status status = DestroyDevice(record);
    if (first.ok()) first = status;
  }
  return first;
}

absl::StatusOr<uint32_t> DevmapperDriver::ThinId(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  ASSIGN_OR_RETURN(Record record, ReadRecord(devices_ + "/" + id + ".json"));
  return record.dev_id;
}

absl::StatusOr<std::string> DevmapperDriver::State(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  ASSIGN_OR_RETURN(Record record, ReadRecord(devices_ + "/" + id + ".json"));
  return record.state;
}

namespace {

// Attaches `file` to a free loop device; returns an open fd of the loop device. With
// LO_FLAGS_AUTOCLEAR the loop detaches when its last user (our fd, then the pool) closes it.
absl::StatusOr<int> AttachLoop(const std::string& file) {
  int control = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
  if (control < 0) return ErrnoStatus(errno, "open", "/dev/loop-control");
  int file_fd = open(file.c_str(), O_RDWR | O_CLOEXEC);
  if (file_fd < 0) {
    int error = errno;
    close(control);
    return ErrnoStatus(error, "open", file);
  }
  absl::Status last = absl::UnavailableError("no free loop device");
  for (int attempt = 0; attempt < 20; ++attempt) {
    int number = ioctl(control, LOOP_CTL_GET_FREE);
    if (number < 0) {
      last = ErrnoStatus(errno, "LOOP_CTL_GET_FREE");
      break;
    }
    const std::string path = absl::StrCat("/dev/loop", number);
    int loop_fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (loop_fd < 0) {
      last = ErrnoStatus(errno, "open", path);
      continue;
    }
    loop_config config;
    std::memset(&config, 0, sizeof(config));
    config.fd = file_fd;
    config.info.lo_flags = LO_FLAGS_AUTOCLEAR;
    std::strncpy(reinterpret_cast<char*>(config.info.lo_file_name), file.c_str(), LO_NAME_SIZE - 1);
    if (ioctl(loop_fd, LOOP_CONFIGURE, &config) == 0) {
      close(file_fd);
      close(control);
      return loop_fd;
    }
    last = ErrnoStatus(errno, "LOOP_CONFIGURE", path);
    close(loop_fd);
    if (errno != EBUSY) break;  // EBUSY: another process took it first; try the next one
  }
  close(file_fd);
  close(control);
  return last;
}

absl::StatusOr<std::string> LoopPath(int loop_fd) {
  char link[64], path[256];
  std::snprintf(link, sizeof(link), "/proc/self/fd/%d", loop_fd);
  ssize_t n = readlink(link, path, sizeof(path) - 1);
  if (n < 0) return ErrnoStatus(errno, "readlink", link);
  return std::string(path, n);
}

absl::Status MakeSparseFile(const std::string& path, int64_t size) {
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return ErrnoStatus(errno, "open", path);
  int result = ftruncate(fd, size);
  int error = errno;
  close(fd);
  if (result != 0) return ErrnoStatus(error, "ftruncate", path);
  return absl::OkStatus();
}

}  // namespace

absl::Status CreateLoopThinPool(sys::DeviceMapper& dm, const std::string& dir,
                                const std::string& name, int64_t data_size, int64_t metadata_size) {
  ASSIGN_OR_RETURN(sys::DeviceInfo info, dm.GetDeviceInfo(name));
  if (info.exists) return absl::OkStatus();
  if (data_size < 16 * kMiB || metadata_size < 2 * kMiB) {
    return absl::InvalidArgumentError("loop thin pool: data >= 16 MiB and metadata >= 2 MiB");
  }
  RETURN_IF_ERROR(MakeDirs(dir));
  const std::string data_file = dir + "/" + name + ".data";
  const std::string metadata_file = dir + "/" + name + ".metadata";
  // Fresh sparse files: the metadata device starts zeroed, as a new pool requires.
  RETURN_IF_ERROR(MakeSparseFile(data_file, RoundUp(data_size, 64 * 1024)));
  RETURN_IF_ERROR(MakeSparseFile(metadata_file, metadata_size));
  ASSIGN_OR_RETURN(int data_fd, AttachLoop(data_file));
  absl::StatusOr<int> metadata_fd = AttachLoop(metadata_file);
  if (!metadata_fd.ok()) {
    close(data_fd);
    return metadata_fd.status();
  }
  absl::StatusOr<std::string> data_loop = LoopPath(data_fd);
  absl::StatusOr<std::string> metadata_loop = LoopPath(*metadata_fd);
  absl::Status status = data_loop.status();
  if (status.ok()) status = metadata_loop.status();
  if (status.ok()) {
    status = dm.CreateThinPool(name, *data_loop, *metadata_loop, 64 * 1024, /*low_water_blocks=*/0,
                               {"error_if_no_space"});
  }
  // The pool holds the loop devices open now (or failed: autoclear detaches them).
  close(data_fd);
  close(*metadata_fd);
  if (status.ok()) {
    LogInfo("loop thin pool made", {{"pool", name},
                                    {"data", *data_loop},
                                    {"metadata", *metadata_loop},
                                    {"data_bytes", std::to_string(data_size)}});
  }
  return status;
}

absl::Status CreateLoopThinPool(const std::string& dir, const std::string& name, int64_t data_size,
                                int64_t metadata_size) {
  RETURN_IF_ERROR(sys::DeviceMapperAvailable());
  std::unique_ptr<sys::DeviceMapper> dm = sys::NewLibdmDeviceMapper();
  return CreateLoopThinPool(*dm, dir, name, data_size, metadata_size);
}

absl::Status RemoveLoopThinPool(sys::DeviceMapper& dm, const std::string& dir,
                                const std::string& name) {
  ASSIGN_OR_RETURN(std::vector<std::string> devices, dm.ListDevices());
  absl::Status first;
  for (const std::string& device : devices) {
    if (absl::StartsWith(device, name + "-")) {
      absl::Status status = dm.Remove(device);
      if (first.ok()) first = status;
    }
  }
  absl::Status status = dm.Remove(name);
  if (first.ok()) first = status;
  for (const char* suffix : {".data", ".metadata"}) {
    std::string path = dir + "/" + name + suffix;
    if (unlink(path.c_str()) != 0 && errno != ENOENT && first.ok()) {
      first = ErrnoStatus(errno, "unlink", path);
    }
  }
  return first;
}

absl::StatusOr<std::unique_ptr<DevmapperDriver>> NewDevmapperDriver(
    const std::string& strata_root, const DevmapperOptions& options) {
  if (options.thin_pool.empty()) {
    return absl::FailedPreconditionError(
        "devmapper needs a thin pool: name one with --dm-thinpool (for development, make one on "
        "loop files with `stratactl dm-pool create`)");
  }
  RETURN_IF_ERROR(sys::DeviceMapperAvailable());
  return DevmapperDriver::Create(strata_root, options,
                                 std::shared_ptr<sys::DeviceMapper>(sys::NewLibdmDeviceMapper()));
}

}  // namespace strata::drivers
