#!/usr/bin/env bash
# Chart tests (ctest label `chart`), one sub-command per ctest test:
#
#   run.sh fetch    CACHE                    fetch helm + kubernetes-models (tools/fetch-helm.sh)
#   run.sh lint     CACHE [VALUES]           helm lint --strict
#   run.sh render   CACHE NAME [VALUES]      helm template + validate every object + chart facts
#   run.sh schema   CACHE                    values.schema.json rejects each tests/chart/bad-values
#   run.sh examples CACHE                    deploy/examples/*.yaml valid and refer to real objects
#   run.sh immutable CACHE                   an upgrade that changes a StorageClass's immutable
#                                            fields fails at render time (cluster faked by a
#                                            stand-in for templates/_lookup.tpl); one that does not, renders
#   run.sh flags    CACHE STRATA_CSI         every flag the chart passes to the plugin is accepted
#                                            by the binary (rendered with every values file)
#
# A values file may carry `# expect-arg: CONTAINER:ARG` lines (the rendered DaemonSet must pass
# exactly that argument to that container), `# expect-env: CONTAINER:NAME=fieldRef:PATH` /
# `CONTAINER:!NAME` lines (that container's env var NAME comes from the downward API field PATH /
# is not set), `# expect-kind: [!]KIND` lines (that kind must / must not be rendered),
# `# expect-field: KIND:PATH=JSON` lines (every rendered KIND has JSON at PATH, see validate.mjs)
# and `# api-versions: GROUP/VERSION` lines (the cluster serves that API: helm --api-versions).
# A bad-values file carries `# expect: TEXT` (values.schema.json rejects it, naming TEXT) or
# `# expect-fail: TEXT` (the schema passes it and a template `fail` refuses it with TEXT).
#
# Every render gets $base first: images.plugin.repository has no default (the chart refuses to
# guess an image), so the tests name one; a values file may still override it.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
chart="$repo/deploy/helm/strata"
cmd="${1:?sub-command}"
cache="${2:?cache dir}"
helm="$cache/helm/helm"
modules="$cache/node/node_modules"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Helm keeps caches and config under $HOME; keep them out of the user's home and the repo.
export HELM_CACHE_HOME="$work/helm-cache" HELM_CONFIG_HOME="$work/helm-config" HELM_DATA_HOME="$work/helm-data"

need_tools() {
  if [[ ! -x "$helm" || ! -d "$modules/kubernetes-models" ]]; then
    "$repo/tools/fetch-helm.sh" "$cache"
  fi
}

values_files() { ls "$here"/values/*.yaml; }

base="$work/base.yaml"
printf 'images:\n  plugin:\n    repository: registry.example.com/strata/strata-csi\n' >"$base"

# --api-versions flags for the `# api-versions:` lines of a values file.
api_versions() {  # api_versions [VALUES]
  [[ -n "${1:-}" ]] || return 0
  sed -n 's/^# api-versions: *//p' "$1" | while read -r v; do printf -- '--api-versions\n%s\n' "$v"; done
}

render() {  # render OUT [VALUES [HELM-ARG...]]
  local out="$1" values="${2:-}" apis=()
  shift; shift || true
  mapfile -t apis < <(api_versions "$values")
  "$helm" template strata "$chart" --namespace strata-system -f "$base" ${values:+-f "$values"} \
    "${apis[@]}" "$@" >"$out"
}

case "$cmd" in
  fetch)
    "$repo/tools/fetch-helm.sh" "$cache"
    "$helm" version --short
    node -e 'process.exit(0)'
    ;;

  lint)
    need_tools
    values="${3:-}"
    "$helm" lint --strict "$chart" -f "$base" ${values:+-f "$values"}
    ;;

  render)
    need_tools
    name="${3:?name}"
    values="${4:-}"
    out="$work/$name.yaml"
    render "$out" "$values"
    expect=()
    if [[ -n "$values" ]]; then
      while read -r spec; do
        expect+=(--expect-arg "$spec")
      done < <(sed -n 's/^# expect-arg: *//p' "$values")
      while read -r spec; do
        expect+=(--expect-env "$spec")
      done < <(sed -n 's/^# expect-env: *//p' "$values")
      while read -r kind; do
        expect+=(--expect-kind "$kind")
      done < <(sed -n 's/^# expect-kind: *//p' "$values")
      while read -r spec; do
        expect+=(--expect-field "$spec")
      done < <(sed -n 's/^# expect-field: *//p' "$values")
    fi
    node "$here/validate.mjs" --modules "$modules" --chart-facts "${expect[@]}" "$out"
    ;;

  schema)
    need_tools
    # The defaults must pass, so each failure below is the bad value's doing.
    render "$work/default.yaml"
    failed=0
    for bad in "$here"/bad-values/*.yaml; do
      want="$(sed -n 's/^# expect: *//p' "$bad")"
      want_fail="$(sed -n 's/^# expect-fail: *//p' "$bad")"
      if [[ -z "$want" && -z "$want_fail" ]]; then
        echo "FAIL $(basename "$bad"): no '# expect:' or '# expect-fail:' line"
        failed=1
      elif "$helm" template strata "$chart" -f "$base" -f "$bad" >"$work/out.yaml" 2>"$work/err.txt"; then
        echo "FAIL $(basename "$bad"): rendered, but it should be refused"
        failed=1
      elif [[ -n "$want_fail" ]]; then
        # Refused by the templates, not the schema: the schema accepted these values.
        if grep -q "values don't meet the specifications of the schema" "$work/err.txt" ||
           ! grep -qF -- "$want_fail" "$work/err.txt"; then
          echo "FAIL $(basename "$bad"): not refused by the templates with '$want_fail':"
          cat "$work/err.txt"
          failed=1
        else
          echo "ok   $(basename "$bad"): refused at render time ($want_fail)"
        fi
      elif ! grep -q "values don't meet the specifications of the schema" "$work/err.txt" ||
           ! grep -qF -- "$want" "$work/err.txt"; then
        echo "FAIL $(basename "$bad"): rejected for another reason than '$want':"
        cat "$work/err.txt"
        failed=1
      else
        echo "ok   $(basename "$bad"): rejected ($want)"
      fi
    done
    exit "$failed"
    ;;

  examples)
    need_tools
    # The examples take snapshots: render for a cluster with the VolumeSnapshot API.
    render "$work/default.yaml" "" --api-versions snapshot.storage.k8s.io/v1
    node "$here/validate.mjs" --modules "$modules" --refs "$work/default.yaml" "$repo"/deploy/examples/*.yaml
    ;;

  immutable)
    need_tools
    # A copy of the chart whose lookup answers from a fixture: the cluster already has the
    # default values' strata-busybox class (the same fields the templates render).
    cp -r "$chart" "$work/chart"
    fake() {  # fake IMAGE RECLAIM: the cluster's strata-busybox has these
      cat >"$work/chart/templates/_lookup.tpl" <<EOT
{{- define "strata.lookupStorageClass" -}}
{{- if eq . "strata-busybox" -}}
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: strata-busybox
provisioner: strata.csi.dev
reclaimPolicy: $2
volumeBindingMode: WaitForFirstConsumer
parameters:
  image: $1
{{- else -}}
{}
{{- end -}}
{{- end -}}
EOT
    }
    failed=0
    fake docker.io/library/busybox:1.36 Delete
    if ! "$helm" template strata "$work/chart" -f "$base" >"$work/out.yaml" 2>"$work/err.txt"; then
      echo "FAIL: an upgrade with unchanged StorageClasses was refused:"; cat "$work/err.txt"; failed=1
    else
      echo "ok   unchanged StorageClass renders"
    fi
    for change in "docker.io/library/busybox:1.35 Delete|parameters" "docker.io/library/busybox:1.36 Retain|reclaimPolicy"; do
      fake ${change%%|*}
      if "$helm" template strata "$work/chart" -f "$base" >"$work/out.yaml" 2>"$work/err.txt"; then
        echo "FAIL: changed ${change##*|} of strata-busybox rendered; the upgrade would fail in the API server"; failed=1
      elif ! grep -q "StorageClass strata-busybox differs in immutable fields (${change##*|}" "$work/err.txt" ||
           ! grep -q "kubectl delete storageclass strata-busybox" "$work/err.txt"; then
        echo "FAIL: changed ${change##*|} refused without the expected message:"; cat "$work/err.txt"; failed=1
      else
        echo "ok   changed ${change##*|} refused: $(grep -o 'differs in immutable fields ([^)]*)' "$work/err.txt")"
      fi
    done
    exit "$failed"
    ;;

  flags)
    need_tools
    bin="${3:?strata-csi path}"
    # absl: --help lists the main file's flags, --helpfull every flag (either may exit non-zero).
    # absl names flags with underscores; strata-csi rewrites dashes in flag names to underscores
    # before parsing (Kubernetes manifests spell --node-id), so compare in underscore form.
    { "$bin" --help 2>&1 || true; "$bin" --helpfull 2>&1 || true; } |
      sed -n 's/^ *\(--[A-Za-z0-9_-]*\) .*/\1/p' | tr '-' '_' | sed 's/^__/--/' | sort -u >"$work/accepted.txt"
    if [[ ! -s "$work/accepted.txt" ]]; then
      echo "FAIL: '$bin --help' listed no flags"
      exit 1
    fi
    failed=0
    checked=0
    for values in "" $(values_files); do
      render "$work/r.yaml" "$values"
      while read -r flag; do
        checked=$((checked + 1))
        if ! grep -qxF -- "--$(printf '%s' "${flag#--}" | tr '-' '_')" "$work/accepted.txt"; then
          echo "FAIL ${values:-default values}: chart passes $flag, strata-csi does not accept it"
          failed=1
        fi
      done < <(node "$here/validate.mjs" --modules "$modules" --print-plugin-flags "$work/r.yaml")
    done
    echo "$checked flag uses checked against $(wc -l <"$work/accepted.txt") accepted flags"
    exit "$failed"
    ;;

  *)
    echo "unknown sub-command $cmd" >&2
    exit 2
    ;;
esac
