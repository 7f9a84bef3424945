#!/usr/bin/env bash
# Metrics tests (ctest label `chart`) against a real strata-csi:
#
#   run.sh promtool   STRATA_CSI CACHE DOCS   make 3 CSI calls, scrape /metrics, `promtool check
#                                             metrics` (format and naming lint), call counters,
#                                             histograms and strata_build_info present, every
#                                             strata_* family documented in DOCS (docs/metrics.md)
#   run.sh prometheus STRATA_CSI CACHE        a real Prometheus scrapes the plugin every 1s;
#                                             strata_build_info must be queryable through the API
#   run.sh docs - CACHE DOCS DASHBOARD        promtool check rules on DOCS' alert rules; every
#                                             metric they and the dashboard query is documented
#
# The plugin runs with --driver=vfs, --root in a temp dir and its sockets there too, metrics on
# 127.0.0.1:<free port>. Prometheus (Debian's package, unpacked by tools/fetch-prometheus.sh, never
# installed) listens on 127.0.0.1 only. Both are stopped on exit, also on failure.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
mode="${1:?mode}"
bin="${2:?strata-csi path (or - for docs)}"
cache="${3:?cache dir}"

tmp="$(mktemp -d)"
pids=()
cleanup() {
  local rc=$?
  for pid in "${pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    # Bounded wait, then SIGKILL: a hung process must not hang the test.
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [[ $rc -ne 0 ]]; then
    for log in "$tmp"/*.log; do
      [[ -f "$log" ]] && { echo "--- $(basename "$log") (last 30 lines)"; tail -n 30 "$log"; }
    done
  fi
  # The plugin may have left mounts under its root (vfs makes none, but be safe).
  if [[ -d "$tmp/root" ]]; then
    awk -v r="$tmp/root" 'index($2, r) == 1 {print $2}' /proc/self/mounts | sort -r |
      while read -r m; do umount -l "$m" 2>/dev/null || true; done
  fi
  rm -rf "$tmp"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_for URL SECONDS PID: until URL answers 200, while PID lives.
wait_for() {
  local url="$1" secs="$2" pid="$3"
  local deadline=$((SECONDS + secs))
  while ((SECONDS < deadline)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "FAIL: process $pid exited before $url answered"
      return 1
    fi
    curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null && return 0
    sleep 0.2
  done
  echo "FAIL: $url did not answer within ${secs}s"
  return 1
}

start_plugin() {
  mkdir -p "$tmp/root"
  port="$(free_port)"
  "$bin" --root="$tmp/root" --driver=vfs --endpoint="unix://$tmp/csi.sock" \
    --node-id=metrics-test --metrics-address="127.0.0.1:$port" --log-level=info \
    >"$tmp/strata-csi.log" 2>&1 &
  pids+=($!)
  wait_for "http://127.0.0.1:$port/metrics" 30 "${pids[-1]}"
}

case "$mode" in
  promtool)
    docs="${4:?docs/metrics.md}"
    "$repo/tools/fetch-prometheus.sh" "$cache"
    promtool="$cache/prometheus/usr/bin/promtool"
    start_plugin
    # A few CSI calls so the call families have series: two that succeed and one the plugin must
    # refuse (NodeGetVolumeStats without a volume id: INVALID_ARGUMENT). Raw bytes: an empty
    # protobuf message is zero bytes, so no generated stubs are needed (Debian's python3-grpcio).
    /usr/bin/python3 - "$tmp/csi.sock" <<'PY'
import sys, grpc
channel = grpc.insecure_channel("unix://" + sys.argv[1])
grpc.channel_ready_future(channel).result(timeout=10)
for method, want in (("/csi.v1.Identity/Probe", grpc.StatusCode.OK),
                     ("/csi.v1.Identity/GetPluginInfo", grpc.StatusCode.OK),
                     ("/csi.v1.Node/NodeGetVolumeStats", grpc.StatusCode.INVALID_ARGUMENT)):
    call = channel.unary_unary(method)
    try:
        call(b"", timeout=10)
        got = grpc.StatusCode.OK
    except grpc.RpcError as e:
        got = e.code()
    if got != want:
        sys.exit(f"FAIL: {method} answered {got}, want {want}")
print("ok   3 CSI calls made")
PY
    curl -fsS --max-time 5 "http://127.0.0.1:$port/metrics" >"$tmp/scrape.txt"
    failed=0
    for want in 'strata_csi_operations_total\{[^}]*method="Probe"[^}]*\} 1' \
                'strata_csi_operations_total\{[^}]*code="INVALID_ARGUMENT"[^}]*\} 1' \
                'strata_csi_operation_duration_seconds_bucket\{[^}]*method="GetPluginInfo"'; do
      if grep -Eq "^${want}" "$tmp/scrape.txt"; then
        echo "ok   scrape matches ^${want}"
      else
        echo "FAIL: scrape lacks ^${want}"
        failed=1
      fi
    done
    if ! "$promtool" check metrics <"$tmp/scrape.txt" >"$tmp/promtool.log" 2>&1; then
      echo "FAIL: promtool check metrics:"
      cat "$tmp/promtool.log"
      failed=1
    else
      echo "ok   promtool check metrics ($(grep -c '^# TYPE' "$tmp/scrape.txt") families)"
    fi
    # strata_build_info{version=...,driver="vfs"} 1
    if grep -Eq '^strata_build_info\{([^}]*,)?driver="vfs"(,[^}]*)?\} 1(\.0+)?$' "$tmp/scrape.txt" &&
       grep -Eq '^strata_build_info\{([^}]*,)?version="[^"]+"' "$tmp/scrape.txt"; then
      echo "ok   strata_build_info has version and driver=\"vfs\""
    else
      echo "FAIL: no strata_build_info{version=...,driver=\"vfs\"} 1 in the scrape:"
      grep strata_build_info "$tmp/scrape.txt" || true
      failed=1
    fi
    # Every family the plugin exports must be documented (a `strata_...` heading or table cell).
    while read -r family; do
      if grep -q -- "\`$family\`" "$docs"; then
        echo "ok   $family documented"
      else
        echo "FAIL: $family is exported but not documented in $(basename "$docs")"
        failed=1
      fi
    done < <(sed -n 's/^# TYPE \(strata_[A-Za-z0-9_]*\) .*/\1/p' "$tmp/scrape.txt" | sort -u)
    exit "$failed"
    ;;

  prometheus)
    "$repo/tools/fetch-prometheus.sh" "$cache"
    prom="$cache/prometheus/usr/bin/prometheus"
    start_plugin
    pport="$(free_port)"
    cat >"$tmp/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: strata
    scrape_interval: 1s
    scrape_timeout: 1s
    static_configs:
      - targets: ["127.0.0.1:$port"]
EOF
    "$prom" --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/tsdb" \
      --web.listen-address="127.0.0.1:$pport" --log.level=warn >"$tmp/prometheus.log" 2>&1 &
    pids+=($!)
    wait_for "http://127.0.0.1:$pport/-/ready" 30 "${pids[-1]}"
    api="http://127.0.0.1:$pport/api/v1/query"
    deadline=$((SECONDS + 30))
    while ((SECONDS < deadline)); do
      if curl -fsS --max-time 2 -G "$api" --data-urlencode 'query=strata_build_info{job="strata",driver="vfs"} == 1' \
          >"$tmp/answer.json" 2>/dev/null &&
         python3 - "$tmp/answer.json" <<'EOF'
import json, sys
answer = json.load(open(sys.argv[1]))
result = answer.get("data", {}).get("result", [])
ok = answer.get("status") == "success" and len(result) == 1 and result[0]["metric"].get("version")
if ok:
    print("ok   Prometheus scraped", result[0]["metric"])
sys.exit(0 if ok else 1)
EOF
      then
        # The scrape target must be healthy too (up == 1), not merely seen once.
        curl -fsS --max-time 2 -G "$api" --data-urlencode 'query=up{job="strata"}' >"$tmp/up.json"
        python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["data"]["result"]; sys.exit(0 if r and r[0]["value"][1]=="1" else 1)' "$tmp/up.json" ||
          { echo "FAIL: up{job=\"strata\"} is not 1"; cat "$tmp/up.json"; exit 1; }
        echo "ok   up{job=\"strata\"} == 1"
        exit 0
      fi
      sleep 0.5
    done
    echo "FAIL: strata_build_info never appeared in Prometheus within 30s; last answer:"
    cat "$tmp/answer.json" 2>/dev/null || true
    curl -fsS --max-time 2 "http://127.0.0.1:$pport/api/v1/targets" || true
    exit 1
    ;;

  docs)
    # run.sh docs - CACHE DOCS DASHBOARD: the alert rules in DOCS pass `promtool check rules`, and
    # every strata_* metric the rules and the dashboard query is documented in DOCS.
    docs="${4:?docs/metrics.md}"
    dashboard="${5:?dashboard json}"
    "$repo/tools/fetch-prometheus.sh" "$cache"
    promtool="$cache/prometheus/usr/bin/promtool"
    # The first ```yaml block that starts with `groups:`.
    awk '/^```yaml$/ {inb=1; buf=""; next} inb && /^```$/ {if (buf ~ /^groups:/) {printf "%s", buf; exit} inb=0; next} inb {buf = buf $0 "\n"}' \
      "$docs" >"$tmp/rules.yml"
    if [[ ! -s "$tmp/rules.yml" ]]; then
      echo "FAIL: no \`\`\`yaml groups: block in $docs"
      exit 1
    fi
    failed=0
    if "$promtool" check rules "$tmp/rules.yml" >"$tmp/rules.log" 2>&1; then
      echo "ok   promtool check rules: $(grep -c -- '- alert:' "$tmp/rules.yml") alert rules"
    else
      echo "FAIL: promtool check rules:"
      cat "$tmp/rules.log"
      failed=1
    fi
    python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$dashboard" ||
      { echo "FAIL: $dashboard is not JSON"; failed=1; }
    while read -r name; do
      if grep -q -- "\`$name\`" "$docs"; then
        echo "ok   $name documented"
      else
        echo "FAIL: $name is queried (rules or dashboard) but not documented in $(basename "$docs")"
        failed=1
      fi
    done < <(cat "$tmp/rules.yml" "$dashboard" | grep -o 'strata_[a-z0-9_]*' |
             sed -E 's/_(bucket|count|sum)$//' | sort -u)
    exit "$failed"
    ;;

  *)
    echo "unknown mode $mode" >&2
    exit 2
    ;;
esac
