// The capacity rule GetCapacity, CreateVolume and expansions share (node/capacity_policy.h).

#include "node/capacity_policy.h"

#include <cmath>
#include <limits>

#include "gtest/gtest.h"

namespace strata::node {
namespace {

constexpr int64_t kGiB = int64_t{1} << 30;

StoreCapacity Thin(int64_t total, int64_t promised, int64_t free_bytes = 0) {
  StoreCapacity store;
  store.thin_provisioned = true;
  store.total_bytes = total;
  store.promised_bytes = promised;
  store.free_bytes = free_bytes;
  return store;
}

TEST(CapacityPolicy, ThinStoresPromiseTotalTimesRatioLessWhatIsPromised) {
  EXPECT_EQ(ProvisionableBytes(Thin(4 * kGiB, 0), 1.0), 4 * kGiB);
  EXPECT_EQ(ProvisionableBytes(Thin(4 * kGiB, kGiB), 1.0), 3 * kGiB);
  EXPECT_EQ(ProvisionableBytes(Thin(4 * kGiB, kGiB), 2.5), 9 * kGiB);
  // Free space does not matter to a thin store: space is taken as written.
  EXPECT_EQ(ProvisionableBytes(Thin(4 * kGiB, 0, /*free_bytes=*/1), 1.0), 4 * kGiB);
  // Promised beyond the limit (a lower ratio after a restart): nothing left, never negative.
  EXPECT_EQ(ProvisionableBytes(Thin(4 * kGiB, 12 * kGiB), 1.0), 0);
  // A huge pool at the largest ratio saturates instead of overflowing.
  EXPECT_EQ(ProvisionableBytes(Thin(std::numeric_limits<int64_t>::max() / 2, 0), 1000.0),
            std::numeric_limits<int64_t>::max());
}

TEST(CapacityPolicy, OtherStoresPromiseOnlyFreeSpaceWhateverTheRatio) {
  StoreCapacity store;
  store.total_bytes = 100 * kGiB;
  store.free_bytes = 7 * kGiB;
  store.promised_bytes = 500 * kGiB;  // not counted: capacity is only recorded there
  EXPECT_EQ(ProvisionableBytes(store, 1.0), 7 * kGiB);
  EXPECT_EQ(ProvisionableBytes(store, 10.0), 7 * kGiB);
  store.free_bytes = -1;  // never negative
  EXPECT_EQ(ProvisionableBytes(store, 1.0), 0);
}

TEST(CapacityPolicy, TenGiBOnAFourGiBThinStoreIsAPolicyDecision) {
  const StoreCapacity store = Thin(4 * kGiB, 0);
  absl::Status refused = CheckProvisionable(store, 1.0, 10 * kGiB, "volume pvc-1");
  EXPECT_TRUE(absl::IsResourceExhausted(refused)) << refused;
  EXPECT_NE(refused.message().find("--overprovision-ratio 1"), std::string::npos) << refused;
  EXPECT_NE(refused.message().find("volume pvc-1"), std::string::npos) << refused;
  EXPECT_TRUE(CheckProvisionable(store, 3.0, 10 * kGiB, "volume pvc-1").ok());
  // Exactly what is left fits; one byte more does not.
  EXPECT_TRUE(CheckProvisionable(Thin(4 * kGiB, kGiB), 1.0, 3 * kGiB, "v").ok());
  EXPECT_FALSE(CheckProvisionable(Thin(4 * kGiB, kGiB), 1.0, 3 * kGiB + 1, "v").ok());
  // No capacity asked: nothing is promised, always fits.
  EXPECT_TRUE(CheckProvisionable(Thin(4 * kGiB, 40 * kGiB), 1.0, 0, "v").ok());
}

TEST(CapacityPolicy, NonThinRefusalSaysCapacityIsNotEnforced) {
  StoreCapacity store;
  store.free_bytes = kGiB;
  absl::Status refused = CheckProvisionable(store, 4.0, 2 * kGiB, "volume pvc-2");
  EXPECT_TRUE(absl::IsResourceExhausted(refused)) << refused;
  EXPECT_NE(refused.message().find("does not enforce capacity"), std::string::npos) << refused;
}

TEST(CapacityPolicy, RatioMustBeAtLeastOneAndFinite) {
  EXPECT_TRUE(ValidateOverprovisionRatio(1.0).ok());
  EXPECT_TRUE(ValidateOverprovisionRatio(20.0).ok());
  EXPECT_TRUE(ValidateOverprovisionRatio(1000.0).ok());
  for (double bad : {0.0, 0.99, -1.0, 1000.5, std::nan(""), HUGE_VAL}) {
    EXPECT_TRUE(absl::IsInvalidArgument(ValidateOverprovisionRatio(bad))) << bad;
  }
}

}  // namespace
}  // namespace strata::node
