#include "tests/images/tree_test_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <sstream>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "node/images/tree_diff.h"
#include "tests/images/test_util.h"

namespace strata::images::treetest {
namespace {

std::string Hex(const std::string& bytes) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out.push_back(digits[c >> 4]);
    out.push_back(digits[c & 15]);
  }
  return out;
}

std::string Xattrs(const std::string& path) {
  std::vector<char> names(65536);
  ssize_t n = llistxattr(path.c_str(), names.data(), names.size());
  if (n <= 0) return "";
  std::vector<std::string> keys;
  for (ssize_t i = 0; i < n;) {
    std::string key(&names[i]);
    i += static_cast<ssize_t>(key.size()) + 1;
    if (key.rfind("trusted.overlay.", 0) == 0 && key != "trusted.overlay.opaque") continue;
    keys.push_back(key);
  }
  std::sort(keys.begin(), keys.end());
  std::string out;
  for (const std::string& key : keys) {
    std::vector<char> value(65536);
    ssize_t m = lgetxattr(path.c_str(), key.c_str(), value.data(), value.size());
    out += " " + key + "=" + Hex(std::string(value.data(), m > 0 ? static_cast<size_t>(m) : 0));
  }
  return out;
}

struct Raw {
  std::string rel;
  struct stat st;
};

void Walk(const std::string& root, const std::string& rel, std::vector<Raw>* out) {
  const std::string dir_path = rel.empty() ? root : root + "/" + rel;
  DIR* dir = opendir(dir_path.c_str());
  if (dir == nullptr) return;
  std::vector<std::string> names;
  while (dirent* ent = readdir(dir)) {
    std::string name = ent->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  closedir(dir);
  for (const std::string& name : names) {
    Raw raw;
    raw.rel = rel.empty() ? name : rel + "/" + name;
    if (lstat((root + "/" + raw.rel).c_str(), &raw.st) != 0) continue;
    out->push_back(raw);
    if (S_ISDIR(raw.st.st_mode)) Walk(root, raw.rel, out);
  }
}

}  // namespace

std::map<std::string, std::string> FullSnapshot(const std::string& root,
                                                const SnapshotOptions& options) {
  std::vector<Raw> raws;
  Walk(root, "", &raws);
  std::sort(raws.begin(), raws.end(),
            [](const Raw& a, const Raw& b) { return tree_internal::PathLess(a.rel, b.rel); });
  std::map<std::pair<dev_t, ino_t>, std::string> first;
  std::map<std::string, std::string> out;
  for (const Raw& raw : raws) {
    const struct stat& st = raw.st;
    const std::string path = root + "/" + raw.rel;
    if (S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0)) {
      out[raw.rel] = "whiteout";
      continue;
    }
    std::ostringstream d;
    char mode[16];
    std::snprintf(mode, sizeof(mode), "%06o", st.st_mode);
    d << mode;
    if (options.owners) d << " " << st.st_uid << ":" << st.st_gid;
    if (options.mtimes) d << " mtime=" << st.st_mtim.tv_sec << "." << st.st_mtim.tv_nsec;
    if (S_ISREG(st.st_mode)) {
      d << " data=" << imgtest::ReadFile(path);
    } else if (S_ISLNK(st.st_mode)) {
      char target[4096];
      ssize_t n = readlink(path.c_str(), target, sizeof(target));
      d << " -> " << std::string(target, n > 0 ? static_cast<size_t>(n) : 0);
    } else if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
      d << " dev=" << major(st.st_rdev) << ":" << minor(st.st_rdev);
    }
    if (options.xattrs) d << Xattrs(path);
    if (!S_ISDIR(st.st_mode) && st.st_nlink > 1) {
      auto [it, inserted] = first.emplace(std::make_pair(st.st_dev, st.st_ino), raw.rel);
      d << " link-group=" << it->second;
    }
    out[raw.rel] = d.str();
  }
  return out;
}

std::string SnapshotDiff(const std::map<std::string, std::string>& expected,
                         const std::map<std::string, std::string>& actual) {
  std::ostringstream out;
  for (const auto& [path, desc] : expected) {
    auto it = actual.find(path);
    if (it == actual.end()) {
      out << "missing " << path << ": " << desc << "\n";
    } else if (it->second != desc) {
      out << "differs " << path << ":\n  want " << desc << "\n  got  " << it->second << "\n";
    }
  }
  for (const auto& [path, desc] : actual) {
    if (expected.count(path) == 0) out << "extra " << path << ": " << desc << "\n";
  }
  return out.str();
}

void SetMtime(const std::string& path, time_t sec, long nsec) {
  struct timespec times[2] = {{sec, nsec}, {sec, nsec}};
  ASSERT_EQ(utimensat(AT_FDCWD, path.c_str(), times, AT_SYMLINK_NOFOLLOW), 0) << path;
}

void SetXattr(const std::string& path, const std::string& key, const std::string& value) {
  ASSERT_EQ(lsetxattr(path.c_str(), key.c_str(), value.data(), value.size(), 0), 0)
      << path << " " << key;
}

void CopyAll(const std::string& from, const std::string& to) {
  imgtest::RunCommand("cp -a '" + from + "' '" + to + "'");
}

bool IsRoot() { return geteuid() == 0; }

}  // namespace strata::images::treetest
