#include "node/images/layer_export.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <map>
#include <memory>
#include <set>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/errno_status.h"
#include "common/sparse_file.h"
#include "common/status_macros.h"
#include "node/images/digest.h"
#include "node/images/safe_fs.h"
#include "node/images/tree_diff.h"

namespace strata::images {
namespace {

using tree_internal::FsEntry;

constexpr size_t kCopyBuffer = 1 << 20;
// A sparse entry's map holds at most this many extents (a few hundred KiB of text); a file more
// fragmented than that has its smallest holes written as zeros.
constexpr size_t kMaxSparseExtents = 16384;
// archive_write_data takes at most INT_MAX bytes a call.
constexpr int64_t kMaxWriteCall = 1 << 30;
constexpr char kWhiteoutPrefix[] = ".wh.";
constexpr char kOpaqueMarker[] = ".wh..wh..opq";
constexpr char kOverlayXattrPrefix[] = "trusted.overlay.";
constexpr char kOverlayOpaque[] = "trusted.overlay.opaque";

std::string Join(const std::string& rel, const std::string& name) {
  return rel.empty() ? name : rel + "/" + name;
}

std::pair<std::string, std::string> SplitParent(const std::string& rel) {
  size_t slash = rel.rfind('/');
  if (slash == std::string::npos) return {"", rel};
  return {rel.substr(0, slash), rel.substr(slash + 1)};
}

bool IsOverlayWhiteout(const FsEntry& e) {
  return S_ISCHR(e.mode) && e.rdev_major == 0 && e.rdev_minor == 0;
}

// A PAX tar being written to a temporary file beside its final path, hashed on the way.
class TarWriter {
 public:
  explicit TarWriter(bool drop_overlay_xattrs) : drop_overlay_xattrs_(drop_overlay_xattrs) {}
  ~TarWriter() {
    if (archive_ != nullptr) archive_write_free(archive_);
    if (!temp_path_.empty()) unlink(temp_path_.c_str());
  }

  absl::Status Open(const std::string& out_path);
  // Writes `entry` (read beneath `root_fd`). A regular file's content is read from the tree; a
  // non-directory already written under another path becomes a hardlink to it.
  absl::Status Add(int root_fd, const FsEntry& entry);
  // `.wh.NAME` for rel, or the opaque marker of directory rel.
  absl::Status AddWhiteout(const std::string& rel);
  absl::Status AddOpaqueMarker(const std::string& dir_rel);
  absl::StatusOr<ExportResult> Finish();

 private:
  static la_ssize_t WriteCallback(archive*, void* client, const void* buffer, size_t length);
  absl::Status ArchiveError(const std::string& what);
  absl::Status AddMarker(const std::string& name);
  absl::Status WriteHeader(archive_entry* entry, const std::string& rel);
  absl::Status WriteHole(int64_t length, const std::string& rel);
  absl::Status WriteExtent(int fd, const DataExtent& extent, const std::string& rel);

  const bool drop_overlay_xattrs_;
  archive* archive_ = nullptr;
  std::string out_path_;
  std::string temp_path_;
  UniqueFd fd_;
  Sha256 hash_;
  int64_t bytes_ = 0;
  int64_t entries_ = 0;
  int write_errno_ = 0;
  std::map<std::pair<uint64_t, uint64_t>, std::string> first_link_;  // (dev, ino) -> name
  std::vector<char> buffer_ = std::vector<char>(kCopyBuffer);
};

struct ArchiveEntryDeleter {
  void operator()(archive_entry* e) const { archive_entry_free(e); }
};
using EntryPtr = std::unique_ptr<archive_entry, ArchiveEntryDeleter>;

la_ssize_t TarWriter::WriteCallback(archive*, void* client, const void* buffer, size_t length) {
  auto* self = static_cast<TarWriter*>(client);
  const char* data = static_cast<const char*>(buffer);
  size_t done = 0;
  while (done < length) {
    ssize_t n = write(self->fd_.get(), data + done, length - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      self->write_errno_ = errno;
      return -1;
    }
    done += static_cast<size_t>(n);
  }
  self->hash_.update(buffer, length);
  self->bytes_ += static_cast<int64_t>(length);
  return static_cast<la_ssize_t>(length);
}

absl::Status TarWriter::ArchiveError(const std::string& what) {
  if (write_errno_ != 0) return ErrnoStatus(write_errno_, "write", temp_path_);
  const char* message = archive_error_string(archive_);
  return absl::InternalError(
      absl::StrCat(what, ": ", message != nullptr ? message : "libarchive error"));
}

absl::Status TarWriter::Open(const std::string& out_path) {
  out_path_ = out_path;
  std::string pattern = out_path + ".tmp-XXXXXX";
  int fd = mkostemp(pattern.data(), O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, "create", pattern);
  fd_ = UniqueFd(fd);
  temp_path_ = pattern;
  if (fchmod(fd, 0644) != 0) return ErrnoStatus(errno, "chmod", temp_path_);
  archive_ = archive_write_new();
  if (archive_ == nullptr) return absl::ResourceExhaustedError("archive_write_new");
  // Full PAX: nanosecond mtimes and xattrs need extended headers. In the "C" locale (Strata never
  // calls setlocale) ASCII names need none and other names are stored as their raw bytes with
  // hdrcharset=BINARY; forcing BINARY for every entry would double small entries' size.
  if (archive_write_set_format_pax(archive_) != ARCHIVE_OK ||
      archive_write_set_bytes_in_last_block(archive_, 1) != ARCHIVE_OK ||
      archive_write_open(archive_, this, nullptr, WriteCallback, nullptr) != ARCHIVE_OK) {
    return ArchiveError("open tar writer");
  }
  return absl::OkStatus();
}

absl::Status TarWriter::WriteHeader(archive_entry* entry, const std::string& rel) {
  int rc = archive_write_header(archive_, entry);
  if (rc < ARCHIVE_WARN) return ArchiveError(absl::StrCat("write header of ", rel));
  ++entries_;
  return absl::OkStatus();
}

absl::Status TarWriter::AddMarker(const std::string& name) {
  EntryPtr e(archive_entry_new());
  archive_entry_copy_pathname(e.get(), name.c_str());
  archive_entry_set_filetype(e.get(), AE_IFREG);
  archive_entry_set_perm(e.get(), 0644);
  archive_entry_set_uid(e.get(), 0);
  archive_entry_set_gid(e.get(), 0);
  archive_entry_set_mtime(e.get(), 0, 0);
  archive_entry_set_size(e.get(), 0);
  return WriteHeader(e.get(), name);
}

absl::Status TarWriter::AddWhiteout(const std::string& rel) {
  auto [parent, base] = SplitParent(rel);
  return AddMarker(Join(parent, kWhiteoutPrefix + base));
}

absl::Status TarWriter::AddOpaqueMarker(const std::string& dir_rel) {
  return AddMarker(Join(dir_rel, kOpaqueMarker));
}

absl::Status TarWriter::Add(int root_fd, const FsEntry& entry) {
  const std::string& rel = entry.rel;
  if (S_ISSOCK(entry.mode)) return absl::OkStatus();  // not representable in a layer
  EntryPtr e(archive_entry_new());
  archive_entry_copy_pathname(e.get(), rel.c_str());
  archive_entry_set_uid(e.get(), entry.uid);
  archive_entry_set_gid(e.get(), entry.gid);
  archive_entry_set_mtime(e.get(), entry.mtime.tv_sec, entry.mtime.tv_nsec);
  for (const auto& [key, value] : entry.xattrs) {
    if (drop_overlay_xattrs_ && key.rfind(kOverlayXattrPrefix, 0) == 0) continue;
    archive_entry_xattr_add_entry(e.get(), key.c_str(), value.data(), value.size());
  }

  if (!S_ISDIR(entry.mode) && entry.nlink > 1) {
    auto [it, inserted] = first_link_.emplace(std::make_pair(entry.dev, entry.ino), rel);
    if (!inserted) {
      // Tar hardlinks carry no metadata of their own: the first path's header has it.
      archive_entry_set_filetype(e.get(), AE_IFREG);
      archive_entry_set_perm(e.get(), entry.mode & 07777);
      archive_entry_copy_hardlink(e.get(), it->second.c_str());
      archive_entry_set_size(e.get(), 0);
      archive_entry_xattr_clear(e.get());
      return WriteHeader(e.get(), rel);
    }
  }

  archive_entry_set_perm(e.get(), entry.mode & 07777);
  archive_entry_set_size(e.get(), 0);
  switch (entry.mode & S_IFMT) {
    case S_IFDIR:
      archive_entry_set_filetype(e.get(), AE_IFDIR);
      return WriteHeader(e.get(), rel);
    case S_IFLNK:
      archive_entry_set_filetype(e.get(), AE_IFLNK);
      archive_entry_copy_symlink(e.get(), entry.link_target.c_str());
      return WriteHeader(e.get(), rel);
    case S_IFCHR:
    case S_IFBLK:
      archive_entry_set_filetype(e.get(), S_ISCHR(entry.mode) ? AE_IFCHR : AE_IFBLK);
      archive_entry_set_rdev(e.get(), makedev(entry.rdev_major, entry.rdev_minor));
      return WriteHeader(e.get(), rel);
    case S_IFIFO:
      archive_entry_set_filetype(e.get(), AE_IFIFO);
      return WriteHeader(e.get(), rel);
    case S_IFREG:
      break;
    default:
      return absl::InvalidArgumentError(absl::StrCat(rel, ": unsupported file type"));
  }

  // Open before the header is written: a file that vanished is skipped, not half written.
  auto file = OpenBeneath(root_fd, rel, O_RDONLY | O_NOFOLLOW | O_CLOEXEC, kResolveNoSymlinks);
  if (!file.ok()) {
    if (absl::IsNotFound(file.status())) {
      first_link_.erase({entry.dev, entry.ino});
      return absl::OkStatus();
    }
    return file.status();
  }
  archive_entry_set_filetype(e.get(), AE_IFREG);
  archive_entry_set_size(e.get(), entry.size);
  ASSIGN_OR_RETURN(std::vector<DataExtent> extents, DataExtents(file->get(), entry.size, rel));
  const bool sparse = entry.size > 0 && !(extents.size() == 1 && extents[0].offset == 0 &&
                                          extents[0].length == entry.size);
  if (sparse) {
    // GNU sparse 1.0 (PAX): a map of the data extents, then only their bytes. The size must be
    // set before the map (libarchive drops extents past it).
    CoalesceExtents(&extents, kMaxSparseExtents);
    for (const DataExtent& extent : extents) {
      archive_entry_sparse_add_entry(e.get(), extent.offset, extent.length);
    }
    // A trailing hole is marked by an empty extent at the end, as GNU tar writes it.
    if (extents.empty() || extents.back().offset + extents.back().length < entry.size) {
      archive_entry_sparse_add_entry(e.get(), entry.size, 0);
    }
  } else {
    extents.assign(1, DataExtent{0, entry.size});
  }
  RETURN_IF_ERROR(WriteHeader(e.get(), rel));
  // The writer takes the file's whole content, holes included, and skips the holes' bytes
  // without reading them; each call stays within one hole or one extent (libarchive's sparse
  // bookkeeping is only sound then).
  int64_t position = 0;
  for (const DataExtent& extent : extents) {
    if (extent.offset > position) {
      RETURN_IF_ERROR(WriteHole(extent.offset - position, rel));
      position = extent.offset;
    }
    RETURN_IF_ERROR(WriteExtent(file->get(), extent, rel));
    position = extent.offset + extent.length;
  }
  if (position < entry.size) RETURN_IF_ERROR(WriteHole(entry.size - position, rel));
  if (archive_write_finish_entry(archive_) < ARCHIVE_WARN) {
    return ArchiveError(absl::StrCat("finish ", rel));
  }
  return absl::OkStatus();
}

absl::Status TarWriter::WriteHole(int64_t length, const std::string& rel) {
  while (length > 0) {
    // Never read by libarchive (a hole's bytes are skipped), so any pointer will do.
    const size_t chunk = static_cast<size_t>(std::min<int64_t>(length, kMaxWriteCall));
    la_ssize_t n = archive_write_data(archive_, buffer_.data(), chunk);
    if (n <= 0) return ArchiveError(absl::StrCat("write hole of ", rel));
    length -= n;
  }
  return absl::OkStatus();
}

absl::Status TarWriter::WriteExtent(int fd, const DataExtent& extent, const std::string& rel) {
  int64_t left = extent.length;
  off_t offset = extent.offset;
  bool at_end = false;
  while (left > 0) {
    const size_t want = static_cast<size_t>(std::min<int64_t>(left, buffer_.size()));
    ssize_t n = 0;
    if (!at_end) {
      n = pread(fd, buffer_.data(), want, offset);
      if (n < 0) {
        if (errno == EINTR) continue;
        return ErrnoStatus(errno, "read", rel);
      }
    }
    if (n == 0) {
      // Shrank while being read: the rest of the entry is zeros.
      at_end = true;
      std::fill(buffer_.begin(), buffer_.begin() + static_cast<std::ptrdiff_t>(want), 0);
      n = static_cast<ssize_t>(want);
    }
    if (archive_write_data(archive_, buffer_.data(), static_cast<size_t>(n)) != n) {
      return ArchiveError(absl::StrCat("write data of ", rel));
    }
    left -= n;
    offset += n;
  }
  return absl::OkStatus();
}

absl::StatusOr<ExportResult> TarWriter::Finish() {
  if (archive_write_close(archive_) != ARCHIVE_OK) return ArchiveError("close tar");
  archive_write_free(archive_);
  archive_ = nullptr;
  if (fdatasync(fd_.get()) != 0) return ErrnoStatus(errno, "fsync", temp_path_);
  if (close(fd_.release()) != 0) return ErrnoStatus(errno, "close", temp_path_);
  if (rename(temp_path_.c_str(), out_path_.c_str()) != 0) {
    return ErrnoStatus(errno, "rename to", out_path_);
  }
  temp_path_.clear();
  ExportResult result;
  result.diff_id = hash_.finish();
  result.size = bytes_;
  result.entries = entries_;
  return result;
}

absl::StatusOr<UniqueFd> OpenTreeRoot(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOTDIR) return absl::InvalidArgumentError(path + ": not a directory");
    return ErrnoStatus(errno, "open", path);
  }
  return UniqueFd(fd);
}

// Writes the overlay layer's directory `dir_fd` (at `rel`) in PathLess order.
absl::Status WriteOverlayDir(TarWriter& writer, int root_fd, int dir_fd, const std::string& rel) {
  ASSIGN_OR_RETURN(std::vector<std::string> names, tree_internal::ListNames(dir_fd));
  for (const std::string& name : names) {
    const std::string child = Join(rel, name);
    auto read = tree_internal::ReadEntry(dir_fd, name, child);
    if (!read.ok()) {
      if (absl::IsNotFound(read.status())) continue;
      return read.status();
    }
    const FsEntry& entry = *read;
    if (entry.mount_root) continue;
    for (const auto& [key, value] : entry.xattrs) {
      if (key == "trusted.overlay.redirect" || key == "trusted.overlay.metacopy") {
        return absl::FailedPreconditionError(absl::StrCat(
            child, ": written with overlay redirect_dir/metacopy, which need the lower layers"));
      }
    }
    if (IsOverlayWhiteout(entry)) {
      RETURN_IF_ERROR(writer.AddWhiteout(child));
      continue;
    }
    RETURN_IF_ERROR(writer.Add(root_fd, entry));
    if (!S_ISDIR(entry.mode)) continue;
    for (const auto& [key, value] : entry.xattrs) {
      if (key == kOverlayOpaque && value == "y") RETURN_IF_ERROR(writer.AddOpaqueMarker(child));
    }
    auto sub = OpenBeneath(dir_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC,
                           kResolveNoSymlinks);
    if (!sub.ok()) {
      if (absl::IsNotFound(sub.status())) continue;
      return sub.status();
    }
    RETURN_IF_ERROR(WriteOverlayDir(writer, root_fd, sub->get(), child));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ExportResult> ExportOverlayLayer(const std::string& layer_dir,
                                                const std::string& out_tar_path) {
  ASSIGN_OR_RETURN(UniqueFd root, OpenTreeRoot(layer_dir));
  TarWriter writer(/*drop_overlay_xattrs=*/true);
  RETURN_IF_ERROR(writer.Open(out_tar_path));
  RETURN_IF_ERROR(WriteOverlayDir(writer, root.get(), root.get(), ""));
  return writer.Finish();
}

absl::StatusOr<ExportResult> ExportTreeDiff(const std::string& lower_dir,
                                            const std::string& upper_dir,
                                            const std::string& out_tar_path) {
  ASSIGN_OR_RETURN(tree_internal::DetailedDiff diff,
                   tree_internal::DiffTreesDetailed(lower_dir, upper_dir, DiffOptions{}));
  // Whole hardlink groups: a new link to an unchanged file must bring that file along, or the
  // link could not be rebuilt where the lower tree is not present (and would be a copy where it
  // is).
  std::vector<tree_internal::DetailedChange> changes = std::move(diff.changes);
  std::set<std::string> listed;
  for (const auto& c : changes) listed.insert(c.entry.rel);
  const size_t original = changes.size();
  for (size_t i = 0; i < original; ++i) {
    const FsEntry& e = changes[i].entry;
    if (changes[i].kind == TreeChange::kDeleted || S_ISDIR(e.mode) || e.nlink <= 1) continue;
    auto group = diff.linked.find({e.dev, e.ino});
    if (group == diff.linked.end()) continue;
    for (const FsEntry& member : group->second) {
      if (listed.insert(member.rel).second) {
        changes.push_back(tree_internal::DetailedChange{TreeChange::kChanged, member});
      }
    }
  }
  ASSIGN_OR_RETURN(UniqueFd root, OpenTreeRoot(upper_dir));
  // Every parent directory of a change too (as containerd does): extracting an entry rewrites its
  // parent, whose mode, owner and times then come back only from its own entry.
  std::set<std::string> parents;
  for (const auto& c : changes) {
    for (size_t slash = c.entry.rel.find('/'); slash != std::string::npos;
         slash = c.entry.rel.find('/', slash + 1)) {
      std::string parent = c.entry.rel.substr(0, slash);
      if (listed.count(parent) == 0) parents.insert(std::move(parent));
    }
  }
  for (const std::string& parent : parents) {
    auto [grand, base] = SplitParent(parent);
    ASSIGN_OR_RETURN(UniqueFd dir, OpenBeneath(root.get(), grand, O_PATH | O_DIRECTORY | O_CLOEXEC,
                                               kResolveNoSymlinks));
    ASSIGN_OR_RETURN(FsEntry entry, tree_internal::ReadEntry(dir.get(), base, parent));
    if (!S_ISDIR(entry.mode)) {
      return absl::AbortedError(absl::StrCat(parent, ": changed while being exported"));
    }
    changes.push_back(tree_internal::DetailedChange{TreeChange::kChanged, std::move(entry)});
  }
  std::sort(changes.begin(), changes.end(), [](const auto& a, const auto& b) {
    return tree_internal::PathLess(a.entry.rel, b.entry.rel);
  });

  TarWriter writer(/*drop_overlay_xattrs=*/false);
  RETURN_IF_ERROR(writer.Open(out_tar_path));
  for (const auto& change : changes) {
    if (change.kind == TreeChange::kDeleted) {
      RETURN_IF_ERROR(writer.AddWhiteout(change.entry.rel));
    } else {
      RETURN_IF_ERROR(writer.Add(root.get(), change.entry));
    }
  }
  return writer.Finish();
}

}  // namespace strata::images
