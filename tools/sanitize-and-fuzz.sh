#!/usr/bin/env bash
# sanitize-and-fuzz.sh: the sanitizer and fuzzing stage of CI. Builds build-asan/ with clang 14
# (ASan+UBSan, libFuzzer coverage, -Wthread-safety -Werror=thread-safety), runs the unit and e2e
# test labels there, then runs every libFuzzer target in tests/fuzz/ for a bounded time on a
# fresh copy of its committed seed corpus. Fails if any stage fails.
# Run as root on Debian bookworm (it installs its packages; the e2e tests mount filesystems).
#
# Environment: STRATA_ASAN_BUILD_DIR (default build-asan/), STRATA_FUZZ_SECONDS (per target,
# default 30), STRATA_FUZZ_ONLY=1 (skip the tests: build and fuzz only).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${STRATA_ASAN_BUILD_DIR:-$here/build-asan}
fuzz_seconds=${STRATA_FUZZ_SECONDS:-30}
start=$SECONDS

if [ "$(id -u)" -ne 0 ]; then
  echo "sanitize-and-fuzz.sh: run as root (it installs packages and the e2e tests mount)" >&2
  exit 1
fi
stage() { echo "=== sanitize-and-fuzz: $* ($((SECONDS - start)) s)"; }

stage "packages"
# clang-14 itself, libclang-rt-14-dev (the ASan/UBSan/libFuzzer runtimes), llvm-14
# (llvm-symbolizer for readable stack traces): all in tools/install-deps.sh.
"$here/tools/install-deps.sh"

stage "configure $build"
launcher=()
if command -v ccache >/dev/null; then
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
fi
# -O1 and line tables only: what sanitizers need for fast runs and file:line stack traces, and
# far cheaper to compile than -O2 -g on two cores. Assertions stay on.
CC=clang-14 CXX=clang++-14 cmake -S "$here" -B "$build" -G Ninja \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only" \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only" \
  -DSTRATA_SANITIZE=ON -DSTRATA_FUZZ=ON "${launcher[@]}" >/dev/null

stage "build"
cmake --build "$build" -j"$(nproc)"

# Findings stop the process with a stack trace; leaks are findings too, except the narrow list
# in tests/sanitizers/lsan.supp (globals of the uninstrumented Debian gRPC/protobuf builds).
export ASAN_OPTIONS="halt_on_error=1:abort_on_error=1:print_stacktrace=1:detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
export LSAN_OPTIONS="suppressions=$here/tests/sanitizers/lsan.supp:print_suppressions=0"
symbolizer=$(command -v llvm-symbolizer-14 || command -v llvm-symbolizer || true)
[ -n "$symbolizer" ] && export ASAN_SYMBOLIZER_PATH=$symbolizer

failed=()
if [ "${STRATA_FUZZ_ONLY:-0}" != 1 ]; then
  for label in unit e2e; do
    stage "ctest -L $label"
    (cd "$build" && ctest -L "$label" -j2 --timeout 900 --output-on-failure) ||
      failed+=("ctest -L $label")
  done
fi

# Each fuzzer runs on a copy of its seeds in a tmp dir (the committed corpus never changes),
# with no network (its own empty network namespace), bounded in time, memory and per input.
# tmpfs when there is one: the filesystem targets create and delete a tree per input (tmpfs keeps
# trusted.* xattrs and device nodes, which they need).
fuzz_tmp=/tmp
[ -d /dev/shm ] && [ -w /dev/shm ] && fuzz_tmp=/dev/shm
work=$(mktemp -d "$fuzz_tmp/strata-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
isolate=()
if unshare -n true 2>/dev/null; then isolate=(unshare -n); fi
summary=()
for corpus in "$here"/tests/fuzz/corpus/*/; do
  name=$(basename "$corpus")
  binary="$build/tests/fuzz/$name"
  if [ ! -x "$binary" ]; then
    summary+=("$name: MISSING binary $binary")
    failed+=("fuzz $name")
    continue
  fi
  stage "fuzz $name for ${fuzz_seconds}s"
  mkdir -p "$work/$name/corpus" "$work/$name/artifacts" "$work/$name/tmp"
  cp -a "$corpus". "$work/$name/corpus/"
  seeds=$(find "$work/$name/corpus" -type f | wc -l)
  rc=0
  (cd "$work/$name" && TMPDIR="$work/$name/tmp" "${isolate[@]}" "$binary" \
    -max_total_time="$fuzz_seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
    -artifact_prefix="$work/$name/artifacts/" "$work/$name/corpus") >"$work/$name/log" 2>&1 ||
    rc=$?
  units=$(find "$work/$name/corpus" -type f | wc -l)
  crashes=$(find "$work/$name/artifacts" -type f | wc -l)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$name/log" | tail -1)
  cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$work/$name/log" | tail -1)
  line="$name: ${execs:-?} execs, ${cov:-cov: ?}, $((units - seeds)) new corpus units ($seeds seeds), $crashes crashes, exit $rc"
  summary+=("$line")
  if [ "$rc" -ne 0 ] || [ "$crashes" -ne 0 ]; then
    failed+=("fuzz $name")
    tail -60 "$work/$name/log"
    for artifact in "$work/$name/artifacts"/*; do
      [ -f "$artifact" ] || continue
      echo "--- $artifact (base64):"
      base64 -w0 "$artifact" | head -c 4096
      echo
    done
  fi
done

stage "summary"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -ne 0 ]; then
  echo "sanitize-and-fuzz.sh: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "sanitize-and-fuzz.sh: all passed in $((SECONDS - start)) s"
