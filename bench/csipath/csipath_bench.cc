// bench/csipath: the whole CSI path over the plugin's unix socket, as kubelet and the
// provisioner drive it, next to the bare kernel work of the same mounts in the same run.
//
// Starts strata-csi (overlay) on a temp root, imports synthetic images of 1, 10, 100 and 500
// tiny layers, then at 0, 200 and 1,000 other staged volumes (every tenth one 100 layers deep)
// times, client side, CreateVolume, NodeStage+NodePublish, NodeUnpublish+NodeUnstage and
// DeleteVolume, and the same overlay mount (the lowers the plugin mounted, read back from the
// mount table) plus its bind mount and both unmounts made directly through sys::LinuxMounter.
// Then it counts fsync/fdatasync/sync_file_range per call with strace attached to the plugin
// for a counting pass only, and times ListVolumes over 1,000 volumes in pages of 100 against
// one unpaged call. Ratios are against figures measured in this run.
//
//   build/bench/bench_csipath [--binary PATH] [--reps N] [--max-staged N] [--no-strace]
//
// --binary runs another build (e.g. /work/main/build/cmd/strata-csi, the "before").
// Root only: it mounts.

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "sys/mounter.h"
#include "tests/admin/admin_test_util.h"
#include "tests/e2e/csi_calls.h"
#include "tests/e2e/plugin_process.h"

namespace strata::bench {
namespace {

using e2e::PluginProcess;
using Clock = std::chrono::steady_clock;

double Ms(Clock::time_point since) {
  return std::chrono::duration<double, std::milli>(Clock::now() - since).count();
}

double Percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  size_t index = static_cast<size_t>(p * (values.size() - 1) + 0.5);
  return values[std::min(index, values.size() - 1)];
}

void Check(const grpc::Status& status, const std::string& what) {
  if (status.ok()) return;
  fprintf(stderr, "%s failed: %d %s\n", what.c_str(), static_cast<int>(status.error_code()),
          status.error_message().c_str());
  exit(1);
}

void Check(const absl::Status& status, const std::string& what) {
  if (status.ok()) return;
  fprintf(stderr, "%s failed: %s\n", what.c_str(), status.ToString().c_str());
  exit(1);
}

void MakeDir(const std::string& path) { (void)mkdir(path.c_str(), 0755); }

// The lower layers of the overlay mounted at `target`, from the kernel's own mount table.
std::vector<std::string> LowersAt(const std::string& target) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::vector<std::string> fields = absl::StrSplit(line, ' ');
    if (fields.size() < 10 || fields[4] != target) continue;
    std::vector<std::string> lowers;
    for (absl::string_view option : absl::StrSplit(fields.back(), ',')) {
      if (absl::StartsWith(option, "lowerdir+=")) {
        lowers.emplace_back(option.substr(10));
      } else if (absl::StartsWith(option, "lowerdir=")) {
        for (absl::string_view lower : absl::StrSplit(option.substr(9), ':'))
          lowers.emplace_back(lower);
      }
    }
    return lowers;
  }
  return {};
}

struct Options {
  std::string binary = STRATA_CSI_BINARY;
  int reps = 15;
  int max_staged = 1000;
  bool strace = true;
};

class Bench {
 public:
  Bench(Options options, std::string dir) : options_(std::move(options)), dir_(std::move(dir)) {}

  void Run() {
    mounter_ = sys::NewLinuxMounter();
    pods_ = dir_ + "/pods";
    MakeDir(pods_);
    MakeImages();
    plugin_ = std::make_unique<PluginProcess>(options_.binary, dir_ + "/plugin", "overlay");
    MakeDir(dir_ + "/plugin");
    std::string error;
    if (!plugin_->Start({}, &error)) {
      fprintf(stderr, "plugin did not start: %s\n", error.c_str());
      exit(1);
    }
    {
      // One import: the layout's images keep their own names (bench/lN:v1).
      strata::admin::v1::ImportImageRequest request;
      request.set_path(dir_ + "/layout");
      strata::admin::v1::ImportImageResponse response;
      Check(plugin_->admin().ImportImage(e2e::CallContext(600).get(), request, &response),
            "import");
    }
    printf("binary: %s\nreps per figure: %d (p50/p90 in ms)\n", options_.binary.c_str(),
           options_.reps);
    printf(
        "Client: the call as the client sees it. Server: what strata-csi logs for the same calls.\n"
        "Kernel: the same overlay + bind mounts (and unmounts) made directly, in this run.\n"
        "x = server / kernel, medians.\n\n");
    printf("%-6s %-6s | %-13s %-13s %-13s %-13s %-13s %-13s | %-13s %-13s | %-6s %-6s\n", "staged",
           "layers", "create", "stage+pub", "server", "unpub+unst", "server", "delete",
           "kernel mount", "kernel umount", "mnt x", "umnt x");
    for (int staged : {0, 200, 1000}) {
      if (staged > options_.max_staged) break;
      StageBackground(staged);
      for (int layers : kLayers) Measure(staged, layers);
    }
    if (options_.strace) CountSyncs();
    ListPaging();
    Cleanup();
  }

 private:
  static constexpr int kLayers[] = {1, 10, 100, 500};
  static std::string Image(int layers) { return absl::StrCat("bench/l", layers, ":v1"); }

  void MakeImages() {
    admintest::OciLayout layout;
    std::vector<std::string> tars;
    for (int i = 0; i < 500; ++i)
      tars.push_back(admintest::LayerTar({{absl::StrCat("l/", i), absl::StrCat("layer ", i)}}));
    for (int layers : kLayers)
      layout.AddImage(Image(layers), std::vector<std::string>(tars.begin(), tars.begin() + layers));
    layout.Write(dir_ + "/layout");
  }

  std::string NewVolume(const std::string& name, int layers) {
    ::csi::v1::CreateVolumeResponse response;
    Check(e2e::CreateVolume(*plugin_, name, &response, Image(layers)), "create " + name);
    return response.volume().volume_id();
  }

  void StageBackground(int count) {
    while (static_cast<int>(background_.size()) < count) {
      int n = static_cast<int>(background_.size());
      std::string id = NewVolume(absl::StrCat("bg-", n), n % 10 == 0 ? 100 : 1);
      std::string staging = absl::StrCat(pods_, "/bg-", n);
      Check(e2e::StageVolume(*plugin_, id, staging), "stage background");
      background_.push_back({id, staging});
    }
  }

  // Server side: the durations strata-csi logs for its own calls ("csi call" lines: from the call's
  // arrival in the service to its answer, without gRPC transport), summed over `methods` for
  // `volume`, from what the log gained since the last look.
  double ServerMs(const std::string& volume, std::initializer_list<const char*> methods) {
    std::ifstream in(dir_ + "/plugin/plugin.log");
    in.seekg(log_offset_);
    std::string line;
    double total = 0;
    while (std::getline(in, line)) {
      if (line.find("\"csi call\"") == std::string::npos) continue;
      if (line.find(absl::StrCat("volume=\"", volume, "\"")) == std::string::npos) continue;
      bool wanted = false;
      for (const char* method : methods)
        wanted = wanted || line.find(absl::StrCat("method=\"", method, "\"")) != std::string::npos;
      size_t at = line.find("duration=\"");
      if (wanted && at != std::string::npos) total += 1000 * std::atof(line.c_str() + at + 10);
    }
    in.clear();
    in.seekg(0, std::ios::end);
    log_offset_ = in.tellg();
    return total;
  }

  void Measure(int staged, int layers) {
    std::vector<double> create, up, down, remove, kernel_up, kernel_down, server_up, server_down;
    for (int rep = 0; rep < options_.reps; ++rep) {
      std::string name = absl::StrCat("m-", staged, "-", layers, "-", rep);
      std::string staging = pods_ + "/s-" + name, target = pods_ + "/t-" + name;
      auto start = Clock::now();
      std::string id = NewVolume(name, layers);
      create.push_back(Ms(start));
      (void)ServerMs(id, {});  // skips what the log holds so far
      start = Clock::now();
      Check(e2e::StageVolume(*plugin_, id, staging), "stage");
      Check(e2e::PublishVolume(*plugin_, id, staging, target), "publish");
      up.push_back(Ms(start));
      server_up.push_back(ServerMs(id, {"NodeStageVolume", "NodePublishVolume"}));
      std::vector<std::string> lowers = LowersAt(staging);
      start = Clock::now();
      Check(e2e::UnpublishVolume(*plugin_, id, target), "unpublish");
      Check(e2e::UnstageVolume(*plugin_, id, staging), "unstage");
      down.push_back(Ms(start));
      server_down.push_back(ServerMs(id, {"NodeUnpublishVolume", "NodeUnstageVolume"}));
      start = Clock::now();
      ::csi::v1::DeleteVolumeRequest request;
      request.set_volume_id(id);
      ::csi::v1::DeleteVolumeResponse response;
      Check(plugin_->controller().DeleteVolume(e2e::CallContext().get(), request, &response),
            "delete");
      remove.push_back(Ms(start));
      (void)rmdir(staging.c_str());
      Kernel(lowers, rep, &kernel_up, &kernel_down);
    }
    double mount_ratio = Percentile(server_up, 0.5) / std::max(1e-9, Percentile(kernel_up, 0.5));
    double umount_ratio =
        Percentile(server_down, 0.5) / std::max(1e-9, Percentile(kernel_down, 0.5));
    auto pair = [](const std::vector<double>& values) {
      return absl::StrFormat("%6.2f/%6.2f", Percentile(values, 0.5), Percentile(values, 0.9));
    };
    printf("%-6d %-6d | %-13s %-13s %-13s %-13s %-13s %-13s | %-13s %-13s | %5.1fx %5.1fx\n",
           staged, layers, pair(create).c_str(), pair(up).c_str(), pair(server_up).c_str(),
           pair(down).c_str(), pair(server_down).c_str(), pair(remove).c_str(),
           pair(kernel_up).c_str(), pair(kernel_down).c_str(), mount_ratio, umount_ratio);
    fflush(stdout);
  }

  // The same overlay (the plugin's lowers, a fresh upper) and bind, made and taken down
  // directly: what the kernel alone costs for this stage+publish and unpublish+unstage.
  void Kernel(const std::vector<std::string>& lowers, int rep, std::vector<double>* up,
              std::vector<double>* down) {
    std::string base = absl::StrCat(dir_, "/kernel-", rep);
    for (const char* sub : {"", "/upper", "/work", "/stage", "/target"}) MakeDir(base + sub);
    sys::Mount overlay{"overlay", "overlay", {}};
    for (const std::string& lower : lowers) overlay.options.push_back("lowerdir+=" + lower);
    overlay.options.push_back("upperdir=" + base + "/upper");
    overlay.options.push_back("workdir=" + base + "/work");
    overlay.options.push_back("index=off");
    sys::Mount bind{"bind", base + "/stage", {"rw", "nodev"}};
    if (lowers.empty()) overlay = sys::Mount{"bind", base + "/upper", {"rw"}};
    auto start = Clock::now();
    Check(mounter_->MountAt(overlay, base + "/stage"), "kernel overlay mount");
    Check(mounter_->MountAt(bind, base + "/target"), "kernel bind mount");
    up->push_back(Ms(start));
    start = Clock::now();
    Check(mounter_->Unmount(base + "/target"), "kernel bind unmount");
    Check(mounter_->Unmount(base + "/stage"), "kernel overlay unmount");
    down->push_back(Ms(start));
    std::string cleanup = absl::StrCat("rm -rf '", base, "'");
    (void)system(cleanup.c_str());
  }

  pid_t PluginPid() {
    // The plugin is the strata-csi whose command line names this run's folder.
    for (int pid = 2; pid < (1 << 22); ++pid) {
      std::ifstream in(absl::StrCat("/proc/", pid, "/cmdline"));
      if (!in) continue;
      std::string cmdline((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      if (cmdline.find(dir_ + "/plugin") != std::string::npos &&
          cmdline.find("strata-csi") != std::string::npos && pid != getpid())
        return pid;
    }
    return -1;
  }

  // Syncs the plugin makes during `calls` (strace attached only for this pass), per call.
  double Syncs(pid_t plugin, int calls, const std::function<void()>& body) {
    std::string out = dir_ + "/strace.out";
    pid_t tracer = fork();
    if (tracer == 0) {
      int null = open("/dev/null", O_WRONLY);  // strace's attach/detach chatter
      if (null >= 0) dup2(null, STDERR_FILENO);
      std::string target = std::to_string(plugin);
      execlp("strace", "strace", "-f", "-c", "-o", out.c_str(), "-e",
             "trace=fsync,fdatasync,sync_file_range", "-p", target.c_str(), nullptr);
      _exit(127);
    }
    usleep(500 * 1000);  // let it attach to every thread
    body();
    kill(tracer, SIGINT);
    int status = 0;
    waitpid(tracer, &status, 0);
    std::ifstream in(out);
    std::string line;
    int64_t total = 0;
    while (std::getline(in, line)) {
      std::vector<std::string> fields = absl::StrSplit(line, ' ', absl::SkipEmpty());
      if (fields.size() >= 5 && fields.back() == "total") total = std::atoll(fields[3].c_str());
    }
    return static_cast<double>(total) / calls;
  }

  void CountSyncs() {
    pid_t plugin = PluginPid();
    if (plugin < 0) {
      printf("\nsync count: plugin process not found\n");
      return;
    }
    const int n = 10;
    std::vector<std::string> ids(n);
    auto staging = [&](int i) { return absl::StrCat(pods_, "/sync-s-", i); };
    auto target = [&](int i) { return absl::StrCat(pods_, "/sync-t-", i); };
    std::map<std::string, double> per_call;
    per_call["CreateVolume"] = Syncs(plugin, n, [&] {
      for (int i = 0; i < n; ++i) ids[i] = NewVolume(absl::StrCat("sync-", i), 10);
    });
    per_call["NodeStageVolume"] = Syncs(plugin, n, [&] {
      for (int i = 0; i < n; ++i) Check(e2e::StageVolume(*plugin_, ids[i], staging(i)), "stage");
    });
    per_call["NodePublishVolume"] = Syncs(plugin, n, [&] {
      for (int i = 0; i < n; ++i)
        Check(e2e::PublishVolume(*plugin_, ids[i], staging(i), target(i)), "publish");
    });
    per_call["NodeUnpublishVolume"] = Syncs(plugin, n, [&] {
      for (int i = 0; i < n; ++i) Check(e2e::UnpublishVolume(*plugin_, ids[i], target(i)), "unp");
    });
    per_call["NodeUnstageVolume"] = Syncs(plugin, n, [&] {
      for (int i = 0; i < n; ++i) Check(e2e::UnstageVolume(*plugin_, ids[i], staging(i)), "uns");
    });
    per_call["DeleteVolume"] = Syncs(plugin, n, [&] {
      for (int i = 0; i < n; ++i) {
        ::csi::v1::DeleteVolumeRequest request;
        request.set_volume_id(ids[i]);
        ::csi::v1::DeleteVolumeResponse response;
        Check(plugin_->controller().DeleteVolume(e2e::CallContext().get(), request, &response),
              "delete");
      }
    });
    printf(
        "\nfsync+fdatasync+sync_file_range per call (strace -f -c, %d calls each; SQLite WAL "
        "syncs and label files):\n",
        n);
    for (const auto& [call, syncs] : per_call) printf("  %-20s %5.1f\n", call.c_str(), syncs);
  }

  void ListPaging() {
    // 1,000 volumes in the list: the staged ones plus ready ones to make up the number.
    ::csi::v1::ListVolumesResponse all;
    Check(e2e::ListVolumes(*plugin_, &all), "list");
    for (int i = all.entries_size(); i < 1000; ++i) NewVolume(absl::StrCat("list-", i), 1);
    std::vector<double> unpaged, paged, server_unpaged, server_paged;
    int pages = 0;
    (void)ServerMs("", {});
    for (int rep = 0; rep < options_.reps; ++rep) {
      auto start = Clock::now();
      ::csi::v1::ListVolumesResponse one;
      Check(e2e::ListVolumes(*plugin_, &one), "list");
      unpaged.push_back(Ms(start));
      server_unpaged.push_back(ServerMs("", {"ListVolumes"}));
      start = Clock::now();
      std::string token;
      int seen = 0;
      pages = 0;
      do {
        ::csi::v1::ListVolumesRequest request;
        request.set_max_entries(100);
        request.set_starting_token(token);
        ::csi::v1::ListVolumesResponse page;
        Check(plugin_->controller().ListVolumes(e2e::CallContext().get(), request, &page),
              "list page");
        seen += page.entries_size();
        token = page.next_token();
        ++pages;
      } while (!token.empty());
      paged.push_back(Ms(start));
      server_paged.push_back(ServerMs("", {"ListVolumes"}));
      if (seen != one.entries_size()) {
        fprintf(stderr, "paged listing saw %d volumes, unpaged %d\n", seen, one.entries_size());
        exit(1);
      }
    }
    printf(
        "\nListVolumes over %d volumes, p50: client unpaged %.2f ms, %d pages of 100 %.2f ms "
        "(%.2fx); server unpaged %.2f ms, paged %.2f ms (%.2fx)\n",
        all.entries_size() < 1000 ? 1000 : all.entries_size(), Percentile(unpaged, 0.5), pages,
        Percentile(paged, 0.5), Percentile(paged, 0.5) / Percentile(unpaged, 0.5),
        Percentile(server_unpaged, 0.5), Percentile(server_paged, 0.5),
        Percentile(server_paged, 0.5) / std::max(1e-9, Percentile(server_unpaged, 0.5)));
  }

  void Cleanup() {
    for (const auto& [id, staging] : background_) {
      (void)e2e::UnstageVolume(*plugin_, id, staging);
      (void)rmdir(staging.c_str());
    }
    plugin_->Stop();
  }

  Options options_;
  std::string dir_;
  std::string pods_;
  std::unique_ptr<sys::Mounter> mounter_;
  std::unique_ptr<PluginProcess> plugin_;
  std::vector<std::pair<std::string, std::string>> background_;
  std::streamoff log_offset_ = 0;  // how far ServerMs has read the plugin's log
};

}  // namespace
}  // namespace strata::bench

int main(int argc, char** argv) {
  strata::bench::Options options;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--binary" && i + 1 < argc) {
      options.binary = argv[++i];
    } else if (arg == "--reps" && i + 1 < argc) {
      options.reps = std::max(1, atoi(argv[++i]));
    } else if (arg == "--max-staged" && i + 1 < argc) {
      options.max_staged = atoi(argv[++i]);
    } else if (arg == "--no-strace") {
      options.strace = false;
    } else {
      fprintf(stderr, "usage: %s [--binary PATH] [--reps N] [--max-staged N] [--no-strace]\n",
              argv[0]);
      return 2;
    }
  }
  if (geteuid() != 0) {
    fprintf(stderr, "bench_csipath mounts: run it as root\n");
    return 2;
  }
  char dir[] = "/tmp/strata-csipath-XXXXXX";
  if (mkdtemp(dir) == nullptr) return 1;
  strata::bench::Bench(options, dir).Run();
  std::string cleanup = absl::StrCat("rm -rf '", dir, "'");
  (void)system(cleanup.c_str());
  return 0;
}
