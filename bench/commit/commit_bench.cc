// bench_commit: how long a snapshot (a commit) of a volume takes, per driver and size of change,
// against baselines measured in the same run on the same filesystem: a byte-for-byte copy
// (`cp -a --reflink=never`) of the changed files — what a copy that cannot share extents pays —
// and the tree copier itself (CopyTree, which clones files where the filesystem can).
//
//   bench_commit [--drivers overlay,vfs] [--root /var/tmp] [--sizes-mib 1,100] [--runs 3]
//                [--stores xfs-reflink,xfs,btrfs,ext4]
//
// --stores makes a 4 GiB loop-file filesystem of each kind under --root and runs there, so the
// reflink gain (xfs reflink=1, btrfs) shows next to stores that cannot share (xfs reflink=0,
// ext4) in one run.
//
// Two commits per run: of a mounted volume (the copy path; the volume keeps its writable layer)
// and of an unmounted one (commit + rebase onto the new layer). Needs root (mounts).

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "common/log.h"
#include "drivers/copy_tree.h"
#include "drivers/registry.h"
#include "node/layer_store.h"
#include "node/metadata.h"
#include "node/paths.h"
#include "node/volume_manager.h"
#include "sys/mounter.h"

namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// `mib` MiB of changes as 64 files of random-ish data, fsynced like a real writer's.
void WriteChanges(const std::string& dir, int mib) {
  std::vector<char> block(1 << 20);
  for (size_t i = 0; i < block.size(); ++i) block[i] = static_cast<char>((i * 2654435761u) >> 13);
  int files = 64;
  long per_file = (static_cast<long>(mib) << 20) / files;
  for (int f = 0; f < files; ++f) {
    std::string path = dir + "/f" + std::to_string(f);
    int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    for (long written = 0; written < per_file;) {
      long chunk = std::min<long>(per_file - written, block.size());
      if (write(fd, block.data(), chunk) != chunk) break;
      written += chunk;
    }
    fsync(fd);
    close(fd);
  }
}

double Median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

bool Run(const std::string& command) { return std::system(command.c_str()) == 0; }

// A loop-file filesystem of `kind` mounted under `base`; empty on failure (said on stdout).
std::string MountStore(const std::string& kind, const std::string& base) {
  const std::map<std::string, std::string> mkfs = {{"xfs-reflink", "mkfs.xfs -q -f -m reflink=1"},
                                                   {"xfs", "mkfs.xfs -q -f -m reflink=0"},
                                                   {"btrfs", "mkfs.btrfs -q -f"},
                                                   {"ext4", "mkfs.ext4 -q -F"}};
  auto it = mkfs.find(kind);
  if (it == mkfs.end()) {
    std::cout << kind << ": unknown store (xfs-reflink, xfs, btrfs, ext4)\n";
    return "";
  }
  const std::string dir = base + "/strata-bench-store-" + kind + "-" + std::to_string(getpid());
  const std::string image = dir + ".img";
  if (!Run("mkdir -p " + dir + " && truncate -s 4G " + image + " && " + it->second + " " + image +
           " >/dev/null && mount -o loop " + image + " " + dir)) {
    std::cout << kind << ": cannot make a loop-file store here\n";
    Run("rm -f " + image + "; rmdir " + dir + " 2>/dev/null");
    return "";
  }
  Run("rm -f " + image);  // the loop device holds it; space goes with the unmount
  return dir;
}

void UnmountStore(const std::string& dir) { Run("umount " + dir + " && rmdir " + dir); }

void RunStore(const std::string& store, const std::string& base,
              const std::vector<std::string>& drivers, const std::vector<int>& sizes, int runs);

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> drivers = {"overlay", "vfs"};
  std::vector<int> sizes = {1, 100};
  std::string base = "/var/tmp";
  int runs = 3;
  std::vector<std::string> stores;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--drivers") drivers = absl::StrSplit(value, ',');
    if (flag == "--root") base = value;
    if (flag == "--runs") (void)absl::SimpleAtoi(value, &runs);
    if (flag == "--stores") stores = absl::StrSplit(value, ',');
    if (flag == "--sizes-mib") {
      sizes.clear();
      for (absl::string_view part : absl::StrSplit(value, ',')) {
        int size = 0;
        if (absl::SimpleAtoi(part, &size)) sizes.push_back(size);
      }
    }
  }
  if (geteuid() != 0) {
    std::cout << "bench_commit mounts filesystems: run it as root\n";
    return 0;
  }
  strata::ConfigureLogging(
      getenv("BENCH_VERBOSE") ? strata::LogLevel::kInfo : strata::LogLevel::kWarning,
      strata::LogFormat::kText);
  std::printf("%-12s %-8s %6s %10s %10s %12s %14s %10s %10s\n", "store", "driver", "MiB",
              "bytes (s)", "tree (s)", "mounted (s)", "unmounted (s)", "mnt/bytes", "unm/bytes");
  if (stores.empty()) {
    RunStore("(--root)", base, drivers, sizes, runs);
  } else {
    for (const std::string& kind : stores) {
      std::string dir = MountStore(kind, base);
      if (dir.empty()) continue;
      RunStore(kind, dir, drivers, sizes, runs);
      UnmountStore(dir);
    }
  }
  return 0;
}

namespace {

void RunStore(const std::string& store, const std::string& base,
              const std::vector<std::string>& drivers, const std::vector<int>& sizes, int runs) {
  for (const std::string& name : drivers) {
    for (int mib : sizes) {
      std::vector<double> bytes, copy, mounted, unmounted;
      for (int run = 0; run < runs; ++run) {
        std::string root = base + "/strata-bench-commit-" + std::to_string(getpid());
        (void)strata::node::RemoveTree(root);
        std::string pods = root + "-pods";
        (void)strata::node::MakeDirs(pods);
        (void)strata::node::MakeDirs(root);
        auto metadata = strata::node::Metadata::Open(root + "/strata.db");
        auto driver = strata::drivers::NewDriver(name, root);
        if (!metadata.ok() || !driver.ok()) {
          std::cout << name
                    << ": cannot run here: " << (driver.ok() ? metadata.status() : driver.status())
                    << "\n";
          break;
        }
        auto mounter = strata::sys::NewLinuxMounter();
        strata::node::LayerStore layers(metadata->get(), driver->get(), mounter.get(),
                                        root + "/tmp");
        strata::node::VolumeManager volumes(
            metadata->get(), &layers, driver->get(), mounter.get(), nullptr,
            strata::node::VolumeManagerOptions{root, root + "/volumes", root + "/tmp", 128});
        strata::node::CreateVolumeParams params;
        params.name = "bench";
        auto volume = volumes.Create(params);
        std::string mnt = pods + "/mnt";
        if (!volume.ok() || !volumes.Stage(volume->id, mnt).ok()) {
          std::cout << name << ": setup failed: "
                    << (volume.ok() ? volumes.Stage(volume->id, mnt) : volume.status()) << "\n";
          break;
        }
        WriteChanges(mnt, mib);
        sync();
        auto start = Clock::now();
        Run("cp -a --reflink=never " + mnt + " " + root + "/bytes-copy");
        sync();
        bytes.push_back(Seconds(start));
        start = Clock::now();
        (void)strata::drivers::CopyTree(mnt, root + "/baseline-copy");
        sync();
        copy.push_back(Seconds(start));
        start = Clock::now();
        auto first = volumes.CreateSnapshot(volume->id, "mounted");
        mounted.push_back(Seconds(start));
        (void)volumes.Unstage(volume->id, mnt);
        start = Clock::now();
        auto second = volumes.CreateSnapshot(volume->id, "unmounted");
        unmounted.push_back(Seconds(start));
        if (!first.ok() || !second.ok()) {
          std::cout << name
                    << ": commit failed: " << (first.ok() ? second.status() : first.status())
                    << "\n";
          break;
        }
        (void)strata::node::RemoveTree(root);
        (void)strata::node::RemoveTree(pods);
      }
      if (copy.empty() || mounted.size() != copy.size()) continue;
      double b = Median(bytes), c = Median(copy), m = Median(mounted), u = Median(unmounted);
      std::printf("%-12s %-8s %6d %10.4f %10.4f %12.4f %14.4f %10.3f %10.3f\n", store.c_str(),
                  name.c_str(), mib, b, c, m, u, m / b, u / b);
    }
  }
}

}  // namespace
