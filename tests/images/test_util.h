#pragma once
// Test helpers for images: temp dirs, tars written with libarchive's writer, file trees as
// comparable maps, and digests computed independently of the code under test (sha256sum).

#include <sys/types.h>

#include <ctime>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace strata::images::imgtest {

// A fresh directory under /tmp, removed (recursively) on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

struct TarEntry {
  std::string name;
  // 'f' file, 'd' dir, 'l' symlink, 'h' hardlink, 'c' char dev, 'b' block dev, 'p' fifo.
  char type = 'f';
  std::string data;  // file contents
  std::string link;  // symlink or hardlink target
  mode_t mode = 0644;
  int64_t uid = 0;
  int64_t gid = 0;
  time_t mtime = 1500000000;
  long mtime_nsec = 0;
  unsigned dev_major = 0;
  unsigned dev_minor = 0;
  std::vector<std::pair<std::string, std::string>> xattrs;
};

TarEntry File(const std::string& name, const std::string& data, mode_t mode = 0644);
TarEntry Dir(const std::string& name, mode_t mode = 0755);
TarEntry Symlink(const std::string& name, const std::string& target);
TarEntry Hardlink(const std::string& name, const std::string& target);

// A pax tar of `entries`, uncompressed.
std::string BuildTar(const std::vector<TarEntry>& entries);

void WriteFile(const std::string& path, const std::string& data);
std::string ReadFile(const std::string& path);
void MakeDirs(const std::string& path);

// Runs a shell command; returns its stdout. Fails the current test when it exits non-zero.
std::string RunCommand(const std::string& command);
// "sha256:<hex>" from the sha256sum tool.
std::string Sha256SumFile(const std::string& path);
std::string Sha256SumData(const std::string& data);
// Compresses with the gzip / zstd command line tools.
std::string Compress(const std::string& data, const std::string& tool);

// The tree under `root` as "relative/path" -> description, e.g.
// "f 0644 0:0 <content>", "d 0755 0:0", "l -> target", "c 0600 0:0 1:3", "p 0644 0:0".
// Symlinks and the root itself are described without mode; `with_owner` adds uid:gid.
std::map<std::string, std::string> Snapshot(const std::string& root, bool with_owner = true);

}  // namespace strata::images::imgtest
