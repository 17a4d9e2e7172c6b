#!/usr/bin/env bash
# Builds SeaweedFS's `weed`, the S3-compatible server the S3 artifact store tests run against
# (see test/support/seaweedfs.ts), from the Go module github.com/seaweedfs/seaweedfs pinned in
# k8s/tools/seaweedfs (its own module, so its dependency graph never meets the Kubernetes tools').
#
# The binary is cached outside the repository, in
#   ${SEAWEEDFS_TOOLS_DIR:-$HOME/.cache/agent-inbox/seaweedfs}/<stamp>/bin/weed
# where <stamp> names the module version plus a hash of the module's go.mod and go.sum and the Go
# version, so a version bump builds into a fresh directory. The script is idempotent: when the
# binary is already there it builds nothing. The bin directory is always the last line on stdout.
#
# Usage:
#   bash k8s/tools/build-seaweedfs.sh            build if needed, print the bin dir
#   bash k8s/tools/build-seaweedfs.sh --bin-dir  only print the bin dir (builds nothing;
#                                                exits 1 if the binary is not built)
#
# A cold build takes several minutes on a small machine; progress goes to stderr.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/seaweedfs" && pwd)"
tools_dir="${SEAWEEDFS_TOOLS_DIR:-$HOME/.cache/agent-inbox/seaweedfs}"
module=github.com/seaweedfs/seaweedfs

version="$(awk -v m="$module" '$1 == m && $2 ~ /^v/ { print $2; exit }
                                $1 == "require" && $2 == m { print $3; exit }' "$here/go.mod")"
if [[ -z "$version" ]]; then
  echo "build-seaweedfs.sh: could not read the $module version from $here/go.mod" >&2
  exit 2
fi
go_version="$(go env GOVERSION)"
hash="$(cd "$here" && { echo "$go_version"; cat go.mod go.sum; } | sha256sum | cut -c1-12)"
stamp_dir="$tools_dir/seaweedfs-${version}_${hash}"
bin_dir="$stamp_dir/bin"

if [[ "${1:-}" == "--bin-dir" ]]; then
  if [[ -s "$bin_dir/weed" ]]; then
    echo "$bin_dir"
    exit 0
  fi
  echo "build-seaweedfs.sh: not built yet: $bin_dir" >&2
  exit 1
fi

if [[ -s "$bin_dir/weed" ]]; then
  echo "build-seaweedfs.sh: weed already present" >&2
  echo "$bin_dir"
  exit 0
fi

mkdir -p "$bin_dir"
# One build at a time per stamp; a second caller waits, then finds it built.
if command -v flock >/dev/null; then
  exec 9>"$stamp_dir/.lock"
  flock 9
  if [[ -s "$bin_dir/weed" ]]; then
    echo "build-seaweedfs.sh: weed already present" >&2
    echo "$bin_dir"
    exit 0
  fi
fi

started=$SECONDS
echo "build-seaweedfs.sh: building weed from $module@$version ..." >&2
# -mod=readonly: go.sum is the pin; never rewrite it. No cgo, as SeaweedFS's own release builds.
(cd "$here" && CGO_ENABLED=0 go build -mod=readonly -trimpath -ldflags="-s -w" -o "$bin_dir/.weed.tmp" "$module/weed")
mv -f "$bin_dir/.weed.tmp" "$bin_dir/weed"
echo "build-seaweedfs.sh: built weed in $((SECONDS - started))s" >&2

echo "$bin_dir"
