// Issue 8 on real overlay mounts (root): content planted in the driver's store that no record
// or label accounts for goes to <root>/quarantine byte-identical at start-up, never deleted;
// content a live mount shows stays where it is; restore makes volumes that mount; purge is the
// only delete.

#include <sys/mount.h>
#include <unistd.h>

#include "drivers/registry.h"
#include "gtest/gtest.h"
#include "node/images/digest.h"
#include "node/quarantine.h"
#include "sys/mounter.h"
#include "tests/node/node_test_util.h"

namespace strata::node {
namespace {

using testing::ReadFile;
using testing::WriteFile;

class QuarantineRootTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "mounts overlayfs: run as root";
    char pattern[] = "/var/tmp/strata-quarantine-XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    root_ = pattern;
    pods_ = root_ + "-pods";
    ASSERT_TRUE(MakeDirs(pods_).ok());
    metadata_ = std::move(*Metadata::Open(root_ + "/strata.db"));
    auto driver = drivers::NewDriver("overlay", root_);
    ASSERT_TRUE(driver.ok()) << driver.status();
    driver_ = std::move(*driver);
    mounter_ = sys::NewLinuxMounter();
    labels_ = std::make_unique<Labels>(root_ + "/labels");
    ASSERT_TRUE(labels_->Init().ok());
    quarantine_ =
        std::make_unique<Quarantine>(root_ + "/quarantine", driver_.get(), mounter_.get(), nullptr);
    layers_ = std::make_unique<LayerStore>(metadata_.get(), driver_.get(), mounter_.get(),
                                           root_ + "/tmp", images::ImportLimits{},
                                           StoreFiles{labels_.get(), quarantine_.get()});
    volumes_ = std::make_unique<VolumeManager>(
        metadata_.get(), layers_.get(), driver_.get(), mounter_.get(), nullptr,
        VolumeManagerOptions{root_, root_ + "/volumes", root_ + "/tmp", 128});
  }
  void TearDown() override {
    if (root_.empty()) return;
    for (const std::string& dir : {pods_, root_}) {
      auto table = mounter_->List();
      if (!table.ok()) continue;
      for (auto it = table->rbegin(); it != table->rend(); ++it)
        if (it->target.rfind(dir + "/", 0) == 0) umount2(it->target.c_str(), MNT_DETACH);
    }
    volumes_.reset();
    layers_.reset();
    (void)RemoveTree(root_);
    (void)RemoveTree(pods_);
  }
  // Unknown content: an active snapshot's upper (a writable layer) or a layer folder, with a
  // few files; returns a digest of the files.
  std::string Plant(const std::string& id, bool as_layer) {
    std::string dir;
    if (as_layer) {
      dir = root_ + "/overlay/layers/" + id;
      EXPECT_TRUE(MakeDirs(dir).ok());
    } else {
      EXPECT_TRUE(driver_->Prepare(id, {}, {}).ok());
      dir = driver_->DirectWriteTarget(id)->directory;
    }
    std::string digest;
    for (int i = 0; i < 5; ++i) {
      std::string content(4096 * (i + 1), static_cast<char>('a' + i));
      WriteFile(dir + "/file-" + std::to_string(i), content);
      digest += images::Sha256Digest(content);
    }
    return digest;
  }
  static std::string DigestOf(const std::string& dir) {
    std::string digest;
    for (int i = 0; i < 5; ++i)
      digest += images::Sha256Digest(ReadFile(dir + "/file-" + std::to_string(i)));
    return digest;
  }
  std::string EntryOf(const std::string& driver_id) {
    for (const QuarantineEntry& entry :
         quarantine_->List().value_or(std::vector<QuarantineEntry>{}))
      if (entry.driver_id == driver_id) return entry.name;
    return "";
  }

  std::string root_, pods_;
  std::unique_ptr<Metadata> metadata_;
  std::unique_ptr<drivers::Driver> driver_;
  std::unique_ptr<sys::Mounter> mounter_;
  std::unique_ptr<Labels> labels_;
  std::unique_ptr<Quarantine> quarantine_;
  std::unique_ptr<LayerStore> layers_;
  std::unique_ptr<VolumeManager> volumes_;
};

TEST_F(QuarantineRootTest, UnknownFoldersAreQuarantinedRestoredAndPurgedNeverDeleted) {
  // A known volume keeps the store from looking new.
  CreateVolumeParams params;
  params.name = "pvc-known";
  params.fingerprint = "known";
  auto known = volumes_->Create(params);
  ASSERT_TRUE(known.ok()) << known.status();
  const std::string active_digest = Plant("zz9", /*as_layer=*/false);
  const std::string layer_digest = Plant("zz8", /*as_layer=*/true);
  const std::string purged_digest = Plant("zz6", /*as_layer=*/false);
  // zz7 is shown by a live mount (say a pod of a plugin whose records are gone).
  Plant("zz7", false);
  auto mounts = driver_->Mounts("zz7", {});
  ASSERT_TRUE(mounts.ok()) << mounts.status();
  ASSERT_TRUE(MakeDirs(pods_ + "/live").ok());
  ASSERT_TRUE(mounter_->MountAt(mounts->at(0), pods_ + "/live").ok());

  ASSERT_TRUE(volumes_->Recover().ok());
  const std::string active_entry = EntryOf("zz9");
  const std::string layer_entry = EntryOf("zz8");
  const std::string purged_entry = EntryOf("zz6");
  ASSERT_FALSE(active_entry.empty());
  ASSERT_FALSE(layer_entry.empty());
  ASSERT_FALSE(purged_entry.empty());
  EXPECT_TRUE(EntryOf("zz7").empty()) << "mounted content is never touched";
  EXPECT_EQ(DigestOf(pods_ + "/live"), DigestOf(root_ + "/overlay/active/zz7/upper"));
  EXPECT_EQ(quarantine_->Get(active_entry)->kind, "active");
  EXPECT_EQ(quarantine_->Get(layer_entry)->kind, "layer");
  EXPECT_EQ(DigestOf(root_ + "/quarantine/" + active_entry + "/content/upper"), active_digest);
  EXPECT_EQ(DigestOf(root_ + "/quarantine/" + layer_entry + "/content"), layer_digest);
  EXPECT_NE(access((root_ + "/overlay/active/zz9").c_str(), F_OK), 0);
  EXPECT_NE(access((root_ + "/overlay/layers/zz8").c_str(), F_OK), 0);
  struct stat kept, store;
  ASSERT_EQ(stat((root_ + "/quarantine").c_str(), &kept), 0);
  ASSERT_EQ(stat((root_ + "/overlay").c_str(), &store), 0);
  EXPECT_EQ(kept.st_dev, store.st_dev) << "same filesystem: moved, not copied";

  // Restore: the writable layer becomes a volume that stages on a real mount.
  auto restored = volumes_->RestoreQuarantined(active_entry, "pvc-restored");
  ASSERT_TRUE(restored.ok()) << restored.status();
  ASSERT_TRUE(volumes_->Stage(restored->volume.id, pods_ + "/restored").ok());
  EXPECT_EQ(DigestOf(pods_ + "/restored"), active_digest);
  // The layer becomes a layer again, and a volume on it shows its files through overlayfs.
  auto on_layer = volumes_->RestoreQuarantined(layer_entry, "pvc-on-layer");
  ASSERT_TRUE(on_layer.ok()) << on_layer.status();
  EXPECT_FALSE(on_layer->chain_id.empty());
  ASSERT_TRUE(volumes_->Stage(on_layer->volume.id, pods_ + "/on-layer").ok());
  EXPECT_EQ(DigestOf(pods_ + "/on-layer"), layer_digest);
  WriteFile(pods_ + "/on-layer/new.txt", "written by a pod");
  EXPECT_EQ(
      DigestOf(root_ + "/overlay/layers/" + *layers_->DriverChain(on_layer->chain_id)->begin()),
      layer_digest)
      << "the layer is read-only under the volume";

  // Purge is the only delete.
  EXPECT_EQ(DigestOf(root_ + "/quarantine/" + purged_entry + "/content/upper"), purged_digest);
  ASSERT_TRUE(quarantine_->Purge(purged_entry).ok());
  EXPECT_NE(access((root_ + "/quarantine/" + purged_entry).c_str(), F_OK), 0);
  EXPECT_TRUE(quarantine_->List()->empty());

  // A restart keeps everything: the restored volumes are known, the live one still stays.
  ASSERT_TRUE(volumes_->Recover().ok());
  EXPECT_TRUE(quarantine_->List()->empty());
  EXPECT_EQ(DigestOf(pods_ + "/restored"), active_digest);
  EXPECT_EQ(ReadFile(pods_ + "/on-layer/new.txt"), "written by a pod");
  ASSERT_TRUE(volumes_->Unstage(restored->volume.id, pods_ + "/restored").ok());
  ASSERT_TRUE(volumes_->Unstage(on_layer->volume.id, pods_ + "/on-layer").ok());
  ASSERT_TRUE(mounter_->Unmount(pods_ + "/live").ok());
}

}  // namespace
}  // namespace strata::node
