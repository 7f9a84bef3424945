#include "node/quarantine.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <ctime>
#include <fstream>
#include <iterator>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/errno_status.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "drivers/fs_util.h"
#include "nlohmann/json.hpp"
#include "node/paths.h"

namespace strata::node {
namespace {

using Json = nlohmann::json;

std::string KindName(drivers::ContentKind kind) {
  switch (kind) {
    case drivers::ContentKind::kLayer:
      return "layer";
    case drivers::ContentKind::kActive:
      return "active";
    case drivers::ContentKind::kUnknown:
      break;
  }
  return "unknown";
}

// Entry names come from admin requests: one component of [a-z0-9-], nothing else.
bool ValidEntryName(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
  return true;
}

// True when `text` names `path` itself or something below it (not "…/12" for "…/1").
bool Mentions(const std::string& text, const std::string& path) {
  if (path.empty()) return false;
  for (size_t at = text.find(path); at != std::string::npos; at = text.find(path, at + 1)) {
    size_t end = at + path.size();
    if (end == text.size()) return true;
    char next = text[end];
    if (!((next >= 'a' && next <= 'z') || (next >= '0' && next <= '9'))) return true;
  }
  return false;
}

absl::Status WriteEntry(const std::string& path, const std::string& text) {
  const std::string temp = path + ".tmp";
  {
    std::ofstream out(temp, std::ios::trunc);
    out << text;
    out.flush();
    if (!out) return absl::InternalError("cannot write " + temp);
  }
  int fd = open(temp.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    (void)fsync(fd);
    close(fd);
  }
  if (rename(temp.c_str(), path.c_str()) != 0) return ErrnoStatus(errno, "rename", temp);
  return drivers::SyncDir(path.substr(0, path.rfind('/')));
}

}  // namespace

drivers::ContentKind ParseContentKind(const std::string& kind) {
  if (kind == "layer") return drivers::ContentKind::kLayer;
  if (kind == "active") return drivers::ContentKind::kActive;
  return drivers::ContentKind::kUnknown;
}

absl::StatusOr<bool> ContentMounted(drivers::Driver* driver, sys::Mounter* mounter,
                                    const std::string& driver_id) {
  // Where the content lives, as the driver would mount it (writable or as a layer).
  std::vector<std::string> paths;
  for (int view = 0; view < 2; ++view) {
    absl::StatusOr<std::vector<sys::Mount>> mounts =
        view == 0 ? driver->Mounts(driver_id, {}) : driver->View({driver_id});
    if (!mounts.ok()) continue;
    for (const sys::Mount& mount : *mounts) {
      if (mount.type == "bind" || absl::StartsWith(mount.source, "/"))
        paths.push_back(mount.source);
      for (const std::string& option : mount.options) {
        size_t eq = option.find('=');
        if (eq != std::string::npos && option.find('/', eq) != std::string::npos)
          paths.push_back(option.substr(eq + 1));
      }
    }
  }
  if (paths.empty()) return false;
  ASSIGN_OR_RETURN(std::vector<sys::MountPoint> table, mounter->List());
  for (const sys::MountPoint& point : table) {
    for (const std::string& path : paths) {
      if (Mentions(point.source, path) || Mentions(point.options, path)) return true;
      // A bind mount shows its root relative to its filesystem: compare the tail.
      if (point.root.size() > 1 && (absl::EndsWith(path, point.root) || Mentions(point.root, path)))
        return true;
    }
  }
  return false;
}

Quarantine::Quarantine(std::string dir, drivers::Driver* driver, sys::Mounter* mounter,
                       metrics::Metrics* metrics)
    : dir_(std::move(dir)), driver_(driver), mounter_(mounter), metrics_(metrics) {}

absl::StatusOr<QuarantineEntry> Quarantine::Put(const std::string& driver_id,
                                                const std::string& reason,
                                                const std::string& label) {
  std::lock_guard<std::mutex> lock(mutex_);
  ASSIGN_OR_RETURN(bool mounted, ContentMounted(driver_, mounter_, driver_id));
  if (mounted) {
    return absl::FailedPreconditionError(
        absl::StrCat("driver content ", driver_id, " is mounted; it stays where it is"));
  }
  RETURN_IF_ERROR(MakeDirs(dir_, 0700));
  QuarantineEntry entry;
  entry.driver_id = driver_id;
  entry.reason = reason;
  entry.label = label;
  entry.quarantined_unix = static_cast<int64_t>(std::time(nullptr));
  absl::StatusOr<drivers::Usage> usage = driver_->GetUsage(driver_id);
  if (usage.ok()) entry.bytes = usage->bytes;
  std::string folder;
  for (int n = 0;; ++n) {
    entry.name = n == 0 ? absl::StrCat(driver_id, "-", entry.quarantined_unix)
                        : absl::StrCat(driver_id, "-", entry.quarantined_unix, "-", n);
    folder = absl::StrCat(dir_, "/", entry.name);
    if (mkdir(folder.c_str(), 0700) == 0) break;
    if (errno != EEXIST) return ErrnoStatus(errno, "mkdir", folder);
  }
  // entry.json first: a crash after the move leaves a complete entry, one before it an entry
  // without content, which List shows and Purge removes (nothing was moved yet).
  Json json{{"driver_id", entry.driver_id},
            {"kind", "unknown"},
            {"reason", entry.reason},
            {"label", entry.label},
            {"quarantined_unix", entry.quarantined_unix},
            {"bytes", entry.bytes}};
  RETURN_IF_ERROR(WriteEntry(folder + "/entry.json", json.dump()));
  absl::StatusOr<drivers::ContentKind> kind = driver_->Quarantine(driver_id, folder + "/content");
  if (!kind.ok()) {
    (void)unlink((folder + "/entry.json").c_str());
    (void)rmdir(folder.c_str());
    return kind.status();
  }
  entry.kind = KindName(*kind);
  json["kind"] = entry.kind;
  absl::Status written = WriteEntry(folder + "/entry.json", json.dump());
  if (!written.ok()) {
    LogWarning("quarantine: could not record the kind of an entry",
               {{"entry", entry.name}, {"error", written.ToString()}});
  }
  LogWarning("recovery: moved driver content the metadata cannot account for to quarantine",
             {{"driver_id", driver_id},
              {"entry", folder},
              {"kind", entry.kind},
              {"bytes", std::to_string(entry.bytes)},
              {"reason", reason}});
  return entry;
}

absl::StatusOr<QuarantineEntry> Quarantine::Read(const std::string& name) {
  if (!ValidEntryName(name))
    return absl::InvalidArgumentError("a quarantine entry is named like 1f-1764763200");
  const std::string path = absl::StrCat(dir_, "/", name, "/entry.json");
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("no quarantine entry ", name));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  Json json = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!json.is_object()) return absl::DataLossError(absl::StrCat("unreadable ", path));
  QuarantineEntry entry;
  entry.name = name;
  entry.driver_id = json.value("driver_id", "");
  entry.kind = json.value("kind", "unknown");
  entry.reason = json.value("reason", "");
  entry.label = json.value("label", "");
  entry.quarantined_unix = json.value("quarantined_unix", int64_t{0});
  entry.bytes = json.value("bytes", int64_t{0});
  return entry;
}

absl::StatusOr<std::vector<QuarantineEntry>> Quarantine::List() {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<QuarantineEntry> entries;
  DIR* handle = opendir(dir_.c_str());
  if (handle == nullptr) {
    if (errno == ENOENT) return entries;
    return ErrnoStatus(errno, "list", dir_);
  }
  std::vector<std::string> names;
  while (dirent* item = readdir(handle)) {
    std::string name = item->d_name;
    if (ValidEntryName(name)) names.push_back(name);
  }
  closedir(handle);
  std::sort(names.begin(), names.end());
  for (const std::string& name : names) {
    absl::StatusOr<QuarantineEntry> entry = Read(name);
    if (entry.ok()) entries.push_back(*std::move(entry));
  }
  return entries;
}

absl::StatusOr<QuarantineEntry> Quarantine::Get(const std::string& name) {
  std::lock_guard<std::mutex> lock(mutex_);
  return Read(name);
}

absl::Status Quarantine::Take(const std::string& name, drivers::ContentKind kind,
                              const std::string& driver_id) {
  std::lock_guard<std::mutex> lock(mutex_);
  ASSIGN_OR_RETURN(QuarantineEntry entry, Read(name));
  const std::string folder = absl::StrCat(dir_, "/", name);
  RETURN_IF_ERROR(driver_->Unquarantine(folder + "/content", kind, driver_id));
  (void)unlink((folder + "/entry.json").c_str());
  if (rmdir(folder.c_str()) != 0 && errno != ENOENT) return ErrnoStatus(errno, "rmdir", folder);
  LogInfo("quarantine: content restored",
          {{"entry", name}, {"driver_id", driver_id}, {"was", entry.driver_id}});
  return absl::OkStatus();
}

absl::Status Quarantine::Purge(const std::string& name) {
  std::lock_guard<std::mutex> lock(mutex_);
  ASSIGN_OR_RETURN(QuarantineEntry entry, Read(name));
  const std::string folder = absl::StrCat(dir_, "/", name);
  ASSIGN_OR_RETURN(bool has_content, drivers::PathExists(folder + "/content"));
  if (has_content) RETURN_IF_ERROR(driver_->PurgeQuarantined(folder + "/content"));
  RETURN_IF_ERROR(RemoveTree(folder));
  LogWarning(
      "quarantine: entry purged",
      {{"entry", name}, {"driver_id", entry.driver_id}, {"bytes", std::to_string(entry.bytes)}});
  return absl::OkStatus();
}

void Quarantine::RefreshGauges() {
  if (metrics_ == nullptr) return;
  absl::StatusOr<std::vector<QuarantineEntry>> entries = List();
  if (!entries.ok()) return;
  int64_t bytes = 0;
  for (const QuarantineEntry& entry : *entries) bytes += entry.bytes;
  metrics_->SetQuarantined(static_cast<int64_t>(entries->size()), bytes);
}

}  // namespace strata::node
