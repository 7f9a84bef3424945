// End-to-end, start-up recovery (issue 8 case 1): a call that arrives while the plugin is still
// recovering its store must not be served, or recovery takes what it made for a leftover. The
// real strata-csi binary on the overlay driver, kill -9 on a store of a few hundred volumes,
// then CreateVolume as soon as the socket accepts. Needs root (real overlay mounts).

#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "gtest/gtest.h"
#include "node/paths.h"
#include "tests/e2e/csi_calls.h"
#include "tests/e2e/e2e_util.h"
#include "tests/e2e/overlay_plugin_test.h"
#include "tests/e2e/plugin_process.h"

namespace strata::e2e {
namespace {

class RecoveryE2eTest : public OverlayPluginTest {
 protected:
  RecoveryE2eTest() : OverlayPluginTest("strata-recovery") {}
};

TEST_F(RecoveryE2eTest, CallsDuringRecoveryAreUnavailableAndNoVolumeIsLost) {
  constexpr int kVolumes = 300;
  for (int i = 0; i < kVolumes; ++i) {
    ::csi::v1::CreateVolumeResponse created;
    grpc::Status status = CreateVolume(*plugin_, "pvc-" + std::to_string(i), &created);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }
  plugin_->Kill();

  std::string error;
  ASSERT_TRUE(plugin_->Start({}, &error, /*wait_ready=*/false)) << error;
  // As soon as the socket accepts: every answer is OK or UNAVAILABLE (retry), never anything
  // that a later recovery undoes.
  int unavailable = 0;
  std::string early_id;
  for (int attempt = 0; attempt < 2000 && early_id.empty(); ++attempt) {
    ::csi::v1::CreateVolumeResponse created;
    grpc::Status status = CreateVolume(*plugin_, "pvc-early", &created);
    if (status.ok()) {
      early_id = created.volume().volume_id();
    } else {
      ASSERT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
      EXPECT_NE(status.error_message().find("recover"), std::string::npos)
          << status.error_message();
      ++unavailable;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  ASSERT_FALSE(early_id.empty()) << "CreateVolume never succeeded after the restart";
  std::cout << "[ figures  ] CreateVolume during recovery of " << kVolumes
            << " volumes: " << unavailable << " UNAVAILABLE answers before OK\n";
  ASSERT_TRUE(plugin_->WaitReady(&error)) << error;

  // The early volume is whole: it stages and takes data; so does every older one.
  const std::string staging = dir_ + "/staging-early";
  grpc::Status staged = StageVolume(*plugin_, early_id, staging);
  ASSERT_TRUE(staged.ok()) << staged.error_message();
  ::csi::v1::ListVolumesResponse listed;
  ASSERT_TRUE(ListVolumes(*plugin_, &listed).ok());
  EXPECT_EQ(listed.entries_size(), kVolumes + 1);
  // Recovery found nothing it could not account for: it neither removed nor quarantined.
  const std::string log = Slurp(dir_ + "/plugin.log");
  EXPECT_EQ(log.find("no metadata refers to"), std::string::npos)
      << "recovery took a served call's content for a leftover";
  EXPECT_EQ(log.find("cannot account for"), std::string::npos)
      << "recovery quarantined a served call's content";
  ASSERT_TRUE(UnstageVolume(*plugin_, early_id, staging).ok());
}

// Case 7: SIGTERM lets an admitted admin call finish and answer, so a client that retries only on
// error never commits twice; a call that arrives after SIGTERM is turned away and made nothing.
TEST_F(RecoveryE2eTest, SigtermLetsAnAdmittedCommitFinishAndAnswer) {
  ::csi::v1::CreateVolumeResponse created;
  ASSERT_TRUE(CreateVolume(*plugin_, "pvc-commit", &created).ok());
  const std::string id = created.volume().volume_id();
  const std::string staging = dir_ + "/staging";
  ASSERT_TRUE(StageVolume(*plugin_, id, staging).ok());
  {
    // Enough data that the commit's copy is still running when SIGTERM arrives.
    std::ofstream out(staging + "/big", std::ios::binary);
    std::string block(1 << 20, 'x');
    for (int i = 0; i < 192; ++i) {
      block[i] = static_cast<char>(i);
      out << block;
    }
  }
  grpc::Status committed;
  strata::admin::v1::CommitResponse response;
  std::thread commit([&] {
    strata::admin::v1::CommitRequest request;
    request.set_volume_id(id);
    request.set_tag("committed:1");
    committed = plugin_->admin().Commit(CallContext(60).get(), request, &response);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const int exit_code = plugin_->Stop();
  commit.join();
  EXPECT_EQ(exit_code, 0);
  ASSERT_TRUE(committed.ok() || committed.error_code() == grpc::StatusCode::UNAVAILABLE)
      << committed.error_code() << " " << committed.error_message();

  std::string error;
  ASSERT_TRUE(plugin_->Start({}, &error)) << error;
  strata::admin::v1::ListImagesResponse images;
  ASSERT_TRUE(plugin_->admin().ListImages(CallContext().get(), {}, &images).ok());
  if (committed.ok()) {
    ASSERT_EQ(images.images_size(), 1) << "the answered commit is in the store";
    EXPECT_EQ(images.images(0).name(), "committed:1");
  } else {
    EXPECT_EQ(images.images_size(), 0) << "a refused commit made something";
  }
  std::cout << "[ figures  ] commit of 192 MiB under SIGTERM: "
            << (committed.ok() ? "finished and answered OK" : "refused before it began") << "\n";
}

// Case 8: a store on a read-only filesystem says so, not "another strata-csi owns <root>".
TEST_F(RecoveryE2eTest, AReadOnlyRootNamesTheRealReason) {
  const std::string other = dir_ + "/ro";
  ASSERT_EQ(mkdir(other.c_str(), 0755), 0);
  const std::string root = other + "/root";
  ASSERT_EQ(mkdir(root.c_str(), 0755), 0);
  ASSERT_EQ(mount("tmpfs", root.c_str(), "tmpfs", MS_RDONLY, "size=1m"), 0) << strerror(errno);
  PluginProcess readonly(STRATA_CSI_BINARY, other, "overlay", root);
  const int code = readonly.RunExpectingExit(90000);
  umount2(root.c_str(), MNT_DETACH);
  EXPECT_NE(code, 0);
  EXPECT_NE(code, -1) << "it did not give up";
  const std::string log = Slurp(other + "/plugin-second.log");
  EXPECT_NE(log.find("read-only"), std::string::npos) << log;
  EXPECT_EQ(log.find("another strata-csi"), std::string::npos) << log;
}

}  // namespace
}  // namespace strata::e2e
