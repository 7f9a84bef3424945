#pragma once
// CallGate: the one door every CSI and admin call goes through. It admits calls only once
// start-up recovery is done and until shutdown begins, and counts the calls in flight so that
// SIGTERM can let them finish (CSI and admin calls alike: a commit or an import that the server
// completes must not look cancelled to its caller, or a retry would do it twice).
//
// Why calls wait for recovery: recovery decides what on disk belongs to whom. A call served
// before it finishes could create content that recovery, working from an older view, takes for
// a leftover. Identity calls (Probe) are always admitted so a CO can see "not ready".

#include <atomic>
#include <chrono>

#include "absl/status/status.h"

namespace strata::csi {

class CallGate {
 public:
  // Admits a call: OK, or UNAVAILABLE (retryable) while recovering (when `needs_ready`) or
  // shutting down. Every OK must be paired with Exit().
  absl::Status Enter(bool needs_ready);
  void Exit();

  // Recovery finished: calls that need a recovered store are admitted from now on.
  void SetReady(bool ready) { ready_ = ready; }
  bool ready() const { return ready_.load(); }

  // Stops admitting calls and waits up to `grace` for the ones in flight; true when none are left.
  bool Drain(std::chrono::milliseconds grace);
  int in_flight() const { return in_flight_.load(); }

 private:
  std::atomic<bool> ready_{false};
  std::atomic<bool> draining_{false};
  std::atomic<int> in_flight_{0};
};

}  // namespace strata::csi
