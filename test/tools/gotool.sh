#!/usr/bin/env bash
# Installs one pinned Go tool (ko, crane or helm) with `go install`, once, into a cache keyed by
# its version and the Go toolchain, and prints the path of the binary. A warm call only prints.
#
# Usage: test/tools/gotool.sh ko|crane|helm
# Cache: $ONPREM_LB_CACHE (default ~/.cache/onprem-lb), outside the work tree.
set -euo pipefail
declare -A pkgs=(
	[ko]=github.com/google/ko@v0.19.1
	[crane]=github.com/google/go-containerregistry/cmd/crane@v0.22.1
	[helm]=helm.sh/helm/v3/cmd/helm@v3.22.0
)
name=${1:-}
pkg=${pkgs[$name]:-}
if [ -z "$pkg" ]; then
	echo "usage: $0 ${!pkgs[*]}" >&2
	exit 2
fi
key=$( { echo "$pkg"; go env GOVERSION GOARCH; } | sha256sum | cut -c1-16)
cache=${ONPREM_LB_CACHE:-${HOME:-/root}/.cache/onprem-lb}
dir="$cache/gotool-$name-$key"
if [ -x "$dir/$name" ]; then echo "$dir/$name"; exit 0; fi

echo "installing $pkg into $dir" >&2
mkdir -p "$cache"
tmp=$(mktemp -d "$cache/.gotool-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
if ! CGO_ENABLED=0 GOBIN="$tmp" go install -trimpath "$pkg" >&2; then
	echo "$0: could not install $pkg: it needs the Go module proxy (GOPROXY=$(go env GOPROXY))" >&2
	exit 1
fi
mkdir -p "$dir"
mv -f "$tmp/$name" "$dir/$name"
echo "$dir/$name"
