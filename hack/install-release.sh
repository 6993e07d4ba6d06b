#!/bin/sh
# install-release.sh downloads an egwct release binary for this machine,
# checks it against the release's checksums.txt and installs it.
#
#   hack/install-release.sh [VERSION] [DIR]
#
# VERSION is a release tag (v0.3.0) or latest (the default); DIR is where
# egwct goes (default /usr/local/bin). The assets are
# egwct_<os>_<arch>.tar.gz and checksums.txt (sha256sum format) of the
# release. EGWCT_RELEASE_URL overrides the folder they are fetched from
# (a mirror, or a test's file server). Nothing is installed unless the
# checksum matches. Needs curl or wget, tar and sha256sum (or shasum).
set -eu

version=${1:-latest}
dir=${2:-/usr/local/bin}
repo=https://github.com/egwct/egwct/releases

die() { echo "install-release.sh: $*" >&2; exit 1; }

case "$(uname -s)" in
	Linux) os=linux ;;
	Darwin) os=darwin ;;
	*) die "unsupported OS $(uname -s)" ;;
esac
case "$(uname -m)" in
	x86_64 | amd64) arch=amd64 ;;
	aarch64 | arm64) arch=arm64 ;;
	*) die "unsupported architecture $(uname -m)" ;;
esac
asset="egwct_${os}_${arch}.tar.gz"

if [ -n "${EGWCT_RELEASE_URL:-}" ]; then
	base=${EGWCT_RELEASE_URL%/}
elif [ "$version" = latest ]; then
	base="$repo/latest/download"
else
	base="$repo/download/$version"
fi

fetch() {
	if command -v curl >/dev/null 2>&1; then
		curl -fsSL --retry 3 -o "$2" "$1"
	elif command -v wget >/dev/null 2>&1; then
		wget -q -O "$2" "$1"
	else
		die "needs curl or wget"
	fi
}

sha256() {
	if command -v sha256sum >/dev/null 2>&1; then
		sha256sum "$1" | cut -d' ' -f1
	else
		shasum -a 256 "$1" | cut -d' ' -f1
	fi
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

fetch "$base/$asset" "$tmp/$asset" || die "cannot download $base/$asset"
fetch "$base/checksums.txt" "$tmp/checksums.txt" || die "cannot download $base/checksums.txt"
want=$(awk -v a="$asset" '$2 == a || $2 == "*" a { print $1 }' "$tmp/checksums.txt")
[ -n "$want" ] || die "checksums.txt has no line for $asset"
got=$(sha256 "$tmp/$asset")
[ "$got" = "$want" ] || die "checksum mismatch for $asset: got $got, checksums.txt says $want"

mkdir -p "$tmp/x"
tar -xzf "$tmp/$asset" -C "$tmp/x"
bin=$(find "$tmp/x" -type f -name egwct | head -n 1)
[ -n "$bin" ] || die "$asset holds no egwct binary"
mkdir -p "$dir"
install -m 0755 "$bin" "$dir/egwct.tmp.$$"
mv -f "$dir/egwct.tmp.$$" "$dir/egwct"
echo "installed $("$dir/egwct" version 2>/dev/null | head -n 1 || echo egwct) to $dir/egwct (sha256 $got)"
