#include "node/labels.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/errno_status.h"
#include "common/status_macros.h"
#include "drivers/driver.h"
#include "drivers/fs_util.h"
#include "nlohmann/json.hpp"
#include "node/images/digest.h"

namespace strata::node {
namespace {

using Json = nlohmann::json;
constexpr char kDeletingSuffix[] = ".deleting";
// Labels are tiny; anything bigger is not one of ours and is not parsed.
constexpr off_t kMaxLabelBytes = 1 << 24;

// Writes `text` to `path` so that after a crash of the process the file holds either the old or
// the new text; with `durable`, after a power loss too (fsync of the file and of its folder).
absl::Status WriteAtomically(const std::string& path, const std::string& text, bool durable) {
  const std::string dir = path.substr(0, path.rfind('/'));
  const std::string temp = absl::StrCat(path, ".tmp");
  int fd = open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return ErrnoStatus(errno, "create label", temp);
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = write(fd, text.data() + done, text.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      int saved = errno;
      close(fd);
      (void)unlink(temp.c_str());
      return ErrnoStatus(saved, "write label", temp);
    }
    done += static_cast<size_t>(n);
  }
  if (durable && fsync(fd) != 0) {
    int saved = errno;
    close(fd);
    (void)unlink(temp.c_str());
    return ErrnoStatus(saved, "fsync label", temp);
  }
  close(fd);
  if (rename(temp.c_str(), path.c_str()) != 0) {
    int saved = errno;
    (void)unlink(temp.c_str());
    return ErrnoStatus(saved, "rename label", path);
  }
  return durable ? drivers::SyncDir(dir) : absl::OkStatus();
}

absl::Status WriteDurably(const std::string& path, const std::string& text) {
  return WriteAtomically(path, text, /*durable=*/true);
}

absl::StatusOr<std::optional<Json>> ReadJson(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0) {
    if (errno == ENOENT) return std::optional<Json>();
    return ErrnoStatus(errno, "open label", path);
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > kMaxLabelBytes) {
    close(fd);
    return absl::DataLossError(absl::StrCat("label ", path, " is not a small regular file"));
  }
  std::string text(static_cast<size_t>(st.st_size), '\0');
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = read(fd, text.data() + done, text.size() - done);
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  close(fd);
  text.resize(done);
  Json json = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object()) {
    return absl::DataLossError(absl::StrCat("label ", path, " is not valid JSON"));
  }
  return std::optional<Json>(std::move(json));
}

absl::Status RemoveFile(const std::string& path) {
  if (unlink(path.c_str()) != 0 && errno != ENOENT) return ErrnoStatus(errno, "remove", path);
  return absl::OkStatus();
}

std::string Str(const Json& json, const char* key) {
  auto it = json.find(key);
  return it != json.end() && it->is_string() ? it->get<std::string>() : std::string();
}
int64_t Int(const Json& json, const char* key) {
  auto it = json.find(key);
  return it != json.end() && it->is_number_integer() ? it->get<int64_t>() : 0;
}

Json LayerJson(const LayerRecord& layer) {
  return Json{{"kind", "layer"},
              {"chain_id", layer.chain_id},
              {"diff_id", layer.diff_id},
              {"parent_chain_id", layer.parent_chain_id},
              {"driver_id", layer.driver_id},
              {"size_bytes", layer.size_bytes},
              {"created_unix", layer.created_unix},
              {"depth", layer.depth},
              {"comment", layer.comment}};
}

LayerRecord LayerFromJson(const Json& json) {
  LayerRecord layer;
  layer.chain_id = Str(json, "chain_id");
  layer.diff_id = Str(json, "diff_id");
  layer.parent_chain_id = Str(json, "parent_chain_id");
  layer.driver_id = Str(json, "driver_id");
  layer.size_bytes = Int(json, "size_bytes");
  layer.created_unix = Int(json, "created_unix");
  layer.depth = static_cast<int>(Int(json, "depth"));
  layer.comment = Str(json, "comment");
  layer.state = "ready";
  return layer;
}

Json MountsJson(const VolumeRecord& volume, const std::vector<PublicationRecord>& publications) {
  Json targets = Json::array();
  for (const PublicationRecord& publication : publications)
    targets.push_back(
        Json{{"target_path", publication.target_path}, {"read_only", publication.read_only}});
  return Json{{"staging_path", volume.state == kVolumeStaged ? volume.staging_path : ""},
              {"publications", targets}};
}

// Identity only: where the volume is mounted lives in its mounts file (Labels::PutMounts).
Json VolumeJson(const VolumeRecord& volume) {
  return Json{{"kind", "volume"},
              {"id", volume.id},
              {"name", volume.name},
              {"request_fingerprint", volume.request_fingerprint},
              {"capacity_bytes", volume.capacity_bytes},
              {"image", volume.image},
              {"chain_id", volume.chain_id},
              {"active_id", volume.active_id},
              {"ephemeral", volume.ephemeral},
              {"created_unix", volume.created_unix}};
}

VolumeRecord VolumeFromJson(const Json& json) {
  VolumeRecord volume;
  volume.id = Str(json, "id");
  volume.name = Str(json, "name");
  volume.request_fingerprint = Str(json, "request_fingerprint");
  volume.capacity_bytes = Int(json, "capacity_bytes");
  volume.image = Str(json, "image");
  volume.chain_id = Str(json, "chain_id");
  volume.active_id = Str(json, "active_id");
  auto ephemeral = json.find("ephemeral");
  volume.ephemeral = ephemeral != json.end() && ephemeral->is_boolean() && ephemeral->get<bool>();
  volume.created_unix = Int(json, "created_unix");
  volume.staging_path = Str(json, "staging_path");
  volume.state = kVolumeReady;
  return volume;
}

std::vector<PublicationRecord> PublicationsFromJson(const Json& json, const std::string& id) {
  std::vector<PublicationRecord> publications;
  auto it = json.find("publications");
  if (it == json.end() || !it->is_array()) return publications;
  for (const Json& entry : *it) {
    if (!entry.is_object()) continue;
    PublicationRecord publication;
    publication.volume_id = id;
    publication.target_path = Str(entry, "target_path");
    auto read_only = entry.find("read_only");
    publication.read_only =
        read_only != entry.end() && read_only->is_boolean() && read_only->get<bool>();
    publication.state = "published";
    if (!publication.target_path.empty()) publications.push_back(std::move(publication));
  }
  return publications;
}

absl::StatusOr<std::vector<std::string>> ListNames(const std::string& dir) {
  std::vector<std::string> names;
  DIR* handle = opendir(dir.c_str());
  if (handle == nullptr) {
    if (errno == ENOENT) return names;
    return ErrnoStatus(errno, "list", dir);
  }
  while (dirent* entry = readdir(handle)) {
    std::string name = entry->d_name;
    if (name == "." || name == ".." || absl::EndsWith(name, ".tmp")) continue;
    names.push_back(std::move(name));
  }
  closedir(handle);
  return names;
}

}  // namespace

Labels::Labels(std::string dir) : dir_(std::move(dir)) {}

absl::Status Labels::Init() {
  for (const char* sub : {"content", "mounts", "images", "snapshots"})
    RETURN_IF_ERROR(drivers::MakeDirs(absl::StrCat(dir_, "/", sub), 0700));
  return absl::OkStatus();
}

std::string Labels::ContentPath(const std::string& driver_id) const {
  return absl::StrCat(dir_, "/content/", driver_id);
}

std::string Labels::MountsPath(const std::string& driver_id) const {
  return absl::StrCat(dir_, "/mounts/", driver_id);
}

absl::Status Labels::PutVolume(const VolumeRecord& volume) {
  RETURN_IF_ERROR(drivers::CheckIds({volume.active_id}, "label"));
  return WriteDurably(ContentPath(volume.active_id), VolumeJson(volume).dump());
}

absl::Status Labels::PutMounts(const VolumeRecord& volume,
                               const std::vector<PublicationRecord>& publications) {
  RETURN_IF_ERROR(drivers::CheckIds({volume.active_id}, "label"));
  const std::string path = MountsPath(volume.active_id);
  if (volume.state != kVolumeStaged && publications.empty()) return RemoveFile(path);
  // No sync: a mount does not outlive the kernel, so a power loss that loses this file (or leaves
  // it empty) loses nothing it described; a crash of the process leaves the old or new text.
  return WriteAtomically(path, MountsJson(volume, publications).dump(), /*durable=*/false);
}

absl::Status Labels::PutScratch(const std::string& driver_id) {
  RETURN_IF_ERROR(drivers::CheckIds({driver_id}, "label"));
  return WriteDurably(ContentPath(driver_id), Json{{"kind", "scratch"}}.dump());
}

std::string Labels::RawContent(const std::string& driver_id) const {
  if (!drivers::IsValidDriverId(driver_id)) return "";
  for (const std::string& path :
       {ContentPath(driver_id), ContentPath(driver_id) + kDeletingSuffix}) {
    absl::StatusOr<std::optional<Json>> json = ReadJson(path);
    if (json.ok() && json->has_value()) return (*json)->dump();
  }
  return "";
}

absl::Status Labels::PutLayer(const LayerRecord& layer) {
  RETURN_IF_ERROR(drivers::CheckIds({layer.driver_id}, "label"));
  return WriteDurably(ContentPath(layer.driver_id), LayerJson(layer).dump());
}

absl::Status Labels::MarkDeleting(const std::string& driver_id) {
  std::string path = ContentPath(driver_id);
  if (rename(path.c_str(), (path + kDeletingSuffix).c_str()) != 0) {
    if (errno == ENOENT) return absl::OkStatus();  // unlabelled (older store) or already marked
    return ErrnoStatus(errno, "mark label deleting", path);
  }
  return drivers::SyncDir(dir_ + "/content");
}

absl::Status Labels::UnmarkDeleting(const std::string& driver_id) {
  std::string path = ContentPath(driver_id);
  if (rename((path + kDeletingSuffix).c_str(), path.c_str()) != 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return ErrnoStatus(errno, "unmark label", path);
  }
  return drivers::SyncDir(dir_ + "/content");
}

absl::Status Labels::RemoveContent(const std::string& driver_id) {
  std::string path = ContentPath(driver_id);
  RETURN_IF_ERROR(RemoveFile(MountsPath(driver_id)));
  RETURN_IF_ERROR(RemoveFile(path));
  return RemoveFile(path + kDeletingSuffix);
}

namespace {

ContentLabel LabelFromJson(const Json& json, bool deleting) {
  ContentLabel label;
  label.deleting = deleting;
  const std::string kind = Str(json, "kind");
  if (kind == "volume") {
    label.kind = ContentLabel::Kind::kVolume;
    label.volume = VolumeFromJson(json);
    label.publications = PublicationsFromJson(json, label.volume.id);
  } else if (kind == "scratch") {
    label.kind = ContentLabel::Kind::kScratch;
  } else {
    label.kind = ContentLabel::Kind::kLayer;
    label.layer = LayerFromJson(json);
  }
  return label;
}

}  // namespace

absl::StatusOr<std::optional<ContentLabel>> Labels::GetContent(const std::string& driver_id) {
  if (!drivers::IsValidDriverId(driver_id)) return std::optional<ContentLabel>();
  std::string path = ContentPath(driver_id);
  bool deleting = false;
  ASSIGN_OR_RETURN(std::optional<Json> json, ReadJson(path));
  if (!json) {
    ASSIGN_OR_RETURN(json, ReadJson(path + kDeletingSuffix));
    deleting = true;
  }
  if (!json) return std::optional<ContentLabel>();
  ContentLabel label = LabelFromJson(*json, deleting);
  if (label.kind == ContentLabel::Kind::kVolume) {
    // A mounts file that is missing or unreadable (a power loss took its text) says nothing is
    // mounted, which after a power loss is the truth; recovery checks the mount table anyway.
    // Labels written before mounts had their own file carry the fields themselves.
    absl::StatusOr<std::optional<Json>> mounts = ReadJson(MountsPath(driver_id));
    if (mounts.ok() && mounts->has_value()) {
      label.volume.staging_path = Str(**mounts, "staging_path");
      label.publications = PublicationsFromJson(**mounts, label.volume.id);
    }
  }
  return std::optional<ContentLabel>(std::move(label));
}

std::optional<ContentLabel> Labels::Parse(const std::string& text) {
  Json json = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object()) return std::nullopt;
  return LabelFromJson(json, false);
}

absl::StatusOr<std::vector<std::string>> Labels::ListContent() {
  ASSIGN_OR_RETURN(std::vector<std::string> names, ListNames(dir_ + "/content"));
  std::vector<std::string> ids;
  for (std::string& name : names) {
    if (absl::EndsWith(name, kDeletingSuffix))
      name.resize(name.size() - sizeof(kDeletingSuffix) + 1);
    if (drivers::IsValidDriverId(name)) ids.push_back(name);
  }
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

absl::Status Labels::PutImage(const ImageRecord& image) {
  Json json{{"name", image.name},
            {"chain_id", image.chain_id},
            {"config_json", image.config_json},
            {"created_unix", image.created_unix}};
  std::string key = images::Sha256Digest(image.name).substr(7);
  return WriteDurably(absl::StrCat(dir_, "/images/", key), json.dump());
}

absl::Status Labels::RemoveImage(const std::string& name) {
  return RemoveFile(absl::StrCat(dir_, "/images/", images::Sha256Digest(name).substr(7)));
}

absl::StatusOr<std::vector<ImageRecord>> Labels::ListImages() {
  ASSIGN_OR_RETURN(std::vector<std::string> names, ListNames(dir_ + "/images"));
  std::vector<ImageRecord> images;
  for (const std::string& name : names) {
    ASSIGN_OR_RETURN(std::optional<Json> json, ReadJson(absl::StrCat(dir_, "/images/", name)));
    if (!json) continue;
    images.push_back(ImageRecord{Str(*json, "name"), Str(*json, "chain_id"),
                                 Str(*json, "config_json"), Int(*json, "created_unix")});
  }
  return images;
}

absl::Status Labels::PutSnapshot(const SnapshotRecord& snapshot) {
  if (snapshot.id.empty() || snapshot.id.find('/') != std::string::npos || snapshot.id[0] == '.')
    return absl::InvalidArgumentError("snapshot id cannot name a label file");
  Json json{{"id", snapshot.id},
            {"name", snapshot.name},
            {"source_volume_id", snapshot.source_volume_id},
            {"chain_id", snapshot.chain_id},
            {"size_bytes", snapshot.size_bytes},
            {"created_unix", snapshot.created_unix}};
  return WriteDurably(absl::StrCat(dir_, "/snapshots/", snapshot.id), json.dump());
}

absl::Status Labels::RemoveSnapshot(const std::string& id) {
  if (id.empty() || id.find('/') != std::string::npos || id[0] == '.') return absl::OkStatus();
  return RemoveFile(absl::StrCat(dir_, "/snapshots/", id));
}

absl::StatusOr<std::vector<SnapshotRecord>> Labels::ListSnapshots() {
  ASSIGN_OR_RETURN(std::vector<std::string> names, ListNames(dir_ + "/snapshots"));
  std::vector<SnapshotRecord> snapshots;
  for (const std::string& name : names) {
    ASSIGN_OR_RETURN(std::optional<Json> json, ReadJson(absl::StrCat(dir_, "/snapshots/", name)));
    if (!json) continue;
    snapshots.push_back(SnapshotRecord{
        Str(*json, "id"), Str(*json, "name"), Str(*json, "source_volume_id"),
        Str(*json, "chain_id"), Int(*json, "size_bytes"), Int(*json, "created_unix"), "ready"});
  }
  return snapshots;
}

}  // namespace strata::node
