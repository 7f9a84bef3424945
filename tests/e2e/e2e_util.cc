#include "tests/e2e/e2e_util.h"

#include <dirent.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <sstream>

namespace strata::e2e {

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void Spit(const std::string& path, const std::string& content) {
  std::ofstream out(path);
  out << content;
}

bool Exists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

std::vector<std::string> Entries(const std::string& dir) {
  std::vector<std::string> names;
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d)) {
      std::string name = e->d_name;
      if (name != "." && name != "..") names.push_back(name);
    }
    closedir(d);
  }
  std::sort(names.begin(), names.end());
  return names;
}

std::vector<std::string> MountsUnder(const std::string& prefix) {
  std::vector<std::string> found;
  std::istringstream table(Slurp("/proc/self/mountinfo"));
  std::string line;
  while (std::getline(table, line)) {
    std::istringstream fields(line);
    std::string id, parent, device, root, target;
    fields >> id >> parent >> device >> root >> target;
    if (target == prefix || target.rfind(prefix + "/", 0) == 0) found.push_back(target);
  }
  return found;
}

void UnmountAllUnder(const std::string& prefix) {
  std::vector<std::string> mounts = MountsUnder(prefix);
  for (auto it = mounts.rbegin(); it != mounts.rend(); ++it) umount2(it->c_str(), MNT_DETACH);
}

}  // namespace strata::e2e
