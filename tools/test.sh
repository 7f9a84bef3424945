#!/usr/bin/env bash
# test.sh: installs what the tests need, builds, and runs every test with ctest
# (unit, root: real mounts, e2e: the plugin over its socket, chart: helm + schemas), then the
# sanitizer stage (tools/sanitize-and-fuzz.sh: unit and e2e under ASan+UBSan with clang, and each
# libFuzzer target for a bounded time). Arguments go to the first ctest and skip the sanitizer
# stage (a developer's focused run).
# Run as root on Debian bookworm: the root and e2e tests mount overlay filesystems.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${STRATA_BUILD_DIR:-$here/build}
"$here/tools/install-deps.sh"
"$here/tools/build.sh" "$build"
cd "$build"
# On failure, end with the failing assertions themselves: CI shows only the head and tail of a
# long log, and a failing test's own output sits in the middle.
if ! ctest --output-on-failure -j2 --timeout 900 "$@"; then
  log=Testing/Temporary/LastTest.log
  echo "=== failed (from $log) ==="
  grep -a -E '^\S*\[  FAILED  \]' "$log" | sort -u | head -n 6 || true
  grep -a -E -A3 ': Failure$|did not report an exit code|SUMMARY: .*Sanitizer' "$log" |
    head -n 14 || true
  exit 1
fi
if [ $# -eq 0 ]; then
  "$here/tools/sanitize-and-fuzz.sh"
fi
