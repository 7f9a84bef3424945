#pragma once
// Quarantine: where start-up recovery puts store content the metadata cannot account for,
// instead of deleting it (issue 8). One folder per item, on the store's own filesystem:
//
//   <root>/quarantine/<driver id>-<unix time>[-<n>]/entry.json   what it was and why it is here
//   <root>/quarantine/<driver id>-<unix time>[-<n>]/content      the content, moved by the driver
//
// Content is moved by one rename (Driver::Quarantine), never copied, and never while anything
// mounted shows it. Only Purge deletes quarantined content; Take hands it back to the driver.
// Thread-safe: one mutex (items are few and calls rare).

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "drivers/driver.h"
#include "metrics/metrics.h"
#include "sys/mounter.h"

namespace strata::node {

struct QuarantineEntry {
  std::string name;       // the folder's name: what `stratactl quarantine` commands take
  std::string driver_id;  // the id the content had in the driver
  std::string kind;       // "layer", "active" or "unknown": what the driver could tell
  std::string reason;     // why recovery could not account for it
  std::string label;      // its label (node/labels.h) as JSON, "" when it had none
  int64_t quarantined_unix = 0;
  int64_t bytes = 0;  // measured when it was quarantined
};

drivers::ContentKind ParseContentKind(const std::string& kind);

// True when a mount in `mounter`'s table shows content `driver_id`: a mount whose source,
// options or bind root names the path of the content. Errs on the side of "mounted".
absl::StatusOr<bool> ContentMounted(drivers::Driver* driver, sys::Mounter* mounter,
                                    const std::string& driver_id);

class Quarantine {
 public:
  // `dir` is <root>/quarantine; `metrics` may be null.
  Quarantine(std::string dir, drivers::Driver* driver, sys::Mounter* mounter,
             metrics::Metrics* metrics);

  // Moves content `driver_id` here with `reason` and its `label` JSON (may be "").
  // FailedPrecondition, and nothing moves, when it is mounted; NotFound when the driver holds
  // nothing under that id (its half-made leftovers are gone then).
  absl::StatusOr<QuarantineEntry> Put(const std::string& driver_id, const std::string& reason,
                                      const std::string& label);
  absl::StatusOr<std::vector<QuarantineEntry>> List();  // ordered by name
  // NotFound for a name that is not an entry (names are checked: one plain path component).
  absl::StatusOr<QuarantineEntry> Get(const std::string& name);
  // Moves entry `name`'s content back into the driver as `driver_id` (unused) and `kind`, then
  // forgets the entry.
  absl::Status Take(const std::string& name, drivers::ContentKind kind,
                    const std::string& driver_id);
  // Deletes entry `name` and its content for good: the only path that deletes quarantined data.
  absl::Status Purge(const std::string& name);
  // Sets strata_quarantined_items/_bytes from what is here.
  void RefreshGauges();

  const std::string& dir() const { return dir_; }

 private:
  absl::StatusOr<QuarantineEntry> Read(const std::string& name);
  std::string dir_;
  drivers::Driver* driver_;
  sys::Mounter* mounter_;
  metrics::Metrics* metrics_;
  std::mutex mutex_;
};

}  // namespace strata::node
