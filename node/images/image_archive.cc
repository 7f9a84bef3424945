#include "node/images/image_archive.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <map>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/errno_status.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "node/images/digest.h"
#include "node/images/layer_tar.h"
#include "node/images/safe_fs.h"

namespace strata::images {
namespace {

using nlohmann::json;

constexpr char kOciManifest[] = "application/vnd.oci.image.manifest.v1+json";
constexpr char kOciIndex[] = "application/vnd.oci.image.index.v1+json";
constexpr char kDockerManifest[] = "application/vnd.docker.distribution.manifest.v2+json";
constexpr char kDockerManifestList[] = "application/vnd.docker.distribution.manifest.list.v2+json";
constexpr char kRefNameAnnotation[] = "org.opencontainers.image.ref.name";
constexpr char kLayerTar[] = "application/vnd.oci.image.layer.v1.tar";
constexpr char kLayerTarGzip[] = "application/vnd.oci.image.layer.v1.tar+gzip";
constexpr char kLayerTarZstd[] = "application/vnd.oci.image.layer.v1.tar+zstd";

bool IsLayerMediaType(const std::string& type) {
  static const char* const kAccepted[] = {
      kLayerTar,
      kLayerTarGzip,
      kLayerTarZstd,
      "application/vnd.oci.image.layer.nondistributable.v1.tar",
      "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
      "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
      "application/vnd.docker.image.rootfs.diff.tar",
      "application/vnd.docker.image.rootfs.diff.tar.gzip",
      "application/vnd.docker.image.rootfs.diff.tar.zstd",
  };
  for (const char* accepted : kAccepted) {
    if (type == accepted) return true;
  }
  return false;
}

bool IsHex64(const std::string& s) { return IsValidDigest("sha256:" + s); }

// A file opened beneath the archive root, with its size and real path.
struct OpenedFile {
  UniqueFd fd;
  int64_t size = 0;
  std::string real_path;
};

// Opens `rel` beneath `root_fd`. Symlinks inside the archive are followed (skopeo writes
// `<id>/layer.tar -> ../<hex>.tar`) but never out of it. `what` names the file in errors.
//
// Only a regular file is opened for reading: the lookup opens an O_PATH handle (which never
// blocks and has no side effects, whatever the file is), checks its type, and only then reopens
// that same inode for reading, non-blocking. A FIFO would otherwise hang the import in open().
absl::StatusOr<OpenedFile> OpenInArchive(int root_fd, const std::string& rel,
                                         const std::string& what) {
  auto parts = SplitRelativePath(rel);
  if (!parts.ok() || parts->empty()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": bad path \"", Echo(rel), "\""));
  }
  auto handle = OpenBeneath(root_fd, JoinPath(*parts, parts->size()), O_PATH, kResolveBeneath);
  if (!handle.ok()) {
    if (absl::IsNotFound(handle.status())) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": \"", Echo(rel), "\" is missing"));
    }
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": \"", Echo(rel), "\": ", handle.status().message()));
  }
  struct stat st;
  if (fstat(handle->get(), &st) != 0) return ErrnoStatus(errno, "stat", Echo(rel));
  if (!S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": \"", Echo(rel), "\" is not a regular file"));
  }
  OpenedFile out;
  out.size = st.st_size;
  std::string proc = absl::StrCat("/proc/self/fd/", handle->get());
  char link[PATH_MAX];
  ssize_t n = readlink(proc.c_str(), link, sizeof(link) - 1);
  if (n < 0) return ErrnoStatus(errno, "readlink", Echo(rel));
  out.real_path.assign(link, static_cast<size_t>(n));
  int raw = open(proc.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (raw < 0) return ErrnoStatus(errno, "open", Echo(rel));
  out.fd = UniqueFd(raw);
  struct stat again;
  if (fstat(out.fd.get(), &again) != 0) return ErrnoStatus(errno, "stat", Echo(rel));
  if (again.st_dev != st.st_dev || again.st_ino != st.st_ino || !S_ISREG(again.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": \"", Echo(rel), "\" changed"));
  }
  return out;
}

// Reads the whole file (pread from 0) while hashing it. `keep` receives the bytes if non-null.
absl::StatusOr<std::string> HashFile(const OpenedFile& file, const std::string& rel,
                                     std::string* keep, unsigned char* head = nullptr,
                                     size_t head_size = 0) {
  Sha256 hash;
  std::vector<char> buffer(1 << 20);
  off_t offset = 0;
  for (;;) {
    ssize_t n = pread(file.fd.get(), buffer.data(), buffer.size(), offset);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, "read", rel);
    }
    if (n == 0) break;
    if (head != nullptr && offset < static_cast<off_t>(head_size)) {
      size_t copy = std::min<size_t>(head_size - offset, static_cast<size_t>(n));
      std::memcpy(head + offset, buffer.data(), copy);
    }
    hash.update(buffer.data(), static_cast<size_t>(n));
    if (keep != nullptr) keep->append(buffer.data(), static_cast<size_t>(n));
    offset += n;
  }
  if (offset != file.size) {
    return absl::DataLossError(absl::StrCat(Echo(rel), ": changed while being read"));
  }
  return hash.finish();
}

absl::StatusOr<std::string> ReadSmallFile(int root_fd, const std::string& rel,
                                          const std::string& what, std::string* digest,
                                          const ImportLimits& limits) {
  ASSIGN_OR_RETURN(OpenedFile file, OpenInArchive(root_fd, rel, what));
  if (file.size > limits.max_json_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": \"", Echo(rel), "\" has ", file.size, " bytes, more than the limit of ",
        SizeText(limits.max_json_bytes), " (--max-json-bytes)"));
  }
  std::string text;
  ASSIGN_OR_RETURN(std::string computed, HashFile(file, rel, &text));
  if (digest != nullptr) *digest = computed;
  return text;
}

absl::StatusOr<json> ParseJson(const std::string& text, const std::string& what,
                               const ImportLimits& limits) {
  return ParseBoundedJson(text, limits, what);
}

// A content descriptor (OCI image spec "descriptor").
struct Descriptor {
  std::string media_type;
  std::string digest;
  int64_t size = 0;
};

absl::StatusOr<Descriptor> ParseDescriptor(const json& node, const std::string& where) {
  if (!node.is_object()) return absl::InvalidArgumentError(where + ": not an object");
  Descriptor d;
  auto media = node.find("mediaType");
  if (media != node.end()) {
    if (!media->is_string()) return absl::InvalidArgumentError(where + ".mediaType: not a string");
    d.media_type = media->get<std::string>();
  }
  auto digest = node.find("digest");
  if (digest == node.end() || !digest->is_string() || !IsValidDigest(digest->get<std::string>())) {
    return absl::InvalidArgumentError(where + ".digest: missing or not sha256:<64 hex>");
  }
  d.digest = digest->get<std::string>();
  auto size = node.find("size");
  if (size == node.end() || !size->is_number_integer() || size->get<int64_t>() < 0) {
    return absl::InvalidArgumentError(where + ".size: missing or not a non-negative integer");
  }
  d.size = size->get<int64_t>();
  return d;
}

std::string BlobPath(const std::string& digest) { return "blobs/sha256/" + digest.substr(7); }

// Opens and fully verifies a blob (size, then sha256). `keep` receives small blobs' bytes.
absl::StatusOr<OpenedFile> VerifyBlob(int root_fd, const Descriptor& d, const std::string& where,
                                      std::string* keep, const ImportLimits& limits) {
  const std::string rel = BlobPath(d.digest);
  auto file = OpenInArchive(root_fd, rel, where);
  if (!file.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": blob ", d.digest, " (", rel, "): ", file.status().message()));
  }
  if (file->size != d.size) {
    return absl::DataLossError(absl::StrCat(where, ": blob ", d.digest, " has ", file->size,
                                            " bytes, descriptor says ", d.size));
  }
  if (keep != nullptr && d.size > limits.max_json_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": blob ", d.digest, " has ", d.size, " bytes, more than the limit of ",
                     SizeText(limits.max_json_bytes), " (--max-json-bytes)"));
  }
  ASSIGN_OR_RETURN(std::string computed, HashFile(*file, rel, keep));
  if (computed != d.digest) {
    return absl::DataLossError(
        absl::StrCat(where, ": blob ", rel, " has digest ", computed, ", expected ", d.digest));
  }
  return file;
}

// The config's rootfs.diff_ids.
absl::StatusOr<std::vector<std::string>> DiffIds(const std::string& config_text,
                                                 const std::string& where,
                                                 const ImportLimits& limits) {
  ASSIGN_OR_RETURN(json config, ParseJson(config_text, where, limits));
  if (!config.is_object()) return absl::InvalidArgumentError(where + ": not an object");
  auto rootfs = config.find("rootfs");
  if (rootfs == config.end() || !rootfs->is_object()) {
    return absl::InvalidArgumentError(where + ": rootfs missing");
  }
  auto type = rootfs->find("type");
  if (type == rootfs->end() || *type != "layers") {
    return absl::InvalidArgumentError(where + ": rootfs.type is not \"layers\"");
  }
  auto ids = rootfs->find("diff_ids");
  if (ids == rootfs->end() || !ids->is_array()) {
    return absl::InvalidArgumentError(where + ": rootfs.diff_ids missing");
  }
  std::vector<std::string> out;
  for (const json& id : *ids) {
    if (!id.is_string() || !IsValidDigest(id.get<std::string>())) {
      return absl::InvalidArgumentError(where + ": rootfs.diff_ids holds a bad digest");
    }
    out.push_back(id.get<std::string>());
  }
  return out;
}

// Media type of a docker-save layer from its first bytes (the archive does not say).
std::string SniffLayerType(const unsigned char* head, size_t n) {
  if (n >= 2 && head[0] == 0x1f && head[1] == 0x8b) return kLayerTarGzip;
  if (n >= 4 && head[0] == 0x28 && head[1] == 0xb5 && head[2] == 0x2f && head[3] == 0xfd) {
    return kLayerTarZstd;
  }
  return kLayerTar;
}

// When a docker-save file name is content addressed ("<hex>.json", "<hex>.tar",
// "blobs/sha256/<hex>"), the digest it claims.
std::string ClaimedDigest(const std::vector<std::string>& parts) {
  if (parts.size() >= 3 && parts[parts.size() - 3] == "blobs" &&
      parts[parts.size() - 2] == "sha256" && IsHex64(parts.back())) {
    return "sha256:" + parts.back();
  }
  const std::string& base = parts.back();
  for (const char* ext : {".json", ".tar"}) {
    std::string e = ext;
    if (base.size() == 64 + e.size() && base.compare(64, e.size(), e) == 0 &&
        IsHex64(base.substr(0, 64))) {
      return "sha256:" + base.substr(0, 64);
    }
  }
  return "";
}

bool IsPlatform(const json& node, const char* os, const char* arch) {
  auto platform = node.find("platform");
  if (platform == node.end() || !platform->is_object()) return false;
  return platform->value("os", "") == os && platform->value("architecture", "") == arch;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ImageArchive>> ImageArchive::Open(const std::string& path,
                                                                 const std::string& scratch_dir,
                                                                 const ImportLimits& limits) {
  const std::string shown = Echo(path);
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    const int err = errno;
    if (err == ELOOP) {
      return absl::InvalidArgumentError(
          absl::StrCat("image archive ", shown, ": a symlink loop (too many levels of symlinks)"));
    }
    if (err == ENOENT || err == ENOTDIR) {
      return absl::NotFoundError(absl::StrCat("image archive ", shown, ": no such file"));
    }
    return ErrnoStatus(err, "image archive", shown);
  }
  std::unique_ptr<ImageArchive> archive(new ImageArchive());
  archive->limits_ = limits;
  if (S_ISDIR(st.st_mode)) {
    archive->root_ = path;
  } else if (S_ISREG(st.st_mode)) {
    std::string pattern = scratch_dir + "/archive-XXXXXX";
    if (mkdtemp(pattern.data()) == nullptr) return ErrnoStatus(errno, "mkdtemp", pattern);
    archive->scratch_ = pattern;
    archive->root_ = pattern;
    ExtractOptions options;
    options.display_name = "its tar";
    options.max_bytes = limits.max_import_bytes;
    options.max_bytes_flag = "--max-import-bytes";
    options.max_entries = limits.max_layer_entries;
    absl::Status unpacked = UnpackArchiveTar(path, pattern, options);
    // A file that is no tar at all is the caller's mistake, not damaged data: say what it is
    // not, as INVALID_ARGUMENT (DATA_LOSS stays for a tar that breaks off or is corrupt).
    if (unpacked.code() == absl::StatusCode::kDataLoss &&
        absl::StrContains(unpacked.message(), ": not a tar: ")) {
      return absl::InvalidArgumentError(
          absl::StrCat("image archive ", shown,
                       " is not a tar archive (nor a gzip- or zstd-compressed tar); import takes a "
                       "docker-save tar, an OCI image layout folder or a tar of one"));
    }
    if (!unpacked.ok()) {
      return absl::Status(unpacked.code(),
                          absl::StrCat("image archive ", shown, ": ", unpacked.message()));
    }
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("image archive ", shown, ": neither a folder nor a regular file"));
  }
  archive->root_fd_ = open(archive->root_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (archive->root_fd_ < 0) return ErrnoStatus(errno, "open", archive->root_);
  absl::Status loaded = archive->Load();
  if (!loaded.ok()) {
    return absl::Status(loaded.code(),
                        absl::StrCat("image archive ", shown, ": ", loaded.message()));
  }
  return archive;
}

ImageArchive::~ImageArchive() {
  if (root_fd_ >= 0) close(root_fd_);
  if (!scratch_.empty()) {
    absl::Status removed = RemoveTree(scratch_);
    if (!removed.ok()) {
      LogWarning("cannot remove image scratch directory",
                 {{"path", scratch_}, {"error", removed.ToString()}});
    }
  }
}

absl::Status ImageArchive::Load() {
  struct stat st;
  if (fstatat(root_fd_, "manifest.json", &st, AT_SYMLINK_NOFOLLOW) == 0) {
    format_ = fstatat(root_fd_, "oci-layout", &st, AT_SYMLINK_NOFOLLOW) == 0
                  ? ArchiveFormat::kDockerSaveOci
                  : ArchiveFormat::kDockerSaveClassic;
    return LoadDockerSave();
  }
  if (fstatat(root_fd_, "oci-layout", &st, AT_SYMLINK_NOFOLLOW) == 0) {
    format_ = ArchiveFormat::kOciLayout;
    return LoadOciLayout();
  }
  return absl::InvalidArgumentError(
      "neither manifest.json (docker save) nor oci-layout (OCI image layout) found");
}

absl::Status ImageArchive::LoadDockerSave() {
  ASSIGN_OR_RETURN(std::string text,
                   ReadSmallFile(root_fd_, "manifest.json", "manifest.json", nullptr, limits_));
  ASSIGN_OR_RETURN(json manifest, ParseJson(text, "manifest.json", limits_));
  if (!manifest.is_array()) return absl::InvalidArgumentError("manifest.json: not an array");
  for (size_t i = 0; i < manifest.size(); ++i) {
    const json& item = manifest[i];
    const std::string where = absl::StrCat("manifest.json[", i, "]");
    if (!item.is_object()) return absl::InvalidArgumentError(where + ": not an object");
    Image image;
    auto tags = item.find("RepoTags");
    if (tags != item.end() && !tags->is_null()) {
      if (!tags->is_array()) return absl::InvalidArgumentError(where + ".RepoTags: not an array");
      for (const json& tag : *tags) {
        if (!tag.is_string()) return absl::InvalidArgumentError(where + ".RepoTags: not strings");
        image.references.push_back(tag.get<std::string>());
      }
    }
    auto config = item.find("Config");
    if (config == item.end() || !config->is_string()) {
      return absl::InvalidArgumentError(where + ".Config: missing or not a string");
    }
    const std::string config_rel = config->get<std::string>();
    auto config_parts = SplitRelativePath(config_rel);
    if (!config_parts.ok() || config_parts->empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ".Config: bad path \"", Echo(config_rel), "\""));
    }
    ASSIGN_OR_RETURN(image.config_json, ReadSmallFile(root_fd_, config_rel, where + ".Config",
                                                      &image.config_digest, limits_));
    const std::string claimed = ClaimedDigest(*config_parts);
    if (!claimed.empty() && claimed != image.config_digest) {
      return absl::DataLossError(absl::StrCat("config ", Echo(config_rel), " has digest ",
                                              image.config_digest, ", its name says ", claimed));
    }
    ASSIGN_OR_RETURN(std::vector<std::string> diff_ids,
                     DiffIds(image.config_json, Echo(config_rel), limits_));
    auto layers = item.find("Layers");
    if (layers == item.end() || !layers->is_array()) {
      return absl::InvalidArgumentError(where + ".Layers: missing or not an array");
    }
    if (layers->size() != diff_ids.size()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ".Layers has ", layers->size(),
                                                     " entries but ", Echo(config_rel), " has ",
                                                     diff_ids.size(), " rootfs.diff_ids"));
    }
    for (size_t l = 0; l < layers->size(); ++l) {
      const std::string lwhere = absl::StrCat(where, ".Layers[", l, "]");
      const json& layer = (*layers)[l];
      if (!layer.is_string()) return absl::InvalidArgumentError(lwhere + ": not a string");
      const std::string rel = layer.get<std::string>();
      auto parts = SplitRelativePath(rel);
      if (!parts.ok() || parts->empty()) {
        return absl::InvalidArgumentError(absl::StrCat(lwhere, ": bad path \"", Echo(rel), "\""));
      }
      ASSIGN_OR_RETURN(OpenedFile file, OpenInArchive(root_fd_, rel, lwhere));
      unsigned char head[4] = {0, 0, 0, 0};
      ASSIGN_OR_RETURN(std::string digest, HashFile(file, rel, nullptr, head, sizeof(head)));
      LayerBlob blob;
      blob.path = file.real_path;
      blob.name = rel;
      blob.diff_id = diff_ids[l];
      blob.blob_digest = digest;
      blob.size = file.size;
      blob.media_type = SniffLayerType(head, std::min<int64_t>(file.size, sizeof(head)));
      const std::string named = ClaimedDigest(*parts);
      if (!named.empty() && named != digest) {
        return absl::DataLossError(
            absl::StrCat("layer ", Echo(rel), " has digest ", digest, ", its name says ", named));
      }
      if (blob.media_type == kLayerTar && digest != blob.diff_id) {
        return absl::DataLossError(absl::StrCat("layer ", Echo(rel), " has digest ", digest,
                                                ", the config's DiffID is ", blob.diff_id));
      }
      image.layers.push_back(std::move(blob));
    }
    images_.push_back(std::move(image));
  }
  return absl::OkStatus();
}

absl::Status ImageArchive::LoadOciLayout() {
  ASSIGN_OR_RETURN(std::string layout_text,
                   ReadSmallFile(root_fd_, "oci-layout", "oci-layout", nullptr, limits_));
  ASSIGN_OR_RETURN(json layout, ParseJson(layout_text, "oci-layout", limits_));
  if (!layout.is_object() || !layout.contains("imageLayoutVersion") ||
      !layout["imageLayoutVersion"].is_string() ||
      layout["imageLayoutVersion"].get<std::string>().rfind("1.", 0) != 0) {
    return absl::InvalidArgumentError("oci-layout: imageLayoutVersion missing or not 1.x");
  }
  ASSIGN_OR_RETURN(std::string index_text,
                   ReadSmallFile(root_fd_, "index.json", "index.json", nullptr, limits_));
  ASSIGN_OR_RETURN(json index, ParseJson(index_text, "index.json", limits_));
  if (!index.is_object() || !index.contains("manifests") || !index["manifests"].is_array()) {
    return absl::InvalidArgumentError("index.json: manifests missing or not an array");
  }
  std::map<std::string, size_t> by_manifest;  // manifest digest -> index in images_
  const json& entries = index["manifests"];
  for (size_t i = 0; i < entries.size(); ++i) {
    const std::string where = absl::StrCat("index.json manifests[", i, "]");
    ASSIGN_OR_RETURN(Descriptor top, ParseDescriptor(entries[i], where));
    std::string reference;
    auto annotations = entries[i].find("annotations");
    if (annotations != entries[i].end() && annotations->is_object()) {
      auto name = annotations->find(kRefNameAnnotation);
      if (name != annotations->end() && name->is_string()) reference = name->get<std::string>();
    }

    // Nested index: pick linux/amd64, or the only manifest.
    Descriptor manifest_desc = top;
    std::string manifest_where = where;
    json nested;
    for (int depth = 0;
         manifest_desc.media_type == kOciIndex || manifest_desc.media_type == kDockerManifestList;
         ++depth) {
      if (depth >= 4) return absl::InvalidArgumentError(where + ": indexes nested too deeply");
      std::string text;
      RETURN_IF_ERROR(VerifyBlob(root_fd_, manifest_desc, manifest_where, &text, limits_).status());
      ASSIGN_OR_RETURN(nested, ParseJson(text, manifest_desc.digest, limits_));
      if (!nested.is_object() || !nested.contains("manifests") || !nested["manifests"].is_array() ||
          nested["manifests"].empty()) {
        return absl::InvalidArgumentError(manifest_desc.digest + ": manifests missing or empty");
      }
      const json& list = nested["manifests"];
      const json* chosen = list.size() == 1 ? &list[0] : nullptr;
      for (size_t m = 0; chosen == nullptr && m < list.size(); ++m) {
        if (IsPlatform(list[m], "linux", "amd64")) chosen = &list[m];
      }
      if (chosen == nullptr) {
        return absl::InvalidArgumentError(manifest_desc.digest +
                                          ": no linux/amd64 manifest in the image index");
      }
      manifest_where = manifest_desc.digest + " manifests[]";
      ASSIGN_OR_RETURN(manifest_desc, ParseDescriptor(*chosen, manifest_where));
    }
    if (manifest_desc.media_type != kOciManifest && manifest_desc.media_type != kDockerManifest) {
      return absl::InvalidArgumentError(absl::StrCat(manifest_where, ": unsupported mediaType \"",
                                                     Echo(manifest_desc.media_type), "\""));
    }
    if (auto seen = by_manifest.find(manifest_desc.digest); seen != by_manifest.end()) {
      if (!reference.empty()) images_[seen->second].references.push_back(reference);
      continue;
    }

    std::string manifest_text;
    RETURN_IF_ERROR(
        VerifyBlob(root_fd_, manifest_desc, manifest_where, &manifest_text, limits_).status());
    const std::string mwhere = "manifest " + manifest_desc.digest;
    ASSIGN_OR_RETURN(json manifest, ParseJson(manifest_text, mwhere, limits_));
    if (!manifest.is_object() || !manifest.contains("config")) {
      return absl::InvalidArgumentError(mwhere + ": config missing");
    }
    Image image;
    if (!reference.empty()) image.references.push_back(reference);
    ASSIGN_OR_RETURN(Descriptor config_desc,
                     ParseDescriptor(manifest["config"], mwhere + " config"));
    RETURN_IF_ERROR(
        VerifyBlob(root_fd_, config_desc, mwhere + " config", &image.config_json, limits_)
            .status());
    image.config_digest = config_desc.digest;
    ASSIGN_OR_RETURN(std::vector<std::string> diff_ids,
                     DiffIds(image.config_json, "config " + config_desc.digest, limits_));
    if (!manifest.contains("layers") || !manifest["layers"].is_array()) {
      return absl::InvalidArgumentError(mwhere + ": layers missing or not an array");
    }
    const json& layers = manifest["layers"];
    if (layers.size() != diff_ids.size()) {
      return absl::InvalidArgumentError(absl::StrCat(mwhere, " has ", layers.size(),
                                                     " layers but its config has ", diff_ids.size(),
                                                     " rootfs.diff_ids"));
    }
    for (size_t l = 0; l < layers.size(); ++l) {
      const std::string lwhere = absl::StrCat(mwhere, " layers[", l, "]");
      ASSIGN_OR_RETURN(Descriptor layer, ParseDescriptor(layers[l], lwhere));
      if (!IsLayerMediaType(layer.media_type)) {
        return absl::InvalidArgumentError(
            absl::StrCat(lwhere, ": unsupported mediaType \"", Echo(layer.media_type), "\""));
      }
      ASSIGN_OR_RETURN(OpenedFile file, VerifyBlob(root_fd_, layer, lwhere, nullptr, limits_));
      LayerBlob blob;
      blob.path = file.real_path;
      blob.name = BlobPath(layer.digest);
      blob.diff_id = diff_ids[l];
      blob.blob_digest = layer.digest;
      blob.media_type = layer.media_type;
      blob.size = layer.size;
      const bool uncompressed =
          layer.media_type.size() >= 4 &&
          layer.media_type.compare(layer.media_type.size() - 4, 4, ".tar") == 0;
      if (uncompressed && blob.blob_digest != blob.diff_id) {
        return absl::DataLossError(absl::StrCat(lwhere, ": uncompressed layer ", layer.digest,
                                                " differs from its DiffID ", blob.diff_id));
      }
      image.layers.push_back(std::move(blob));
    }
    by_manifest[manifest_desc.digest] = images_.size();
    images_.push_back(std::move(image));
  }
  return absl::OkStatus();
}

}  // namespace strata::images
