#!/usr/bin/env bash
# Builds kube-apiserver and etcd at pinned versions from the Go module proxy
# into a cache directory, and prints that directory. Reuses a complete build.
#
#   hack/build-controlplane.sh            # prints e.g. ~/.cache/kubestream/controlplane/k8s-v1.36.3-etcd-v3.6.5
#
# Environment:
#   KUBE_VERSION   kubernetes version (default v1.36.3)
#   ETCD_VERSION   etcd version (default v3.6.5)
#   KUBESTREAM_CACHE  cache root (default ${XDG_CACHE_HOME:-$HOME/.cache}/kubestream)
set -euo pipefail

KUBE_VERSION=${KUBE_VERSION:-v1.36.3}
ETCD_VERSION=${ETCD_VERSION:-v3.6.5}
CACHE=${KUBESTREAM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kubestream}
OUT="$CACHE/controlplane/k8s-${KUBE_VERSION}-etcd-${ETCD_VERSION}"

if [[ -x "$OUT/kube-apiserver" && -x "$OUT/etcd" && -x "$OUT/kubectl" ]]; then
  echo "$OUT"
  exit 0
fi
mkdir -p "$OUT"
log() { echo "build-controlplane: $*" >&2; }

# The staging modules are published as v0.Y.Z where the kubernetes release is v1.Y.Z.
staging_version="v0.${KUBE_VERSION#v1.}"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

build_etcd() {
  local dir="$work/etcd"
  mkdir -p "$dir"
  (
    cd "$dir"
    go mod init kubestream.local/etcd-build >/dev/null 2>&1
    go mod edit -require="go.etcd.io/etcd/server/v3@${ETCD_VERSION}"
    GOFLAGS=-mod=mod go mod tidy >/dev/null 2>&1 || true
    cat > tools.go <<'GO'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
GO
    GOFLAGS=-mod=mod go get "go.etcd.io/etcd/server/v3@${ETCD_VERSION}" >&2
    CGO_ENABLED=0 GOBIN="$OUT" GOFLAGS=-mod=mod go install go.etcd.io/etcd/server/v3 >&2
    # go install names the binary after the module root without its major suffix.
    mv "$OUT/server" "$OUT/etcd"
  )
}

build_apiserver() {
  local dir="$work/kube"
  mkdir -p "$dir"
  (
    cd "$dir"
    go mod init kubestream.local/kube-build >/dev/null 2>&1
    go mod download -json "k8s.io/kubernetes@${KUBE_VERSION}" >/dev/null
    modfile=$(go mod download -json "k8s.io/kubernetes@${KUBE_VERSION}" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
    go mod edit -require="k8s.io/kubernetes@${KUBE_VERSION}"
    # Replace every staging module the kubernetes go.mod points at its own tree.
    grep -E '^\s*k8s\.io/[a-z0-9-]+ => \./staging/' "$modfile" | awk '{print $1}' | while read -r m; do
      go mod edit -replace="${m}=${m}@${staging_version}"
    done
    cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
    GOFLAGS=-mod=mod go mod tidy >&2
    CGO_ENABLED=0 GOBIN="$OUT" GOFLAGS=-mod=mod go install k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl >&2
  )
}

log "building etcd ${ETCD_VERSION}, kube-apiserver and kubectl ${KUBE_VERSION} into $OUT (first time: several minutes)"
start=$(date +%s)
[[ -x "$OUT/etcd" ]] || build_etcd
[[ -x "$OUT/kube-apiserver" && -x "$OUT/kubectl" ]] || build_apiserver
log "done in $(( $(date +%s) - start ))s"
echo "$OUT"
