#include "tests/e2e/plugin_process.h"

#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <thread>

namespace strata::e2e {
namespace {

// True when something accepts connections on the unix socket at `path`.
bool Listening(const std::string& path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
  close(fd);
  return ok;
}

// How long a start may take before a test calls it failed: an upper bound, not an expectation.
constexpr std::chrono::seconds kStartBound(90);

}  // namespace

std::unique_ptr<grpc::ClientContext> CallContext(int seconds) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
  return context;
}

PluginProcess::PluginProcess(std::string binary, std::string dir, std::string driver,
                             std::string root, std::vector<std::string> extra_args)
    : binary_(std::move(binary)),
      dir_(std::move(dir)),
      driver_(std::move(driver)),
      root_(root.empty() ? dir_ + "/root" : std::move(root)),
      extra_args_(std::move(extra_args)) {}

// argv for the plugin (the strings own the memory `Exec` points into).
static void Exec(const std::string& binary, std::vector<std::string> args) {
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  execv(binary.c_str(), argv.data());
  _exit(127);
}

PluginProcess::~PluginProcess() {
  if (pid_ > 0) Kill();
}

int PluginProcess::RunExpectingExit(int timeout_ms) {
  pid_t child = fork();
  if (child == 0) {
    FILE* out = freopen((dir_ + "/plugin-second.log").c_str(), "a", stderr);
    (void)out;
    std::vector<std::string> args = {binary_, "--endpoint=unix://" + csi_socket(),
                                     "--root=" + root(), "--driver=" + driver_,
                                     "--metrics-address="};
    args.insert(args.end(), extra_args_.begin(), extra_args_.end());
    Exec(binary_, std::move(args));
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (waitpid(child, &status, WNOHANG) == child)
      return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  return -1;
}

bool PluginProcess::Start(const std::map<std::string, std::string>& env, std::string* error,
                          bool wait_ready) {
  std::string log = dir_ + "/plugin.log";
  pid_ = fork();
  if (pid_ == 0) {
    for (const auto& [key, value] : env) setenv(key.c_str(), value.c_str(), 1);
    FILE* out = freopen(log.c_str(), "a", stderr);
    (void)out;
    std::vector<std::string> args = {binary_,
                                     "--endpoint=unix://" + csi_socket(),
                                     "--root=" + root(),
                                     "--driver=" + driver_,
                                     "--node-id=e2e-node",
                                     "--metrics-address=",
                                     "--shutdown-grace-seconds=5"};
    args.insert(args.end(), extra_args_.begin(), extra_args_.end());
    Exec(binary_, std::move(args));
  }
  // Connect only once the socket exists: a first attempt that fails puts the channel into
  // seconds of reconnect backoff.
  // The bound is generous: under QEMU's TCG (the dm-vm guest) on a slow CI machine a devmapper
  // plugin's start-up takes many times what it takes here; success returns as soon as it listens.
  const auto socket_deadline = std::chrono::steady_clock::now() + kStartBound;
  while (!Listening(csi_socket()) && std::chrono::steady_clock::now() < socket_deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  // The plugin restarts often in these tests; reconnect quickly instead of gRPC's 1 s+ backoff.
  grpc::ChannelArguments arguments;
  arguments.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 20);
  arguments.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 20);
  arguments.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 100);
  auto channel = grpc::CreateCustomChannel("unix://" + csi_socket(),
                                           grpc::InsecureChannelCredentials(), arguments);
  auto admin_channel = grpc::CreateCustomChannel("unix://" + admin_socket(),
                                                 grpc::InsecureChannelCredentials(), arguments);
  identity_ = ::csi::v1::Identity::NewStub(channel);
  controller_ = ::csi::v1::Controller::NewStub(channel);
  node_ = ::csi::v1::Node::NewStub(channel);
  group_controller_ = ::csi::v1::GroupController::NewStub(channel);
  admin_ = strata::admin::v1::Admin::NewStub(admin_channel);
  if (!wait_ready) return true;
  return WaitReady(error);
}

bool PluginProcess::WaitReady(std::string* error) {
  std::string log = dir_ + "/plugin.log";
  const auto deadline = std::chrono::steady_clock::now() + kStartBound;
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      if (error) *error = "strata-csi exited at start; see " + log;
      return false;
    }
    ::csi::v1::ProbeResponse probe;
    auto context = CallContext(1);
    if (identity_->Probe(context.get(), {}, &probe).ok() && probe.ready().value()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (error)
    *error = "strata-csi did not become ready in " + std::to_string(kStartBound.count()) +
             " s; see " + log;
  return false;
}

void PluginProcess::Kill() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

int PluginProcess::Stop() {
  if (pid_ <= 0) return -1;
  kill(pid_, SIGTERM);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

bool PluginProcess::WaitForDeath(int timeout_ms) {
  if (pid_ <= 0) return true;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    if (waitpid(pid_, nullptr, WNOHANG) == pid_) {
      pid_ = -1;
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

}  // namespace strata::e2e
