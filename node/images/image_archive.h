#pragma once
// ImageArchive: reads the images held by a `docker save` archive (classic form, or the current
// form with an OCI layout inside) or by an OCI image layout (folder or tar), and checks every
// digest it can before anything is extracted.
//
//   ASSIGN_OR_RETURN(auto archive, ImageArchive::Open("/tmp/app.tar", "/root/tmp"));
//   for (const Image& image : archive->images())
//     for (const LayerBlob& layer : image.layers)
//       ExtractLayer(layer.path, dir, style, layer.diff_id);   // verifies the DiffID
//
// Checked at Open: blob sizes and sha256 digests against their descriptors (OCI index, nested
// index, manifest, config, layers), content-addressed file names in docker-save archives
// (`<hex>.json`, `<hex>.tar`, `blobs/sha256/<hex>`), the number of layers against the config's
// rootfs.diff_ids, and for uncompressed layers that the blob digest is the DiffID. Layer DiffIDs
// of compressed layers are checked by ExtractLayer.
//
// Bounded by `limits`: every JSON document by size and depth (checked before it is parsed), an
// archive tar by its unpacked size (files at their apparent size) and entry count. Only regular
// files are ever opened for reading, and never in a way that blocks (a FIFO or a device in an
// image folder is refused).
//
// Errors: NotFound (no such path), InvalidArgument (malformed archive, a bound exceeded, a
// symlink loop; the message names the user's path, the file and field, or the missing blob, and
// never the scratch directory), DataLoss (a digest or size does not match).

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "node/images/limits.h"

namespace strata::images {

struct LayerBlob {
  std::string path;         // absolute path of the blob file, beneath the archive's root
  std::string name;         // its path inside the archive, as errors show it
  std::string diff_id;      // expected DiffID, from the config's rootfs.diff_ids
  std::string blob_digest;  // sha256 of the blob bytes (checked)
  std::string media_type;   // OCI/docker layer media type (sniffed for docker-save layers)
  int64_t size = 0;         // blob size in bytes
};

struct Image {
  std::vector<std::string> references;  // RepoTags, or OCI org.opencontainers.image.ref.name
  std::string config_json;              // the config blob, byte for byte (history, created, ...)
  std::string config_digest;            // sha256 of config_json: the image id
  std::vector<LayerBlob> layers;        // base layer first
};

enum class ArchiveFormat {
  kDockerSaveClassic,  // manifest.json + <id>/{json,layer.tar,VERSION}
  kDockerSaveOci,      // manifest.json + oci-layout, index.json, blobs/sha256/...
  kOciLayout,          // oci-layout + index.json + blobs/sha256/...
};

class ImageArchive {
 public:
  // `path` is a folder or a tar (optionally gzip/zstd compressed). A tar is unpacked safely into
  // a new subdirectory of the existing `scratch_dir`; that subdirectory is removed when the
  // ImageArchive is destroyed (or at once when Open fails).
  static absl::StatusOr<std::unique_ptr<ImageArchive>> Open(const std::string& path,
                                                            const std::string& scratch_dir,
                                                            const ImportLimits& limits = {});
  ~ImageArchive();
  ImageArchive(const ImageArchive&) = delete;
  ImageArchive& operator=(const ImageArchive&) = delete;

  ArchiveFormat format() const { return format_; }
  const std::vector<Image>& images() const { return images_; }
  // The folder the images are read from (the input folder or the scratch subdirectory).
  const std::string& root() const { return root_; }

 private:
  ImageArchive() = default;
  absl::Status Load();
  absl::Status LoadDockerSave();
  absl::Status LoadOciLayout();

  ArchiveFormat format_ = ArchiveFormat::kOciLayout;
  std::string root_;
  std::string scratch_;  // empty when reading a folder in place
  int root_fd_ = -1;
  ImportLimits limits_;
  std::vector<Image> images_;
};

}  // namespace strata::images
