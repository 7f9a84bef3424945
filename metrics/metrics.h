#pragma once
// Strata's Prometheus metrics: one registry built in main and injected everywhere it is needed.
// Names follow Prometheus conventions (base units, _seconds, _bytes, _total). docs/metrics.md
// lists every metric and what to alert on.

#include <memory>
#include <string>
#include <string_view>

#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace strata::metrics {

class Metrics {
 public:
  Metrics();

  const std::shared_ptr<prometheus::Registry>& registry() const { return registry_; }

  // strata_csi_operation_duration_seconds{method} and strata_csi_operations_total{method,code}.
  void ObserveCsiCall(std::string_view method, std::string_view grpc_code, double seconds);

  // strata_layers, strata_images, strata_volumes{state}, strata_layer_bytes.
  void SetLayers(int64_t count);
  void SetImages(int64_t count);
  void SetVolumes(std::string_view state, int64_t count);
  void SetLayerBytes(int64_t bytes);
  // strata_store_free_bytes: free space where the driver keeps content.
  void SetStoreFreeBytes(int64_t bytes);

  // strata_mount_operation_duration_seconds{operation}: each mount/unmount the plugin performs.
  void ObserveMount(std::string_view operation, double seconds);

  // strata_commit_duration_seconds{driver} and strata_committed_bytes_total.
  void ObserveCommit(const std::string& driver, double seconds, int64_t bytes);
  // strata_volume_chain_depth: depth of the chain under each new volume or commit.
  void ObserveChainDepth(int depth);
  // strata_snapshots{state}.
  void SetSnapshots(std::string_view state, int64_t count);
  // strata_shared_bytes: bytes that layer sharing saves (see LayerStore::SharedBytes).
  void SetSharedBytes(int64_t bytes);
  // strata_volumes_abnormal: volumes whose chain or writable layer is missing on disk (found at
  // start-up, by a stage, by stats, or by `stratactl check`).
  void SetVolumesAbnormal(int64_t count);

  // strata_quarantined_items and strata_quarantined_bytes: content recovery set aside in
  // <root>/quarantine instead of deleting it (issue 8); nonzero wants an admin's look.
  void SetQuarantined(int64_t items, int64_t bytes);

  // strata_build_info{version,driver} = 1.
  void SetBuildInfo(std::string_view version, std::string_view driver);

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Histogram>& csi_duration_;
  prometheus::Family<prometheus::Counter>& csi_calls_;
  prometheus::Family<prometheus::Gauge>& layers_;
  prometheus::Family<prometheus::Gauge>& images_;
  prometheus::Family<prometheus::Gauge>& volumes_;
  prometheus::Family<prometheus::Gauge>& layer_bytes_;
  prometheus::Family<prometheus::Gauge>& store_free_bytes_;
  prometheus::Family<prometheus::Histogram>& mount_duration_;
  prometheus::Family<prometheus::Gauge>& build_info_;
  prometheus::Family<prometheus::Histogram>& commit_duration_;
  prometheus::Family<prometheus::Counter>& committed_bytes_;
  prometheus::Family<prometheus::Histogram>& chain_depth_;
  prometheus::Family<prometheus::Gauge>& snapshots_;
  prometheus::Family<prometheus::Gauge>& shared_bytes_;
  prometheus::Family<prometheus::Gauge>& volumes_abnormal_;
  prometheus::Family<prometheus::Gauge>& quarantined_items_;
  prometheus::Family<prometheus::Gauge>& quarantined_bytes_;
};

}  // namespace strata::metrics
