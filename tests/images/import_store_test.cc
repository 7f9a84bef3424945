// LayerStore::Import against hostile archives (issue 9) on a real store (SQLite metadata, the
// vfs driver, a FakeMounter): imports are atomic (a failure leaves the store exactly as it was),
// bounded, name the user's archive in errors, and never make deletes wait.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "drivers/registry.h"
#include "gtest/gtest.h"
#include "node/layer_store.h"
#include "node/metadata.h"
#include "node/paths.h"
#include "node/volume_manager.h"
#include "sys/fake_mounter.h"
#include "tests/images/archive_builder.h"
#include "tests/images/test_util.h"

namespace strata::node {
namespace {

using namespace images::imgtest;  // NOLINT: test helpers

SaveImage Img(std::vector<std::string> blobs, std::vector<std::string> tags,
              std::vector<std::string> diff_ids = {}, std::string config = "") {
  SaveImage image;
  image.layer_blobs = std::move(blobs);
  image.tags = std::move(tags);
  image.diff_ids = std::move(diff_ids);
  image.config = std::move(config);
  return image;
}

// The vfs driver, with a Commit that can be made to wait: an import caught in the middle.
class BlockingDriver : public drivers::Driver {
 public:
  explicit BlockingDriver(std::unique_ptr<drivers::Driver> inner) : inner_(std::move(inner)) {}

  // The next Commit waits until Release(); WaitBlocked() returns once it does.
  void Arm() {
    std::lock_guard<std::mutex> lock(mutex_);
    armed_ = true;
  }
  bool WaitBlocked(std::chrono::seconds timeout) {
    std::unique_lock<std::mutex> lock(mutex_);
    return cv_.wait_for(lock, timeout, [&] { return blocked_; });
  }
  void Release() {
    std::lock_guard<std::mutex> lock(mutex_);
    armed_ = false;
    cv_.notify_all();
  }

  std::string_view name() const override { return inner_->name(); }
  drivers::DriverLimits limits() const override { return inner_->limits(); }
  absl::Status Prepare(const std::string& id, const drivers::Chain& parents,
                       const drivers::PrepareOptions& options) override {
    return inner_->Prepare(id, parents, options);
  }
  absl::StatusOr<std::vector<sys::Mount>> Mounts(const std::string& id,
                                                 const drivers::Chain& parents) override {
    return inner_->Mounts(id, parents);
  }
  absl::StatusOr<std::vector<sys::Mount>> View(const drivers::Chain& chain) override {
    return inner_->View(chain);
  }
  absl::StatusOr<drivers::ApplyTarget> DirectWriteTarget(const std::string& id) override {
    return inner_->DirectWriteTarget(id);
  }
  absl::Status Commit(const std::string& layer_id, const std::string& id,
                      const drivers::Chain& parents, drivers::CommitMode mode) override {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      if (armed_) {
        blocked_ = true;
        cv_.notify_all();
        cv_.wait(lock, [&] { return !armed_; });
        blocked_ = false;
      }
    }
    return inner_->Commit(layer_id, id, parents, mode);
  }
  absl::Status Remove(const std::string& id) override { return inner_->Remove(id); }
  absl::StatusOr<drivers::Usage> GetUsage(const std::string& id) override {
    return inner_->GetUsage(id);
  }
  absl::StatusOr<std::vector<std::string>> Walk() override { return inner_->Walk(); }
  absl::StatusOr<int64_t> FreeBytes() override { return inner_->FreeBytes(); }
  absl::StatusOr<int64_t> TotalBytes() override { return inner_->TotalBytes(); }
  absl::StatusOr<bool> Exists(const std::string& id) override { return inner_->Exists(id); }
  absl::StatusOr<drivers::ContentKind> Quarantine(const std::string& id,
                                                  const std::string& dest) override {
    return inner_->Quarantine(id, dest);
  }
  absl::Status Unquarantine(const std::string& dest, drivers::ContentKind kind,
                            const std::string& id) override {
    return inner_->Unquarantine(dest, kind, id);
  }
  absl::Status PurgeQuarantined(const std::string& dest) override {
    return inner_->PurgeQuarantined(dest);
  }

 private:
  std::unique_ptr<drivers::Driver> inner_;
  std::mutex mutex_;
  std::condition_variable cv_;
  bool armed_ = false;
  bool blocked_ = false;
};

// Everything an import could change: layer rows, image rows, driver content, scratch files.
struct StoreState {
  std::vector<std::tuple<std::string, std::string, std::string>> layers;  // chain, state, driver
  std::vector<std::pair<std::string, std::string>> images;                // name, chain
  std::vector<std::string> driver_ids;
  std::vector<std::string> scratch;
  bool operator==(const StoreState& other) const {
    return layers == other.layers && images == other.images && driver_ids == other.driver_ids &&
           scratch == other.scratch;
  }
};

std::ostream& operator<<(std::ostream& os, const StoreState& s) {
  os << "layers:";
  for (const auto& [chain, state, driver] : s.layers) os << " " << chain << "/" << state;
  os << " images:";
  for (const auto& [name, chain] : s.images) os << " " << name;
  os << " driver:" << s.driver_ids.size() << " scratch:" << s.scratch.size();
  return os;
}

class ImportStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = tmp_.Sub("root");
    images::imgtest::MakeDirs(root_);
    auto metadata = Metadata::Open(root_ + "/strata.db");
    ASSERT_TRUE(metadata.ok()) << metadata.status();
    metadata_ = std::move(*metadata);
    auto driver = drivers::NewDriver("vfs", root_);
    ASSERT_TRUE(driver.ok()) << driver.status();
    driver_ = std::make_unique<BlockingDriver>(std::move(*driver));
    Reopen({});
  }
  void TearDown() override {
    volumes_.reset();
    layers_.reset();
  }
  void Reopen(const images::ImportLimits& limits) {
    volumes_.reset();
    layers_ = std::make_unique<LayerStore>(metadata_.get(), driver_.get(), &mounter_,
                                           root_ + "/tmp", limits);
    volumes_ = std::make_unique<VolumeManager>(
        metadata_.get(), layers_.get(), driver_.get(), &mounter_, nullptr,
        VolumeManagerOptions{root_, root_ + "/volumes", root_ + "/tmp", 128});
  }

  StoreState State() {
    StoreState state;
    auto layers = metadata_->ListLayers();
    EXPECT_TRUE(layers.ok()) << layers.status();
    for (const LayerRecord& layer : *layers)
      state.layers.emplace_back(layer.chain_id, layer.state, layer.driver_id);
    std::sort(state.layers.begin(), state.layers.end());
    auto images = metadata_->ListImages();
    EXPECT_TRUE(images.ok()) << images.status();
    for (const ImageRecord& image : *images) state.images.emplace_back(image.name, image.chain_id);
    auto ids = driver_->Walk();
    EXPECT_TRUE(ids.ok()) << ids.status();
    state.driver_ids = *ids;
    std::sort(state.driver_ids.begin(), state.driver_ids.end());
    if (std::filesystem::exists(root_ + "/tmp")) {
      for (const auto& entry : std::filesystem::recursive_directory_iterator(root_ + "/tmp"))
        state.scratch.push_back(entry.path());
    }
    return state;
  }

  // Writes a docker-save folder (or, with `as_tar`, a tar) of `images` and returns its path.
  std::string Archive(const std::string& name, const std::vector<SaveImage>& images,
                      bool as_tar = true) {
    auto files = DockerSaveFiles(images);
    if (as_tar) {
      WriteFile(tmp_.Sub(name), TarOfFiles(files));
    } else {
      images::imgtest::MakeDirs(tmp_.Sub(name));
      WriteTree(tmp_.Sub(name), files);
    }
    return tmp_.Sub(name);
  }

  // A store that already holds something an import could disturb: image "pre:1" on layer X.
  void ImportPre() {
    auto pre = layers_->Import(Archive("pre.tar", {Img({layer_x_}, {"pre:1"})}), "");
    ASSERT_TRUE(pre.ok()) << pre.status();
  }

  // Checks a failed import: the code, a bounded message naming the user's archive once and no
  // scratch path, and the store exactly as `before`.
  void ExpectRefused(const absl::StatusOr<ImportResult>& result, absl::StatusCode code,
                     const std::string& archive, const StoreState& before,
                     const std::string& must_mention) {
    ASSERT_FALSE(result.ok());
    EXPECT_EQ(result.status().code(), code) << result.status();
    const std::string message(result.status().message());
    EXPECT_EQ(message.rfind("image archive " + archive + ": ", 0), 0u) << message;
    EXPECT_EQ(message.find(root_), std::string::npos) << "names a scratch path: " << message;
    EXPECT_EQ(message.find("image archive", 1), std::string::npos) << message;
    EXPECT_LE(message.size(), images::kMaxErrorBytes + 4);
    EXPECT_NE(message.find(must_mention), std::string::npos) << message;
    EXPECT_EQ(State(), before);
  }

  TempDir tmp_;
  std::string root_;
  std::unique_ptr<Metadata> metadata_;
  std::unique_ptr<BlockingDriver> driver_;
  sys::FakeMounter mounter_;
  std::unique_ptr<LayerStore> layers_;
  std::unique_ptr<VolumeManager> volumes_;
  const std::string layer_x_ = BuildTar({File("x", "x")});
  const std::string layer_y_ = BuildTar({File("y", "y")});
  const std::string layer_z_ = BuildTar({File("z", "z")});
};

// Case 6: the second image of a docker-save is invalid: nothing of the first is stored.
TEST_F(ImportStoreTest, MultiImageArchiveWithInvalidSecondEntryChangesNothing) {
  ImportPre();
  const StoreState before = State();

  // A bad name (checked before any layer is written).
  const std::string bad_tag =
      Archive("bad-tag.tar", {Img({layer_x_, layer_y_}, {"a:1"}), Img({layer_z_}, {"bad tag!"})});
  ExpectRefused(layers_->Import(bad_tag, ""), absl::StatusCode::kInvalidArgument, bad_tag, before,
                "image 2");

  // A compressed layer whose DiffID is wrong (found only while extracting, after the first
  // image's layers are written): they are removed again, X (which "pre:1" uses) is kept.
  SaveImage second = Img({Compress(layer_z_, "gzip")}, {"b:1"}, {Sha256SumData("not z")});
  const std::string bad_diff =
      Archive("bad-diff.tar", {Img({layer_x_, layer_y_}, {"a:1"}), second});
  ExpectRefused(layers_->Import(bad_diff, ""), absl::StatusCode::kDataLoss, bad_diff, before,
                "DiffID");

  // A hostile entry in the second image's layer.
  const std::string evil_layer = BuildTar({File("/etc/evil", "e")});
  const std::string hostile =
      Archive("hostile.tar", {Img({layer_x_, layer_y_}, {"a:1"}), Img({evil_layer}, {"c:1"})});
  auto result = layers_->Import(hostile, "");
  ExpectRefused(result, absl::StatusCode::kInvalidArgument, hostile, before, BlobName(evil_layer));
  // The entry is named once (no "tar entry "X": tar entry "X":").
  const std::string message(result.status().message());
  size_t first = message.find("tar entry \"");
  ASSERT_NE(first, std::string::npos) << message;
  EXPECT_EQ(message.find("tar entry \"", first + 1), std::string::npos) << message;

  // The good archive imports, whole.
  auto good = layers_->Import(
      Archive("good.tar", {Img({layer_x_, layer_y_}, {"a:1"}), Img({layer_z_}, {"b:1"})}), "");
  ASSERT_TRUE(good.ok()) << good.status();
  EXPECT_EQ(good->layers_new, 2);  // y and z; x was there
  EXPECT_EQ(State().images.size(), 3u);
}

// Case 8: bounds per layer and per import, sparse entries at their real size.
TEST_F(ImportStoreTest, LayerAndImportBoundsAreEnforcedAndRolledBack) {
  ImportPre();
  const StoreState before = State();
  const std::string one_mib_a = BuildTar({File("a", std::string(1 << 20, 'a'))});
  const std::string one_mib_b = BuildTar({File("b", std::string(1 << 20, 'b'))});
  // A folder: as a tar, the archive itself would already pass --max-import-bytes.
  const std::string path =
      Archive("two-mib", {Img({layer_x_, one_mib_a, one_mib_b}, {"big:1"})}, /*as_tar=*/false);

  images::ImportLimits limits;
  limits.max_import_bytes = (3 << 20) / 2;  // 1.5 MiB: the first big layer fits, not the second
  Reopen(limits);
  ExpectRefused(layers_->Import(path, ""), absl::StatusCode::kInvalidArgument, path, before,
                "--max-import-bytes");

  limits = {};
  limits.max_layer_bytes = 512 << 10;
  Reopen(limits);
  ExpectRefused(layers_->Import(path, ""), absl::StatusCode::kInvalidArgument, path, before,
                "--max-layer-bytes");

  limits = {};
  limits.max_layer_entries = 1;
  Reopen(limits);
  const std::string two_entries = BuildTar({File("p", "p"), File("q", "q")});
  const std::string entries = Archive("entries", {Img({two_entries}, {"e:1"})}, /*as_tar=*/false);
  ExpectRefused(layers_->Import(entries, ""), absl::StatusCode::kInvalidArgument, entries, before,
                "--max-layer-entries");

  // A 1 TiB sparse file in a tiny tar, with the default bounds.
  Reopen({});
  const std::string src = tmp_.Sub("sparse-src");
  images::imgtest::MakeDirs(src);
  RunCommand("truncate -s 1T '" + src + "/big' && printf x >> '" + src + "/big'");
  RunCommand("tar --sparse -b 1 -cf '" + tmp_.Sub("sparse-layer.tar") + "' -C '" + src + "' big");
  std::filesystem::remove(src + "/big");
  const std::string sparse =
      Archive("sparse.tar", {Img({layer_x_, ReadFile(tmp_.Sub("sparse-layer.tar"))}, {"s:1"})});
  ExpectRefused(layers_->Import(sparse, ""), absl::StatusCode::kInvalidArgument, sparse, before,
                "--max-layer-bytes");

  // Within the bounds the same archive imports.
  limits = {};
  limits.max_import_bytes = 4 << 20;
  Reopen(limits);
  auto fine = layers_->Import(path, "");
  EXPECT_TRUE(fine.ok()) << fine.status();
}

// Case 3: a config nested a million deep is refused at import, and nothing is stored.
TEST_F(ImportStoreTest, DeeplyNestedConfigIsRefusedAtImport) {
  ImportPre();
  const StoreState before = State();
  const std::string config = R"({"rootfs":{"type":"layers","diff_ids":[")" +
                             Sha256SumData(layer_y_) + R"("]},"x":)" + NestedArrays(1000000) + "}";
  const std::string path = Archive("deep.tar", {Img({layer_y_}, {"deep:1"}, {}, config)});
  ExpectRefused(layers_->Import(path, ""), absl::StatusCode::kInvalidArgument, path, before,
                "--max-json-depth");
}

// Case 4: a FIFO in an image folder fails the import at once; nothing is stored.
TEST_F(ImportStoreTest, FifoInImageFolderFailsPromptly) {
  ImportPre();
  const StoreState before = State();
  const std::string dir = Archive("folder", {Img({layer_y_}, {"f:1"})}, false);
  const std::string blob = dir + "/" + BlobName(layer_y_);
  ASSERT_EQ(unlink(blob.c_str()), 0);
  ASSERT_EQ(mkfifo(blob.c_str(), 0600), 0);
  auto future = std::async(std::launch::async, [&] { return layers_->Import(dir, ""); });
  if (future.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
    ADD_FAILURE() << "import blocked on a FIFO";
    int unblock = open(blob.c_str(), O_WRONLY | O_NONBLOCK);
    if (unblock >= 0) close(unblock);
  }
  ExpectRefused(future.get(), absl::StatusCode::kInvalidArgument, dir, before,
                "not a regular file");
}

// Case 11: a symlink loop as the import path.
TEST_F(ImportStoreTest, SymlinkLoopIsInvalidArgument) {
  const StoreState before = State();
  const std::string a = tmp_.Sub("loop-a");
  ASSERT_EQ(symlink(tmp_.Sub("loop-b").c_str(), a.c_str()), 0);
  ASSERT_EQ(symlink(a.c_str(), tmp_.Sub("loop-b").c_str()), 0);
  ExpectRefused(layers_->Import(a, ""), absl::StatusCode::kInvalidArgument, a, before,
                "symlink loop");
}

// Case 4: deletes (DeleteSnapshot, DeleteVolume -> gc) complete while an import is stuck half
// way, and gc leaves alone what that import builds on and creates.
TEST_F(ImportStoreTest, DeletesDoNotWaitForAnImportInFlight) {
  // X is stored but unnamed (its image removed): gc would collect it, were an import not
  // building on it.
  ImportPre();
  ASSERT_TRUE(layers_->RemoveImage("pre:1").ok());
  CreateVolumeParams params;
  params.name = "pvc-1";
  params.fingerprint = "pvc-1";
  auto volume = volumes_->Create(params);
  ASSERT_TRUE(volume.ok()) << volume.status();
  auto snapshot = volumes_->CreateSnapshot(volume->id, "snap-1");
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();

  const std::string path = Archive("xy.tar", {Img({layer_x_, layer_y_}, {"xy:1"})});
  driver_->Arm();
  auto import = std::async(std::launch::async, [&] { return layers_->Import(path, ""); });
  ASSERT_TRUE(driver_->WaitBlocked(std::chrono::seconds(30))) << "the import never got going";

  auto deletes = std::async(std::launch::async, [&]() -> absl::Status {
    absl::Status status = volumes_->DeleteSnapshot(snapshot->id);
    if (status.ok()) status = volumes_->Delete(volume->id);
    if (status.ok()) status = layers_->GarbageCollect(/*dry_run=*/false).status();
    return status;
  });
  const bool prompt = deletes.wait_for(std::chrono::seconds(10)) == std::future_status::ready;
  EXPECT_TRUE(prompt) << "DeleteSnapshot/DeleteVolume/gc waited for the import";
  driver_->Release();
  EXPECT_TRUE(deletes.get().ok());

  auto imported = import.get();
  ASSERT_TRUE(imported.ok()) << imported.status();
  EXPECT_EQ(imported->layers_new, 1);  // y; x survived gc and was reused
  auto image = layers_->ResolveImage("xy:1");
  ASSERT_TRUE(image.ok()) << image.status();
  auto chain = layers_->DriverChain(image->chain_id);
  ASSERT_TRUE(chain.ok()) << chain.status();
  EXPECT_EQ(chain->size(), 2u);
  // Once named, the layers survive gc; the snapshot's layer went with the deletes.
  auto gc = layers_->GarbageCollect(false);
  ASSERT_TRUE(gc.ok());
  EXPECT_TRUE(gc->removed_chain_ids.empty());
  for (const auto& [chain_id, state, driver_id] : State().layers) EXPECT_EQ(state, "ready");
  EXPECT_EQ(State().layers.size(), 2u);
}

}  // namespace
}  // namespace strata::node
