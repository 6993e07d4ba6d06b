#!/bin/sh
# image.sh builds egwct's OCI image with go-containerregistry (the tool
# module hack/image), built once into a cache folder outside the
# repository and reused while hack/image's sources are unchanged. make
# image runs it after make cross; the flags are hack/image's:
#
#   hack/image.sh -bin bin -out dist/image -version v0.1.0 -created 2026-01-02T03:04:05Z
#   hack/image.sh --path     # only build, and print the tool's path
#
# Environment: EGWCT_CACHE overrides the cache folder (default
# ${XDG_CACHE_HOME:-$HOME/.cache}/egwct); GO names the go command.
set -eu
GO=${GO:-go}
here=$(cd "$(dirname "$0")" && pwd)
mod="$here/image"
cache=${EGWCT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/egwct}
sha256=sha256sum
command -v sha256sum >/dev/null || sha256="shasum -a 256" # macOS
sum=$(cat "$mod/go.mod" "$mod/go.sum" $(ls "$mod"/*.go | grep -v '_test\.go$') | $sha256 | cut -c1-16)
bin="$cache/bin/image-$sum"
if [ ! -x "$bin" ]; then
	mkdir -p "$cache/bin"
	echo "image.sh: building the image tool (go-containerregistry) into $bin" >&2
	(cd "$mod" && GOFLAGS=-mod=readonly CGO_ENABLED=0 "$GO" build -trimpath -o "$bin.tmp.$$" .) >&2
	mv "$bin.tmp.$$" "$bin"
fi
if [ "${1:-}" = --path ]; then
	echo "$bin"
	exit 0
fi
exec "$bin" "$@"
