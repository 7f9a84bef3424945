#!/usr/bin/env bash
# test.sh: installs what the tests need, builds, and runs every test with ctest
# (unit, root: real mounts, e2e: the plugin over its socket, chart: helm + schemas).
# Run as root on Debian bookworm: the root and e2e tests mount overlay filesystems.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${STRATA_BUILD_DIR:-$here/build}
"$here/tools/install-deps.sh"
"$here/tools/build.sh" "$build"
cd "$build"
ctest --output-on-failure -j2 --timeout 900 "$@"
