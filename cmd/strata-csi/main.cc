// strata-csi: the Strata CSI plugin. One process per node serves the CSI Identity, Controller
// and Node services on a unix socket and owns the node's layer store.

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <iostream>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/errno_status.h"
#include "common/log.h"
#include "common/size.h"
#include "common/status_macros.h"
#include "csi/admin_service.h"
#include "csi/controller_service.h"
#include "csi/group_controller_service.h"
#include "csi/identity_service.h"
#include "csi/node_service.h"
#include "csi/plugin_context.h"
#include "csi/server.h"
#include "drivers/btrfs/btrfs_driver.h"
#include "drivers/devmapper/devmapper_driver.h"
#include "drivers/registry.h"
#include "metrics/metrics.h"
#include "metrics/server.h"
#include "node/exporter.h"
#include "node/layer_store.h"
#include "node/metadata.h"
#include "node/paths.h"
#include "node/volume_locks.h"
#include "node/volume_manager.h"
#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"
#include "strata/version.h"
#include "sys/mounter.h"

// Not under /csi: a default must not create folders at the host's root. The chart passes the
// kubelet plugin folder explicitly.
ABSL_FLAG(std::string, endpoint, "unix:///run/strata/csi.sock", "CSI endpoint (unix socket)");
ABSL_FLAG(std::string, admin_endpoint, "",
          "admin API endpoint for stratactl; default unix://<root>/admin.sock");
ABSL_FLAG(std::string, node_id, "", "this node's id as Kubernetes knows it; default: hostname");
ABSL_FLAG(std::string, root, "/var/lib/strata", "where Strata keeps layers, volumes and metadata");
ABSL_FLAG(std::string, driver, "overlay", "storage driver: overlay, vfs, btrfs, devmapper, auto");
ABSL_FLAG(std::string, driver_name, "strata.csi.dev", "CSI plugin name");
ABSL_FLAG(
    std::string, metrics_address, "127.0.0.1:9810",
    "HOST:PORT for Prometheus /metrics (HOST a numeric IPv4 or IPv6 address); empty disables");
ABSL_FLAG(int, metrics_threads, strata::metrics::MetricsServerOptions().num_threads,
          "metrics: connections served at once (1..1024); a stalled client holds one until "
          "--metrics-request-timeout-ms");
ABSL_FLAG(int, metrics_request_timeout_ms,
          strata::metrics::MetricsServerOptions().request_timeout_ms,
          "metrics: longest a client may take to send its request, and to take each write of "
          "the answer (1..600000)");
ABSL_FLAG(std::string, log_level, "info", "debug, info, warning or error");
ABSL_FLAG(std::string, log_format, "text", "text (klog-like) or json");
ABSL_FLAG(std::string, dm_thinpool, "", "devmapper: name of an existing thin pool");
ABSL_FLAG(std::string, dm_base_size, "10GiB", "devmapper: size of the base thin device");
ABSL_FLAG(std::string, dm_fs_type, "ext4", "devmapper: filesystem of the base device (ext4|xfs)");
ABSL_FLAG(int, dm_min_free_space, 10,
          "devmapper: refuse new volumes and snapshots below this percent of free pool space");
ABSL_FLAG(int, flatten_depth, 128,
          "a commit that would make a chain deeper than this is flattened into one layer "
          "(0 = the driver's limit)");
ABSL_FLAG(double, overprovision_ratio, 1.0,
          "on thin-provisioned stores (btrfs with quotas, devmapper) the capacities of all "
          "volumes may add up to this many times the store's size (1: never promise more than "
          "it holds); GetCapacity reports what is left. Other stores promise only free space");
ABSL_FLAG(std::string, recover_unknown, "refuse",
          "when the metadata database is new or empty but the store holds content (a lost or "
          "damaged database): refuse (start nothing, say so), readopt (rebuild the records "
          "from the labels on disk; unlabelled content to <root>/quarantine) or quarantine "
          "(move everything found to <root>/quarantine). Content the database cannot account "
          "for on a normal start is always quarantined, never deleted");
ABSL_FLAG(int, shutdown_grace_seconds, 30, "how long SIGTERM waits for in-flight calls");
// Import bounds (images::ImportLimits): archives are hostile input.
ABSL_FLAG(std::string, max_json_bytes, "4MiB",
          "import: largest manifest, index or image config accepted");
ABSL_FLAG(int, max_json_depth, 64,
          "import: deepest nesting of arrays/objects in those JSON documents (at most 1000)");
ABSL_FLAG(std::string, max_layer_bytes, "256GiB",
          "import: largest layer, uncompressed (its tar stream, and its files' apparent sizes: "
          "a sparse file counts at its full size)");
ABSL_FLAG(int64_t, max_layer_entries, 1000000, "import: most tar entries in one layer");
ABSL_FLAG(std::string, max_import_bytes, "1024GiB",
          "import: most bytes for all layers of one import together (measured as "
          "--max-layer-bytes), and for an archive tar's unpacked files");

namespace strata {
namespace {

// Brings the store gauges up to date when Prometheus scrapes. Registered before the metrics
// registry: the exposer collects in registration order. Contributes no families of its own.
class GaugeRefresher : public prometheus::Collectable {
 public:
  explicit GaugeRefresher(node::VolumeManager* volumes) : volumes_(volumes) {}
  std::vector<prometheus::MetricFamily> Collect() const override {
    volumes_->RefreshGauges();
    return {};
  }

 private:
  node::VolumeManager* volumes_;
};

// strata_dm_pool_*: the thin pool's space, read from the kernel at every scrape.
class ThinPoolCollector : public prometheus::Collectable {
 public:
  explicit ThinPoolCollector(drivers::DevmapperDriver* driver) : driver_(driver) {}
  std::vector<prometheus::MetricFamily> Collect() const override {
    absl::StatusOr<drivers::ThinPoolUsage> usage = driver_->PoolUsage();
    if (!usage.ok()) return {};
    auto gauge = [](const char* name, const char* help, int64_t value) {
      prometheus::MetricFamily family;
      family.name = name;
      family.help = help;
      family.type = prometheus::MetricType::Gauge;
      prometheus::ClientMetric metric;
      metric.gauge.value = static_cast<double>(value);
      family.metric.push_back(metric);
      return family;
    };
    return {gauge("strata_dm_pool_data_used_bytes", "Data space of the thin pool in use.",
                  usage->data_used_bytes),
            gauge("strata_dm_pool_data_total_bytes", "Data space of the thin pool.",
                  usage->data_total_bytes),
            gauge("strata_dm_pool_metadata_used_bytes", "Metadata space of the thin pool in use.",
                  usage->metadata_used_bytes),
            gauge("strata_dm_pool_metadata_total_bytes", "Metadata space of the thin pool.",
                  usage->metadata_total_bytes)};
  }

 private:
  drivers::DevmapperDriver* driver_;
};

std::string Hostname() {
  char name[256] = {};
  if (gethostname(name, sizeof(name) - 1) != 0) return "localhost";
  return name;
}

absl::Status Run() {
  // Checked before the store is touched: as another user overlay still mounts nothing and an
  // import would store every root-owned file as that user, so the store would be wrong, not
  // merely unusable.
  if (uid_t uid = geteuid(); uid != 0) {
    return absl::PermissionDeniedError(absl::StrCat(
        "strata-csi must run as root (it runs as uid ", uid,
        "): it mounts filesystems and stores layer files with their owners; nothing was done"));
  }
  std::string root = absl::GetFlag(FLAGS_root);
  if (root.empty() || root[0] != '/') return absl::InvalidArgumentError("--root must be absolute");
  std::string node_id = absl::GetFlag(FLAGS_node_id);
  if (node_id.empty()) node_id = Hostname();
  std::string admin_endpoint = absl::GetFlag(FLAGS_admin_endpoint);
  if (admin_endpoint.empty()) admin_endpoint = absl::StrCat("unix://", root, "/admin.sock");

  LogInfo("starting strata-csi", {{"version", kVersion},
                                  {"driver", absl::GetFlag(FLAGS_driver)},
                                  {"root", root},
                                  {"node_id", node_id},
                                  {"endpoint", absl::GetFlag(FLAGS_endpoint)}});
  RETURN_IF_ERROR(node::MakeDirs(root, 0700));
  // One process owns a store: a second plugin (or a second DaemonSet pod during a botched
  // update) on the same root would corrupt it.
  std::string lock_path = root + "/strata.lock";
  int lock_fd = open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd < 0) {
    // Say why: a read-only or full root is not "another plugin".
    if (errno == EROFS) {
      return absl::FailedPreconditionError(
          absl::StrCat("the store ", root, " is on a read-only filesystem (cannot open ", lock_path,
                       " for writing); remount it read-write or choose another --root"));
    }
    return ErrnoStatus(errno, "open the store's lock file", lock_path);
  }
  if (flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK) return ErrnoStatus(errno, "lock", lock_path);
    return absl::FailedPreconditionError(absl::StrCat("another strata-csi owns ", root, " (",
                                                      lock_path, " is locked); stop it first"));
  }
  node::UnknownContentPolicy unknown_policy;
  if (std::string policy = absl::GetFlag(FLAGS_recover_unknown); policy == "refuse") {
    unknown_policy = node::UnknownContentPolicy::kRefuse;
  } else if (policy == "readopt") {
    unknown_policy = node::UnknownContentPolicy::kReadopt;
  } else if (policy == "quarantine") {
    unknown_policy = node::UnknownContentPolicy::kQuarantine;
  } else {
    return absl::InvalidArgumentError("--recover-unknown must be refuse, readopt or quarantine");
  }
  const double overprovision_ratio = absl::GetFlag(FLAGS_overprovision_ratio);
  RETURN_IF_ERROR(node::ValidateOverprovisionRatio(overprovision_ratio));
  ASSIGN_OR_RETURN(std::unique_ptr<node::Metadata> metadata,
                   node::Metadata::Open(root + "/strata.db"));
  drivers::DriverOptions driver_options;
  driver_options.devmapper.thin_pool = absl::GetFlag(FLAGS_dm_thinpool);
  ASSIGN_OR_RETURN(driver_options.devmapper.base_size_bytes,
                   ParseSize(absl::GetFlag(FLAGS_dm_base_size), "--dm-base-size"));
  driver_options.devmapper.fs_type = absl::GetFlag(FLAGS_dm_fs_type);
  driver_options.devmapper.min_free_percent = absl::GetFlag(FLAGS_dm_min_free_space);
  ASSIGN_OR_RETURN(std::unique_ptr<drivers::Driver> driver,
                   drivers::NewDriver(absl::GetFlag(FLAGS_driver), root, driver_options));
  if (absl::GetFlag(FLAGS_driver) == "auto") {
    // The order of drivers/registry.cc's choice, told so an admin knows what they got.
    std::string why;
    if (!driver_options.devmapper.thin_pool.empty()) {
      why = "--dm-thinpool is set";
    } else if (driver->name() == "btrfs") {
      why = "--root is on btrfs";
    } else {
      why = absl::StrCat("--root is not on btrfs (", drivers::BtrfsSupported(root).message(),
                         ") and overlayfs works there");
    }
    LogInfo("driver auto picked a driver", {{"driver", std::string(driver->name())}, {"why", why}});
  }
  {
    // An admin asking "why was my PVC refused / why does this node report so little" starts
    // here: what the store enforces and which rule GetCapacity and CreateVolume apply.
    const drivers::DriverLimits limits = driver->limits();
    absl::StatusOr<int64_t> total = driver->TotalBytes();
    LogInfo("capacity policy",
            {{"driver", std::string(driver->name())},
             {"capacity_enforced", limits.enforces_capacity ? "true" : "false"},
             {"thin_provisioned", limits.thin_provisioned ? "true" : "false"},
             {"rule", limits.thin_provisioned
                          ? "volumes' capacities may add up to total_bytes x overprovision_ratio"
                          : "a volume's capacity may not exceed the store's free space"},
             {"overprovision_ratio", absl::StrCat(overprovision_ratio)},
             {"total_bytes", total.ok() ? absl::StrCat(*total) : total.status().ToString()}});
    if (!limits.enforces_capacity) {
      LogWarning("capacity is recorded but not enforced on this store: one volume can fill it",
                 {{"driver", std::string(driver->name())}});
    }
  }
  std::unique_ptr<sys::Mounter> mounter = sys::NewLinuxMounter();
  metrics::Metrics metrics;
  metrics.SetBuildInfo(kVersion, driver->name());
  images::ImportLimits import_limits;
  ASSIGN_OR_RETURN(import_limits.max_json_bytes,
                   ParseSize(absl::GetFlag(FLAGS_max_json_bytes), "--max-json-bytes"));
  import_limits.max_json_depth = absl::GetFlag(FLAGS_max_json_depth);
  ASSIGN_OR_RETURN(import_limits.max_layer_bytes,
                   ParseSize(absl::GetFlag(FLAGS_max_layer_bytes), "--max-layer-bytes"));
  import_limits.max_layer_entries = absl::GetFlag(FLAGS_max_layer_entries);
  ASSIGN_OR_RETURN(import_limits.max_import_bytes,
                   ParseSize(absl::GetFlag(FLAGS_max_import_bytes), "--max-import-bytes"));
  RETURN_IF_ERROR(images::ValidateLimits(import_limits));
  // Labels let a lost database be re-adopted from disk; the quarantine keeps what recovery
  // cannot account for (issue 8).
  node::Labels labels(root + "/labels");
  RETURN_IF_ERROR(labels.Init());
  node::Quarantine quarantine(root + "/quarantine", driver.get(), mounter.get(), &metrics);
  node::LayerStore layers(metadata.get(), driver.get(), mounter.get(), root + "/tmp", import_limits,
                          node::StoreFiles{&labels, &quarantine});
  node::VolumeManager volumes(
      metadata.get(), &layers, driver.get(), mounter.get(), &metrics,
      node::VolumeManagerOptions{root, root + "/volumes", root + "/tmp",
                                 absl::GetFlag(FLAGS_flatten_depth), overprovision_ratio});
  node::VolumeLocks locks;

  csi::PluginContext context;
  context.driver_name = absl::GetFlag(FLAGS_driver_name);
  context.node_id = node_id;
  context.volumes = &volumes;
  context.layers = &layers;
  context.driver = driver.get();
  context.locks = &locks;
  context.metrics = &metrics;

  std::unique_ptr<strata::metrics::MetricsServer> metrics_server;
  std::shared_ptr<ThinPoolCollector> pool_collector;
  std::shared_ptr<GaugeRefresher> refresher;
  if (std::string address = absl::GetFlag(FLAGS_metrics_address); !address.empty()) {
    strata::metrics::MetricsServerOptions metrics_options;
    metrics_options.address = address;
    metrics_options.num_threads = absl::GetFlag(FLAGS_metrics_threads);
    metrics_options.request_timeout_ms = absl::GetFlag(FLAGS_metrics_request_timeout_ms);
    RETURN_IF_ERROR(strata::metrics::ValidateMetricsServerOptions(metrics_options));
    absl::StatusOr<std::unique_ptr<strata::metrics::MetricsServer>> started =
        strata::metrics::StartMetricsServer(metrics_options);
    if (started.ok()) metrics_server = std::move(*started);
    // Metrics are for watching the service, not part of it: volumes keep working without.
    if (!started.ok()) {
      LogError("metrics are off: serving CSI without them",
               {{"address", address}, {"error", started.status().ToString()}});
    }
  }
  if (metrics_server != nullptr) {
    strata::metrics::MetricsServerOptions metrics_options;
    metrics_options.num_threads = absl::GetFlag(FLAGS_metrics_threads);
    metrics_options.request_timeout_ms = absl::GetFlag(FLAGS_metrics_request_timeout_ms);
    refresher = std::make_shared<GaugeRefresher>(&volumes);
    metrics_server->RegisterCollectable(refresher);
    metrics_server->RegisterCollectable(metrics.registry());
    if (auto* devmapper = dynamic_cast<drivers::DevmapperDriver*>(driver.get())) {
      pool_collector = std::make_shared<ThinPoolCollector>(devmapper);
      metrics_server->RegisterCollectable(pool_collector);
    }
    LogInfo("serving metrics",
            {{"address", metrics_server->address()},
             {"port", std::to_string(metrics_server->port())},
             {"threads", std::to_string(metrics_options.num_threads)},
             {"request_timeout_ms", std::to_string(metrics_options.request_timeout_ms)}});
  }

  csi::IdentityService identity(&context);
  csi::ControllerService controller(&context);
  csi::NodeService node_service(&context);
  csi::GroupControllerService group_controller(&context);
  // Views a killed `stratactl save` or `diff` left mounted would pin layers: clear them first.
  node::Exporter exporter(metadata.get(), &layers, driver.get(), mounter.get(), root + "/export");
  RETURN_IF_ERROR(exporter.Recover());
  csi::AdminService admin(&layers, &volumes, metadata.get(), &locks, &exporter, &context.gate);
  // Serve before recovering so that Probe can say "not ready" rather than nothing at all; every
  // call but Identity's answers UNAVAILABLE until recovery is done (csi/call_gate.h).
  ASSIGN_OR_RETURN(std::unique_ptr<csi::Server> server,
                   csi::Server::Start(absl::GetFlag(FLAGS_endpoint),
                                      {&identity, &controller, &node_service, &group_controller},
                                      admin_endpoint, {&admin}));
  absl::Status recovered = volumes.Recover(unknown_policy);
  if (!recovered.ok()) {
    server->Shutdown(std::chrono::milliseconds(0));
    return recovered;
  }
  context.gate.SetReady(true);
  LogInfo("ready");

  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  int received = 0;
  sigwait(&signals, &received);
  LogInfo("shutting down: no new calls, waiting for calls in flight",
          {{"signal", strsignal(received)}});
  // gRPC's own Shutdown(deadline) also waits for idle client connections (kubelet keeps one
  // open), so drain our calls (CSI and admin) ourselves and then close at once.
  if (!context.gate.Drain(std::chrono::seconds(absl::GetFlag(FLAGS_shutdown_grace_seconds)))) {
    LogWarning("calls still in flight at the end of the grace period; cancelling them",
               {{"in_flight", std::to_string(context.gate.in_flight())}});
  }
  server->Shutdown(std::chrono::milliseconds(0));
  LogInfo("stopped");
  return absl::OkStatus();
}

}  // namespace

constexpr char kUsageMessage[] =
    "strata-csi: the Strata CSI plugin (layered volumes for Kubernetes pods).\n"
    "Usage: strata-csi --endpoint unix:///var/lib/kubelet/plugins/strata.csi.dev/csi.sock "
    "--node-id NODE --root /var/lib/strata [FLAGS]";

// Flags defined in this file, not those of absl or gRPC.
bool IsOurFlag(absl::string_view filename) {
  return absl::StrContains(filename, "strata-csi/main.cc");
}

// The usage message and this program's flags, sorted, spelled with dashes as manifests do.
void PrintHelp(std::ostream& out) {
  out << kUsageMessage << "\n\nFlags (--name=value or --name value; dashes or underscores):\n";
  std::vector<absl::CommandLineFlag*> flags;
  for (const auto& [name, flag] : absl::GetAllFlags())
    if (IsOurFlag(flag->Filename())) flags.push_back(flag);
  std::sort(flags.begin(), flags.end(), [](auto* a, auto* b) { return a->Name() < b->Name(); });
  for (absl::CommandLineFlag* flag : flags) {
    std::string name(flag->Name());
    std::replace(name.begin(), name.end(), '_', '-');
    std::string default_value = flag->DefaultValue();
    out << "  --" << name << "  (default: " << (default_value.empty() ? "\"\"" : default_value)
        << ")\n      " << flag->Help() << "\n";
  }
  out << "  --help  this text\n  --version  print the version\n";
}

}  // namespace strata

int main(int argc, char** argv) {
  // Block the stop signals before any thread starts so only sigwait() in Run() receives them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  absl::FlagsUsageConfig usage;
  usage.version_string = [] { return std::string("strata-csi ") + strata::kVersion + "\n"; };
  usage.contains_help_flags = strata::IsOurFlag;
  usage.contains_helpshort_flags = strata::IsOurFlag;
  absl::SetFlagsUsageConfig(usage);
  absl::SetProgramUsageMessage(strata::kUsageMessage);
  // absl's --help exits 1 and its --helpfull lists absl's own flags: answer help ourselves.
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--") break;
    if (arg == "-h" || arg == "--help" || arg == "-help" || arg == "--helpfull" ||
        arg == "--helpshort") {
      strata::PrintHelp(std::cout);
      return 0;
    }
  }
  // Kubernetes manifests spell flags with dashes (--node-id); absl names them with
  // underscores. Accept both by rewriting the name part of each --flag.
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--", 2) != 0) continue;
    for (char* c = argv[i] + 2; *c != '\0' && *c != '='; ++c)
      if (*c == '-') *c = '_';
  }
  absl::ParseCommandLine(argc, argv);

  strata::LogLevel level;
  strata::LogFormat format;
  if (!strata::ParseLogLevel(absl::GetFlag(FLAGS_log_level), &level) ||
      !strata::ParseLogFormat(absl::GetFlag(FLAGS_log_format), &format)) {
    std::cerr << "strata-csi: --log-level must be debug|info|warning|error and --log-format "
                 "text|json\n";
    return 2;
  }
  strata::ConfigureLogging(level, format);
  absl::Status status = strata::Run();
  if (!status.ok()) {
    strata::LogError("strata-csi failed", {{"error", status.ToString()}});
    return 1;
  }
  return 0;
}
