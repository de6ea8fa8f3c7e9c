#!/usr/bin/env bash
# Builds the lab's binaries (etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
# kube-proxy, kubectl, kubelet) from the pinned Go modules of this tools module, once, into a cache
# keyed by everything that decides their content. A warm call only prints the directory.
#
# Usage: test/tools/build.sh            build if needed, print the binary directory
# Cache: $ONPREM_LB_CACHE (default ~/.cache/onprem-lb), outside the work tree.
set -euo pipefail
cd "$(dirname "$0")"

k8s_version=$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ {print $2; exit}' go.mod)
key=$( { cat go.mod go.sum build.sh etcd/main.go; go env GOVERSION GOARCH; } | sha256sum | cut -c1-16)
cache=${ONPREM_LB_CACHE:-${HOME:-/root}/.cache/onprem-lb}
dir="$cache/tools-$key"
k8s_bins=(kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubectl kubelet)
bins=(etcd "${k8s_bins[@]}")

complete() { for b in "${bins[@]}"; do [ -x "$dir/$b" ] || return 1; done; }
if complete; then echo "$dir"; exit 0; fi

echo "building lab binaries ($k8s_version) into $dir; a cold build takes several minutes" >&2
tmp=$(mktemp -d "$cache/.build-XXXXXX" 2>/dev/null || { mkdir -p "$cache" && mktemp -d "$cache/.build-XXXXXX"; })
trap 'rm -rf "$tmp"' EXIT
minor=${k8s_version#v1.}; minor=${minor%%.*}
pkg=k8s.io/component-base/version
ldflags="-s -w -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
ldflags+=" -X k8s.io/client-go/pkg/version.gitVersion=$k8s_version"
export CGO_ENABLED=0
go build -trimpath -ldflags "$ldflags" -o "$tmp/etcd" ./etcd
for b in "${k8s_bins[@]}"; do
	go build -trimpath -ldflags "$ldflags" -o "$tmp/$b" "k8s.io/kubernetes/cmd/$b"
done
mkdir -p "$dir"
for b in "${bins[@]}"; do mv -f "$tmp/$b" "$dir/$b"; done
echo "$dir"
