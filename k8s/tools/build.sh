#!/usr/bin/env bash
# Builds the real Kubernetes control-plane binaries that the Kubernetes pod
# sandbox driver tests run against (see test/support/kube-cluster.ts):
#
#   kube-apiserver, kube-scheduler,  k8s.io/kubernetes       (module k8s/tools/apiserver)
#   kube-controller-manager
#   etcd                             go.etcd.io/etcd/server  (module k8s/tools/etcd)
#   kwok                             sigs.k8s.io/kwok        (module k8s/tools/kwok)
#   kwok-stages.yaml                 kwok's default "fast" node and pod stages,
#                                    copied from the same kwok module version
#
# Each tool lives in its own Go module so their dependency graphs never have to
# agree. k8s.io/kubernetes cannot be `go install`ed directly because its go.mod
# replaces every k8s.io/* staging module with a local path; the apiserver
# module therefore replaces each of them with the matching v0.X.Y release.
# kwok is built from a copy of its module source (kept in the cache directory,
# not in the repository) with kwok/exec.patch applied: see that file for why.
#
# Binaries are cached outside the repository, in
#   ${K8S_TOOLS_DIR:-$HOME/.cache/agent-inbox/k8s-tools}/<stamp>/bin/
# where <stamp> names the versions plus a hash of the three modules' go.mod and
# go.sum, the kwok patch and the Go version, so a version bump builds into a fresh directory.
# The script is idempotent: when every binary is already there it builds
# nothing. The bin directory is always the last line printed on stdout.
#
# Usage:
#   bash k8s/tools/build.sh            build if needed, print the bin dir
#   bash k8s/tools/build.sh --bin-dir  only print the bin dir (builds nothing;
#                                      exits 1 if the binaries are not built)
#
# A cold build takes a long while on a small machine (kube-apiserver is the
# bulk of it); progress goes to stderr.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tools_dir="${K8S_TOOLS_DIR:-$HOME/.cache/agent-inbox/k8s-tools}"
binaries=(kube-apiserver kube-scheduler kube-controller-manager etcd kwok kwok-stages.yaml)

# The version of a required module, read from a go.mod (no network).
mod_version() {
  awk -v m="$2" '$1 == m && $2 ~ /^v/ { print $2; exit }
                 $1 == "require" && $2 == m { print $3; exit }' "$here/$1/go.mod"
}

k8s_version="$(mod_version apiserver k8s.io/kubernetes)"
etcd_version="$(mod_version etcd go.etcd.io/etcd/server/v3)"
kwok_version="$(mod_version kwok sigs.k8s.io/kwok)"
if [[ -z "$k8s_version" || -z "$etcd_version" || -z "$kwok_version" ]]; then
  echo "build.sh: could not read tool versions from the go.mod files" >&2
  exit 2
fi

go_version="$(go env GOVERSION)"
hash="$(
  cd "$here"
  {
    echo "$go_version"
    cat apiserver/go.mod apiserver/go.sum etcd/go.mod etcd/go.sum kwok/go.mod kwok/go.sum kwok/exec.patch
  } | sha256sum | cut -c1-12
)"
stamp="k8s-${k8s_version}_etcd-${etcd_version}_kwok-${kwok_version}_${hash}"
stamp_dir="$tools_dir/$stamp"
bin_dir="$stamp_dir/bin"

all_built() {
  local b
  for b in "${binaries[@]}"; do
    [[ -s "$bin_dir/$b" ]] || return 1
  done
}

if [[ "${1:-}" == "--bin-dir" ]]; then
  if all_built; then
    echo "$bin_dir"
    exit 0
  fi
  echo "build.sh: not built yet: $bin_dir" >&2
  exit 1
fi

if all_built; then
  echo "build.sh: binaries already present" >&2
  echo "$bin_dir"
  exit 0
fi

mkdir -p "$bin_dir"
# One build at a time per stamp; a second caller waits, then finds it built.
if command -v flock >/dev/null; then
  exec 9>"$stamp_dir/.lock"
  flock 9
  if all_built; then
    echo "build.sh: binaries already present" >&2
    echo "$bin_dir"
    exit 0
  fi
fi
export CGO_ENABLED=0
# -mod=readonly: the go.sum files here are the pin; never rewrite them.
build_flags=(-mod=readonly -trimpath)

# build MODULE_DIR BINARY PACKAGE [EXTRA_LDFLAGS [MODFILE]]
build() {
  local mod="$1" name="$2" pkg="$3" extra="${4:-}" modfile="${5:-}"
  if [[ -x "$bin_dir/$name" ]]; then
    echo "build.sh: $name already built" >&2
    return 0
  fi
  local started=$SECONDS flags=("${build_flags[@]}")
  [[ -n "$modfile" ]] && flags+=("-modfile=$modfile")
  echo "build.sh: building $name from $pkg ..." >&2
  (cd "$here/$mod" && go build "${flags[@]}" -ldflags="-s -w $extra" \
    -o "$bin_dir/.$name.tmp" "$pkg")
  mv -f "$bin_dir/.$name.tmp" "$bin_dir/$name"
  echo "build.sh: built $name in $((SECONDS - started))s" >&2
}

# kwok: copy its module source out of the module cache, patch it, and build it
# through an alternate go.mod that replaces the module with the patched copy.
kwok_src="$stamp_dir/src/kwok"
kwok_modfile="$stamp_dir/src/kwok.go.mod"
if [[ ! -s "$bin_dir/kwok" || ! -s "$bin_dir/kwok-stages.yaml" ]]; then
  kwok_mod_dir="$(cd "$here/kwok" && go mod download sigs.k8s.io/kwok && go list -mod=readonly -m -f '{{.Dir}}' sigs.k8s.io/kwok)"
  rm -rf "$kwok_src"
  mkdir -p "$(dirname "$kwok_src")"
  cp -R "$kwok_mod_dir" "$kwok_src"
  chmod -R u+w "$kwok_src"
  patch -p1 --quiet --forward -d "$kwok_src" < "$here/kwok/exec.patch"
  cp "$here/kwok/go.mod" "$kwok_modfile"
  cp "$here/kwok/go.sum" "${kwok_modfile%.mod}.sum"
  printf '\nreplace sigs.k8s.io/kwok => %s\n' "$kwok_src" >> "$kwok_modfile"
  # kwok's default "fast" stages: nodes become Ready, pods Running, Job pods
  # Succeeded, and deleted pods go away at once.
  {
    for f in node/fast/node-initialize pod/fast/pod-ready pod/fast/pod-complete pod/fast/pod-delete; do
      echo "---"
      cat "$kwok_src/kustomize/stage/$f.yaml"
    done
  } > "$bin_dir/.kwok-stages.yaml.tmp"
  mv -f "$bin_dir/.kwok-stages.yaml.tmp" "$bin_dir/kwok-stages.yaml"
fi

k8s_minor="${k8s_version#v1.}"
k8s_minor="${k8s_minor%%.*}"
k8s_ldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  k8s_ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$k8s_minor -X $pkg.gitTreeState=clean"
done

build etcd etcd go.etcd.io/etcd/server/v3
build kwok kwok sigs.k8s.io/kwok/cmd/kwok "" "$kwok_modfile"
build apiserver kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$k8s_ldflags"
build apiserver kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler "$k8s_ldflags"
build apiserver kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager "$k8s_ldflags"
rm -rf "$stamp_dir/src"

echo "$bin_dir"
