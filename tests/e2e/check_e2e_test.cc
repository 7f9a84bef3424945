// End-to-end tests of issue 8's checks, backups and full disks, with the real strata-csi and
// stratactl binaries on the overlay driver: a layer folder removed behind the plugin's back
// (start-up marks the volume abnormal, a retried stage refuses), `stratactl check` and
// `--repair`, `stratactl backup` and the documented restore, and the full-disk CSI sequence on
// a small loop-file ext4. Needs root.

#include <dirent.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "node/paths.h"
#include "tests/e2e/csi_calls.h"
#include "tests/e2e/e2e_util.h"
#include "tests/e2e/plugin_process.h"

#ifndef STRATA_CSI_BINARY
#error "STRATA_CSI_BINARY must name the strata-csi binary"
#endif
#ifndef STRATACTL_BINARY
#error "STRATACTL_BINARY must name the stratactl binary"
#endif

namespace strata::e2e {
namespace {

namespace pb = strata::admin::v1;
using ::csi::v1::VolumeCapability;

// Runs `command` with sh -c; its exit code, output (stdout and stderr) in `output`.
int RunShell(const std::string& command, std::string* output = nullptr) {
  FILE* pipe = popen(("(" + command + ") 2>&1").c_str(), "r");
  if (pipe == nullptr) return -1;
  std::string text;
  char buffer[512];
  size_t n;
  while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) text.append(buffer, n);
  int status = pclose(pipe);
  if (output != nullptr) *output = text;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// Writes up to `bytes` of non-zero data to `path`; stops quietly at ENOSPC. Bytes written.
int64_t WriteData(const std::string& path, int64_t bytes, char fill) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return 0;
  std::string block(1 << 20, fill);
  int64_t written = 0;
  while (written < bytes) {
    ssize_t n = write(fd, block.data(), std::min<int64_t>(block.size(), bytes - written));
    if (n <= 0) break;
    written += n;
  }
  (void)fsync(fd);
  close(fd);
  return written;
}

// The sample image (tools/make-sample-image.sh) as an OCI layout, made once per process.
std::string g_samples;

class SamplesEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    if (geteuid() != 0) return;
    char pattern[] = "/var/tmp/strata-check-samples-XXXXXX";
    g_samples = mkdtemp(pattern);
    std::string command = std::string(STRATA_SOURCE_DIR) + "/tools/make-sample-image.sh " +
                          g_samples + "/layout v1 >/dev/null";
    ASSERT_EQ(std::system(command.c_str()), 0) << command;
  }
  void TearDown() override {
    if (!g_samples.empty()) (void)node::RemoveTree(g_samples);
  }
};
const auto* const kEnvironment = ::testing::AddGlobalTestEnvironment(new SamplesEnvironment);

// A ~200 MB ext4 on a loop device, set up with losetup and always taken down.
class LoopExt4 {
 public:
  ~LoopExt4() {
    if (!mount_point_.empty()) {
      UnmountTree();
      if (umount2(mount_point_.c_str(), 0) != 0) umount2(mount_point_.c_str(), MNT_DETACH);
    }
    if (!device_.empty()) (void)RunShell("losetup -d " + device_);
    if (!image_.empty()) unlink(image_.c_str());
    if (!mount_point_.empty()) rmdir(mount_point_.c_str());
  }
  // "" on success, else why not.
  std::string Make(const std::string& dir, int64_t size_mb) {
    image_ = dir + "/ext4.img";
    std::string output;
    if (RunShell("truncate -s " + std::to_string(size_mb) + "M " + image_ +
                     " && mkfs.ext4 -q -F -m 0 " + image_,
                 &output) != 0)
      return "mkfs.ext4: " + output;
    if (RunShell("losetup -f --show " + image_, &output) != 0) return "losetup: " + output;
    device_ = output.substr(0, output.find('\n'));
    mount_point_ = dir + "/ext4";
    if (mkdir(mount_point_.c_str(), 0755) != 0) return "mkdir failed";
    if (RunShell("mount -t ext4 " + device_ + " " + mount_point_, &output) != 0) {
      rmdir(mount_point_.c_str());
      mount_point_.clear();
      return "mount: " + output;
    }
    return "";
  }
  // What the plugin mounted inside the loop filesystem (not the loop filesystem itself).
  void UnmountTree() {
    std::vector<std::string> mounts = MountsUnder(mount_point_);
    for (auto it = mounts.rbegin(); it != mounts.rend(); ++it)
      if (*it != mount_point_) umount2(it->c_str(), MNT_DETACH);
  }
  const std::string& mount_point() const { return mount_point_; }
  int64_t FreeBytes() const {
    struct statvfs fs;
    if (statvfs(mount_point_.c_str(), &fs) != 0) return -1;
    return static_cast<int64_t>(fs.f_bavail) * fs.f_frsize;
  }

 private:
  std::string image_, device_, mount_point_;
};

class CheckE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "end-to-end tests mount filesystems: run as root";
    char pattern[] = "/var/tmp/strata-check-e2e-XXXXXX";
    dir_ = mkdtemp(pattern);
    pods_ = dir_ + "/kubelet";
    ASSERT_TRUE(node::MakeDirs(pods_).ok());
  }
  void TearDown() override {
    if (dir_.empty()) return;
    if (plugin_) plugin_->Kill();
    disk_.reset();  // the loop device goes whatever happened (after the plugin let go of it)
    UnmountUnder(dir_);
    if (!HasFailure())
      (void)node::RemoveTree(dir_);
    else
      std::cerr << "kept " << dir_ << " for inspection (plugin.log)\n";
  }

  static void UnmountUnder(const std::string& dir) { UnmountAllUnder(dir); }

  // A plugin on this test's socket; the store is `root`, or dir_/root.
  void StartPlugin(const std::string& root = "") {
    if (!plugin_)
      plugin_ = std::make_unique<PluginProcess>(STRATA_CSI_BINARY, dir_, "overlay", root);
    std::string error;
    ASSERT_TRUE(plugin_->Start({}, &error)) << error << "\n" << Slurp(dir_ + "/plugin.log");
  }
  // SIGTERM; the plugin must exit 0.
  void StopPlugin() { ASSERT_EQ(plugin_->Stop(), 0) << Slurp(dir_ + "/plugin.log"); }

  std::string Stratactl(const std::string& args, int* code) {
    std::string output;
    *code = RunShell(std::string(STRATACTL_BINARY) + " --admin-endpoint unix://" +
                         plugin_->admin_socket() + " " + args,
                     &output);
    return output;
  }

  void Import(const std::string& name) {
    pb::ImportImageRequest request;
    request.set_path(g_samples + "/layout");
    request.set_name(name);
    pb::ImportImageResponse response;
    grpc::Status status = plugin_->admin().ImportImage(CallContext(120).get(), request, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }
  std::string Create(const std::string& name, const std::string& image) {
    ::csi::v1::CreateVolumeRequest request;
    request.set_name(name);
    if (!image.empty()) (*request.mutable_parameters())["image"] = image;
    *request.add_volume_capabilities() = MountCapability();
    ::csi::v1::CreateVolumeResponse response;
    grpc::Status status =
        plugin_->controller().CreateVolume(CallContext().get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response.volume().volume_id();
  }
  grpc::Status Stage(const std::string& id, const std::string& staging) {
    ::csi::v1::NodeStageVolumeRequest request;
    request.set_volume_id(id);
    request.set_staging_target_path(staging);
    *request.mutable_volume_capability() = MountCapability();
    ::csi::v1::NodeStageVolumeResponse response;
    return plugin_->node().NodeStageVolume(CallContext().get(), request, &response);
  }
  grpc::Status Unstage(const std::string& id, const std::string& staging) {
    ::csi::v1::NodeUnstageVolumeRequest request;
    request.set_volume_id(id);
    request.set_staging_target_path(staging);
    ::csi::v1::NodeUnstageVolumeResponse response;
    return plugin_->node().NodeUnstageVolume(CallContext().get(), request, &response);
  }
  grpc::Status Delete(const std::string& id) {
    ::csi::v1::DeleteVolumeRequest request;
    request.set_volume_id(id);
    ::csi::v1::DeleteVolumeResponse response;
    return plugin_->controller().DeleteVolume(CallContext().get(), request, &response);
  }
  grpc::Status Snapshot(const std::string& volume_id, const std::string& name,
                        std::string* snapshot_id = nullptr) {
    ::csi::v1::CreateSnapshotRequest request;
    request.set_source_volume_id(volume_id);
    request.set_name(name);
    ::csi::v1::CreateSnapshotResponse response;
    grpc::Status status =
        plugin_->controller().CreateSnapshot(CallContext(120).get(), request, &response);
    if (snapshot_id != nullptr) *snapshot_id = response.snapshot().snapshot_id();
    return status;
  }
  grpc::Status DeleteSnapshot(const std::string& id) {
    ::csi::v1::DeleteSnapshotRequest request;
    request.set_snapshot_id(id);
    ::csi::v1::DeleteSnapshotResponse response;
    return plugin_->controller().DeleteSnapshot(CallContext().get(), request, &response);
  }
  ::csi::v1::NodeGetVolumeStatsResponse Stats(const std::string& id, const std::string& path) {
    ::csi::v1::NodeGetVolumeStatsRequest request;
    request.set_volume_id(id);
    request.set_volume_path(path);
    ::csi::v1::NodeGetVolumeStatsResponse response;
    grpc::Status status =
        plugin_->node().NodeGetVolumeStats(CallContext().get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response;
  }
  std::vector<pb::Layer> Layers() {
    pb::ListLayersResponse response;
    grpc::Status status = plugin_->admin().ListLayers(CallContext().get(), {}, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return {response.layers().begin(), response.layers().end()};
  }
  std::string LayersDir() const { return plugin_->root() + "/overlay/layers"; }

  std::string dir_;
  std::string pods_;
  std::unique_ptr<PluginProcess> plugin_;
  std::unique_ptr<LoopExt4> disk_;
};

// Case 6: a layer folder removed while its volume is staged. Today start-up says nothing,
// stats say "volume is mounted" and a retried stage answers OK.
TEST_F(CheckE2eTest, MissingLayerFolderMarksVolumeAbnormalAtStartAndRefusesRestage) {
  StartPlugin();
  Import("sample:v1");
  std::string id = Create("pvc-lost-lower", "sample:v1");
  std::string staging = pods_ + "/staging";
  ASSERT_TRUE(Stage(id, staging).ok());
  EXPECT_FALSE(Stats(id, staging).volume_condition().abnormal());
  StopPlugin();

  std::vector<std::string> layers = Entries(LayersDir());
  ASSERT_EQ(layers.size(), 3u);
  std::string lost = layers[0];
  ASSERT_TRUE(node::RemoveTree(LayersDir() + "/" + lost).ok());

  StartPlugin();
  std::string log = Slurp(dir_ + "/plugin.log");
  EXPECT_NE(log.find("volume is abnormal"), std::string::npos) << log;
  EXPECT_NE(log.find("overlay id " + lost), std::string::npos) << log;

  ::csi::v1::NodeGetVolumeStatsResponse stats = Stats(id, staging);
  EXPECT_TRUE(stats.volume_condition().abnormal());
  EXPECT_NE(stats.volume_condition().message().find("overlay id " + lost), std::string::npos)
      << stats.volume_condition().message();

  grpc::Status again = Stage(id, staging);
  EXPECT_EQ(again.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << again.error_message();
  EXPECT_NE(again.error_message().find(lost), std::string::npos) << again.error_message();

  // The volume can still be taken down and deleted.
  EXPECT_TRUE(Unstage(id, staging).ok());
  EXPECT_EQ(Stage(id, staging).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_TRUE(Delete(id).ok());
}

// `stratactl check` finds a removed layer folder and a planted unknown folder, and a mount
// under the store no record owns; --repair unmounts that mount but never removes the folder.
TEST_F(CheckE2eTest, StratactlCheckFindsRemovedLayerAndPlantedUnknownFolder) {
  StartPlugin();
  Import("sample:v1");
  std::string id = Create("pvc-check", "sample:v1");
  int code = -1;
  std::string clean = Stratactl("check", &code);
  EXPECT_EQ(code, 0) << clean;
  EXPECT_NE(clean.find("No problems found"), std::string::npos) << clean;

  std::vector<std::string> layers = Entries(LayersDir());
  ASSERT_EQ(layers.size(), 3u);
  std::string lost = layers[1];
  ASSERT_TRUE(node::RemoveTree(LayersDir() + "/" + lost).ok());
  const std::string planted = LayersDir() + "/zzzzplanted";
  ASSERT_TRUE(node::MakeDirs(planted + "/etc").ok());
  Spit(planted + "/etc/precious", "not Strata's to delete");
  // A mount under the store's volumes folder that no record owns.
  const std::string stray = plugin_->root() + "/volumes/stray";
  ASSERT_TRUE(node::MakeDirs(stray).ok());
  ASSERT_TRUE(node::MakeDirs(dir_ + "/stray-source").ok());
  ASSERT_EQ(mount((dir_ + "/stray-source").c_str(), stray.c_str(), nullptr, MS_BIND, nullptr), 0);

  std::string report = Stratactl("check", &code);
  EXPECT_EQ(code, 3) << report;
  EXPECT_NE(report.find("missing-layer"), std::string::npos) << report;
  EXPECT_NE(report.find("overlay id " + lost), std::string::npos) << report;
  EXPECT_NE(report.find(id), std::string::npos) << "the volume on that layer: " << report;
  EXPECT_NE(report.find("unknown-content"), std::string::npos) << report;
  EXPECT_NE(report.find("zzzzplanted"), std::string::npos) << report;
  EXPECT_NE(report.find("stratactl quarantine list"), std::string::npos) << report;
  EXPECT_NE(report.find("unrecorded-mount"), std::string::npos) << report;
  EXPECT_NE(report.find(stray), std::string::npos) << report;

  std::string json = Stratactl("check -o json", &code);
  EXPECT_EQ(code, 3) << json;
  EXPECT_NE(json.find("\"kind\": \"unknown-content\""), std::string::npos) << json;

  std::string repaired = Stratactl("check --repair", &code);
  EXPECT_EQ(code, 3) << "the missing layer is left: " << repaired;
  EXPECT_EQ(Slurp(planted + "/etc/precious"), "not Strata's to delete") << repaired;
  EXPECT_TRUE(MountsUnder(stray).empty()) << repaired;
  EXPECT_TRUE(Exists(dir_ + "/stray-source"));
  std::string after = Stratactl("check", &code);
  EXPECT_EQ(after.find("unrecorded-mount"), std::string::npos) << after;
  EXPECT_NE(after.find("zzzzplanted"), std::string::npos) << after;

  // What check left for start-up: a restart moves the planted folder to quarantine, whole.
  ASSERT_EQ(plugin_->Stop(), 0);
  StartPlugin();
  EXPECT_FALSE(Exists(planted)) << "start-up left unknown content in the store";
  std::string listed = Stratactl("quarantine list", &code);
  EXPECT_EQ(code, 0) << listed;
  EXPECT_NE(listed.find("zzzzplanted"), std::string::npos) << listed;
  std::string found;
  for (const std::string& entry : Entries(plugin_->root() + "/quarantine")) {
    std::string candidate = plugin_->root() + "/quarantine/" + entry;
    if (entry.rfind("zzzzplanted", 0) == 0) found = candidate;
  }
  ASSERT_FALSE(found.empty()) << listed;
  EXPECT_EQ(Slurp(found + "/content/etc/precious"), "not Strata's to delete") << found;
  after = Stratactl("check", &code);
  EXPECT_EQ(after.find("unknown-content"), std::string::npos) << after;
}

// A mount in use is left by --repair (a plain unmount fails with EBUSY).
TEST_F(CheckE2eTest, CheckRepairLeavesAMountInUse) {
  StartPlugin();
  const std::string stray = plugin_->root() + "/volumes/busy";
  ASSERT_TRUE(node::MakeDirs(stray).ok());
  ASSERT_TRUE(node::MakeDirs(dir_ + "/busy-source").ok());
  ASSERT_EQ(mount((dir_ + "/busy-source").c_str(), stray.c_str(), nullptr, MS_BIND, nullptr), 0);
  int fd = open((stray + "/open-file").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0);
  int code = -1;
  std::string report = Stratactl("check --repair", &code);
  EXPECT_EQ(code, 3) << report;
  EXPECT_NE(report.find("left mounted"), std::string::npos) << report;
  EXPECT_FALSE(MountsUnder(stray).empty());
  close(fd);
  umount2(stray.c_str(), 0);
}

// `stratactl backup` never replaces a file nor writes into the store; the documented restore
// (stop, copy the backup over strata.db, remove -wal/-shm, start) serves the backed-up state.
TEST_F(CheckE2eTest, BackupAndDocumentedRestoreServeTheBackedUpState) {
  StartPlugin();
  Import("sample:v1");
  std::string id = Create("pvc-backup", "sample:v1");
  std::string staging = pods_ + "/staging";
  ASSERT_TRUE(Stage(id, staging).ok());
  Spit(staging + "/data/kept.txt", "written before the backup");
  ASSERT_TRUE(Unstage(id, staging).ok());

  const std::string backup = dir_ + "/strata-backup.db";
  int code = -1;
  std::string out = Stratactl("backup " + backup, &code);
  ASSERT_EQ(code, 0) << out;
  EXPECT_NE(out.find("Backed up"), std::string::npos) << out;
  struct stat st;
  ASSERT_EQ(stat(backup.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  std::string again = Stratactl("backup " + backup, &code);
  EXPECT_EQ(code, 1) << again;
  EXPECT_NE(again.find("ALREADY_EXISTS"), std::string::npos) << again;
  std::string inside = Stratactl("backup " + plugin_->root() + "/copy.db", &code);
  EXPECT_EQ(code, 1) << inside;
  EXPECT_NE(inside.find("INVALID_ARGUMENT"), std::string::npos) << inside;
  EXPECT_FALSE(Exists(plugin_->root() + "/copy.db"));

  // Changes after the backup (metadata only: content made later would be unknown to it).
  pb::RemoveImageRequest remove;
  remove.set_name("sample:v1");
  pb::RemoveImageResponse removed;
  ASSERT_TRUE(plugin_->admin().RemoveImage(CallContext().get(), remove, &removed).ok());
  StopPlugin();

  // Restore as docs/operations.md says.
  const std::string db = plugin_->root() + "/strata.db";
  ASSERT_EQ(RunShell("cp " + backup + " " + db + " && rm -f " + db + "-wal " + db + "-shm"), 0);
  StartPlugin();
  pb::ListImagesResponse images;
  ASSERT_TRUE(plugin_->admin().ListImages(CallContext().get(), {}, &images).ok());
  ASSERT_EQ(images.images_size(), 1);
  EXPECT_EQ(images.images(0).name(), "sample:v1");
  ASSERT_TRUE(Stage(id, staging).ok());
  EXPECT_EQ(Slurp(staging + "/data/kept.txt"), "written before the backup");
  EXPECT_EQ(Slurp(staging + "/etc/motd"), "Welcome to a Strata layered volume.\n");
  EXPECT_FALSE(Stats(id, staging).volume_condition().abnormal());
  ASSERT_TRUE(Unstage(id, staging).ok());
  int check_code = -1;
  std::string report = Stratactl("check", &check_code);
  EXPECT_EQ(check_code, 0) << report;
}

// Case 3 on a real small disk: the snapshot that does not fit fails with RESOURCE_EXHAUSTED
// and leaves nothing half-made; on the full disk deletes work and the plugin restarts; after
// freeing space a snapshot works again.
TEST_F(CheckE2eTest, FullDiskSequenceOnSmallLoopExt4) {
  disk_ = std::make_unique<LoopExt4>();
  std::string made = disk_->Make(dir_, 200);
  if (!made.empty()) GTEST_SKIP() << "no loop ext4 here: " << made;
  LoopExt4& disk = *disk_;
  const std::string root = disk.mount_point() + "/root";
  StartPlugin(root);
  std::string id = Create("pvc-full", "");
  std::string spare = Create("pvc-spare", "");
  std::string staging = pods_ + "/staging";
  ASSERT_TRUE(Stage(id, staging).ok());

  std::vector<std::string> snapshots;
  grpc::Status failed;
  for (int i = 0; i < 20; ++i) {
    WriteData(staging + "/file-" + std::to_string(i), int64_t{24} << 20,
              static_cast<char>('a' + i));
    std::string snapshot_id;
    grpc::Status status = Snapshot(id, "snap-" + std::to_string(i), &snapshot_id);
    if (!status.ok()) {
      failed = status;
      break;
    }
    snapshots.push_back(snapshot_id);
  }
  ASSERT_FALSE(failed.ok()) << "the disk never filled";
  EXPECT_EQ(failed.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << failed.error_message();
  std::cerr << "snapshots before the disk was full: " << snapshots.size()
            << ", free after the failure: " << disk.FreeBytes() << " bytes\n";
  ASSERT_FALSE(snapshots.empty());

  // Nothing half-made: no creating rows, no partial copies.
  for (const pb::Layer& layer : Layers()) EXPECT_EQ(layer.state(), "ready") << layer.chain_id();
  pb::ListSnapshotsResponse listed;
  ASSERT_TRUE(plugin_->admin().ListSnapshots(CallContext().get(), {}, &listed).ok());
  for (const pb::Snapshot& snapshot : listed.snapshots())
    EXPECT_EQ(snapshot.state(), "ready") << snapshot.name();
  for (const std::string& name : Entries(LayersDir()))
    EXPECT_NE(name.rfind(".tmp-", 0), 0u) << "partial copy left: " << name;

  // Fill the disk to the last block, then delete on it.
  WriteData(staging + "/filler-1", int64_t{1} << 30, 'f');
  EXPECT_LT(disk.FreeBytes(), int64_t{1} << 20);
  grpc::Status deleted = DeleteSnapshot(snapshots.back());
  EXPECT_TRUE(deleted.ok()) << deleted.error_message();
  snapshots.pop_back();
  WriteData(staging + "/filler-2", int64_t{1} << 30, 'g');
  EXPECT_LT(disk.FreeBytes(), int64_t{1} << 20);
  grpc::Status spare_deleted = Delete(spare);
  EXPECT_TRUE(spare_deleted.ok()) << "DeleteVolume on the full disk: "
                                  << spare_deleted.error_message();

  // A restart on the full disk: exit 0, then ready.
  WriteData(staging + "/filler-3", int64_t{1} << 30, 'h');
  StopPlugin();
  StartPlugin(root);
  int code = -1;
  std::string report = Stratactl("check", &code);
  EXPECT_EQ(code, 0) << report;

  // Free space (the pod deletes its files): a snapshot works again with no manual repair.
  for (const std::string& name : Entries(staging)) unlink((staging + "/" + name).c_str());
  std::string after;
  grpc::Status again = Snapshot(id, "after-free", &after);
  EXPECT_TRUE(again.ok()) << again.error_message();
  EXPECT_TRUE(DeleteSnapshot(after).ok());
  for (const std::string& snapshot : snapshots) EXPECT_TRUE(DeleteSnapshot(snapshot).ok());
  EXPECT_TRUE(Unstage(id, staging).ok());
  EXPECT_TRUE(Delete(id).ok());
  StopPlugin();
  plugin_.reset();
}

}  // namespace
}  // namespace strata::e2e
