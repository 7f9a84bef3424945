#!/usr/bin/env bash
# proto/csi.proto must be exactly the protobuf blocks of the CSI spec (wire facts: package,
# services, messages, field numbers). Extracts them again the way the spec project does and diffs.
set -euo pipefail
proto=${1:?proto path}
spec=${2:?spec.md path}
if [ ! -f "$spec" ]; then
  echo "spec not found at $spec; nothing to compare against" >&2
  exit 77
fi
expected=$(sed -n -e '/```protobuf$/,/^```$/ p' "$spec" | sed -e 's@^```.*$@////////@g')
actual=$(tail -n +4 "$proto")  # after the three-line header
if [ "$expected" != "$actual" ]; then
  diff <(echo "$expected") <(echo "$actual") | head -40
  echo "proto/csi.proto differs from the spec's protobuf blocks" >&2
  exit 1
fi
grep -q '^package csi.v1;$' "$proto"
echo "csi.proto matches $spec ($(echo "$expected" | grep -c '^message ') messages)"
