// The real DeviceMapper over libdevmapper's dm_task_* API.
//
// No udev: Strata runs in containers and VMs where udev is absent or not ours. We turn libdm's
// udev synchronisation off (it would otherwise wait forever for a cookie nobody completes) and
// let libdm make /dev/mapper nodes itself; when the node is still missing we mknod it from the
// device's major:minor.

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/errno_status.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "libdevmapper.h"
#include "sys/devmapper.h"

namespace strata::sys {
namespace {

// libdm reports errors through a log callback; keep the last error text of this thread so a
// failed dm_task_run can say why.
thread_local std::string last_dm_error;

void CaptureDmLog(int level, const char* file, int line, int dm_errno_or_class, const char* f, ...)
    __attribute__((format(printf, 5, 6)));
void CaptureDmLog(int level, const char* file, int line, int dm_errno_or_class, const char* f,
                  ...) {
  const int severity = level & 7;  // libdm's _LOG_ERR is 3, _LOG_WARN 4, _LOG_DEBUG 7
  if (severity > 4) return;
  char buffer[1024];
  va_list args;
  va_start(args, f);
  std::vsnprintf(buffer, sizeof(buffer), f, args);
  va_end(args);
  if (severity <= 3) {
    last_dm_error = buffer;
  } else {
    LogDebug("libdevmapper", {{"message", buffer}});
  }
}

struct TaskDeleter {
  void operator()(dm_task* task) const { dm_task_destroy(task); }
};
using Task = std::unique_ptr<dm_task, TaskDeleter>;

absl::Status StatusFromErrno(int error, const std::string& what) {
  std::string message = what;
  if (!last_dm_error.empty()) absl::StrAppend(&message, ": ", last_dm_error);
  if (error != 0) absl::StrAppend(&message, " (", std::strerror(error), ")");
  switch (error) {
    case EEXIST:
      return absl::AlreadyExistsError(message);
    case ENXIO:
    case ENODEV:
    case ENOENT:
    case ENODATA:
      return absl::NotFoundError(message);
    case EBUSY:
      return absl::FailedPreconditionError(message);
    case ENOSPC:
      return absl::ResourceExhaustedError(message);
    case EINVAL:
      return absl::InvalidArgumentError(message);
    case EPERM:
    case EACCES:
      return absl::PermissionDeniedError(message);
    default:
      return absl::InternalError(message);
  }
}

class LibdmDeviceMapper : public DeviceMapper {
 public:
  LibdmDeviceMapper() {
    std::lock_guard<std::mutex> lock(mu_);
    // libdm reads DM_DISABLE_UDEV to decide who makes nodes; without udev it must be us.
    setenv("DM_DISABLE_UDEV", "1", /*overwrite=*/0);
    dm_log_with_errno_init(CaptureDmLog);
    dm_udev_set_sync_support(0);
    dm_udev_set_checking(0);
  }

  absl::Status CreateThinPool(const std::string& name, const std::string& data_device,
                              const std::string& metadata_device, int64_t data_block_bytes,
                              int64_t low_water_blocks,
                              const std::vector<std::string>& features) override {
    ASSIGN_OR_RETURN(int64_t data_bytes, BlockDeviceBytes(data_device));
    if (data_block_bytes <= 0 || data_block_bytes % 65536 != 0) {
      return absl::InvalidArgumentError("thin-pool data block size must be a multiple of 64 KiB");
    }
    const uint64_t block_sectors = data_block_bytes / 512;
    const uint64_t sectors = (data_bytes / 512) / block_sectors * block_sectors;
    std::string params = absl::StrCat(metadata_device, " ", data_device, " ", block_sectors, " ",
                                      low_water_blocks, " ", features.size());
    for (const std::string& feature : features) absl::StrAppend(&params, " ", feature);
    std::lock_guard<std::mutex> lock(mu_);
    return CreateDevice(name, sectors, "thin-pool", params, /*read_only=*/false);
  }

  absl::Status CreateThin(const std::string& pool, uint32_t dev_id) override {
    return Message(pool, absl::StrCat("create_thin ", dev_id));
  }
  absl::Status CreateSnapshot(const std::string& pool, uint32_t dev_id,
                              uint32_t origin_id) override {
    return Message(pool, absl::StrCat("create_snap ", dev_id, " ", origin_id));
  }
  absl::Status DeleteThin(const std::string& pool, uint32_t dev_id) override {
    return Message(pool, absl::StrCat("delete ", dev_id));
  }

  absl::Status ActivateThin(const std::string& name, const std::string& pool, uint32_t dev_id,
                            int64_t size_bytes, bool read_only) override {
    if (size_bytes <= 0 || size_bytes % 512 != 0) {
      return absl::InvalidArgumentError(absl::StrCat("thin device size ", size_bytes));
    }
    std::lock_guard<std::mutex> lock(mu_);
    ASSIGN_OR_RETURN(DeviceInfo pool_info, InfoLocked(pool));
    if (!pool_info.exists) return absl::NotFoundError("thin pool " + pool + " does not exist");
    const std::string params = absl::StrCat(pool_info.major, ":", pool_info.minor, " ", dev_id);
    return CreateDevice(name, size_bytes / 512, "thin", params, read_only);
  }

  absl::Status ResizeThin(const std::string& name, const std::string& pool, uint32_t dev_id,
                          int64_t size_bytes) override {
    std::lock_guard<std::mutex> lock(mu_);
    ASSIGN_OR_RETURN(DeviceInfo pool_info, InfoLocked(pool));
    if (!pool_info.exists) return absl::NotFoundError("thin pool " + pool + " does not exist");
    ASSIGN_OR_RETURN(Task reload, NewTask(DM_DEVICE_RELOAD, name));
    const std::string params = absl::StrCat(pool_info.major, ":", pool_info.minor, " ", dev_id);
    if (!dm_task_add_target(reload.get(), 0, size_bytes / 512, "thin", params.c_str())) {
      return absl::InternalError("dm_task_add_target failed");
    }
    RETURN_IF_ERROR(Run(reload.get(), "reload " + name));
    RETURN_IF_ERROR(SimpleLocked(DM_DEVICE_SUSPEND, name, "suspend"));
    return SimpleLocked(DM_DEVICE_RESUME, name, "resume");
  }

  absl::Status Suspend(const std::string& name) override {
    std::lock_guard<std::mutex> lock(mu_);
    return SimpleLocked(DM_DEVICE_SUSPEND, name, "suspend");
  }
  absl::Status Resume(const std::string& name) override {
    std::lock_guard<std::mutex> lock(mu_);
    return SimpleLocked(DM_DEVICE_RESUME, name, "resume");
  }

  absl::Status Remove(const std::string& name) override {
    std::lock_guard<std::mutex> lock(mu_);
    ASSIGN_OR_RETURN(DeviceInfo info, InfoLocked(name));
    if (!info.exists) return absl::OkStatus();
    ASSIGN_OR_RETURN(Task task, NewTask(DM_DEVICE_REMOVE, name));
    // A device someone just closed can stay "busy" for a moment (e.g. blkid); libdm retries.
    dm_task_retry_remove(task.get());
    absl::Status status = Run(task.get(), "remove " + name);
    if (absl::IsNotFound(status)) return absl::OkStatus();
    RETURN_IF_ERROR(status);
    dm_task_update_nodes();
    unlink(DevicePath(name).c_str());  // when libdm did not, e.g. a node we made ourselves
    return absl::OkStatus();
  }

  absl::StatusOr<DeviceInfo> GetDeviceInfo(const std::string& name) override {
    std::lock_guard<std::mutex> lock(mu_);
    return InfoLocked(name);
  }

  absl::StatusOr<ThinPoolStatus> GetPoolStatus(const std::string& pool) override {
    std::lock_guard<std::mutex> lock(mu_);
    ThinPoolStatus status;
    // The data block size is in the table, the counters in the status.
    ASSIGN_OR_RETURN(std::string table, SingleTargetLocked(DM_DEVICE_TABLE, pool, "thin-pool"));
    std::vector<std::string> fields = absl::StrSplit(table, ' ', absl::SkipEmpty());
    uint64_t block_sectors = 0;
    if (fields.size() < 4 || !absl::SimpleAtoi(fields[2], &block_sectors)) {
      return absl::InternalError("unexpected thin-pool table: " + table);
    }
    status.data_block_bytes = block_sectors * 512;
    ASSIGN_OR_RETURN(std::string line, SingleTargetLocked(DM_DEVICE_STATUS, pool, "thin-pool"));
    fields = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (fields.size() == 1 && fields[0] == "Fail") {
      status.mode = "Fail";
      status.read_only = true;
      return status;
    }
    auto pair = [](const std::string& text, uint64_t* used, uint64_t* total) {
      std::vector<std::string> parts = absl::StrSplit(text, '/');
      return parts.size() == 2 && absl::SimpleAtoi(parts[0], used) &&
             absl::SimpleAtoi(parts[1], total);
    };
    if (fields.size() < 5 || !absl::SimpleAtoi(fields[0], &status.transaction_id) ||
        !pair(fields[1], &status.used_metadata_blocks, &status.total_metadata_blocks) ||
        !pair(fields[2], &status.used_data_blocks, &status.total_data_blocks)) {
      return absl::InternalError("unexpected thin-pool status: " + line);
    }
    status.mode = fields[4];
    status.read_only = status.mode != "rw";
    return status;
  }

  absl::StatusOr<int64_t> GetThinMappedBytes(const std::string& name) override {
    std::lock_guard<std::mutex> lock(mu_);
    ASSIGN_OR_RETURN(std::string line, SingleTargetLocked(DM_DEVICE_STATUS, name, "thin"));
    std::vector<std::string> fields = absl::StrSplit(line, ' ', absl::SkipEmpty());
    int64_t sectors = 0;
    if (fields.empty() || !absl::SimpleAtoi(fields[0], &sectors)) {
      return absl::InternalError("unexpected thin status of " + name + ": " + line);
    }
    return sectors * 512;
  }

  absl::StatusOr<std::vector<std::string>> ListDevices() override {
    std::lock_guard<std::mutex> lock(mu_);
    Task task(dm_task_create(DM_DEVICE_LIST));
    if (!task) return absl::InternalError("dm_task_create(LIST) failed");
    RETURN_IF_ERROR(Run(task.get(), "list devices"));
    std::vector<std::string> names;
    dm_names* entry = dm_task_get_names(task.get());
    if (entry == nullptr || entry->dev == 0) return names;
    while (true) {
      names.emplace_back(entry->name);
      if (entry->next == 0) break;
      entry = reinterpret_cast<dm_names*>(reinterpret_cast<char*>(entry) + entry->next);
    }
    return names;
  }

  std::string DevicePath(const std::string& name) const override {
    return std::string(dm_dir()) + "/" + name;
  }

 private:
  absl::StatusOr<Task> NewTask(int type, const std::string& name) {
    Task task(dm_task_create(type));
    if (!task) return absl::InternalError("dm_task_create failed");
    if (!dm_task_set_name(task.get(), name.c_str())) {
      return absl::InvalidArgumentError("bad device-mapper name: " + name);
    }
    return task;
  }

  absl::Status Run(dm_task* task, const std::string& what) {
    last_dm_error.clear();
    if (dm_task_run(task)) return absl::OkStatus();
    return StatusFromErrno(dm_task_get_errno(task), "device-mapper " + what);
  }

  absl::Status SimpleLocked(int type, const std::string& name, const std::string& verb) {
    ASSIGN_OR_RETURN(Task task, NewTask(type, name));
    RETURN_IF_ERROR(Run(task.get(), verb + " " + name));
    dm_task_update_nodes();
    return absl::OkStatus();
  }

  absl::Status Message(const std::string& pool, const std::string& message) {
    std::lock_guard<std::mutex> lock(mu_);
    ASSIGN_OR_RETURN(Task task, NewTask(DM_DEVICE_TARGET_MSG, pool));
    if (!dm_task_set_sector(task.get(), 0) || !dm_task_set_message(task.get(), message.c_str())) {
      return absl::InternalError("dm_task_set_message failed");
    }
    return Run(task.get(), "message " + pool + " \"" + message + "\"");
  }

  absl::Status CreateDevice(const std::string& name, uint64_t sectors, const std::string& type,
                            const std::string& params, bool read_only) {
    ASSIGN_OR_RETURN(Task task, NewTask(DM_DEVICE_CREATE, name));
    if (!dm_task_add_target(task.get(), 0, sectors, type.c_str(), params.c_str())) {
      return absl::InternalError("dm_task_add_target failed");
    }
    if (read_only && !dm_task_set_ro(task.get())) {
      return absl::InternalError("dm_task_set_ro failed");
    }
    dm_task_set_add_node(task.get(), DM_ADD_NODE_ON_CREATE);
    RETURN_IF_ERROR(Run(task.get(), absl::StrCat("create ", name, " (", type, " ", params, ")")));
    dm_task_update_nodes();
    return EnsureNode(name);
  }

  // Makes /dev/mapper/<name> when libdm did not (e.g. it believed udev would).
  absl::Status EnsureNode(const std::string& name) {
    ASSIGN_OR_RETURN(DeviceInfo info, InfoLocked(name));
    if (!info.exists) return absl::InternalError("device " + name + " vanished after create");
    const std::string path = DevicePath(name);
    struct stat st;
    if (stat(path.c_str(), &st) == 0 && S_ISBLK(st.st_mode) &&
        st.st_rdev == makedev(info.major, info.minor)) {
      return absl::OkStatus();
    }
    unlink(path.c_str());
    mkdir(dm_dir(), 0755);
    if (mknod(path.c_str(), S_IFBLK | 0600, makedev(info.major, info.minor)) != 0) {
      return ErrnoStatus(errno, "mknod", path);
    }
    return absl::OkStatus();
  }

  absl::StatusOr<DeviceInfo> InfoLocked(const std::string& name) {
    ASSIGN_OR_RETURN(Task task, NewTask(DM_DEVICE_INFO, name));
    RETURN_IF_ERROR(Run(task.get(), "info " + name));
    dm_info info;
    if (!dm_task_get_info(task.get(), &info)) return absl::InternalError("dm_task_get_info");
    DeviceInfo result;
    result.exists = info.exists;
    if (!info.exists) return result;
    result.suspended = info.suspended;
    result.read_only = info.read_only;
    result.has_live_table = info.live_table;
    result.major = info.major;
    result.minor = info.minor;
    if (info.live_table) {
      Task table(dm_task_create(DM_DEVICE_TABLE));
      if (table && dm_task_set_name(table.get(), name.c_str()) &&
          Run(table.get(), "table " + name).ok()) {
        void* next = nullptr;
        do {
          uint64_t start = 0, length = 0;
          char *target_type = nullptr, *params = nullptr;
          next = dm_get_next_target(table.get(), next, &start, &length, &target_type, &params);
          if (target_type != nullptr) result.size_bytes += static_cast<int64_t>(length) * 512;
        } while (next != nullptr);
      }
    }
    return result;
  }

  // The params of the single target of `name`'s table or status, checking its type.
  absl::StatusOr<std::string> SingleTargetLocked(int type, const std::string& name,
                                                 const std::string& target) {
    ASSIGN_OR_RETURN(Task task, NewTask(type, name));
    RETURN_IF_ERROR(Run(task.get(), (type == DM_DEVICE_STATUS ? "status " : "table ") + name));
    dm_info info;
    if (!dm_task_get_info(task.get(), &info) || !info.exists) {
      return absl::NotFoundError("device-mapper device " + name + " does not exist");
    }
    uint64_t start = 0, length = 0;
    char *target_type = nullptr, *params = nullptr;
    dm_get_next_target(task.get(), nullptr, &start, &length, &target_type, &params);
    if (target_type == nullptr || target != target_type) {
      return absl::FailedPreconditionError(absl::StrCat(
          name, " is not a ", target, " device (", target_type ? target_type : "no table", ")"));
    }
    return std::string(params ? params : "");
  }

  static absl::StatusOr<int64_t> BlockDeviceBytes(const std::string& device) {
    int fd = open(device.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ErrnoStatus(errno, "open", device);
    off_t size = lseek(fd, 0, SEEK_END);
    int error = errno;
    close(fd);
    if (size < 0) return ErrnoStatus(error, "lseek", device);
    return static_cast<int64_t>(size);
  }

  std::mutex mu_;  // libdm keeps global state: one call at a time
};

}  // namespace

std::unique_ptr<DeviceMapper> NewLibdmDeviceMapper() {
  return std::make_unique<LibdmDeviceMapper>();
}

absl::Status DeviceMapperAvailable() {
  int fd = open("/dev/mapper/control", O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    int error = errno;
    return absl::FailedPreconditionError(absl::StrCat(
        "device-mapper is not available: open /dev/mapper/control: ", std::strerror(error),
        error == ENODEV ? " (the kernel has no device-mapper)" : ""));
  }
  close(fd);
  return absl::OkStatus();
}

}  // namespace strata::sys
