#include "csi/call_gate.h"

#include <chrono>
#include <thread>

#include "csi/plugin_context.h"
#include "gtest/gtest.h"

namespace strata::csi {
namespace {

TEST(CallGateTest, OnlyCallsThatDoNotNeedTheStoreAreAdmittedBeforeRecovery) {
  CallGate gate;
  absl::Status early = gate.Enter(/*needs_ready=*/true);
  EXPECT_TRUE(absl::IsUnavailable(early)) << early;
  EXPECT_NE(early.message().find("recovering"), absl::string_view::npos) << early;
  EXPECT_EQ(gate.in_flight(), 0);
  ASSERT_TRUE(gate.Enter(/*needs_ready=*/false).ok());  // Probe
  gate.Exit();
  gate.SetReady(true);
  ASSERT_TRUE(gate.Enter(/*needs_ready=*/true).ok());
  EXPECT_EQ(gate.in_flight(), 1);
  gate.Exit();
  EXPECT_EQ(gate.in_flight(), 0);
}

TEST(CallGateTest, DrainWaitsForAdmittedCallsAndRefusesNewOnes) {
  CallGate gate;
  gate.SetReady(true);
  ASSERT_TRUE(gate.Enter(true).ok());
  std::thread finisher([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    gate.Exit();
  });
  auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(gate.Drain(std::chrono::seconds(10)));
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(150));
  finisher.join();
  absl::Status late = gate.Enter(false);
  EXPECT_TRUE(absl::IsUnavailable(late)) << late;
  EXPECT_NE(late.message().find("shutting down"), absl::string_view::npos) << late;
}

TEST(CallGateTest, DrainGivesUpAfterTheGracePeriod) {
  CallGate gate;
  gate.SetReady(true);
  ASSERT_TRUE(gate.Enter(true).ok());
  EXPECT_FALSE(gate.Drain(std::chrono::milliseconds(50)));
  EXPECT_EQ(gate.in_flight(), 1);
  gate.Exit();
}

TEST(PluginContextTest, ControllerAndNodeCallsAreUnavailableUntilReadyIdentityIsNot) {
  PluginContext context;
  bool ran = false;
  grpc::Status early = context.Call("CreateVolume", "v", [&] {
    ran = true;
    return absl::OkStatus();
  });
  EXPECT_EQ(early.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_FALSE(ran) << "a call before recovery must not reach the core";
  grpc::Status probe = context.CallIdentity("Probe", [] { return absl::OkStatus(); });
  EXPECT_TRUE(probe.ok());
  context.gate.SetReady(true);
  EXPECT_TRUE(context
                  .Call("CreateVolume", "v",
                        [&] {
                          ran = true;
                          return absl::OkStatus();
                        })
                  .ok());
  EXPECT_TRUE(ran);
}

}  // namespace
}  // namespace strata::csi
