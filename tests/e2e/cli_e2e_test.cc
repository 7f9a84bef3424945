// End-to-end tests of the command lines an admin meets first (issue 14, "Errors and CLI a
// Docker user knows"), with the real strata-csi, stratactl and csi-walk binaries: strata-csi as
// non-root refuses before touching the store, --help, a busy metrics port that leaves CSI
// serving, the bound port of --metrics-address 127.0.0.1:0, --driver auto's pick, stratactl's
// permission-denied / wrong-socket / scheme-less endpoints, save -o json, and csi-walk's
// quantities and misspelt flags. Needs root (it drops to nobody where a test says so).

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <regex>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/e2e/e2e_util.h"
#include "tests/e2e/plugin_process.h"

#ifndef STRATA_CSI_BINARY
#error "STRATA_CSI_BINARY must name the strata-csi binary"
#endif
#ifndef STRATACTL_BINARY
#error "STRATACTL_BINARY must name the stratactl binary"
#endif
#ifndef CSI_WALK_BINARY
#error "CSI_WALK_BINARY must name the csi-walk binary"
#endif

namespace strata::e2e {
namespace {

constexpr uid_t kNobody = 65534;

struct Result {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

// Runs `argv` (argv[0] the binary) in a forked child, as `uid` when it is not 0 (groups
// dropped, gid = uid), with stdout and stderr captured. Waits at most ~60 s.
Result RunAs(uid_t uid, const std::vector<std::string>& args, const std::string& cwd = "") {
  int pipe_fds[2];
  Result result;
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) return result;
  pid_t child = fork();
  if (child == 0) {
    dup2(pipe_fds[1], 1);
    dup2(pipe_fds[1], 2);
    if (!cwd.empty() && chdir(cwd.c_str()) != 0) _exit(126);
    if (uid != 0 && (setgroups(0, nullptr) != 0 || setgid(uid) != 0 || setuid(uid) != 0))
      _exit(125);
    std::vector<std::string> copy = args;
    std::vector<char*> argv;
    for (std::string& arg : copy) argv.push_back(arg.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(pipe_fds[1]);
  char buffer[4096];
  ssize_t n;
  while ((n = read(pipe_fds[0], buffer, sizeof(buffer))) > 0) result.output.append(buffer, n);
  close(pipe_fds[0]);
  int status = 0;
  waitpid(child, &status, 0);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

// A TCP listener on 127.0.0.1 that this test owns; its port.
int ListenOnLoopback(int* fd_out) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address = {};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 || listen(fd, 4) != 0) {
    close(fd);
    return -1;
  }
  socklen_t length = sizeof(address);
  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  *fd_out = fd;
  return ntohs(address.sin_port);
}

class CliE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (mounts; drops to nobody where asked)";
    char pattern[] = "/var/tmp/strata-cli-e2e-XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    dir_ = pattern;
    // nobody must reach the binaries and this folder (not the store inside it).
    chmod(dir_.c_str(), 0755);
  }
  void TearDown() override {
    plugin_.reset();
    if (!dir_.empty()) {
      UnmountAllUnder(dir_);
      std::string command = "rm -rf '" + dir_ + "'";
      (void)std::system(command.c_str());
    }
  }

  // Starts an overlay plugin on dir_/root with `extra` flags; fails the test if it does not
  // come up ready.
  void StartPlugin(std::vector<std::string> extra = {}, std::string driver = "overlay") {
    plugin_ =
        std::make_unique<PluginProcess>(STRATA_CSI_BINARY, dir_, driver, "", std::move(extra));
    std::string error;
    ASSERT_TRUE(plugin_->Start({}, &error)) << error << "\n" << Log();
  }
  std::string Log() { return Slurp(dir_ + "/plugin.log"); }

  Result Stratactl(std::vector<std::string> args, uid_t uid = 0, const std::string& cwd = "") {
    args.insert(args.begin(), STRATACTL_BINARY);
    return RunAs(uid, args, cwd);
  }

  std::string dir_;
  std::unique_ptr<PluginProcess> plugin_;
};

TEST_F(CliE2eTest, NonRootIsRefusedBeforeTheStoreIsTouched) {
  std::string root = dir_ + "/store";
  Result run = RunAs(kNobody, {STRATA_CSI_BINARY, "--endpoint=unix://" + dir_ + "/csi.sock",
                               "--root=" + root, "--metrics-address="});
  EXPECT_EQ(run.exit_code, 1) << run.output;
  EXPECT_NE(run.output.find("must run as root"), std::string::npos) << run.output;
  EXPECT_NE(run.output.find("uid 65534"), std::string::npos) << run.output;
  // One log line, and nothing made: no store, no socket.
  EXPECT_EQ(std::count(run.output.begin(), run.output.end(), '\n'), 1) << run.output;
  EXPECT_FALSE(Exists(root));
  EXPECT_FALSE(Exists(dir_ + "/csi.sock"));
}

TEST_F(CliE2eTest, HelpExitsZeroAndListsOnlyStrataFlags) {
  Result help = RunAs(0, {STRATA_CSI_BINARY, "--help"});
  EXPECT_EQ(help.exit_code, 0) << help.output;
  for (const char* flag : {"--endpoint", "--node-id", "--root", "--driver", "--metrics-address",
                           "--recover-unknown", "--max-layer-bytes"}) {
    EXPECT_NE(help.output.find(flag), std::string::npos) << flag << "\n" << help.output;
  }
  for (const char* internal : {"flagfile", "tryfromenv", "undefok", "absl", "fromenv"})
    EXPECT_EQ(help.output.find(internal), std::string::npos) << internal << "\n" << help.output;
  EXPECT_NE(help.output.find("unix:///run/strata/csi.sock"), std::string::npos) << help.output;
  Result stratactl = Stratactl({"--help"});
  EXPECT_EQ(stratactl.exit_code, 0);
  EXPECT_NE(stratactl.output.find("Usage: stratactl"), std::string::npos) << stratactl.output;
}

TEST_F(CliE2eTest, BusyMetricsPortLeavesCsiServing) {
  int listener = -1;
  int port = ListenOnLoopback(&listener);
  ASSERT_GT(port, 0);
  std::string address = "127.0.0.1:" + std::to_string(port);
  StartPlugin({"--metrics-address=" + address});
  close(listener);
  ::csi::v1::ProbeResponse probe;
  ASSERT_TRUE(plugin_->identity().Probe(CallContext().get(), {}, &probe).ok());
  EXPECT_TRUE(probe.ready().value());
  std::string log = Log();
  EXPECT_NE(log.find("metrics are off"), std::string::npos) << log;
  EXPECT_NE(log.find(address), std::string::npos) << log;
  EXPECT_NE(log.find("is in use"), std::string::npos) << log;
  EXPECT_EQ(log.find("null context"), std::string::npos) << log;
}

TEST_F(CliE2eTest, MetricsPortZeroLogsTheBoundPort) {
  StartPlugin({"--metrics-address=127.0.0.1:0"});
  std::string log = Log();
  std::smatch match;
  ASSERT_TRUE(std::regex_search(log, match, std::regex("serving metrics.*port[=\": ]+([0-9]+)")))
      << log;
  int port = std::stoi(match[1]);
  EXPECT_GT(port, 0);
  // And the port is the one listening.
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in to = {};
  to.sin_family = AF_INET;
  to.sin_port = htons(static_cast<uint16_t>(port));
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof(to)), 0) << strerror(errno);
  close(fd);
}

TEST_F(CliE2eTest, DriverAutoLogsItsPick) {
  StartPlugin({}, "auto");
  std::string log = Log();
  EXPECT_NE(log.find("driver auto picked"), std::string::npos) << log;
  // dir_ is under /var/tmp: not btrfs here, so overlay, and the log says why.
  EXPECT_NE(log.find("overlay"), std::string::npos) << log;
  EXPECT_NE(log.find("not on btrfs"), std::string::npos) << log;
}

TEST_F(CliE2eTest, StratactlNamesPermissionDeniedWrongSocketAndPathEndpoints) {
  StartPlugin();
  std::string admin = plugin_->admin_socket();
  // As nobody: the store folder is 0700, so connecting is refused for permission.
  Result denied = Stratactl({"--admin-endpoint", "unix://" + admin, "images"}, kNobody);
  EXPECT_EQ(denied.exit_code, 1) << denied.output;
  EXPECT_NE(denied.output.find("PERMISSION_DENIED"), std::string::npos) << denied.output;
  EXPECT_NE(denied.output.find("Permission denied"), std::string::npos) << denied.output;
  EXPECT_EQ(denied.output.find("does not exist"), std::string::npos) << denied.output;

  Result csi = Stratactl({"--admin-endpoint", "unix://" + plugin_->csi_socket(), "images"});
  EXPECT_EQ(csi.exit_code, 1) << csi.output;
  EXPECT_NE(csi.output.find("is the CSI socket"), std::string::npos) << csi.output;
  EXPECT_NE(csi.output.find("admin.sock"), std::string::npos) << csi.output;

  // A bare path, absolute or relative to the working directory, is a unix socket path.
  Result bare = Stratactl({"--admin-endpoint", admin, "-o", "json", "images"});
  EXPECT_EQ(bare.exit_code, 0) << bare.output;
  EXPECT_EQ(bare.output.find("DNS"), std::string::npos) << bare.output;
  Result relative = Stratactl({"--admin-endpoint", "root/admin.sock", "images"}, 0, dir_);
  EXPECT_EQ(relative.exit_code, 0) << relative.output;
  Result missing = Stratactl({"--admin-endpoint", dir_ + "/nothing.sock", "images"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.output.find("does not exist"), std::string::npos) << missing.output;
}

TEST_F(CliE2eTest, SaveRefusesAnOutputThatLooksLikeAFormat) {
  StartPlugin();
  for (const char* output : {"json", "table"}) {
    Result save = Stratactl(
        {"--admin-endpoint", plugin_->admin_socket(), "save", "x", "-o", output}, 0, dir_);
    EXPECT_EQ(save.exit_code, 2) << save.output;
    EXPECT_NE(save.output.find("./" + std::string(output)), std::string::npos) << save.output;
    EXPECT_FALSE(Exists(dir_ + "/" + output));
  }
}

TEST_F(CliE2eTest, ImportOfAFileThatIsNoTarIsInvalidArgument) {
  StartPlugin();
  Spit(dir_ + "/notes.txt", "hello, this is not an image\n");
  Result import =
      Stratactl({"--admin-endpoint", plugin_->admin_socket(), "import", "notes.txt"}, 0, dir_);
  EXPECT_EQ(import.exit_code, 1) << import.output;
  EXPECT_NE(import.output.find("INVALID_ARGUMENT"), std::string::npos) << import.output;
  EXPECT_NE(import.output.find("is not a tar archive"), std::string::npos) << import.output;
  // The plugin logs the caller's mistake at info, not as an error ("E" in klog text).
  std::string log = Log();
  size_t line = log.find("method=\"ImportImage\"");
  ASSERT_NE(line, std::string::npos) << log;
  size_t start = log.rfind('\n', line);
  EXPECT_EQ(log[start == std::string::npos ? 0 : start + 1], 'I') << log;
}

TEST_F(CliE2eTest, CsiWalkReadsQuantitiesAndRefusesMisspeltFlags) {
  StartPlugin();
  std::string endpoint = "--endpoint=unix://" + plugin_->csi_socket();
  Result created = RunAs(0, {CSI_WALK_BINARY, endpoint, "create", "pvc-q", "--capacity", "1Gi"});
  ASSERT_EQ(created.exit_code, 0) << created.output;
  Result listed = RunAs(0, {CSI_WALK_BINARY, endpoint, "list"});
  ASSERT_EQ(listed.exit_code, 0) << listed.output;
  EXPECT_NE(listed.output.find(" 1073741824"), std::string::npos) << listed.output;

  Result decimal = RunAs(0, {CSI_WALK_BINARY, endpoint, "create", "pvc-d", "--capacity=2G"});
  ASSERT_EQ(decimal.exit_code, 0) << decimal.output;
  listed = RunAs(0, {CSI_WALK_BINARY, endpoint, "list"});
  EXPECT_NE(listed.output.find(" 2000000000"), std::string::npos) << listed.output;

  Result typo = RunAs(0, {CSI_WALK_BINARY, endpoint, "create", "pvc-t", "--capacty", "1Gi"});
  EXPECT_EQ(typo.exit_code, 2) << typo.output;
  EXPECT_NE(typo.output.find("unknown flag --capacty"), std::string::npos) << typo.output;
  Result bad = RunAs(0, {CSI_WALK_BINARY, endpoint, "create", "pvc-b", "--capacity", "1.5Gi"});
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
  listed = RunAs(0, {CSI_WALK_BINARY, endpoint, "list"});
  EXPECT_EQ(listed.output.find("pvc-t"), std::string::npos);
}

}  // namespace
}  // namespace strata::e2e
