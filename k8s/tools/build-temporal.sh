#!/usr/bin/env bash
# Builds the Temporal server (temporal-server) and its SQL schema tool (temporal-sql-tool) that the
# PostgreSQL topology test runs (see test/support/temporal-postgres.ts), from the Go module
# go.temporal.io/server pinned in k8s/tools/temporal (its own module, so its dependency graph never
# meets the other tools'), and copies the module's PostgreSQL schema (schema/postgresql/v12) beside them.
#
# Everything is cached outside the repository, in
#   ${TEMPORAL_TOOLS_DIR:-$HOME/.cache/agent-inbox/temporal-server}/<stamp>/
#     temporal-server  temporal-sql-tool  schema/postgresql/v12/{temporal,visibility}/versioned/...
# where <stamp> names the module version plus a hash of the module's go.mod and go.sum and the Go
# version, so a version bump builds into a fresh directory. The script is idempotent: when the
# binaries and the schema are already there it builds nothing. The directory is always the last
# line on stdout.
#
# Usage:
#   bash k8s/tools/build-temporal.sh            build if needed, print the dir
#   bash k8s/tools/build-temporal.sh --bin-dir  only print the dir (builds nothing;
#                                               exits 1 if it is not built)
#
# A cold build takes several minutes on a small machine; progress goes to stderr.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/temporal" && pwd)"
tools_dir="${TEMPORAL_TOOLS_DIR:-$HOME/.cache/agent-inbox/temporal-server}"
module=go.temporal.io/server

version="$(awk -v m="$module" '$1 == m && $2 ~ /^v/ { print $2; exit }
                                $1 == "require" && $2 == m { print $3; exit }' "$here/go.mod")"
if [[ -z "$version" ]]; then
  echo "build-temporal.sh: could not read the $module version from $here/go.mod" >&2
  exit 2
fi
go_version="$(go env GOVERSION)"
hash="$(cd "$here" && { echo "$go_version"; cat go.mod go.sum; } | sha256sum | cut -c1-12)"
bin_dir="$tools_dir/${version}_${hash}"
# The schema is copied last, so its presence marks a finished build.
done_marker="$bin_dir/schema/postgresql/v12/temporal/versioned"

built() { [[ -s "$bin_dir/temporal-server" && -s "$bin_dir/temporal-sql-tool" && -d "$done_marker" ]]; }

if [[ "${1:-}" == "--bin-dir" ]]; then
  if built; then
    echo "$bin_dir"
    exit 0
  fi
  echo "build-temporal.sh: not built yet: $bin_dir" >&2
  exit 1
fi

if built; then
  echo "build-temporal.sh: temporal-server already present" >&2
  echo "$bin_dir"
  exit 0
fi

mkdir -p "$bin_dir"
# One build at a time per stamp; a second caller waits, then finds it built.
if command -v flock >/dev/null; then
  exec 9>"$bin_dir/.lock"
  flock 9
  if built; then
    echo "build-temporal.sh: temporal-server already present" >&2
    echo "$bin_dir"
    exit 0
  fi
fi

started=$SECONDS
echo "build-temporal.sh: building temporal-server and temporal-sql-tool from $module@$version ..." >&2
# -mod=readonly: go.sum is the pin; never rewrite it. No cgo, as Temporal's own release builds.
(cd "$here" && CGO_ENABLED=0 go build -mod=readonly -trimpath -ldflags="-s -w" \
  -o "$bin_dir/.temporal-server.tmp" "$module/cmd/server")
(cd "$here" && CGO_ENABLED=0 go build -mod=readonly -trimpath -ldflags="-s -w" \
  -o "$bin_dir/.temporal-sql-tool.tmp" "$module/cmd/tools/sql")
mv -f "$bin_dir/.temporal-server.tmp" "$bin_dir/temporal-server"
mv -f "$bin_dir/.temporal-sql-tool.tmp" "$bin_dir/temporal-sql-tool"

module_dir="$(cd "$here" && go list -mod=readonly -m -f '{{.Dir}}' "$module")"
if [[ ! -d "$module_dir/schema/postgresql/v12" ]]; then
  echo "build-temporal.sh: no schema/postgresql/v12 in $module_dir" >&2
  exit 2
fi
rm -rf "$bin_dir/schema" "$bin_dir/.schema.tmp"
mkdir -p "$bin_dir/.schema.tmp/postgresql"
cp -R "$module_dir/schema/postgresql/v12" "$bin_dir/.schema.tmp/postgresql/v12"
# The module cache is read-only; the copy must be removable by the next clean-up.
chmod -R u+w "$bin_dir/.schema.tmp"
mv "$bin_dir/.schema.tmp" "$bin_dir/schema"
echo "build-temporal.sh: built temporal-server in $((SECONDS - started))s" >&2

echo "$bin_dir"
