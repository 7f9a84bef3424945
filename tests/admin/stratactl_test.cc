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

TEST_F(StratactlTest, ImagesQuietFiltersAndNoTrunc) {
  ImportDemo();
  const std::string short_top = top_chain_.substr(0, std::string("sha256:").size() + 12);
  Result quiet = Run({Endpoint(), "images", "-q"});
  ASSERT_EQ(quiet.exit_code, 0) << quiet.err;
  EXPECT_EQ(quiet.out, short_top + "\n");
  Result full = Run({Endpoint(), "images", "-q", "--no-trunc"});
  EXPECT_EQ(full.out, top_chain_ + "\n");
  // A glob against the whole name or the name without its tag.
  EXPECT_EQ(Run({Endpoint(), "images", "-q", "--filter", "reference=demo"}).out, short_top + "\n");
  EXPECT_EQ(Run({Endpoint(), "images", "-q", "--filter", "reference=d*:v2"}).out, short_top + "\n");
  EXPECT_EQ(Run({Endpoint(), "images", "-q", "--filter", "reference=other*"}).out, "");
  EXPECT_EQ(Run({Endpoint(), "images", "-q", "--filter", "dangling=true"}).out, "");
  EXPECT_EQ(Run({Endpoint(), "images", "-q", "--filter", "dangling=false"}).out, short_top + "\n");
  Result table = Run({Endpoint(), "images", "--no-trunc"});
  EXPECT_NE(table.out.find(top_chain_), std::string::npos) << table.out;
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

// commit, history, snapshots, layers --tree and rollback, in table and JSON form. The vfs driver
// commits an unmounted volume without any mount, so this runs without root.
TEST_F(StratactlTest, CommitHistorySnapshotsTreeAndRollback) {
  ImportDemo();
  auto volume = volumes_->Create(MakeParams("pvc-c", "demo:v2", "x"));
  ASSERT_TRUE(volume.ok()) << volume.status();
  const std::string id = volume->id;

  Result commit = Run({Endpoint(), "commit", id, "--tag", "demo:committed", "-m", "first commit"});
  ASSERT_EQ(commit.exit_code, 0) << commit.err;
  EXPECT_EQ(commit.out.rfind("Committed " + id + " as demo:committed (sha256:", 0), 0u)
      << commit.out;
  Result again = Run({Endpoint(), "commit", id, "--tag=demo:committed", "-o", "json"});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  Json committed = Json::parse(again.out);
  EXPECT_EQ(committed["depth"], 4);
  EXPECT_NE(committed["previous_chain_id"], "");  // the tag moved, as docker commit moves it
  const std::string top = committed["chain_id"];

  Result history = Run({Endpoint(), "history", "demo:committed"});
  ASSERT_EQ(history.exit_code, 0) << history.err;
  std::regex header("^ID +CREATED +SIZE +COMMENT\n");
  EXPECT_TRUE(std::regex_search(history.out, header)) << history.out;
  size_t default_comment = history.out.find("commit of volume " + id);
  size_t first = history.out.find("first commit");
  size_t layer1 = history.out.find("ADD layer1 /");
  size_t layer0 = history.out.find("ADD layer0 /");
  ASSERT_NE(default_comment, std::string::npos) << history.out;
  ASSERT_NE(layer0, std::string::npos) << history.out;
  EXPECT_TRUE(default_comment < first && first < layer1 && layer1 < layer0) << history.out;
  EXPECT_NE(history.out.find(top.substr(0, 7 + 12) + " "), std::string::npos) << history.out;
  EXPECT_EQ(history.out.find(top), std::string::npos) << "ids are shortened";
  Result full = Run({Endpoint(), "history", "--no-trunc", top});
  ASSERT_EQ(full.exit_code, 0) << full.err;
  EXPECT_NE(full.out.find(top), std::string::npos) << full.out;
  Result history_json = Run({Endpoint(), "history", "demo:committed", "-o", "json"});
  ASSERT_EQ(history_json.exit_code, 0) << history_json.err;
  Json layers = Json::parse(history_json.out);
  ASSERT_EQ(layers.size(), 4u);
  EXPECT_EQ(layers[0]["chain_id"], top);
  EXPECT_EQ(layers[1]["comment"], "first commit");
  EXPECT_EQ(layers[3]["diff_id"], base_chain_);

  auto snapshot = volumes_->CreateSnapshot(id, "nightly");
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  Result snapshots = Run({Endpoint(), "snapshots", "--volume", id});
  ASSERT_EQ(snapshots.exit_code, 0) << snapshots.err;
  EXPECT_NE(snapshots.out.find(snapshot->id), std::string::npos) << snapshots.out;
  EXPECT_NE(snapshots.out.find("nightly"), std::string::npos) << snapshots.out;
  Result none = Run({Endpoint(), "snapshots", "--volume", "someone-else", "-o", "json"});
  ASSERT_EQ(none.exit_code, 0) << none.err;
  EXPECT_TRUE(Json::parse(none.out).empty());

  // The tree: base -> demo:v2 -> commit -> demo:committed -> snapshot nightly (the volume's).
  Result tree = Run({Endpoint(), "layers", "--tree"});
  ASSERT_EQ(tree.exit_code, 0) << tree.err;
  std::regex tagged("└─" + top.substr(0, 7 + 12) + " [0-9.]+ (B|kB|MB)  demo:committed\n");
  EXPECT_TRUE(std::regex_search(tree.out, tagged)) << tree.out;
  std::regex snap("  └─" + snapshot->chain_id.substr(0, 7 + 12) +
                  " [0-9.]+ (B|kB|MB)  snapshot nightly   \\(1 volume\\)\n");
  EXPECT_TRUE(std::regex_search(tree.out, snap)) << tree.out;
  Result tree_json = Run({Endpoint(), "layers", "--tree", "-o", "json"});
  ASSERT_EQ(tree_json.exit_code, 0) << tree_json.err;
  EXPECT_NE(tree_json.out.find("\"nightly\""), std::string::npos) << tree_json.out;

  // Rollback to the first commit's state would need a snapshot: roll back to nightly itself,
  // which keeps the current state as another snapshot and says how to undo.
  Result rollback = Run({Endpoint(), "rollback", id, "nightly"});
  ASSERT_EQ(rollback.exit_code, 0) << rollback.err;
  EXPECT_NE(rollback.out.find("undo with: stratactl rollback " + id + " snap-"), std::string::npos)
      << rollback.out;
  Result listed = Run({Endpoint(), "snapshots", "-o", "json"});
  ASSERT_EQ(listed.exit_code, 0) << listed.err;
  EXPECT_EQ(Json::parse(listed.out).size(), 2u);
  Result missing = Run({Endpoint(), "rollback", id, "no-such-snapshot"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_EQ(missing.err.rfind("stratactl: NOT_FOUND: ", 0), 0u) << missing.err;
}

TEST_F(StratactlTest, HistoryCommandsBadUsageExitsTwo) {
  EXPECT_EQ(Run({Endpoint(), "commit", "vol"}).exit_code, 2);  // no --tag
  EXPECT_EQ(Run({Endpoint(), "commit", "vol", "--tag", "a", "--tag", "b"}).exit_code, 2);
  EXPECT_EQ(Run({Endpoint(), "rollback", "vol"}).exit_code, 2);
  EXPECT_EQ(Run({Endpoint(), "history"}).exit_code, 2);
  EXPECT_EQ(Run({Endpoint(), "diff", "a"}).exit_code, 2);
  EXPECT_EQ(Run({Endpoint(), "save", "a"}).exit_code, 2);  // no -o FILE
  EXPECT_EQ(Run({Endpoint(), "save", "a", "-o", "/tmp/x.tar", "--format", "zip"}).exit_code, 2);
  EXPECT_EQ(Run({Endpoint(), "images", "--tag", "x"}).exit_code, 2);
  // --no-trunc belongs to the commands that print ids (issue 14), not to volumes.
  EXPECT_EQ(Run({Endpoint(), "volumes", "--no-trunc"}).exit_code, 2);
  EXPECT_EQ(Run({Endpoint(), "volumes", "-q"}).exit_code, 2);
  EXPECT_EQ(Run({Endpoint(), "images", "--filter", "colour=red"}).exit_code, 2);
  EXPECT_EQ(Run({Endpoint(), "history", "x", "-m", "hi"}).exit_code, 2);
  EXPECT_EQ(Run({Endpoint(), "snapshots", "--format", "oci"}).exit_code, 2);
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
