#!/usr/bin/env bash
# Pushes images that images/build.sh wrote, each to the name its archive carries
# ($REGISTRY/NAME:TAG), with crane. Log in first if the registry wants it:
#   $(test/tools/gotool.sh crane) auth login REGISTRY -u USER -p PASSWORD
#
# Usage: images/push.sh DIR NAME...
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
if [ $# -lt 2 ]; then
	echo "usage: $0 DIR NAME..." >&2
	exit 2
fi
dir=$1
shift
crane=$("$root/test/tools/gotool.sh" crane)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for name in "$@"; do
	rm -rf "${work:?}/$name" && mkdir -p "$work/$name"
	tar -xf "$dir/$name.tar" -C "$work/$name" || { echo "$0: no image archive $dir/$name.tar: run make images" >&2; exit 1; }
	ref=$(grep -o '"io.containerd.image.name": *"[^"]*"' "$work/$name/index.json" | sed 's/.*"\([^"]*\)"$/\1/')
	[ -n "$ref" ] || { echo "$0: $dir/$name.tar names no image" >&2; exit 1; }
	"$crane" push "$work/$name" "$ref"
done
