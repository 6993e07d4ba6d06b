#!/bin/sh
# envtest.sh builds kube-apiserver and etcd for the Kubernetes integration
# tests from the Go module proxy (versions pinned in hack/envtest-assets),
# into a cache folder outside the repository, and prints that folder for
# KUBEBUILDER_ASSETS. A folder that already holds both binaries of the
# pinned versions is reused as it is.
#
#   export KUBEBUILDER_ASSETS="$(hack/envtest.sh)"
#
# Environment: EGWCT_ENVTEST_DIR overrides the folder (default
# ${XDG_CACHE_HOME:-$HOME/.cache}/egwct/envtest/<versions>); GO names the go
# command. Progress goes to stderr, only the folder to stdout.
set -eu

KUBE_VERSION=v1.37.2
ETCD_VERSION=v3.7.3
GO=${GO:-go}

here=$(cd "$(dirname "$0")" && pwd)
mod="$here/envtest-assets"
cache=${XDG_CACHE_HOME:-$HOME/.cache}
dir=${EGWCT_ENVTEST_DIR:-$cache/egwct/envtest/k8s-$KUBE_VERSION-etcd-$ETCD_VERSION}

if [ -x "$dir/kube-apiserver" ] && [ -x "$dir/etcd" ]; then
	echo "$dir"
	exit 0
fi

mkdir -p "$dir"
tmp=$(mktemp -d "$dir/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

log() { echo "envtest.sh: $*" >&2; }
start=$(date +%s)

cd "$mod"
log "building etcd $ETCD_VERSION into $dir"
GOFLAGS=-mod=readonly "$GO" build -trimpath -ldflags="-s -w" \
	-o "$tmp/etcd" go.etcd.io/etcd/server/v3 >&2
log "building kube-apiserver $KUBE_VERSION (a few minutes on a cold cache)"
minor=${KUBE_VERSION#v1.}
minor=${minor%%.*}
GOFLAGS=-mod=readonly "$GO" build -trimpath -ldflags="-s -w \
	-X k8s.io/component-base/version.gitVersion=$KUBE_VERSION \
	-X k8s.io/component-base/version.gitMajor=1 \
	-X k8s.io/component-base/version.gitMinor=$minor" \
	-o "$tmp/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver >&2

# Move into place only when both are built, so a half-done build is never reused.
mv "$tmp/etcd" "$dir/etcd"
mv "$tmp/kube-apiserver" "$dir/kube-apiserver"
log "done in $(( $(date +%s) - start ))s"
echo "$dir"
