#include "node/images/layer_tar.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <set>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/errno_status.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "node/images/digest.h"
#include "node/images/safe_fs.h"

namespace strata::images {
namespace {

constexpr size_t kReadBufferSize = 1 << 20;
constexpr char kWhiteoutPrefix[] = ".wh.";
constexpr char kWhiteoutMetaPrefix[] = ".wh..wh.";
constexpr char kOpaqueMarker[] = ".wh..wh..opq";
constexpr char kOpaqueXattr[] = "trusted.overlay.opaque";

struct ArchiveDeleter {
  void operator()(archive* a) const { archive_read_free(a); }
};
using ArchivePtr = std::unique_ptr<archive, ArchiveDeleter>;

// The decompressed byte stream: the raw reader's output, hashed as it is handed to the tar
// reader through ReadCallback.
struct RawStream {
  archive* raw = nullptr;
  bool at_end = false;
  std::string error;
  Sha256 hash;
  int64_t bytes = 0;
  int64_t max_bytes = INT64_MAX;
  bool over_limit = false;
  std::vector<char> buffer = std::vector<char>(kReadBufferSize);
};

la_ssize_t ReadCallback(archive* tar, void* client, const void** out) {
  auto* stream = static_cast<RawStream*>(client);
  if (stream->at_end) return 0;
  la_ssize_t n = archive_read_data(stream->raw, stream->buffer.data(), stream->buffer.size());
  if (n < 0) {
    const char* message = archive_error_string(stream->raw);
    stream->error = message != nullptr ? message : "read error";
    archive_set_error(tar, EIO, "%s", stream->error.c_str());
    return ARCHIVE_FATAL;
  }
  if (n == 0) {
    stream->at_end = true;
    return 0;
  }
  if (n > stream->max_bytes - stream->bytes) {
    // A decompression bomb stops here, not when the disk is full.
    stream->over_limit = true;
    stream->error = "uncompressed size over the limit";
    archive_set_error(tar, EFBIG, "%s", stream->error.c_str());
    return ARCHIVE_FATAL;
  }
  stream->hash.update(stream->buffer.data(), static_cast<size_t>(n));
  stream->bytes += n;
  *out = stream->buffer.data();
  return n;
}

// What the extractor keeps from each entry.
enum class Mode { kLayer, kArchive };

struct DeferredDir {
  std::string rel;
  mode_t mode;
  struct timespec times[2];
};

class Extractor {
 public:
  Extractor(int root_fd, std::string root_path, Mode mode, drivers::WhiteoutStyle style)
      : root_fd_(root_fd), root_path_(std::move(root_path)), mode_(mode), style_(style) {}

  absl::Status Entry(archive* tar, archive_entry* entry);
  absl::Status Finish();
  // Overlay-private xattrs dropped so far, and the first (entry and name), for one log line.
  int64_t dropped_xattrs() const { return dropped_xattrs_; }
  const std::string& first_dropped() const { return first_dropped_; }

 private:
  absl::Status Whiteout(const std::vector<std::string>& parts, const std::string& name);
  absl::Status Opaque(const std::vector<std::string>& dir_parts);
  absl::StatusOr<UniqueFd> OpenParent(const std::vector<std::string>& parts, bool create);
  absl::Status PrepareSlot(int parent, const std::string& base, bool keep_directory,
                           const std::string& name);
  absl::Status WriteFile(archive* tar, archive_entry* entry, int parent, const std::string& base,
                         const std::string& name);
  absl::Status ApplyOwner(int fd, int parent, const std::string& base, archive_entry* entry,
                          const std::string& name);
  absl::Status ApplyXattrs(int fd, const std::string& rel, archive_entry* entry,
                           const std::string& name);
  absl::Status PruneUnwritten(int dir_fd, const std::string& rel);
  void MarkWritten(const std::vector<std::string>& parts);
  static void EntryTimes(archive_entry* entry, struct timespec times[2]);

  const int root_fd_;
  const std::string root_path_;
  const Mode mode_;
  const drivers::WhiteoutStyle style_;
  const bool is_root_ = geteuid() == 0;
  std::set<std::string> written_;         // paths this layer wrote, with their ancestors
  std::vector<std::string> opaque_dirs_;  // kApply: directories to prune at the end
  std::vector<DeferredDir> dirs_;
  int64_t dropped_xattrs_ = 0;
  std::string first_dropped_;
};

std::string EntryPrefix(const std::string& name) {
  return absl::StrCat("tar entry \"", Echo(name), "\": ");
}

absl::Status Hostile(const std::string& name, const std::string& why) {
  return absl::InvalidArgumentError(EntryPrefix(name) + Echo(why, kMaxErrorBytes / 2));
}

// Names the entry once: statuses made by Hostile already do.
absl::Status WithEntry(const std::string& name, const absl::Status& status) {
  if (status.ok()) return status;
  const std::string prefix = EntryPrefix(name);
  if (absl::StartsWith(status.message(), prefix)) return status;
  return absl::Status(status.code(), absl::StrCat(prefix, status.message()));
}

void Extractor::MarkWritten(const std::vector<std::string>& parts) {
  for (size_t i = 1; i <= parts.size(); ++i) written_.insert(JoinPath(parts, i));
}

void Extractor::EntryTimes(archive_entry* entry, struct timespec times[2]) {
  times[1].tv_sec = archive_entry_mtime(entry);
  times[1].tv_nsec = archive_entry_mtime_nsec(entry);
  if (archive_entry_atime_is_set(entry)) {
    times[0].tv_sec = archive_entry_atime(entry);
    times[0].tv_nsec = archive_entry_atime_nsec(entry);
  } else {
    times[0] = times[1];
  }
}

// Opens the directory holding parts.back() beneath the root, never through a symlink. With
// `create`, missing parent directories are made (0755), as docker does for sparse layers.
absl::StatusOr<UniqueFd> Extractor::OpenParent(const std::vector<std::string>& parts, bool create) {
  const size_t depth = parts.empty() ? 0 : parts.size() - 1;
  auto direct =
      OpenBeneath(root_fd_, JoinPath(parts, depth), O_PATH | O_DIRECTORY, kResolveNoSymlinks);
  if (direct.ok() || !create || !absl::IsNotFound(direct.status())) return direct;
  ASSIGN_OR_RETURN(UniqueFd current,
                   OpenBeneath(root_fd_, "", O_PATH | O_DIRECTORY, kResolveNoSymlinks));
  for (size_t i = 0; i < depth; ++i) {
    auto next = OpenBeneath(current.get(), parts[i], O_PATH | O_DIRECTORY, kResolveNoSymlinks);
    if (!next.ok() && absl::IsNotFound(next.status())) {
      if (mkdirat(current.get(), parts[i].c_str(), 0755) != 0 && errno != EEXIST) {
        return ErrnoStatus(errno, "mkdir", JoinPath(parts, i + 1));
      }
      next = OpenBeneath(current.get(), parts[i], O_PATH | O_DIRECTORY, kResolveNoSymlinks);
    }
    if (!next.ok()) return next.status();
    current = std::move(next).value();
  }
  return current;
}

// Makes room for a new entry `base` in `parent`: an existing non-directory is unlinked, an
// existing directory is removed unless the new entry is a directory too (then it is kept and
// only its metadata changes).
absl::Status Extractor::PrepareSlot(int parent, const std::string& base, bool keep_directory,
                                    const std::string& name) {
  struct stat st;
  if (fstatat(parent, base.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return ErrnoStatus(errno, "stat", name);
  }
  if (S_ISDIR(st.st_mode)) {
    if (keep_directory) return absl::OkStatus();
    return RemoveTreeAt(parent, base);
  }
  if (unlinkat(parent, base.c_str(), 0) != 0 && errno != ENOENT) {
    return ErrnoStatus(errno, "unlink", name);
  }
  return absl::OkStatus();
}

absl::Status Extractor::ApplyOwner(int fd, int parent, const std::string& base,
                                   archive_entry* entry, const std::string& name) {
  if (mode_ != Mode::kLayer) return absl::OkStatus();
  uid_t uid = static_cast<uid_t>(archive_entry_uid(entry));
  gid_t gid = static_cast<gid_t>(archive_entry_gid(entry));
  int rc = fd >= 0 ? fchown(fd, uid, gid)
                   : fchownat(parent, base.c_str(), uid, gid, AT_SYMLINK_NOFOLLOW);
  if (rc != 0) {
    // Without root, owners other than our own cannot be kept; extraction still works for tests
    // and tools. The node plugin runs as root, where this is an error.
    if (errno == EPERM && !is_root_) return absl::OkStatus();
    return ErrnoStatus(errno, "chown", name);
  }
  return absl::OkStatus();
}

// Sets the entry's xattrs on `fd` (an ordinary open fd) or, when fd < 0, by path with lsetxattr:
// the path's parents were just opened beneath the root without symlinks.
absl::Status Extractor::ApplyXattrs(int fd, const std::string& rel, archive_entry* entry,
                                    const std::string& name) {
  if (mode_ != Mode::kLayer) return absl::OkStatus();
  if (archive_entry_xattr_reset(entry) == 0) return absl::OkStatus();
  const char* key;
  const void* value;
  size_t size;
  const std::string path = root_path_ + "/" + rel;
  while (archive_entry_xattr_next(entry, &key, &value, &size) == ARCHIVE_OK) {
    if (IsOverlayXattr(key)) {
      // Only the whiteout translation may write what overlayfs interprets (redirect, origin,
      // metacopy, opaque...); from a tar it could splice another layer's content in.
      if (dropped_xattrs_++ == 0) first_dropped_ = absl::StrCat(Echo(name), " ", Echo(key));
      continue;
    }
    int rc =
        fd >= 0 ? fsetxattr(fd, key, value, size, 0) : lsetxattr(path.c_str(), key, value, size, 0);
    if (rc != 0) {
      if ((errno == EPERM || errno == ENOTSUP) && !is_root_) {
        LogDebug("xattr not kept without root", {{"entry", name}, {"xattr", key}});
        continue;
      }
      return ErrnoStatus(errno, absl::StrCat("setxattr ", key), name);
    }
  }
  return absl::OkStatus();
}

absl::Status Extractor::WriteFile(archive* tar, archive_entry* entry, int parent,
                                  const std::string& base, const std::string& name) {
  int raw_fd =
      openat(parent, base.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (raw_fd < 0) return ErrnoStatus(errno, "create", name);
  UniqueFd fd(raw_fd);
  const void* block;
  size_t size;
  la_int64_t offset;
  int64_t end = 0;
  for (;;) {
    int rc = archive_read_data_block(tar, &block, &size, &offset);
    if (rc == ARCHIVE_EOF) break;
    if (rc < ARCHIVE_WARN) {
      return absl::DataLossError(
          absl::StrCat("tar entry \"", name, "\": ", archive_error_string(tar)));
    }
    // Holes between blocks (sparse entries) are left unwritten.
    const char* data = static_cast<const char*>(block);
    size_t done = 0;
    while (done < size) {
      ssize_t n = pwrite(fd.get(), data + done, size - done, offset + done);
      if (n < 0) {
        if (errno == EINTR) continue;
        return ErrnoStatus(errno, "write", name);
      }
      done += static_cast<size_t>(n);
    }
    end = std::max<int64_t>(end, offset + static_cast<int64_t>(size));
  }
  int64_t want = archive_entry_size_is_set(entry) ? archive_entry_size(entry) : end;
  if (want > end && ftruncate(fd.get(), want) != 0) return ErrnoStatus(errno, "truncate", name);
  if (mode_ == Mode::kArchive) {
    if (fchmod(fd.get(), 0644) != 0) return ErrnoStatus(errno, "chmod", name);
    return absl::OkStatus();
  }
  RETURN_IF_ERROR(ApplyOwner(fd.get(), parent, base, entry, name));
  // After chown, which clears setuid/setgid.
  if (fchmod(fd.get(), archive_entry_mode(entry) & 07777) != 0) {
    return ErrnoStatus(errno, "chmod", name);
  }
  RETURN_IF_ERROR(ApplyXattrs(fd.get(), "", entry, name));
  struct timespec times[2];
  EntryTimes(entry, times);
  if (futimens(fd.get(), times) != 0) return ErrnoStatus(errno, "utimens", name);
  return absl::OkStatus();
}

absl::Status Extractor::Whiteout(const std::vector<std::string>& parts, const std::string& name) {
  const std::string& base = parts.back();
  const std::string victim = base.substr(sizeof(kWhiteoutPrefix) - 1);
  if (victim.empty() || victim == "." || victim == "..") {
    return Hostile(name, "whiteout names no file");
  }
  std::vector<std::string> victim_parts = parts;
  victim_parts.back() = victim;
  if (style_ == drivers::WhiteoutStyle::kOverlay) {
    ASSIGN_OR_RETURN(UniqueFd parent, OpenParent(victim_parts, /*create=*/true));
    RETURN_IF_ERROR(PrepareSlot(parent.get(), victim, /*keep_directory=*/false, name));
    if (mknodat(parent.get(), victim.c_str(), S_IFCHR | 0, makedev(0, 0)) != 0) {
      return ErrnoStatus(errno, "mknod whiteout", name);
    }
    MarkWritten(victim_parts);
    return absl::OkStatus();
  }
  auto parent = OpenParent(victim_parts, /*create=*/false);
  if (!parent.ok()) {
    // Nothing below to delete. A symlink or escape is still hostile.
    if (absl::IsNotFound(parent.status()) ||
        parent.status().code() == absl::StatusCode::kFailedPrecondition) {
      return absl::OkStatus();
    }
    return WithEntry(name, parent.status());
  }
  return RemoveTreeAt(parent->get(), victim);
}

absl::Status Extractor::Opaque(const std::vector<std::string>& dir_parts) {
  const std::string rel = JoinPath(dir_parts, dir_parts.size());
  if (style_ == drivers::WhiteoutStyle::kApply) {
    opaque_dirs_.push_back(rel);
    MarkWritten(dir_parts);
    return absl::OkStatus();
  }
  // Make sure the directory exists (docker layers may omit the directory's own entry).
  if (!dir_parts.empty()) {
    ASSIGN_OR_RETURN(UniqueFd parent, OpenParent(dir_parts, /*create=*/true));
    struct stat st;
    if (fstatat(parent.get(), dir_parts.back().c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno != ENOENT) return ErrnoStatus(errno, "stat", rel);
      if (mkdirat(parent.get(), dir_parts.back().c_str(), 0755) != 0) {
        return ErrnoStatus(errno, "mkdir", rel);
      }
    } else if (!S_ISDIR(st.st_mode)) {
      return absl::InvalidArgumentError(absl::StrCat("opaque marker in a non-directory: ", rel));
    }
  }
  ASSIGN_OR_RETURN(UniqueFd dir,
                   OpenBeneath(root_fd_, rel, O_RDONLY | O_DIRECTORY, kResolveNoSymlinks));
  if (fsetxattr(dir.get(), kOpaqueXattr, "y", 1, 0) != 0) {
    return ErrnoStatus(errno, absl::StrCat("setxattr ", kOpaqueXattr), rel);
  }
  MarkWritten(dir_parts);
  return absl::OkStatus();
}

absl::Status Extractor::Entry(archive* tar, archive_entry* entry) {
  const char* raw_name = archive_entry_pathname(entry);
  const std::string name = raw_name != nullptr ? raw_name : "";
  auto split = SplitRelativePath(name);
  if (!split.ok()) return Hostile(name, std::string(split.status().message()));
  std::vector<std::string> parts = std::move(split).value();

  const char* hardlink = archive_entry_hardlink(entry);
  const mode_t type = archive_entry_filetype(entry);

  if (parts.empty()) {
    // "./": the root itself. Only its metadata can change.
    if (hardlink != nullptr || type != AE_IFDIR) return Hostile(name, "names the root");
    if (mode_ == Mode::kLayer) {
      ASSIGN_OR_RETURN(UniqueFd dir,
                       OpenBeneath(root_fd_, "", O_RDONLY | O_DIRECTORY, kResolveNoSymlinks));
      RETURN_IF_ERROR(ApplyOwner(dir.get(), -1, "", entry, name));
      RETURN_IF_ERROR(ApplyXattrs(dir.get(), "", entry, name));
      DeferredDir deferred{"", archive_entry_mode(entry) & 07777, {}};
      EntryTimes(entry, deferred.times);
      dirs_.push_back(deferred);
    }
    return absl::OkStatus();
  }

  const std::string& base = parts.back();
  const std::string rel = JoinPath(parts, parts.size());
  if (mode_ == Mode::kLayer && base.rfind(kWhiteoutPrefix, 0) == 0) {
    if (base == kOpaqueMarker) {
      parts.pop_back();
      return WithEntry(name, Opaque(parts));
    }
    if (base.rfind(kWhiteoutMetaPrefix, 0) == 0) return absl::OkStatus();  // aufs metadata
    return WithEntry(name, Whiteout(parts, name));
  }

  auto parent_or = OpenParent(parts, /*create=*/true);
  if (!parent_or.ok()) return WithEntry(name, parent_or.status());
  UniqueFd parent = std::move(parent_or).value();
  const int pfd = parent.get();

  if (hardlink != nullptr) {
    auto target_split = SplitRelativePath(hardlink);
    if (!target_split.ok() || target_split->empty()) {
      return Hostile(name,
                     absl::StrCat("hardlink target \"", hardlink, "\" is not beneath the root"));
    }
    std::vector<std::string> target_parts = std::move(target_split).value();
    auto target_parent = OpenParent(target_parts, /*create=*/false);
    if (!target_parent.ok()) {
      return Hostile(name, absl::StrCat("hardlink target \"", hardlink,
                                        "\": ", target_parent.status().message()));
    }
    struct stat st;
    if (fstatat(target_parent->get(), target_parts.back().c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      return Hostile(name, absl::StrCat("hardlink target \"", hardlink, "\" does not exist"));
    }
    if (S_ISDIR(st.st_mode)) {
      return Hostile(name, absl::StrCat("hardlink target \"", hardlink, "\" is a directory"));
    }
    if (JoinPath(target_parts, target_parts.size()) == rel) return absl::OkStatus();
    RETURN_IF_ERROR(PrepareSlot(pfd, base, false, name));
    if (linkat(target_parent->get(), target_parts.back().c_str(), pfd, base.c_str(), 0) != 0) {
      return ErrnoStatus(errno, "link", name);
    }
    MarkWritten(parts);
    return absl::OkStatus();
  }

  struct timespec times[2];
  EntryTimes(entry, times);
  const mode_t perm = archive_entry_mode(entry) & 07777;

  switch (type) {
    case AE_IFDIR: {
      RETURN_IF_ERROR(PrepareSlot(pfd, base, /*keep_directory=*/true, name));
      if (mkdirat(pfd, base.c_str(), 0700) != 0 && errno != EEXIST) {
        return ErrnoStatus(errno, "mkdir", name);
      }
      int raw_fd = openat(pfd, base.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (raw_fd < 0) return ErrnoStatus(errno, "open directory", name);
      UniqueFd dir(raw_fd);
      if (mode_ == Mode::kArchive) {
        if (fchmod(dir.get(), 0755) != 0) return ErrnoStatus(errno, "chmod", name);
        break;
      }
      RETURN_IF_ERROR(ApplyOwner(dir.get(), -1, "", entry, name));
      RETURN_IF_ERROR(ApplyXattrs(dir.get(), "", entry, name));
      // Writing children changes the directory's times, and a read-only mode could stop them
      // (without root): both are applied in Finish.
      if (fchmod(dir.get(), 0700 | perm) != 0) return ErrnoStatus(errno, "chmod", name);
      DeferredDir deferred{rel, perm, {times[0], times[1]}};
      dirs_.push_back(deferred);
      break;
    }
    case AE_IFREG:
      RETURN_IF_ERROR(PrepareSlot(pfd, base, false, name));
      RETURN_IF_ERROR(WriteFile(tar, entry, pfd, base, name));
      break;
    case AE_IFLNK: {
      const char* target = archive_entry_symlink(entry);
      if (target == nullptr || *target == '\0') return Hostile(name, "symlink without a target");
      RETURN_IF_ERROR(PrepareSlot(pfd, base, false, name));
      if (symlinkat(target, pfd, base.c_str()) != 0) return ErrnoStatus(errno, "symlink", name);
      if (mode_ == Mode::kLayer) {
        RETURN_IF_ERROR(ApplyOwner(-1, pfd, base, entry, name));
        RETURN_IF_ERROR(ApplyXattrs(-1, rel, entry, name));
        if (utimensat(pfd, base.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0) {
          return ErrnoStatus(errno, "utimens", name);
        }
      }
      break;
    }
    case AE_IFCHR:
    case AE_IFBLK:
    case AE_IFIFO: {
      if (mode_ == Mode::kArchive) return Hostile(name, "special files are not allowed here");
      RETURN_IF_ERROR(PrepareSlot(pfd, base, false, name));
      dev_t dev = type == AE_IFIFO
                      ? 0
                      : makedev(archive_entry_rdevmajor(entry), archive_entry_rdevminor(entry));
      if (mknodat(pfd, base.c_str(), type | 0600, dev) != 0) {
        return ErrnoStatus(errno, "mknod", name);
      }
      RETURN_IF_ERROR(ApplyOwner(-1, pfd, base, entry, name));
      // The node was just created by us with O_EXCL semantics (mknod), so it is no symlink.
      if (fchmodat(pfd, base.c_str(), perm, 0) != 0) return ErrnoStatus(errno, "chmod", name);
      RETURN_IF_ERROR(ApplyXattrs(-1, rel, entry, name));
      if (utimensat(pfd, base.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0) {
        return ErrnoStatus(errno, "utimens", name);
      }
      break;
    }
    default:
      return Hostile(name, "unsupported entry type (socket?)");
  }
  MarkWritten(parts);
  return absl::OkStatus();
}

// kApply opaque directory: deletes what this layer did not write, recursing into directories
// it did write (their lower children are hidden too).
absl::Status Extractor::PruneUnwritten(int dir_fd, const std::string& rel) {
  int dup_fd = openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dup_fd < 0) return ErrnoStatus(errno, "open", rel);
  DIR* dir = fdopendir(dup_fd);
  if (dir == nullptr) {
    close(dup_fd);
    return ErrnoStatus(errno, "fdopendir", rel);
  }
  std::vector<std::pair<std::string, bool>> children;
  while (struct dirent* ent = readdir(dir)) {
    std::string child = ent->d_name;
    if (child == "." || child == "..") continue;
    children.emplace_back(child, ent->d_type == DT_DIR);
  }
  closedir(dir);
  for (const auto& [child, is_dir] : children) {
    const std::string child_rel = rel.empty() ? child : rel + "/" + child;
    if (written_.count(child_rel) == 0) {
      RETURN_IF_ERROR(RemoveTreeAt(dir_fd, child));
      continue;
    }
    struct stat st;
    if (fstatat(dir_fd, child.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode)) {
      ASSIGN_OR_RETURN(UniqueFd sub,
                       OpenBeneath(dir_fd, child, O_RDONLY | O_DIRECTORY, kResolveNoSymlinks));
      RETURN_IF_ERROR(PruneUnwritten(sub.get(), child_rel));
    }
  }
  return absl::OkStatus();
}

absl::Status Extractor::Finish() {
  for (const std::string& rel : opaque_dirs_) {
    auto dir = OpenBeneath(root_fd_, rel, O_RDONLY | O_DIRECTORY, kResolveNoSymlinks);
    if (!dir.ok()) {
      if (absl::IsNotFound(dir.status())) continue;
      return dir.status();
    }
    RETURN_IF_ERROR(PruneUnwritten(dir->get(), rel));
  }
  // Deepest first is not needed for correctness (changing a child's times does not touch its
  // parent) but keeps a read-only parent from blocking a child's update without root.
  for (auto it = dirs_.rbegin(); it != dirs_.rend(); ++it) {
    auto dir = OpenBeneath(root_fd_, it->rel, O_RDONLY | O_DIRECTORY, kResolveNoSymlinks);
    if (!dir.ok()) {
      // Replaced by a later entry of the same layer: nothing to do.
      if (absl::IsNotFound(dir.status()) || absl::IsFailedPrecondition(dir.status())) continue;
      return dir.status();
    }
    if (fchmod(dir->get(), it->mode) != 0) return ErrnoStatus(errno, "chmod", it->rel);
    if (futimens(dir->get(), it->times) != 0) return ErrnoStatus(errno, "utimens", it->rel);
  }
  return absl::OkStatus();
}

absl::StatusOr<ExtractResult> RunExtraction(const std::string& blob_path,
                                            const std::string& target_dir, Mode mode,
                                            drivers::WhiteoutStyle style,
                                            const ExtractOptions& options) {
  const std::string shown = options.display_name.empty() ? blob_path : options.display_name;
  // O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below.
  int blob_raw = open(blob_path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (blob_raw < 0) {
    if (errno == ELOOP) return absl::InvalidArgumentError(shown + ": a symlink loop");
    return ErrnoStatus(errno, "open", shown);
  }
  UniqueFd blob(blob_raw);
  struct stat blob_st;
  if (fstat(blob.get(), &blob_st) != 0) return ErrnoStatus(errno, "stat", shown);
  if (!S_ISREG(blob_st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat(shown, ": not a regular file"));
  }
  int root_raw = open(target_dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (root_raw < 0) return ErrnoStatus(errno, "open", target_dir);
  UniqueFd root(root_raw);

  RawStream stream;
  stream.max_bytes = options.max_bytes;
  auto too_big = [&](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat(shown, ": ", what, " past the limit of ",
                                                   SizeText(options.max_bytes), " (",
                                                   options.max_bytes_flag, ")"));
  };
  ArchivePtr raw(archive_read_new());
  archive_read_support_filter_gzip(raw.get());
  archive_read_support_filter_zstd(raw.get());
  archive_read_support_format_raw(raw.get());
  stream.raw = raw.get();
  if (archive_read_open_fd(raw.get(), blob.get(), kReadBufferSize) != ARCHIVE_OK) {
    return absl::DataLossError(
        absl::StrCat(shown, ": cannot read: ", archive_error_string(raw.get())));
  }
  archive_entry* raw_entry;
  int rc = archive_read_next_header(raw.get(), &raw_entry);
  if (rc == ARCHIVE_EOF) {
    stream.at_end = true;  // empty file: an empty stream
  } else if (rc < ARCHIVE_WARN) {
    return absl::DataLossError(
        absl::StrCat(shown, ": cannot read: ", archive_error_string(raw.get())));
  }

  ArchivePtr tar(archive_read_new());
  archive_read_support_format_tar(tar.get());
  archive_read_support_format_empty(tar.get());
  if (archive_read_open(tar.get(), &stream, nullptr, ReadCallback, nullptr) != ARCHIVE_OK) {
    if (stream.over_limit) return too_big("its uncompressed tar stream goes");
    return absl::DataLossError(
        absl::StrCat(shown, ": not a tar: ", archive_error_string(tar.get())));
  }

  Extractor extractor(root.get(), target_dir, mode, style);
  ExtractResult result;
  for (;;) {
    archive_entry* entry;
    rc = archive_read_next_header(tar.get(), &entry);
    if (rc == ARCHIVE_EOF) break;
    if (rc < ARCHIVE_WARN) {
      if (stream.over_limit) return too_big("its uncompressed tar stream goes");
      return absl::DataLossError(
          absl::StrCat(shown, ": corrupt tar: ", archive_error_string(tar.get())));
    }
    if (++result.entries > options.max_entries) {
      return absl::InvalidArgumentError(absl::StrCat(shown, ": more than ", options.max_entries,
                                                     " tar entries (--max-layer-entries)"));
    }
    // A sparse entry counts at its full size: a 1 KiB tar may claim a 1 TiB file.
    if (archive_entry_filetype(entry) == AE_IFREG && archive_entry_hardlink(entry) == nullptr &&
        archive_entry_size_is_set(entry)) {
      const int64_t size = archive_entry_size(entry);
      if (size < 0 || size > options.max_bytes - result.apparent_bytes) {
        const char* name = archive_entry_pathname(entry);
        return too_big(absl::StrCat(EntryPrefix(name != nullptr ? name : ""), size,
                                    " bytes (sparse or not) take its files"));
      }
      result.apparent_bytes += size;
    }
    absl::Status status = extractor.Entry(tar.get(), entry);
    if (!status.ok()) {
      if (stream.over_limit) return too_big("its uncompressed tar stream goes");
      return absl::Status(status.code(), absl::StrCat(shown, ": ", status.message()));
    }
  }
  // The tar reader stops at the end-of-archive blocks; the DiffID covers the whole stream.
  const void* ignored;
  for (;;) {
    la_ssize_t n = ReadCallback(tar.get(), &stream, &ignored);
    if (n == 0) break;
    if (n < 0) {
      if (stream.over_limit) return too_big("its uncompressed tar stream goes");
      return absl::DataLossError(absl::StrCat(shown, ": cannot read: ", stream.error));
    }
  }
  RETURN_IF_ERROR(extractor.Finish());
  if (extractor.dropped_xattrs() > 0) {
    LogWarning("dropped overlay-private xattrs from an image layer",
               {{"layer", shown},
                {"count", std::to_string(extractor.dropped_xattrs())},
                {"first", extractor.first_dropped()}});
  }
  result.diff_id = stream.hash.finish();
  result.uncompressed_bytes = stream.bytes;
  return result;
}

}  // namespace

absl::StatusOr<ExtractResult> ExtractLayer(const std::string& blob_path,
                                           const std::string& target_dir,
                                           drivers::WhiteoutStyle style,
                                           const std::string& expected_diff_id,
                                           const ExtractOptions& options) {
  ASSIGN_OR_RETURN(ExtractResult result,
                   RunExtraction(blob_path, target_dir, Mode::kLayer, style, options));
  if (!expected_diff_id.empty() && result.diff_id != expected_diff_id) {
    const std::string shown =
        options.display_name.empty() ? "layer " + blob_path : options.display_name;
    return absl::DataLossError(
        absl::StrCat(shown, ": DiffID is ", result.diff_id, ", expected ", expected_diff_id));
  }
  return result;
}

absl::Status UnpackArchiveTar(const std::string& tar_path, const std::string& target_dir,
                              const ExtractOptions& options) {
  return RunExtraction(tar_path, target_dir, Mode::kArchive, drivers::WhiteoutStyle::kApply,
                       options)
      .status();
}

bool IsOverlayXattr(const char* name) {
  return absl::StartsWith(name, "trusted.overlay.") || absl::StartsWith(name, "user.overlay.");
}

}  // namespace strata::images
