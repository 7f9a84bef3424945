// The built stratactl binary against AdminService served in-process: JSON listings parse,
// the layer tree shows image names and short ids, flags work on either side of the command,
// and an unreachable socket gives exit code 1 with a hint.

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <regex>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "node/images/digest.h"
#include "tests/admin/admin_test_util.h"

extern char** environ;

namespace strata::admintest {
namespace {

using Json = nlohmann::json;

struct Result {
  int exit_code = -1;
  std::string out;
  std::string err;
};

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

class StratactlTest : public AdminFixture {
 protected:
  void SetUp() override {
#ifndef STRATACTL_PATH
    GTEST_SKIP() << "this build has no stratactl target";
#else
    binary_ = STRATACTL_PATH;
    AdminFixture::SetUp();
    if (HasFatalFailure()) return;
    std::string base = LayerTar({{"etc/hostname", "strata\n"}});
    std::string top = LayerTar({{"srv/index.html", "<h1>demo</h1>\n"}});
    base_chain_ = OciLayout::DiffId(base);
    top_chain_ = images::ChainId(base_chain_, OciLayout::DiffId(top));
    OciLayout layout;
    layout.AddImage("demo:v2", {base, top});
    layout_dir_ = work_->path() + "/layout";
    layout.Write(layout_dir_);
#endif
  }

  // Runs stratactl with `args`; `env` entries are added to (and override) this environment.
  Result Run(const std::vector<std::string>& args, const std::vector<std::string>& env = {},
             const std::string& cwd = "") {
    Result result;
    std::string out = work_->path() + "/out.txt", err = work_->path() + "/err.txt";
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_addopen(&actions, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (!cwd.empty()) posix_spawn_file_actions_addchdir_np(&actions, cwd.c_str());
    std::vector<std::string> argv_strings = {binary_};
    argv_strings.insert(argv_strings.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (std::string& arg : argv_strings) argv.push_back(arg.data());
    argv.push_back(nullptr);
    std::vector<std::string> env_strings;
    for (char** e = environ; *e != nullptr; ++e) {
      std::string entry = *e;
      if (entry.rfind("STRATA_ADMIN_ENDPOINT=", 0) == 0) continue;  // tests choose explicitly
      env_strings.push_back(entry);
    }
    env_strings.insert(env_strings.end(), env.begin(), env.end());
    std::vector<char*> envp;
    for (std::string& entry : env_strings) envp.push_back(entry.data());
    envp.push_back(nullptr);
    pid_t pid = -1;
    int rc = posix_spawn(&pid, binary_.c_str(), &actions, nullptr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    EXPECT_EQ(rc, 0) << "cannot run " << binary_;
    if (rc != 0) return result;
    int status = 0;
    waitpid(pid, &status, 0);
    result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    result.out = ReadAll(out);
    result.err = ReadAll(err);
    return result;
  }

  std::string Endpoint() { return "--admin-endpoint=" + endpoint(); }

  void ImportDemo() {
    Result imported = Run({Endpoint(), "import", layout_dir_});
    ASSERT_EQ(imported.exit_code, 0) << imported.err;
    EXPECT_NE(imported.out.find("demo:v2"), std::string::npos) << imported.out;
  }

  std::string binary_;
  std::string layout_dir_;
  std::string base_chain_, top_chain_;
};

TEST_F(StratactlTest, ImagesAsJsonListsTheImportedImage) {
  ImportDemo();
  Result result = Run({"images", "-o", "json", Endpoint()});  // flags after the command
  ASSERT_EQ(result.exit_code, 0) << result.err;
  Json images = Json::parse(result.out);
  ASSERT_TRUE(images.is_array());
  ASSERT_EQ(images.size(), 1u);
  EXPECT_EQ(images[0]["name"], "demo:v2");
  EXPECT_EQ(images[0]["chain_id"], top_chain_);
  EXPECT_EQ(images[0]["layers"], 2);
  EXPECT_GT(images[0]["size_bytes"].get<int64_t>(), 0);
}

TEST_F(StratactlTest, LayersTreeShowsShortIdsImageNamesAndVolumes) {
  ImportDemo();
  for (const char* name : {"pvc-1", "pvc-2"}) {
    ASSERT_TRUE(volumes_->Create(MakeParams(name, "demo:v2", "x")).ok());
  }
  Result result = Run({Endpoint(), "layers", "--tree"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  std::string base_short = base_chain_.substr(0, 7 + 12);
  std::string top_short = top_chain_.substr(0, 7 + 12);
  EXPECT_NE(result.out.find("└─" + base_short + " "), std::string::npos) << result.out;
  EXPECT_NE(result.out.find("  └─" + top_short + " "), std::string::npos) << result.out;
  EXPECT_EQ(result.out.find(top_chain_), std::string::npos) << "ids are shortened";
  // The image name and the volume count sit on the top layer's line, not the base's.
  std::regex top_line("└─" + top_short + " [0-9.]+ (B|kB|MB)  demo:v2   \\(2 volumes\\)");
  EXPECT_TRUE(std::regex_search(result.out, top_line)) << result.out;
  std::string first_line = result.out.substr(0, result.out.find('\n'));
  EXPECT_EQ(first_line.find("demo:v2"), std::string::npos) << first_line;

  Result json = Run({"-ojson", "layers", Endpoint(), "--tree"});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  Json tree = Json::parse(json.out);
  ASSERT_EQ(tree.size(), 1u);
  EXPECT_EQ(tree[0]["chain_id"], base_chain_);
  ASSERT_EQ(tree[0]["children"].size(), 1u);
  EXPECT_EQ(tree[0]["children"][0]["images"], Json::array({"demo:v2"}));
  EXPECT_EQ(tree[0]["children"][0]["volumes"].size(), 2u);
}

TEST_F(StratactlTest, EndpointFromTheEnvironmentAndRelativeImportPaths) {
  Result imported = Run({"import", "layout", "--name", "renamed:v1"},
                        {"STRATA_ADMIN_ENDPOINT=" + endpoint()}, work_->path());
  ASSERT_EQ(imported.exit_code, 0) << imported.err;
  Result images = Run({"images"}, {"STRATA_ADMIN_ENDPOINT=" + endpoint()});
  ASSERT_EQ(images.exit_code, 0) << images.err;
  EXPECT_NE(images.out.find("renamed:v1"), std::string::npos) << images.out;
  EXPECT_NE(images.out.find(top_chain_.substr(0, 7 + 12)), std::string::npos) << images.out;
}

TEST_F(StratactlTest, InspectRmAndGc) {
  ImportDemo();
  Result inspect = Run({Endpoint(), "inspect", top_chain_.substr(0, 7 + 12)});
  ASSERT_EQ(inspect.exit_code, 0) << inspect.err;
  EXPECT_EQ(Json::parse(inspect.out)["chain_id"], top_chain_);

  Result missing = Run({Endpoint(), "inspect", "nope:latest"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_EQ(missing.err.rfind("stratactl: NOT_FOUND: ", 0), 0u) << missing.err;

  ASSERT_EQ(Run({Endpoint(), "rm", "demo:v2"}).exit_code, 0);
  Result dry = Run({Endpoint(), "gc", "--dry-run", "-o", "json"});
  ASSERT_EQ(dry.exit_code, 0) << dry.err;
  EXPECT_EQ(Json::parse(dry.out)["removed_chain_ids"].size(), 2u);
  Result gc = Run({Endpoint(), "gc"});
  ASSERT_EQ(gc.exit_code, 0) << gc.err;
  EXPECT_NE(gc.out.find("in 2 layers"), std::string::npos) << gc.out;
  Result layers = Run({Endpoint(), "layers", "-o", "json"});
  ASSERT_EQ(layers.exit_code, 0) << layers.err;
  EXPECT_TRUE(Json::parse(layers.out).empty());
}

TEST_F(StratactlTest, UnreachableSocketExitsOneWithAHint) {
  std::string socket = work_->path() + "/nobody-here.sock";
  Result result = Run({"--admin-endpoint", "unix://" + socket, "images"});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_EQ(result.err.rfind("stratactl: UNAVAILABLE: ", 0), 0u) << result.err;
  EXPECT_NE(result.err.find("strata-csi must be running"), std::string::npos) << result.err;
  EXPECT_NE(result.err.find(socket), std::string::npos) << result.err;
  EXPECT_TRUE(result.out.empty());
}

TEST_F(StratactlTest, BadUsageExitsTwo) {
  EXPECT_EQ(Run({Endpoint(), "frobnicate"}).exit_code, 2);
  EXPECT_EQ(Run({Endpoint(), "images", "-o", "yaml"}).exit_code, 2);
  EXPECT_EQ(Run({Endpoint(), "images", "--tree"}).exit_code, 2);
  EXPECT_EQ(Run({Endpoint(), "inspect"}).exit_code, 2);
  EXPECT_EQ(Run({Endpoint(), "images", "--admin-endpoint"}).exit_code, 2);
  Result help = Run({"help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.out.find("layers [--tree]"), std::string::npos);
}

}  // namespace
}  // namespace strata::admintest
