#!/usr/bin/env bash
# install-deps.sh: every Debian bookworm package Strata needs to build, run its demo and run its
# tests. Safe to run again. Needs root (apt-get).
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps.sh: run as root (it calls apt-get)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt_get() { apt-get -o DPkg::Lock::Timeout=600 "$@"; }

packages=(
  # build
  build-essential cmake ninja-build pkg-config
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libabsl-dev
  prometheus-cpp-dev libdevmapper-dev libmount-dev libgtest-dev libgmock-dev libarchive-dev
  libsqlite3-dev libssl-dev nlohmann-json3-dev libbtrfsutil-dev
  # run: make and read OCI images, filesystems for the drivers
  umoci skopeo btrfs-progs e2fsprogs xfsprogs util-linux
  # tests: tar tools, the metrics scrape client, downloads of helm (npm) and prometheus (.deb)
  tar gzip zstd curl python3 python3-grpcio ca-certificates dpkg-dev
  # the devicemapper tests boot Debian's own kernel under QEMU (this kernel may lack dm)
  qemu-system-x86
  # tools/sanitize-and-fuzz.sh: clang 14, its ASan/UBSan/libFuzzer runtimes, llvm-symbolizer
  clang-14 libclang-rt-14-dev llvm-14
)
# Node.js is only needed for the chart tests; keep a newer one if the machine has it.
command -v node >/dev/null && command -v npm >/dev/null || packages+=(nodejs npm)

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
    missing+=("$package")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps.sh: all ${#packages[@]} packages already installed"
  exit 0
fi
echo "install-deps.sh: installing ${missing[*]}"
apt_get update -q || apt_get update -q
# A package "cannot be located" right after an update is a stale list: update once more.
apt_get install -y -q --no-install-recommends "${missing[@]}" ||
  { apt_get update -q && apt_get install -y -q --no-install-recommends "${missing[@]}"; }
