#pragma once
// PluginContext: what every CSI service shares — the node's identity, the core, the per-volume
// locks and the metrics — plus Call(), which wraps each RPC so that every call is timed,
// counted by code and logged as one line (method, volume, duration, result).

#include <atomic>
#include <chrono>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "csi/call_gate.h"
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
  // Admits calls: none but Identity's before recovery is done, none once shutdown begins.
  // Shared with the admin service so SIGTERM waits for both kinds of call.
  CallGate gate;

  // Runs `body` for CSI method `method` about `volume` ("" when none), logs and measures it, and
  // returns its result as a grpc::Status. UNAVAILABLE until recovery is done.
  grpc::Status Call(const char* method, const std::string& volume,
                    const std::function<absl::Status()>& body) {
    return Run(method, volume, /*needs_ready=*/true, body);
  }
  // The same for Identity calls, which are answered while the store is still recovering.
  grpc::Status CallIdentity(const char* method, const std::function<absl::Status()>& body) {
    return Run(method, "", /*needs_ready=*/false, body);
  }

 private:
  grpc::Status Run(const char* method, const std::string& volume, bool needs_ready,
                   const std::function<absl::Status()>& body);
};

}  // namespace strata::csi
