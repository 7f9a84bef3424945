// csi-walk: makes one CSI call the way kubelet or the external-provisioner would, and prints
// what came back. The README's demo strings these together into a volume's whole life; admins
// can use it to poke a node plugin by hand.
//
//   csi-walk [--endpoint unix:///csi/csi.sock] COMMAND ARGS...

#include <cstdlib>
#include <iostream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/size.h"
#include "csi.grpc.pb.h"
#include "grpcpp/grpcpp.h"

namespace {

using ::csi::v1::VolumeCapability;

constexpr char kUsage[] = R"(usage: csi-walk [--endpoint unix:///csi/csi.sock] COMMAND ARGS...
commands (each is one CSI call):
  info                                   GetPluginInfo + Probe + NodeGetInfo
  create NAME [--image REF | --snapshot ID | --clone VOLUME] [--capacity QUANTITY]
                                         CreateVolume; prints the volume id. QUANTITY
                                         as in a PVC: 1Gi, 512Mi, 10G, or bytes
  snapshot VOLUME NAME                   CreateSnapshot; prints the snapshot id
  snapshots [--volume VOLUME]            ListSnapshots
  delete-snapshot SNAPSHOT               DeleteSnapshot
  stage VOLUME STAGING_PATH              NodeStageVolume
  publish VOLUME STAGING_PATH TARGET [--readonly]
                                         NodePublishVolume
  stats VOLUME PATH                      NodeGetVolumeStats
  unpublish VOLUME TARGET                NodeUnpublishVolume
  unstage VOLUME STAGING_PATH            NodeUnstageVolume
  delete VOLUME                          DeleteVolume
  list                                   ListVolumes
The endpoint defaults to $CSI_ENDPOINT, then unix:///csi/csi.sock.
)";

VolumeCapability MountCapability() {
  VolumeCapability capability;
  capability.mutable_mount();
  capability.mutable_access_mode()->set_mode(VolumeCapability::AccessMode::SINGLE_NODE_WRITER);
  return capability;
}

int Fail(const std::string& call, const grpc::Status& status) {
  std::cerr << "csi-walk: " << call << ": "
            << absl::StatusCodeToString(static_cast<absl::StatusCode>(status.error_code())) << ": "
            << status.error_message() << "\n";
  return 1;
}

std::unique_ptr<grpc::ClientContext> Context() {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() + std::chrono::minutes(2));
  return context;
}

}  // namespace

int main(int argc, char** argv) {
  std::string endpoint = getenv("CSI_ENDPOINT") ? getenv("CSI_ENDPOINT") : "unix:///csi/csi.sock";
  std::vector<std::string> args;
  std::map<std::string, std::string> options;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::cout << kUsage;
      return 0;
    }
    // A misspelt flag must not be ignored: the call would go out without what it meant.
    static const std::set<std::string> kValueFlags = {"--endpoint", "--image",    "--snapshot",
                                                      "--clone",    "--capacity", "--volume"};
    if (arg == "--readonly") {
      options[arg] = "true";
    } else if (arg.rfind("-", 0) == 0 && arg.size() > 1) {
      std::string key = arg, value;
      size_t eq = arg.find('=');
      if (eq != std::string::npos) key = arg.substr(0, eq);
      if (!kValueFlags.count(key)) {
        std::cerr << "csi-walk: unknown flag " << key << "\n" << kUsage;
        return 2;
      }
      if (eq != std::string::npos) {
        value = arg.substr(eq + 1);
      } else if (i + 1 < argc) {
        value = argv[++i];
      } else {
        std::cerr << "csi-walk: " << key << " needs a value\n";
        return 2;
      }
      if (key == "--endpoint")
        endpoint = value;
      else
        options[key] = value;
    } else {
      args.push_back(arg);
    }
  }
  if (args.empty()) {
    std::cerr << kUsage;
    return 2;
  }
  auto channel = grpc::CreateChannel(endpoint, grpc::InsecureChannelCredentials());
  auto identity = ::csi::v1::Identity::NewStub(channel);
  auto controller = ::csi::v1::Controller::NewStub(channel);
  auto node = ::csi::v1::Node::NewStub(channel);
  const std::string& command = args[0];
  auto need = [&](size_t count) {
    if (args.size() == count + 1) return true;
    std::cerr << "csi-walk: " << command << " takes " << count << " argument(s)\n" << kUsage;
    return false;
  };
  grpc::Status status;

  if (command == "info" && need(0)) {
    ::csi::v1::GetPluginInfoResponse info;
    if (!(status = identity->GetPluginInfo(Context().get(), {}, &info)).ok())
      return Fail("GetPluginInfo", status);
    ::csi::v1::ProbeResponse probe;
    if (!(status = identity->Probe(Context().get(), {}, &probe)).ok()) return Fail("Probe", status);
    ::csi::v1::NodeGetInfoResponse node_info;
    if (!(status = node->NodeGetInfo(Context().get(), {}, &node_info)).ok())
      return Fail("NodeGetInfo", status);
    std::cout << "plugin " << info.name() << " " << info.vendor_version() << ", ready "
              << (probe.ready().value() ? "yes" : "no") << ", node " << node_info.node_id() << "\n";
    return 0;
  }
  if (command == "create" && need(1)) {
    ::csi::v1::CreateVolumeRequest request;
    request.set_name(args[1]);
    if (options.count("--image")) (*request.mutable_parameters())["image"] = options["--image"];
    if (options.count("--snapshot")) {
      request.mutable_volume_content_source()->mutable_snapshot()->set_snapshot_id(
          options["--snapshot"]);
    }
    if (options.count("--clone")) {
      request.mutable_volume_content_source()->mutable_volume()->set_volume_id(options["--clone"]);
    }
    if (options.count("--capacity")) {
      absl::StatusOr<int64_t> bytes = strata::ParseQuantity(options["--capacity"], "--capacity");
      if (!bytes.ok()) {
        std::cerr << "csi-walk: " << bytes.status().message() << "\n";
        return 2;
      }
      request.mutable_capacity_range()->set_required_bytes(*bytes);
    }
    *request.add_volume_capabilities() = MountCapability();
    ::csi::v1::CreateVolumeResponse response;
    if (!(status = controller->CreateVolume(Context().get(), request, &response)).ok())
      return Fail("CreateVolume", status);
    std::cout << response.volume().volume_id() << "\n";
    return 0;
  }
  if (command == "snapshot" && need(2)) {
    ::csi::v1::CreateSnapshotRequest request;
    request.set_source_volume_id(args[1]);
    request.set_name(args[2]);
    ::csi::v1::CreateSnapshotResponse response;
    if (!(status = controller->CreateSnapshot(Context().get(), request, &response)).ok())
      return Fail("CreateSnapshot", status);
    std::cout << response.snapshot().snapshot_id() << "\n";
    return 0;
  }
  if (command == "snapshots" && need(0)) {
    ::csi::v1::ListSnapshotsRequest request;
    if (options.count("--volume")) request.set_source_volume_id(options["--volume"]);
    ::csi::v1::ListSnapshotsResponse response;
    if (!(status = controller->ListSnapshots(Context().get(), request, &response)).ok())
      return Fail("ListSnapshots", status);
    for (const auto& entry : response.entries()) {
      const auto& snapshot = entry.snapshot();
      std::cout << snapshot.snapshot_id() << " source " << snapshot.source_volume_id() << " "
                << snapshot.size_bytes() << " bytes, ready "
                << (snapshot.ready_to_use() ? "yes" : "no") << "\n";
    }
    return 0;
  }
  if (command == "delete-snapshot" && need(1)) {
    ::csi::v1::DeleteSnapshotRequest request;
    request.set_snapshot_id(args[1]);
    ::csi::v1::DeleteSnapshotResponse response;
    if (!(status = controller->DeleteSnapshot(Context().get(), request, &response)).ok())
      return Fail("DeleteSnapshot", status);
    return 0;
  }
  if (command == "stage" && need(2)) {
    ::csi::v1::NodeStageVolumeRequest request;
    request.set_volume_id(args[1]);
    request.set_staging_target_path(args[2]);
    *request.mutable_volume_capability() = MountCapability();
    ::csi::v1::NodeStageVolumeResponse response;
    if (!(status = node->NodeStageVolume(Context().get(), request, &response)).ok())
      return Fail("NodeStageVolume", status);
    return 0;
  }
  if (command == "publish" && need(3)) {
    ::csi::v1::NodePublishVolumeRequest request;
    request.set_volume_id(args[1]);
    request.set_staging_target_path(args[2]);
    request.set_target_path(args[3]);
    request.set_readonly(options.count("--readonly") > 0);
    *request.mutable_volume_capability() = MountCapability();
    ::csi::v1::NodePublishVolumeResponse response;
    if (!(status = node->NodePublishVolume(Context().get(), request, &response)).ok())
      return Fail("NodePublishVolume", status);
    return 0;
  }
  if (command == "stats" && need(2)) {
    ::csi::v1::NodeGetVolumeStatsRequest request;
    request.set_volume_id(args[1]);
    request.set_volume_path(args[2]);
    ::csi::v1::NodeGetVolumeStatsResponse response;
    if (!(status = node->NodeGetVolumeStats(Context().get(), request, &response)).ok())
      return Fail("NodeGetVolumeStats", status);
    for (const auto& usage : response.usage()) {
      std::cout << (usage.unit() == ::csi::v1::VolumeUsage::BYTES ? "bytes " : "inodes") << " used "
                << usage.used() << " available " << usage.available() << " total " << usage.total()
                << "\n";
    }
    std::cout << "condition " << (response.volume_condition().abnormal() ? "ABNORMAL" : "normal")
              << ": " << response.volume_condition().message() << "\n";
    return 0;
  }
  if (command == "unpublish" && need(2)) {
    ::csi::v1::NodeUnpublishVolumeRequest request;
    request.set_volume_id(args[1]);
    request.set_target_path(args[2]);
    ::csi::v1::NodeUnpublishVolumeResponse response;
    if (!(status = node->NodeUnpublishVolume(Context().get(), request, &response)).ok())
      return Fail("NodeUnpublishVolume", status);
    return 0;
  }
  if (command == "unstage" && need(2)) {
    ::csi::v1::NodeUnstageVolumeRequest request;
    request.set_volume_id(args[1]);
    request.set_staging_target_path(args[2]);
    ::csi::v1::NodeUnstageVolumeResponse response;
    if (!(status = node->NodeUnstageVolume(Context().get(), request, &response)).ok())
      return Fail("NodeUnstageVolume", status);
    return 0;
  }
  if (command == "delete" && need(1)) {
    ::csi::v1::DeleteVolumeRequest request;
    request.set_volume_id(args[1]);
    ::csi::v1::DeleteVolumeResponse response;
    if (!(status = controller->DeleteVolume(Context().get(), request, &response)).ok())
      return Fail("DeleteVolume", status);
    return 0;
  }
  if (command == "list" && need(0)) {
    ::csi::v1::ListVolumesResponse response;
    if (!(status = controller->ListVolumes(Context().get(), {}, &response)).ok())
      return Fail("ListVolumes", status);
    for (const auto& entry : response.entries()) {
      std::cout << entry.volume().volume_id() << " " << entry.volume().capacity_bytes();
      auto image = entry.volume().volume_context().find("image");
      if (image != entry.volume().volume_context().end()) std::cout << " " << image->second;
      std::cout << "\n";
    }
    return 0;
  }
  if (args.size() >= 1 &&
      std::string("info create snapshot snapshots delete-snapshot stage publish stats unpublish "
                  "unstage delete list")
              .find(command) == std::string::npos) {
    std::cerr << "csi-walk: unknown command " << command << "\n" << kUsage;
  }
  return 2;
}
