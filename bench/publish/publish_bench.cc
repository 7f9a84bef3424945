// bench_publish: what does Strata's stage + publish cost over a bare overlay mount?
//
// For overlay chains of 1, 10 and 100 layers (a few files each) it times, interleaved in one run:
//   stage+publish: driver Mounts() -> Mounter::MountAt(staging) -> bind staging onto a target
//                  -> unmount target -> unmount staging (what the node plugin does per volume);
//   bare:          one overlay mount(2) of the same chain (short relative lowerdir names after a
//                  chdir) + umount2.
// and prints median / p90 per depth and the ratio of medians, for the whole cycle and for the
// mount phase alone (unmounting an overlay with an upper syncs the upper filesystem, which on a
// busy disk dominates both sides equally). Needs root; exits 0 without it.
//
//   bench_publish [--iterations N] [--depths 1,10,100] [--legacy]

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "drivers/copy_tree.h"
#include "drivers/fs_util.h"
#include "drivers/overlay/overlay_driver.h"
#include <sys/mount.h>
#include "sys/mounter.h"

namespace strata {
namespace {

using Clock = std::chrono::steady_clock;

double Millis(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

double Percentile(std::vector<double> samples, double p) {
  std::sort(samples.begin(), samples.end());
  size_t index = static_cast<size_t>(p * (samples.size() - 1) + 0.5);
  return samples[std::min(index, samples.size() - 1)];
}

int Fail(const std::string& what, const absl::Status& status) {
  std::fprintf(stderr, "bench_publish: %s: %s\n", what.c_str(), status.ToString().c_str());
  return 1;
}

int Run(int iterations, const std::vector<int>& depths, bool legacy) {
  char base_template[] = "/var/tmp/strata-bench-XXXXXX";
  if (mkdtemp(base_template) == nullptr) {
    std::perror("mkdtemp");
    return 1;
  }
  const std::string base = base_template;
  const std::string root = base + "/var/lib/kubelet/plugins/strata.csi.storage.example.com/root";
  std::vector<std::string> mounted;  // to clean up on any exit
  auto cleanup = [&] {
    for (auto it = mounted.rbegin(); it != mounted.rend(); ++it) umount2(it->c_str(), MNT_DETACH);
    absl::Status removed = drivers::RemoveTree(base);
    if (!removed.ok()) std::fprintf(stderr, "cleanup: %s\n", removed.ToString().c_str());
  };

  auto created = drivers::OverlayDriver::Create(root);
  if (!created.ok()) return Fail("create driver", created.status());
  drivers::OverlayDriver& driver = **created;
  if (absl::Status ok = drivers::OverlaySupported(root + "/overlay"); !ok.ok()) {
    cleanup();
    return Fail("overlay", ok);
  }
  auto mounter = sys::NewLinuxMounter({.force_legacy_overlay = legacy});

  // One chain of max(depths) layers; shallower depths use its top.
  const int max_depth = *std::max_element(depths.begin(), depths.end());
  drivers::Chain chain;
  for (int i = 0; i < max_depth; ++i) {
    std::string id = absl::StrCat("l", i), active = absl::StrCat("b", i);
    absl::Status status = driver.Prepare(active, {}, {});
    if (!status.ok()) return cleanup(), Fail("prepare", status);
    auto target = driver.DirectWriteTarget(active);
    if (!target.ok()) return cleanup(), Fail("target", target.status());
    std::ofstream(absl::StrCat(target->directory, "/file", i)) << "layer " << i << "\n";
    std::ofstream(target->directory + "/shared") << "from layer " << i << "\n";
    drivers::MakeDirs(absl::StrCat(target->directory, "/dir", i % 7)).IgnoreError();
    std::ofstream(absl::StrCat(target->directory, "/dir", i % 7, "/blob"))
        << std::string(4096, 'x');
    status = driver.Commit(id, active, {}, drivers::CommitMode::kConsume);
    if (!status.ok()) return cleanup(), Fail("commit", status);
    chain.insert(chain.begin(), id);
  }

  std::printf("bench_publish: %d iterations per depth, overlay via %s, root %s\n", iterations,
              legacy ? "classic mount(2) fallback" : "new mount API", root.c_str());
  std::printf("%6s  %24s  %24s  %6s  %21s  %6s\n", "layers", "stage+publish+unmount",
              "bare mount+umount", "ratio", "mount phase only", "ratio");
  std::printf("%6s  %24s  %24s  %6s  %21s  %6s\n", "", "median / p90 ms", "median / p90 ms", "",
              "publish / bare ms", "");
  for (int depth : depths) {
    drivers::Chain parents(chain.end() - depth, chain.end());  // the bottom `depth` layers
    std::string volume = absl::StrCat("vol", depth);
    absl::Status status = driver.Prepare(volume, parents, {});
    if (!status.ok()) return cleanup(), Fail("prepare volume", status);
    std::string staging = absl::StrCat(base, "/staging/", volume);
    std::string target = absl::StrCat(base, "/pods/", volume, "/mount");
    if (!drivers::MakeDirs(staging).ok() || !drivers::MakeDirs(target).ok()) {
      return cleanup(), 1;
    }
    // The bare mount: same lowers, upper and work, relative lower names from layers/.
    std::vector<std::string> names(parents.begin(), parents.end());
    std::string data =
        absl::StrCat("lowerdir=", absl::StrJoin(names, ":"), ",upperdir=", driver.UpperPath(volume),
                     ",workdir=", driver.WorkPath(volume), ",index=off");
    std::string layers_dir = root + "/overlay/layers";

    std::vector<double> publish, bare, publish_up, bare_up;  // total; mount phase only
    // One stage+publish cycle; false (after printing why) on failure.
    auto publish_once = [&]() -> bool {
      drivers::SyncFilesystem(staging).IgnoreError();  // start each cycle from a quiet disk
      auto start = Clock::now();
      auto mounts = driver.Mounts(volume, parents);
      if (!mounts.ok()) return Fail("mounts", mounts.status()), false;
      for (const sys::Mount& mount : *mounts) {
        absl::Status s = mounter->MountAt(mount, staging);
        if (!s.ok()) return Fail("stage", s), false;
      }
      mounted.push_back(staging);
      absl::Status s = mounter->MountAt({"bind", staging, {"rw"}}, target);
      if (!s.ok()) return Fail("publish", s), false;
      mounted.push_back(target);
      publish_up.push_back(Millis(Clock::now() - start));
      s = mounter->Unmount(target);
      if (s.ok()) s = mounter->Unmount(staging);
      if (!s.ok()) return Fail("unmount", s), false;
      mounted.resize(mounted.size() - 2);
      publish.push_back(Millis(Clock::now() - start));
      return true;
    };
    // One bare cycle. This process is single-threaded: chdir is harmless here.
    auto bare_once = [&]() -> bool {
      if (chdir(layers_dir.c_str()) != 0) return std::perror("chdir"), false;
      drivers::SyncFilesystem(staging).IgnoreError();
      auto start = Clock::now();
      if (mount("overlay", staging.c_str(), "overlay", 0, data.c_str()) != 0) {
        return std::perror("bare mount(2)"), false;
      }
      bare_up.push_back(Millis(Clock::now() - start));
      if (umount2(staging.c_str(), 0) != 0) return std::perror("umount2"), false;
      bare.push_back(Millis(Clock::now() - start));
      return chdir("/") == 0;
    };
    for (int i = 0; i < iterations; ++i) {
      // Alternate which goes first so neither always pays for the other's unmount sync.
      bool ok = (i % 2 == 0) ? publish_once() && bare_once() : bare_once() && publish_once();
      if (!ok) return cleanup(), 1;
    }
    double publish_median = Percentile(publish, 0.5), bare_median = Percentile(bare, 0.5);
    double publish_up_median = Percentile(publish_up, 0.5);
    double bare_up_median = Percentile(bare_up, 0.5);
    std::printf("%6d  %11.3f / %10.3f  %11.3f / %10.3f  %5.2fx  %9.3f / %9.3f  %5.2fx\n", depth,
                publish_median, Percentile(publish, 0.9), bare_median, Percentile(bare, 0.9),
                publish_median / bare_median, publish_up_median, bare_up_median,
                publish_up_median / bare_up_median);
  }
  cleanup();
  return 0;
}

}  // namespace
}  // namespace strata

int main(int argc, char** argv) {
  int iterations = 50;
  std::vector<int> depths = {1, 10, 100};
  bool legacy = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--iterations" && i + 1 < argc) {
      iterations = std::max(1, std::atoi(argv[++i]));
    } else if (arg == "--depths" && i + 1 < argc) {
      depths.clear();
      for (const auto& part : absl::StrSplit(argv[++i], ',')) {
        int depth = std::atoi(std::string(part).c_str());
        if (depth < 1 || depth > 500) {
          std::fprintf(stderr, "bench_publish: depth must be 1..500\n");
          return 2;
        }
        depths.push_back(depth);
      }
    } else if (arg == "--legacy") {
      legacy = true;
    } else {
      std::fprintf(stderr, "usage: %s [--iterations N] [--depths 1,10,100] [--legacy]\n", argv[0]);
      return 2;
    }
  }
  if (depths.empty()) return 2;
  if (geteuid() != 0) {
    std::printf("bench_publish: needs root (it mounts overlays); skipping.\n");
    return 0;
  }
  return strata::Run(iterations, depths, legacy);
}
