#pragma once
// Crash points: named places where a test can make the plugin die as if by `kill -9`, to prove
// that every step is safe to retry after a crash. Set STRATA_CRASH_POINT=<name> in the plugin's
// environment; when execution reaches that point the process sends itself SIGKILL. Unset (the
// normal case) it costs one pointer comparison.

namespace strata {

void CrashPoint(const char* name);

}  // namespace strata
