#pragma once
// AdminService: Strata's own admin API (strata.admin.v1, proto/strata_admin.proto), served by
// strata-csi on a second unix socket (0600) and used by stratactl. It lets an operator import
// images, look at layers, images and volumes, and collect garbage on one node.
//
// Like the CSI services it validates requests, calls the core and maps absl::Status to
// grpc::Status once (ToGrpcStatus); every call is logged as one line. Read-only calls take no
// locks: the metadata store is transactional and every listing is one consistent read per table.
// Thread-safe: the core objects are.

#include <string>

#include "absl/status/status.h"
#include "grpcpp/grpcpp.h"
#include "node/layer_store.h"
#include "node/metadata.h"
#include "node/volume_locks.h"
#include "node/volume_manager.h"
#include "strata_admin.grpc.pb.h"

namespace strata::csi {

class AdminService final : public strata::admin::v1::Admin::Service {
 public:
  // None may be null; all must outlive the service.
  AdminService(node::LayerStore* layers, node::VolumeManager* volumes, node::Metadata* metadata,
               node::VolumeLocks* locks);

  grpc::Status ImportImage(grpc::ServerContext* context,
                           const strata::admin::v1::ImportImageRequest* request,
                           strata::admin::v1::ImportImageResponse* response) override;
  grpc::Status ListImages(grpc::ServerContext* context,
                          const strata::admin::v1::ListImagesRequest* request,
                          strata::admin::v1::ListImagesResponse* response) override;
  grpc::Status ListLayers(grpc::ServerContext* context,
                          const strata::admin::v1::ListLayersRequest* request,
                          strata::admin::v1::ListLayersResponse* response) override;
  // used_bytes is measured (driver usage of the writable layer) only for staged volumes whose
  // lock is free at that moment; otherwise it is 0.
  grpc::Status ListVolumes(grpc::ServerContext* context,
                           const strata::admin::v1::ListVolumesRequest* request,
                           strata::admin::v1::ListVolumesResponse* response) override;
  // `id` is, in this order: a volume id, an image name, or a layer ChainID — in full
  // ("sha256:<64 hex>") or as a unique prefix of at least 12 hex digits, "sha256:" optional.
  grpc::Status Inspect(grpc::ServerContext* context,
                       const strata::admin::v1::InspectRequest* request,
                       strata::admin::v1::InspectResponse* response) override;
  grpc::Status RemoveImage(grpc::ServerContext* context,
                           const strata::admin::v1::RemoveImageRequest* request,
                           strata::admin::v1::RemoveImageResponse* response) override;
  grpc::Status GarbageCollect(grpc::ServerContext* context,
                              const strata::admin::v1::GarbageCollectRequest* request,
                              strata::admin::v1::GarbageCollectResponse* response) override;
  grpc::Status Version(grpc::ServerContext* context,
                       const strata::admin::v1::VersionRequest* request,
                       strata::admin::v1::VersionResponse* response) override;

 private:
  absl::Status DoListImages(strata::admin::v1::ListImagesResponse* response);
  absl::Status DoListLayers(strata::admin::v1::ListLayersResponse* response);
  absl::Status DoListVolumes(strata::admin::v1::ListVolumesResponse* response);
  absl::Status DoInspect(const std::string& id, std::string* json);

  node::LayerStore* layers_;
  node::VolumeManager* volumes_;
  node::Metadata* metadata_;
  node::VolumeLocks* locks_;
};

}  // namespace strata::csi
