#!/usr/bin/env bash
# Installs what the backend needs on this machine, outside the repository and cached:
#   - gVisor's runsc, for the default local sandbox driver (scripts/install-runsc.sh);
#   - with --test, also kube-apiserver, etcd and kwok for the Kubernetes driver's tests
#     (k8s/tools/build.sh; a long build the first time).
# The Temporal CLI needs no step here: the backend finds or installs it when it starts.
set -euo pipefail
cd "$(dirname "$0")/.."

runsc="$(bash scripts/install-runsc.sh | tail -n 1)"
echo "runsc: $runsc"
if [[ "${1:-}" == "--test" ]]; then
  bin="$(bash k8s/tools/build.sh | tail -n 1)"
  echo "kubernetes test binaries: $bin"
fi
