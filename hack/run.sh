#!/usr/bin/env bash
# Runs kubestream for `make run`: against the current kubeconfig's cluster when
# one answers, else against a local control plane started here (built on first
# use). Extra arguments go to `kubestream run`.
set -euo pipefail
cd "$(dirname "$0")/.."
KS=bin/kubestream
KUBECTL_HINT="kubectl"

cluster_answers() {
  # A kubeconfig exists and its current cluster answers /version.
  "$KS" run --help >/dev/null 2>&1 || return 1
  local kc="${KUBECONFIG:-$HOME/.kube/config}"
  [[ -f "${kc%%:*}" ]] || return 1
  command -v kubectl >/dev/null 2>&1 || return 0
  kubectl version --request-timeout=5s >/dev/null 2>&1
}

cleanup() { [[ -n "${DEV_PID:-}" ]] && kill "$DEV_PID" 2>/dev/null && wait "$DEV_PID" 2>/dev/null; true; }
trap cleanup EXIT
trap 'exit 130' INT TERM

args=()
if cluster_answers; then
  echo "make run: using the current kubeconfig (${KUBECONFIG:-$HOME/.kube/config})" >&2
else
  bindir=$(hack/build-controlplane.sh)
  devdir="${XDG_CACHE_HOME:-$HOME/.cache}/kubestream/devcluster"
  rm -f "$devdir/kubeconfig"
  go build -o bin/devcluster ./hack/devcluster
  bin/devcluster --dir "$devdir" &
  DEV_PID=$!
  for _ in $(seq 1 300); do
    [[ -f "$devdir/kubeconfig" ]] && break
    kill -0 "$DEV_PID" 2>/dev/null || { echo "make run: the local control plane failed to start; logs in $devdir" >&2; exit 1; }
    sleep 0.2
  done
  [[ -f "$devdir/kubeconfig" ]] || { echo "make run: the local control plane did not come up; logs in $devdir" >&2; exit 1; }
  args+=(--kubeconfig "$devdir/kubeconfig" --cluster-name local)
  KUBECTL_HINT="KUBECONFIG=$devdir/kubeconfig $bindir/kubectl"
fi

cat >&2 <<MSG
make run: change objects in another terminal and watch the events, e.g.
  $KUBECTL_HINT create configmap demo --from-literal=greeting=hello
  $KUBECTL_HINT patch configmap demo -p '{"data":{"greeting":"hi"}}'
  $KUBECTL_HINT delete configmap demo
MSG

# With a sink chosen by the caller, just run.
for a in "$@"; do
  if [[ "$a" == --sink* ]]; then
    exec "$KS" run --listen-address 127.0.0.1:0 "${args[@]}" "$@"
  fi
done

# Default: kubestream publishes to its embedded NATS server (JetStream), and
# `kubestream tail` reads the stream back and prints it here.
embdir="${XDG_DATA_HOME:-$HOME/.local/share}/kubestream/nats"
mkdir -p "$embdir"
marker=$(mktemp)
"$KS" run --listen-address 127.0.0.1:0 --nats-embedded-dir "$embdir" "${args[@]}" "$@" &
RUN_PID=$!
trap 'kill ${TAIL_PID:-} "$RUN_PID" 2>/dev/null; wait "$RUN_PID" 2>/dev/null; rm -f "$marker"; cleanup' EXIT
for _ in $(seq 1 300); do
  [[ -f "$embdir/url" && "$embdir/url" -nt "$marker" ]] && break
  kill -0 "$RUN_PID" 2>/dev/null || { wait "$RUN_PID"; exit $?; }
  sleep 0.2
done
echo "make run: printing events with: $KS tail --from-start --nats-embedded-dir $embdir" >&2
"$KS" tail --from-start --nats-embedded-dir "$embdir" &
TAIL_PID=$!
# Stop when either ends (or on ^C).
wait -n "$RUN_PID" "$TAIL_PID"
