#pragma once
// LayerStore: the node's content-addressed layers and the images that name them.
//
// A layer is identified by its OCI ChainID (its DiffID on top of its parent chain), so a layer
// shared by two images is stored once; how many images, volumes and child layers use it is
// derived from the metadata, never kept as a counter that could drift.
//
// Imports are atomic: the whole archive is read and checked first (every manifest and config,
// every blob digest, every image name, the bounds in ImportLimits), then the layers are written,
// then every image record is stored in one transaction. When anything fails, every layer this
// import created is removed again (and only those), so the store is as it was. Each new layer is
// recorded as "creating" before the driver writes it and "ready" after; recovery removes what a
// crash left "creating".
//
// Imports never hold a lock that deletes need: garbage collection (run by DeleteVolume and
// DeleteSnapshot) skips layers that are not ready and every layer an import in flight builds on
// or creates, instead of waiting for that import.

#include <cstdint>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "drivers/driver.h"
#include "node/images/layer_tar.h"
#include "node/images/limits.h"
#include "node/labels.h"
#include "node/metadata.h"
#include "node/quarantine.h"
#include "sys/mounter.h"

namespace strata::node {

struct ImportResult {
  std::vector<std::string> names;
  std::string chain_id;  // top of the (last) imported image's chain
  int layers_total = 0;
  int layers_new = 0;
  int64_t bytes_new = 0;
};

struct GcResult {
  std::vector<std::string> removed_chain_ids;
  int64_t bytes_freed = 0;
};

struct StoreStats {
  int64_t layers = 0;
  int64_t images = 0;
  int64_t layer_bytes = 0;
};

// The files beside the database that make a lost database survivable (issue 8). Either may be
// null (unit tests): then nothing is labelled, and unknown content stays where it is.
struct StoreFiles {
  Labels* labels = nullptr;
  Quarantine* quarantine = nullptr;
};

class LayerStore {
 public:
  // `scratch_dir` holds import staging; it is emptied by Recover(). `limits` bound every import
  // (see images::ImportLimits; the flags of strata-csi set them).
  LayerStore(Metadata* metadata, drivers::Driver* driver, sys::Mounter* mounter,
             std::string scratch_dir, images::ImportLimits limits = {}, StoreFiles files = {});

  Labels* labels() const { return files_.labels; }
  Quarantine* quarantine() const { return files_.quarantine; }

  const images::ImportLimits& limits() const { return limits_; }

  // Imports a docker-save archive or an OCI layout (folder or tar) at `path` on this node.
  // `name` overrides the archive's own references (then the archive must hold one image).
  // Errors name `path` and the entry inside it, never the scratch directory, and are at most
  // images::kMaxErrorBytes long: InvalidArgument (malformed or hostile archive, a bound
  // exceeded), NotFound (no such path), DataLoss (a digest does not match), ResourceExhausted
  // (deeper than the driver mounts).
  absl::StatusOr<ImportResult> Import(const std::string& path, const std::string& name);

  // The image named `name`; NotFound with a message an admin can act on.
  absl::StatusOr<ImageRecord> ResolveImage(const std::string& name);
  // Driver ids of `chain_id`'s chain, top first; "" is the empty base (empty chain).
  absl::StatusOr<drivers::Chain> DriverChain(const std::string& chain_id);
  // The same for a chain already read (Metadata::ChainOf, top first).
  static absl::StatusOr<drivers::Chain> DriverChainOf(const std::vector<LayerRecord>& layers);

  // Held (shared) by whoever is about to add a reference to existing layers — a volume created
  // on an image, a commit on a volume's chain — so that garbage collection (exclusive) cannot
  // remove those layers in between.
  std::shared_lock<std::shared_mutex> PinLayers() {
    return std::shared_lock<std::shared_mutex>(pin_mutex_);
  }

  absl::Status RemoveImage(const std::string& name);
  // Removes every ready layer no image, volume or child layer uses (repeatedly, so whole
  // unused chains go). Metadata first, content after: a crash in between leaves content that
  // Recover() removes, never metadata pointing at nothing.
  absl::StatusOr<GcResult> GarbageCollect(bool dry_run);
  // The same, limited to committed layers (no DiffID): what DeleteSnapshot and DeleteVolume free
  // at once. Imported layers wait for an explicit gc, so a re-import is never needed by surprise.
  absl::StatusOr<GcResult> CollectUnreferencedCommits();

  // Start-up: removes layers left "creating" and the scratch directory. Driver content the
  // metadata does not know (except `keep_driver_ids`, e.g. volumes' writable layers) is never
  // deleted: what its label says the store was deleting, or was scratch, is removed; anything
  // else is moved to quarantine (left in place, with a warning, when it is mounted or there is
  // no quarantine).
  absl::Status Recover(const std::vector<std::string>& keep_driver_ids);

  absl::StatusOr<StoreStats> Stats();
  // Bytes that layer sharing saves: for every layer, its size times (users - 1), where users
  // are the images, volumes and snapshots whose chains contain it.
  absl::StatusOr<int64_t> SharedBytes();

 private:
  struct NewLayer {
    std::string chain_id;
    std::string driver_id;
  };
  absl::StatusOr<ImportResult> DoImport(const std::string& path, const std::string& name);
  // Stores one layer unless a ready one exists (then returns false). `options` bounds the
  // extraction; `consumed` receives the bytes it counted against them, `created` the new layer.
  absl::StatusOr<bool> ImportLayer(const std::string& blob_path, const std::string& diff_id,
                                   const std::string& parent_chain_id, const std::string& chain_id,
                                   int depth, const images::ExtractOptions& options, int64_t* bytes,
                                   int64_t* consumed, NewLayer* created);
  // Removes layers an import created, newest first.
  void RollBack(const std::vector<NewLayer>& created);
  absl::StatusOr<GcResult> Collect(bool dry_run, bool commits_only);
  absl::StatusOr<images::ExtractResult> WriteLayerContent(const std::string& active_id,
                                                          const drivers::Chain& parents,
                                                          const std::string& blob_path,
                                                          const std::string& diff_id,
                                                          const images::ExtractOptions& options);

  Metadata* metadata_;
  drivers::Driver* driver_;
  sys::Mounter* mounter_;
  std::string scratch_dir_;
  const images::ImportLimits limits_;
  StoreFiles files_;
  // Serializes imports with each other (and with Recover), never with garbage collection: an
  // import may take as long as its archive, and deletes must not wait for it.
  std::mutex import_mutex_;
  // Held by garbage collection while it decides and removes; guards `in_flight_`. Imports take
  // it only for a moment, to register the chains they build on and create.
  std::mutex collect_mutex_;
  // Chain id -> number of imports in flight that reuse or create it: gc keeps these even when
  // nothing names them yet (an import has made them ready but not stored its images).
  std::map<std::string, int> in_flight_;
  std::shared_mutex pin_mutex_;
};

}  // namespace strata::node
