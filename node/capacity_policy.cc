#include "node/capacity_policy.h"

#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace strata::node {

absl::Status ValidateOverprovisionRatio(double ratio) {
  if (!std::isfinite(ratio) || ratio < 1.0 || ratio > 1000.0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "--overprovision-ratio must be between 1 and 1000 (1: promise no more than the store "
        "holds), not %g",
        ratio));
  }
  return absl::OkStatus();
}

int64_t ProvisionableBytes(const StoreCapacity& store, double ratio) {
  if (!store.thin_provisioned) return std::max<int64_t>(0, store.free_bytes);
  // long double: 1000 x an exabyte-sized pool still fits before the clamp below.
  const long double limit = static_cast<long double>(store.total_bytes) * ratio;
  const long double left = limit - static_cast<long double>(store.promised_bytes);
  if (left <= 0) return 0;
  if (left >= static_cast<long double>(std::numeric_limits<int64_t>::max()))
    return std::numeric_limits<int64_t>::max();
  return static_cast<int64_t>(left);
}

absl::Status CheckProvisionable(const StoreCapacity& store, double ratio, int64_t bytes,
                                const std::string& what) {
  if (bytes <= 0) return absl::OkStatus();
  const int64_t provisionable = ProvisionableBytes(store, ratio);
  if (bytes <= provisionable) return absl::OkStatus();
  if (!store.thin_provisioned) {
    return absl::ResourceExhaustedError(
        absl::StrCat(what, " does not fit: the store has ", store.free_bytes,
                     " bytes free and does not enforce capacity, so it promises no more than "
                     "that"));
  }
  return absl::ResourceExhaustedError(absl::StrFormat(
      "%s does not fit: the thin store holds %d bytes, volumes are promised %d, and "
      "--overprovision-ratio %g allows promising %d in all (%d left); raise the ratio to "
      "over-provision further",
      what, store.total_bytes, store.promised_bytes, ratio,
      static_cast<int64_t>(
          std::min<long double>(static_cast<long double>(store.total_bytes) * ratio,
                                static_cast<long double>(std::numeric_limits<int64_t>::max()))),
      provisionable));
}

}  // namespace strata::node
