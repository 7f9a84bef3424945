#include "metrics/metrics.h"

namespace strata::metrics {
namespace {

// CSI calls range from ~50 µs (Probe) to seconds (an import-backed create, a large commit).
const prometheus::Histogram::BucketBoundaries kCallBuckets = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1,    0.25,    0.5,    1,     2.5,    5,     10,   30,    60};
// Mounts take ~0.2 ms with a few lowers and ~5 ms at 500.
const prometheus::Histogram::BucketBoundaries kMountBuckets = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1};

}  // namespace

Metrics::Metrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      csi_duration_(prometheus::BuildHistogram()
                        .Name("strata_csi_operation_duration_seconds")
                        .Help("Time to answer a CSI call, by method.")
                        .Register(*registry_)),
      csi_calls_(prometheus::BuildCounter()
                     .Name("strata_csi_operations_total")
                     .Help("CSI calls answered, by method and gRPC status code.")
                     .Register(*registry_)),
      layers_(prometheus::BuildGauge()
                  .Name("strata_layers")
                  .Help("Read-only layers in the node's store.")
                  .Register(*registry_)),
      images_(prometheus::BuildGauge()
                  .Name("strata_images")
                  .Help("Image references in the node's store.")
                  .Register(*registry_)),
      volumes_(prometheus::BuildGauge()
                   .Name("strata_volumes")
                   .Help("Volumes on this node, by state.")
                   .Register(*registry_)),
      layer_bytes_(prometheus::BuildGauge()
                       .Name("strata_layer_bytes")
                       .Help("Bytes held by read-only layers, each shared layer counted once.")
                       .Register(*registry_)),
      store_free_bytes_(prometheus::BuildGauge()
                            .Name("strata_store_free_bytes")
                            .Help("Free bytes where the driver keeps content.")
                            .Register(*registry_)),
      mount_duration_(prometheus::BuildHistogram()
                          .Name("strata_mount_operation_duration_seconds")
                          .Help("Time of each mount or unmount the plugin performs.")
                          .Register(*registry_)),
      build_info_(prometheus::BuildGauge()
                      .Name("strata_build_info")
                      .Help("Always 1; labels carry the version and the storage driver.")
                      .Register(*registry_)),
      commit_duration_(prometheus::BuildHistogram()
                           .Name("strata_commit_duration_seconds")
                           .Help("Time to commit a volume's writable layer into a layer.")
                           .Register(*registry_)),
      committed_bytes_(prometheus::BuildCounter()
                           .Name("strata_committed_bytes_total")
                           .Help("Bytes written into committed layers.")
                           .Register(*registry_)),
      chain_depth_(prometheus::BuildHistogram()
                       .Name("strata_volume_chain_depth")
                       .Help("Layers under each new volume or commit.")
                       .Register(*registry_)),
      snapshots_(prometheus::BuildGauge()
                     .Name("strata_snapshots")
                     .Help("CSI snapshots on this node, by state.")
                     .Register(*registry_)),
      shared_bytes_(prometheus::BuildGauge()
                        .Name("strata_shared_bytes")
                        .Help("Bytes saved by layers shared between images, volumes and "
                              "snapshots.")
                        .Register(*registry_)),
      volumes_abnormal_(prometheus::BuildGauge()
                            .Name("strata_volumes_abnormal")
                            .Help("Volumes whose read-only chain or writable layer is missing "
                                  "on disk (reported abnormal through VolumeCondition).")
                            .Register(*registry_)),
      quarantined_items_(prometheus::BuildGauge()
                             .Name("strata_quarantined_items")
                             .Help("Items of store content recovery moved to quarantine "
                                   "instead of deleting them.")
                             .Register(*registry_)),
      quarantined_bytes_(prometheus::BuildGauge()
                             .Name("strata_quarantined_bytes")
                             .Help("Bytes held by quarantined store content.")
                             .Register(*registry_)) {
  volumes_abnormal_.Add({}).Set(0);
}

void Metrics::ObserveCsiCall(std::string_view method, std::string_view grpc_code, double seconds) {
  csi_duration_.Add({{"method", std::string(method)}}, kCallBuckets).Observe(seconds);
  csi_calls_.Add({{"method", std::string(method)}, {"code", std::string(grpc_code)}}).Increment();
}

void Metrics::SetLayers(int64_t count) { layers_.Add({}).Set(static_cast<double>(count)); }
void Metrics::SetImages(int64_t count) { images_.Add({}).Set(static_cast<double>(count)); }
void Metrics::SetVolumes(std::string_view state, int64_t count) {
  volumes_.Add({{"state", std::string(state)}}).Set(static_cast<double>(count));
}
void Metrics::SetLayerBytes(int64_t bytes) { layer_bytes_.Add({}).Set(static_cast<double>(bytes)); }
void Metrics::SetStoreFreeBytes(int64_t bytes) {
  store_free_bytes_.Add({}).Set(static_cast<double>(bytes));
}
void Metrics::ObserveMount(std::string_view operation, double seconds) {
  mount_duration_.Add({{"operation", std::string(operation)}}, kMountBuckets).Observe(seconds);
}
void Metrics::ObserveCommit(const std::string& driver, double seconds, int64_t bytes) {
  static const prometheus::Histogram::BucketBoundaries kCommitBuckets = {
      0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120};
  commit_duration_.Add({{"driver", driver}}, kCommitBuckets).Observe(seconds);
  committed_bytes_.Add({}).Increment(static_cast<double>(bytes));
}
void Metrics::ObserveChainDepth(int depth) {
  static const prometheus::Histogram::BucketBoundaries kDepthBuckets = {1,  2,  4,   8,   16,
                                                                        32, 64, 128, 256, 500};
  chain_depth_.Add({}, kDepthBuckets).Observe(depth);
}
void Metrics::SetSnapshots(std::string_view state, int64_t count) {
  snapshots_.Add({{"state", std::string(state)}}).Set(static_cast<double>(count));
}
void Metrics::SetSharedBytes(int64_t bytes) {
  shared_bytes_.Add({}).Set(static_cast<double>(bytes));
}
void Metrics::SetVolumesAbnormal(int64_t count) {
  volumes_abnormal_.Add({}).Set(static_cast<double>(count));
}

void Metrics::SetQuarantined(int64_t items, int64_t bytes) {
  quarantined_items_.Add({}).Set(static_cast<double>(items));
  quarantined_bytes_.Add({}).Set(static_cast<double>(bytes));
}
void Metrics::SetBuildInfo(std::string_view version, std::string_view driver) {
  build_info_.Add({{"version", std::string(version)}, {"driver", std::string(driver)}}).Set(1);
}

}  // namespace strata::metrics
