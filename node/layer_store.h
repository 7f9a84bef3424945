#pragma once
// LayerStore: the node's content-addressed layers and the images that name them.
//
// A layer is identified by its OCI ChainID (its DiffID on top of its parent chain), so a layer
// shared by two images is stored once; how many images, volumes and child layers use it is
// derived from the metadata, never kept as a counter that could drift. Imports verify every
// digest and leave nothing behind when they fail: each new layer is recorded as "creating"
// before the driver writes it and "ready" after, and recovery removes what stayed "creating".

#include <cstdint>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "drivers/driver.h"
#include "node/metadata.h"
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

class LayerStore {
 public:
  // `scratch_dir` holds import staging; it is emptied by Recover().
  LayerStore(Metadata* metadata, drivers::Driver* driver, sys::Mounter* mounter,
             std::string scratch_dir);

  // Imports a docker-save archive or an OCI layout (folder or tar) at `path` on this node.
  // `name` overrides the archive's own references (then the archive must hold one image).
  absl::StatusOr<ImportResult> Import(const std::string& path, const std::string& name);

  // The image named `name`; NotFound with a message an admin can act on.
  absl::StatusOr<ImageRecord> ResolveImage(const std::string& name);
  // Driver ids of `chain_id`'s chain, top first; "" is the empty base (empty chain).
  absl::StatusOr<drivers::Chain> DriverChain(const std::string& chain_id);

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

  // Start-up: removes layers left "creating", driver content the metadata does not know
  // (except `keep_driver_ids`, e.g. volumes' writable layers), and the scratch directory.
  absl::Status Recover(const std::vector<std::string>& keep_driver_ids);

  absl::StatusOr<StoreStats> Stats();
  // Bytes that layer sharing saves: for every layer, its size times (users - 1), where users
  // are the images, volumes and snapshots whose chains contain it.
  absl::StatusOr<int64_t> SharedBytes();

 private:
  absl::StatusOr<bool> ImportLayer(const std::string& blob_path, const std::string& diff_id,
                                   const std::string& parent_chain_id, const std::string& chain_id,
                                   int depth, int64_t* bytes);
  absl::StatusOr<GcResult> Collect(bool dry_run, bool commits_only);
  absl::Status WriteLayerContent(const std::string& active_id, const drivers::Chain& parents,
                                 const std::string& blob_path, const std::string& diff_id);

  Metadata* metadata_;
  drivers::Driver* driver_;
  sys::Mounter* mounter_;
  std::string scratch_dir_;
  // Imports and garbage collection never overlap: gc must not collect a layer an import has
  // made ready but not yet named.
  std::mutex import_mutex_;
  std::shared_mutex pin_mutex_;
};

}  // namespace strata::node
