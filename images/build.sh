#!/usr/bin/env bash
# Builds onprem-lb's OCI images without Docker and without pulling any image: the base images
# are made here from Debian packages (apt-get download + dpkg-deb -x), the Go programs are put
# on them by ko. Each image is written as an OCI archive tarball, OUTDIR/NAME.tar, that names
# it (ctr images import, crane push). The same commit gives the same digests.
#
# Usage: images/build.sh OUTDIR TAG NAME...
#   NAME: onprem-cloud-controller-manager onprem-speaker (named $REGISTRY/NAME:TAG)
#         pause backend (the lab's sandbox and backend images, named onprem-lb.local/lab/NAME:TAG)
# Env:   REGISTRY (default ghcr.io/onprem-lb), GOFLAGS (passed to go build, e.g. -ldflags=-X=...)
# Cache: $ONPREM_LB_CACHE (default ~/.cache/onprem-lb): ko, the Debian packages, the bases.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
if [ $# -lt 3 ]; then
	echo "usage: $0 OUTDIR TAG NAME..." >&2
	exit 2
fi
out=$1 tag=$2
shift 2
registry=${REGISTRY:-ghcr.io/onprem-lb}
cache=${ONPREM_LB_CACHE:-${HOME:-/root}/.cache/onprem-lb}

# What each image runs and on which base.
declare -A main=(
	[onprem-cloud-controller-manager]=./cmd/onprem-cloud-controller-manager
	[onprem-speaker]=./cmd/onprem-speaker
	[pause]=./test/cmd/pause
	[backend]=./test/cmd/backend
)
declare -A base=([onprem-cloud-controller-manager]=static [onprem-speaker]=speaker [pause]=static [backend]=static)
# The speaker's iptables dataplane runs iptables-{nft,legacy}{,-save,-restore}, ip6tables the
# same, and conntrack: these packages and what they depend on.
speaker_packages=(iptables conntrack)
# The static base takes only the CA bundle from Debian.
static_packages=ca-certificates
nonroot=65532

need() {
	command -v "$1" >/dev/null 2>&1 && return
	echo "$0: $1 is missing: $2" >&2
	exit 1
}
need go "install Go (https://go.dev/dl)"
need apt-get "the base images are made from Debian packages: build on Debian or Ubuntu"
need apt-cache "the base images are made from Debian packages: build on Debian or Ubuntu"
need dpkg-deb "apt-get install dpkg"
for name in "$@"; do
	[ -n "${main[$name]:-}" ] || { echo "$0: no image $name (want one of ${!main[*]})" >&2; exit 2; }
done

ko=$("$root/test/tools/gotool.sh" ko)
# ko takes the --oci-layout-path for a repository name: lower case only.
work="$cache/.images-$$"
rm -rf "$work" && mkdir -p "$work"
trap 'rm -rf "$work"' EXIT
imagetool="$work/imagetool"
(cd "$root/images" && CGO_ENABLED=0 go build -trimpath -o "$imagetool" ./imagetool)
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$root" log -1 --format=%ct 2>/dev/null || echo 0)}
export KOCACHE="$cache/kocache" # ko finds the bases here, by digest, and pulls nothing

# candidate prints "package=version" for a package apt can install, updating the lists once if
# they do not know it.
updated=
candidate() {
	local v
	v=$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2}')
	if { [ -z "$v" ] || [ "$v" = "(none)" ]; } && [ -z "$updated" ]; then
		echo "apt knows no $1: apt-get update" >&2
		apt-get update -qq >&2
		updated=1
		v=$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2}')
	fi
	if [ -z "$v" ] || [ "$v" = "(none)" ]; then
		echo "$0: Debian package $1 not found (apt-get update failed or no such package)" >&2
		exit 1
	fi
	echo "$1=$v"
}

# closure prints the packages with every package they depend on (not recommends), pinned.
closure() {
	local p
	for p in "$@"; do candidate "$p" >/dev/null; done # updates the lists if they lack it
	for p in $(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
		--no-replaces --no-enhances "$@" | grep -v '^ ' | grep -v '^<' | sort -u); do
		candidate "$p"
	done
}

# unpack extracts pinned packages into dir, downloading each .deb once into the cache.
unpack() {
	local dir=$1 debs="$cache/debs" spec
	shift
	mkdir -p "$debs" "$dir"
	for spec in "$@"; do
		local name=${spec%%=*} version=${spec#*=}
		local deb="$debs/${name}_${version//:/%3a}.deb"
		if [ ! -s "$deb" ]; then
			(cd "$work" && apt-get download -qq -o APT::Sandbox::User=root "$spec" >&2) || { echo "$0: apt-get download $spec failed" >&2; exit 1; }
			mv "$work/${name}_"*.deb "$deb"
		fi
		dpkg-deb -x "$deb" "$dir"
	done
}

# static_tree makes what every image holds: users root and nonroot, /tmp and the CA bundle.
static_tree() {
	local dir=$1 crt
	mkdir -p "$dir/etc/ssl/certs" "$dir/tmp" "$dir/run" "$dir/home/nonroot"
	chmod 1777 "$dir/tmp"
	printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n' $nonroot $nonroot >"$dir/etc/passwd"
	printf 'root:x:0:\nnonroot:x:%d:\n' $nonroot >"$dir/etc/group"
	unpack "$work/ca" "${static_specs[@]}"
	for crt in $(find "$work/ca/usr/share/ca-certificates" -name '*.crt' | LC_ALL=C sort); do
		cat "$crt"
	done >"$dir/etc/ssl/certs/ca-certificates.crt"
	[ -s "$dir/etc/ssl/certs/ca-certificates.crt" ] || { echo "$0: ca-certificates holds no certificate" >&2; exit 1; }
}

# speaker_tree adds iptables (both backends, the alternatives links Debian's postinst would make,
# nft the default as on Debian) and conntrack, without documentation.
speaker_tree() {
	local dir=$1 v t
	unpack "$dir" "${speaker_specs[@]}"
	for v in iptables ip6tables; do
		for t in "" -save -restore; do
			ln -sf "$v-nft$t" "$dir/usr/sbin/$v$t"
		done
	done
	rm -rf "$dir"/usr/share/{doc,man,info,lintian,locale,bug} "$dir"/usr/lib/*/gconv
	for t in iptables-legacy iptables-nft-save ip6tables-legacy-restore conntrack; do
		[ -x "$dir/usr/sbin/$t" ] || { echo "$0: the speaker base lacks /usr/sbin/$t" >&2; exit 1; }
	done
}

# make_base builds base $1 once and prints its reference by digest.
declare -A base_ref=()
make_base() {
	local kind=$1 dir="$work/base-$1" labels=() spec
	static_specs=("$(candidate "$static_packages")")
	static_tree "$dir"
	local specs=("${static_specs[@]}")
	if [ "$kind" = speaker ]; then
		mapfile -t speaker_specs < <(closure "${speaker_packages[@]}")
		speaker_tree "$dir"
		specs+=("${speaker_specs[@]}")
	fi
	for spec in "${specs[@]}"; do labels+=(-label "org.debian.package.${spec%%=*}=${spec#*=}"); done
	local user=$nonroot
	[ "$kind" = speaker ] && user=0 # NET_ADMIN and NET_RAW reach root only; the pod drops the rest
	"$imagetool" base -root "$dir" -layout "$KOCACHE/img" -name "onprem-lb.local/base-$kind:$tag" \
		-user "$user" -env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "${labels[@]}"
}

mkdir -p "$out"
for name in "$@"; do
	kind=${base[$name]}
	[ -n "${base_ref[$kind]:-}" ] || base_ref[$kind]=$(make_base "$kind")
	if [ "$name" = pause ] || [ "$name" = backend ]; then
		repo=onprem-lb.local/lab
	else
		repo=$registry
	fi
	echo "building $repo/$name:$tag on ${base_ref[$kind]}" >&2
	(cd "$root" && KO_DOCKER_REPO=$repo KO_DEFAULTBASEIMAGE=${base_ref[$kind]} \
		"$ko" build --base-import-paths --push=false --sbom=none --platform="linux/$(go env GOARCH)" \
		--oci-layout-path "$work/ko-$name" --tags "$tag" "${main[$name]}" >/dev/null)
	"$imagetool" archive -layout "$work/ko-$name" -name "$repo/$name:$tag" -o "$out/$name.tar"
	printf '%s\t%s\t%s MB\n' "$out/$name.tar" "$repo/$name:$tag" "$(du -m "$out/$name.tar" | cut -f1)"
done
