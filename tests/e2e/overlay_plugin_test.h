#pragma once
// OverlayPluginTest: the fixture of the single-driver e2e tests. A temp folder, the real
// strata-csi on the overlay driver started in it and ready; afterwards every mount under the
// folder is taken down and the folder removed (kept, with plugin.log, when the test failed).
// Needs root; skips otherwise.

#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "node/paths.h"
#include "tests/e2e/e2e_util.h"
#include "tests/e2e/plugin_process.h"

#ifndef STRATA_CSI_BINARY
#error "STRATA_CSI_BINARY must name the strata-csi binary"
#endif

namespace strata::e2e {

class OverlayPluginTest : public ::testing::Test {
 protected:
  // `prefix` names the temp folder (/tmp/<prefix>-XXXXXX), so a kept one says whose it is.
  explicit OverlayPluginTest(std::string prefix) : prefix_(std::move(prefix)) {}

  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (overlay mounts)";
    std::string pattern = "/tmp/" + prefix_ + "-XXXXXX";
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    plugin_ = std::make_unique<PluginProcess>(STRATA_CSI_BINARY, dir_, "overlay");
    std::string error;
    ASSERT_TRUE(plugin_->Start({}, &error)) << error << "\n" << Slurp(dir_ + "/plugin.log");
  }
  void TearDown() override {
    if (dir_.empty()) return;
    if (plugin_) plugin_->Kill();
    UnmountAllUnder(dir_);
    if (!HasFailure())
      (void)node::RemoveTree(dir_);
    else
      std::cerr << "kept " << dir_ << " for inspection (plugin.log)\n";
  }

  std::string prefix_;
  std::string dir_;
  std::unique_ptr<PluginProcess> plugin_;
};

}  // namespace strata::e2e
