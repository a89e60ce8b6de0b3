#!/usr/bin/env bash
# Checks the container packaging without a container engine:
#
#   1. the Dockerfile's rules (distroless nonroot final stage, numeric USER,
#      no ADD of URLs, static trimmed build), by reading it;
#   2. the Dockerfile's own go build command, run on this machine, makes a
#      static binary that reports the version it was given;
#   3. test/deploy: docker-compose.yaml against the binary's flags and a real
#      nats-server, deploy/ on a real kube-apiserver (server-side dry run,
#      Pod Security, least-privilege RBAC, the binary running under the
#      ServiceAccount's token), the build from the .dockerignore'd context.
#
#   hack/check-packaging.sh
#
# Needs: go, ldd, nats-server, and the control plane of
# hack/build-controlplane.sh (built on first use).
set -euo pipefail
cd "$(dirname "$0")/.."

failed=0
fail() { echo "check-packaging: $*" >&2; failed=1; }

# --- 1. Dockerfile rules -----------------------------------------------------
[[ -f Dockerfile && -f .dockerignore ]] || { echo "check-packaging: Dockerfile or .dockerignore missing" >&2; exit 1; }

final_from=$(awk 'toupper($1) == "FROM" { img = $2; for (i = 2; i <= NF; i++) if ($i !~ /^--/) { img = $i; break } } END { print img }' Dockerfile)
[[ $final_from == "gcr.io/distroless/static-debian12:nonroot" ]] ||
  fail "final stage is FROM $final_from, want gcr.io/distroless/static-debian12:nonroot"

final_user=$(awk 'toupper($1) == "FROM" { user = "" } toupper($1) == "USER" { user = $2 } END { print user }' Dockerfile)
[[ $final_user == "65532:65532" ]] ||
  fail "final stage USER is '${final_user}', want 65532:65532 (numeric, so Kubernetes' runAsNonRoot can verify it)"

if grep -nEi '^[[:space:]]*ADD[[:space:]].*(https?|git)://' Dockerfile; then
  fail "ADD of a remote URL: download in a RUN with a checksum, or COPY"
elif grep -nEi '^[[:space:]]*ADD[[:space:]]' Dockerfile; then
  fail "ADD found: use COPY (ADD unpacks archives and fetches URLs implicitly)"
fi
grep -qE '^ENTRYPOINT \["/kubestream"\]' Dockerfile || fail 'ENTRYPOINT must be ["/kubestream"] (exec form: signals reach kubestream)'
grep -qE '^EXPOSE 8080$' Dockerfile || fail "EXPOSE 8080 (the default --listen-address) missing"

# The build RUN, continuation lines joined, without RUN and its --mount options.
build_cmd=$(awk '
  toupper($1) == "RUN" { inrun = 1; cmd = "" }
  inrun {
    line = $0; cont = sub(/\\[[:space:]]*$/, "", line)
    cmd = cmd " " line
    if (!cont) { inrun = 0; if (cmd ~ /go build/) { print cmd; exit } }
  }' Dockerfile | sed -E 's/^[[:space:]]*RUN[[:space:]]+//; s/--mount=[^[:space:]]+[[:space:]]*//g')
[[ -n $build_cmd ]] || { echo "check-packaging: no RUN with go build in the Dockerfile" >&2; exit 1; }
for want in CGO_ENABLED=0 -trimpath '-s -w' '-X main.version=${VERSION}'; do
  [[ $build_cmd == *"$want"* ]] || fail "go build command lacks $want: $build_cmd"
done
out_path=$(sed -nE 's/.*[[:space:]]-o[[:space:]]+([^[:space:]]+).*/\1/p' <<<"$build_cmd")
[[ -n $out_path ]] || fail "go build command has no -o: $build_cmd"
grep -qE "^COPY --from=build ${out_path} /kubestream$" Dockerfile ||
  fail "the final stage must COPY --from=build ${out_path} /kubestream (what go build writes)"

# --- 2. The Dockerfile's go build, here -----------------------------------
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
bin="$tmp/kubestream"
version="v0.0.0-check-packaging"
echo "check-packaging: building as the Dockerfile does: ${build_cmd/$out_path/$bin}" >&2
VERSION=$version TARGETOS=$(go env GOOS) TARGETARCH=$(go env GOARCH) bash -c "${build_cmd/$out_path/$bin}"

# ldd exits non-zero on a static binary and says so.
ldd_out=$(ldd "$bin" 2>&1 || true)
if ! grep -qE 'not a dynamic executable|statically linked' <<<"$ldd_out"; then
  fail "the binary is dynamically linked, it will not start on distroless/static:"$'\n'"$ldd_out"
fi
if command -v file >/dev/null; then
  file "$bin" | grep -q 'statically linked' || fail "file says: $(file "$bin")"
fi
got_version=$("$bin" version)
[[ $got_version == "kubestream $version "* ]] ||
  fail "kubestream version printed '$got_version': -X main.version did not reach the binary"

# --- 3. Compose, manifests, RBAC, the filtered build context ------------------
go test -count=1 ./test/deploy/ || failed=1

if (( failed )); then
  echo "check-packaging: FAILED" >&2
  exit 1
fi
echo "check-packaging: ok" >&2
