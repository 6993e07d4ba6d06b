#!/bin/sh
# chart.sh renders deploy/helm/egwct with the Helm Go library (the tool
# module hack/chart), built once into a cache folder outside the
# repository and reused while hack/chart's sources are unchanged.
#
#   hack/chart.sh -n egwct-system --set prometheus.podMonitor.enabled=true deploy/helm/egwct
#   hack/chart.sh --lint deploy/helm/egwct     # helm lint's checks
#   hack/chart.sh --notes deploy/helm/egwct    # NOTES.txt, as helm install prints it
#   hack/chart.sh --path     # only build, and print the renderer's path
#
# Environment: EGWCT_CACHE overrides the cache folder (default
# ${XDG_CACHE_HOME:-$HOME/.cache}/egwct); GO names the go command.
set -eu
GO=${GO:-go}
here=$(cd "$(dirname "$0")" && pwd)
mod="$here/chart"
cache=${EGWCT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/egwct}
sha256=sha256sum
command -v sha256sum >/dev/null || sha256="shasum -a 256" # macOS
sum=$(cat "$mod/go.mod" "$mod/go.sum" "$mod"/*.go | $sha256 | cut -c1-16)
bin="$cache/bin/chart-$sum"
if [ ! -x "$bin" ]; then
	mkdir -p "$cache/bin"
	echo "chart.sh: building the chart renderer (Helm's Go library) into $bin" >&2
	(cd "$mod" && GOFLAGS=-mod=readonly CGO_ENABLED=0 "$GO" build -trimpath -o "$bin.tmp" .) >&2
	mv "$bin.tmp" "$bin"
fi
if [ "${1:-}" = --path ]; then
	echo "$bin"
	exit 0
fi
exec "$bin" "$@"
