#pragma once
// Test helpers for layer export and tree diffs: a whole-tree snapshot that sees everything an
// exported layer must keep (types, modes, owners, nanosecond mtimes, content, symlink targets,
// device numbers, xattrs, hardlink groups), and small setters for building trees by hand.

#include <ctime>
#include <map>
#include <string>

namespace strata::images::treetest {

struct SnapshotOptions {
  bool owners = true;
  bool mtimes = true;  // directories' too
  bool xattrs = true;  // trusted.overlay.* other than opaque are always left out
};

// "rel/path" -> one line describing the entry. Overlay whiteouts (0:0 char devices) are "whiteout"
// (their times and link counts are the kernel's business). Hardlinked non-directories name the
// first path (PathLess order) of their group: "link-group=a/b".
std::map<std::string, std::string> FullSnapshot(const std::string& root,
                                                const SnapshotOptions& options = {});

// Readable diff of two snapshots for failure messages ("" when equal).
std::string SnapshotDiff(const std::map<std::string, std::string>& expected,
                         const std::map<std::string, std::string>& actual);

void SetMtime(const std::string& path, time_t sec, long nsec);  // lutimes-like, no follow
void SetXattr(const std::string& path, const std::string& key, const std::string& value);
// `cp -a` (owners, modes, ns times, xattrs, hardlinks).
void CopyAll(const std::string& from, const std::string& to);
bool IsRoot();

}  // namespace strata::images::treetest
