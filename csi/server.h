#pragma once
// Server: serves the CSI services on one unix socket (mode 0660) and the admin service on a
// second (mode 0600). A socket file left by a dead plugin is replaced; one something still
// listens on is not.

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "grpcpp/server.h"

namespace strata::csi {

// "unix:///abs/path" or "unix:/abs/path" → "/abs/path"; anything else is InvalidArgument.
absl::StatusOr<std::string> UnixSocketPath(const std::string& endpoint);

// Makes `path` free to bind: removes a stale socket nobody listens on; FailedPrecondition when a
// live process listens there or the path is something other than a socket.
absl::Status ClaimSocketPath(const std::string& path);

class Server {
 public:
  // Binds and starts serving. `services` are registered on the CSI socket, `admin_services` on
  // the admin socket.
  static absl::StatusOr<std::unique_ptr<Server>> Start(
      const std::string& csi_endpoint, const std::vector<grpc::Service*>& services,
      const std::string& admin_endpoint, const std::vector<grpc::Service*>& admin_services);

  // Stops accepting calls, lets in-flight calls finish for up to `grace`, then cancels the rest.
  void Shutdown(std::chrono::milliseconds grace);

  ~Server();

 private:
  Server() = default;
  std::unique_ptr<grpc::Server> csi_;
  std::unique_ptr<grpc::Server> admin_;
  std::vector<std::string> socket_paths_;
};

}  // namespace strata::csi
