#!/usr/bin/env bash
# Installs gVisor's runsc for the local sandbox driver and prints its path as the last line.
#
# Preferred: build runsc from the gVisor Go module (its `go` branch builds with plain `go install`)
# into a cache outside the repository; a current runsc starts sandboxes in ~0.1 s with the systrap
# platform. Fallback: Debian's `runsc` package (apt, as root), which is older (2022) and slower,
# and whose `ls -l`/`stat` inside the sandbox fail with EINVAL (it rejects statx(AT_NO_AUTOMOUNT)).
#
# Environment: AGENT_INBOX_CACHE (default ~/.cache/agent-inbox), RUNSC_GO_VERSION (module version).
set -euo pipefail

version="${RUNSC_GO_VERSION:-v0.0.0-20260905035102-160fafc42237}"
cache="${AGENT_INBOX_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/agent-inbox}/runsc"
dest="$cache/$version"

if [[ -x "$dest/runsc" ]]; then
  echo "$dest/runsc"
  exit 0
fi

if command -v go >/dev/null 2>&1; then
  echo "building runsc $version from the gVisor Go module (a few minutes, once)" >&2
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  if GOBIN="$tmp/bin" CGO_ENABLED=0 GOFLAGS=-mod=mod go install -trimpath -ldflags='-s -w' "gvisor.dev/gvisor/runsc@$version" >&2; then
    mkdir -p "$dest"
    mv "$tmp/bin/runsc" "$dest/runsc.partial"
    mv "$dest/runsc.partial" "$dest/runsc"
    echo "$dest/runsc"
    exit 0
  fi
  echo "building runsc failed; trying Debian's package" >&2
fi

if command -v runsc >/dev/null 2>&1; then
  command -v runsc
  exit 0
fi
if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
  apt-get update -qq >&2 || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq runsc >&2
  command -v runsc
  exit 0
fi
echo "cannot install runsc: no Go toolchain, and not root with apt-get" >&2
exit 1
