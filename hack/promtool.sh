#!/bin/sh
# promtool.sh prints the path of a promtool for `promtool test rules`
# (hack/promcheck's test): $PROMTOOL or the one on PATH if there is one,
# else Debian's, taken from the prometheus package without installing it:
# `apt-get download` (about 19 MB) and only usr/bin/promtool extracted,
# into a cache folder outside the repository. No Prometheus server is
# installed or started, no user created; it needs no root once the apt
# lists exist (as root it runs apt-get update when the download fails).
#
#   EGWCT_PROMTOOL="$(hack/promtool.sh)"
#
# Environment: EGWCT_CACHE overrides the cache folder (default
# ${XDG_CACHE_HOME:-$HOME/.cache}/egwct). Progress goes to stderr, only
# the path to stdout.
set -eu

if [ -n "${PROMTOOL:-}" ]; then
	echo "$PROMTOOL"
	exit 0
fi
if command -v promtool >/dev/null 2>&1; then
	command -v promtool
	exit 0
fi
cache=${EGWCT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/egwct}
bin="$cache/bin/promtool"
if [ -x "$bin" ]; then
	echo "$bin"
	exit 0
fi
if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-deb >/dev/null 2>&1; then
	echo "promtool.sh: no promtool on PATH and no apt-get to take Debian's: install Prometheus' promtool (https://prometheus.io/download/)" >&2
	exit 1
fi
mkdir -p "$cache/bin"
tmp=$(mktemp -d "$cache/bin/.promtool.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
chmod 755 "$tmp" # apt's _apt user writes the download
echo "promtool.sh: taking promtool from Debian's prometheus package into $bin" >&2
if ! (cd "$tmp" && apt-get download -qq prometheus >&2); then
	[ "$(id -u)" = 0 ] || { echo "promtool.sh: apt-get download prometheus failed; as root: apt-get update" >&2; exit 1; }
	apt-get update -qq >&2
	(cd "$tmp" && apt-get download -qq prometheus >&2)
fi
dpkg-deb --fsys-tarfile "$tmp"/prometheus_*.deb | tar -x -C "$tmp" ./usr/bin/promtool
"$tmp/usr/bin/promtool" --version >/dev/null
mv "$tmp/usr/bin/promtool" "$bin"
echo "$bin"
