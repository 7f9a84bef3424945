// End-to-end, the CSI spec's access-mode and stats answers (issue 11): the real strata-csi on
// the overlay driver. SINGLE_NODE_SINGLE_WRITER refuses a second target path with
// FAILED_PRECONDITION (the spec's second-publish table) and makes nothing there;
// SINGLE_NODE_MULTI_WRITER allows it; NodeGetVolumeStats answers INVALID_ARGUMENT for a relative
// path and NOT_FOUND for an unknown volume or a path where the volume is not. Needs root.

#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "node/paths.h"
#include "tests/e2e/csi_calls.h"
#include "tests/e2e/e2e_util.h"
#include "tests/e2e/overlay_plugin_test.h"
#include "tests/e2e/plugin_process.h"

namespace strata::e2e {
namespace {

using Mode = ::csi::v1::VolumeCapability::AccessMode;

class AccessModesTest : public OverlayPluginTest {
 protected:
  AccessModesTest() : OverlayPluginTest("strata-modes") {}

  // A created and staged volume; returns its id.
  std::string StagedVolume(const std::string& name) {
    ::csi::v1::CreateVolumeResponse created;
    grpc::Status status = CreateVolume(*plugin_, name, &created);
    EXPECT_TRUE(status.ok()) << status.error_message();
    const std::string id = created.volume().volume_id();
    status = StageVolume(*plugin_, id, Staging(id));
    EXPECT_TRUE(status.ok()) << status.error_message();
    return id;
  }
  std::string Staging(const std::string& id) { return dir_ + "/staging-" + id; }

  grpc::Status Publish(const std::string& id, const std::string& target, Mode::Mode mode,
                       bool readonly = false) {
    ::csi::v1::NodePublishVolumeRequest request;
    request.set_volume_id(id);
    request.set_staging_target_path(Staging(id));
    request.set_target_path(target);
    request.set_readonly(readonly);
    request.mutable_volume_capability()->mutable_mount();
    request.mutable_volume_capability()->mutable_access_mode()->set_mode(mode);
    ::csi::v1::NodePublishVolumeResponse response;
    return plugin_->node().NodePublishVolume(CallContext().get(), request, &response);
  }

  grpc::Status Stats(const std::string& id, const std::string& path,
                     ::csi::v1::NodeGetVolumeStatsResponse* response) {
    ::csi::v1::NodeGetVolumeStatsRequest request;
    request.set_volume_id(id);
    request.set_volume_path(path);
    return plugin_->node().NodeGetVolumeStats(CallContext().get(), request, response);
  }
};

TEST_F(AccessModesTest, SingleWriterRefusesASecondTargetAndMakesNothingThere) {
  const std::string id = StagedVolume("single-writer");
  const std::string first = dir_ + "/pod-a", second = dir_ + "/pod-b";
  ASSERT_TRUE(Publish(id, first, Mode::SINGLE_NODE_SINGLE_WRITER).ok());
  Spit(first + "/written-by-a", "a");
  // The same target again is idempotent.
  grpc::Status again = Publish(id, first, Mode::SINGLE_NODE_SINGLE_WRITER);
  EXPECT_TRUE(again.ok()) << again.error_message();

  for (bool readonly : {false, true}) {
    grpc::Status refused = Publish(id, second, Mode::SINGLE_NODE_SINGLE_WRITER, readonly);
    EXPECT_EQ(refused.error_code(), grpc::StatusCode::FAILED_PRECONDITION)
        << "readonly=" << readonly << ": " << refused.error_message();
    EXPECT_NE(refused.error_message().find(first), std::string::npos) << refused.error_message();
    EXPECT_FALSE(Exists(second)) << "a refused publish made its target";
  }
  EXPECT_EQ(MountsUnder(second).size(), 0u);
  EXPECT_EQ(Slurp(first + "/written-by-a"), "a");

  // Once the first pod is gone, the second may have the volume, and sees the first's file.
  ASSERT_TRUE(UnpublishVolume(*plugin_, id, first).ok());
  grpc::Status moved = Publish(id, second, Mode::SINGLE_NODE_SINGLE_WRITER);
  ASSERT_TRUE(moved.ok()) << moved.error_message();
  EXPECT_EQ(Slurp(second + "/written-by-a"), "a");
}

TEST_F(AccessModesTest, SingleWriterIsRefusedBesideAnOlderMultiWriterPublication) {
  const std::string id = StagedVolume("after-multi");
  ASSERT_TRUE(Publish(id, dir_ + "/pod-a", Mode::SINGLE_NODE_MULTI_WRITER).ok());
  EXPECT_EQ(Publish(id, dir_ + "/pod-b", Mode::SINGLE_NODE_SINGLE_WRITER).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
}

TEST_F(AccessModesTest, MultiWriterAndLegacySingleNodeWriterAllowSeveralTargets) {
  const std::string id = StagedVolume("multi-writer");
  for (Mode::Mode mode : {Mode::SINGLE_NODE_MULTI_WRITER, Mode::SINGLE_NODE_WRITER}) {
    const std::string a = dir_ + "/a-" + Mode::Mode_Name(mode);
    const std::string b = dir_ + "/b-" + Mode::Mode_Name(mode);
    ASSERT_TRUE(Publish(id, a, mode).ok()) << Mode::Mode_Name(mode);
    grpc::Status second = Publish(id, b, mode);
    ASSERT_TRUE(second.ok()) << Mode::Mode_Name(mode) << ": " << second.error_message();
    Spit(a + "/x", Mode::Mode_Name(mode));
    EXPECT_EQ(Slurp(b + "/x"), Mode::Mode_Name(mode)) << "both targets are the same volume";
    ASSERT_TRUE(UnpublishVolume(*plugin_, id, a).ok());
    ASSERT_TRUE(UnpublishVolume(*plugin_, id, b).ok());
  }
}

TEST_F(AccessModesTest, VolumeStatsAnswersTheSpecCodes) {
  const std::string id = StagedVolume("stats");
  const std::string target = dir_ + "/pod";
  ASSERT_TRUE(Publish(id, target, Mode::SINGLE_NODE_WRITER).ok());
  ::csi::v1::NodeGetVolumeStatsResponse response;

  grpc::Status relative = Stats(id, "pods/x", &response);
  EXPECT_EQ(relative.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << relative.error_message();
  // A relative path is refused before the volume is looked up: an unknown id changes nothing.
  EXPECT_EQ(Stats("no-such-volume", "pods/x", &response).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Stats("no-such-volume", target, &response).error_code(), grpc::StatusCode::NOT_FOUND);
  ASSERT_EQ(mkdir((dir_ + "/elsewhere").c_str(), 0755), 0);
  grpc::Status elsewhere = Stats(id, dir_ + "/elsewhere", &response);
  EXPECT_EQ(elsewhere.error_code(), grpc::StatusCode::NOT_FOUND) << elsewhere.error_message();

  for (const std::string& path : {target, Staging(id)}) {
    grpc::Status ok = Stats(id, path, &response);
    ASSERT_TRUE(ok.ok()) << path << ": " << ok.error_message();
    ASSERT_GE(response.usage_size(), 1);
    EXPECT_EQ(response.usage(0).unit(), ::csi::v1::VolumeUsage::BYTES);
    EXPECT_GT(response.usage(0).total(), 0);
    EXPECT_FALSE(response.volume_condition().abnormal());
  }
}

}  // namespace
}  // namespace strata::e2e
