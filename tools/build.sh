#!/usr/bin/env bash
# build.sh [BUILD_DIR]: configures and builds Strata (binaries and tests) with CMake + Ninja.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}
cmake -S "$here" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$(nproc)"
