#!/usr/bin/env bash
# demo.sh: Strata's main job on embedded defaults, on one machine, no cluster needed.
#  1. installs what it needs and builds Strata;
#  2. starts strata-csi on a local folder (./demo-root) with the overlay driver and SQLite
#     metadata there;
#  3. makes a three-layer sample image with umoci and imports it;
#  4. walks a volume through its life the way kubelet and the sidecars do, over the CSI socket:
#     create → stage → publish → (a pod writes) → snapshot → unpublish → unstage →
#     restore the snapshot into a new volume → delete, showing each step, what the pod sees,
#     and the layer tree.
# Run as root (it mounts filesystems). Leaves nothing mounted; ./demo-root keeps the store.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${STRATA_BUILD_DIR:-$here/build}
demo=${STRATA_DEMO_DIR:-$here/demo-root}
metrics_port=${STRATA_DEMO_METRICS_PORT:-19810}

bold() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
run() { printf '  $ %s\n' "$*"; "$@" 2>&1 | sed 's/^/    /'; }

bold "Installing dependencies and building (first run takes a few minutes)"
"$here/tools/install-deps.sh"
"$here/tools/build.sh" "$build" strata-csi stratactl csi-walk | tail -n 1

csi=$build/cmd/strata-csi
ctl=$build/cmd/stratactl
walk=$build/cmd/csi-walk
# Start from an empty store each run, so the output reads the same every time.
if grep -q " $demo/" /proc/self/mountinfo; then
  echo "demo.sh: something is still mounted under $demo; unmount it first" >&2
  exit 1
fi
rm -rf "$demo/kubelet" "$demo/store"
mkdir -p "$demo/kubelet"
export CSI_ENDPOINT=unix://$demo/csi.sock
export STRATA_ADMIN_ENDPOINT=unix://$demo/store/admin.sock

bold "Starting strata-csi (overlay driver, store and SQLite metadata in $demo/store)"
"$csi" --endpoint "$CSI_ENDPOINT" --root "$demo/store" --driver overlay --node-id demo-node \
  --metrics-address "127.0.0.1:$metrics_port" >"$demo/strata-csi.log" 2>&1 &
plugin=$!
cleanup() {
  # Leave nothing mounted, whatever happened above.
  # (|| true: with set -e and pipefail, a grep that finds no mounts would end the trap early.)
  { grep -o " $demo/kubelet[^ ]*" /proc/self/mountinfo 2>/dev/null || true; } | sort -r |
    while read -r target; do umount -l "$target" 2>/dev/null || true; done
  kill -TERM "$plugin" 2>/dev/null && wait "$plugin" 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 100); do "$walk" info >/dev/null 2>&1 && break; sleep 0.1; done
run "$walk" info

bold "Making a sample image with umoci (3 layers: a base, a whiteout + opaque dir, a symlink)"
rm -rf "$demo/sample-image"
run "$here/tools/make-sample-image.sh" "$demo/sample-image" v1
run "$ctl" import "$demo/sample-image" --name demo/sample:v1
run "$ctl" layers --tree

bold "CreateVolume (what csi-provisioner does for a PVC with parameters.image)"
volume=$("$walk" create pvc-demo --image demo/sample:v1)
echo "    volume id: $volume"
staging=$demo/kubelet/plugins/strata.csi.dev/$volume/globalmount
target=$demo/kubelet/pods/demo-pod/volumes/kubernetes.io~csi/pvc-demo/mount
mkdir -p "$staging" "$(dirname "$target")"

bold "NodeStageVolume: the layered filesystem (image layers + a writable layer) is mounted"
run "$walk" stage "$volume" "$staging"
run findmnt -n -o FSTYPE,TARGET "$staging"

bold "NodePublishVolume: bind-mounted into the pod"
run "$walk" publish "$volume" "$staging" "$target"
echo "  what the pod sees:"
run cat "$target/etc/motd"
run ls -la "$target/app" "$target/app/config" "$target/data"
echo "  (data/readme was deleted by layer 2 and app/config replaced: whiteouts honoured)"

bold "The pod writes: a new file and a change to an image file (copied up)"
echo "hello from the pod" >"$target/data/hello.txt"
echo "motd edited by the pod" >"$target/etc/motd"
run cat "$target/data/hello.txt" "$target/etc/motd"
upper=$(find "$demo/store/overlay/active" -mindepth 2 -maxdepth 2 -name upper | head -n 1)
echo "  the volume's writable layer ($upper) holds only the changes:"
run find "$upper" -type f
run "$walk" stats "$volume" "$target"
run "$ctl" volumes

bold "CreateSnapshot (what csi-snapshotter does for a VolumeSnapshot): a commit"
snapshot=$("$walk" snapshot "$volume" snap-demo-1)
echo "    snapshot id: $snapshot"
echo "  the writable layer became a new read-only layer on top of the image's chain:"
run "$ctl" layers --tree
echo "  the pod keeps writing; later writes are not in the snapshot:"
echo "written after the snapshot" >"$target/data/later.txt"
echo "hello again, changed after the snapshot" >"$target/data/hello.txt"
run cat "$target/data/hello.txt"

bold "NodeUnpublishVolume, NodeUnstageVolume: the pod goes away; the volume keeps its data"
run "$walk" unpublish "$volume" "$target"
run "$walk" unstage "$volume" "$staging"

bold "Restore: CreateVolume from the snapshot (a new writable layer on its chain, no copy)"
restored=$("$walk" create pvc-restored --snapshot "$snapshot")
echo "    volume id: $restored"
restored_staging=$demo/kubelet/plugins/strata.csi.dev/$restored/globalmount
mkdir -p "$restored_staging"
run "$walk" stage "$restored" "$restored_staging"
echo "  the restored volume is the state at the snapshot:"
run cat "$restored_staging/data/hello.txt" "$restored_staging/etc/motd"
run ls "$restored_staging/data"
echo "  the original volume still has everything it wrote:"
run "$walk" stage "$volume" "$staging"
run cat "$staging/data/hello.txt" "$staging/data/later.txt"
run "$walk" unstage "$volume" "$staging"
run "$walk" unstage "$restored" "$restored_staging"
run "$ctl" layers --tree
run "$ctl" volumes

bold "DeleteVolume, DeleteSnapshot: writable layers and the commit go; the image's layers stay"
run "$walk" delete "$volume"
run "$walk" delete "$restored"
run "$walk" delete-snapshot "$snapshot"
run "$ctl" layers --tree
run "$ctl" volumes

bold "Metrics (Prometheus text at http://127.0.0.1:$metrics_port/metrics)"
/usr/bin/python3 - "$metrics_port" <<'PY' | sed 's/^/    /'
import sys, urllib.request
text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=5).read().decode()
for line in text.splitlines():
    if line.startswith(("strata_csi_operations_total", "strata_layers ", "strata_images ",
                        "strata_layer_bytes", "strata_volumes{", "strata_snapshots{",
                        "strata_commit_duration_seconds_count", "strata_shared_bytes")):
        print(line)
PY

bold "Done. The plugin's log: $demo/strata-csi.log"
