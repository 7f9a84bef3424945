#include "csi/call_gate.h"

#include <thread>

namespace strata::csi {

absl::Status CallGate::Enter(bool needs_ready) {
  // Count first, then check: Drain() sets draining_ before it reads in_flight_, so a call that
  // passes the check below is always seen by Drain().
  ++in_flight_;
  if (draining_) {
    --in_flight_;
    return absl::UnavailableError("strata-csi is shutting down; retry");
  }
  if (needs_ready && !ready_) {
    --in_flight_;
    return absl::UnavailableError(
        "strata-csi is still recovering its store after start-up; retry shortly");
  }
  return absl::OkStatus();
}

void CallGate::Exit() { --in_flight_; }

bool CallGate::Drain(std::chrono::milliseconds grace) {
  draining_ = true;
  auto deadline = std::chrono::steady_clock::now() + grace;
  while (in_flight_.load() > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  return in_flight_.load() == 0;
}

}  // namespace strata::csi
