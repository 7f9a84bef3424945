// Docker-like history over real mounts, for the overlay and vfs drivers: a volume on an
// imported image is staged and changed (a file written, one modified, an image file deleted, a
// directory replaced), committed through the admin API, and then
//  - History lists the commit first with its message, then the image's layers with the
//    created_by of the image config;
//  - Diff gives exactly the expected A/C/D lines (image vs commit, image vs the volume staged
//    and unstaged);
//  - Save in both formats, imported again, gives a volume with the identical tree (owners,
//    modes, mtimes, xattrs, hardlinks), and so does skopeo + umoci unpacking the saved image;
//  - Rollback works through the RPC and can be undone;
//  - bad inputs get INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION or ABORTED;
//  - no view stays mounted after any call.
// Every test skips without root. Stores live in /var/tmp.

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "csi/admin_service.h"
#include "drivers/registry.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "node/exporter.h"
#include "node/images/digest.h"
#include "node/layer_store.h"
#include "node/metadata.h"
#include "node/volume_locks.h"
#include "node/volume_manager.h"
#include "strata_admin.grpc.pb.h"
#include "sys/mounter.h"
#include "tests/admin/admin_test_util.h"
#include "tests/images/test_util.h"
#include "tests/images/tree_test_util.h"

namespace strata::admintest {
namespace {

namespace pb = strata::admin::v1;
namespace img = strata::images::imgtest;
using images::treetest::FullSnapshot;
using images::treetest::SnapshotDiff;

std::string Q(const std::string& text) { return "'" + text + "'"; }

void Check(int rc, const std::string& what) { ASSERT_EQ(rc, 0) << what << ": " << strerror(errno); }

class HistoryRootTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (real mounts)";
    char pattern[] = "/var/tmp/strata-history-XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    base_ = pattern;
    root_ = base_ + "/root";
    work_ = base_ + "/work";
    img::MakeDirs(root_);
    img::MakeDirs(work_);
    auto metadata = node::Metadata::Open(root_ + "/strata.db");
    ASSERT_TRUE(metadata.ok()) << metadata.status();
    metadata_ = std::move(*metadata);
    auto driver = drivers::NewDriver(GetParam(), root_);
    ASSERT_TRUE(driver.ok()) << driver.status();
    driver_ = std::move(*driver);
    mounter_ = sys::NewLinuxMounter();
    layers_ = std::make_unique<node::LayerStore>(metadata_.get(), driver_.get(), mounter_.get(),
                                                 root_ + "/tmp");
    volumes_ = std::make_unique<node::VolumeManager>(
        metadata_.get(), layers_.get(), driver_.get(), mounter_.get(), nullptr,
        node::VolumeManagerOptions{root_, root_ + "/volumes", root_ + "/tmp"});
    exporter_ = std::make_unique<node::Exporter>(metadata_.get(), layers_.get(), driver_.get(),
                                                 mounter_.get(), root_ + "/export");
    ASSERT_TRUE(exporter_->Recover().ok());
    service_ = std::make_unique<csi::AdminService>(layers_.get(), volumes_.get(), metadata_.get(),
                                                   &locks_, exporter_.get());
    grpc::ServerBuilder builder;
    builder.AddListeningPort(endpoint(), grpc::InsecureServerCredentials());
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    stub_ = pb::Admin::NewStub(grpc::CreateChannel(endpoint(), grpc::InsecureChannelCredentials()));
    BuildImage();
  }

  void TearDown() override {
    stub_.reset();
    if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
    server_.reset();
    service_.reset();
    exporter_.reset();
    volumes_.reset();
    layers_.reset();
    if (!base_.empty() && mounter_) {
      // Whatever a failed test left mounted, deepest first, before removing the files.
      auto table = mounter_->List();
      if (table.ok()) {
        std::vector<std::string> targets;
        for (const sys::MountPoint& point : *table)
          if (point.target.rfind(base_ + "/", 0) == 0) targets.push_back(point.target);
        std::sort(targets.rbegin(), targets.rend());
        for (const std::string& target : targets) (void)mounter_->Unmount(target, true);
      }
    }
    driver_.reset();
    metadata_.reset();
    mounter_.reset();
    std::error_code error;
    if (!base_.empty()) std::filesystem::remove_all(base_, error);
  }

  std::string endpoint() const { return "unix://" + root_ + "/admin.sock"; }

  // base:1 = [layer0, layer1]. layer0 has owners, modes, an xattr, a symlink and a hardlink;
  // the directory `replace` is replaced by the test, data/old.txt deleted, etc/config changed.
  void BuildImage() {
    img::TarEntry keep = img::File("data/keep.txt", "kept\n", 0600);
    keep.uid = 1000;
    keep.gid = 1000;
    keep.xattrs = {{"user.origin", "image"}};
    img::TarEntry inner = img::Dir("replace/inner", 0700);
    inner.uid = 1000;
    std::string layer0 =
        img::BuildTar({img::Dir("etc"), img::File("etc/config", "v1\n"), img::Dir("data"),
                       img::File("data/old.txt", "old\n"), keep, img::Dir("replace"), inner,
                       img::File("replace/inner/a.txt", "a\n"), img::Dir("bin"),
                       img::File("bin/tool", "#!tool\n", 0755),
                       img::Hardlink("bin/tool2", "bin/tool"), img::Symlink("bin/link", "tool")});
    std::string layer1 = img::BuildTar({img::Dir("srv"), img::File("srv/index.html", "<h1/>\n")});
    layer_diff_ids_ = {OciLayout::DiffId(layer0), OciLayout::DiffId(layer1)};
    OciLayout layout;
    layout.AddImage("base:1", {layer0, layer1});
    layout.Write(work_ + "/layout");
  }

  grpc::Status Import(const std::string& path, const std::string& name) {
    grpc::ClientContext context;
    pb::ImportImageRequest request;
    request.set_path(path);
    request.set_name(name);
    pb::ImportImageResponse response;
    return stub_->ImportImage(&context, request, &response);
  }

  // A volume on `image`, staged at work/<name>; returns its id.
  std::string StagedVolume(const std::string& name, const std::string& image) {
    auto volume = volumes_->Create(MakeParams(name, image, "image=" + image));
    EXPECT_TRUE(volume.ok()) << volume.status();
    if (!volume.ok()) return "";
    std::string staging = work_ + "/" + name;
    img::MakeDirs(staging);
    absl::Status staged = volumes_->Stage(volume->id, staging);
    EXPECT_TRUE(staged.ok()) << staged;
    return volume->id;
  }

  // The changes every test makes in a staged volume at `dir`.
  void ChangeTree(const std::string& dir) {
    img::WriteFile(dir + "/etc/config", "v2, changed in place\n");
    Check(unlink((dir + "/data/old.txt").c_str()), "unlink");
    std::filesystem::remove_all(dir + "/replace");
    Check(mkdir((dir + "/replace").c_str(), 0750), "mkdir replace");
    img::WriteFile(dir + "/replace/b.txt", "b\n");
    Check(lchown((dir + "/replace/b.txt").c_str(), 1234, 5678), "chown");
    Check(mkdir((dir + "/new").c_str(), 0755), "mkdir new");
    const std::string file = dir + "/new/file.txt";
    img::WriteFile(file, "new content\n");
    Check(chmod(file.c_str(), 0640), "chmod");
    Check(lchown(file.c_str(), 1234, 5678), "chown");
    Check(lsetxattr(file.c_str(), "user.note", "hello", 5, 0), "setxattr");
    Check(symlink("../etc/config", (dir + "/new/link").c_str()), "symlink");
    images::treetest::SetMtime(file, 1600000000, 123456789);
  }

  static std::vector<std::string> ExpectedChanges() {
    return {"C /data",    "D /data/old.txt",  "C /etc/config",
            "A /new",     "A /new/file.txt",  "A /new/link",
            "C /replace", "A /replace/b.txt", "D /replace/inner"};
  }

  grpc::Status Commit(const std::string& volume, const std::string& tag, const std::string& message,
                      pb::CommitResponse* response) {
    grpc::ClientContext context;
    pb::CommitRequest request;
    request.set_volume_id(volume);
    request.set_tag(tag);
    request.set_message(message);
    return stub_->Commit(&context, request, response);
  }
  grpc::Status History(const std::string& ref, pb::HistoryResponse* response) {
    grpc::ClientContext context;
    pb::HistoryRequest request;
    request.set_ref(ref);
    return stub_->History(&context, request, response);
  }
  grpc::Status Diff(const std::string& from, const std::string& to,
                    std::vector<std::string>* lines) {
    grpc::ClientContext context;
    pb::DiffRequest request;
    request.set_from_ref(from);
    request.set_to_ref(to);
    pb::DiffResponse response;
    grpc::Status status = stub_->Diff(&context, request, &response);
    lines->clear();
    for (const pb::Change& change : response.changes()) {
      const char* letter = change.kind() == pb::Change::ADDED     ? "A"
                           : change.kind() == pb::Change::CHANGED ? "C"
                           : change.kind() == pb::Change::DELETED ? "D"
                                                                  : "?";
      lines->push_back(std::string(letter) + " " + change.path());
    }
    return status;
  }
  grpc::Status Save(const std::string& ref, const std::string& path, pb::SaveRequest::Format format,
                    const std::vector<std::string>& tags, pb::SaveResponse* response) {
    grpc::ClientContext context;
    pb::SaveRequest request;
    request.set_ref(ref);
    request.set_path(path);
    request.set_format(format);
    for (const std::string& tag : tags) request.add_tags(tag);
    return stub_->Save(&context, request, response);
  }
  grpc::Status Rollback(const std::string& volume, const std::string& snapshot,
                        pb::RollbackResponse* response) {
    grpc::ClientContext context;
    pb::RollbackRequest request;
    request.set_volume_id(volume);
    request.set_snapshot(snapshot);
    return stub_->Rollback(&context, request, response);
  }

  // Mount points under the store's root other than staging paths (views left behind).
  std::vector<std::string> MountsUnderRoot() {
    std::vector<std::string> found;
    auto table = mounter_->List();
    EXPECT_TRUE(table.ok());
    if (!table.ok()) return found;
    for (const sys::MountPoint& point : *table)
      if (point.target.rfind(root_ + "/", 0) == 0) found.push_back(point.target);
    return found;
  }

  std::string base_, root_, work_;
  std::vector<std::string> layer_diff_ids_;
  std::unique_ptr<node::Metadata> metadata_;
  std::unique_ptr<drivers::Driver> driver_;
  std::unique_ptr<sys::Mounter> mounter_;
  std::unique_ptr<node::LayerStore> layers_;
  std::unique_ptr<node::VolumeManager> volumes_;
  std::unique_ptr<node::Exporter> exporter_;
  node::VolumeLocks locks_;
  std::unique_ptr<csi::AdminService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<pb::Admin::Stub> stub_;
};

TEST_P(HistoryRootTest, CommitHistoryDiffSaveRoundTrip) {
  ASSERT_TRUE(Import(work_ + "/layout", "").ok());
  const std::string volume = StagedVolume("pvc-main", "base:1");
  ASSERT_FALSE(volume.empty());
  const std::string staging = work_ + "/pvc-main";
  ChangeTree(staging);
  if (HasFatalFailure()) return;

  // The live volume against its image.
  std::vector<std::string> lines;
  grpc::Status status = Diff("base:1", volume, &lines);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(lines, ExpectedChanges());

  pb::CommitResponse commit;
  status = Commit(volume, "base:committed", "added /new, replaced /replace", &commit);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(commit.depth(), 3);
  EXPECT_FALSE(commit.flattened());

  // History: the commit first, with its message, then the image's layers and their created_by.
  pb::HistoryResponse history;
  status = History("base:committed", &history);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(history.layers_size(), 3);
  EXPECT_EQ(history.chain_id(), commit.chain_id());
  EXPECT_EQ(history.layers(0).chain_id(), commit.chain_id());
  EXPECT_EQ(history.layers(0).comment(), "added /new, replaced /replace");
  EXPECT_EQ(history.layers(0).diff_id(), "");  // not saved yet
  EXPECT_EQ(history.layers(1).diff_id(), layer_diff_ids_[1]);
  EXPECT_EQ(history.layers(1).comment(), "ADD layer1 /");
  EXPECT_EQ(history.layers(2).diff_id(), layer_diff_ids_[0]);
  EXPECT_EQ(history.layers(2).comment(), "ADD layer0 /");
  // A prefix of the commit's id names the same chain.
  pb::HistoryResponse by_prefix;
  ASSERT_TRUE(History(commit.chain_id().substr(0, 7 + 12), &by_prefix).ok());
  EXPECT_EQ(by_prefix.layers_size(), 3);

  // The image against the commit: exactly the same changes.
  status = Diff("base:1", "base:committed", &lines);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(lines, ExpectedChanges());
  status = Diff("base:committed", "base:committed", &lines);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_TRUE(lines.empty());

  const auto expected = FullSnapshot(staging);
  ASSERT_TRUE(expected.count("new/file.txt"));
  ASSERT_FALSE(expected.count("data/old.txt"));

  // docker-save and OCI layout: import each back as a new image; a volume on it is the same tree.
  struct Case {
    pb::SaveRequest::Format format;
    std::string path, tag, skopeo_source;
  };
  const std::vector<Case> cases = {
      {pb::SaveRequest::DOCKER, work_ + "/saved.tar", "roundtrip/saved:docker",
       "docker-archive:" + work_ + "/saved.tar"},
      {pb::SaveRequest::OCI, work_ + "/saved-oci", "roundtrip/saved:oci",
       "oci:" + work_ + "/saved-oci:roundtrip/saved:oci"}};
  std::string first_diff_id;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.tag);
    pb::SaveResponse saved;
    status = Save("base:committed", c.path, c.format, {c.tag}, &saved);
    ASSERT_TRUE(status.ok()) << status.error_message();
    ASSERT_EQ(saved.diff_ids_size(), 3);
    EXPECT_GT(saved.bytes(), 0);
    EXPECT_EQ(saved.tags(0), c.tag);
    // Deterministic: both formats carry the same layer tars.
    if (first_diff_id.empty()) {
      first_diff_id = saved.diff_ids(2);
    } else {
      EXPECT_EQ(saved.diff_ids(2), first_diff_id);
    }
    const std::string name = "imported-" + std::to_string(static_cast<int>(c.format));
    status = Import(c.path, name);
    ASSERT_TRUE(status.ok()) << status.error_message();
    const std::string copy = StagedVolume("pvc-" + name, name);
    ASSERT_FALSE(copy.empty());
    EXPECT_EQ(SnapshotDiff(expected, FullSnapshot(work_ + "/pvc-" + name)), "");

    // skopeo converts the output to an OCI layout and umoci unpacks it: the same tree again.
    const std::string converted = work_ + "/converted-" + name;
    img::RunCommand("skopeo copy " + Q(c.skopeo_source) + " " + Q("oci:" + converted + ":x"));
    img::RunCommand("umoci unpack --image " + Q(converted + ":x") + " " + Q(converted + "-bundle"));
    EXPECT_EQ(SnapshotDiff(expected, FullSnapshot(converted + "-bundle/rootfs")), "");
  }

  // After a save the commit's DiffID is known.
  ASSERT_TRUE(History("base:committed", &history).ok());
  EXPECT_EQ(history.layers(0).diff_id(), first_diff_id);

  // The volume unstaged: its state is read through read-only driver mounts.
  ASSERT_TRUE(volumes_->Unstage(volume, staging).ok());
  status = Diff("base:1", volume, &lines);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(lines, ExpectedChanges());
  // And nothing was written through them.
  status = Diff("base:committed", volume, &lines);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_TRUE(lines.empty()) << lines.front();

  // No view stays mounted under the store.
  std::vector<std::string> left;
  for (const std::string& target : MountsUnderRoot())
    if (target.find("/export/") != std::string::npos) left.push_back(target);
  EXPECT_TRUE(left.empty()) << left.front();
  EXPECT_FALSE(std::filesystem::exists(root_ + "/export") &&
               !std::filesystem::is_empty(root_ + "/export"));
}

TEST_P(HistoryRootTest, RollbackThroughTheApiAndBack) {
  ASSERT_TRUE(Import(work_ + "/layout", "").ok());
  const std::string volume = StagedVolume("pvc-rb", "base:1");
  ASSERT_FALSE(volume.empty());
  const std::string staging = work_ + "/pvc-rb";
  ASSERT_TRUE(volumes_->Unstage(volume, staging).ok());
  auto before = volumes_->CreateSnapshot(volume, "before-change");
  ASSERT_TRUE(before.ok()) << before.status();

  ASSERT_TRUE(volumes_->Stage(volume, staging).ok());
  ChangeTree(staging);
  if (HasFatalFailure()) return;
  const auto changed = FullSnapshot(staging);

  // A staged volume cannot be rolled back.
  pb::RollbackResponse rollback;
  grpc::Status status = Rollback(volume, "before-change", &rollback);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << status.error_message();
  ASSERT_TRUE(volumes_->Unstage(volume, staging).ok());

  status = Rollback(volume, "before-change", &rollback);  // by name
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(rollback.chain_id(), before->chain_id);
  const std::string kept = rollback.previous_state().snapshot_id();
  ASSERT_FALSE(kept.empty());
  EXPECT_EQ(rollback.previous_state().source_volume_id(), volume);

  std::vector<std::string> lines;
  status = Diff("before-change", volume, &lines);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_TRUE(lines.empty()) << lines.front();
  status = Diff("base:1", kept, &lines);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(lines, ExpectedChanges());

  // Undo: back to the kept state (by id), which is the changed tree.
  status = Rollback(volume, kept, &rollback);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_TRUE(volumes_->Stage(volume, staging).ok());
  EXPECT_EQ(SnapshotDiff(changed, FullSnapshot(staging)), "");

  // The snapshots list has both, and every snapshot kept by a rollback.
  grpc::ClientContext context;
  pb::ListSnapshotsRequest request;
  request.set_volume_id(volume);
  pb::ListSnapshotsResponse list;
  ASSERT_TRUE(stub_->ListSnapshots(&context, request, &list).ok());
  EXPECT_EQ(list.snapshots_size(), 3);  // before-change, and one kept by each rollback
}

TEST_P(HistoryRootTest, BadInputsGetTheRightCodes) {
  ASSERT_TRUE(Import(work_ + "/layout", "").ok());
  const std::string volume = StagedVolume("pvc-bad", "base:1");
  ASSERT_FALSE(volume.empty());
  pb::CommitResponse commit;
  pb::HistoryResponse history;
  pb::SaveResponse saved;
  pb::RollbackResponse rollback;
  std::vector<std::string> lines;
  using grpc::StatusCode;

  EXPECT_EQ(Commit("no-such-volume", "x:1", "", &commit).error_code(), StatusCode::NOT_FOUND);
  EXPECT_EQ(Commit(volume, "", "", &commit).error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Commit(volume, "bad tag", "", &commit).error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Commit("", "x:1", "", &commit).error_code(), StatusCode::INVALID_ARGUMENT);
  {
    auto lock = locks_.TryAcquire(volume, "test");
    ASSERT_TRUE(lock.ok());
    EXPECT_EQ(Commit(volume, "x:1", "", &commit).error_code(), StatusCode::ABORTED);
    EXPECT_EQ(Diff("base:1", volume, &lines).error_code(), StatusCode::ABORTED);
  }

  EXPECT_EQ(History("nothing:here", &history).error_code(), StatusCode::NOT_FOUND);
  EXPECT_EQ(History("abc123", &history).error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(History("", &history).error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Diff("base:1", "nothing:here", &lines).error_code(), StatusCode::NOT_FOUND);
  EXPECT_EQ(Diff("", "base:1", &lines).error_code(), StatusCode::INVALID_ARGUMENT);

  EXPECT_EQ(Rollback(volume, "no-such-snapshot", &rollback).error_code(), StatusCode::NOT_FOUND);
  EXPECT_EQ(Rollback("", "x", &rollback).error_code(), StatusCode::INVALID_ARGUMENT);

  EXPECT_EQ(Save("base:1", "relative/out.tar", pb::SaveRequest::DOCKER, {}, &saved).error_code(),
            StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Save("base:1", "", pb::SaveRequest::DOCKER, {}, &saved).error_code(),
            StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(
      Save("base:1", work_ + "/../escape.tar", pb::SaveRequest::DOCKER, {}, &saved).error_code(),
      StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Save("base:1", work_ + "/out.tar", static_cast<pb::SaveRequest::Format>(7), {}, &saved)
                .error_code(),
            StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(
      Save("base:1", work_ + "/out.tar", pb::SaveRequest::DOCKER, {"Bad Tag"}, &saved).error_code(),
      StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(
      Save("nothing:here", work_ + "/out.tar", pb::SaveRequest::DOCKER, {}, &saved).error_code(),
      StatusCode::NOT_FOUND);
  // A folder that does not exist: the save fails and leaves nothing, no view mounted.
  grpc::Status status =
      Save("base:1", work_ + "/missing/out.tar", pb::SaveRequest::DOCKER, {}, &saved);
  EXPECT_FALSE(status.ok());
  EXPECT_FALSE(std::filesystem::exists(work_ + "/missing"));
  // An OCI folder over an existing path is refused.
  img::MakeDirs(work_ + "/existing");
  status = Save("base:1", work_ + "/existing", pb::SaveRequest::OCI, {}, &saved);
  EXPECT_EQ(status.error_code(), StatusCode::ALREADY_EXISTS) << status.error_message();

  // A staged volume whose mount vanished behind Strata's back: FAILED_PRECONDITION, and the
  // view of the image mounted before that was found out is unmounted again.
  ASSERT_TRUE(mounter_->Unmount(work_ + "/pvc-bad").ok());
  status = Diff("base:1", volume, &lines);
  EXPECT_EQ(status.error_code(), StatusCode::FAILED_PRECONDITION) << status.error_message();

  for (const std::string& target : MountsUnderRoot())
    EXPECT_EQ(target.find("/export/"), std::string::npos) << target;
  EXPECT_FALSE(std::filesystem::exists(root_ + "/export") &&
               !std::filesystem::is_empty(root_ + "/export"));
}

// A process killed mid-save leaves views mounted in the scratch dir: Recover unmounts them
// (without touching what they show) and empties the dir.
TEST_P(HistoryRootTest, RecoverUnmountsLeftoverViews) {
  const std::string shown = work_ + "/shown";
  img::MakeDirs(shown);
  img::WriteFile(shown + "/precious", "keep me\n");
  const std::string view = root_ + "/export/save-dead/view-1";
  img::MakeDirs(view);
  ASSERT_TRUE(mounter_->MountAt(sys::Mount{"bind", shown, {"ro"}}, view).ok());
  ASSERT_TRUE(*mounter_->IsMountPoint(view));
  absl::Status recovered = exporter_->Recover();
  ASSERT_TRUE(recovered.ok()) << recovered;
  EXPECT_FALSE(std::filesystem::exists(root_ + "/export"));
  EXPECT_EQ(img::ReadFile(shown + "/precious"), "keep me\n");
}

#ifdef STRATACTL_PATH
// stratactl's diff, history and save against the same server: docker diff's lines, files written.
TEST_P(HistoryRootTest, StratactlDiffHistoryAndSave) {
  ASSERT_TRUE(Import(work_ + "/layout", "").ok());
  const std::string volume = StagedVolume("pvc-cli", "base:1");
  ASSERT_FALSE(volume.empty());
  ChangeTree(work_ + "/pvc-cli");
  if (HasFatalFailure()) return;
  auto run = [&](const std::string& args, int* exit_code) {
    std::string command =
        std::string(STRATACTL_PATH) + " --admin-endpoint " + Q(endpoint()) + " " + args + " 2>&1";
    FILE* pipe = popen(command.c_str(), "r");
    std::string out;
    char buffer[4096];
    size_t n;
    while (pipe != nullptr && (n = fread(buffer, 1, sizeof(buffer), pipe)) > 0)
      out.append(buffer, n);
    int status = pipe != nullptr ? pclose(pipe) : -1;
    *exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return out;
  };
  int code = -1;
  std::string out = run("commit " + volume + " --tag cli:1 -m 'from the cli'", &code);
  ASSERT_EQ(code, 0) << out;

  out = run("diff base:1 cli:1", &code);
  ASSERT_EQ(code, 0) << out;
  std::string expected;
  for (const std::string& line : ExpectedChanges()) expected += line + "\n";
  EXPECT_EQ(out, expected);
  out = run("diff base:1 " + volume + " -o json", &code);
  ASSERT_EQ(code, 0) << out;
  EXPECT_NE(out.find("\"path\": \"/new/file.txt\""), std::string::npos) << out;

  out = run("history cli:1", &code);
  ASSERT_EQ(code, 0) << out;
  EXPECT_NE(out.find("from the cli"), std::string::npos) << out;

  out = run("save cli:1 -o " + Q(work_ + "/cli.tar") + " --tag cli/saved:1", &code);
  ASSERT_EQ(code, 0) << out;
  EXPECT_NE(out.find("3 layers"), std::string::npos) << out;
  EXPECT_TRUE(std::filesystem::is_regular_file(work_ + "/cli.tar"));
  out = run("save cli:1 --format oci -o " + Q(work_ + "/cli-oci"), &code);
  ASSERT_EQ(code, 0) << out;
  EXPECT_TRUE(std::filesystem::is_regular_file(work_ + "/cli-oci/index.json"));
  // The OCI layout names the image by the image's own name when no --tag is given.
  EXPECT_NE(img::ReadFile(work_ + "/cli-oci/index.json").find("cli:1"), std::string::npos);

  out = run("diff base:1 nothing:here", &code);
  EXPECT_EQ(code, 1);
  EXPECT_EQ(out.rfind("stratactl: NOT_FOUND: ", 0), 0u) << out;
}
#endif

// Save of a chain with a 100 MiB layer, for the figure in the report. Runs only when
// STRATA_MEASURE=1 (it writes ~300 MiB).
TEST_P(HistoryRootTest, MeasureSaveOf100MiB) {
  if (getenv("STRATA_MEASURE") == nullptr) GTEST_SKIP() << "set STRATA_MEASURE=1 to measure";
  ASSERT_TRUE(Import(work_ + "/layout", "").ok());
  const std::string volume = StagedVolume("pvc-big", "base:1");
  ASSERT_FALSE(volume.empty());
  const std::string staging = work_ + "/pvc-big";
  std::string chunk(1 << 20, '\0');
  for (size_t i = 0; i < chunk.size(); ++i) chunk[i] = static_cast<char>((i * 7919) >> 3);
  for (int f = 0; f < 10; ++f) {
    std::ofstream out(staging + "/big" + std::to_string(f), std::ios::binary);
    for (int i = 0; i < 10; ++i) out << chunk;
  }
  pb::CommitResponse commit;
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(Commit(volume, "big:1", "100 MiB", &commit).ok());
  auto t1 = std::chrono::steady_clock::now();
  pb::SaveResponse saved;
  ASSERT_TRUE(Save("big:1", work_ + "/big.tar", pb::SaveRequest::DOCKER, {}, &saved).ok());
  auto t2 = std::chrono::steady_clock::now();
  ASSERT_TRUE(Save("big:1", work_ + "/big-oci", pb::SaveRequest::OCI, {}, &saved).ok());
  auto t3 = std::chrono::steady_clock::now();
  auto seconds = [](auto a, auto b) { return std::chrono::duration<double>(b - a).count(); };
  printf("[measure] driver=%s commit=%.2fs save-docker=%.2fs save-oci=%.2fs bytes=%lld\n",
         GetParam().c_str(), seconds(t0, t1), seconds(t1, t2), seconds(t2, t3),
         static_cast<long long>(saved.bytes()));
}

INSTANTIATE_TEST_SUITE_P(Drivers, HistoryRootTest, ::testing::Values("overlay", "vfs"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace strata::admintest
