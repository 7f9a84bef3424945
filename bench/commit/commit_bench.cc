// bench_commit: how long a snapshot (a commit) of a volume takes, per driver and size of change,
// against a baseline measured in the same run: a plain recursive copy (CopyTree) of the same
// changed files into a fresh directory on the same filesystem — what any copy-based snapshot
// must at least pay.
//
//   bench_commit [--drivers overlay,vfs] [--root /var/tmp] [--sizes-mib 1,100] [--runs 3]
//
// Two commits per run: of a mounted volume (the copy path; the volume keeps its writable layer)
// and of an unmounted one (commit + rebase onto the new layer). Needs root (mounts).

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
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

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> drivers = {"overlay", "vfs"};
  std::vector<int> sizes = {1, 100};
  std::string base = "/var/tmp";
  int runs = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--drivers") drivers = absl::StrSplit(value, ',');
    if (flag == "--root") base = value;
    if (flag == "--runs") (void)absl::SimpleAtoi(value, &runs);
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
  std::printf("%-8s %6s %10s %12s %14s %14s %10s\n", "driver", "MiB", "copy (s)", "mounted (s)",
              "unmounted (s)", "ratio mounted", "ratio unm.");
  for (const std::string& name : drivers) {
    for (int mib : sizes) {
      std::vector<double> copy, mounted, unmounted;
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
      double c = Median(copy), m = Median(mounted), u = Median(unmounted);
      std::printf("%-8s %6d %10.4f %12.4f %14.4f %14.2f %10.2f\n", name.c_str(), mib, c, m, u,
                  m / c, u / c);
    }
  }
  return 0;
}
