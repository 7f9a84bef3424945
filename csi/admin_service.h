#pragma once
// AdminService: Strata's own admin API (strata.admin.v1, proto/strata_admin.proto), served by
// strata-csi on a second unix socket (0600) and used by stratactl. It lets an operator import
// images, look at layers, images and volumes, collect garbage, and work with a volume's history
// like Docker's (commit, rollback, snapshots, history, diff, save) on one node.
//
// Like the CSI services it validates requests, calls the core and maps absl::Status to
// grpc::Status once (ToGrpcStatus); every call is logged as one line. Read-only calls take no
// locks: the metadata store is transactional and every listing is one consistent read per table.
// Calls that read or change one volume (Commit, Rollback, Diff of a volume) hold its lock
// (VolumeLocks::TryAcquire): a volume busy with a CSI call gets ABORTED. Thread-safe: the core
// objects are.

#include <string>

#include "absl/status/status.h"
#include "csi/call_gate.h"
#include "grpcpp/grpcpp.h"
#include "node/exporter.h"
#include "node/layer_store.h"
#include "node/metadata.h"
#include "node/volume_locks.h"
#include "node/volume_manager.h"
#include "strata_admin.grpc.pb.h"

namespace strata::csi {

class AdminService final : public strata::admin::v1::Admin::Service {
 public:
  // None but `exporter` and `gate` may be null; all must outlive the service. Without an
  // exporter, History, Diff and Save answer UNIMPLEMENTED. Without a gate every call is served
  // (tests); strata-csi passes the CSI services' gate.
  AdminService(node::LayerStore* layers, node::VolumeManager* volumes, node::Metadata* metadata,
               node::VolumeLocks* locks, node::Exporter* exporter = nullptr,
               CallGate* gate = nullptr);

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

  // `tag` is stored as an image naming the commit; the volume's image config comes along.
  grpc::Status Commit(grpc::ServerContext* context, const strata::admin::v1::CommitRequest* request,
                      strata::admin::v1::CommitResponse* response) override;
  grpc::Status Rollback(grpc::ServerContext* context,
                        const strata::admin::v1::RollbackRequest* request,
                        strata::admin::v1::RollbackResponse* response) override;
  grpc::Status ListSnapshots(grpc::ServerContext* context,
                             const strata::admin::v1::ListSnapshotsRequest* request,
                             strata::admin::v1::ListSnapshotsResponse* response) override;
  grpc::Status History(grpc::ServerContext* context,
                       const strata::admin::v1::HistoryRequest* request,
                       strata::admin::v1::HistoryResponse* response) override;
  grpc::Status Diff(grpc::ServerContext* context, const strata::admin::v1::DiffRequest* request,
                    strata::admin::v1::DiffResponse* response) override;
  grpc::Status Save(grpc::ServerContext* context, const strata::admin::v1::SaveRequest* request,
                    strata::admin::v1::SaveResponse* response) override;

  // Check and backup (issue 8)
  // The work is node::VolumeManager::Check; repairs skip volumes busy with a call.
  grpc::Status Check(grpc::ServerContext* context, const strata::admin::v1::CheckRequest* request,
                     strata::admin::v1::CheckResponse* response) override;
  // Metadata::Backup to a path outside the store that does not exist yet.
  grpc::Status Backup(grpc::ServerContext* context, const strata::admin::v1::BackupRequest* request,
                      strata::admin::v1::BackupResponse* response) override;

  // Quarantine (issue 8). Restore makes a new volume (VolumeManager::RestoreQuarantined);
  // purge deletes one named entry, the only way quarantined content is ever deleted.
  grpc::Status QuarantineList(grpc::ServerContext* context,
                              const strata::admin::v1::QuarantineListRequest* request,
                              strata::admin::v1::QuarantineListResponse* response) override;
  grpc::Status QuarantineRestore(grpc::ServerContext* context,
                                 const strata::admin::v1::QuarantineRestoreRequest* request,
                                 strata::admin::v1::QuarantineRestoreResponse* response) override;
  grpc::Status QuarantinePurge(grpc::ServerContext* context,
                               const strata::admin::v1::QuarantinePurgeRequest* request,
                               strata::admin::v1::QuarantinePurgeResponse* response) override;

 private:
  absl::Status DoListImages(strata::admin::v1::ListImagesResponse* response);
  absl::Status DoListLayers(strata::admin::v1::ListLayersResponse* response);
  absl::Status DoListVolumes(strata::admin::v1::ListVolumesResponse* response);
  absl::Status DoInspect(const std::string& id, std::string* json);
  absl::Status DoCommit(const strata::admin::v1::CommitRequest& request,
                        strata::admin::v1::CommitResponse* response);
  absl::Status DoRollback(const strata::admin::v1::RollbackRequest& request,
                          strata::admin::v1::RollbackResponse* response);
  absl::Status DoDiff(const strata::admin::v1::DiffRequest& request,
                      strata::admin::v1::DiffResponse* response);
  absl::Status DoSave(const strata::admin::v1::SaveRequest& request,
                      strata::admin::v1::SaveResponse* response);
  // Check and backup (issue 8)
  absl::Status DoBackup(const strata::admin::v1::BackupRequest& request,
                        strata::admin::v1::BackupResponse* response);

  node::LayerStore* layers_;
  node::VolumeManager* volumes_;
  node::Metadata* metadata_;
  node::VolumeLocks* locks_;
  node::Exporter* exporter_;
  CallGate* gate_;
};

}  // namespace strata::csi
