#include "node/images/tree_diff.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/errno_status.h"
#include "common/status_macros.h"
#include "node/images/safe_fs.h"

namespace strata::images {
namespace tree_internal {
namespace {

constexpr char kOverlayOpaque[] = "trusted.overlay.opaque";
constexpr char kOverlayRedirect[] = "trusted.overlay.redirect";
constexpr char kOverlayMetacopy[] = "trusted.overlay.metacopy";

std::string Join(const std::string& rel, const std::string& name) {
  return rel.empty() ? name : rel + "/" + name;
}

// The entry `name` in `dir_fd` through /proc, so the l*xattr calls act on the entry itself
// without following a symlink and without resolving the parents again by path.
std::string ProcPath(int dir_fd, const std::string& name) {
  return absl::StrCat("/proc/self/fd/", dir_fd, "/", name);
}

absl::Status ReadXattrs(int dir_fd, const std::string& name, const std::string& rel,
                        std::vector<std::pair<std::string, std::string>>* out) {
  const std::string path = ProcPath(dir_fd, name);
  std::string names;
  for (;;) {
    ssize_t size = llistxattr(path.c_str(), nullptr, 0);
    if (size < 0) {
      if (errno == ENOTSUP || errno == EOPNOTSUPP) return absl::OkStatus();
      return ErrnoStatus(errno, "listxattr", rel);
    }
    if (size == 0) return absl::OkStatus();
    names.resize(static_cast<size_t>(size));
    ssize_t got = llistxattr(path.c_str(), names.data(), names.size());
    if (got < 0) {
      if (errno == ERANGE) continue;  // grew meanwhile
      return ErrnoStatus(errno, "listxattr", rel);
    }
    names.resize(static_cast<size_t>(got));
    break;
  }
  for (size_t start = 0; start < names.size();) {
    size_t end = names.find('\0', start);
    if (end == std::string::npos) end = names.size();
    std::string key = names.substr(start, end - start);
    start = end + 1;
    if (key.empty()) continue;
    std::string value;
    for (;;) {
      ssize_t size = lgetxattr(path.c_str(), key.c_str(), nullptr, 0);
      if (size < 0) {
        if (errno == ENODATA) break;  // removed meanwhile
        return ErrnoStatus(errno, absl::StrCat("getxattr ", key), rel);
      }
      value.resize(static_cast<size_t>(size));
      ssize_t got = lgetxattr(path.c_str(), key.c_str(), value.data(), value.size());
      if (got < 0) {
        if (errno == ERANGE) continue;
        if (errno == ENODATA) break;
        return ErrnoStatus(errno, absl::StrCat("getxattr ", key), rel);
      }
      value.resize(static_cast<size_t>(got));
      out->emplace_back(std::move(key), std::move(value));
      break;
    }
  }
  std::sort(out->begin(), out->end());
  return absl::OkStatus();
}

const std::string* FindXattr(const FsEntry& entry, const std::string& key) {
  for (const auto& [name, value] : entry.xattrs) {
    if (name == key) return &value;
  }
  return nullptr;
}

bool SameMetadata(const FsEntry& a, const FsEntry& b) {
  if (a.mode != b.mode || a.uid != b.uid || a.gid != b.gid) return false;
  if (a.mtime.tv_sec != b.mtime.tv_sec || a.mtime.tv_nsec != b.mtime.tv_nsec) return false;
  // A directory's size says how its filesystem stores the names (ext4 never shrinks it), not
  // what it holds; its children are compared one by one instead.
  if (!S_ISDIR(a.mode) && a.size != b.size) return false;
  if ((S_ISCHR(a.mode) || S_ISBLK(a.mode)) &&
      (a.rdev_major != b.rdev_major || a.rdev_minor != b.rdev_minor)) {
    return false;
  }
  return a.link_target == b.link_target && a.xattrs == b.xattrs;
}

absl::StatusOr<bool> SameContent(int lower_dir, int upper_dir, const std::string& name,
                                 const std::string& rel) {
  ASSIGN_OR_RETURN(UniqueFd a, OpenBeneath(lower_dir, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC,
                                           kResolveNoSymlinks));
  ASSIGN_OR_RETURN(UniqueFd b, OpenBeneath(upper_dir, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC,
                                           kResolveNoSymlinks));
  constexpr size_t kChunk = 256 << 10;
  std::vector<char> buf_a(kChunk), buf_b(kChunk);
  // Ranges that are holes in both files are equal (zeros) without reading them: a 64 GiB sparse
  // file costs what it holds.
  bool skip_holes = true;
  for (off_t offset = 0;;) {
    if (skip_holes) {
      off_t next_a = lseek(a.get(), offset, SEEK_DATA);
      int error_a = next_a < 0 ? errno : 0;
      off_t next_b = lseek(b.get(), offset, SEEK_DATA);
      int error_b = next_b < 0 ? errno : 0;
      if (error_a == EINVAL || error_b == EINVAL) {
        skip_holes = false;  // a filesystem that cannot tell: compare every byte
      } else if (error_a != 0 && error_a != ENXIO) {
        return ErrnoStatus(error_a, "seek data", rel);
      } else if (error_b != 0 && error_b != ENXIO) {
        return ErrnoStatus(error_b, "seek data", rel);
      } else if (error_a == ENXIO && error_b == ENXIO) {
        // Holes to the end in both: equal if they end at the same place.
        struct stat st_a, st_b;
        if (fstat(a.get(), &st_a) != 0 || fstat(b.get(), &st_b) != 0) {
          return ErrnoStatus(errno, "stat", rel);
        }
        return st_a.st_size == st_b.st_size;
      } else {
        off_t next = error_a == ENXIO   ? next_b
                     : error_b == ENXIO ? next_a
                                        : std::min(next_a, next_b);
        offset = std::max(offset, next);
      }
    }
    ssize_t n = pread(a.get(), buf_a.data(), kChunk, offset);
    if (n < 0) return ErrnoStatus(errno, "read", rel);
    ssize_t m = 0;
    while (m < n) {  // read as much from b as was read from a
      ssize_t got = pread(b.get(), buf_b.data() + m, static_cast<size_t>(n - m), offset + m);
      if (got < 0) return ErrnoStatus(errno, "read", rel);
      if (got == 0) break;
      m += got;
    }
    if (m != n || std::memcmp(buf_a.data(), buf_b.data(), static_cast<size_t>(n)) != 0) {
      return false;
    }
    if (n == 0) {
      char extra;
      ssize_t tail = pread(b.get(), &extra, 1, offset);
      return tail == 0;
    }
    offset += n;
  }
}

// Opens the subdirectory `name` of `dir_fd` for reading, never through a symlink.
absl::StatusOr<UniqueFd> OpenSubdir(int dir_fd, const std::string& name) {
  return OpenBeneath(dir_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC,
                     kResolveNoSymlinks);
}

// Reads `name`; an entry that vanished or is a mount root counts as absent (nullopt-like: ok()
// with mode 0).
absl::StatusOr<FsEntry> ReadPresent(int dir_fd, const std::string& name, const std::string& rel) {
  auto entry = ReadEntry(dir_fd, name, rel);
  if (!entry.ok()) {
    if (absl::IsNotFound(entry.status())) return FsEntry{};
    return entry.status();
  }
  if (entry->mount_root) return FsEntry{};
  return entry;
}

class Differ {
 public:
  explicit Differ(const DiffOptions& options) : options_(options) {}

  // Compares directory `rel` (lower_fd < 0: absent below). Returns true when a child was added
  // or deleted.
  absl::StatusOr<bool> Dir(int lower_fd, int upper_fd, const std::string& rel);
  DetailedDiff& result() { return result_; }

 private:
  absl::Status AddAll(int upper_fd, const std::string& rel);
  void Push(TreeChange::Kind kind, const FsEntry& entry) {
    result_.changes.push_back(DetailedChange{kind, entry});
  }
  void NoteLinks(const FsEntry& entry) {
    if (!S_ISDIR(entry.mode) && entry.nlink > 1) {
      result_.linked[{entry.dev, entry.ino}].push_back(entry);
    }
  }

  const DiffOptions options_;
  DetailedDiff result_;
};

absl::Status Differ::AddAll(int upper_fd, const std::string& rel) {
  ASSIGN_OR_RETURN(std::vector<std::string> names, ListNames(upper_fd));
  for (const std::string& name : names) {
    const std::string child = Join(rel, name);
    ASSIGN_OR_RETURN(FsEntry entry, ReadPresent(upper_fd, name, child));
    if (entry.mode == 0) continue;
    Push(TreeChange::kAdded, entry);
    NoteLinks(entry);
    if (S_ISDIR(entry.mode)) {
      auto sub = OpenSubdir(upper_fd, name);
      if (!sub.ok()) {
        if (absl::IsNotFound(sub.status())) continue;
        return sub.status();
      }
      RETURN_IF_ERROR(AddAll(sub->get(), child));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> Differ::Dir(int lower_fd, int upper_fd, const std::string& rel) {
  std::vector<std::string> lower_names;
  if (lower_fd >= 0) {
    ASSIGN_OR_RETURN(lower_names, ListNames(lower_fd));
  }
  ASSIGN_OR_RETURN(std::vector<std::string> upper_names, ListNames(upper_fd));
  std::vector<std::string> names;
  std::set_union(lower_names.begin(), lower_names.end(), upper_names.begin(), upper_names.end(),
                 std::back_inserter(names));
  bool children_differ = false;
  for (const std::string& name : names) {
    const std::string child = Join(rel, name);
    FsEntry lower, upper;
    if (std::binary_search(lower_names.begin(), lower_names.end(), name)) {
      ASSIGN_OR_RETURN(lower, ReadPresent(lower_fd, name, child));
    }
    if (std::binary_search(upper_names.begin(), upper_names.end(), name)) {
      ASSIGN_OR_RETURN(upper, ReadPresent(upper_fd, name, child));
    }
    if (lower.mode == 0 && upper.mode == 0) continue;
    if (upper.mode == 0) {
      FsEntry gone;
      gone.rel = child;
      Push(TreeChange::kDeleted, gone);
      children_differ = true;
      continue;
    }
    NoteLinks(upper);
    if (lower.mode == 0) {
      Push(TreeChange::kAdded, upper);
      children_differ = true;
      if (S_ISDIR(upper.mode)) {
        auto sub = OpenSubdir(upper_fd, name);
        if (sub.ok()) {
          RETURN_IF_ERROR(AddAll(sub->get(), child));
        } else if (!absl::IsNotFound(sub.status())) {
          return sub.status();
        }
      }
      continue;
    }
    if ((lower.mode & S_IFMT) != (upper.mode & S_IFMT)) {
      Push(TreeChange::kChanged, upper);
      if (S_ISDIR(upper.mode)) {
        auto sub = OpenSubdir(upper_fd, name);
        if (sub.ok()) {
          RETURN_IF_ERROR(AddAll(sub->get(), child));
        } else if (!absl::IsNotFound(sub.status())) {
          return sub.status();
        }
      }
      continue;
    }
    bool changed = !SameMetadata(lower, upper);
    if (S_ISDIR(upper.mode)) {
      auto lower_sub = OpenSubdir(lower_fd, name);
      auto upper_sub = OpenSubdir(upper_fd, name);
      if (!lower_sub.ok() && !absl::IsNotFound(lower_sub.status())) return lower_sub.status();
      if (!upper_sub.ok() && !absl::IsNotFound(upper_sub.status())) return upper_sub.status();
      if (upper_sub.ok()) {
        ASSIGN_OR_RETURN(bool sub_differ,
                         Dir(lower_sub.ok() ? lower_sub->get() : -1, upper_sub->get(), child));
        changed = changed || sub_differ;
      }
    } else if (!changed && S_ISREG(upper.mode) && options_.compare_content &&
               !(lower.dev == upper.dev && lower.ino == upper.ino)) {
      ASSIGN_OR_RETURN(bool same, SameContent(lower_fd, upper_fd, name, child));
      changed = !same;
    }
    if (changed) Push(TreeChange::kChanged, upper);
  }
  return children_differ;
}

absl::StatusOr<UniqueFd> OpenRoot(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOTDIR) return absl::InvalidArgumentError(path + ": not a directory");
    return ErrnoStatus(errno, "open", path);
  }
  return UniqueFd(fd);
}

bool LessByPath(const DetailedChange& a, const DetailedChange& b) {
  return PathLess(a.entry.rel, b.entry.rel);
}

std::vector<TreeChange> ToPublic(const std::vector<DetailedChange>& changes) {
  std::vector<TreeChange> out;
  out.reserve(changes.size());
  for (const DetailedChange& c : changes) out.push_back(TreeChange{"/" + c.entry.rel, c.kind});
  return out;
}

// DiffOverlayLayer's walk.
class OverlayLister {
 public:
  explicit OverlayLister(bool lower_known) : lower_known_(lower_known) {}

  // `lower_fd` < 0: nothing below this directory (or no lower at all).
  absl::Status Dir(int layer_fd, int lower_fd, const std::string& rel, bool in_opaque);
  std::vector<DetailedChange>& changes() { return changes_; }

 private:
  const bool lower_known_;
  std::vector<DetailedChange> changes_;
};

absl::Status OverlayLister::Dir(int layer_fd, int lower_fd, const std::string& rel,
                                bool in_opaque) {
  ASSIGN_OR_RETURN(std::vector<std::string> names, ListNames(layer_fd));
  for (const std::string& name : names) {
    const std::string child = Join(rel, name);
    ASSIGN_OR_RETURN(FsEntry entry, ReadPresent(layer_fd, name, child));
    if (entry.mode == 0) continue;
    if (FindXattr(entry, kOverlayRedirect) != nullptr ||
        FindXattr(entry, kOverlayMetacopy) != nullptr) {
      return absl::FailedPreconditionError(
          absl::StrCat(child,
                       ": written with overlay redirect_dir/metacopy, which need the lower "
                       "layers' content"));
    }
    bool in_lower = false;
    if (lower_fd >= 0) {
      struct stat st;
      in_lower = fstatat(lower_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
    }
    if (S_ISCHR(entry.mode) && entry.rdev_major == 0 && entry.rdev_minor == 0) {
      if (in_opaque || (lower_known_ && !in_lower)) continue;
      changes_.push_back(DetailedChange{TreeChange::kDeleted, entry});
      continue;
    }
    const std::string* opaque = FindXattr(entry, kOverlayOpaque);
    const bool is_opaque = S_ISDIR(entry.mode) && opaque != nullptr && *opaque == "y";
    TreeChange::Kind kind;
    if (in_opaque) {
      kind = TreeChange::kAdded;
    } else if (lower_known_) {
      kind = in_lower ? TreeChange::kChanged : TreeChange::kAdded;
    } else {
      kind = S_ISDIR(entry.mode) ? TreeChange::kChanged : TreeChange::kAdded;
    }
    changes_.push_back(DetailedChange{kind, entry});
    if (!S_ISDIR(entry.mode)) continue;
    auto sub = OpenSubdir(layer_fd, name);
    if (!sub.ok()) {
      if (absl::IsNotFound(sub.status())) continue;
      return sub.status();
    }
    UniqueFd lower_sub;
    if (in_lower && !is_opaque && !in_opaque) {
      auto opened = OpenSubdir(lower_fd, name);
      if (opened.ok()) lower_sub = std::move(opened).value();
    }
    RETURN_IF_ERROR(Dir(sub->get(), lower_sub.get(), child, in_opaque || is_opaque));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<FsEntry> ReadEntry(int dir_fd, const std::string& name, const std::string& rel) {
  struct statx stx;
  if (statx(dir_fd, name.c_str(), AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT, STATX_BASIC_STATS, &stx) !=
      0) {
    return ErrnoStatus(errno, "statx", rel);
  }
  FsEntry entry;
  entry.rel = rel;
  entry.mode = stx.stx_mode;
  entry.uid = stx.stx_uid;
  entry.gid = stx.stx_gid;
  entry.size = static_cast<int64_t>(stx.stx_size);
  entry.mtime.tv_sec = stx.stx_mtime.tv_sec;
  entry.mtime.tv_nsec = stx.stx_mtime.tv_nsec;
  entry.rdev_major = stx.stx_rdev_major;
  entry.rdev_minor = stx.stx_rdev_minor;
  entry.dev = makedev(stx.stx_dev_major, stx.stx_dev_minor);
  entry.ino = stx.stx_ino;
  entry.nlink = stx.stx_nlink;
  entry.mount_root = (stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) != 0 &&
                     (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT) != 0;
  if (entry.mount_root) return entry;
  if (S_ISLNK(entry.mode)) {
    std::string target(static_cast<size_t>(entry.size) + 1, '\0');
    for (;;) {
      ssize_t n = readlinkat(dir_fd, name.c_str(), target.data(), target.size());
      if (n < 0) return ErrnoStatus(errno, "readlink", rel);
      if (static_cast<size_t>(n) < target.size()) {
        target.resize(static_cast<size_t>(n));
        break;
      }
      target.resize(target.size() * 2);  // changed meanwhile
    }
    entry.link_target = std::move(target);
  }
  RETURN_IF_ERROR(ReadXattrs(dir_fd, name, rel, &entry.xattrs));
  return entry;
}

absl::StatusOr<std::vector<std::string>> ListNames(int dir_fd) {
  int fd = openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, "open directory");
  DIR* dir = fdopendir(fd);
  if (dir == nullptr) {
    int saved = errno;
    close(fd);
    return ErrnoStatus(saved, "fdopendir");
  }
  std::vector<std::string> names;
  errno = 0;
  while (struct dirent* ent = readdir(dir)) {
    if (std::strcmp(ent->d_name, ".") != 0 && std::strcmp(ent->d_name, "..") != 0) {
      names.emplace_back(ent->d_name);
    }
    errno = 0;
  }
  int saved = errno;
  closedir(dir);
  if (saved != 0) return ErrnoStatus(saved, "readdir");
  std::sort(names.begin(), names.end());
  return names;
}

bool PathLess(const std::string& a, const std::string& b) {
  const size_t n = std::min(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    if (a[i] == b[i]) continue;
    if (a[i] == '/') return true;
    if (b[i] == '/') return false;
    return static_cast<unsigned char>(a[i]) < static_cast<unsigned char>(b[i]);
  }
  return a.size() < b.size();
}

absl::StatusOr<DetailedDiff> DiffTreesDetailed(const std::string& lower, const std::string& upper,
                                               const DiffOptions& options) {
  UniqueFd lower_fd;
  if (!lower.empty()) {
    ASSIGN_OR_RETURN(lower_fd, OpenRoot(lower));
  }
  ASSIGN_OR_RETURN(UniqueFd upper_fd, OpenRoot(upper));
  Differ differ(options);
  RETURN_IF_ERROR(differ.Dir(lower_fd.get(), upper_fd.get(), "").status());
  DetailedDiff result = std::move(differ.result());
  std::sort(result.changes.begin(), result.changes.end(), LessByPath);
  for (auto& [key, entries] : result.linked) {
    std::sort(entries.begin(), entries.end(),
              [](const FsEntry& a, const FsEntry& b) { return PathLess(a.rel, b.rel); });
  }
  return result;
}

}  // namespace tree_internal

char TreeChangeLetter(TreeChange::Kind kind) {
  switch (kind) {
    case TreeChange::kAdded:
      return 'A';
    case TreeChange::kChanged:
      return 'C';
    case TreeChange::kDeleted:
      return 'D';
  }
  return '?';
}

absl::StatusOr<std::vector<TreeChange>> DiffTrees(const std::string& lower,
                                                  const std::string& upper,
                                                  const DiffOptions& options) {
  ASSIGN_OR_RETURN(tree_internal::DetailedDiff diff,
                   tree_internal::DiffTreesDetailed(lower, upper, options));
  return tree_internal::ToPublic(diff.changes);
}

absl::StatusOr<std::vector<TreeChange>> DiffOverlayLayer(const std::string& layer_dir,
                                                         const std::string& lower) {
  ASSIGN_OR_RETURN(UniqueFd layer_fd, tree_internal::OpenRoot(layer_dir));
  UniqueFd lower_fd;
  if (!lower.empty()) {
    ASSIGN_OR_RETURN(lower_fd, tree_internal::OpenRoot(lower));
  }
  tree_internal::OverlayLister lister(!lower.empty());
  RETURN_IF_ERROR(lister.Dir(layer_fd.get(), lower_fd.get(), "", /*in_opaque=*/false));
  std::sort(lister.changes().begin(), lister.changes().end(), tree_internal::LessByPath);
  return tree_internal::ToPublic(lister.changes());
}

}  // namespace strata::images
