#include "node/images/image_writer.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>
#include <memory>
#include <set>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/errno_status.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "node/images/digest.h"
#include "node/images/limits.h"
#include "node/images/safe_fs.h"

namespace strata::images {
namespace {

using nlohmann::json;

constexpr size_t kCopyBuffer = 1 << 20;
constexpr char kOciManifest[] = "application/vnd.oci.image.manifest.v1+json";
constexpr char kOciIndex[] = "application/vnd.oci.image.index.v1+json";
constexpr char kOciConfig[] = "application/vnd.oci.image.config.v1+json";
constexpr char kLayerTar[] = "application/vnd.oci.image.layer.v1.tar";
constexpr char kLayerTarGzip[] = "application/vnd.oci.image.layer.v1.tar+gzip";
constexpr char kRefNameAnnotation[] = "org.opencontainers.image.ref.name";

std::string Rfc3339(int64_t unix_seconds) {
  time_t t = static_cast<time_t>(unix_seconds);
  struct tm tm;
  gmtime_r(&t, &tm);
  char buffer[32];
  strftime(buffer, sizeof(buffer), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buffer;
}

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// "repo:tag" with ":latest" added when there is no tag. Digest references cannot be tags.
absl::StatusOr<std::string> NormalizeReference(const std::string& reference) {
  if (reference.empty()) return absl::InvalidArgumentError("empty image reference");
  for (unsigned char c : reference) {
    if (c <= ' ' || c == 0x7f || c == '@') {
      return absl::InvalidArgumentError(
          absl::StrCat("image reference \"", reference, "\" must be repo[:tag]"));
    }
  }
  size_t slash = reference.rfind('/');
  size_t colon = reference.rfind(':');
  if (colon != std::string::npos && (slash == std::string::npos || colon > slash)) {
    if (colon == 0 || colon + 1 == reference.size()) {
      return absl::InvalidArgumentError(absl::StrCat("image reference \"", reference, "\""));
    }
    return reference;
  }
  return reference + ":latest";
}

// Where the archive's files go: a tar or a folder, both under a temporary name until Commit.
class Sink {
 public:
  virtual ~Sink() = default;
  virtual absl::Status AddDir(const std::string& name) = 0;
  virtual absl::Status AddBytes(const std::string& name, const std::string& data) = 0;
  // Copies `size` bytes of the open file `fd`; returns the sha256 of what was copied.
  virtual absl::StatusOr<std::string> AddFile(const std::string& name, int fd, int64_t size,
                                              const std::string& what) = 0;
  virtual absl::Status Commit() = 0;
};

// Reads the whole of `fd` (`size` bytes) in chunks, handing each to `consume` and hashing it.
template <typename Consume>
absl::StatusOr<std::string> StreamFile(int fd, int64_t size, const std::string& what,
                                       Consume consume) {
  Sha256 hash;
  std::vector<char> buffer(kCopyBuffer);
  int64_t done = 0;
  for (;;) {
    ssize_t n = pread(fd, buffer.data(), buffer.size(), done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, "read", what);
    }
    if (n == 0) break;
    if (done + n > size) return absl::DataLossError(what + ": changed while being read");
    hash.update(buffer.data(), static_cast<size_t>(n));
    RETURN_IF_ERROR(consume(buffer.data(), static_cast<size_t>(n)));
    done += n;
  }
  if (done != size) return absl::DataLossError(what + ": changed while being read");
  return hash.finish();
}

absl::Status WriteAll(int fd, const char* data, size_t size, const std::string& what) {
  while (size > 0) {
    ssize_t n = write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, "write", what);
    }
    data += n;
    size -= static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

class TarSink : public Sink {
 public:
  explicit TarSink(int64_t mtime) : mtime_(mtime) {}
  ~TarSink() override {
    if (archive_ != nullptr) archive_write_free(archive_);
    if (!temp_path_.empty()) unlink(temp_path_.c_str());
  }

  absl::Status Open(const std::string& out_path) {
    out_path_ = out_path;
    std::string pattern = out_path + ".tmp-XXXXXX";
    int fd = mkostemp(pattern.data(), O_CLOEXEC);
    if (fd < 0) return ErrnoStatus(errno, "create", pattern);
    fd_ = UniqueFd(fd);
    temp_path_ = pattern;
    if (fchmod(fd, 0644) != 0) return ErrnoStatus(errno, "chmod", temp_path_);
    archive_ = archive_write_new();
    if (archive_write_set_format_pax_restricted(archive_) != ARCHIVE_OK ||
        archive_write_set_bytes_in_last_block(archive_, 1) != ARCHIVE_OK ||
        archive_write_open_fd(archive_, fd) != ARCHIVE_OK) {
      return Error("open tar writer");
    }
    return absl::OkStatus();
  }

  absl::Status AddDir(const std::string& name) override { return Header(name, AE_IFDIR, 0755, 0); }

  absl::Status AddBytes(const std::string& name, const std::string& data) override {
    RETURN_IF_ERROR(Header(name, AE_IFREG, 0644, static_cast<int64_t>(data.size())));
    if (!data.empty() && archive_write_data(archive_, data.data(), data.size()) !=
                             static_cast<la_ssize_t>(data.size())) {
      return Error("write " + name);
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::string> AddFile(const std::string& name, int fd, int64_t size,
                                      const std::string& what) override {
    RETURN_IF_ERROR(Header(name, AE_IFREG, 0644, size));
    return StreamFile(fd, size, what, [&](const char* data, size_t n) -> absl::Status {
      if (archive_write_data(archive_, data, n) != static_cast<la_ssize_t>(n)) {
        return Error("write " + name);
      }
      return absl::OkStatus();
    });
  }

  absl::Status Commit() override {
    if (archive_write_close(archive_) != ARCHIVE_OK) return Error("close tar");
    archive_write_free(archive_);
    archive_ = nullptr;
    if (fdatasync(fd_.get()) != 0) return ErrnoStatus(errno, "fsync", temp_path_);
    if (close(fd_.release()) != 0) return ErrnoStatus(errno, "close", temp_path_);
    if (rename(temp_path_.c_str(), out_path_.c_str()) != 0) {
      return ErrnoStatus(errno, "rename to", out_path_);
    }
    temp_path_.clear();
    return absl::OkStatus();
  }

 private:
  absl::Status Header(const std::string& name, mode_t type, mode_t perm, int64_t size) {
    archive_entry* e = archive_entry_new();
    archive_entry_copy_pathname(e, name.c_str());
    archive_entry_set_filetype(e, type);
    archive_entry_set_perm(e, perm);
    archive_entry_set_size(e, size);
    archive_entry_set_mtime(e, mtime_, 0);
    archive_entry_set_uid(e, 0);
    archive_entry_set_gid(e, 0);
    int rc = archive_write_header(archive_, e);
    archive_entry_free(e);
    if (rc < ARCHIVE_WARN) return Error("write header of " + name);
    return absl::OkStatus();
  }

  absl::Status Error(const std::string& what) {
    const char* message = archive_error_string(archive_);
    return absl::InternalError(absl::StrCat(temp_path_, ": ", what, ": ",
                                            message != nullptr ? message : "libarchive error"));
  }

  const int64_t mtime_;
  archive* archive_ = nullptr;
  UniqueFd fd_;
  std::string out_path_;
  std::string temp_path_;
};

class DirSink : public Sink {
 public:
  ~DirSink() override {
    if (!temp_path_.empty()) {
      absl::Status removed = RemoveTree(temp_path_);
      if (!removed.ok()) {
        LogWarning("cannot remove partial image layout",
                   {{"path", temp_path_}, {"error", removed.ToString()}});
      }
    }
  }

  absl::Status Open(const std::string& out_path) {
    out_path_ = out_path;
    struct stat st;
    if (lstat(out_path.c_str(), &st) == 0) {
      return absl::AlreadyExistsError(out_path + " already exists");
    }
    std::string pattern = out_path + ".tmp-XXXXXX";
    if (mkdtemp(pattern.data()) == nullptr) return ErrnoStatus(errno, "mkdtemp", pattern);
    temp_path_ = pattern;
    if (chmod(temp_path_.c_str(), 0755) != 0) return ErrnoStatus(errno, "chmod", temp_path_);
    return absl::OkStatus();
  }

  absl::Status AddDir(const std::string& name) override {
    const std::string path = temp_path_ + "/" + name;
    if (mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) return ErrnoStatus(errno, "mkdir", path);
    return absl::OkStatus();
  }

  absl::Status AddBytes(const std::string& name, const std::string& data) override {
    ASSIGN_OR_RETURN(UniqueFd fd, Create(name));
    RETURN_IF_ERROR(WriteAll(fd.get(), data.data(), data.size(), name));
    if (fdatasync(fd.get()) != 0) return ErrnoStatus(errno, "fsync", name);
    return absl::OkStatus();
  }

  absl::StatusOr<std::string> AddFile(const std::string& name, int fd, int64_t size,
                                      const std::string& what) override {
    ASSIGN_OR_RETURN(UniqueFd out, Create(name));
    ASSIGN_OR_RETURN(std::string digest,
                     StreamFile(fd, size, what, [&](const char* data, size_t n) {
                       return WriteAll(out.get(), data, n, name);
                     }));
    if (fdatasync(out.get()) != 0) return ErrnoStatus(errno, "fsync", name);
    return digest;
  }

  absl::Status Commit() override {
    if (rename(temp_path_.c_str(), out_path_.c_str()) != 0) {
      return ErrnoStatus(errno, "rename to", out_path_);
    }
    temp_path_.clear();
    return absl::OkStatus();
  }

 private:
  absl::StatusOr<UniqueFd> Create(const std::string& name) {
    const std::string path = temp_path_ + "/" + name;
    int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) return ErrnoStatus(errno, "create", path);
    return UniqueFd(fd);
  }

  std::string out_path_;
  std::string temp_path_;
};

struct OpenLayer {
  UniqueFd fd;
  int64_t size = 0;
};

absl::StatusOr<OpenLayer> OpenLayerTar(const LayerToWrite& layer) {
  int fd = open(layer.tar_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, "open layer", layer.tar_path);
  OpenLayer out;
  out.fd = UniqueFd(fd);
  struct stat st;
  if (fstat(fd, &st) != 0) return ErrnoStatus(errno, "stat", layer.tar_path);
  if (!S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(layer.tar_path + ": not a regular file");
  }
  out.size = st.st_size;
  return out;
}

absl::Status CheckDigest(const std::string& got, const LayerToWrite& layer) {
  if (got == layer.diff_id) return absl::OkStatus();
  return absl::DataLossError(absl::StrCat("layer ", layer.tar_path, " has digest ", got,
                                          ", expected its diff_id ", layer.diff_id));
}

// The uncompressed layer gzipped into a temporary file beside `near`; checks the layer's DiffID
// on the way. The file is unlinked when the returned object is destroyed.
struct GzipLayer {
  ~GzipLayer() {
    if (!path.empty()) unlink(path.c_str());
  }
  std::string path;
  UniqueFd fd;
  int64_t size = 0;
  std::string digest;
};

absl::Status GzipTo(const LayerToWrite& layer, const std::string& near, GzipLayer* out) {
  ASSIGN_OR_RETURN(OpenLayer in, OpenLayerTar(layer));
  std::string pattern = near + ".gz-XXXXXX";
  int fd = mkostemp(pattern.data(), O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, "create", pattern);
  out->path = pattern;
  out->fd = UniqueFd(fd);
  archive* a = archive_write_new();
  std::unique_ptr<archive, int (*)(archive*)> owner(a, archive_write_free);
  archive_write_set_format_raw(a);
  archive_write_add_filter_gzip(a);
  // No mtime in the gzip header, so the same layer always compresses to the same blob.
  archive_write_set_filter_option(a, "gzip", "timestamp", nullptr);
  archive_write_set_bytes_in_last_block(a, 1);
  if (archive_write_open_fd(a, fd) != ARCHIVE_OK) {
    return absl::InternalError(
        absl::StrCat("gzip ", layer.tar_path, ": ", archive_error_string(a)));
  }
  archive_entry* e = archive_entry_new();
  archive_entry_set_filetype(e, AE_IFREG);
  archive_entry_copy_pathname(e, "layer.tar");
  archive_entry_set_size(e, in.size);
  int rc = archive_write_header(a, e);
  archive_entry_free(e);
  if (rc < ARCHIVE_WARN) {
    return absl::InternalError(
        absl::StrCat("gzip ", layer.tar_path, ": ", archive_error_string(a)));
  }
  ASSIGN_OR_RETURN(std::string diff_id,
                   StreamFile(in.fd.get(), in.size, layer.tar_path,
                              [&](const char* data, size_t n) -> absl::Status {
                                if (archive_write_data(a, data, n) != static_cast<la_ssize_t>(n)) {
                                  return absl::InternalError(absl::StrCat(
                                      "gzip ", layer.tar_path, ": ", archive_error_string(a)));
                                }
                                return absl::OkStatus();
                              }));
  RETURN_IF_ERROR(CheckDigest(diff_id, layer));
  if (archive_write_close(a) != ARCHIVE_OK) {
    return absl::InternalError(
        absl::StrCat("gzip ", layer.tar_path, ": ", archive_error_string(a)));
  }
  struct stat st;
  if (fstat(fd, &st) != 0) return ErrnoStatus(errno, "stat", out->path);
  out->size = st.st_size;
  ASSIGN_OR_RETURN(out->digest, StreamFile(fd, out->size, out->path,
                                           [](const char*, size_t) { return absl::OkStatus(); }));
  return absl::OkStatus();
}

absl::StatusOr<json> BuildConfig(const ImageToWrite& image) {
  json config;
  if (!image.base_config_json.empty()) {
    // Stored configs predating the import bounds may be hostile (nested a million deep).
    ASSIGN_OR_RETURN(config, ParseBoundedJson(image.base_config_json, kMaxStoredJsonBytes,
                                              kMaxJsonDepthCeiling, "the image's stored config"));
    if (!config.is_object()) {
      return absl::InvalidArgumentError("the image's stored config: not a JSON object");
    }
  } else {
    config = json{{"architecture", "amd64"}, {"os", "linux"}, {"config", json::object()}};
  }
  json diff_ids = json::array();
  json history = json::array();
  for (const LayerToWrite& layer : image.layers) {
    diff_ids.push_back(layer.diff_id);
    json entry = {{"created", Rfc3339(layer.created_unix)}};
    if (!layer.created_by.empty()) entry["created_by"] = layer.created_by;
    history.push_back(std::move(entry));
  }
  config["rootfs"] = {{"type", "layers"}, {"diff_ids", std::move(diff_ids)}};
  config["history"] = std::move(history);
  config["created"] = Rfc3339(image.layers.back().created_unix);
  return config;
}

absl::Status WriteDockerSave(const ImageToWrite& image, const std::vector<std::string>& tags,
                             const std::string& config_text, Sink& sink) {
  std::vector<std::string> diff_ids;
  for (const LayerToWrite& layer : image.layers) diff_ids.push_back(layer.diff_id);
  const std::vector<std::string> chain_ids = ChainIds(diff_ids);
  json config = json::parse(config_text);
  json manifest_layers = json::array();
  std::string parent;
  for (size_t i = 0; i < image.layers.size(); ++i) {
    const LayerToWrite& layer = image.layers[i];
    const std::string id = chain_ids[i].substr(7);
    json v1 = {{"id", id},
               {"created", Rfc3339(layer.created_unix)},
               {"container_config", {{"Cmd", json::array({layer.created_by})}}}};
    if (!parent.empty()) v1["parent"] = parent;
    if (config.contains("os")) v1["os"] = config["os"];
    if (config.contains("architecture")) v1["architecture"] = config["architecture"];
    RETURN_IF_ERROR(sink.AddDir(id + "/"));
    RETURN_IF_ERROR(sink.AddBytes(id + "/VERSION", "1.0"));
    RETURN_IF_ERROR(sink.AddBytes(id + "/json", v1.dump()));
    ASSIGN_OR_RETURN(OpenLayer in, OpenLayerTar(layer));
    ASSIGN_OR_RETURN(std::string digest,
                     sink.AddFile(id + "/layer.tar", in.fd.get(), in.size, layer.tar_path));
    RETURN_IF_ERROR(CheckDigest(digest, layer));
    manifest_layers.push_back(id + "/layer.tar");
    parent = id;
  }
  const std::string config_name = Sha256Digest(config_text).substr(7) + ".json";
  RETURN_IF_ERROR(sink.AddBytes(config_name, config_text));
  json manifest = json::array(
      {{{"Config", config_name}, {"RepoTags", tags}, {"Layers", std::move(manifest_layers)}}});
  RETURN_IF_ERROR(sink.AddBytes("manifest.json", manifest.dump()));
  if (!tags.empty()) {
    json repositories = json::object();
    for (const std::string& tag : tags) {
      size_t colon = tag.rfind(':');
      repositories[tag.substr(0, colon)][tag.substr(colon + 1)] = parent;
    }
    RETURN_IF_ERROR(sink.AddBytes("repositories", repositories.dump()));
  }
  return absl::OkStatus();
}

absl::Status WriteOciLayout(const ImageToWrite& image, const std::vector<std::string>& tags,
                            const std::string& config_text, const std::string& out_path,
                            const WriteImageOptions& options, Sink& sink) {
  RETURN_IF_ERROR(sink.AddBytes("oci-layout", json{{"imageLayoutVersion", "1.0.0"}}.dump()));
  RETURN_IF_ERROR(sink.AddDir("blobs/"));
  RETURN_IF_ERROR(sink.AddDir("blobs/sha256/"));
  std::set<std::string> written;
  json layers = json::array();
  for (const LayerToWrite& layer : image.layers) {
    std::string digest;
    int64_t size = 0;
    if (options.gzip_layers) {
      GzipLayer gz;
      RETURN_IF_ERROR(GzipTo(layer, out_path, &gz));
      digest = gz.digest;
      size = gz.size;
      if (written.insert(digest).second) {
        ASSIGN_OR_RETURN(std::string copied, sink.AddFile("blobs/sha256/" + digest.substr(7),
                                                          gz.fd.get(), gz.size, gz.path));
        if (copied != digest) return absl::DataLossError(gz.path + ": changed while copied");
      }
    } else {
      ASSIGN_OR_RETURN(OpenLayer in, OpenLayerTar(layer));
      digest = layer.diff_id;
      size = in.size;
      std::string copied;
      if (written.insert(digest).second) {
        ASSIGN_OR_RETURN(copied, sink.AddFile("blobs/sha256/" + digest.substr(7), in.fd.get(),
                                              in.size, layer.tar_path));
      } else {
        // The same DiffID twice (e.g. two empty layers): one blob, but this tar is checked too.
        ASSIGN_OR_RETURN(copied, StreamFile(in.fd.get(), in.size, layer.tar_path,
                                            [](const char*, size_t) { return absl::OkStatus(); }));
      }
      RETURN_IF_ERROR(CheckDigest(copied, layer));
    }
    layers.push_back({{"mediaType", options.gzip_layers ? kLayerTarGzip : kLayerTar},
                      {"digest", digest},
                      {"size", size}});
  }
  const std::string config_digest = Sha256Digest(config_text);
  if (written.insert(config_digest).second) {
    RETURN_IF_ERROR(sink.AddBytes("blobs/sha256/" + config_digest.substr(7), config_text));
  }
  json manifest = {{"schemaVersion", 2},
                   {"mediaType", kOciManifest},
                   {"config",
                    {{"mediaType", kOciConfig},
                     {"digest", config_digest},
                     {"size", static_cast<int64_t>(config_text.size())}}},
                   {"layers", std::move(layers)}};
  const std::string manifest_text = manifest.dump();
  const std::string manifest_digest = Sha256Digest(manifest_text);
  if (written.insert(manifest_digest).second) {
    RETURN_IF_ERROR(sink.AddBytes("blobs/sha256/" + manifest_digest.substr(7), manifest_text));
  }
  json descriptor = {{"mediaType", kOciManifest},
                     {"digest", manifest_digest},
                     {"size", static_cast<int64_t>(manifest_text.size())}};
  json manifests = json::array();
  if (tags.empty()) manifests.push_back(descriptor);
  for (const std::string& tag : tags) {
    json entry = descriptor;
    entry["annotations"] = {{kRefNameAnnotation, tag}};
    manifests.push_back(std::move(entry));
  }
  json index = {{"schemaVersion", 2}, {"mediaType", kOciIndex}, {"manifests", manifests}};
  return sink.AddBytes("index.json", index.dump());
}

}  // namespace

absl::Status WriteImage(const ImageToWrite& image, const std::string& out_path, ImageFormat format,
                        const WriteImageOptions& options) {
  if (image.layers.empty()) return absl::InvalidArgumentError("an image needs at least one layer");
  for (const LayerToWrite& layer : image.layers) {
    if (!IsValidDigest(layer.diff_id)) {
      return absl::InvalidArgumentError(
          absl::StrCat("layer ", layer.tar_path, ": diff_id \"", layer.diff_id, "\" is invalid"));
    }
  }
  if (format == ImageFormat::kDockerSave && options.gzip_layers) {
    return absl::InvalidArgumentError("docker-save archives hold uncompressed layers");
  }
  std::vector<std::string> tags;
  for (const std::string& reference : image.references) {
    ASSIGN_OR_RETURN(std::string tag, NormalizeReference(reference));
    tags.push_back(std::move(tag));
  }
  ASSIGN_OR_RETURN(json config, BuildConfig(image));
  const std::string config_text = config.dump();
  const int64_t mtime = image.layers.back().created_unix;

  if (format == ImageFormat::kDockerSave) {
    TarSink sink(mtime);
    RETURN_IF_ERROR(sink.Open(out_path));
    RETURN_IF_ERROR(WriteDockerSave(image, tags, config_text, sink));
    return sink.Commit();
  }
  if (EndsWith(out_path, ".tar")) {
    TarSink sink(mtime);
    RETURN_IF_ERROR(sink.Open(out_path));
    RETURN_IF_ERROR(WriteOciLayout(image, tags, config_text, out_path, options, sink));
    return sink.Commit();
  }
  DirSink sink;
  RETURN_IF_ERROR(sink.Open(out_path));
  RETURN_IF_ERROR(WriteOciLayout(image, tags, config_text, out_path, options, sink));
  return sink.Commit();
}

}  // namespace strata::images
