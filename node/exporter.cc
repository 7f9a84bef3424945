#include "node/exporter.h"

#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/errno_status.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "node/images/layer_export.h"
#include "node/images/limits.h"
#include "node/paths.h"

namespace strata::node {
namespace {

// Shortest layer-id prefix accepted: 12 hex digits, as `stratactl layers` prints them.
constexpr size_t kMinPrefixHex = 12;
constexpr char kDigestPrefix[] = "sha256:";

// What lies at a save's output path before the save.
absl::Status CheckSaveOutput(const std::string& out_path, bool replace_regular_file, bool* exists) {
  struct stat st;
  *exists = false;
  if (lstat(out_path.c_str(), &st) != 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return ErrnoStatus(errno, "stat", out_path);
  }
  *exists = true;
  if (!replace_regular_file) {
    return absl::AlreadyExistsError(absl::StrCat(
        out_path, S_ISREG(st.st_mode) ? " already exists; --force replaces a regular file"
                                      : " already exists; save never replaces it"));
  }
  if (!S_ISREG(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat(out_path,
                     " exists and is not a regular file; save never replaces it, not even with "
                     "--force"));
  }
  return absl::OkStatus();
}

void RemoveOutput(const std::string& path) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) return;
  if (S_ISDIR(st.st_mode))
    (void)RemoveTree(path);
  else
    (void)unlink(path.c_str());
}

// Moves the finished output `temp` to `out_path`: never over anything, except (when
// `replace_regular_file`) over a regular file, checked again right before the rename.
absl::Status PlaceOutput(const std::string& temp, const std::string& out_path,
                         bool replace_regular_file) {
  bool exists = false;
  RETURN_IF_ERROR(CheckSaveOutput(out_path, replace_regular_file, &exists));
  if (exists) {
    struct stat st;
    if (lstat(temp.c_str(), &st) == 0 && !S_ISDIR(st.st_mode)) {
      // A file over a file: rename(2) replaces it atomically.
      if (rename(temp.c_str(), out_path.c_str()) != 0)
        return ErrnoStatus(errno, "rename to", out_path);
      return absl::OkStatus();
    }
    // A folder (OCI layout) cannot be renamed over a file: remove the file first.
    if (unlink(out_path.c_str()) != 0 && errno != ENOENT)
      return ErrnoStatus(errno, "unlink", out_path);
  }
  if (renameat2(AT_FDCWD, temp.c_str(), AT_FDCWD, out_path.c_str(), RENAME_NOREPLACE) != 0) {
    if (errno == EEXIST)
      return absl::AlreadyExistsError(absl::StrCat(out_path, " appeared while saving"));
    return ErrnoStatus(errno, "rename to", out_path);
  }
  return absl::OkStatus();
}

bool IsLowerHex(const std::string& text) {
  return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
  });
}

// The driver's writable mounts of a volume, made read-only: this is a look, never a write.
std::vector<sys::Mount> ReadOnly(std::vector<sys::Mount> mounts) {
  for (sys::Mount& mount : mounts) {
    auto& options = mount.options;
    options.erase(std::remove(options.begin(), options.end(), "rw"), options.end());
    if (std::find(options.begin(), options.end(), "ro") == options.end()) options.push_back("ro");
  }
  return mounts;
}

// Bytes under `path` (a file, or every regular file of a folder).
int64_t BytesAt(const std::string& path) {
  static thread_local int64_t total;
  total = 0;
  auto add = [](const char*, const struct stat* st, int type, struct FTW*) -> int {
    if (type == FTW_F && S_ISREG(st->st_mode)) total += st->st_size;
    return 0;
  };
  if (nftw(path.c_str(), add, 16, FTW_PHYS) != 0) return 0;
  return total;
}

// The `created_by` of an image config's history entries that made a layer, base first.
std::optional<std::vector<std::string>> LayerHistory(const std::string& config_json) {
  // Bounded: configs stored before the import bounds existed may be nested a million deep.
  absl::StatusOr<nlohmann::json> parsed = images::ParseBoundedJson(
      config_json, images::kMaxStoredJsonBytes, images::kMaxJsonDepthCeiling, "config");
  if (!parsed.ok() || !parsed->is_object()) return std::nullopt;
  const nlohmann::json& config = *parsed;
  auto history = config.find("history");
  if (history == config.end() || !history->is_array()) return std::nullopt;
  std::vector<std::string> created_by;
  for (const nlohmann::json& entry : *history) {
    if (!entry.is_object()) return std::nullopt;
    auto empty = entry.find("empty_layer");
    if (empty != entry.end() && empty->is_boolean() && empty->get<bool>()) continue;
    auto text = entry.find("created_by");
    created_by.push_back(text != entry.end() && text->is_string() ? text->get<std::string>() : "");
  }
  return created_by;
}

}  // namespace

// A private directory under the scratch dir holding read-only mounts and temporary files for
// one call. Everything mounted is unmounted by Close() or, failing that, the destructor; the
// directory is removed only once nothing is mounted in it any more.
class Exporter::Workspace {
 public:
  Workspace(sys::Mounter* mounter, std::string dir) : mounter_(mounter), dir_(std::move(dir)) {}
  ~Workspace() { (void)Close(); }
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;

  absl::Status Create() {
    RETURN_IF_ERROR(MakeDirs(dir_, 0700));
    created_ = true;
    return absl::OkStatus();
  }

  const std::string& dir() const { return dir_; }

  // Mounts `mounts` (stacked, in order) at the new directory `dir/label`.
  absl::StatusOr<std::string> Mount(const std::vector<sys::Mount>& mounts,
                                    const std::string& label) {
    if (mounts.empty()) return absl::InternalError("driver returned no mounts");
    std::string target = absl::StrCat(dir_, "/", label);
    RETURN_IF_ERROR(MakeDirs(target, 0700));
    for (const sys::Mount& mount : mounts) {
      absl::Status status = mounter_->MountAt(mount, target);
      if (!status.ok()) {
        (void)Unmount(target);
        return status;
      }
      ++mounted_[target];
    }
    return target;
  }

  // Unmounts everything at `target` (a path Mount returned).
  absl::Status Unmount(const std::string& target) {
    auto it = mounted_.find(target);
    if (it == mounted_.end()) return absl::OkStatus();
    while (it->second > 0) {
      RETURN_IF_ERROR(mounter_->Unmount(target));
      --it->second;
    }
    mounted_.erase(it);
    return absl::OkStatus();
  }

  // Unmounts everything and removes the directory. A mount that will not go is detached
  // (lazily unmounted) so the directory never keeps a view of a layer alive.
  absl::Status Close() {
    absl::Status result;
    while (!mounted_.empty()) {
      std::string target = mounted_.begin()->first;
      absl::Status status = Unmount(target);
      if (!status.ok()) {
        LogWarning("export: unmount failed; detaching",
                   {{"target", target}, {"error", status.ToString()}});
        absl::Status detached = mounter_->Unmount(target, /*detach=*/true);
        if (!detached.ok()) {
          // Keep the directory: removing it could reach into a layer through the mount.
          if (result.ok()) result = detached;
          mounted_.erase(target);
          created_ = false;
          continue;
        }
        mounted_.erase(target);
      }
    }
    if (created_) {
      absl::Status removed = RemoveTree(dir_);
      if (result.ok()) result = removed;
      created_ = false;
    }
    return result;
  }

 private:
  sys::Mounter* mounter_;
  std::string dir_;
  bool created_ = false;
  std::map<std::string, int> mounted_;  // target -> mounts stacked there
};

Exporter::Exporter(Metadata* metadata, LayerStore* layers, drivers::Driver* driver,
                   sys::Mounter* mounter, std::string scratch_dir)
    : metadata_(metadata),
      layers_(layers),
      driver_(driver),
      mounter_(mounter),
      scratch_dir_(std::move(scratch_dir)) {}

absl::Status Exporter::Recover() {
  ASSIGN_OR_RETURN(std::vector<sys::MountPoint> table, mounter_->List());
  std::vector<std::string> leftovers;
  const std::string prefix = scratch_dir_ + "/";
  for (const sys::MountPoint& point : table)
    if (point.target.rfind(prefix, 0) == 0) leftovers.push_back(point.target);
  // Deepest (and most recently stacked) first.
  std::sort(leftovers.rbegin(), leftovers.rend());
  for (const std::string& target : leftovers) {
    LogWarning("export recovery: unmounting a leftover view", {{"target", target}});
    RETURN_IF_ERROR(mounter_->Unmount(target, /*detach=*/true));
  }
  return RemoveTree(scratch_dir_);
}

absl::StatusOr<ResolvedRef> Exporter::ResolveLayerPrefix(const std::string& ref) {
  const std::string not_found = absl::StrCat("no image, snapshot or layer is called \"", ref, "\"");
  std::string hex = ref.rfind(kDigestPrefix, 0) == 0 ? ref.substr(sizeof(kDigestPrefix) - 1) : ref;
  if (!IsLowerHex(hex)) return absl::NotFoundError(not_found);
  if (hex.size() < kMinPrefixHex) {
    return absl::InvalidArgumentError(absl::StrCat("a layer id needs at least ", kMinPrefixHex,
                                                   " hex digits (got \"", ref, "\")"));
  }
  std::string prefix = absl::StrCat(kDigestPrefix, hex);
  ASSIGN_OR_RETURN(std::vector<LayerRecord> layers, metadata_->ListLayers());
  std::vector<const LayerRecord*> matches;
  for (const LayerRecord& layer : layers)
    if (layer.chain_id.rfind(prefix, 0) == 0) matches.push_back(&layer);
  if (matches.empty()) return absl::NotFoundError(not_found);
  if (matches.size() > 1) {
    return absl::InvalidArgumentError(absl::StrCat("layer id prefix \"", ref, "\" matches ",
                                                   matches.size(), " layers; give more digits"));
  }
  if (matches[0]->state != "ready") {
    return absl::FailedPreconditionError(
        absl::StrCat("layer ", matches[0]->chain_id, " is still being written"));
  }
  return ResolvedRef{ResolvedRef::kLayer, matches[0]->chain_id, matches[0]->chain_id};
}

absl::StatusOr<ResolvedRef> Exporter::Resolve(const std::string& ref) {
  if (ref.empty()) return absl::InvalidArgumentError("an image, snapshot or layer is required");
  ASSIGN_OR_RETURN(std::optional<ImageRecord> image, metadata_->GetImage(ref));
  if (image) return ResolvedRef{ResolvedRef::kImage, image->chain_id, image->name};
  ASSIGN_OR_RETURN(std::optional<SnapshotRecord> snapshot, metadata_->GetSnapshot(ref));
  if (!snapshot) {
    ASSIGN_OR_RETURN(snapshot, metadata_->GetSnapshotByName(ref));
  }
  if (snapshot) {
    if (snapshot->state != "ready" || snapshot->chain_id.empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat("snapshot ", snapshot->id, " is still being taken"));
    }
    return ResolvedRef{ResolvedRef::kSnapshot, snapshot->chain_id, snapshot->id};
  }
  return ResolveLayerPrefix(ref);
}

absl::StatusOr<ResolvedRef> Exporter::ResolveWithVolumes(const std::string& ref) {
  if (ref.empty())
    return absl::InvalidArgumentError("a volume, image, snapshot or layer is required");
  ASSIGN_OR_RETURN(std::optional<VolumeRecord> volume, metadata_->GetVolume(ref));
  if (volume) return ResolvedRef{ResolvedRef::kVolume, volume->chain_id, volume->id};
  absl::StatusOr<ResolvedRef> resolved = Resolve(ref);
  if (absl::IsNotFound(resolved.status())) {
    return absl::NotFoundError(
        absl::StrCat("no volume, image, snapshot or layer is called \"", ref, "\""));
  }
  return resolved;
}

absl::StatusOr<std::vector<LayerRecord>> Exporter::LayersOf(const std::string& chain_id) {
  ASSIGN_OR_RETURN(std::vector<LayerRecord> chain, metadata_->ChainOf(chain_id));
  for (const LayerRecord& layer : chain) {
    if (layer.state != "ready") {
      return absl::FailedPreconditionError(
          absl::StrCat("layer ", layer.chain_id, " is still being written"));
    }
  }
  return chain;
}

absl::StatusOr<std::map<std::string, std::string>> Exporter::CreatedBy(
    const std::vector<LayerRecord>& chain, const std::string& preferred_image) {
  std::map<std::string, size_t> position;  // chain id -> index in `chain` (top first)
  for (size_t i = 0; i < chain.size(); ++i) position[chain[i].chain_id] = i;
  ASSIGN_OR_RETURN(std::vector<ImageRecord> images, metadata_->ListImages());
  // The image asked for first: its history is the one the user expects to see.
  std::stable_partition(images.begin(), images.end(),
                        [&](const ImageRecord& image) { return image.name == preferred_image; });
  std::map<std::string, std::string> created_by;
  for (const ImageRecord& image : images) {
    auto top = position.find(image.chain_id);
    if (top == position.end()) continue;
    std::optional<std::vector<std::string>> history = LayerHistory(image.config_json);
    size_t layers = chain.size() - top->second;           // the image's own chain length
    if (!history || history->size() != layers) continue;  // cannot tell which is which
    for (size_t j = 0; j < layers; ++j) {
      const LayerRecord& layer = chain[chain.size() - 1 - j];  // base first
      if (!(*history)[j].empty()) created_by.emplace(layer.chain_id, (*history)[j]);
    }
  }
  return created_by;
}

absl::StatusOr<std::vector<HistoryEntry>> Exporter::History(const std::string& ref) {
  ASSIGN_OR_RETURN(ResolvedRef resolved, Resolve(ref));
  ASSIGN_OR_RETURN(std::vector<LayerRecord> chain, LayersOf(resolved.chain_id));
  using CreatedByMap = std::map<std::string, std::string>;
  ASSIGN_OR_RETURN(CreatedByMap created_by,
                   CreatedBy(chain, resolved.kind == ResolvedRef::kImage ? resolved.name : ""));
  std::vector<HistoryEntry> entries;
  absl::MutexLock lock(&mutex_);
  for (const LayerRecord& layer : chain) {
    HistoryEntry entry{layer.chain_id, layer.diff_id, layer.size_bytes, layer.created_unix,
                       layer.comment};
    if (entry.diff_id.empty()) {
      auto saved = saved_diff_ids_.find(layer.chain_id);
      if (saved != saved_diff_ids_.end()) entry.diff_id = saved->second;
    }
    if (entry.comment.empty()) {
      auto it = created_by.find(layer.chain_id);
      if (it != created_by.end()) entry.comment = it->second;
    }
    entries.push_back(std::move(entry));
  }
  return entries;
}

absl::StatusOr<std::string> Exporter::OpenTree(Workspace& work, const ResolvedRef& ref,
                                               const std::string& label) {
  if (ref.kind != ResolvedRef::kVolume) {
    ASSIGN_OR_RETURN(drivers::Chain chain, layers_->DriverChain(ref.chain_id));
    ASSIGN_OR_RETURN(std::vector<sys::Mount> mounts, driver_->View(chain));
    return work.Mount(mounts, label);
  }
  ASSIGN_OR_RETURN(std::optional<VolumeRecord> volume, metadata_->GetVolume(ref.name));
  if (!volume) return absl::NotFoundError(absl::StrCat("volume ", ref.name, " not found"));
  if (!volume->pending.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "volume ", volume->id, " has an unfinished operation (", volume->pending, ")"));
  }
  if (volume->state == kVolumeStaged) {
    // Its live mount: read in place, never written.
    ASSIGN_OR_RETURN(bool mounted, mounter_->IsMountPoint(volume->staging_path));
    if (!mounted) {
      return absl::FailedPreconditionError(absl::StrCat(
          "volume ", volume->id, " is staged at ", volume->staging_path, " but not mounted there"));
    }
    return volume->staging_path;
  }
  if (volume->state != kVolumeReady) {
    return absl::FailedPreconditionError(
        absl::StrCat("volume ", volume->id, " is ", volume->state));
  }
  ASSIGN_OR_RETURN(drivers::Chain chain, layers_->DriverChain(volume->chain_id));
  ASSIGN_OR_RETURN(std::vector<sys::Mount> mounts, driver_->Mounts(volume->active_id, chain));
  return work.Mount(ReadOnly(std::move(mounts)), label);
}

absl::StatusOr<std::vector<images::TreeChange>> Exporter::Diff(const std::string& from,
                                                               const std::string& to) {
  ASSIGN_OR_RETURN(ResolvedRef a, ResolveWithVolumes(from));
  ASSIGN_OR_RETURN(ResolvedRef b, ResolveWithVolumes(to));
  // The same state: nothing to mount (and a volume's writable layer is mounted once at most).
  if (a.kind == b.kind && a.name == b.name) return std::vector<images::TreeChange>{};
  auto pin = layers_->PinLayers();
  Workspace work(mounter_, absl::StrCat(scratch_dir_, "/diff-", RandomHex(6)));
  RETURN_IF_ERROR(work.Create());
  absl::StatusOr<std::vector<images::TreeChange>> changes =
      [&]() -> absl::StatusOr<std::vector<images::TreeChange>> {
    // A volume on the empty base that is not mounted has nothing below it to view.
    ASSIGN_OR_RETURN(std::string lower, OpenTree(work, a, "a"));
    ASSIGN_OR_RETURN(std::string upper, OpenTree(work, b, "b"));
    return images::DiffTrees(lower, upper);
  }();
  absl::Status closed = work.Close();
  if (changes.ok() && !closed.ok()) return closed;
  return changes;
}

absl::StatusOr<SaveResult> Exporter::Save(const std::string& ref, const std::string& out_path,
                                          images::ImageFormat format,
                                          const std::vector<std::string>& references,
                                          bool replace_regular_file) {
  auto started = std::chrono::steady_clock::now();
  bool output_exists = false;  // fail before the work, and check again before the rename
  RETURN_IF_ERROR(CheckSaveOutput(out_path, replace_regular_file, &output_exists));
  size_t slash = out_path.rfind('/');
  if (slash == std::string::npos) return absl::InvalidArgumentError("save path must be absolute");
  // Checked here so that the error names the user's folder, not the temporary file made in it.
  if (struct stat folder; slash > 0 && (stat(out_path.substr(0, slash).c_str(), &folder) != 0 ||
                                        !S_ISDIR(folder.st_mode))) {
    return absl::NotFoundError(absl::StrCat("save path ", out_path, ": folder ",
                                            out_path.substr(0, slash), " does not exist"));
  }
  std::string temp_path = absl::StrCat(
      out_path.substr(0, slash), "/.strata-save-", RandomHex(8),
      out_path.size() >= 4 && out_path.compare(out_path.size() - 4, 4, ".tar") == 0 ? ".tar" : "");
  ASSIGN_OR_RETURN(ResolvedRef resolved, Resolve(ref));
  auto pin = layers_->PinLayers();
  ASSIGN_OR_RETURN(std::vector<LayerRecord> chain, LayersOf(resolved.chain_id));
  ASSIGN_OR_RETURN(drivers::Chain driver_chain, layers_->DriverChain(resolved.chain_id));
  if (driver_chain.size() != chain.size()) return absl::InternalError("chain changed while read");
  std::string preferred = resolved.kind == ResolvedRef::kImage ? resolved.name : "";
  using CreatedByMap = std::map<std::string, std::string>;
  ASSIGN_OR_RETURN(CreatedByMap created_by, CreatedBy(chain, preferred));

  images::ImageToWrite image;
  image.references = references;
  if (image.references.empty() && resolved.kind == ResolvedRef::kImage)
    image.references.push_back(resolved.name);
  // The base config: the image's own, or that of the deepest image the chain stands on (its
  // Env, Cmd, ... still describe the content).
  ASSIGN_OR_RETURN(std::vector<ImageRecord> all_images, metadata_->ListImages());
  for (const LayerRecord& layer : chain) {  // top first: the first match is the deepest image
    for (const ImageRecord& candidate : all_images) {
      if (candidate.chain_id != layer.chain_id) continue;
      if (!preferred.empty() && candidate.name != preferred) continue;
      image.base_config_json = candidate.config_json;
      break;
    }
    if (!image.base_config_json.empty() || !preferred.empty()) break;
  }

  Workspace work(mounter_, absl::StrCat(scratch_dir_, "/save-", RandomHex(6)));
  RETURN_IF_ERROR(work.Create());
  absl::Status status = [&]() -> absl::Status {
    std::string lower;  // "" below the base layer: the empty tree
    for (size_t i = chain.size(); i-- > 0;) {
      const LayerRecord& layer = chain[i];
      drivers::Chain view(driver_chain.begin() + static_cast<std::ptrdiff_t>(i),
                          driver_chain.end());
      ASSIGN_OR_RETURN(std::vector<sys::Mount> mounts, driver_->View(view));
      std::string label = absl::StrCat("view-", chain.size() - i);
      ASSIGN_OR_RETURN(std::string upper, work.Mount(mounts, label));
      std::string tar = absl::StrCat(work.dir(), "/layer-", chain.size() - i, ".tar");
      ASSIGN_OR_RETURN(images::ExportResult exported, images::ExportTreeDiff(lower, upper, tar));
      if (!lower.empty()) RETURN_IF_ERROR(work.Unmount(lower));
      lower = upper;
      std::string comment = layer.comment;
      if (comment.empty()) {
        auto it = created_by.find(layer.chain_id);
        if (it != created_by.end()) comment = it->second;
      }
      image.layers.push_back({tar, exported.diff_id, layer.created_unix, comment});
    }
    if (!lower.empty()) RETURN_IF_ERROR(work.Unmount(lower));
    return images::WriteImage(image, temp_path, format);
  }();
  absl::Status closed = work.Close();
  if (status.ok()) status = closed;
  if (status.ok()) status = PlaceOutput(temp_path, out_path, replace_regular_file);
  if (!status.ok()) {
    RemoveOutput(temp_path);
    return status;
  }

  SaveResult result;
  result.chain_id = resolved.chain_id;
  result.references = image.references;
  for (const images::LayerToWrite& layer : image.layers) result.diff_ids.push_back(layer.diff_id);
  result.bytes = BytesAt(out_path);
  {
    absl::MutexLock lock(&mutex_);
    for (size_t i = 0; i < chain.size(); ++i) {
      const LayerRecord& layer = chain[chain.size() - 1 - i];
      if (layer.diff_id.empty()) saved_diff_ids_[layer.chain_id] = result.diff_ids[i];
    }
  }
  std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - started;
  LogInfo("image saved", {{"ref", ref},
                          {"chain_id", resolved.chain_id},
                          {"path", out_path},
                          {"layers", std::to_string(chain.size())},
                          {"bytes", std::to_string(result.bytes)},
                          {"seconds", absl::StrCat(elapsed.count())}});
  return result;
}

}  // namespace strata::node
