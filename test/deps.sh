#!/usr/bin/env bash
# Installs the system tools the lab and its tests use, when they are missing (Debian, as root).
# The lab starts its own containerd per node, in a private mount namespace: a containerd.service
# that the package may start on a systemd machine neither helps nor disturbs it. The same holds
# for frr: the lab's router (Options.Router) runs its own zebra, bgpd and bfdd with their
# configuration, sockets and pid files under the lab directory, so the frr.service the package
# may start (zebra and staticd of the root namespace, in /etc/frr and /run/frr) never meets it.
set -euo pipefail
declare -A pkg=(
	[ip]=iproute2 [iptables]=iptables [ip6tables]=iptables [iptables-restore]=iptables
	[conntrack]=conntrack [nft]=nftables [arping]=arping [ndisc6]=ndisc6 [sysctl]=procps [curl]=curl
	[nsenter]=util-linux [unshare]=util-linux
	# Real nodes (Options.Kubelets): the container runtime and the CNI plugins.
	[containerd]=containerd [ctr]=containerd [runc]=runc [/usr/lib/cni/bridge]=containernetworking-plugins
	# The upstream router (Options.Router) and the BGP peers of its tests.
	[/usr/lib/frr/zebra]=frr [/usr/lib/frr/bgpd]=frr [/usr/lib/frr/bfdd]=frr [vtysh]=frr
)
missing=()
for cmd in "${!pkg[@]}"; do
	command -v "$cmd" >/dev/null 2>&1 || missing+=("${pkg[$cmd]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
	echo "missing ${missing[*]}: run as root or install them" >&2
	exit 1
fi
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
echo "installing ${missing[*]}" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
