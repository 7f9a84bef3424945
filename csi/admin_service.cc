#include "csi/admin_service.h"

#include <time.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <map>
#include <optional>
#include <set>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "csi/status_mapping.h"
#include "nlohmann/json.hpp"
#include "node/paths.h"
#include "strata/version.h"

namespace strata::csi {
namespace {

namespace pb = strata::admin::v1;
using node::ImageRecord;
using node::LayerRecord;
using node::VolumeRecord;
using Json = nlohmann::ordered_json;

// Most an image config may take in Inspect's reply, rendered (an upper estimate of dump(2)).
constexpr int64_t kMaxInspectConfigBytes = int64_t{8} << 20;

// Sets doc["config"] to the image config, parsed, when that is safe to render. Configs stored by
// older versions were not bounded at import: one nested a million deep crashed the (recursive)
// serializer, one 20,000 deep rendered to ~800 MB. Such a config, or one that is not JSON, is
// described instead (config_error, config_bytes, and its first bytes as config_head).
void AddConfig(const std::string& text, const images::ImportLimits& limits, Json* doc) {
  std::string problem;
  images::JsonShape shape = images::ScanJson(text, limits.max_json_depth);
  if (static_cast<int64_t>(text.size()) > limits.max_json_bytes) {
    problem = absl::StrCat("stored config has ", text.size(), " bytes, more than the limit of ",
                           images::SizeText(limits.max_json_bytes), " (--max-json-bytes)");
  } else if (shape.depth_exceeded) {
    problem = absl::StrCat("stored config is nested deeper than the limit of ",
                           limits.max_json_depth, " (--max-json-depth)");
  } else if (shape.pretty_bytes > kMaxInspectConfigBytes) {
    problem = absl::StrCat("stored config would render to more than ",
                           images::SizeText(kMaxInspectConfigBytes));
  } else {
    Json config = Json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (!config.is_discarded()) {
      (*doc)["config"] = std::move(config);
      return;
    }
    problem = "stored config is not valid JSON";
  }
  (*doc)["config"] = nullptr;
  (*doc)["config_error"] = problem + "; not shown";
  (*doc)["config_bytes"] = text.size();
  (*doc)["config_head"] = images::Echo(text);
}

// Shortest layer-id prefix Inspect accepts: 12 hex digits, as `stratactl layers` prints them.
constexpr size_t kMinPrefixHex = 12;
constexpr char kDigestPrefix[] = "sha256:";

// Times one admin call and logs it as one line when it ends. It also passes the call through
// the plugin's CallGate (when there is one): nothing but Version is served before start-up
// recovery is done, and SIGTERM waits for admitted calls to finish.
class CallLog {
 public:
  CallLog(CallGate* gate, const char* method, std::string subject, bool needs_ready = true)
      : gate_(gate),
        method_(method),
        subject_(std::move(subject)),
        start_(std::chrono::steady_clock::now()) {
    if (gate_ != nullptr) admission_ = gate_->Enter(needs_ready);
  }
  ~CallLog() {
    if (gate_ != nullptr && admission_.ok()) gate_->Exit();
  }
  CallLog(const CallLog&) = delete;
  CallLog& operator=(const CallLog&) = delete;

  // False when the gate turned the call away; answer with Rejected().
  bool admitted() const { return admission_.ok(); }
  grpc::Status Rejected() { return Finish(admission_); }

  grpc::Status Finish(const absl::Status& status) {
    std::chrono::duration<double, std::milli> elapsed = std::chrono::steady_clock::now() - start_;
    grpc::Status result = ToGrpcStatus(status);
    std::string millis = absl::StrCat(static_cast<int64_t>(elapsed.count() * 1000) / 1000.0);
    const std::string code = GrpcCodeName(result.error_code());
    if (status.ok()) {
      LogInfo("admin call",
              {{"method", method_}, {"subject", subject_}, {"code", code}, {"ms", millis}});
    } else if (absl::IsInternal(status) || absl::IsUnknown(status) || absl::IsDataLoss(status)) {
      LogError("admin call failed", {{"method", method_},
                                     {"subject", subject_},
                                     {"code", code},
                                     {"ms", millis},
                                     {"error", std::string(status.message())}});
    } else {
      LogInfo("admin call", {{"method", method_},
                             {"subject", subject_},
                             {"code", code},
                             {"ms", millis},
                             {"error", std::string(status.message())}});
    }
    return result;
  }

 private:
  CallGate* gate_;
  absl::Status admission_;
  const char* method_;
  std::string subject_;
  std::chrono::steady_clock::time_point start_;
};

std::string Rfc3339(int64_t unix_seconds) {
  time_t t = static_cast<time_t>(unix_seconds);
  struct tm tm;
  if (gmtime_r(&t, &tm) == nullptr) return "";
  char buffer[32];
  size_t n = strftime(buffer, sizeof(buffer), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return std::string(buffer, n);
}

// One consistent read of every table the admin views join, so a listing never mixes states.
struct StoreView {
  std::vector<LayerRecord> layers;            // ordered by depth, then chain id
  std::map<std::string, size_t> layer_index;  // chain id -> position in `layers`
  std::map<std::string, int> references;      // chain id -> Metadata::LayerReferences
  std::vector<ImageRecord> images;
  std::vector<VolumeRecord> volumes;  // every volume, whatever its state: all hold their chain
  std::vector<node::SnapshotRecord> snapshots;

  const LayerRecord* Layer(const std::string& chain_id) const {
    auto it = layer_index.find(chain_id);
    return it == layer_index.end() ? nullptr : &layers[it->second];
  }

  // The chain from `chain_id` down to its base, top first. Stops at a missing link (which the
  // metadata's foreign keys should make impossible) and at a cycle instead of looping.
  std::vector<const LayerRecord*> Chain(const std::string& chain_id) const {
    std::vector<const LayerRecord*> chain;
    std::string next = chain_id;
    while (!next.empty() && chain.size() <= layers.size()) {
      const LayerRecord* layer = Layer(next);
      if (layer == nullptr) break;
      chain.push_back(layer);
      next = layer->parent_chain_id;
    }
    return chain;
  }

  bool ChainContains(const std::string& top, const std::string& chain_id) const {
    for (const LayerRecord* layer : Chain(top))
      if (layer->chain_id == chain_id) return true;
    return false;
  }
};

absl::StatusOr<StoreView> ReadStore(node::Metadata* metadata) {
  StoreView view;
  RETURN_IF_ERROR(metadata->InTransaction([&]() -> absl::Status {
    ASSIGN_OR_RETURN(view.layers, metadata->ListLayers());
    ASSIGN_OR_RETURN(view.images, metadata->ListImages());
    ASSIGN_OR_RETURN(view.volumes, metadata->ListVolumes());
    ASSIGN_OR_RETURN(view.snapshots, metadata->ListSnapshots());
    for (size_t i = 0; i < view.layers.size(); ++i) {
      view.layer_index[view.layers[i].chain_id] = i;
      ASSIGN_OR_RETURN(view.references[view.layers[i].chain_id],
                       metadata->LayerReferences(view.layers[i].chain_id));
    }
    return absl::OkStatus();
  }));
  return view;
}

int64_t ChainBytes(const std::vector<const LayerRecord*>& chain) {
  int64_t bytes = 0;
  for (const LayerRecord* layer : chain) bytes += layer->size_bytes;
  return bytes;
}

bool IsLowerHex(const std::string& text) {
  return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
  });
}

// Input checks shared by the calls that take a name or an id: present, printable, bounded.
absl::Status ValidateToken(const std::string& value, const std::string& field) {
  if (value.empty()) return absl::InvalidArgumentError(absl::StrCat(field, " is required"));
  if (value.size() > 512)
    return absl::InvalidArgumentError(absl::StrCat(field, " is longer than 512 characters"));
  for (unsigned char c : value) {
    if (c < 0x20 || c == 0x7f)
      return absl::InvalidArgumentError(absl::StrCat(field, " contains a control character"));
  }
  return absl::OkStatus();
}

Json LayerSummaryJson(const LayerRecord& layer) {
  return Json{
      {"chain_id", layer.chain_id}, {"diff_id", layer.diff_id}, {"size_bytes", layer.size_bytes}};
}

// Base layer first, the order of an image config's rootfs.diff_ids.
Json ChainJson(const std::vector<const LayerRecord*>& chain) {
  Json layers = Json::array();
  for (auto it = chain.rbegin(); it != chain.rend(); ++it) layers.push_back(LayerSummaryJson(**it));
  return layers;
}

// An image reference to store or write: what docker accepts in a name, bounded.
absl::Status ValidateReference(const std::string& value, const std::string& field) {
  RETURN_IF_ERROR(ValidateToken(value, field));
  if (value.size() > 255)
    return absl::InvalidArgumentError(absl::StrCat(field, " is longer than 255 characters"));
  for (char c : value) {
    bool ok = std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-' ||
              c == '/' || c == ':' || c == '@';
    if (!ok) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, " \"", value, "\" may hold only letters, digits and . _ - / : @"));
    }
  }
  return absl::OkStatus();
}

void SnapshotToProto(const node::SnapshotRecord& record, pb::Snapshot* snapshot) {
  snapshot->set_snapshot_id(record.id);
  snapshot->set_name(record.name);
  snapshot->set_source_volume_id(record.source_volume_id);
  snapshot->set_chain_id(record.chain_id);
  snapshot->set_size_bytes(record.size_bytes);
  snapshot->set_created_unix(record.created_unix);
  snapshot->set_state(record.state);
}

pb::Change::Kind ChangeKind(images::TreeChange::Kind kind) {
  switch (kind) {
    case images::TreeChange::kAdded:
      return pb::Change::ADDED;
    case images::TreeChange::kChanged:
      return pb::Change::CHANGED;
    case images::TreeChange::kDeleted:
      return pb::Change::DELETED;
  }
  return pb::Change::KIND_UNSPECIFIED;
}

absl::Status NeedExporter(node::Exporter* exporter) {
  if (exporter != nullptr) return absl::OkStatus();
  return absl::UnimplementedError("this strata-csi serves no history, diff or save (no exporter)");
}

}  // namespace

AdminService::AdminService(node::LayerStore* layers, node::VolumeManager* volumes,
                           node::Metadata* metadata, node::VolumeLocks* locks,
                           node::Exporter* exporter, CallGate* gate)
    : layers_(layers),
      volumes_(volumes),
      metadata_(metadata),
      locks_(locks),
      exporter_(exporter),
      gate_(gate) {}

grpc::Status AdminService::ImportImage(grpc::ServerContext*, const pb::ImportImageRequest* request,
                                       pb::ImportImageResponse* response) {
  CallLog log(gate_, "ImportImage", request->path());
  if (!log.admitted()) return log.Rejected();
  absl::Status status = [&]() -> absl::Status {
    if (request->path().empty())
      return absl::InvalidArgumentError("path is required: an image archive or layout on the node");
    RETURN_IF_ERROR(node::ValidateRequestPath(request->path(), "path"));
    if (!request->name().empty()) RETURN_IF_ERROR(ValidateToken(request->name(), "name"));
    ASSIGN_OR_RETURN(node::ImportResult result, layers_->Import(request->path(), request->name()));
    for (const std::string& name : result.names) response->add_names(name);
    response->set_chain_id(result.chain_id);
    response->set_layers_total(result.layers_total);
    response->set_layers_new(result.layers_new);
    response->set_bytes_new(result.bytes_new);
    return absl::OkStatus();
  }();
  return log.Finish(status);
}

grpc::Status AdminService::ListImages(grpc::ServerContext*, const pb::ListImagesRequest*,
                                      pb::ListImagesResponse* response) {
  CallLog log(gate_, "ListImages", "");
  if (!log.admitted()) return log.Rejected();
  return log.Finish(DoListImages(response));
}

absl::Status AdminService::DoListImages(pb::ListImagesResponse* response) {
  ASSIGN_OR_RETURN(StoreView view, ReadStore(metadata_));
  for (const ImageRecord& record : view.images) {
    std::vector<const LayerRecord*> chain = view.Chain(record.chain_id);
    pb::Image* image = response->add_images();
    image->set_name(record.name);
    image->set_chain_id(record.chain_id);
    image->set_layers(static_cast<int32_t>(chain.size()));
    image->set_size_bytes(ChainBytes(chain));
    image->set_created_unix(record.created_unix);
  }
  return absl::OkStatus();
}

grpc::Status AdminService::ListLayers(grpc::ServerContext*, const pb::ListLayersRequest*,
                                      pb::ListLayersResponse* response) {
  CallLog log(gate_, "ListLayers", "");
  if (!log.admitted()) return log.Rejected();
  return log.Finish(DoListLayers(response));
}

absl::Status AdminService::DoListLayers(pb::ListLayersResponse* response) {
  ASSIGN_OR_RETURN(StoreView view, ReadStore(metadata_));
  // Which images and volumes stand on each layer: walk each of their chains once.
  std::map<std::string, std::vector<std::string>> image_names, volume_ids, snapshot_names;
  for (const ImageRecord& image : view.images)
    for (const LayerRecord* layer : view.Chain(image.chain_id))
      image_names[layer->chain_id].push_back(image.name);
  for (const VolumeRecord& volume : view.volumes)
    for (const LayerRecord* layer : view.Chain(volume.chain_id))
      volume_ids[layer->chain_id].push_back(volume.id);
  for (const node::SnapshotRecord& snapshot : view.snapshots)
    for (const LayerRecord* layer : view.Chain(snapshot.chain_id))
      snapshot_names[layer->chain_id].push_back(snapshot.name);
  for (const LayerRecord& record : view.layers) {
    pb::Layer* layer = response->add_layers();
    layer->set_chain_id(record.chain_id);
    layer->set_diff_id(record.diff_id);
    layer->set_parent_chain_id(record.parent_chain_id);
    layer->set_size_bytes(record.size_bytes);
    layer->set_created_unix(record.created_unix);
    layer->set_references(view.references[record.chain_id]);
    for (const std::string& name : image_names[record.chain_id]) layer->add_image_names(name);
    for (const std::string& id : volume_ids[record.chain_id]) layer->add_volume_ids(id);
    layer->set_state(record.state);
    for (const std::string& name : snapshot_names[record.chain_id]) layer->add_snapshot_names(name);
    layer->set_comment(record.comment);
  }
  return absl::OkStatus();
}

grpc::Status AdminService::ListVolumes(grpc::ServerContext*, const pb::ListVolumesRequest*,
                                       pb::ListVolumesResponse* response) {
  CallLog log(gate_, "ListVolumes", "");
  if (!log.admitted()) return log.Rejected();
  return log.Finish(DoListVolumes(response));
}

absl::Status AdminService::DoListVolumes(pb::ListVolumesResponse* response) {
  ASSIGN_OR_RETURN(std::vector<VolumeRecord> records, volumes_->List());
  ASSIGN_OR_RETURN(StoreView view, ReadStore(metadata_));
  for (const VolumeRecord& record : records) {
    pb::Volume* volume = response->add_volumes();
    volume->set_volume_id(record.id);
    volume->set_name(record.name);
    volume->set_image(record.image);
    volume->set_state(record.pending.empty() ? record.state
                                             : absl::StrCat(record.state, "/", record.pending));
    volume->set_capacity_bytes(record.capacity_bytes);
    volume->set_chain_depth(static_cast<int32_t>(view.Chain(record.chain_id).size()));
    volume->set_staging_path(record.staging_path);
    volume->set_ephemeral(record.ephemeral);
    volume->set_chain_id(record.chain_id);
    volume->set_created_unix(record.created_unix);
    ASSIGN_OR_RETURN(std::vector<node::PublicationRecord> publications,
                     volumes_->Publications(record.id));
    for (const node::PublicationRecord& publication : publications)
      volume->add_target_paths(publication.target_path);
    // Usage walks the writable layer, which a concurrent CSI call for this volume may be
    // changing (drivers allow one call per id at a time): measure only while holding the
    // volume's lock, and skip the measurement rather than wait when it is busy.
    if (record.state != node::kVolumeStaged) continue;
    absl::StatusOr<node::VolumeLocks::Lock> lock = locks_->TryAcquire(record.id, "admin usage");
    if (!lock.ok()) continue;
    absl::StatusOr<node::VolumeUsage> usage = volumes_->Usage(record.id, record.staging_path);
    if (usage.ok()) {
      volume->set_used_bytes(usage->used_bytes);
    } else {
      LogDebug("admin: no usage for volume",
               {{"volume", record.id}, {"error", usage.status().ToString()}});
    }
  }
  return absl::OkStatus();
}

grpc::Status AdminService::Inspect(grpc::ServerContext*, const pb::InspectRequest* request,
                                   pb::InspectResponse* response) {
  CallLog log(gate_, "Inspect", request->id());
  if (!log.admitted()) return log.Rejected();
  std::string json;
  absl::Status status = DoInspect(request->id(), &json);
  if (status.ok()) response->set_json(std::move(json));
  return log.Finish(status);
}

absl::Status AdminService::DoInspect(const std::string& id, std::string* out) {
  RETURN_IF_ERROR(ValidateToken(id, "id"));
  ASSIGN_OR_RETURN(StoreView view, ReadStore(metadata_));

  // 1. A volume id.
  for (const VolumeRecord& volume : view.volumes) {
    if (volume.id != id) continue;
    std::vector<const LayerRecord*> chain = view.Chain(volume.chain_id);
    Json doc{{"kind", "volume"},
             {"id", volume.id},
             {"name", volume.name},
             {"state", volume.state},
             {"pending", volume.pending},
             {"image", volume.image},
             {"chain_id", volume.chain_id},
             {"chain_depth", chain.size()},
             {"capacity_bytes", volume.capacity_bytes},
             {"ephemeral", volume.ephemeral},
             {"staging_path", volume.staging_path},
             {"created_unix", volume.created_unix},
             {"created", Rfc3339(volume.created_unix)},
             {"writable_layer_driver_id", volume.active_id},
             {"request", volume.request_fingerprint}};
    ASSIGN_OR_RETURN(std::vector<node::PublicationRecord> publications,
                     metadata_->ListPublications(volume.id));
    Json published = Json::array();
    for (const node::PublicationRecord& publication : publications) {
      published.push_back({{"target_path", publication.target_path},
                           {"read_only", publication.read_only},
                           {"state", publication.state}});
    }
    doc["publications"] = std::move(published);
    doc["layers"] = ChainJson(chain);
    doc["layers_bytes"] = ChainBytes(chain);
    if (volume.state == node::kVolumeStaged) {
      absl::StatusOr<node::VolumeLocks::Lock> lock = locks_->TryAcquire(volume.id, "admin usage");
      if (lock.ok()) {
        absl::StatusOr<node::VolumeUsage> usage = volumes_->Usage(volume.id, volume.staging_path);
        if (usage.ok()) {
          doc["usage"] = {{"used_bytes", usage->used_bytes},
                          {"total_bytes", usage->total_bytes},
                          {"available_bytes", usage->available_bytes},
                          {"used_inodes", usage->used_inodes},
                          {"abnormal", usage->abnormal},
                          {"condition", usage->condition_message}};
        } else {
          doc["usage_error"] = usage.status().ToString();
        }
      } else {
        doc["usage_error"] = "volume busy with another operation";
      }
    }
    *out = doc.dump(2);
    return absl::OkStatus();
  }

  // 2. An image name.
  for (const ImageRecord& image : view.images) {
    if (image.name != id) continue;
    std::vector<const LayerRecord*> chain = view.Chain(image.chain_id);
    Json doc{{"kind", "image"},
             {"name", image.name},
             {"chain_id", image.chain_id},
             {"created_unix", image.created_unix},
             {"created", Rfc3339(image.created_unix)},
             {"size_bytes", ChainBytes(chain)},
             {"layers", ChainJson(chain)}};
    Json same = Json::array();
    for (const ImageRecord& other : view.images)
      if (other.chain_id == image.chain_id && other.name != image.name) same.push_back(other.name);
    doc["same_chain_names"] = std::move(same);
    Json volumes = Json::array();
    for (const VolumeRecord& volume : view.volumes)
      if (!image.chain_id.empty() && view.ChainContains(volume.chain_id, image.chain_id))
        volumes.push_back(volume.id);
    doc["volumes_on_chain"] = std::move(volumes);
    AddConfig(image.config_json, layers_->limits(), &doc);
    *out = doc.dump(2, ' ', false, Json::error_handler_t::replace);
    return absl::OkStatus();
  }

  // 3. A snapshot id or name.
  for (const node::SnapshotRecord& snapshot : view.snapshots) {
    if (snapshot.id != id && snapshot.name != id) continue;
    std::vector<const LayerRecord*> chain = view.Chain(snapshot.chain_id);
    Json doc{{"kind", "snapshot"},
             {"id", snapshot.id},
             {"name", snapshot.name},
             {"source_volume_id", snapshot.source_volume_id},
             {"chain_id", snapshot.chain_id},
             {"state", snapshot.state},
             {"size_bytes", snapshot.size_bytes},
             {"created_unix", snapshot.created_unix},
             {"created", Rfc3339(snapshot.created_unix)},
             {"layers", ChainJson(chain)},
             {"layers_bytes", ChainBytes(chain)}};
    *out = doc.dump(2);
    return absl::OkStatus();
  }

  // 4. A layer ChainID, whole or a unique prefix.
  std::string hex = id.rfind(kDigestPrefix, 0) == 0 ? id.substr(sizeof(kDigestPrefix) - 1) : id;
  if (!IsLowerHex(hex)) {
    return absl::NotFoundError(absl::StrCat("no volume, image or layer is called \"", id, "\""));
  }
  if (hex.size() < kMinPrefixHex) {
    return absl::InvalidArgumentError(absl::StrCat("a layer id needs at least ", kMinPrefixHex,
                                                   " hex digits (got \"", id, "\")"));
  }
  std::string prefix = absl::StrCat(kDigestPrefix, hex);
  std::vector<const LayerRecord*> matches;
  for (const LayerRecord& layer : view.layers)
    if (layer.chain_id.rfind(prefix, 0) == 0) matches.push_back(&layer);
  if (matches.empty()) {
    return absl::NotFoundError(absl::StrCat("no volume, image or layer is called \"", id, "\""));
  }
  if (matches.size() > 1) {
    return absl::InvalidArgumentError(absl::StrCat("layer id prefix \"", id, "\" matches ",
                                                   matches.size(), " layers; give more digits"));
  }
  const LayerRecord& layer = *matches.front();
  Json doc{{"kind", "layer"},
           {"chain_id", layer.chain_id},
           {"diff_id", layer.diff_id},
           {"parent_chain_id", layer.parent_chain_id},
           {"depth", layer.depth},
           {"state", layer.state},
           {"size_bytes", layer.size_bytes},
           {"created_unix", layer.created_unix},
           {"created", Rfc3339(layer.created_unix)},
           {"driver_id", layer.driver_id},
           {"comment", layer.comment},
           {"references", view.references[layer.chain_id]}};
  Json children = Json::array(), images = Json::array(), tops = Json::array(),
       volumes = Json::array();
  for (const LayerRecord& other : view.layers)
    if (other.parent_chain_id == layer.chain_id) children.push_back(other.chain_id);
  for (const ImageRecord& image : view.images) {
    if (image.chain_id == layer.chain_id) tops.push_back(image.name);
    if (view.ChainContains(image.chain_id, layer.chain_id)) images.push_back(image.name);
  }
  for (const VolumeRecord& volume : view.volumes)
    if (view.ChainContains(volume.chain_id, layer.chain_id)) volumes.push_back(volume.id);
  doc["children"] = std::move(children);
  doc["images"] = std::move(images);
  doc["top_of_images"] = std::move(tops);
  doc["volumes"] = std::move(volumes);
  std::vector<const LayerRecord*> chain = view.Chain(layer.chain_id);
  doc["chain"] = ChainJson(chain);
  doc["chain_bytes"] = ChainBytes(chain);
  *out = doc.dump(2);
  return absl::OkStatus();
}

grpc::Status AdminService::RemoveImage(grpc::ServerContext*, const pb::RemoveImageRequest* request,
                                       pb::RemoveImageResponse*) {
  CallLog log(gate_, "RemoveImage", request->name());
  if (!log.admitted()) return log.Rejected();
  absl::Status status = ValidateToken(request->name(), "name");
  if (status.ok()) status = layers_->RemoveImage(request->name());
  return log.Finish(status);
}

grpc::Status AdminService::GarbageCollect(grpc::ServerContext*,
                                          const pb::GarbageCollectRequest* request,
                                          pb::GarbageCollectResponse* response) {
  CallLog log(gate_, "GarbageCollect", request->dry_run() ? "dry-run" : "");
  if (!log.admitted()) return log.Rejected();
  absl::StatusOr<node::GcResult> result = layers_->GarbageCollect(request->dry_run());
  if (result.ok()) {
    for (const std::string& id : result->removed_chain_ids) response->add_removed_chain_ids(id);
    response->set_bytes_freed(result->bytes_freed);
    LogInfo(request->dry_run() ? "gc dry run" : "gc done",
            {{"layers", std::to_string(result->removed_chain_ids.size())},
             {"bytes", std::to_string(result->bytes_freed)}});
  }
  return log.Finish(result.status());
}

grpc::Status AdminService::Version(grpc::ServerContext*, const pb::VersionRequest*,
                                   pb::VersionResponse* response) {
  CallLog log(gate_, "Version", "", /*needs_ready=*/false);
  if (!log.admitted()) return log.Rejected();
  response->set_version(kVersion);
  return log.Finish(absl::OkStatus());
}

grpc::Status AdminService::Commit(grpc::ServerContext*, const pb::CommitRequest* request,
                                  pb::CommitResponse* response) {
  CallLog log(gate_, "Commit", request->volume_id());
  if (!log.admitted()) return log.Rejected();
  return log.Finish(DoCommit(*request, response));
}

absl::Status AdminService::DoCommit(const pb::CommitRequest& request,
                                    pb::CommitResponse* response) {
  RETURN_IF_ERROR(ValidateToken(request.volume_id(), "volume_id"));
  RETURN_IF_ERROR(ValidateReference(request.tag(), "tag"));
  if (request.message().size() > 4096)
    return absl::InvalidArgumentError("message is longer than 4096 characters");
  ASSIGN_OR_RETURN(node::VolumeLocks::Lock lock,
                   locks_->TryAcquire(request.volume_id(), "volume " + request.volume_id()));
  ASSIGN_OR_RETURN(VolumeRecord volume, volumes_->Get(request.volume_id()));
  if (!volume.pending.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("volume ", volume.id, " has an unfinished operation (", volume.pending, ")"));
  }
  // The commit keeps the volume's image config (Env, Cmd, ...): it still describes the content.
  std::string config_json;
  if (!volume.image.empty()) {
    ASSIGN_OR_RETURN(std::optional<ImageRecord> source, metadata_->GetImage(volume.image));
    if (source) config_json = source->config_json;
  }
  ASSIGN_OR_RETURN(std::optional<ImageRecord> previous, metadata_->GetImage(request.tag()));
  std::string comment =
      request.message().empty() ? absl::StrCat("commit of volume ", volume.id) : request.message();
  // The image row is written in the commit's own transaction: a staged volume keeps its own
  // chain, so otherwise nothing would refer to the new layer for a moment and a concurrent
  // collection of unreferenced commits could take it.
  ASSIGN_OR_RETURN(node::CommitResult result,
                   volumes_->Commit(volume.id, comment,
                                    ImageRecord{request.tag(), "", config_json,
                                                static_cast<int64_t>(time(nullptr))}));
  response->set_chain_id(result.chain_id);
  response->set_tag(request.tag());
  response->set_size_bytes(result.size_bytes);
  response->set_depth(result.depth);
  response->set_flattened(result.flattened);
  if (previous && previous->chain_id != result.chain_id)
    response->set_previous_chain_id(previous->chain_id);
  LogInfo("volume committed as image",
          {{"volume", volume.id}, {"tag", request.tag()}, {"chain_id", result.chain_id}});
  return absl::OkStatus();
}

grpc::Status AdminService::Rollback(grpc::ServerContext*, const pb::RollbackRequest* request,
                                    pb::RollbackResponse* response) {
  CallLog log(gate_, "Rollback", absl::StrCat(request->volume_id(), " ", request->snapshot()));
  if (!log.admitted()) return log.Rejected();
  return log.Finish(DoRollback(*request, response));
}

absl::Status AdminService::DoRollback(const pb::RollbackRequest& request,
                                      pb::RollbackResponse* response) {
  RETURN_IF_ERROR(ValidateToken(request.volume_id(), "volume_id"));
  RETURN_IF_ERROR(ValidateToken(request.snapshot(), "snapshot"));
  ASSIGN_OR_RETURN(std::optional<node::SnapshotRecord> target,
                   metadata_->GetSnapshot(request.snapshot()));
  if (!target) {
    ASSIGN_OR_RETURN(target, metadata_->GetSnapshotByName(request.snapshot()));
  }
  if (!target) {
    return absl::NotFoundError(
        absl::StrCat("no snapshot has the id or name \"", request.snapshot(), "\""));
  }
  if (target->state != "ready") {
    return absl::FailedPreconditionError(
        absl::StrCat("snapshot ", target->id, " is still being taken"));
  }
  ASSIGN_OR_RETURN(node::VolumeLocks::Lock lock,
                   locks_->TryAcquire(request.volume_id(), "volume " + request.volume_id()));
  ASSIGN_OR_RETURN(node::SnapshotRecord kept, volumes_->Rollback(request.volume_id(), target->id));
  SnapshotToProto(kept, response->mutable_previous_state());
  response->set_chain_id(target->chain_id);
  return absl::OkStatus();
}

grpc::Status AdminService::ListSnapshots(grpc::ServerContext*,
                                         const pb::ListSnapshotsRequest* request,
                                         pb::ListSnapshotsResponse* response) {
  CallLog log(gate_, "ListSnapshots", request->volume_id());
  if (!log.admitted()) return log.Rejected();
  absl::Status status = [&]() -> absl::Status {
    if (!request->volume_id().empty())
      RETURN_IF_ERROR(ValidateToken(request->volume_id(), "volume_id"));
    ASSIGN_OR_RETURN(std::vector<node::SnapshotRecord> snapshots, volumes_->ListSnapshots());
    for (const node::SnapshotRecord& snapshot : snapshots) {
      // Snapshots outlive their volumes: filtering by a deleted volume's id still finds them.
      if (!request->volume_id().empty() && snapshot.source_volume_id != request->volume_id())
        continue;
      SnapshotToProto(snapshot, response->add_snapshots());
    }
    return absl::OkStatus();
  }();
  return log.Finish(status);
}

grpc::Status AdminService::History(grpc::ServerContext*, const pb::HistoryRequest* request,
                                   pb::HistoryResponse* response) {
  CallLog log(gate_, "History", request->ref());
  if (!log.admitted()) return log.Rejected();
  absl::Status status = [&]() -> absl::Status {
    RETURN_IF_ERROR(NeedExporter(exporter_));
    RETURN_IF_ERROR(ValidateToken(request->ref(), "ref"));
    ASSIGN_OR_RETURN(std::vector<node::HistoryEntry> entries, exporter_->History(request->ref()));
    if (!entries.empty()) response->set_chain_id(entries.front().chain_id);
    for (const node::HistoryEntry& entry : entries) {
      pb::HistoryLayer* layer = response->add_layers();
      layer->set_chain_id(entry.chain_id);
      layer->set_diff_id(entry.diff_id);
      layer->set_size_bytes(entry.size_bytes);
      layer->set_created_unix(entry.created_unix);
      layer->set_comment(entry.comment);
    }
    return absl::OkStatus();
  }();
  return log.Finish(status);
}

grpc::Status AdminService::Diff(grpc::ServerContext*, const pb::DiffRequest* request,
                                pb::DiffResponse* response) {
  CallLog log(gate_, "Diff", absl::StrCat(request->from_ref(), " ", request->to_ref()));
  if (!log.admitted()) return log.Rejected();
  return log.Finish(DoDiff(*request, response));
}

absl::Status AdminService::DoDiff(const pb::DiffRequest& request, pb::DiffResponse* response) {
  RETURN_IF_ERROR(NeedExporter(exporter_));
  RETURN_IF_ERROR(ValidateToken(request.from_ref(), "from_ref"));
  RETURN_IF_ERROR(ValidateToken(request.to_ref(), "to_ref"));
  // A volume's current state is read while no CSI call can change how it is mounted.
  std::set<std::string> volume_ids;
  for (const std::string& ref : {request.from_ref(), request.to_ref()}) {
    ASSIGN_OR_RETURN(std::optional<VolumeRecord> volume, metadata_->GetVolume(ref));
    if (volume) volume_ids.insert(volume->id);
  }
  std::vector<node::VolumeLocks::Lock> locks;
  for (const std::string& id : volume_ids) {
    ASSIGN_OR_RETURN(node::VolumeLocks::Lock lock, locks_->TryAcquire(id, "volume " + id));
    locks.push_back(std::move(lock));
  }
  ASSIGN_OR_RETURN(std::vector<images::TreeChange> changes,
                   exporter_->Diff(request.from_ref(), request.to_ref()));
  for (const images::TreeChange& change : changes) {
    pb::Change* out = response->add_changes();
    out->set_path(change.path);
    out->set_kind(ChangeKind(change.kind));
  }
  return absl::OkStatus();
}

grpc::Status AdminService::Save(grpc::ServerContext*, const pb::SaveRequest* request,
                                pb::SaveResponse* response) {
  CallLog log(gate_, "Save", absl::StrCat(request->ref(), " ", request->path()));
  if (!log.admitted()) return log.Rejected();
  return log.Finish(DoSave(*request, response));
}

absl::Status AdminService::DoSave(const pb::SaveRequest& request, pb::SaveResponse* response) {
  RETURN_IF_ERROR(NeedExporter(exporter_));
  RETURN_IF_ERROR(ValidateToken(request.ref(), "ref"));
  if (request.path().empty())
    return absl::InvalidArgumentError("path is required: where to write the image on the node");
  RETURN_IF_ERROR(node::ValidateRequestPath(request.path(), "path"));
  // Never into the store: its database, sockets, layers and scratch space are not outputs.
  if (node::ResolvesWithin(request.path(), volumes_->root())) {
    return absl::InvalidArgumentError(
        absl::StrCat("path ", request.path(), " lies inside Strata's store ", volumes_->root()));
  }
  images::ImageFormat format;
  switch (request.format()) {
    case pb::SaveRequest::FORMAT_UNSPECIFIED:
    case pb::SaveRequest::DOCKER:
      format = images::ImageFormat::kDockerSave;
      break;
    case pb::SaveRequest::OCI:
      format = images::ImageFormat::kOciLayout;
      break;
    default:
      return absl::InvalidArgumentError("format must be DOCKER or OCI");
  }
  std::vector<std::string> tags;
  for (const std::string& tag : request.tags()) {
    RETURN_IF_ERROR(ValidateReference(tag, "tag"));
    tags.push_back(tag);
  }
  ASSIGN_OR_RETURN(node::SaveResult result,
                   exporter_->Save(request.ref(), request.path(), format, tags, request.force()));
  response->set_path(request.path());
  response->set_chain_id(result.chain_id);
  for (const std::string& diff_id : result.diff_ids) response->add_diff_ids(diff_id);
  for (const std::string& tag : result.references) response->add_tags(tag);
  response->set_bytes(result.bytes);
  return absl::OkStatus();
}

// ---- Check and backup (issue 8) ----

grpc::Status AdminService::Check(grpc::ServerContext*, const pb::CheckRequest* request,
                                 pb::CheckResponse* response) {
  CallLog log(gate_, "Check", request->repair() ? "repair" : "");
  if (!log.admitted()) return log.Rejected();
  absl::StatusOr<node::CheckReport> report = volumes_->Check(request->repair(), locks_);
  if (report.ok()) {
    response->set_volumes(report->volumes);
    response->set_layers(report->layers);
    response->set_driver_entries(report->driver_entries);
    response->set_mounts(report->mounts);
    int left = 0;
    for (const node::CheckFinding& finding : report->findings) {
      pb::CheckFinding* out = response->add_findings();
      out->set_kind(finding.kind);
      out->set_subject(finding.subject);
      out->set_detail(finding.detail);
      out->set_action(finding.action);
      out->set_repaired(finding.repaired);
      left += finding.repaired ? 0 : 1;
    }
    LogInfo(
        request->repair() ? "check and repair done" : "check done",
        {{"problems", std::to_string(report->findings.size())}, {"left", std::to_string(left)}});
  }
  return log.Finish(report.status());
}

grpc::Status AdminService::Backup(grpc::ServerContext*, const pb::BackupRequest* request,
                                  pb::BackupResponse* response) {
  CallLog log(gate_, "Backup", request->path());
  if (!log.admitted()) return log.Rejected();
  return log.Finish(DoBackup(*request, response));
}

absl::Status AdminService::DoBackup(const pb::BackupRequest& request,
                                    pb::BackupResponse* response) {
  if (request.path().empty())
    return absl::InvalidArgumentError("path is required: where to write the backup on the node");
  RETURN_IF_ERROR(node::ValidateRequestPath(request.path(), "path"));
  if (request.path()[0] != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("path ", request.path(), " must be absolute (it names a file on the node)"));
  }
  // A backup inside the store would go with the store it is meant to survive.
  if (node::ResolvesWithin(request.path(), volumes_->root())) {
    return absl::InvalidArgumentError(
        absl::StrCat("path ", request.path(), " lies inside Strata's store ", volumes_->root()));
  }
  node::Metadata::BackupOptions options;
  ASSIGN_OR_RETURN(node::Metadata::BackupResult result, metadata_->Backup(request.path(), options));
  response->set_path(request.path());
  response->set_bytes(result.bytes);
  response->set_steps(result.steps);
  return absl::OkStatus();
}

// Quarantine (issue 8)

grpc::Status AdminService::QuarantineList(grpc::ServerContext*, const pb::QuarantineListRequest*,
                                          pb::QuarantineListResponse* response) {
  CallLog log(gate_, "QuarantineList", "");
  if (!log.admitted()) return log.Rejected();
  return log.Finish([&]() -> absl::Status {
    node::Quarantine* quarantine = layers_->quarantine();
    if (quarantine == nullptr) return absl::OkStatus();
    ASSIGN_OR_RETURN(std::vector<node::QuarantineEntry> entries, quarantine->List());
    for (const node::QuarantineEntry& entry : entries) {
      pb::QuarantineEntry* out = response->add_entries();
      out->set_name(entry.name);
      out->set_driver_id(entry.driver_id);
      out->set_kind(entry.kind);
      out->set_reason(entry.reason);
      out->set_quarantined_unix(entry.quarantined_unix);
      out->set_bytes(entry.bytes);
      out->set_label(entry.label);
    }
    return absl::OkStatus();
  }());
}

grpc::Status AdminService::QuarantineRestore(grpc::ServerContext*,
                                             const pb::QuarantineRestoreRequest* request,
                                             pb::QuarantineRestoreResponse* response) {
  CallLog log(gate_, "QuarantineRestore",
              absl::StrCat(request->name(), " ", request->volume_name()));
  if (!log.admitted()) return log.Rejected();
  return log.Finish([&]() -> absl::Status {
    RETURN_IF_ERROR(ValidateToken(request->name(), "name"));
    if (!request->volume_name().empty())
      RETURN_IF_ERROR(ValidateToken(request->volume_name(), "volume_name"));
    ASSIGN_OR_RETURN(node::RestoreResult result,
                     volumes_->RestoreQuarantined(request->name(), request->volume_name()));
    response->set_volume_id(result.volume.id);
    response->set_volume_name(result.volume.name);
    response->set_chain_id(result.chain_id);
    response->set_note(result.note);
    return absl::OkStatus();
  }());
}

grpc::Status AdminService::QuarantinePurge(grpc::ServerContext*,
                                           const pb::QuarantinePurgeRequest* request,
                                           pb::QuarantinePurgeResponse* response) {
  CallLog log(gate_, "QuarantinePurge", request->name());
  if (!log.admitted()) return log.Rejected();
  return log.Finish([&]() -> absl::Status {
    RETURN_IF_ERROR(ValidateToken(request->name(), "name"));
    node::Quarantine* quarantine = layers_->quarantine();
    if (quarantine == nullptr) return absl::NotFoundError("this store has no quarantine");
    ASSIGN_OR_RETURN(node::QuarantineEntry entry, quarantine->Get(request->name()));
    RETURN_IF_ERROR(quarantine->Purge(request->name()));
    quarantine->RefreshGauges();
    response->set_bytes(entry.bytes);
    return absl::OkStatus();
  }());
}

}  // namespace strata::csi
