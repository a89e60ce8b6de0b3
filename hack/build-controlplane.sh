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

# step LABEL ESTIMATE CMD...: runs a long go command with its output in a
# log, printing one progress line every 15 s (what it does, modules
# downloaded so far, time taken) instead of a wall of "go: downloading";
# on failure the log's tail.
step() {
  local label=$1 estimate=$2
  shift 2
  local log="$work/step.log" began=$SECONDS
  : >"$log"
  "$@" >"$log" 2>&1 &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    for _ in $(seq 1 15); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    kill -0 "$pid" 2>/dev/null || break
    local n phase=compiling
    n=$(grep -c '^go: downloading' "$log" || true)
    [[ $(tail -n 1 "$log") == "go: downloading"* ]] && phase=downloading
    local got=""
    ((n == 0)) || got=", $n modules downloaded"
    log "  $label: $phase$got, $(( SECONDS - began ))s of about $estimate"
  done
  if ! wait "$pid"; then
    log "  $label failed; the last lines of its output:"
    tail -n 30 "$log" >&2
    return 1
  fi
}

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
    step "etcd: fetch" "30s" env GOFLAGS=-mod=mod go get "go.etcd.io/etcd/server/v3@${ETCD_VERSION}"
    step "etcd: build" "30s" env CGO_ENABLED=0 GOBIN="$OUT" GOFLAGS=-mod=mod go install go.etcd.io/etcd/server/v3
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
    step "kube-apiserver and kubectl: fetch" "2 min" env GOFLAGS=-mod=mod go mod tidy
    step "kube-apiserver and kubectl: build" "4 min" env CGO_ENABLED=0 GOBIN="$OUT" GOFLAGS=-mod=mod go install k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl
  )
}

log "building etcd ${ETCD_VERSION}, kube-apiserver and kubectl ${KUBE_VERSION} from the Go module proxy into $OUT"
log "once per machine; cold on 2 idle cores about 5 minutes of compiling plus the downloads (1: etcd, 2: kube-apiserver and kubectl)"
start=$(date +%s)
if [[ ! -x "$OUT/etcd" ]]; then
  log "1/2 etcd ${ETCD_VERSION}"
  build_etcd
fi
if [[ ! -x "$OUT/kube-apiserver" || ! -x "$OUT/kubectl" ]]; then
  log "2/2 kube-apiserver and kubectl ${KUBE_VERSION}"
  build_apiserver
fi
log "done in $(( $(date +%s) - start ))s"
echo "$OUT"
