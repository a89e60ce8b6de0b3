#!/usr/bin/env bash
# Builds helm at the version pinned in hack/tools/go.mod from the Go module
# proxy into the cache, and prints the binary's path. Reuses a complete build,
# so only the first run pays for it (about two minutes on 2 cores).
#
#   hack/build-helm.sh        # prints e.g. ~/.cache/kubestream/tools/helm-v3.22.0/helm
#
# Environment:
#   KUBESTREAM_CACHE  cache root (default ${XDG_CACHE_HOME:-$HOME/.cache}/kubestream)
set -euo pipefail

cd "$(dirname "$0")/tools"
HELM_VERSION=$(go list -m -f '{{.Version}}' helm.sh/helm/v3)
CACHE=${KUBESTREAM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kubestream}
OUT="$CACHE/tools/helm-${HELM_VERSION}"

if [[ -x "$OUT/helm" ]]; then
  echo "$OUT/helm"
  exit 0
fi
mkdir -p "$OUT"
echo "build-helm: building helm ${HELM_VERSION} into $OUT (first time: a few minutes)" >&2
start=$(date +%s)
# Into a temporary name first, so an interrupted build is not taken as complete.
CGO_ENABLED=0 go build -trimpath -o "$OUT/helm.tmp" \
  -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}" helm.sh/helm/v3/cmd/helm >&2
mv "$OUT/helm.tmp" "$OUT/helm"
echo "build-helm: done in $(( $(date +%s) - start ))s" >&2
echo "$OUT/helm"
