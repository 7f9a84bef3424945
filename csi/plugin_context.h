#pragma once
// PluginContext: what every CSI service shares — the node's identity, the core, the per-volume
// locks and the metrics — plus Call(), which wraps each RPC so that every call is timed,
// counted by code and logged as one line (method, volume, duration, result).

#include <atomic>
#include <chrono>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "grpcpp/support/status.h"
#include "metrics/metrics.h"
#include "node/layer_store.h"
#include "node/volume_locks.h"
#include "node/volume_manager.h"

namespace strata::csi {

inline constexpr char kTopologyKey[] = "topology.strata.dev/node";

struct PluginContext {
  std::string driver_name;  // CSI plugin name, e.g. strata.csi.dev
  std::string node_id;
  node::VolumeManager* volumes = nullptr;
  node::LayerStore* layers = nullptr;
  drivers::Driver* driver = nullptr;
  node::VolumeLocks* locks = nullptr;
  metrics::Metrics* metrics = nullptr;  // may be null in tests
  std::atomic<bool> ready{false};       // Probe: the store is open and recovered
  // Shutdown: once draining, new calls get UNAVAILABLE (the CO retries against the restarted
  // plugin) while the calls in flight finish.
  std::atomic<bool> draining{false};
  std::atomic<int> in_flight{0};

  // Sets `draining` and waits up to `grace` for in-flight calls; true when none are left.
  bool Drain(std::chrono::milliseconds grace);

  // Runs `body` for CSI method `method` about `volume` ("" when none), logs and measures it, and
  // returns its result as a grpc::Status.
  grpc::Status Call(const char* method, const std::string& volume,
                    const std::function<absl::Status()>& body);
};

}  // namespace strata::csi
