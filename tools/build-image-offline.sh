#!/usr/bin/env bash
# Builds the Strata image with buildah on a machine that reaches Debian's apt mirror but no
# container registry: the debian:bookworm / debian:bookworm-slim base images the Dockerfile names
# are made locally with debootstrap (minbase, which is what the official slim image is) and tagged
# under those names, then `buildah bud --pull-never` builds the Dockerfile as is.
#
#   tools/build-image-offline.sh WORK_DIR [TAG]      (as root; default TAG localhost/strata-csi:0.1.0)
#
# Needs the Debian packages buildah and debootstrap. Uses buildah's vfs storage driver and chroot
# isolation, so it also runs inside containers without overlay or user namespaces.
set -euo pipefail

work="${1:?work dir (e.g. build-chart)}"
tag="${2:-localhost/strata-csi:0.1.0}"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# Always the vfs driver, given explicitly (the STORAGE_DRIVER variable picks a different store).
bh() { buildah --storage-driver vfs "$@"; }
mkdir -p "$work"
work="$(cd "$work" && pwd)"

if ! bh inspect --type image docker.io/library/debian:bookworm-slim >/dev/null 2>&1; then
  rootfs="$work/rootfs-bookworm-minbase"
  if [[ ! -x "$rootfs/usr/bin/apt-get" ]]; then
    rm -rf "$rootfs"
    debootstrap --variant=minbase bookworm "$rootfs" "$mirror"
  fi
  ctr="$(bh from scratch)"
  trap 'bh rm "$ctr" >/dev/null 2>&1 || true' EXIT
  mnt="$(bh mount "$ctr")"
  cp -a "$rootfs/." "$mnt/"
  rm -f "$mnt"/var/cache/apt/archives/*.deb
  bh umount "$ctr" >/dev/null
  bh commit -q "$ctr" docker.io/library/debian:bookworm-slim >/dev/null
  # The builder stage only needs apt and a shell; the same minbase serves as debian:bookworm.
  bh tag docker.io/library/debian:bookworm-slim docker.io/library/debian:bookworm
fi

bh bud --pull-never --isolation chroot --layers=false -t "$tag" -f "$repo/Dockerfile" "$repo"
bh images "$tag"
