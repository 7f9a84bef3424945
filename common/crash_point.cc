#include "common/crash_point.h"

#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstring>

#include "common/log.h"

namespace strata {

void CrashPoint(const char* name) {
  static const char* armed = getenv("STRATA_CRASH_POINT");
  if (armed == nullptr || std::strcmp(armed, name) != 0) return;
  LogWarning("crash point reached: killing the process", {{"crash_point", name}});
  kill(getpid(), SIGKILL);
  pause();
}

}  // namespace strata
