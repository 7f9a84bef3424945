// libFuzzer target: the image archive readers (node/images/image_archive.h): docker-save
// manifest.json (classic and OCI forms), OCI oci-layout / index.json / nested indexes /
// manifests, and image configs, under small ImportLimits.
//
// Input: files of an image folder, separated by "\n==\n". A file's first line is its path
// inside the folder (components of [A-Za-z0-9._-], else the file is skipped), or
// "PATH -> TARGET" for a symlink (any target: the reader must not follow it out of the folder);
// the rest is its content. So that mutated documents still reach the parsers behind their
// digests, "@N", "%N" and "#N" (N a digit) in a file stand for the sha256 digest
// ("sha256:<hex>"), the bare hex and the size of file N's final content; a file may refer to
// later files, and its path also to itself ("blobs/sha256/%3").
//
// Invariants on success: every layer blob is a regular file beneath the folder whose size and
// sha256 are what the reader reports; each image's config digest is the sha256 of its bytes and
// its layers match the config's rootfs.diff_ids one to one; nothing outside the folder was read
// (a config outside it, reachable through symlinks, holds a nonce no image may carry). On
// failure: InvalidArgument or DataLoss only.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"
#include "node/images/digest.h"
#include "node/images/image_archive.h"
#include "node/images/limits.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

constexpr char kTarget[] = "image_archive_fuzz";
constexpr size_t kMaxFiles = 10;

using strata::fuzz::Fail;

struct File {
  std::string name;
  std::string link;  // symlink target, when `is_link`
  bool is_link = false;
  std::string content;
  std::string digest;  // of the resolved content
};

const std::string& Nonce() {
  static const std::string nonce = [] {
    std::random_device device;
    return absl::StrCat("outside-", device(), "-", device());
  }();
  return nonce;
}

// Replaces @N / %N / #N for N in [first, files.size()).
std::string Resolve(const std::string& text, const std::vector<File>& files, size_t first) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if ((c == '@' || c == '%' || c == '#') && i + 1 < text.size() && text[i + 1] >= '0' &&
        text[i + 1] <= '9') {
      const size_t n = static_cast<size_t>(text[i + 1] - '0');
      if (n >= first && n < files.size()) {
        const File& f = files[n];
        if (c == '@') out += f.digest;
        if (c == '%') out += f.digest.substr(7);
        if (c == '#') out += std::to_string(f.content.size());
        ++i;
        continue;
      }
    }
    out += c;
  }
  return out;
}

bool SafeName(const std::string& name) {
  if (name.empty() || name.size() > 200) return false;
  for (absl::string_view part : absl::StrSplit(name, '/')) {
    if (part.empty() || part == "." || part == "..") return false;
    for (char c : part) {
      if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '.' || c == '_' || c == '-')) {
        return false;
      }
    }
  }
  return true;
}

void Place(const std::string& root, const File& f) {
  if (!SafeName(f.name)) return;
  // mkdir -p the parents; a file in the way just means this one is not placed.
  size_t slash = 0;
  while ((slash = f.name.find('/', slash)) != std::string::npos) {
    mkdir((root + "/" + f.name.substr(0, slash)).c_str(), 0755);
    ++slash;
  }
  const std::string path = root + "/" + f.name;
  struct stat st;
  if (lstat(path.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) return;
    unlink(path.c_str());
  }
  if (f.is_link) {
    if (f.link.empty() || f.link.find('\0') != std::string::npos) return;
    (void)symlink(f.link.c_str(), path.c_str());
    return;
  }
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return;
  if (!f.content.empty() && write(fd, f.content.data(), f.content.size()) < 0) {
    Fail(kTarget, "write");
  }
  close(fd);
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  strata::fuzz::QuietLogs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  std::vector<File> files;
  for (absl::string_view chunk : absl::StrSplit(input, "\n==\n")) {
    if (files.size() == kMaxFiles) break;
    File f;
    const size_t newline = chunk.find('\n');
    const absl::string_view head = chunk.substr(0, newline);
    if (newline != absl::string_view::npos) f.content = std::string(chunk.substr(newline + 1));
    const size_t arrow = head.find(" -> ");
    if (arrow != absl::string_view::npos) {
      f.is_link = true;
      f.name = std::string(head.substr(0, arrow));
      f.link = std::string(head.substr(arrow + 4));
    } else {
      f.name = std::string(head);
    }
    files.push_back(std::move(f));
  }
  for (size_t i = files.size(); i-- > 0;) {
    File& f = files[i];
    f.content = Resolve(f.content, files, i + 1);
    f.digest = strata::images::Sha256Digest(f.content);
    f.name = Resolve(f.name, files, i);
    f.link = Resolve(f.link, files, i);
  }

  strata::fuzz::RunDir run;
  const std::string root = run.path() + "/image";
  const std::string outside = run.path() + "/outside";
  const std::string scratch = run.path() + "/scratch";
  for (const std::string& dir : {root, outside, scratch}) {
    if (mkdir(dir.c_str(), 0755) != 0) Fail(kTarget, "mkdir");
  }
  const std::string outside_config =
      absl::StrCat(R"({"rootfs":{"type":"layers","diff_ids":[]},"nonce":")", Nonce(), "\"}");
  strata::fuzz::WriteFileOrDie(outside + "/config.json", outside_config.data(),
                               outside_config.size());
  for (const File& f : files) Place(root, f);

  strata::images::ImportLimits limits;
  limits.max_json_bytes = 64 << 10;
  limits.max_json_depth = 32;
  auto archive = strata::images::ImageArchive::Open(root, scratch, limits);
  if (!archive.ok()) {
    const absl::StatusCode code = archive.status().code();
    if (code != absl::StatusCode::kInvalidArgument && code != absl::StatusCode::kDataLoss) {
      Fail(kTarget, "unexpected error code: " + archive.status().ToString());
    }
    return 0;
  }

  char real_root[PATH_MAX];
  if (realpath(root.c_str(), real_root) == nullptr) Fail(kTarget, "realpath");
  const std::string beneath = std::string(real_root) + "/";
  for (const strata::images::Image& image : (*archive)->images()) {
    if (image.config_json.find(Nonce()) != std::string::npos) {
      Fail(kTarget, "a config was read from outside the folder");
    }
    if (strata::images::Sha256Digest(image.config_json) != image.config_digest) {
      Fail(kTarget, "config digest is not the sha256 of the config");
    }
    nlohmann::json config = nlohmann::json::parse(image.config_json, nullptr, false);
    if (config.is_discarded() || !config.is_object()) Fail(kTarget, "accepted a bad config");
    const nlohmann::json& ids = config["rootfs"]["diff_ids"];
    if (!ids.is_array() || ids.size() != image.layers.size()) {
      Fail(kTarget, "layers do not match rootfs.diff_ids");
    }
    for (size_t l = 0; l < image.layers.size(); ++l) {
      const strata::images::LayerBlob& layer = image.layers[l];
      if (ids[l] != layer.diff_id) Fail(kTarget, "a layer's DiffID is not the config's");
      if (layer.path.rfind(beneath, 0) != 0) Fail(kTarget, "a layer outside the folder");
      struct stat st;
      if (lstat(layer.path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
        Fail(kTarget, "a layer that is not a regular file");
      }
      if (st.st_size != layer.size) Fail(kTarget, "a layer's size is wrong");
      if (strata::images::Sha256Digest(ReadAll(layer.path)) != layer.blob_digest) {
        Fail(kTarget, "a layer's digest is wrong");
      }
      if (layer.media_type.size() >= 4 &&
          layer.media_type.compare(layer.media_type.size() - 4, 4, ".tar") == 0 &&
          layer.blob_digest != layer.diff_id) {
        Fail(kTarget, "an uncompressed layer whose digest is not its DiffID");
      }
    }
  }
  return 0;
}
