#pragma once
// How much capacity the store may still promise to new volumes and expansions: the one rule
// CreateVolume, ControllerExpandVolume/NodeExpandVolume and GetCapacity share, so what
// GetCapacity tells the scheduler is exactly what CreateVolume then accepts.

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace strata::node {

// What the store holds and has promised, read at one moment.
struct StoreCapacity {
  // Thin-provisioned stores (btrfs with quotas, devmapper's thin pool) enforce each volume's
  // capacity but allocate space only as it is written, so the sum of the promises may exceed
  // the store by the over-provisioning ratio. The other stores (overlay, vfs, btrfs without
  // quotas) only record capacity; for them a promise is measured against free space.
  bool thin_provisioned = false;
  int64_t total_bytes = 0;     // the store's size (thin: the pool, less its reserve)
  int64_t free_bytes = 0;      // unwritten bytes
  int64_t promised_bytes = 0;  // the capacities of every volume the store holds
};

// An over-provisioning ratio from --overprovision-ratio: at least 1.0 (never promise less
// than the store holds), at most 1000 (a typo guard), finite.
absl::Status ValidateOverprovisionRatio(double ratio);

// Bytes a new volume (or an expansion, counting only its growth) may still be promised:
//   thin:     total_bytes * ratio - promised_bytes (TopoLVM's rule for thin pools)
//   not thin: free_bytes
// never negative.
int64_t ProvisionableBytes(const StoreCapacity& store, double ratio);

// OK when `bytes` more can be promised; RESOURCE_EXHAUSTED otherwise, saying what the store
// holds, what it has promised and which flag changes the rule. `what` names the request
// ("volume pvc-1 of 10737418240 bytes").
absl::Status CheckProvisionable(const StoreCapacity& store, double ratio, int64_t bytes,
                                const std::string& what);

}  // namespace strata::node
