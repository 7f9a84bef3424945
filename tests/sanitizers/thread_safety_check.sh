#!/usr/bin/env bash
# thread_safety_check.sh COMPILER SOURCE FLAGS...: the guarded case compiles, the unguarded one
# fails with clang's "requires holding mutex" error (so -Werror=thread-safety is in force).
set -uo pipefail
compiler=$1 source=$2
shift 2
if ! "$compiler" -std=c++20 -fsyntax-only "$@" -DSTRATA_GUARDED "$source"; then
  echo "FAIL: the guarded case does not compile" >&2
  exit 1
fi
out=$("$compiler" -std=c++20 -fsyntax-only "$@" "$source" 2>&1)
rc=$?
if [ "$rc" -eq 0 ]; then
  echo "FAIL: an unguarded access to an ABSL_GUARDED_BY member compiled" >&2
  exit 1
fi
if ! grep -q "requires holding mutex 'mutex_'" <<<"$out"; then
  echo "FAIL: the unguarded case failed for another reason:" >&2
  echo "$out" >&2
  exit 1
fi
echo "ok: the lock analysis rejects the unguarded access"
