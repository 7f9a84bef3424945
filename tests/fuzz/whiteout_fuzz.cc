// libFuzzer target: the whiteout translation of ExtractLayer (node/images/layer_tar.h), with
// structured input so the fuzzer spends its time on whiteout logic, not on tar checksums.
//
// Input: a list of entries, each at least 2 bytes: an operation, a path length (1..3
// components), then one byte per component (picked from a small alphabet that includes ".",
// "..", "" and a symlink out of the target) and, for symlinks and hardlinks, one byte more for
// the link target. The entries are written as a real tar (libarchive) and extracted twice:
// with overlay whiteouts into a fresh layer, and applying whiteouts onto a lower tree (how vfs,
// btrfs and devmapper layers are made).
//
// Invariants (checked against a model of the entries, not the implementation):
//   - a layer holding a name that is empty, absolute or has a ".." component is refused, and a
//     whiteout naming "", "." or "..";
//   - nothing is created, changed or deleted outside the target (the target holds "out", a
//     symlink to a sentinel folder beside it);
//   - no ".wh."-prefixed name is ever left in the tree;
//   - applied: a path a whiteout names is gone afterwards unless a later entry wrote it (or
//     beneath it); everything beneath an opaque directory was written by this layer;
//   - overlay: a path a whiteout names is a 0:0 character device afterwards unless a later entry
//     touched it, an ancestor or something beneath it; an opaque directory carries
//     trusted.overlay.opaque="y" unless a later entry touched it or an ancestor.
#include <archive.h>
#include <archive_entry.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "drivers/driver.h"
#include "node/images/layer_tar.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

constexpr char kTarget[] = "whiteout_fuzz";
constexpr size_t kMaxEntries = 64;

using strata::fuzz::Fail;
using Parts = std::vector<std::string>;

enum class Op { kFile, kDir, kSymlink, kHardlink, kWhiteout, kOpaque, kAufsMeta };

const char* const kComponents[] = {"a", "b", "c", "out", "d", ".", "..", ""};

struct Entry {
  Op op;
  std::string name;      // as written into the tar
  std::string link;      // symlink or hardlink target
  bool hostile = false;  // the model says the layer must be refused
  Parts touched;         // normalised: the entry's path, a whiteout's victim, an opaque dir
};

// SplitRelativePath's documented rule: "./" and "." / empty components dropped; empty,
// absolute or ".." names refused.
bool Normalise(const std::string& name, Parts* parts) {
  parts->clear();
  if (name.empty() || name[0] == '/') return false;
  size_t start = 0;
  while (start <= name.size()) {
    size_t end = name.find('/', start);
    if (end == std::string::npos) end = name.size();
    std::string part = name.substr(start, end - start);
    if (part == "..") return false;
    if (!part.empty() && part != ".") parts->push_back(part);
    start = end + 1;
  }
  return true;
}

bool IsPrefix(const Parts& prefix, const Parts& path) {
  if (prefix.size() > path.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i) {
    if (prefix[i] != path[i]) return false;
  }
  return true;
}

std::vector<Entry> Decode(const uint8_t* data, size_t size, const std::string& outside) {
  std::vector<Entry> entries;
  size_t i = 0;
  while (i + 2 <= size && entries.size() < kMaxEntries) {
    Entry e;
    e.op = static_cast<Op>(data[i] % 7);
    const size_t count = 1 + data[i + 1] % 3;
    i += 2;
    std::vector<std::string> components;
    for (size_t c = 0; c < count && i < size; ++c, ++i) {
      components.push_back(kComponents[data[i] % 8]);
    }
    if (components.empty()) components.push_back("a");
    if (e.op == Op::kWhiteout) components.back() = ".wh." + components.back();
    if (e.op == Op::kOpaque) components.push_back(".wh..wh..opq");
    if (e.op == Op::kAufsMeta) components.push_back(".wh..wh.plnk");
    e.name = absl::StrJoin(components, "/");
    if (e.op == Op::kSymlink || e.op == Op::kHardlink) {
      const uint8_t pick = i < size ? data[i++] : 0;
      static const char* const kTargets[] = {"a", "../a", "/", "out/file", "b/c", "a/a", "..", ""};
      e.link = pick % 9 == 8 ? outside + "/file" : kTargets[pick % 9];
    }

    Parts parts;
    e.hostile = !Normalise(e.name, &parts);
    if (!e.hostile) {
      switch (e.op) {
        case Op::kWhiteout: {
          const std::string victim = parts.back().substr(4);
          if (victim.empty() || victim == "." || victim == "..") e.hostile = true;
          parts.back() = victim;
          break;
        }
        case Op::kOpaque:
        case Op::kAufsMeta:
          parts.pop_back();
          break;
        default:
          // A non-directory entry naming the root is refused; so is any other that names it.
          if (parts.empty() && e.op != Op::kDir) e.hostile = true;
          break;
      }
    }
    e.touched = parts;
    entries.push_back(std::move(e));
  }
  return entries;
}

// Writes the entries libarchive accepts (it refuses, for one, an empty name) and drops the
// others from `entries`, so the model sees exactly what the tar holds.
void WriteTar(const std::string& path, std::vector<Entry>* entries) {
  archive* tar = archive_write_new();
  archive_write_set_format_pax_restricted(tar);
  if (archive_write_open_filename(tar, path.c_str()) != ARCHIVE_OK) Fail(kTarget, "open tar");
  std::vector<Entry> written;
  for (Entry& e : *entries) {
    archive_entry* entry = archive_entry_new();
    archive_entry_set_pathname(entry, e.name.c_str());
    archive_entry_set_mtime(entry, 1700000000, 0);
    archive_entry_set_uid(entry, 0);
    archive_entry_set_gid(entry, 0);
    const char* content = "x";
    size_t size = 0;
    switch (e.op) {
      case Op::kDir:
        archive_entry_set_filetype(entry, AE_IFDIR);
        archive_entry_set_perm(entry, 0755);
        break;
      case Op::kSymlink:
        archive_entry_set_filetype(entry, AE_IFLNK);
        archive_entry_set_perm(entry, 0777);
        archive_entry_set_symlink(entry, e.link.c_str());
        break;
      case Op::kHardlink:
        archive_entry_set_filetype(entry, AE_IFREG);
        archive_entry_set_perm(entry, 0644);
        archive_entry_set_hardlink(entry, e.link.c_str());
        break;
      default:  // files, and whiteout / opaque / aufs markers (empty files)
        archive_entry_set_filetype(entry, AE_IFREG);
        archive_entry_set_perm(entry, 0644);
        size = e.op == Op::kFile ? 1 : 0;
        break;
    }
    archive_entry_set_size(entry, static_cast<la_int64_t>(size));
    const int rc = archive_write_header(tar, entry);
    if (rc == ARCHIVE_FATAL) Fail(kTarget, archive_error_string(tar));
    if (rc == ARCHIVE_OK || rc == ARCHIVE_WARN) {
      if (size > 0) archive_write_data(tar, content, size);
      written.push_back(std::move(e));
    }
    archive_entry_free(entry);
  }
  *entries = std::move(written);
  archive_write_close(tar);
  archive_write_free(tar);
}

// lstat of `parts` beneath `root_fd` without following any symlink: false when some component
// is missing, a symlink or not a directory on the way.
bool Lookup(int root_fd, const Parts& parts, struct stat* st) {
  int fd = dup(root_fd);
  for (size_t i = 0; i < parts.size(); ++i) {
    if (fstatat(fd, parts[i].c_str(), st, AT_SYMLINK_NOFOLLOW) != 0) {
      close(fd);
      return false;
    }
    if (i + 1 == parts.size()) break;
    if (!S_ISDIR(st->st_mode)) {
      close(fd);
      return false;
    }
    int next = openat(fd, parts[i].c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    close(fd);
    if (next < 0) return false;
    fd = next;
  }
  close(fd);
  return !parts.empty();
}

Parts SplitRel(const std::string& rel) {
  Parts parts;
  Normalise(rel, &parts);
  return parts;
}

// The lower tree an applied layer lands on.
void MakeLower(const std::string& target) {
  for (const char* dir : {"a", "a/b", "d"}) {
    if (mkdir((target + "/" + dir).c_str(), 0755) != 0) Fail(kTarget, "mkdir lower");
  }
  for (const char* file : {"a/a", "a/b/a", "b", "d/a"}) {
    strata::fuzz::WriteFileOrDie(target + "/" + file, "lower", 5);
  }
  if (symlink("a", (target + "/c").c_str()) != 0) Fail(kTarget, "symlink lower");
}

void RunOne(std::vector<Entry> entries, strata::drivers::WhiteoutStyle style) {
  const bool apply = style == strata::drivers::WhiteoutStyle::kApply;
  strata::fuzz::RunDir run;
  strata::fuzz::Outside outside(run.path());
  const std::string blob = run.path() + "/blob";
  const std::string target = run.path() + "/target";
  WriteTar(blob, &entries);
  if (mkdir(target.c_str(), 0755) != 0) Fail(kTarget, "mkdir target");
  if (symlink(outside.path().c_str(), (target + "/out").c_str()) != 0) Fail(kTarget, "symlink");
  if (apply) MakeLower(target);

  strata::images::ExtractOptions options;
  options.display_name = "layer";
  auto result = strata::images::ExtractLayer(blob, target, style, "", options);

  outside.Check(kTarget);
  int root_fd = open(target.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (root_fd < 0) Fail(kTarget, "the target was replaced");
  std::vector<std::string> tree;
  strata::fuzz::WalkTree(root_fd, "", [&](const std::string& rel, const struct stat&) {
    const std::string base = rel.substr(rel.rfind('/') + 1);
    if (base.rfind(".wh.", 0) == 0) Fail(kTarget, "a whiteout was written as a file: " + rel);
    tree.push_back(rel);
  });

  bool hostile = false;
  for (const Entry& e : entries) hostile = hostile || e.hostile;
  if (hostile && result.ok()) Fail(kTarget, "a hostile layer was accepted");
  if (!result.ok()) {
    close(root_fd);
    return;
  }

  // What the layer wrote (kApply's opaque pruning keeps exactly these), with ancestors.
  std::set<Parts> written;
  for (const Entry& e : entries) {
    if (e.op == Op::kWhiteout || e.op == Op::kAufsMeta) continue;
    for (size_t n = 0; n <= e.touched.size(); ++n) {
      written.insert(Parts(e.touched.begin(), e.touched.begin() + n));
    }
  }

  for (size_t i = 0; i < entries.size(); ++i) {
    const Entry& e = entries[i];
    if (e.op != Op::kWhiteout && e.op != Op::kOpaque) continue;
    const Parts& p = e.touched;
    bool later_at_or_below = false;    // a later entry that (re)creates p
    bool later_at_or_above = false;    // a later entry that may replace p or an ancestor
    bool later_below_or_same = false;  // anything later at p or beneath it
    for (size_t j = i + 1; j < entries.size(); ++j) {
      const Entry& later = entries[j];
      if (later.op == Op::kAufsMeta) continue;
      const bool creates = later.op != Op::kWhiteout && (apply ? later.op != Op::kOpaque : true);
      if (creates && IsPrefix(p, later.touched)) later_at_or_below = true;
      if (IsPrefix(later.touched, p)) later_at_or_above = true;
      if (IsPrefix(p, later.touched)) later_below_or_same = true;
    }
    struct stat st;
    const bool found = Lookup(root_fd, p, &st);
    const std::string shown = absl::StrJoin(p, "/");
    if (e.op == Op::kWhiteout) {
      if (apply) {
        if (!later_at_or_below && found) {
          Fail(kTarget, "applied whiteout left its path in place: " + shown);
        }
      } else if (!later_at_or_above && !later_below_or_same) {
        if (!found || !S_ISCHR(st.st_mode) || st.st_rdev != makedev(0, 0)) {
          Fail(kTarget, "overlay whiteout is not a 0:0 char device: " + shown);
        }
      }
      continue;
    }
    // Opaque directory p.
    if (apply) {
      for (const std::string& rel : tree) {
        Parts parts = SplitRel(rel);
        if (parts.size() > p.size() && IsPrefix(p, parts) && written.count(parts) == 0) {
          Fail(kTarget, "applied opaque directory " + shown + " kept a lower entry: " + rel);
        }
      }
    } else if (!later_at_or_above) {
      if (p.empty()) continue;  // the root: its xattr is on the target itself
      char value[8];
      const std::string path = target + "/" + shown;
      ssize_t len = found && S_ISDIR(st.st_mode)
                        ? lgetxattr(path.c_str(), "trusted.overlay.opaque", value, sizeof(value))
                        : -1;
      if (len != 1 || value[0] != 'y') Fail(kTarget, "opaque directory not marked: " + shown);
    }
  }
  close(root_fd);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  strata::fuzz::QuietLogs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::vector<Entry> entries =
      Decode(data, size, strata::fuzz::ProcessScratch() + "/run/outside");
  RunOne(entries, strata::drivers::WhiteoutStyle::kOverlay);
  RunOne(entries, strata::drivers::WhiteoutStyle::kApply);
  return 0;
}
