// End-to-end, hostile requests (issue 9's numbered cases 1, 2, 5, 8, 10 and 11): the real
// strata-csi binary on the overlay driver, driven over its sockets as an attacker with access to
// them would. Each case checks the answer's code, that the message is short and clear, and that
// nothing changed on the host or in the store. Needs root (real overlay mounts).

#include <dirent.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "node/images/digest.h"
#include "node/paths.h"
#include "tests/e2e/csi_calls.h"
#include "tests/e2e/e2e_util.h"
#include "tests/e2e/overlay_plugin_test.h"
#include "tests/e2e/plugin_process.h"

namespace strata::e2e {
namespace {

// The per-mount options (mountinfo's sixth field, e.g. "rw,nosuid,nodev") of `target`.
std::string MountOptionsOf(const std::string& target) {
  std::istringstream table(Slurp("/proc/self/mountinfo"));
  std::string line, options;
  while (std::getline(table, line)) {
    std::istringstream fields(line);
    std::string id, parent, device, root, point, opts;
    fields >> id >> parent >> device >> root >> point >> opts;
    if (point == target) options = opts;  // the last one is on top
  }
  return options;
}

// Clients get the real code only if the message fits gRPC's default metadata limit; Strata
// caps every message (csi/request_validation.h kMaxMessageBytes) well below it.
constexpr size_t kShortMessage = 2048;

class HostileRequestsTest : public OverlayPluginTest {
 protected:
  HostileRequestsTest() : OverlayPluginTest("strata-hostile") {}
  void SetUp() override {
    OverlayPluginTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    pods_ = dir_ + "/pods";
    ASSERT_EQ(mkdir(pods_.c_str(), 0755), 0);
  }

  grpc::Status Create(const std::string& name, ::csi::v1::CreateVolumeResponse* response) {
    return CreateVolume(*plugin_, name, response);
  }
  std::string MustCreate(const std::string& name) {
    ::csi::v1::CreateVolumeResponse response;
    grpc::Status status = Create(name, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response.volume().volume_id();
  }
  grpc::Status Stage(const std::string& id, const std::string& staging) {
    return StageVolume(*plugin_, id, staging);
  }
  grpc::Status Publish(const std::string& id, const std::string& staging, const std::string& target,
                       const std::vector<std::string>& flags = {}) {
    return PublishVolume(*plugin_, id, staging, target, flags);
  }
  grpc::Status PublishEphemeral(const std::string& id, const std::string& target) {
    ::csi::v1::NodePublishVolumeRequest request;
    request.set_volume_id(id);
    request.set_target_path(target);
    *request.mutable_volume_capability() = MountCapability();
    (*request.mutable_volume_context())["csi.storage.k8s.io/ephemeral"] = "true";
    ::csi::v1::NodePublishVolumeResponse response;
    return plugin_->node().NodePublishVolume(CallContext().get(), request, &response);
  }
  grpc::Status Unpublish(const std::string& id, const std::string& target) {
    return UnpublishVolume(*plugin_, id, target);
  }
  std::string MustSnapshot(const std::string& volume_id, const std::string& name) {
    ::csi::v1::CreateSnapshotResponse response;
    grpc::Status status = CreateSnapshot(*plugin_, volume_id, name, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response.snapshot().snapshot_id();
  }
  int VolumeCount() {
    ::csi::v1::ListVolumesResponse listed;
    grpc::Status status = ListVolumes(*plugin_, &listed);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return listed.entries_size();
  }
  // A volume staged at pods/<name>-staging and published at pods/<name>; returns its id.
  std::string PublishedVolume(const std::string& name) {
    std::string id = MustCreate(name);
    std::string staging = pods_ + "/" + name + "-staging";
    grpc::Status staged = Stage(id, staging);
    EXPECT_TRUE(staged.ok()) << staged.error_message();
    grpc::Status published = Publish(id, staging, pods_ + "/" + name);
    EXPECT_TRUE(published.ok()) << published.error_message();
    return id;
  }

  std::string pods_;
};

// Case 1: an ephemeral volume id names a folder; a hostile one is refused before anything is
// recorded or mounted, and leaves no row and no folder.
TEST_F(HostileRequestsTest, EphemeralIdsNeverBecomePaths) {
  const std::string escape = "/tmp/strata-hostile-escape-" + std::to_string(getpid());
  const std::vector<std::string> ids = {
      "../../../../../../../../.." + escape,
      "..",
      ".",
      "a/b",
      "../overlay/layers/x",
      std::string(1 << 20, 'a'),
      std::string("nul\0byte", 8),
  };
  const std::vector<std::string> store_before = Entries(plugin_->root());
  for (const std::string& id : ids) {
    SCOPED_TRACE(id.substr(0, 40));
    grpc::Status status = PublishEphemeral(id, pods_ + "/inline");
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
    EXPECT_LT(status.error_message().size(), kShortMessage);
  }
  EXPECT_FALSE(Exists(escape)) << "an id escaped the store";
  EXPECT_TRUE(MountsUnder(dir_).empty()) << "a refused publish mounted something";
  EXPECT_TRUE(MountsUnder(escape).empty());
  EXPECT_EQ(VolumeCount(), 0) << "a refused publish left a volume row";
  EXPECT_EQ(Entries(plugin_->root()), store_before) << "a refused publish changed the store";
  EXPECT_TRUE(Entries(plugin_->root() + "/volumes").empty()) << "an ephemeral folder stayed";
  // ".." did not break the store: a persistent volume and a good ephemeral one still work.
  MustCreate("pvc-after");
  grpc::Status good = PublishEphemeral("csi-good-1", pods_ + "/inline");
  ASSERT_TRUE(good.ok()) << good.error_message();
  ASSERT_TRUE(Unpublish("csi-good-1", pods_ + "/inline").ok());
}

// Case 2: NodeUnpublishVolume only undoes a (volume, target) pair Strata recorded.
TEST_F(HostileRequestsTest, UnpublishTouchesOnlyRecordedPairs) {
  const std::string a = PublishedVolume("pvc-a");
  const std::string b = MustCreate("pvc-b");
  const std::string a_target = pods_ + "/pvc-a";
  const std::string a_staging = pods_ + "/pvc-a-staging";
  Spit(a_target + "/data", "A's data");

  const std::string foreign = pods_ + "/foreign";
  ASSERT_EQ(mkdir(foreign.c_str(), 0755), 0);
  ASSERT_EQ(mount("tmpfs", foreign.c_str(), "tmpfs", 0, "size=1m"), 0) << strerror(errno);
  Spit(foreign + "/mine", "not Strata's");

  grpc::Status status = Unpublish(a, foreign);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << status.error_message();
  EXPECT_EQ(Slurp(foreign + "/mine"), "not Strata's") << "a foreign mount was taken down";

  status = Unpublish(b, a_target);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << status.error_message();
  EXPECT_EQ(Slurp(a_target + "/data"), "A's data") << "B's unpublish took down A's target";

  status = Unpublish(b, a_staging);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << status.error_message();
  EXPECT_EQ(MountsUnder(a_staging).size(), 1u) << "B's unpublish took down A's staging mount";
  status = Unpublish(a, a_staging);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION)
      << "a staging path is not a publication";
  EXPECT_EQ(MountsUnder(a_staging).size(), 1u);

  // Publishing onto the staging path itself is refused.
  status = Publish(a, a_staging, a_staging);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();

  // An unknown target that holds no mount: done already, OK (idempotent), nothing removed.
  const std::string plain = pods_ + "/plain";
  ASSERT_EQ(mkdir(plain.c_str(), 0755), 0);
  Spit(plain + "/keep", "x");
  EXPECT_TRUE(Unpublish(a, plain).ok());
  EXPECT_TRUE(Unpublish(a, pods_ + "/never-made").ok());
  EXPECT_EQ(Slurp(plain + "/keep"), "x");

  // The real pair still unpublishes.
  ASSERT_TRUE(Unpublish(a, a_target).ok());
  EXPECT_TRUE(MountsUnder(a_target).empty());
  EXPECT_EQ(Slurp(foreign + "/mine"), "not Strata's");
  umount2(foreign.c_str(), MNT_DETACH);
}

// Case 5: `save` writes its output new; with force it replaces only a regular file; never a
// socket, folder, FIFO, or anything inside the store.
TEST_F(HostileRequestsTest, SaveNeverReplacesWhatIsNotItsOwn) {
  const std::string id = PublishedVolume("pvc-save");
  Spit(pods_ + "/pvc-save/hello", "hello");
  const std::string snapshot = MustSnapshot(id, "snap-save");

  auto save = [&](const std::string& path, bool force) {
    strata::admin::v1::SaveRequest request;
    request.set_ref(snapshot);
    request.set_path(path);
    request.set_force(force);
    strata::admin::v1::SaveResponse response;
    return plugin_->admin().Save(CallContext(120).get(), request, &response);
  };
  const std::string existing = dir_ + "/existing.tar";
  Spit(existing, "precious");
  grpc::Status status = save(existing, false);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::ALREADY_EXISTS) << status.error_message();
  EXPECT_EQ(Slurp(existing), "precious");

  const std::string fifo = dir_ + "/fifo";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  const std::string folder = dir_ + "/folder";
  ASSERT_EQ(mkdir(folder.c_str(), 0755), 0);
  const std::string link = dir_ + "/link";
  ASSERT_EQ(symlink(existing.c_str(), link.c_str()), 0);
  for (const std::string& path :
       {fifo, folder, link, plugin_->admin_socket(), dir_ + "/csi.sock"}) {
    SCOPED_TRACE(path);
    status = save(path, /*force=*/true);
    EXPECT_FALSE(status.ok());
    EXPECT_NE(status.error_code(), grpc::StatusCode::UNKNOWN) << status.error_message();
  }
  struct stat st;
  ASSERT_EQ(lstat(fifo.c_str(), &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode));
  ASSERT_EQ(lstat(plugin_->admin_socket().c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  ASSERT_EQ(lstat(link.c_str(), &st), 0);
  EXPECT_TRUE(S_ISLNK(st.st_mode));
  EXPECT_EQ(Slurp(existing), "precious") << "a symlink was followed";

  const std::string db = plugin_->root() + "/strata.db";
  const std::string db_digest = images::Sha256Digest(Slurp(db));
  for (const std::string& path : {db, plugin_->root() + "/new.tar"}) {
    status = save(path, /*force=*/true);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
  }
  EXPECT_FALSE(Exists(plugin_->root() + "/new.tar"));
  EXPECT_EQ(images::Sha256Digest(Slurp(db)), db_digest) << "save wrote over the store's database";

  // What save is for still works: a new file, and --force over a regular file.
  status = save(dir_ + "/new.tar", false);
  EXPECT_TRUE(status.ok()) << status.error_message();
  status = save(existing, true);
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_NE(Slurp(existing), "precious");
}

// Case 8: names, ids and values of any length get a short INVALID_ARGUMENT (so a default gRPC
// client sees the real code, not "metadata size exceeds limit"), and change nothing.
TEST_F(HostileRequestsTest, HugeNamesAndValuesGetShortErrors) {
  const std::string huge(1 << 20, 'n');
  ::csi::v1::CreateVolumeResponse created;
  grpc::Status status = Create(huge, &created);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_LT(status.error_message().size(), kShortMessage);
  {
    ::csi::v1::CreateVolumeRequest request;
    request.set_name("pvc-param");
    (*request.mutable_parameters())["image"] = huge;
    *request.add_volume_capabilities() = MountCapability();
    status = plugin_->controller().CreateVolume(CallContext().get(), request, &created);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_LT(status.error_message().size(), kShortMessage);
  }
  EXPECT_EQ(VolumeCount(), 0);

  const std::string id = MustCreate("pvc-names");
  {
    ::csi::v1::CreateSnapshotRequest request;
    request.set_source_volume_id(id);
    request.set_name(huge);
    ::csi::v1::CreateSnapshotResponse response;
    status = plugin_->controller().CreateSnapshot(CallContext().get(), request, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_LT(status.error_message().size(), kShortMessage);
  }
  {
    ::csi::v1::ListSnapshotsResponse listed;
    ASSERT_TRUE(plugin_->controller().ListSnapshots(CallContext().get(), {}, &listed).ok());
    EXPECT_EQ(listed.entries_size(), 0) << "a refused snapshot was made";
  }
  status = Stage(huge, pods_ + "/staging");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_LT(status.error_message().size(), kShortMessage);
  status = Stage(id, "/" + huge);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_LT(status.error_message().size(), kShortMessage);
}

// Case 10: a file name that is not UTF-8 travels as bytes through the admin API's diff.
TEST_F(HostileRequestsTest, NonUtf8NamesDiffAsBytes) {
  const std::string id = PublishedVolume("pvc-utf");
  const std::string before = MustSnapshot(id, "snap-before");
  const std::string name = std::string("caf\xe9-\xff\xfe", 7);
  Spit(pods_ + "/pvc-utf/" + name, "latin-1 name");
  strata::admin::v1::DiffRequest request;
  request.set_from_ref(before);
  request.set_to_ref(id);
  strata::admin::v1::DiffResponse response;
  grpc::Status status = plugin_->admin().Diff(CallContext(60).get(), request, &response);
  ASSERT_TRUE(status.ok()) << status.error_code() << " " << status.error_message();
  ASSERT_EQ(response.changes_size(), 1);
  EXPECT_EQ(response.changes(0).path(), "/" + name);
  EXPECT_EQ(response.changes(0).kind(), strata::admin::v1::Change::ADDED);
}

// Case 11: an import path that is a symlink loop is a clear INVALID_ARGUMENT naming the user's
// path, not UNKNOWN, and never a scratch path or a repeated prefix.
TEST_F(HostileRequestsTest, ImportOfASymlinkLoopIsAClearError) {
  const std::string a = dir_ + "/loop-a";
  const std::string b = dir_ + "/loop-b";
  ASSERT_EQ(symlink(b.c_str(), a.c_str()), 0);
  ASSERT_EQ(symlink(a.c_str(), b.c_str()), 0);
  strata::admin::v1::ImportImageRequest request;
  request.set_path(a);
  request.set_name("loop:1");
  strata::admin::v1::ImportImageResponse response;
  grpc::Status status = plugin_->admin().ImportImage(CallContext(60).get(), request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
  EXPECT_NE(status.error_message().find(a), std::string::npos) << status.error_message();
  EXPECT_EQ(status.error_message().find(plugin_->root()), std::string::npos)
      << "the error names a scratch path: " << status.error_message();
  strata::admin::v1::ListImagesResponse images;
  ASSERT_TRUE(plugin_->admin().ListImages(CallContext().get(), {}, &images).ok());
  EXPECT_EQ(images.images_size(), 0);
}

// Mount options: the safe VFS flags Kubernetes users put in mountOptions reach the pod's mount,
// nodev is always there (device nodes from an image never work in a volume: docs/security.md),
// and anything else (filesystem options, bind tricks) is refused before anything is mounted,
// with the spec's "exceeds capabilities" code, FAILED_PRECONDITION.
TEST_F(HostileRequestsTest, SafeMountOptionsReachTheMountAndOthersAreRefused) {
  const std::string id = MustCreate("pvc-flags");
  const std::string staging = pods_ + "/pvc-flags-staging";
  ASSERT_TRUE(Stage(id, staging).ok());
  auto publish = [&](const std::string& target, const std::vector<std::string>& flags) {
    return Publish(id, staging, target, flags);
  };

  const std::string plain = pods_ + "/plain";
  ASSERT_TRUE(publish(plain, {}).ok());
  std::string options = MountOptionsOf(plain);
  EXPECT_NE(options.find("nodev"), std::string::npos) << options;
  EXPECT_EQ(options.find("noexec"), std::string::npos) << options;

  const std::string hardened = pods_ + "/hardened";
  grpc::Status status = publish(hardened, {"nosuid", "noexec", "noatime", "ro"});
  ASSERT_TRUE(status.ok()) << status.error_message();
  options = MountOptionsOf(hardened);
  for (const char* flag : {"ro", "nosuid", "nodev", "noexec", "noatime"})
    EXPECT_NE(options.find(flag), std::string::npos) << flag << " missing from " << options;

  for (const std::vector<std::string>& bad :
       std::vector<std::vector<std::string>>{{"upperdir=/etc"},
                                             {"lowerdir=/"},
                                             {"remount"},
                                             {"rbind"},
                                             {"nosuid", "X-mount.mkdir"}}) {
    const std::string target = pods_ + "/bad";
    status = publish(target, bad);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << bad[0].substr(0, 20);
    EXPECT_LT(status.error_message().size(), kShortMessage);
    EXPECT_TRUE(MountsUnder(target).empty()) << bad[0];
  }
  // A flag past the size limits is malformed input rather than a capability.
  status = publish(pods_ + "/bad", {std::string(100000, 'o')});
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_LT(status.error_message().size(), kShortMessage);
  EXPECT_TRUE(MountsUnder(pods_ + "/bad").empty());
  ASSERT_TRUE(Unpublish(id, plain).ok());
  ASSERT_TRUE(Unpublish(id, hardened).ok());
}

}  // namespace
}  // namespace strata::e2e
