#pragma once
// Labels: one small file per piece of store content saying what it is, so that a store whose
// database was lost, damaged or restored from an older backup can be re-adopted from disk
// without losing a volume (docs/operations.md). The database stays the only source of truth:
// labels are read only for content the database does not know.
//
//   <root>/labels/content/<driver id>           what the driver content `id` is: a volume's
//                                               writable layer (with where it is staged and
//                                               published), a committed layer, or scratch (an
//                                               import's or flatten's temporary) (JSON)
//   <root>/labels/content/<driver id>.deleting  the store decided to delete this content
//   <root>/labels/mounts/<driver id>            where a volume's writable layer is staged and
//                                               published (JSON; not synced: see PutMounts)
//   <root>/labels/images/<sha256 of the name>   an image record
//   <root>/labels/snapshots/<snapshot id>       a snapshot record
//
// A label is written durably (temp file, fsync, rename, fsync of the folder) once, when its
// content is made (and again when its identity changes: a rebase, an expansion), before the
// database says the content is ready; it is removed after the content. Mount and unmount calls
// only touch the mounts file, without a sync, so the mount path pays no label fsync. So content
// without a label is a leftover of a step that never completed, and content with a label the
// database does not know is content the database lost.
//
// Thread-safe: every call works on its own files.

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "node/metadata.h"

namespace strata::node {

struct ContentLabel {
  enum class Kind { kVolume, kLayer, kScratch };
  Kind kind = Kind::kLayer;
  bool deleting = false;  // the .deleting form: the store was removing it
  // kVolume: identity fields (id, name, request, capacity, chain, active id) and, from the
  // mounts file, staging_path; state is always "ready" (recovery decides "staged" from the
  // mount table).
  VolumeRecord volume;
  std::vector<PublicationRecord> publications;  // kVolume: where it was last published
  LayerRecord layer;                            // kLayer
};

class Labels {
 public:
  explicit Labels(std::string dir);  // <root>/labels
  // Creates the folders. Writes nothing when they exist.
  absl::Status Init();

  // Keyed by volume.active_id: the volume's identity, durably.
  absl::Status PutVolume(const VolumeRecord& volume);
  // Where the volume is staged (when volume.state is staged) and published, written atomically
  // but not synced: what it describes does not survive a power loss either. Removed when the
  // volume is neither staged nor published.
  absl::Status PutMounts(const VolumeRecord& volume,
                         const std::vector<PublicationRecord>& publications);
  // Content `driver_id` is a temporary of a step in flight: recovery removes it.
  absl::Status PutScratch(const std::string& driver_id);
  absl::Status PutLayer(const LayerRecord& layer);  // keyed by layer.driver_id
  // Marks the content `driver_id` as being deleted by the store (before the database forgets it).
  absl::Status MarkDeleting(const std::string& driver_id);
  // Undoes MarkDeleting (the database still knows the content after all).
  absl::Status UnmarkDeleting(const std::string& driver_id);
  // Removes both forms of the label of `driver_id`; missing is OK.
  absl::Status RemoveContent(const std::string& driver_id);
  absl::StatusOr<std::optional<ContentLabel>> GetContent(const std::string& driver_id);
  // A content label from its JSON text (RawContent, a quarantine entry); nullopt if unreadable.
  static std::optional<ContentLabel> Parse(const std::string& json);
  // Driver ids that have a label of either form.
  absl::StatusOr<std::vector<std::string>> ListContent();

  absl::Status PutImage(const ImageRecord& image);
  absl::Status RemoveImage(const std::string& name);
  absl::StatusOr<std::vector<ImageRecord>> ListImages();

  absl::Status PutSnapshot(const SnapshotRecord& snapshot);
  absl::Status RemoveSnapshot(const std::string& id);
  absl::StatusOr<std::vector<SnapshotRecord>> ListSnapshots();

  const std::string& dir() const { return dir_; }
  // The label of `driver_id` as stored (JSON text), "" when there is none.
  std::string RawContent(const std::string& driver_id) const;

 private:
  std::string ContentPath(const std::string& driver_id) const;
  std::string MountsPath(const std::string& driver_id) const;
  std::string dir_;
};

}  // namespace strata::node
