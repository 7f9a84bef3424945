#pragma once
// PluginProcess: runs the real strata-csi binary for end-to-end tests and talks to it over its
// unix sockets with gRPC stubs, as kubelet, the provisioner and stratactl do.

#include <sys/types.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "csi.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "strata_admin.grpc.pb.h"

namespace strata::e2e {

class PluginProcess {
 public:
  // `dir` holds the CSI socket and the logs; the store (--root) is `root`, or dir/root when
  // `root` is empty (btrfs needs it on a btrfs filesystem). `driver`: overlay, vfs, btrfs or
  // devmapper. `extra_args` go to strata-csi as given (e.g. --dm-thinpool=NAME).
  PluginProcess(std::string binary, std::string dir, std::string driver, std::string root = "",
                std::vector<std::string> extra_args = {});
  ~PluginProcess();

  // Starts the plugin (with extra environment, e.g. STRATA_CRASH_POINT) and waits until Probe
  // says ready. Returns false with a message when it does not come up.
  // With `wait_ready` false it returns as soon as the socket accepts (calls may then meet
  // start-up recovery); WaitReady() waits for Probe afterwards.
  bool Start(const std::map<std::string, std::string>& env = {}, std::string* error = nullptr,
             bool wait_ready = true);
  bool WaitReady(std::string* error = nullptr);
  // Runs the plugin expecting it to give up at start; returns its exit code (-1: still running
  // after `timeout_ms`, then killed).
  int RunExpectingExit(int timeout_ms);
  // kill -9, then reap.
  void Kill();
  // SIGTERM, then wait; returns the exit status (or -1).
  int Stop();
  // Waits for the process to die by itself (a crash point); true when it did.
  bool WaitForDeath(int timeout_ms);
  bool running() const { return pid_ > 0; }

  std::string csi_socket() const { return dir_ + "/csi.sock"; }
  std::string admin_socket() const { return root() + "/admin.sock"; }
  const std::string& root() const { return root_; }

  ::csi::v1::Identity::Stub& identity() { return *identity_; }
  ::csi::v1::Controller::Stub& controller() { return *controller_; }
  ::csi::v1::Node::Stub& node() { return *node_; }
  ::csi::v1::GroupController::Stub& group_controller() { return *group_controller_; }
  strata::admin::v1::Admin::Stub& admin() { return *admin_; }

 private:
  std::string binary_;
  std::string dir_;
  std::string driver_;
  std::string root_;
  std::vector<std::string> extra_args_;
  pid_t pid_ = -1;
  std::unique_ptr<::csi::v1::Identity::Stub> identity_;
  std::unique_ptr<::csi::v1::Controller::Stub> controller_;
  std::unique_ptr<::csi::v1::Node::Stub> node_;
  std::unique_ptr<::csi::v1::GroupController::Stub> group_controller_;
  std::unique_ptr<strata::admin::v1::Admin::Stub> admin_;
};

// A short deadline for one call, so a dead plugin fails the call instead of hanging the test.
std::unique_ptr<grpc::ClientContext> CallContext(int seconds = 30);

}  // namespace strata::e2e
