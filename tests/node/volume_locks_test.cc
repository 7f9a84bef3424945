#include "node/volume_locks.h"

#include "gtest/gtest.h"

namespace strata::node {
namespace {

TEST(VolumeLocksTest, SecondHolderIsAbortedUntilTheFirstReleases) {
  VolumeLocks locks;
  {
    auto first = locks.TryAcquire("vol-1", "volume vol-1");
    ASSERT_TRUE(first.ok());
    auto second = locks.TryAcquire("vol-1", "volume vol-1");
    EXPECT_TRUE(absl::IsAborted(second.status()));
    EXPECT_TRUE(locks.TryAcquire("vol-2", "volume vol-2").ok()) << "keys are independent";
  }
  EXPECT_TRUE(locks.TryAcquire("vol-1", "volume vol-1").ok());
}

}  // namespace
}  // namespace strata::node
