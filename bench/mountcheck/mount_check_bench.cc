// bench_mount_check: what does "is this path a mount point?" cost as the node's mount table
// grows? Every publish, unpublish and unstage asks it. For 0, 200 and 1,000 extra tmpfs mounts
// it times, interleaved in one run, LinuxMounter::IsMountPoint (statx, constant time) against
// the mount-table scan it replaced (read /proc/self/mountinfo through libmount, compare), and
// prints the medians and their ratio. Needs root; exits 0 without it.
//
//   bench_mount_check [--iterations N]

#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "sys/mounter.h"

namespace strata {
namespace {

using Clock = std::chrono::steady_clock;

double Micros(Clock::duration d) { return std::chrono::duration<double, std::micro>(d).count(); }

double Median(std::vector<double> samples) {
  std::sort(samples.begin(), samples.end());
  return samples[samples.size() / 2];
}

// The check the plugin made before: the whole table, then a compare.
bool InTable(sys::Mounter& mounter, const std::string& path) {
  char resolved[PATH_MAX];
  if (realpath(path.c_str(), resolved) == nullptr) return false;
  const std::vector<sys::MountPoint> table = mounter.List().value();
  for (const sys::MountPoint& point : table) {
    if (point.target == resolved) return true;
  }
  return false;
}

int Run(int iterations) {
  char pattern[] = "/tmp/strata-bench-mounts-XXXXXX";
  if (mkdtemp(pattern) == nullptr) return 1;
  const std::string dir = pattern;
  std::unique_ptr<sys::Mounter> mounter = sys::NewLinuxMounter();
  const std::string target = dir + "/target";
  mkdir(target.c_str(), 0755);
  mount("tmpfs", target.c_str(), "tmpfs", 0, "size=1m");
  std::vector<std::string> extra;
  std::printf("%-14s %14s %14s %8s\n", "extra mounts", "statx (us)", "table (us)", "ratio");
  for (int wanted : {0, 200, 1000}) {
    while (static_cast<int>(extra.size()) < wanted) {
      std::string path = dir + "/m" + std::to_string(extra.size());
      mkdir(path.c_str(), 0755);
      if (mount("tmpfs", path.c_str(), "tmpfs", 0, "size=64k") != 0) {
        std::perror("mount");
        break;
      }
      extra.push_back(path);
    }
    std::vector<double> by_statx, by_table;
    for (int i = 0; i < iterations; ++i) {
      auto start = Clock::now();
      bool a = mounter->IsMountPoint(target).value();
      auto middle = Clock::now();
      bool b = InTable(*mounter, target);
      auto end = Clock::now();
      if (!a || !b) std::fprintf(stderr, "disagreement: statx %d table %d\n", a, b);
      by_statx.push_back(Micros(middle - start));
      by_table.push_back(Micros(end - middle));
    }
    double s = Median(by_statx), t = Median(by_table);
    std::printf("%-14zu %14.2f %14.2f %7.0fx\n", extra.size(), s, t, t / s);
  }
  for (auto it = extra.rbegin(); it != extra.rend(); ++it) umount2(it->c_str(), MNT_DETACH);
  umount2(target.c_str(), MNT_DETACH);
  std::string command = "rm -rf --one-file-system " + dir;
  return system(command.c_str()) == 0 ? 0 : 1;
}

}  // namespace
}  // namespace strata

int main(int argc, char** argv) {
  if (geteuid() != 0) {
    std::printf("bench_mount_check needs root (mounts); skipped\n");
    return 0;
  }
  int iterations = 200;
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], "--iterations") == 0) iterations = std::atoi(argv[i + 1]);
  return strata::Run(iterations);
}
