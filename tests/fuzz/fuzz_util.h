#pragma once
// Helpers shared by the filesystem fuzz targets: a scratch folder per run beneath one tmp dir
// per process, a tree walk that never follows symlinks, and the check that an extraction left
// everything outside its target alone.

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>

#include "common/log.h"
#include "node/images/safe_fs.h"

namespace strata::fuzz {

[[noreturn]] inline void Fail(const char* target, const std::string& what) {
  std::fprintf(stderr, "%s: invariant broken: %s\n", target, what.c_str());
  std::abort();
}

// Errors only: an extraction's warnings (dropped xattrs) on every run would drown the output.
inline void QuietLogs() { ConfigureLogging(LogLevel::kError, LogFormat::kText); }

// The process's tmp dir ($TMPDIR or /tmp), made once and removed at exit.
inline const std::string& ProcessScratch() {
  static const std::string* dir = [] {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern =
        std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/strata-fuzz-XXXXXX";
    if (mkdtemp(pattern.data()) == nullptr) {
      std::perror("mkdtemp");
      std::abort();
    }
    auto* made = new std::string(pattern);
    std::atexit([] { (void)images::RemoveTree(ProcessScratch()); });
    return made;
  }();
  return *dir;
}

// A fresh, empty folder for one run; removed (never following symlinks) on destruction.
class RunDir {
 public:
  RunDir() : path_(ProcessScratch() + "/run") {
    (void)images::RemoveTree(path_);
    if (mkdir(path_.c_str(), 0755) != 0) {
      std::perror("mkdir run dir");
      std::abort();
    }
  }
  ~RunDir() {
    absl::Status removed = images::RemoveTree(path_);
    if (!removed.ok()) Fail("fuzz", "cannot remove the run dir: " + removed.ToString());
  }
  RunDir(const RunDir&) = delete;
  RunDir& operator=(const RunDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

inline void WriteFileOrDie(const std::string& path, const void* data, size_t size) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    std::perror(path.c_str());
    std::abort();
  }
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = write(fd, p, size);
    if (n <= 0) {
      std::perror("write");
      std::abort();
    }
    p += n;
    size -= static_cast<size_t>(n);
  }
  close(fd);
}

// Calls `visit(rel, st)` for every entry beneath `dir_fd` (not the directory itself), parents
// before children, never following a symlink.
inline void WalkTree(int dir_fd, const std::string& prefix,
                     const std::function<void(const std::string&, const struct stat&)>& visit) {
  int dup_fd = openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dup_fd < 0) return;
  DIR* dir = fdopendir(dup_fd);
  if (dir == nullptr) {
    close(dup_fd);
    return;
  }
  while (struct dirent* ent = readdir(dir)) {
    const std::string name = ent->d_name;
    if (name == "." || name == "..") continue;
    struct stat st;
    if (fstatat(dirfd(dir), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    const std::string rel = prefix.empty() ? name : prefix + "/" + name;
    visit(rel, st);
    if (S_ISDIR(st.st_mode)) {
      int sub = openat(dirfd(dir), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (sub >= 0) {
        WalkTree(sub, rel, visit);
        close(sub);
      }
    }
  }
  closedir(dir);
}

// The folder an extraction must not touch: `outside/` next to the target, holding one file and
// one directory, and a symlink to it that hostile entries may try to write through.
class Outside {
 public:
  explicit Outside(const std::string& run) : path_(run + "/outside") {
    if (mkdir(path_.c_str(), 0755) != 0 || mkdir((path_ + "/dir").c_str(), 0755) != 0) {
      std::perror("mkdir outside");
      std::abort();
    }
    WriteFileOrDie(path_ + "/file", "sentinel", 8);
    WriteFileOrDie(path_ + "/dir/a", "sentinel", 8);
  }
  const std::string& path() const { return path_; }

  // Aborts unless `outside/` holds exactly what the constructor made, unchanged and not
  // hard-linked from anywhere.
  void Check(const char* target) const {
    int fd = open(path_.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) Fail(target, "outside/ is gone or replaced");
    int entries = 0;
    WalkTree(fd, "", [&](const std::string& rel, const struct stat& st) {
      ++entries;
      if (rel == "dir") {
        if (!S_ISDIR(st.st_mode)) Fail(target, "outside/dir changed type");
      } else if (rel == "file" || rel == "dir/a") {
        if (!S_ISREG(st.st_mode) || st.st_size != 8 || st.st_nlink != 1) {
          Fail(target, "outside/" + rel + " changed or was hard-linked");
        }
      } else {
        Fail(target, "something was written outside the target: outside/" + rel);
      }
    });
    close(fd);
    if (entries != 3) Fail(target, "an entry of outside/ was deleted");
  }

 private:
  std::string path_;
};

}  // namespace strata::fuzz
