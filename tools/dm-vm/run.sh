#!/usr/bin/env bash
# Runs the devmapper driver's kernel test (BUILD_DIR/tests/devmapper/devmapper_kernel_test) inside
# a QEMU guest booted with Debian's kernel, because the build machine's kernel may have no
# device-mapper. Usage: tools/dm-vm/run.sh BUILD_DIR [gtest args...]
#
#  1. apt-get download Debian's kernel, kmod, busybox-static, dmsetup, thin-provisioning-tools,
#     e2fsprogs, libdevmapper into BUILD_DIR/dm-vm/debs (reused when present), dpkg-deb -x them.
#  2. Builds an initramfs: static busybox, the kernel modules (dm-thin-pool, loop, ext4, 9p,
#     virtio, with their dependencies from modules.dep), the tools the driver runs and every
#     shared library they and the test binary need (from ldd).
#  3. Boots it with qemu-system-x86_64 -accel tcg, sharing BUILD_DIR read-only over 9p; the
#     guest runs the test binary and reports its exit code through isa-debug-exit.
# When BUILD_DIR has tests/drivers/quota_kernel_test, the guest runs it too (overlay and vfs
# project quotas on loop-file xfs and ext4; this host's kernel may have no quota support), with
# STRATA_REQUIRE_QUOTAS=1 so that a missing piece fails instead of skipping
# (STRATA_DM_VM_QUOTA_ONLY=1 runs only that test).
# When BUILD_DIR also has tests/e2e/csi_e2e_test and cmd/strata-csi, the guest then runs the
# end-to-end CSI tests on devmapper too (STRATA_DM_VM_E2E_FILTER, default '*/devmapper'), with
# the sample image made here beforehand (umoci and skopeo are not in the guest); the exit code
# is the first failure's.
# Exit: the test's exit code; 77 (skip) when qemu or the Debian packages cannot be had.
set -euo pipefail

if [ $# -lt 1 ]; then
  echo "usage: $0 BUILD_DIR [gtest args...]" >&2
  exit 2
fi
build=$(realpath "$1")
shift
test_bin=$build/tests/devmapper/devmapper_kernel_test
work=$build/dm-vm
skip() { echo "SKIP: $*"; exit 77; }

[ -x "$test_bin" ] || { echo "missing $test_bin: build target devmapper_kernel_test" >&2; exit 1; }
command -v qemu-system-x86_64 >/dev/null ||
  skip "qemu-system-x86_64 not installed (Debian package qemu-system-x86)"

# --- 1. Debian packages ------------------------------------------------------------------------
packages="kmod busybox-static dmsetup libdevmapper1.02.1 thin-provisioning-tools e2fsprogs"
mkdir -p "$work/debs"
if [ ! -f "$work/debs/.complete" ]; then
  kernel_name() {
    apt-cache depends linux-image-amd64 2>/dev/null |
      awk '/Depends: linux-image-[0-9]/ {print $2; exit}'
  }
  download() {
    (cd "$work/debs" && apt-get download $kernel_pkg $packages >"$work/download.log" 2>&1)
  }
  kernel_pkg=$(kernel_name) || true
  # Package lists may be missing or stale on a machine that had everything installed already:
  # refresh them once before giving up.
  if [ -z "$kernel_pkg" ] || ! download; then
    apt-get -o DPkg::Lock::Timeout=600 update -q >"$work/update.log" 2>&1 || true
    kernel_pkg=$(kernel_name) || true
    [ -n "$kernel_pkg" ] || skip "apt-cache cannot name linux-image-amd64's kernel"
    download || skip "apt-get download failed: $(tail -n 3 "$work/download.log")"
  fi
  touch "$work/debs/.complete"
fi
root=$work/root
if [ ! -f "$root/.complete" ]; then
  rm -rf "$root"
  mkdir -p "$root"
  for deb in "$work"/debs/*.deb; do dpkg-deb -x "$deb" "$root"; done
  touch "$root/.complete"
fi
kver=$(ls "$root/lib/modules" | head -n 1)
vmlinuz=$root/boot/vmlinuz-$kver
[ -f "$vmlinuz" ] || { echo "no kernel in $root/boot" >&2; exit 1; }
if [ ! -f "$root/lib/modules/$kver/modules.dep" ]; then
  ln -sf "$root/bin/kmod" "$work/depmod"
  "$work/depmod" -b "$root" "$kver"
fi

# The e2e tests' sample image, made on the host (tools/make-sample-image.sh + skopeo).
e2e_bin=$build/tests/e2e/csi_e2e_test
csi_bin=$build/cmd/strata-csi
run_e2e=0
if [ -x "$e2e_bin" ] && [ -x "$csi_bin" ]; then
  samples=$work/e2e-samples
  if [ ! -f "$samples/.complete" ] && command -v umoci >/dev/null && command -v skopeo >/dev/null
  then
    rm -rf "$samples"
    mkdir -p "$samples"
    script_dir=$(dirname "$(realpath "$0")")
    if "$script_dir/../make-sample-image.sh" "$samples/layout" v1 >/dev/null &&
       skopeo copy -q "oci:$samples/layout:v1" \
         "docker-archive:$samples/docker-save.tar:sample/docker:v1" >/dev/null; then
      touch "$samples/.complete"
    fi
  fi
  if [ -f "$samples/.complete" ]; then
    run_e2e=1
  else
    echo "dm-vm: no sample image (umoci/skopeo missing?): skipping the e2e tests in the guest"
  fi
fi

# --- 2. initramfs ------------------------------------------------------------------------------
initrd_dir=$work/initramfs
rm -rf "$initrd_dir"
mkdir -p "$initrd_dir"/{bin,sbin,dev,proc,sys,tmp,var/tmp,run,share,etc,lib/modules/"$kver"}
cp "$root/bin/busybox" "$initrd_dir/bin/busybox"

# Modules and their dependencies, in load order (dependencies first).
wanted="crc32c_generic libcrc32c crc16 mbcache jbd2 ext4 loop dm-mod dm-bufio dm-bio-prison
        dm-persistent-data dm-thin-pool virtio virtio_ring virtio_pci 9pnet 9pnet_virtio 9p
        quota_tree quota_v2 xfs overlay"
moddir=$root/lib/modules/$kver
declare -A seen=()
order=()
add_module() {  # $1 = path relative to $moddir (kernel/...ko)
  local rel=$1 dep
  [ -n "${seen[$rel]:-}" ] && return
  seen[$rel]=1
  for dep in $(awk -F': *' -v m="$rel" '$1 == m {print $2}' "$moddir/modules.dep"); do
    add_module "$dep"
  done
  order+=("$rel")
}
for name in $wanted; do
  rel=$(awk -F: -v a="/${name}.ko" -v b="/${name//-/_}.ko" \
        'index($1, a) || index($1, b) {print $1; exit}' "$moddir/modules.dep")
  if [ -z "$rel" ]; then
    grep -qE "/(${name}|${name//-/_})\.ko" "$moddir/modules.builtin" 2>/dev/null && continue
    echo "module $name not found for $kver" >&2
    exit 1
  fi
  add_module "$rel"
done
: >"$initrd_dir/modules.order"
for rel in "${order[@]}"; do
  mkdir -p "$initrd_dir/lib/modules/$kver/$(dirname "$rel")"
  cp "$moddir/$rel" "$initrd_dir/lib/modules/$kver/$rel"
  echo "/lib/modules/$kver/$rel" >>"$initrd_dir/modules.order"
done

# Dynamic programs: the test binary runs from the share; tools are copied in. Their libraries
# come from the host (same Debian release) or, when the host lacks one, the extracted packages.
lib_path="$root/lib/x86_64-linux-gnu:$root/usr/lib/x86_64-linux-gnu"
copy_libs() {
  local lib
  for lib in $(LD_LIBRARY_PATH=$lib_path ldd "$1" | awk '/=> \// {print $3} /^\t\/lib/ {print $1}'); do
    local dest=${lib#"$root"}  # a library from the extracted packages goes to its usual place
    [ -e "$initrd_dir$dest" ] && continue
    mkdir -p "$initrd_dir$(dirname "$dest")"
    cp -L "$lib" "$initrd_dir$dest"
  done
  if LD_LIBRARY_PATH=$lib_path ldd "$1" | grep -q "not found"; then
    echo "unresolved libraries for $1:" >&2
    LD_LIBRARY_PATH=$lib_path ldd "$1" | grep "not found" >&2
    exit 1
  fi
}
for tool in sbin/mkfs.ext4 sbin/mke2fs sbin/resize2fs sbin/e2fsck sbin/debugfs sbin/dmsetup \
            usr/sbin/thin_check; do
  [ -e "$root/$tool" ] || continue
  mkdir -p "$initrd_dir/usr/sbin"
  cp -L "$root/$tool" "$initrd_dir/usr/sbin/$(basename "$tool")"
  copy_libs "$root/$tool"
done
cp "$root/etc/mke2fs.conf" "$initrd_dir/etc/" 2>/dev/null || true
copy_libs "$test_bin"
# The quota test's xfs comes from the host's xfsprogs (same Debian release as the guest's libs).
quota_bin=$build/tests/drivers/quota_kernel_test
if [ -x "$quota_bin" ]; then
  mkfs_xfs=$(command -v mkfs.xfs || true)
  [ -n "$mkfs_xfs" ] || { echo "mkfs.xfs not found: install xfsprogs for the quota test" >&2; exit 1; }
  cp -L "$mkfs_xfs" "$initrd_dir/usr/sbin/mkfs.xfs"
  copy_libs "$mkfs_xfs"
  copy_libs "$quota_bin"
  touch "$initrd_dir/run-quota-test"
  # STRATA_DM_VM_QUOTA_ONLY=1: only the quota test (a quicker run while working on quotas).
  [ "${STRATA_DM_VM_QUOTA_ONLY:-0}" = 1 ] && touch "$initrd_dir/quota-only"
fi
if [ "$run_e2e" = 1 ]; then
  copy_libs "$e2e_bin"
  copy_libs "$csi_bin"
  # The e2e binary names strata-csi by its build path: the guest mounts the share there too.
  echo "$build" >"$initrd_dir/e2e-build"
  echo "${STRATA_DM_VM_E2E_FILTER:-*/devmapper}" >"$initrd_dir/e2e-filter"
fi
ln -sf /usr/sbin/mkfs.ext4 "$initrd_dir/sbin/mkfs.ext4"

# Arguments for the test binary (one per line).
default_filter='Devmapper/*:DevmapperKernelTest.*'
default_filter+=':-*WalkRemoveUsageFreeBytes*:*DirectWriteTargetFeedsTheLayer*'
default_filter+=':*ConcurrentCallsOnDifferentIds*:*RetryAfterHalfDonePrepareAndCommit*'
{
  echo "--gtest_filter=$default_filter"
  for arg in "$@"; do echo "$arg"; done
} >"$initrd_dir/args"

cat >"$initrd_dir/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/usr/sbin:/sbin:/bin:/usr/bin DM_DISABLE_UDEV=1 HOME=/
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t tmpfs -o size=1200m tmpfs /var/tmp
mkdir -p /dev/mapper
for module in $(cat /modules.order); do insmod "$module" || echo "insmod $module failed"; done
rc=1
if mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288,ro host0 /share; then
  echo "guest: kernel $(uname -r), running the devmapper kernel test"
  args=""
  while IFS= read -r line; do args="$args $line"; done </args
  start=$(date +%s)
  if [ -f /quota-only ]; then
    rc=0
  else
    /share/tests/devmapper/devmapper_kernel_test $args
    rc=$?
    echo "guest: test exit code $rc after $(( $(date +%s) - start )) s"
  fi
  if [ -f /run-quota-test ]; then
    echo "guest: running the project quota test (overlay, vfs on xfs and ext4)"
    start=$(date +%s)
    STRATA_REQUIRE_QUOTAS=1 /share/tests/drivers/quota_kernel_test
    quota_rc=$?
    echo "guest: quota test exit code $quota_rc after $(( $(date +%s) - start )) s"
    [ "$rc" -eq 0 ] && rc=$quota_rc
  fi
  if [ -f /e2e-build ] && [ ! -f /quota-only ]; then
    build=$(cat /e2e-build)
    mkdir -p "$build"
    mount --bind /share "$build"
    echo "guest: running the e2e CSI tests on devmapper"
    start=$(date +%s)
    STRATA_E2E_SAMPLES=/share/dm-vm/e2e-samples "$build/tests/e2e/csi_e2e_test" \
      "--gtest_filter=$(cat /e2e-filter)"
    e2e_rc=$?
    echo "guest: e2e exit code $e2e_rc after $(( $(date +%s) - start )) s"
    [ "$rc" -eq 0 ] && rc=$e2e_rc
  fi
else
  echo "guest: cannot mount the 9p share"
fi
sync
# isa-debug-exit: QEMU exits with (rc << 1) | 1.
printf "\\$(printf '%03o' "$rc")" | dd of=/dev/port bs=1 seek=244 count=1 2>/dev/null
poweroff -f
EOF
chmod 755 "$initrd_dir/init"
(cd "$initrd_dir" && find . | "$root/bin/busybox" cpio -o -H newc 2>/dev/null | gzip -1) \
  >"$work/initrd.gz"

# --- 3. boot -----------------------------------------------------------------------------------
echo "dm-vm: booting $kver under TCG ($(du -h "$work/initrd.gz" | cut -f1) initramfs)"
start=$(date +%s)
set +e
timeout 1150 qemu-system-x86_64 -accel tcg -cpu max -m 2G -smp 2 -nographic -no-reboot \
  -nic none -kernel "$vmlinuz" -initrd "$work/initrd.gz" \
  -append "console=ttyS0 quiet panic=-1 rdinit=/init" \
  -virtfs "local,path=$build,mount_tag=host0,security_model=none,readonly=on" \
  -device isa-debug-exit,iobase=0xf4,iosize=0x04
qemu_rc=$?
set -e
echo "dm-vm: wall time $(( $(date +%s) - start )) s"
if [ $(( qemu_rc & 1 )) -eq 1 ]; then
  exit $(( qemu_rc >> 1 ))
fi
echo "dm-vm: the guest did not report an exit code (qemu exit $qemu_rc)" >&2
exit 1
