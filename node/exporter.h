#pragma once
// Exporter: Docker-like history for the store's chains — what a chain is made of (`history`),
// what changed between two states (`diff`), and writing a chain out as an image (`save`).
//
// It works for every driver the same way: it never reads a driver's private layout, only
// read-only views the driver describes (Driver::View of a chain, or a volume's Mounts mounted
// "ro"), mounted by the Mounter at private directories under `scratch_dir` and always unmounted
// before the call returns, whether it succeeded or not.
//
// Committed layers (volume commits, CSI snapshots) carry no DiffID in the metadata: their
// content is only turned into a tar when saved. Save computes every layer's tar as the tree
// difference between the view of the chain up to that layer and the view of the chain below
// it (images::ExportTreeDiff), so the output is deterministic for a given chain and identical
// whatever driver holds it. The DiffIDs a save computes for committed layers are remembered
// (in memory) and shown by History afterwards.
//
// Callers hold what protects the objects they name: AdminService holds the volume lock
// (VolumeLocks) of a volume given to Diff. The Exporter pins layers (LayerStore::PinLayers)
// while it reads them, so garbage collection waits for it. Thread-safe.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "drivers/driver.h"
#include "node/images/image_writer.h"
#include "node/images/tree_diff.h"
#include "node/layer_store.h"
#include "node/metadata.h"
#include "sys/mounter.h"

namespace strata::node {

// What a reference names, once resolved.
struct ResolvedRef {
  enum Kind { kImage, kSnapshot, kLayer, kVolume };
  Kind kind = kImage;
  std::string chain_id;  // "" only for a volume on the empty base
  std::string name;      // image name, snapshot id, layer chain id or volume id
};

// One layer of a chain, as `docker history` shows it.
struct HistoryEntry {
  std::string chain_id;
  // Imported layers: their DiffID. Committed layers: the DiffID their last save computed, ""
  // before any save (since this process started).
  std::string diff_id;
  int64_t size_bytes = 0;
  int64_t created_unix = 0;
  // LayerRecord.comment; for an imported layer without one, the `created_by` of its entry in
  // the config `history` of an image containing it.
  std::string comment;
};

struct SaveResult {
  std::string chain_id;
  std::vector<std::string> diff_ids;  // of the written layers, base first
  std::vector<std::string> references;
  int64_t bytes = 0;  // of the output (a folder: the sum of its files)
};

class Exporter {
 public:
  // None may be null; all must outlive the Exporter. `scratch_dir` holds temporary mount points
  // and layer tars; Recover() empties it.
  Exporter(Metadata* metadata, LayerStore* layers, drivers::Driver* driver, sys::Mounter* mounter,
           std::string scratch_dir);

  // Start-up: unmounts and removes whatever a killed process left in `scratch_dir`. Call it
  // before anything else uses the Exporter (and before LayerStore::Recover, which removes
  // layers no one knows: a view left mounted would pin their directories).
  absl::Status Recover();

  // An image name, a snapshot id or name, or a layer ChainID (whole, or a unique prefix of at
  // least 12 hex digits, "sha256:" optional), in that order of precedence. NotFound when nothing
  // matches, InvalidArgument for an ambiguous or too short layer prefix.
  absl::StatusOr<ResolvedRef> Resolve(const std::string& ref);
  // The same, trying a volume id first (for Diff operands).
  absl::StatusOr<ResolvedRef> ResolveWithVolumes(const std::string& ref);

  // The layers of `ref`'s chain, top first.
  absl::StatusOr<std::vector<HistoryEntry>> History(const std::string& ref);

  // Changes that turn `from` into `to` (images::DiffTrees, sorted by path). Each is anything
  // Resolve accepts, or a volume id meaning the volume's current state: a staged volume is read
  // at its staging path (read only, live), an unstaged one through its driver mounts mounted
  // read-only. The caller holds the lock of any volume named.
  absl::StatusOr<std::vector<images::TreeChange>> Diff(const std::string& from,
                                                       const std::string& to);

  // Writes `ref`'s chain as an image at `out_path` (docker-save tar, or an OCI layout: a folder,
  // or a tar when the path ends in ".tar"). `references` tag the image; when empty and `ref` is
  // an image name, that name. The config is the image's own (`ref` an image) or that of the
  // deepest image the chain stands on, with diff_ids and history rewritten for the new layers.
  // Nothing is left at `out_path` when it fails.
  //
  // The output is made new: written beside `out_path` under a temporary name and renamed into
  // place without replacing anything (RENAME_NOREPLACE), so an existing `out_path` is
  // AlreadyExists. With `replace_regular_file` an existing regular file is replaced; anything
  // else there (a folder, a socket, a device node, a symlink) is FailedPrecondition, never
  // replaced. The caller checks that `out_path` lies outside the store.
  absl::StatusOr<SaveResult> Save(const std::string& ref, const std::string& out_path,
                                  images::ImageFormat format,
                                  const std::vector<std::string>& references,
                                  bool replace_regular_file = false);

 private:
  class Workspace;

  // The chain's layer records, top first (NotFound when a link is missing).
  absl::StatusOr<std::vector<LayerRecord>> LayersOf(const std::string& chain_id);
  // created_by texts for the layers of `chain` (top first) that images' config histories know.
  absl::StatusOr<std::map<std::string, std::string>> CreatedBy(
      const std::vector<LayerRecord>& chain, const std::string& preferred_image);
  // Mounts the tree `ref` shows read-only under `work`, or finds it (a staged volume); returns
  // its path.
  absl::StatusOr<std::string> OpenTree(Workspace& work, const ResolvedRef& ref,
                                       const std::string& label);
  absl::StatusOr<ResolvedRef> ResolveLayerPrefix(const std::string& ref);

  Metadata* metadata_;
  LayerStore* layers_;
  drivers::Driver* driver_;
  sys::Mounter* mounter_;
  std::string scratch_dir_;

  absl::Mutex mutex_;
  // chain id -> DiffID
  std::map<std::string, std::string> saved_diff_ids_ ABSL_GUARDED_BY(mutex_);
};

}  // namespace strata::node
