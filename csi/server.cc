#include "csi/server.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/errno_status.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "grpcpp/server_builder.h"
#include "node/paths.h"

namespace strata::csi {

absl::StatusOr<std::string> UnixSocketPath(const std::string& endpoint) {
  std::string path;
  if (absl::StartsWith(endpoint, "unix://"))
    path = endpoint.substr(7);
  else if (absl::StartsWith(endpoint, "unix:"))
    path = endpoint.substr(5);
  if (path.empty() || path[0] != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("endpoint ", endpoint, " must look like unix:///absolute/path.sock"));
  }
  if (path.size() >= sizeof(sockaddr_un{}.sun_path)) {
    return absl::InvalidArgumentError(
        absl::StrCat("socket path ", path, " is longer than a unix socket address allows"));
  }
  return path;
}

absl::Status ClaimSocketPath(const std::string& path) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return ErrnoStatus(errno, "stat", path);
  }
  if (!S_ISSOCK(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, " exists and is not a socket; refusing to replace it"));
  }
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return ErrnoStatus(errno, "socket");
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
  int rc = connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  int connect_errno = errno;
  close(fd);
  if (rc == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("another process is serving on ", path, "; is strata-csi already running?"));
  }
  if (connect_errno != ECONNREFUSED && connect_errno != ENOENT)
    return ErrnoStatus(connect_errno, "probe socket", path);
  LogInfo("removing stale socket", {{"path", path}});
  if (unlink(path.c_str()) != 0 && errno != ENOENT) return ErrnoStatus(errno, "unlink", path);
  return absl::OkStatus();
}

namespace {

absl::StatusOr<std::unique_ptr<grpc::Server>> Serve(const std::string& endpoint,
                                                    const std::vector<grpc::Service*>& services,
                                                    mode_t mode,
                                                    std::vector<std::string>* socket_paths) {
  ASSIGN_OR_RETURN(std::string path, UnixSocketPath(endpoint));
  std::string directory = path.substr(0, path.rfind('/'));
  if (!directory.empty()) RETURN_IF_ERROR(node::MakeDirs(directory, 0755));
  RETURN_IF_ERROR(ClaimSocketPath(path));
  grpc::ServerBuilder builder;
  builder.AddListeningPort("unix://" + path, grpc::InsecureServerCredentials());
  for (grpc::Service* service : services) builder.RegisterService(service);
  // The socket is created with the process umask; make it private until chmod sets the mode.
  mode_t old_umask = umask(0177);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  umask(old_umask);
  if (server == nullptr) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", endpoint));
  }
  if (chmod(path.c_str(), mode) != 0) return ErrnoStatus(errno, "chmod", path);
  socket_paths->push_back(path);
  LogInfo("listening", {{"endpoint", endpoint}});
  return server;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Server>> Server::Start(
    const std::string& csi_endpoint, const std::vector<grpc::Service*>& services,
    const std::string& admin_endpoint, const std::vector<grpc::Service*>& admin_services) {
  std::unique_ptr<Server> server(new Server());
  ASSIGN_OR_RETURN(server->csi_, Serve(csi_endpoint, services, 0660, &server->socket_paths_));
  if (!admin_endpoint.empty()) {
    ASSIGN_OR_RETURN(server->admin_,
                     Serve(admin_endpoint, admin_services, 0600, &server->socket_paths_));
  }
  return server;
}

void Server::Shutdown(std::chrono::milliseconds grace) {
  auto deadline = std::chrono::system_clock::now() + grace;
  if (admin_) admin_->Shutdown(deadline);
  if (csi_) csi_->Shutdown(deadline);
  for (const std::string& path : socket_paths_) unlink(path.c_str());
  socket_paths_.clear();
}

Server::~Server() { Shutdown(std::chrono::milliseconds(0)); }

}  // namespace strata::csi
