// libFuzzer target: the layer tar reader (node/images/layer_tar.h). The input is a layer blob
// (tar, tar+gzip or tar+zstd, whatever the bytes are), extracted three ways into a fresh target
// folder of a per-run scratch folder: ExtractLayer with overlay whiteouts, ExtractLayer applying
// whiteouts, and UnpackArchiveTar (how image archive tars are unpacked).
//
// Invariants, whatever the bytes and whether the extraction succeeds:
//   - nothing lands outside the target: the scratch folder holds only the blob, the target and
//     a sentinel folder, which stays exactly as it was (entries, types, sizes, link counts),
//     although the target starts with a symlink to it that entries may try to write through;
//   - a layer extraction leaves no ".wh."-prefixed name (whiteouts are translated, never
//     written as files) and no overlay-private xattr except trusted.overlay.opaque="y";
//   - an archive unpack leaves only directories, regular files and symlinks, with modes
//     0755/0644;
//   - on success, the entry and byte counts respect the bounds given.
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "drivers/driver.h"
#include "node/images/layer_tar.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

constexpr char kTarget[] = "layer_tar_fuzz";
constexpr int64_t kMaxBytes = int64_t{64} << 20;
constexpr int64_t kMaxEntries = 20000;

using strata::fuzz::Fail;

void CheckXattrs(int root_fd, const std::string& rel) {
  const std::string path = "/proc/self/fd/" + std::to_string(root_fd) + "/" + rel;
  char names[65536];
  ssize_t n = llistxattr(path.c_str(), names, sizeof(names));
  if (n <= 0) return;
  for (ssize_t i = 0; i < n; i += static_cast<ssize_t>(std::strlen(names + i)) + 1) {
    const char* name = names + i;
    if (!strata::images::IsOverlayXattr(name)) continue;
    if (std::strcmp(name, "trusted.overlay.opaque") != 0) {
      Fail(kTarget, rel + " carries the overlay-private xattr " + name);
    }
    char value[8];
    ssize_t len = lgetxattr(path.c_str(), name, value, sizeof(value));
    if (len != 1 || value[0] != 'y') Fail(kTarget, rel + ": opaque xattr is not \"y\"");
  }
}

void RunOne(const uint8_t* data, size_t size, int how) {
  strata::fuzz::RunDir run;
  strata::fuzz::Outside outside(run.path());
  const std::string blob = run.path() + "/blob";
  const std::string target = run.path() + "/target";
  strata::fuzz::WriteFileOrDie(blob, data, size);
  if (mkdir(target.c_str(), 0755) != 0) Fail(kTarget, "mkdir target");
  // A link out of the target, as an earlier layer entry could have made it.
  if (symlink(outside.path().c_str(), (target + "/out").c_str()) != 0) Fail(kTarget, "symlink");

  strata::images::ExtractOptions options;
  options.display_name = "layer";
  options.max_bytes = kMaxBytes;
  options.max_entries = kMaxEntries;
  absl::Status status;
  if (how == 2) {
    status = strata::images::UnpackArchiveTar(blob, target, options);
  } else {
    auto style = how == 0 ? strata::drivers::WhiteoutStyle::kOverlay
                          : strata::drivers::WhiteoutStyle::kApply;
    auto result = strata::images::ExtractLayer(blob, target, style, "", options);
    status = result.status();
    if (result.ok()) {
      if (result->entries > kMaxEntries) Fail(kTarget, "more entries than the bound");
      if (result->uncompressed_bytes > kMaxBytes || result->apparent_bytes > kMaxBytes) {
        Fail(kTarget, "more bytes than the bound");
      }
      if (result->diff_id.rfind("sha256:", 0) != 0 || result->diff_id.size() != 71) {
        Fail(kTarget, "a DiffID that is not sha256:<64 hex>: " + result->diff_id);
      }
    }
  }
  (void)status;

  outside.Check(kTarget);
  int run_fd = open(run.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  strata::fuzz::WalkTree(run_fd, "", [&](const std::string& rel, const struct stat& st) {
    if (rel == "blob" || rel == "target" || rel == "outside" || rel.rfind("target/", 0) == 0 ||
        rel.rfind("outside/", 0) == 0) {
      return;
    }
    Fail(kTarget, "an entry landed outside the target: " + rel);
  });
  close(run_fd);

  int root_fd = open(target.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (root_fd < 0) Fail(kTarget, "the target was replaced");
  strata::fuzz::WalkTree(root_fd, "", [&](const std::string& rel, const struct stat& st) {
    const std::string base = rel.substr(rel.rfind('/') + 1);
    if (how != 2) {
      if (base.rfind(".wh.", 0) == 0) Fail(kTarget, "a whiteout was written as a file: " + rel);
      CheckXattrs(root_fd, rel);
    } else if (status.ok() && rel != "out") {
      if (S_ISDIR(st.st_mode)) {
        if ((st.st_mode & 07777) != 0755) Fail(kTarget, "archive directory mode: " + rel);
      } else if (S_ISREG(st.st_mode)) {
        if ((st.st_mode & 07777) != 0644) Fail(kTarget, "archive file mode: " + rel);
      } else if (!S_ISLNK(st.st_mode)) {
        Fail(kTarget, "archive unpack made a special file: " + rel);
      }
    }
  });
  close(root_fd);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  strata::fuzz::QuietLogs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  for (int how = 0; how < 3; ++how) RunOne(data, size, how);
  return 0;
}
