#!/usr/bin/env bash
# Installs what the backend needs on this machine, outside the repository and cached:
#   - gVisor's runsc, for the default local sandbox driver (scripts/install-runsc.sh);
#   - with --test, also kube-apiserver, etcd and kwok for the Kubernetes driver's tests
#     (k8s/tools/build.sh; a long build the first time), SeaweedFS's weed for the S3 artifact store's
#     tests (k8s/tools/build-seaweedfs.sh; about 16 minutes the first time), the Temporal server and its SQL schema
#     tool with the PostgreSQL schema for the production-topology test (k8s/tools/build-temporal.sh), and chromium
#     for the web inbox's browser tests (Debian's package, with apt when run as root; otherwise it says what to install).
# The Temporal CLI needs no step here: the backend finds or installs it when it starts.
set -euo pipefail
cd "$(dirname "$0")/.."

runsc="$(bash scripts/install-runsc.sh | tail -n 1)"
echo "runsc: $runsc"
if [[ "${1:-}" == "--test" ]]; then
  bin="$(bash k8s/tools/build.sh | tail -n 1)"
  echo "kubernetes test binaries: $bin"
  weed_bin="$(bash k8s/tools/build-seaweedfs.sh | tail -n 1)"
  echo "seaweedfs: $weed_bin"
  temporal_dir="$(bash k8s/tools/build-temporal.sh | tail -n 1)"
  echo "temporal server: $temporal_dir"
  chromium_bin="${CHROMIUM_PATH:-/usr/bin/chromium}"
  if [[ -x "$chromium_bin" ]]; then
    echo "chromium: $chromium_bin"
  elif [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
    # A fresh machine may have no package lists yet.
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium \
      || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium; }
    echo "chromium: $(command -v chromium)"
  else
    echo "chromium: missing; install Debian's chromium (sudo apt-get install chromium) or set CHROMIUM_PATH to a Chromium binary" >&2
  fi
fi
