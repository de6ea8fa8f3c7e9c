package lab

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
)

// Names and addresses of the lab network. Every address is in 198.18.0.0/15 or 2001:db8::/32.
const (
	nsPrefix  = "olb-"
	bridgeNS  = nsPrefix + "net"
	cpNS      = nsPrefix + "cp"
	hostLink  = nsPrefix + "host"
	bridge    = "br0" // the LAN
	wanBridge = "br1" // the WAN behind the router
)

var (
	// LANPrefix4 and LANPrefix6 are the L2 segment's subnets.
	LANPrefix4 = netip.MustParsePrefix("198.18.0.0/24")
	LANPrefix6 = netip.MustParsePrefix("2001:db8:18::/64")
	// WANPrefix4 and WANPrefix6 are the subnets of the segment behind the router
	// (Options.Router): the router and its clients.
	WANPrefix4 = netip.MustParsePrefix("198.18.2.0/24")
	WANPrefix6 = netip.MustParsePrefix("2001:db8:1b::/64")
	// ServiceCIDRs are the ClusterIP ranges given to the API server.
	ServiceCIDRs = []netip.Prefix{netip.MustParsePrefix("198.18.192.0/18"), netip.MustParsePrefix("2001:db8:1a::/112")}
	// ClusterCIDRs hold every node's pod CIDRs.
	ClusterCIDRs = []netip.Prefix{netip.MustParsePrefix("198.19.0.0/16"), netip.MustParsePrefix("2001:db8:19::/48")}
	// labRoutes is what a pod routes through its node: the whole lab, nothing else.
	labRoutes = []netip.Prefix{netip.MustParsePrefix("198.18.0.0/15"), netip.MustParsePrefix("2001:db8::/32")}
)

// Host is a network namespace with an interface eth0 on one of the lab's L2 segments: the LAN,
// or for the router's clients the WAN behind it.
type Host struct {
	Name string     // short name, e.g. "node-1" or "client"
	NS   string     // network namespace, e.g. "olb-node-1"
	IPv4 netip.Addr // on eth0, in LANPrefix4 (WANPrefix4 behind the router)
	IPv6 netip.Addr // on eth0, in LANPrefix6 (WANPrefix6 behind the router)
}

// Addrs returns the host's IPv4 and IPv6 addresses.
func (h *Host) Addrs() []netip.Addr { return []netip.Addr{h.IPv4, h.IPv6} }

// Exec runs a command inside the host's network namespace and returns its standard output.
func (h *Host) Exec(ctx context.Context, args ...string) (string, error) {
	return nsRun(ctx, h.NS, args...)
}

// lanHost describes the host with the given name and final address byte on the LAN.
func lanHost(name string, last int) *Host { return segmentHost(name, LANPrefix4, LANPrefix6, last) }

// segmentHost describes the host with the given name and final address byte on the segment
// of the prefixes p4 (a /24) and p6 (a /64).
func segmentHost(name string, p4, p6 netip.Prefix, last int) *Host {
	return &Host{Name: name, NS: nsPrefix + name, IPv4: addrAt(p4, last), IPv6: addrAt(p6, last)}
}

var (
	hostSide = lanHost("host", 1) // the machine's own veth, in the root namespace
	cpHost   = lanHost("cp", 2)
)

// nodeHost returns node i (from 1), at 198.18.0.(10+i).
func nodeHost(i int) *Host { return lanHost(fmt.Sprintf("node-%d", i), 10+i) }

// clientHost returns client i (from 1): "client" at 198.18.0.100, then "client-2" at .101, ...
func clientHost(i int) *Host {
	name := "client"
	if i > 1 {
		name = fmt.Sprintf("client-%d", i)
	}
	return lanHost(name, 99+i)
}

// podCIDRs returns node i's pod CIDRs.
func podCIDRs(i int) []netip.Prefix {
	return []netip.Prefix{
		netip.MustParsePrefix(fmt.Sprintf("198.19.%d.0/24", i)),
		netip.MustParsePrefix(fmt.Sprintf("2001:db8:19:%x::/64", i)),
	}
}

// createSegment creates the bridge namespace and the machine's own veth on it.
func createSegment(ctx context.Context) error {
	steps := [][]string{
		{"netns", "add", bridgeNS},
		{"-n", bridgeNS, "link", "set", "lo", "up"},
		{"-n", bridgeNS, "link", "add", bridge, "type", "bridge", "mcast_snooping", "0"},
		{"-n", bridgeNS, "link", "set", bridge, "up"},
		{"link", "add", hostLink, "type", "veth", "peer", "name", "host", "netns", bridgeNS},
		{"-n", bridgeNS, "link", "set", "host", "master", bridge, "up"},
		{"addr", "add", hostSide.IPv4.String() + "/24", "dev", hostLink},
		{"addr", "add", hostSide.IPv6.String() + "/64", "dev", hostLink, "nodad"},
		{"link", "set", hostLink, "up"},
	}
	for _, s := range steps {
		if err := ip(ctx, s...); err != nil {
			return err
		}
	}
	return nil
}

// createHost creates h's namespace and plugs its eth0 into the bridge br (the LAN's, or the
// WAN's behind the router). Forwarding hosts (nodes, the router) route between their links.
func createHost(ctx context.Context, h *Host, br string, forwarding bool) error {
	if err := ip(ctx, "netns", "add", h.NS); err != nil {
		return err
	}
	if err := ip(ctx, "-n", h.NS, "link", "set", "lo", "up"); err != nil {
		return err
	}
	fwd := "0"
	if forwarding {
		fwd = "1"
	}
	if err := sysctl(ctx, h.NS,
		"net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0",
		"net.ipv6.conf.all.accept_ra=0", "net.ipv6.conf.default.accept_ra=0",
		"net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0",
		"net.ipv4.ip_forward="+fwd, "net.ipv6.conf.all.forwarding="+fwd,
	); err != nil {
		return err
	}
	return plug(ctx, h.NS, "eth0", bridgePort(h), br, h.IPv4, h.IPv6)
}

// plug connects the namespace ns to the bridge br: a veth named link in ns, port on the
// bridge, with the addresses v4/24 and v6/64.
func plug(ctx context.Context, ns, link, port, br string, v4, v6 netip.Addr) error {
	if len(port) > 15 {
		return fmt.Errorf("bridge port %q too long for an interface name", port)
	}
	steps := [][]string{
		{"link", "add", port, "netns", bridgeNS, "type", "veth", "peer", "name", link, "netns", ns},
		{"-n", bridgeNS, "link", "set", port, "master", br, "up"},
		{"-n", ns, "addr", "add", v4.String() + "/24", "dev", link},
		{"-n", ns, "addr", "add", v6.String() + "/64", "dev", link, "nodad"},
		{"-n", ns, "link", "set", link, "up"},
	}
	for _, s := range steps {
		if err := ip(ctx, s...); err != nil {
			return err
		}
	}
	return nil
}

// routeNode gives node i routes to every other node's pods and on-link routes for the
// Service CIDRs, so that locally generated traffic to a ClusterIP reaches kube-proxy's rules.
func routeNode(ctx context.Context, i, nodes int) error {
	h := nodeHost(i)
	for _, cidr := range ServiceCIDRs {
		if err := ip(ctx, "-n", h.NS, "route", "add", cidr.String(), "dev", "eth0"); err != nil {
			return err
		}
	}
	return routePods(ctx, h, i, nodes)
}

// routePods gives host h routes to the pods of every node but node skip (0: none), through
// that node, as a cluster's pod network is routed: the control plane needs them to answer pods
// (the API server behind the kubernetes Service, kubelet's probes aside).
func routePods(ctx context.Context, h *Host, skip, nodes int) error {
	for j := 1; j <= nodes; j++ {
		if j == skip {
			continue
		}
		peer := nodeHost(j)
		for k, cidr := range podCIDRs(j) {
			if err := ip(ctx, "-n", h.NS, "route", "add", cidr.String(), "via", peer.Addrs()[k].String()); err != nil {
				return err
			}
		}
	}
	return nil
}

// Unplug pulls h's cable: its port on the bridge goes down, so its eth0 loses carrier as when
// a node's link dies, while its addresses and routes stay. Plug puts the cable back.
func Unplug(ctx context.Context, h *Host) error {
	return ip(ctx, "-n", bridgeNS, "link", "set", bridgePort(h), "down")
}

// Plug puts back the cable Unplug pulled.
func Plug(ctx context.Context, h *Host) error {
	return ip(ctx, "-n", bridgeNS, "link", "set", bridgePort(h), "up")
}

// bridgePort is the name of h's port on the bridge.
func bridgePort(h *Host) string { return strings.TrimPrefix(h.NS, nsPrefix) }
