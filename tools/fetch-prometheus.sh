#!/usr/bin/env bash
# Unpacks Debian's prometheus package (prometheus + promtool binaries) into a cache directory for
# the metrics tests, without installing it: `apt-get install prometheus` would start a server on
# every interface. Reuses the unpacked tree when present.
#
#   tools/fetch-prometheus.sh CACHE_DIR   →   CACHE_DIR/prometheus/usr/bin/{prometheus,promtool}
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 CACHE_DIR" >&2
  exit 2
fi
mkdir -p "$1"
cache="$(cd "$1" && pwd)"
exec 9>"$cache/.fetch-prometheus.lock"
flock 9

root="$cache/prometheus"
if [[ -x "$root/usr/bin/prometheus" && -x "$root/usr/bin/promtool" ]]; then
  exit 0
fi

work="$(mktemp -d "$cache/.prometheus.XXXXXX")"
trap 'rm -rf "$work"' EXIT
# apt-get download writes into the current directory; the _apt sandbox user must be able to.
chmod 0777 "$work"
if ! (cd "$work" && apt-get download prometheus >/dev/null 2>&1); then
  # Stale or missing package lists (a fresh machine): refresh once and retry.
  apt-get update >/dev/null
  (cd "$work" && apt-get download prometheus >/dev/null)
fi
deb="$(ls "$work"/prometheus_*.deb)"
rm -rf "$root"
mkdir -p "$work/x"
dpkg-deb -x "$deb" "$work/x"
mv "$work/x" "$root"
test -x "$root/usr/bin/prometheus" && test -x "$root/usr/bin/promtool"
