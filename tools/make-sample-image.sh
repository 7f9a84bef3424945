#!/usr/bin/env bash
# make-sample-image.sh OUT_LAYOUT [TAG]
# Builds a small three-layer OCI image layout with umoci (Debian's), as a real image build would:
#   layer 1  a base tree: /etc/motd, /app/config/{a,b}.conf, /data/readme, /bin/hello (a script)
#   layer 2  deletes /data/readme (a whiteout) and replaces /app/config's files with c.conf
#            (umoci writes one whiteout per deleted file, .wh.a.conf and .wh.b.conf: it never
#            writes an opaque-directory marker, so this image has none)
#   layer 3  adds /app/version and a symlink /app/current -> version
# Needs root (umoci unpack keeps owners). Prints the layout's reference on success.
set -euo pipefail
out=${1:?usage: make-sample-image.sh OUT_LAYOUT [TAG]}
tag=${2:-v1}
command -v umoci >/dev/null || { echo "umoci not found: apt-get install -y umoci" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

[ -e "$out/oci-layout" ] || umoci init --layout "$out"
umoci new --image "$out:$tag"
umoci unpack --image "$out:$tag" "$work/bundle" >/dev/null
rootfs=$work/bundle/rootfs

mkdir -p "$rootfs/etc" "$rootfs/app/config" "$rootfs/data" "$rootfs/bin"
echo "Welcome to a Strata layered volume." > "$rootfs/etc/motd"
echo "mode=a" > "$rootfs/app/config/a.conf"
echo "mode=b" > "$rootfs/app/config/b.conf"
echo "this file is deleted by layer 2" > "$rootfs/data/readme"
printf '#!/bin/sh\necho hello from layer 1\n' > "$rootfs/bin/hello"
chmod 0755 "$rootfs/bin/hello"
umoci repack --refresh-bundle --history.created_by "strata sample: base" \
  --image "$out:$tag" "$work/bundle"

rm "$rootfs/data/readme"
rm -rf "$rootfs/app/config"
mkdir -p "$rootfs/app/config"
echo "mode=c" > "$rootfs/app/config/c.conf"
umoci repack --refresh-bundle --history.created_by "strata sample: whiteouts" \
  --image "$out:$tag" "$work/bundle"

echo "1.0.0" > "$rootfs/app/version"
ln -s version "$rootfs/app/current"
umoci repack --refresh-bundle --history.created_by "strata sample: version" \
  --image "$out:$tag" "$work/bundle"

echo "$out:$tag"
