// VolumeManager: re-adopting a store from its labels after the database was lost, and putting
// quarantined content back (issue 8). See node/labels.h for what the labels promise.
#include <algorithm>
#include <ctime>
#include <map>
#include <optional>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "node/images/digest.h"
#include "node/paths.h"
#include "node/volume_manager.h"

namespace strata::node {
namespace {

int64_t NowUnix() { return static_cast<int64_t>(std::time(nullptr)); }

// Driver ids are base-36 counters handed out in order: the longer, then the larger, is newer.
bool NewerId(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return a.size() > b.size();
  return a > b;
}

}  // namespace

absl::StatusOr<ReadoptResult> VolumeManager::Readopt() {
  Labels* labels = layers_->labels();
  if (labels == nullptr) return absl::FailedPreconditionError("this store keeps no labels");
  ASSIGN_OR_RETURN(std::vector<std::string> stored, driver_->Walk());
  std::vector<LayerRecord> layer_labels;
  std::map<std::string, std::pair<VolumeRecord, std::vector<PublicationRecord>>> volume_labels;
  for (const std::string& id : stored) {
    absl::StatusOr<std::optional<ContentLabel>> label = labels->GetContent(id);
    if (!label.ok()) {
      LogWarning("readopt: unreadable label; the content goes to quarantine",
                 {{"driver_id", id}, {"error", label.status().ToString()}});
      continue;
    }
    if (!label->has_value() || (*label)->deleting) continue;
    const ContentLabel& found = **label;
    if (found.kind == ContentLabel::Kind::kLayer && found.layer.driver_id == id &&
        !found.layer.chain_id.empty()) {
      layer_labels.push_back(found.layer);
    } else if (found.kind == ContentLabel::Kind::kVolume && found.volume.active_id == id &&
               !found.volume.id.empty()) {
      // A commit that rebased a volume and died before removing the old writable layer leaves
      // two labels of one volume: the newer writable layer is the volume's.
      auto it = volume_labels.find(found.volume.id);
      if (it == volume_labels.end() || NewerId(id, it->second.first.active_id))
        volume_labels[found.volume.id] = {found.volume, found.publications};
    }
  }
  // Parents before children (a layer is deeper than its parent).
  std::sort(layer_labels.begin(), layer_labels.end(),
            [](const LayerRecord& a, const LayerRecord& b) { return a.depth < b.depth; });
  ASSIGN_OR_RETURN(std::vector<SnapshotRecord> snapshot_labels, labels->ListSnapshots());
  ASSIGN_OR_RETURN(std::vector<ImageRecord> image_labels, labels->ListImages());

  ReadoptResult result;
  RETURN_IF_ERROR(metadata_->InTransaction([&]() -> absl::Status {
    result = ReadoptResult{};
    for (const std::string& id : stored) RETURN_IF_ERROR(metadata_->ReserveDriverIdsThrough(id));
    // What the database still knows stays as it is; labels only fill in what it lost.
    std::set<std::string> chains;
    ASSIGN_OR_RETURN(std::vector<LayerRecord> known_layers, metadata_->ListLayers());
    for (const LayerRecord& layer : known_layers)
      if (layer.state == "ready") chains.insert(layer.chain_id);
    std::set<std::string> names;
    ASSIGN_OR_RETURN(std::vector<VolumeRecord> known_volumes, metadata_->ListVolumes());
    std::set<std::string> volume_ids;
    for (const VolumeRecord& volume : known_volumes) {
      names.insert(volume.name);
      volume_ids.insert(volume.id);
    }
    for (LayerRecord layer : layer_labels) {
      if (chains.count(layer.chain_id)) continue;  // known, or a duplicate: quarantined later
      if (!layer.parent_chain_id.empty() && !chains.count(layer.parent_chain_id)) {
        LogWarning("readopt: a layer's parent is missing; the layer goes to quarantine",
                   {{"chain_id", layer.chain_id}, {"parent", layer.parent_chain_id}});
        continue;
      }
      layer.state = "ready";
      RETURN_IF_ERROR(metadata_->PutLayer(layer));
      chains.insert(layer.chain_id);
      ++result.layers;
    }
    for (auto& [volume_id, labelled] : volume_labels) {
      VolumeRecord volume = labelled.first;
      if (volume_ids.count(volume_id)) continue;
      if (!volume.chain_id.empty() && !chains.count(volume.chain_id)) {
        LogWarning("readopt: a volume's chain is missing; its writable layer goes to quarantine",
                   {{"volume", volume.id}, {"chain_id", volume.chain_id}});
        continue;
      }
      if (!names.insert(volume.name).second) continue;
      volume.state = kVolumeReady;
      volume.pending = "";
      std::string staging = volume.staging_path;
      volume.staging_path = "";
      // A mount that survived the crash keeps working: a kubelet retrying NodeStage or
      // NodePublish finds the volume staged or published, and nothing is unmounted.
      if (!staging.empty()) {
        ASSIGN_OR_RETURN(bool mounted, mounter_->IsMountPoint(staging));
        if (mounted) {
          volume.state = kVolumeStaged;
          volume.staging_path = staging;
          ++result.staged;
        }
      }
      RETURN_IF_ERROR(metadata_->PutVolume(volume));
      ++result.volumes;
      if (volume.state != kVolumeStaged) continue;
      for (const PublicationRecord& publication : labelled.second) {
        ASSIGN_OR_RETURN(bool mounted, mounter_->IsMountPoint(publication.target_path));
        if (!mounted) continue;
        RETURN_IF_ERROR(metadata_->PutPublication(publication));
        ++result.publications;
      }
    }
    for (const SnapshotRecord& snapshot : snapshot_labels) {
      if (snapshot.id.empty() || !chains.count(snapshot.chain_id)) continue;
      ASSIGN_OR_RETURN(std::optional<SnapshotRecord> known, metadata_->GetSnapshot(snapshot.id));
      if (known) continue;
      RETURN_IF_ERROR(metadata_->PutSnapshot(snapshot));
      ++result.snapshots;
    }
    for (const ImageRecord& image : image_labels) {
      if (image.name.empty() || (!image.chain_id.empty() && !chains.count(image.chain_id)))
        continue;
      ASSIGN_OR_RETURN(std::optional<ImageRecord> known, metadata_->GetImage(image.name));
      if (known) continue;
      RETURN_IF_ERROR(metadata_->PutImage(image));
      ++result.images;
    }
    return absl::OkStatus();
  }));
  return result;
}

absl::StatusOr<RestoreResult> VolumeManager::RestoreQuarantined(const std::string& entry_name,
                                                                const std::string& volume_name) {
  Quarantine* quarantine = layers_->quarantine();
  if (quarantine == nullptr) return absl::FailedPreconditionError("this store has no quarantine");
  ASSIGN_OR_RETURN(QuarantineEntry entry, quarantine->Get(entry_name));
  std::optional<ContentLabel> label;
  if (!entry.label.empty()) label = Labels::Parse(entry.label);
  drivers::ContentKind kind = ParseContentKind(entry.kind);
  if (kind == drivers::ContentKind::kUnknown) {
    kind = label && label->kind == ContentLabel::Kind::kLayer ? drivers::ContentKind::kLayer
                                                              : drivers::ContentKind::kActive;
  }
  RestoreResult result;
  if (!volume_name.empty()) {
    ASSIGN_OR_RETURN(std::optional<VolumeRecord> taken, metadata_->GetVolumeByName(volume_name));
    if (taken) {
      return absl::AlreadyExistsError(
          absl::StrCat("a volume named \"", volume_name, "\" exists; choose another --volume"));
    }
  }
  ASSIGN_OR_RETURN(std::string driver_id, metadata_->NewDriverId());

  if (kind == drivers::ContentKind::kLayer) {
    LayerRecord layer;
    bool as_labelled = false;
    if (label && label->kind == ContentLabel::Kind::kLayer) {
      layer = label->layer;
      ASSIGN_OR_RETURN(std::optional<LayerRecord> same, metadata_->GetLayer(layer.chain_id));
      std::optional<LayerRecord> parent;
      if (!layer.parent_chain_id.empty()) {
        ASSIGN_OR_RETURN(parent, metadata_->GetLayer(layer.parent_chain_id));
      }
      as_labelled =
          !same && (layer.parent_chain_id.empty() || (parent && parent->state == "ready"));
    }
    if (!as_labelled) {
      // Its place in a chain is unknown: it becomes a base layer of its own.
      layer = LayerRecord{};
      layer.chain_id =
          images::Sha256Digest(absl::StrCat("strata-restored ", entry.name, " ", RandomHex(16)));
      layer.depth = 1;
      layer.comment = absl::StrCat("restored from quarantine entry ", entry.name);
      result.note = "restored as a base layer (its parent chain is not known here)";
    }
    layer.driver_id = driver_id;
    layer.created_unix = layer.created_unix != 0 ? layer.created_unix : NowUnix();
    layer.state = "creating";
    RETURN_IF_ERROR(metadata_->PutLayer(layer));
    absl::Status taken = quarantine->Take(entry.name, kind, driver_id);
    if (!taken.ok()) {
      (void)metadata_->DeleteLayer(layer.chain_id);
      return taken;
    }
    absl::StatusOr<drivers::Usage> usage = driver_->GetUsage(driver_id);
    if (usage.ok()) layer.size_bytes = usage->bytes;
    layer.state = "ready";
    if (layers_->labels() != nullptr) RETURN_IF_ERROR(layers_->labels()->PutLayer(layer));
    RETURN_IF_ERROR(metadata_->PutLayer(layer));
    result.chain_id = layer.chain_id;
    if (!volume_name.empty()) {
      VolumeRecord volume;
      volume.id = absl::StrCat("vol-", RandomHex(8));
      volume.name = volume_name;
      volume.request_fingerprint = absl::StrCat("restored from quarantine ", entry.name);
      volume.chain_id = layer.chain_id;
      ASSIGN_OR_RETURN(result.volume, MakeVolume(std::move(volume)));
    }
    quarantine->RefreshGauges();
    return result;
  }

  // A writable layer: a volume again.
  VolumeRecord volume;
  if (label && label->kind == ContentLabel::Kind::kVolume) volume = label->volume;
  std::string name = !volume_name.empty() ? volume_name : volume.name;
  if (name.empty()) {
    return absl::InvalidArgumentError(
        "this entry has no label naming its volume: give the new volume a name (--volume NAME)");
  }
  ASSIGN_OR_RETURN(std::optional<VolumeRecord> same_name, metadata_->GetVolumeByName(name));
  if (same_name) {
    return absl::AlreadyExistsError(
        absl::StrCat("a volume named \"", name, "\" exists; choose another --volume"));
  }
  std::optional<VolumeRecord> same_id;
  if (!volume.id.empty()) {
    ASSIGN_OR_RETURN(same_id, metadata_->GetVolume(volume.id));
  }
  bool back_where_it_was = !volume.id.empty() && !same_id && name == volume.name;
  if (!back_where_it_was) {
    volume.id = absl::StrCat("vol-", RandomHex(8));
    volume.request_fingerprint = absl::StrCat("restored from quarantine ", entry.name);
  }
  volume.name = name;
  volume.ephemeral = false;
  volume.staging_path = "";
  volume.pending = "";
  if (!volume.chain_id.empty() && !layers_->DriverChain(volume.chain_id).ok()) {
    result.note = absl::StrCat("its chain ", volume.chain_id,
                               " is not in this store: restored on the empty base");
    volume.chain_id = "";
  }
  if (volume.created_unix == 0) volume.created_unix = NowUnix();
  volume.active_id = driver_id;
  volume.state = kVolumeCreating;
  RETURN_IF_ERROR(metadata_->PutVolume(volume));
  absl::Status taken = quarantine->Take(entry.name, kind, driver_id);
  if (!taken.ok()) {
    (void)metadata_->DeleteVolume(volume.id);
    return taken;
  }
  volume.state = kVolumeReady;
  RETURN_IF_ERROR(Relabel(volume));
  RETURN_IF_ERROR(metadata_->PutVolume(volume));
  LogInfo("volume restored from quarantine",
          {{"entry", entry.name}, {"volume", volume.id}, {"name", volume.name}});
  quarantine->RefreshGauges();
  result.volume = volume;
  return result;
}

}  // namespace strata::node
