#include "node/layer_store.h"

#include <algorithm>
#include <ctime>
#include <map>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/crash_point.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "node/images/digest.h"
#include "node/images/image_archive.h"
#include "node/images/layer_tar.h"
#include "node/paths.h"

namespace strata::node {
namespace {

int64_t NowUnix() { return static_cast<int64_t>(std::time(nullptr)); }

// Image references are names an admin types; keep them printable and free of path tricks.
absl::Status ValidateImageName(const std::string& name) {
  if (name.empty() || name.size() > 255)
    return absl::InvalidArgumentError("image name must be 1-255 characters");
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == '_' || c == '/' || c == ':' || c == '@';
    if (!ok)
      return absl::InvalidArgumentError(
          absl::StrCat("image name has a bad character: ", images::Echo(name)));
  }
  return absl::OkStatus();
}

}  // namespace

LayerStore::LayerStore(Metadata* metadata, drivers::Driver* driver, sys::Mounter* mounter,
                       std::string scratch_dir, images::ImportLimits limits, StoreFiles files)
    : metadata_(metadata),
      driver_(driver),
      mounter_(mounter),
      scratch_dir_(std::move(scratch_dir)),
      limits_(limits),
      files_(files) {}

absl::StatusOr<ImportResult> LayerStore::Import(const std::string& path, const std::string& name) {
  absl::StatusOr<ImportResult> result = DoImport(path, name);
  if (!result.ok()) return images::BoundMessage(result.status());
  return result;
}

absl::StatusOr<ImportResult> LayerStore::DoImport(const std::string& path,
                                                  const std::string& name) {
  if (!name.empty()) RETURN_IF_ERROR(ValidateImageName(name));
  const std::string shown = absl::StrCat("image archive ", images::Echo(path));
  RETURN_IF_ERROR(MakeDirs(scratch_dir_, 0700));
  std::string scratch = absl::StrCat(scratch_dir_, "/import-", RandomHex(8));
  RETURN_IF_ERROR(MakeDirs(scratch, 0700));
  struct ScratchCleanup {
    std::string dir;
    ~ScratchCleanup() { (void)RemoveTree(dir); }
  } cleanup{scratch};

  // 1. Read and check the whole archive, holding no lock: this takes as long as the archive.
  ASSIGN_OR_RETURN(std::unique_ptr<images::ImageArchive> archive,
                   images::ImageArchive::Open(path, scratch, limits_));
  const auto& found = archive->images();
  if (found.empty()) return absl::InvalidArgumentError(shown + " holds no image");
  if (!name.empty() && found.size() != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        shown, " holds ", found.size(), " images; import it without a name to keep their own"));
  }
  struct Plan {
    const images::Image* image;
    std::vector<std::string> diff_ids;
    std::vector<std::string> chain_ids;
    std::vector<std::string> references;
  };
  std::vector<Plan> plans;
  for (size_t i = 0; i < found.size(); ++i) {
    Plan plan{&found[i], {}, {}, {}};
    for (const images::LayerBlob& blob : found[i].layers) plan.diff_ids.push_back(blob.diff_id);
    plan.chain_ids = images::ChainIds(plan.diff_ids);
    plan.references = name.empty() ? found[i].references : std::vector<std::string>{name};
    if (plan.references.empty()) plan.references.push_back(found[i].config_digest);
    for (const std::string& reference : plan.references) {
      absl::Status valid = ValidateImageName(reference);
      if (!valid.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat(shown, ": image ", i + 1, ": ", valid.message()));
      }
    }
    plans.push_back(std::move(plan));
  }

  // 2. Tell gc which layers this import builds on or creates, before looking at any of them.
  std::vector<std::string> claimed;
  for (const Plan& plan : plans)
    claimed.insert(claimed.end(), plan.chain_ids.begin(), plan.chain_ids.end());
  {
    std::lock_guard<std::mutex> collect(collect_mutex_);
    for (const std::string& chain_id : claimed) ++in_flight_[chain_id];
  }
  struct Unclaim {
    LayerStore* store;
    const std::vector<std::string>& chain_ids;
    ~Unclaim() {
      std::lock_guard<std::mutex> collect(store->collect_mutex_);
      for (const std::string& chain_id : chain_ids)
        if (--store->in_flight_[chain_id] == 0) store->in_flight_.erase(chain_id);
    }
  } unclaim{this, claimed};

  // 3. Write the layers. Any failure removes every layer this import created.
  std::lock_guard<std::mutex> lock(import_mutex_);
  ImportResult result;
  std::vector<NewLayer> created;
  int64_t import_bytes = 0;
  for (const Plan& plan : plans) {
    std::string parent;
    for (size_t i = 0; i < plan.image->layers.size(); ++i) {
      const images::LayerBlob& blob = plan.image->layers[i];
      images::ExtractOptions options;
      options.display_name = "layer " + images::Echo(blob.name);
      options.max_entries = limits_.max_layer_entries;
      options.max_bytes = limits_.max_layer_bytes;
      const int64_t import_left = limits_.max_import_bytes - import_bytes;
      if (import_left < options.max_bytes) {
        options.max_bytes = import_left;
        options.max_bytes_flag =
            absl::StrCat("what --max-import-bytes ", images::SizeText(limits_.max_import_bytes),
                         " leaves for this layer");
      }
      int64_t bytes = 0;
      int64_t consumed = 0;
      NewLayer layer;
      absl::StatusOr<bool> made =
          options.max_bytes <= 0
              ? absl::InvalidArgumentError(absl::StrCat(
                    options.display_name, ": the layers before it already reach the limit of ",
                    images::SizeText(limits_.max_import_bytes), " (--max-import-bytes)"))
              : ImportLayer(blob.path, plan.diff_ids[i], parent, plan.chain_ids[i],
                            static_cast<int>(i) + 1, options, &bytes, &consumed, &layer);
      if (!made.ok()) {
        RollBack(created);
        return absl::Status(made.status().code(),
                            absl::StrCat(shown, ": ", made.status().message()));
      }
      ++result.layers_total;
      if (*made) {
        created.push_back(layer);
        ++result.layers_new;
        result.bytes_new += bytes;
        import_bytes += consumed;
      }
      parent = plan.chain_ids[i];
    }
  }

  // 4. Name the images, all or none (labels first: a label the database never got is ignored
  // unless the database is lost, and then it names an image that exists).
  CrashPoint("import-before-images");
  absl::Status named = absl::OkStatus();
  if (files_.labels != nullptr) {
    for (const Plan& plan : plans) {
      const std::string top = plan.chain_ids.empty() ? "" : plan.chain_ids.back();
      for (const std::string& reference : plan.references) {
        if (!named.ok()) break;
        named = files_.labels->PutImage(
            ImageRecord{reference, top, plan.image->config_json, NowUnix()});
      }
    }
  }
  if (named.ok())
    named = metadata_->InTransaction([&]() -> absl::Status {
      for (const Plan& plan : plans) {
        const std::string top = plan.chain_ids.empty() ? "" : plan.chain_ids.back();
        for (const std::string& reference : plan.references) {
          RETURN_IF_ERROR(
              metadata_->PutImage(ImageRecord{reference, top, plan.image->config_json, NowUnix()}));
        }
      }
      return absl::OkStatus();
    });
  if (!named.ok()) {
    RollBack(created);
    return named;
  }
  for (const Plan& plan : plans) {
    const std::string top = plan.chain_ids.empty() ? "" : plan.chain_ids.back();
    result.names.insert(result.names.end(), plan.references.begin(), plan.references.end());
    result.chain_id = top;
    LogInfo("image imported", {{"path", path},
                               {"names", absl::StrJoin(plan.references, ",")},
                               {"chain_id", top},
                               {"layers", std::to_string(plan.image->layers.size())}});
  }
  return result;
}

void LayerStore::RollBack(const std::vector<NewLayer>& created) {
  for (auto it = created.rbegin(); it != created.rend(); ++it) {
    absl::Status removed = driver_->Remove(it->driver_id);
    if (removed.ok() && files_.labels != nullptr)
      removed = files_.labels->RemoveContent(it->driver_id);
    if (removed.ok()) removed = metadata_->DeleteLayer(it->chain_id);
    if (!removed.ok()) {
      // Its record stays: gc (ready) or recovery (creating) removes it later.
      LogWarning("import: cannot remove a layer of a failed import",
                 {{"chain_id", it->chain_id}, {"error", removed.ToString()}});
    }
  }
}

absl::StatusOr<bool> LayerStore::ImportLayer(const std::string& blob_path,
                                             const std::string& diff_id,
                                             const std::string& parent_chain_id,
                                             const std::string& chain_id, int depth,
                                             const images::ExtractOptions& options, int64_t* bytes,
                                             int64_t* consumed, NewLayer* created) {
  ASSIGN_OR_RETURN(std::optional<LayerRecord> existing, metadata_->GetLayer(chain_id));
  if (existing && existing->state == "ready") return false;
  drivers::Chain parents;
  if (!parent_chain_id.empty()) {
    ASSIGN_OR_RETURN(parents, DriverChain(parent_chain_id));
  }
  if (static_cast<int>(parents.size()) + 1 > driver_->limits().max_chain_depth) {
    return absl::ResourceExhaustedError(
        absl::StrCat("image has ", depth, " layers; the ", std::string(driver_->name()),
                     " driver mounts at most ", driver_->limits().max_chain_depth));
  }
  // Intent first: a crash from here on leaves a "creating" row that recovery cleans up.
  LayerRecord layer;
  if (existing) {
    layer = *existing;  // an earlier attempt died half-way: start its content again
    RETURN_IF_ERROR(driver_->Remove(layer.driver_id));
    if (files_.labels != nullptr) RETURN_IF_ERROR(files_.labels->RemoveContent(layer.driver_id));
  } else {
    ASSIGN_OR_RETURN(std::string driver_id, metadata_->NewDriverId());
    layer = LayerRecord{chain_id,  diff_id,    parent_chain_id, driver_id, 0,
                        NowUnix(), "creating", depth,           ""};
    RETURN_IF_ERROR(metadata_->PutLayer(layer));
  }
  // The content is written into an active snapshot that Commit turns into the layer.
  ASSIGN_OR_RETURN(std::string active_id, metadata_->NewDriverId());
  // No record names the active: its scratch label lets recovery remove it, not quarantine it.
  if (files_.labels != nullptr) RETURN_IF_ERROR(files_.labels->PutScratch(active_id));
  absl::Status status = driver_->Prepare(active_id, parents, drivers::PrepareOptions{});
  CrashPoint("import-after-intent");
  if (status.ok()) {
    absl::StatusOr<images::ExtractResult> extracted =
        WriteLayerContent(active_id, parents, blob_path, diff_id, options);
    status = extracted.status();
    if (extracted.ok())
      *consumed = std::max(extracted->uncompressed_bytes, extracted->apparent_bytes);
  }
  if (status.ok()) {
    status = driver_->Commit(layer.driver_id, active_id, parents, drivers::CommitMode::kConsume);
  }
  auto forget_active = [&]() {
    if (driver_->Remove(active_id).ok() && files_.labels != nullptr)
      (void)files_.labels->RemoveContent(active_id);
  };
  auto forget_layer = [&]() {
    if (driver_->Remove(layer.driver_id).ok() && files_.labels != nullptr)
      (void)files_.labels->RemoveContent(layer.driver_id);
    (void)metadata_->DeleteLayer(chain_id);
  };
  if (!status.ok()) {
    forget_active();
    forget_layer();
    return status;
  }
  CrashPoint("import-after-commit");
  forget_active();  // kConsume leaves nothing, but a driver may keep a stub
  *created = NewLayer{chain_id, layer.driver_id};
  absl::StatusOr<drivers::Usage> usage = driver_->GetUsage(layer.driver_id);
  if (usage.ok()) {
    layer.size_bytes = usage->bytes;
    layer.state = "ready";
    // The label before the record says ready: a lost database can re-adopt the layer.
    status = files_.labels != nullptr ? files_.labels->PutLayer(layer) : absl::OkStatus();
    if (status.ok()) status = metadata_->PutLayer(layer);
  } else {
    status = usage.status();
  }
  if (!status.ok()) {
    forget_layer();
    return status;
  }
  *bytes = usage->bytes;
  LogInfo("layer stored", {{"chain_id", chain_id},
                           {"diff_id", diff_id},
                           {"driver_id", layer.driver_id},
                           {"bytes", std::to_string(usage->bytes)}});
  return true;
}

absl::StatusOr<images::ExtractResult> LayerStore::WriteLayerContent(
    const std::string& active_id, const drivers::Chain& parents, const std::string& blob_path,
    const std::string& diff_id, const images::ExtractOptions& options) {
  absl::StatusOr<drivers::ApplyTarget> target = driver_->DirectWriteTarget(active_id);
  if (target.ok()) {
    return images::ExtractLayer(blob_path, target->directory, target->whiteouts, diff_id, options);
  }
  if (!absl::IsUnimplemented(target.status())) return target.status();
  // The driver's content is only reachable mounted (devmapper): mount, apply, unmount.
  ASSIGN_OR_RETURN(std::vector<sys::Mount> mounts, driver_->Mounts(active_id, parents));
  if (mounts.size() != 1)
    return absl::InternalError("driver returned several mounts for one writable layer");
  std::string mount_point = absl::StrCat(scratch_dir_, "/apply-", active_id);
  RETURN_IF_ERROR(MakeDirs(mount_point, 0700));
  RETURN_IF_ERROR(mounter_->MountAt(mounts[0], mount_point));
  absl::StatusOr<images::ExtractResult> extracted = images::ExtractLayer(
      blob_path, mount_point, drivers::WhiteoutStyle::kApply, diff_id, options);
  absl::Status unmounted = mounter_->Unmount(mount_point);
  (void)RemoveTree(mount_point);
  if (extracted.ok() && !unmounted.ok()) return unmounted;
  return extracted;
}

absl::StatusOr<ImageRecord> LayerStore::ResolveImage(const std::string& name) {
  ASSIGN_OR_RETURN(std::optional<ImageRecord> image, metadata_->GetImage(name));
  if (!image) {
    return absl::NotFoundError(absl::StrCat(
        "image \"", name, "\" is not in this node's store; import it with `stratactl import`"));
  }
  return *image;
}

absl::StatusOr<drivers::Chain> LayerStore::DriverChain(const std::string& chain_id) {
  if (chain_id.empty()) return drivers::Chain();
  ASSIGN_OR_RETURN(std::vector<LayerRecord> layers, metadata_->ChainOf(chain_id));
  return DriverChainOf(layers);
}

absl::StatusOr<drivers::Chain> LayerStore::DriverChainOf(const std::vector<LayerRecord>& layers) {
  drivers::Chain chain;
  for (const LayerRecord& layer : layers) {
    if (layer.state != "ready")
      return absl::UnavailableError(absl::StrCat("layer ", layer.chain_id, " is being imported"));
    chain.push_back(layer.driver_id);
  }
  return chain;
}

absl::Status LayerStore::RemoveImage(const std::string& name) {
  ASSIGN_OR_RETURN(std::optional<ImageRecord> image, metadata_->GetImage(name));
  if (!image) return absl::NotFoundError(absl::StrCat("image \"", name, "\" not found"));
  RETURN_IF_ERROR(metadata_->DeleteImage(name));
  if (files_.labels != nullptr) return files_.labels->RemoveImage(name);
  return absl::OkStatus();
}

absl::StatusOr<GcResult> LayerStore::GarbageCollect(bool dry_run) {
  return Collect(dry_run, /*commits_only=*/false);
}

absl::StatusOr<GcResult> LayerStore::CollectUnreferencedCommits() {
  return Collect(/*dry_run=*/false, /*commits_only=*/true);
}

absl::StatusOr<GcResult> LayerStore::Collect(bool dry_run, bool commits_only) {
  // Not import_mutex_: an import in flight registers its layers in in_flight_ instead.
  std::lock_guard<std::mutex> lock(collect_mutex_);
  std::unique_lock<std::shared_mutex> no_pins(pin_mutex_);
  GcResult result;
  std::vector<LayerRecord> removed;
  RETURN_IF_ERROR(metadata_->InTransaction([&]() -> absl::Status {
    ASSIGN_OR_RETURN(std::vector<LayerRecord> layers, metadata_->ListLayers());
    // Count every reference once, in memory: a per-layer query made deleting a volume with a
    // 1,000-commit history quadratic.
    std::map<std::string, int> references;
    ASSIGN_OR_RETURN(std::vector<ImageRecord> images, metadata_->ListImages());
    for (const ImageRecord& image : images) ++references[image.chain_id];
    ASSIGN_OR_RETURN(std::vector<VolumeRecord> volumes, metadata_->ListVolumes());
    for (const VolumeRecord& volume : volumes) ++references[volume.chain_id];
    ASSIGN_OR_RETURN(std::vector<SnapshotRecord> snapshots, metadata_->ListSnapshots());
    for (const SnapshotRecord& snapshot : snapshots) ++references[snapshot.chain_id];
    for (const LayerRecord& layer : layers) ++references[layer.parent_chain_id];
    // Deepest first (children are always deeper than their parents), so a chain whose top
    // goes frees its parents in the same pass.
    for (auto it = layers.rbegin(); it != layers.rend(); ++it) {
      if (it->state != "ready") continue;  // an import is writing it (or died doing so)
      if (in_flight_.count(it->chain_id) > 0) continue;  // an import builds on it
      if (commits_only && !it->diff_id.empty()) continue;
      if (references[it->chain_id] > 0) continue;
      --references[it->parent_chain_id];
      removed.push_back(*it);
    }
    if (dry_run) return absl::OkStatus();
    for (const LayerRecord& layer : removed) {
      // Marked before the database forgets it: recovery then finishes the removal instead of
      // quarantining content the store itself decided to delete.
      if (files_.labels != nullptr) RETURN_IF_ERROR(files_.labels->MarkDeleting(layer.driver_id));
      RETURN_IF_ERROR(metadata_->DeleteLayer(layer.chain_id));
    }
    return absl::OkStatus();
  }));
  for (const LayerRecord& layer : removed) {
    if (!dry_run) {
      absl::Status status = driver_->Remove(layer.driver_id);
      if (status.ok() && files_.labels != nullptr)
        status = files_.labels->RemoveContent(layer.driver_id);
      if (!status.ok()) {
        LogWarning("gc: removing layer content failed; recovery retries at next start",
                   {{"chain_id", layer.chain_id}, {"error", status.ToString()}});
      }
    }
    result.removed_chain_ids.push_back(layer.chain_id);
    result.bytes_freed += layer.size_bytes;
  }
  return result;
}

absl::Status LayerStore::Recover(const std::vector<std::string>& keep_driver_ids) {
  std::lock_guard<std::mutex> lock(import_mutex_);
  ASSIGN_OR_RETURN(std::vector<LayerRecord> layers, metadata_->ListLayers());
  std::set<std::string> known(keep_driver_ids.begin(), keep_driver_ids.end());
  for (const LayerRecord& layer : layers) {
    if (layer.state == "ready") {
      known.insert(layer.driver_id);
      continue;
    }
    LogWarning("recovery: removing a layer whose import did not finish",
               {{"chain_id", layer.chain_id}, {"driver_id", layer.driver_id}});
    RETURN_IF_ERROR(driver_->Remove(layer.driver_id));
    if (files_.labels != nullptr) RETURN_IF_ERROR(files_.labels->RemoveContent(layer.driver_id));
    RETURN_IF_ERROR(metadata_->DeleteLayer(layer.chain_id));
  }
  // A plugin killed mid-import (devmapper) or mid-flatten left a private mount in the scratch
  // folder: take it down first, or nothing below could be removed and the plugin would not start.
  ASSIGN_OR_RETURN(std::vector<sys::MountPoint> mounts, mounter_->List());
  for (auto it = mounts.rbegin(); it != mounts.rend(); ++it) {
    if (it->target.rfind(scratch_dir_ + "/", 0) != 0) continue;
    LogWarning("recovery: unmounting a leftover private mount", {{"target", it->target}});
    RETURN_IF_ERROR(mounter_->Unmount(it->target, /*detach=*/true));
  }
  ASSIGN_OR_RETURN(std::vector<std::string> stored, driver_->Walk());
  std::set<std::string> on_disk(stored.begin(), stored.end());
  for (const std::string& id : stored) {
    // A restored or lost database must never hand out an id that exists on disk.
    RETURN_IF_ERROR(metadata_->ReserveDriverIdsThrough(id));
    if (known.count(id)) continue;
    std::optional<ContentLabel> label;
    if (files_.labels != nullptr) {
      absl::StatusOr<std::optional<ContentLabel>> read = files_.labels->GetContent(id);
      if (read.ok()) label = *read;
    }
    if (label && (label->deleting || label->kind == ContentLabel::Kind::kScratch)) {
      // Accounted for: the store was deleting it, or it was a temporary of a step that died.
      LogInfo("recovery: finishing the removal of content the store was deleting or scratch",
              {{"driver_id", id}});
      RETURN_IF_ERROR(driver_->Remove(id));
      RETURN_IF_ERROR(files_.labels->RemoveContent(id));
      continue;
    }
    const std::string reason =
        label ? "its label says it is store content, but the database has no record of it "
                "(a lost database, or one restored from an older backup)"
              : "no record and no label: left by a step that never completed";
    if (files_.quarantine == nullptr) {
      LogWarning("recovery: driver content no metadata refers to stays where it is",
                 {{"driver_id", id}, {"reason", reason}});
      continue;
    }
    std::string raw = files_.labels != nullptr ? files_.labels->RawContent(id) : "";
    absl::StatusOr<QuarantineEntry> moved = files_.quarantine->Put(id, reason, raw);
    if (moved.ok()) {
      if (files_.labels != nullptr) (void)files_.labels->RemoveContent(id);
      continue;
    }
    if (absl::IsNotFound(moved.status())) continue;  // only half-made leftovers were there
    // Never a reason to delete, nor to keep the plugin from starting: it stays, loudly.
    LogWarning("recovery: cannot quarantine driver content no metadata refers to; it stays",
               {{"driver_id", id}, {"error", moved.status().ToString()}});
  }
  if (files_.labels != nullptr) {
    // Labels whose content is gone (a crash between removing the content and its label).
    absl::StatusOr<std::vector<std::string>> labelled = files_.labels->ListContent();
    if (labelled.ok()) {
      for (const std::string& id : *labelled)
        if (!on_disk.count(id) && !known.count(id)) (void)files_.labels->RemoveContent(id);
    }
  }
  if (files_.quarantine != nullptr) files_.quarantine->RefreshGauges();
  return RemoveTree(scratch_dir_);
}

absl::StatusOr<int64_t> LayerStore::SharedBytes() {
  ASSIGN_OR_RETURN(std::vector<LayerRecord> layers, metadata_->ListLayers());
  std::map<std::string, const LayerRecord*> by_chain;
  for (const LayerRecord& layer : layers) by_chain[layer.chain_id] = &layer;
  std::map<std::string, int64_t> users;
  auto use_chain = [&](std::string chain_id) {
    while (!chain_id.empty()) {
      auto it = by_chain.find(chain_id);
      if (it == by_chain.end()) break;
      ++users[chain_id];
      chain_id = it->second->parent_chain_id;
    }
  };
  ASSIGN_OR_RETURN(std::vector<ImageRecord> images, metadata_->ListImages());
  for (const ImageRecord& image : images) use_chain(image.chain_id);
  ASSIGN_OR_RETURN(std::vector<VolumeRecord> volumes, metadata_->ListVolumes());
  for (const VolumeRecord& volume : volumes) use_chain(volume.chain_id);
  ASSIGN_OR_RETURN(std::vector<SnapshotRecord> snapshots, metadata_->ListSnapshots());
  for (const SnapshotRecord& snapshot : snapshots) use_chain(snapshot.chain_id);
  int64_t shared = 0;
  for (const auto& [chain_id, count] : users)
    if (count > 1) shared += by_chain[chain_id]->size_bytes * (count - 1);
  return shared;
}

absl::StatusOr<StoreStats> LayerStore::Stats() {
  StoreStats stats;
  ASSIGN_OR_RETURN(std::vector<LayerRecord> layers, metadata_->ListLayers());
  for (const LayerRecord& layer : layers) {
    if (layer.state != "ready") continue;
    ++stats.layers;
    stats.layer_bytes += layer.size_bytes;
  }
  ASSIGN_OR_RETURN(std::vector<ImageRecord> images, metadata_->ListImages());
  stats.images = static_cast<int64_t>(images.size());
  return stats;
}

}  // namespace strata::node
