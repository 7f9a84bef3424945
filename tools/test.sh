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
ctest --output-on-failure -j2 --timeout 900 "$@"
if [ $# -eq 0 ]; then
  "$here/tools/sanitize-and-fuzz.sh"
fi
