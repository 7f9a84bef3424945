// Compiled by thread_safety_check.sh, once with -DSTRATA_GUARDED (must compile) and once
// without (must fail with the lock analysis' diagnostic). The same pattern as VolumeLocks.
#include <set>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

class Keys {
 public:
  bool Take(const std::string& key) {
#ifdef STRATA_GUARDED
    absl::MutexLock lock(&mutex_);
#endif
    return held_.insert(key).second;
  }

 private:
  absl::Mutex mutex_;
  std::set<std::string> held_ ABSL_GUARDED_BY(mutex_);
};

int main() { return Keys().Take("a") ? 0 : 1; }
