#!/bin/sh
# helm.sh builds the helm CLI at the version hack/chart renders with (its
# go.mod), from the Go module proxy, stamped as helm's own Makefile stamps
# a release (its version, and the Kubernetes version helm template and
# helm lint assume without a cluster: 1.<client-go's minor>), into a cache
# folder outside the repository, and prints the binary's path. The tests
# run the README's helm commands with it.
#
#   hack/helm.sh            # build once, print the path
#
# Environment: EGWCT_CACHE overrides the cache folder (default
# ${XDG_CACHE_HOME:-$HOME/.cache}/egwct); GO names the go command.
set -eu
GO=${GO:-go}
here=$(cd "$(dirname "$0")" && pwd)
cache=${EGWCT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/egwct}
ver=$(cd "$here/chart" && "$GO" list -m -f '{{.Version}}' helm.sh/helm/v3)
bin="$cache/bin/helm-$ver"
if [ ! -x "$bin" ]; then
	gomod=$(cd "$here/chart" && "$GO" mod download -json "helm.sh/helm/v3@$ver" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')
	minor=$(sed -n 's/^[[:space:]]*k8s\.io\/client-go v0\.\([0-9][0-9]*\)\..*/\1/p' "$gomod")
	if [ -z "$minor" ]; then
		echo "helm.sh: no k8s.io/client-go in $gomod" >&2
		exit 1
	fi
	echo "helm.sh: building helm $ver (Kubernetes 1.$minor by default) into $bin" >&2
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	ld="-X helm.sh/helm/v3/internal/version.version=$ver"
	for p in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
		ld="$ld -X $p.k8sVersionMajor=1 -X $p.k8sVersionMinor=$minor"
	done
	(cd "$here/chart" && GOBIN="$tmp" CGO_ENABLED=0 GOFLAGS= "$GO" install -trimpath -ldflags "$ld" "helm.sh/helm/v3/cmd/helm@$ver") >&2
	mkdir -p "$cache/bin"
	mv "$tmp/helm" "$bin"
fi
echo "$bin"
