#pragma once
// Writes an image (a stack of layer tars and a config) as a `docker save` archive or an OCI
// image layout, readable by ImageArchive (image_archive.h), docker load, skopeo and umoci.
//
//   ImageToWrite image{.references = {"registry.local/app:snap-1"}};
//   image.layers.push_back({"/root/tmp/l0.tar", l0.diff_id, created, "strata import"});
//   RETURN_IF_ERROR(WriteImage(image, "/root/tmp/app.tar", ImageFormat::kDockerSave));
//
// The config is `base_config_json` (the source image's config: architecture, os, config, ...)
// with rootfs.diff_ids, history (one entry per layer) and created (the top layer's time)
// rewritten from `layers`; without it, a minimal linux/amd64 config. Output is deterministic:
// JSON keys sorted, tar entries in a fixed order with mtime = the image's created time, numeric
// owners 0:0.
//
// Every layer is checked while it is copied: its sha256 must be its diff_id (DataLoss otherwise),
// so what is written always matches the config. The output is written under a temporary name
// beside `out_path` and renamed into place at the end; a failed write leaves nothing behind.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace strata::images {

struct LayerToWrite {
  std::string tar_path;      // the uncompressed layer tar (e.g. from ExportTreeDiff)
  std::string diff_id;       // "sha256:<hex>" of that tar
  int64_t created_unix = 0;  // history[].created
  std::string created_by;    // history[].created_by (docker history shows it)
};

struct ImageToWrite {
  // "repo:tag" names ("repo" alone means "repo:latest"). docker-save: RepoTags and
  // `repositories`; OCI: one index.json entry each, with org.opencontainers.image.ref.name set to
  // the whole reference. May be empty (an untagged image).
  std::vector<std::string> references;
  std::vector<LayerToWrite> layers;  // base layer first; at least one
  std::string base_config_json;      // optional
};

enum class ImageFormat {
  // Classic `docker save`: manifest.json, <config-hex>.json, repositories, and one folder per
  // layer named by the hex of the layer's ChainID (docker derives v1 ids from the v1 JSON
  // instead; only their uniqueness matters to readers) holding layer.tar, json (v1 layer JSON:
  // id, parent, created, container_config.Cmd) and VERSION ("1.0"). Always a tar.
  kDockerSave,
  // OCI image layout: oci-layout, index.json, blobs/sha256/ (config, manifest, layers). A folder,
  // or a tar when out_path ends with ".tar".
  kOciLayout,
};

struct WriteImageOptions {
  // kOciLayout only: layers as application/vnd.oci.image.layer.v1.tar+gzip (no timestamp in the
  // gzip header) instead of uncompressed application/vnd.oci.image.layer.v1.tar.
  bool gzip_layers = false;
};

// Errors: InvalidArgument (no layers, bad digest or reference, config not a JSON object, gzip
// asked for docker-save), NotFound (a layer tar is missing), DataLoss (a layer's sha256 is not its
// diff_id), AlreadyExists (OCI folder output over an existing path; tars are replaced).
absl::Status WriteImage(const ImageToWrite& image, const std::string& out_path, ImageFormat format,
                        const WriteImageOptions& options = {});

}  // namespace strata::images
