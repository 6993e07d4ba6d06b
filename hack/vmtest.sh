#!/usr/bin/env bash
# Runs egwct's privileged tests (real BPF maps and the sweeper) under other
# kernels: Debian's 6.1 and 6.12, and bullseye's 5.10 (the oldest kernel
# Cilium 1.18 and later support: no bpf_for_each_map_elem, and BPF memory
# charged to RLIMIT_MEMLOCK), booted with qemu under TCG (KVM does not
# work for stock kernels on these machines). Kernels are fetched with
# apt-get download (nothing is installed from them) into a cache outside
# the repository; SUITE:PACKAGE takes one from another Debian suite, and
# arm64/PACKAGE Debian's arm64 kernel, run by arm64 test binaries under
# qemu-system-aarch64 (make vmtest-arm64), each with apt lists of its own.
# Usage: hack/vmtest.sh [[arm64/][SUITE:]KERNEL_PACKAGE...]
set -euo pipefail
cd "$(dirname "$0")/.."

cache="${XDG_CACHE_HOME:-$HOME/.cache}/egwct/vmtest"
mkdir -p "$cache"
kernels=("$@")
[ ${#kernels[@]} -gt 0 ] || kernels=(linux-image-amd64 linux-image-6.12-amd64 bullseye:linux-image-amd64)

need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
case " ${kernels[*]}" in *" arm64/"*) command -v qemu-system-aarch64 >/dev/null || need+=(qemu-system-arm) ;; esac
[ -x /bin/busybox ] || need+=(busybox-static)
command -v cpio >/dev/null || need+=(cpio)
if [ ${#need[@]} -gt 0 ]; then
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# apt of the machine's own suite and architecture, or (with a suite or
# another architecture) of that suite's main and security archives for
# that architecture, listed in the cache.
apt_for() {
	local arch=$1 suite=$2 tool=$3
	shift 3
	if [ -z "$suite" ] && [ "$arch" = amd64 ]; then
		"$tool" "$@"
		return
	fi
	[ -n "$suite" ] || suite=$(. /etc/os-release && echo "$VERSION_CODENAME")
	local d="$cache/apt-$suite-$arch"
	mkdir -p "$d/lists/partial" "$d/archives/partial" "$d/parts"
	printf 'deb [arch=%s] http://deb.debian.org/debian %s main\ndeb [arch=%s] http://deb.debian.org/debian-security %s-security main\n' \
		"$arch" "$suite" "$arch" "$suite" > "$d/sources.list"
	if [ ! -f "$d/lists/.updated" ]; then
		apt-get -o Dir::Etc::SourceList="$d/sources.list" -o Dir::Etc::SourceParts="$d/parts" \
			-o Dir::State::Lists="$d/lists" -o Dir::Cache="$d" -o APT::Architecture="$arch" \
			-o APT::Architectures="$arch" update -qq && touch "$d/lists/.updated"
	fi
	"$tool" -o Dir::Etc::SourceList="$d/sources.list" -o Dir::Etc::SourceParts="$d/parts" \
		-o Dir::State::Lists="$d/lists" -o Dir::Cache="$d" -o Dir::Cache::archives="$d/archives" \
		-o APT::Architecture="$arch" -o APT::Architectures="$arch" "$@"
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Static test binaries of the packages whose tests need the kernel, per
# architecture.
pkgs=(./pkg/ctmap ./pkg/sweep)
testbins() {
	local arch=$1
	[ -d "$work/tests-$arch" ] && return
	mkdir -p "$work/tests-$arch"
	for p in "${pkgs[@]}"; do
		CGO_ENABLED=0 GOARCH=$arch go test -c -o "$work/tests-$arch/$(basename "$p").test" "$p"
	done
}

# busybox for the VM's init: the machine's own, or a static one of the
# architecture from Debian.
busybox_for() {
	local arch=$1
	if [ "$arch" = amd64 ]; then
		echo /bin/busybox
		return
	fi
	local b="$cache/busybox-$arch"
	if [ ! -x "$b/busybox" ]; then
		rm -rf "$b" && mkdir -p "$b/x"
		(cd "$b" && apt_for "$arch" "" apt-get download -qq busybox-static)
		dpkg-deb -x "$b"/*.deb "$b/x"
		cp "$b/x/bin/busybox" "$b/busybox"
		rm -rf "$b/x" "$b"/*.deb
	fi
	echo "$b/busybox"
}

status=0
for arg in "${kernels[@]}"; do
	arch=amd64 suite="" pkg="$arg"
	case "$pkg" in */*) arch=${pkg%%/*} pkg=${pkg#*/} ;; esac
	case "$pkg" in *:*) suite=${pkg%%:*} pkg=${pkg#*:} ;; esac
	testbins "$arch"
	# The meta package names the current kernel image package.
	img=$(apt_for "$arch" "$suite" apt-cache depends "$pkg" 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
	[ -n "$img" ] || img="$pkg"
	dir="$cache/$img"
	if [ ! -f "$dir/vmlinuz" ]; then
		[ -n "$(apt_for "$arch" "$suite" apt-cache policy "$img" 2>/dev/null)" ] || apt_for "$arch" "$suite" apt-get update -qq
		rm -rf "$dir" && mkdir -p "$dir/x"
		(cd "$dir" && { apt_for "$arch" "$suite" apt-get download -qq "${img}-unsigned" 2>/dev/null || apt_for "$arch" "$suite" apt-get download -qq "$img"; })
		dpkg-deb --fsys-tarfile "$dir"/*.deb | tar -x -C "$dir/x" ./boot
		cp "$dir"/x/boot/vmlinuz-* "$dir/vmlinuz"
		rm -rf "$dir/x" "$dir"/*.deb
	fi

	root="$work/root-$img"
	mkdir -p "$root"/{bin,proc,sys,dev,tmp,run,sys/fs/bpf,tests}
	cp "$(busybox_for "$arch")" "$root/bin/busybox"
	for t in "$work/tests-$arch"/*.test; do cp "$t" "$root/tests/"; done
	cat > "$root/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
mount -t bpf bpf /sys/fs/bpf
echo "vmtest: kernel $(uname -r)"
rc=0
for t in /tests/*.test; do
	echo "vmtest: $t"
	CI=true "$t" -test.count=1 -test.short -test.v > /tmp/out 2>&1 || rc=1
	grep -E "^(--- |ok|PASS|FAIL| +--- SKIP)" /tmp/out # and which engines this kernel refused
	grep -oE "refuses the engine: .*" /tmp/out | sort -u | sed 's/^/vmtest: /' # and why
	[ $rc = 0 ] || tail -40 /tmp/out
done
echo "vmtest: exit $rc"
poweroff -f
INIT
	chmod +x "$root/init"
	(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) > "$work/initrd-$img.gz"

	echo "== $img"
	out="$work/console-$img.log"
	case "$arch" in
	amd64) qemu=(timeout 600 qemu-system-x86_64) console=ttyS0 ;;
	arm64) qemu=(timeout 1500 qemu-system-aarch64 -machine virt) console=ttyAMA0 ;;
	*) echo "vmtest: no qemu for $arch" >&2; exit 2 ;;
	esac
	"${qemu[@]}" -accel tcg -cpu max -m 2048 -smp 1 -nographic -no-reboot \
		-kernel "$dir/vmlinuz" -initrd "$work/initrd-$img.gz" \
		-append "console=$console panic=-1 quiet" > "$out" 2>&1 || true
	tr -d '\r' < "$out" | grep -E '^(vmtest:|--- |FAIL|ok|PASS| +--- SKIP)' || true
	if ! grep -q '^vmtest: exit 0' "$out"; then
		echo "vmtest: FAILED on $img (console log follows)" >&2
		tail -50 "$out" >&2
		status=1
	fi
done
exit $status
