#!/usr/bin/env bash
# Runs kubestream for `make run`: against the current kubeconfig's cluster when
# one answers, else against a local control plane started here (built on first
# use). Extra arguments go to `kubestream run`. Ctrl-C stops everything and
# exits 0 once kubestream shut down cleanly.
#
# Where the events live (the embedded NATS server's JetStream data):
#   local control plane:  ~/.cache/kubestream/devcluster/nats, emptied with the
#                         cluster at every start (a new cluster, a new stream)
#   your kubeconfig:      ~/.local/share/kubestream/nats/<kubeconfig context>,
#                         kept between runs so kubestream resumes; delete the
#                         directory to start from an empty stream
set -euo pipefail
cd "$(dirname "$0")/.."
KS=${KUBESTREAM_BIN:-bin/kubestream}
KUBECTL_HINT="kubectl"
local_cluster=false

cluster_answers() {
  # A kubeconfig exists and its current cluster answers /version.
  "$KS" run --help >/dev/null 2>&1 || return 1
  local kc="${KUBECONFIG:-$HOME/.kube/config}"
  [[ -f "${kc%%:*}" ]] || return 1
  command -v kubectl >/dev/null 2>&1 || return 0
  kubectl version --request-timeout=5s >/dev/null 2>&1
}

pids=()
stop_all() {
  # Children stop in reverse order of start: tail, kubestream, the cluster.
  local i
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill -TERM "${pids[i]}" 2>/dev/null || true
    wait "${pids[i]}" 2>/dev/null || true
  done
}
trap stop_all EXIT
interrupted=false
# Ctrl-C reaches every process of the terminal's group; the trap only
# records it so the script waits for kubestream's clean shutdown.
trap 'interrupted=true' INT TERM

# await PID waits for PID to end, through the signals this script traps (a
# trapped signal interrupts wait), and sets rc to its exit status.
await() {
  rc=0
  while kill -0 "$1" 2>/dev/null; do
    rc=0
    wait "$1" || rc=$?
  done
  local last=0
  wait "$1" 2>/dev/null || last=$?
  ((last == 127)) || rc=$last # 127: its status was already taken above
}

args=()
if cluster_answers; then
  ctx=$(kubectl config current-context 2>/dev/null || echo default)
  echo "make run: using the current kubeconfig (${KUBECONFIG:-$HOME/.kube/config}), context $ctx" >&2
  embdir="${XDG_DATA_HOME:-$HOME/.local/share}/kubestream/nats/${ctx//\//_}"
  echo "make run: events are kept in $embdir between runs (kubestream resumes from them); rm -rf $embdir for an empty stream" >&2
else
  local_cluster=true
  bindir=$(hack/build-controlplane.sh)
  devdir="${KUBESTREAM_DEVCLUSTER_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kubestream/devcluster}"
  rm -f "$devdir/ready"
  go build -o bin/devcluster ./hack/devcluster
  bin/devcluster --dir "$devdir" &
  pids+=($!)
  for _ in $(seq 1 300); do
    [[ -f "$devdir/ready" ]] && break
    kill -0 "${pids[0]}" 2>/dev/null || { echo "make run: the local control plane failed to start; logs in $devdir" >&2; exit 1; }
    sleep 0.2
  done
  [[ -f "$devdir/ready" ]] || { echo "make run: the local control plane did not come up; logs in $devdir" >&2; exit 1; }
  args+=(--kubeconfig "$devdir/kubeconfig" --cluster-name local)
  KUBECTL_HINT="KUBECONFIG=$devdir/kubeconfig $bindir/kubectl"
  embdir="$devdir/nats"
  echo "make run: a fresh local cluster (etcd and kube-apiserver, data in $devdir) and a fresh event stream in $embdir, both emptied at every start" >&2
  echo "make run: it has one Node object, dev-node, and no scheduler or kubelet: pods stay Pending, a Deployment creates no pods" >&2
fi

cat >&2 <<MSG
make run: change objects in another terminal and watch the events, e.g.
  $KUBECTL_HINT create configmap demo --from-literal=greeting=hello
  $KUBECTL_HINT patch configmap demo -p '{"data":{"greeting":"hi"}}'
  $KUBECTL_HINT delete configmap demo
MSG
if $local_cluster; then
  cat >&2 <<MSG
  $KUBECTL_HINT run web --image=nginx:1.27                  # a pod (Pending)
  $KUBECTL_HINT patch node dev-node --subresource=status -p '{"status":{"images":[{"names":["registry.example/ml:3"],"sizeBytes":10737418240}]}}'   # an image-storage event
MSG
fi
echo "make run: and read what a consumer holds now: $KS get pods -A --nats-embedded-dir $embdir" >&2

# With a sink chosen by the caller, just run it.
for a in "$@"; do
  if [[ "$a" == --sink* ]]; then
    "$KS" run --listen-address 127.0.0.1:0 "${args[@]}" "$@" &
    pids+=($!)
    await "${pids[-1]}"
    exit "$rc"
  fi
done

# Default: kubestream publishes to its embedded NATS server (JetStream), and
# `kubestream tail` reads the stream back and prints it here.
mkdir -p "$embdir"
marker=$(mktemp)
"$KS" run --listen-address 127.0.0.1:0 --nats-embedded-dir "$embdir" "${args[@]}" "$@" &
RUN_PID=$!
pids+=("$RUN_PID")
for _ in $(seq 1 300); do
  [[ -f "$embdir/url" && "$embdir/url" -nt "$marker" ]] && break
  kill -0 "$RUN_PID" 2>/dev/null || { rm -f "$marker"; await "$RUN_PID"; exit "$rc"; }
  sleep 0.2
done
rm -f "$marker"
echo "make run: printing events with: $KS tail --from-start --nats-embedded-dir $embdir" >&2
"$KS" tail --from-start --nats-embedded-dir "$embdir" &
pids+=($!)
# Until kubestream or tail ends, or ^C.
while ! $interrupted && kill -0 "$RUN_PID" 2>/dev/null && kill -0 "${pids[-1]}" 2>/dev/null; do
  wait -n "$RUN_PID" "${pids[-1]}" 2>/dev/null || true
done
# kubestream got the signal too (or tail ended): let it finish publishing
# what is queued, and report its exit.
kill -TERM "$RUN_PID" 2>/dev/null || true
await "$RUN_PID"
if $interrupted && ((rc == 0)); then
  echo "make run: stopped cleanly" >&2
fi
exit "$rc"
