#!/usr/bin/env bash
# Installs the programs `make test` needs beyond Go: kcat (an independent
# Kafka client), protoc (decodes events with our .proto; generates the
# Python example's classes), nats-server (a separate NATS process), jq,
# promtool (Debian's prometheus package) and the Python example's packages. As root with apt-get it installs the
# missing Debian packages; otherwise it lists them and exits 1.
#
#   hack/install-test-deps.sh        # make test-deps
#
# Environment: KUBESTREAM_PYTHON, the interpreter the Python example's
# test uses (default /usr/bin/python3, where Debian installs its packages).
set -euo pipefail

python=${KUBESTREAM_PYTHON:-/usr/bin/python3}
need=()
command -v kcat >/dev/null || need+=(kcat)
command -v protoc >/dev/null || need+=(protobuf-compiler)
command -v nats-server >/dev/null || need+=(nats-server)
command -v jq >/dev/null || need+=(jq)
# promtool, for the alert rules' unit tests.
command -v promtool >/dev/null || need+=(prometheus)
if [[ -x $python ]] || command -v "$python" >/dev/null; then
  "$python" -c 'import confluent_kafka' 2>/dev/null || need+=(python3-confluent-kafka)
  "$python" -c 'import google.protobuf' 2>/dev/null || need+=(python3-protobuf)
else
  need+=(python3 python3-confluent-kafka python3-protobuf)
fi
((${#need[@]})) || exit 0

if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
  echo "test-deps: installing ${need[*]} with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  exit 0
fi
if command -v apt-get >/dev/null; then
  echo "make test needs these Debian packages: ${need[*]}. Install them with: sudo apt-get install ${need[*]} (or run make test as root, which installs them), then run make test again." >&2
else
  echo "make test needs these programs (Debian package names): ${need[*]}. Install them with your package manager, then run make test again; KUBESTREAM_PYTHON names a python3 with confluent_kafka and protobuf." >&2
fi
exit 1
