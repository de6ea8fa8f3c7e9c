package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// RouterOptions configure the lab's upstream router (Options.Router). The zero value is the
// default.
type RouterOptions struct {
	// ASN is the router's AS number (default 64513).
	ASN uint32
	// ClusterASN is the AS number the router expects of every node (default 64512): the
	// sessions are eBGP.
	ClusterASN uint32
	// BFDInterval is the BFD transmit and receive interval the router offers every node
	// (default 100 ms, at least 10 ms); BFDMultiplier the number of missed packets after
	// which it declares a node down (default 3, 2 to 255).
	BFDInterval   time.Duration
	BFDMultiplier int
	// Clients is the number of client namespaces on the WAN behind the router (default 1).
	Clients int
}

// withDefaults returns o with defaults filled in, or an error naming the bad field.
func (o RouterOptions) withDefaults() (RouterOptions, error) {
	if o.ASN == 0 {
		o.ASN = 64513
	}
	if o.ClusterASN == 0 {
		o.ClusterASN = 64512
	}
	if o.BFDInterval == 0 {
		o.BFDInterval = 100 * time.Millisecond
	}
	if o.BFDMultiplier == 0 {
		o.BFDMultiplier = 3
	}
	if o.Clients == 0 {
		o.Clients = 1
	}
	switch {
	case o.BFDInterval < 10*time.Millisecond || o.BFDInterval > time.Minute || o.BFDInterval%time.Millisecond != 0:
		return o, fmt.Errorf("lab: router BFD interval %v: want whole milliseconds from 10 ms to 1 minute", o.BFDInterval)
	case o.BFDMultiplier < 2 || o.BFDMultiplier > 255:
		return o, fmt.Errorf("lab: router BFD multiplier %d: want 2 to 255", o.BFDMultiplier)
	case o.Clients < 1 || o.Clients > 50:
		return o, fmt.Errorf("lab: %d router clients: want 1 to 50", o.Clients)
	}
	return o, nil
}

// Router is the lab's upstream router: a namespace with one leg on the LAN (eth0) and one on
// the WAN (eth1), where its clients are, running FRR. Every node may peer with it over BGP
// (IPv4 and IPv6 sessions, eBGP, BFD); it installs what they advertise into its kernel table,
// an ECMP route when several nodes advertise a prefix, and routes its clients to the lab.
type Router struct {
	*Host                       // olb-router, eth0 at 198.18.0.254 and 2001:db8:18::fe
	WANIPv4, WANIPv6 netip.Addr // eth1, the clients' gateway
	Options          RouterOptions
	FRR              *FRR
	// Clients are hosts on the WAN (olb-wan-client at 198.18.2.100 and 2001:db8:1b::64, then
	// olb-wan-client-2, ...) that reach the lab only through the router.
	Clients []*Host
}

// newRouter describes the router of options o and its clients.
func newRouter(o RouterOptions) *Router {
	r := &Router{
		Host:    lanHost("router", 254),
		WANIPv4: addrAt(WANPrefix4, 1), WANIPv6: addrAt(WANPrefix6, 1),
		Options: o,
	}
	for i := 1; i <= o.Clients; i++ {
		name := "wan-client"
		if i > 1 {
			name = fmt.Sprintf("wan-client-%d", i)
		}
		r.Clients = append(r.Clients, segmentHost(name, WANPrefix4, WANPrefix6, 99+i))
	}
	return r
}

// createRouter makes the WAN, the router between it and the LAN, its clients, and a route on
// every node to the WAN through the router, as a node's default route would.
func (l *Lab) createRouter(ctx context.Context) error {
	r := l.Router
	steps := [][]string{
		{"-n", bridgeNS, "link", "add", wanBridge, "type", "bridge", "mcast_snooping", "0"},
		{"-n", bridgeNS, "link", "set", wanBridge, "up"},
	}
	for _, s := range steps {
		if err := ip(ctx, s...); err != nil {
			return err
		}
	}
	if err := createHost(ctx, r.Host, bridge, true); err != nil {
		return err
	}
	if err := plug(ctx, r.NS, "eth1", "router-wan", wanBridge, r.WANIPv4, r.WANIPv6); err != nil {
		return err
	}
	// ECMP over flows, as routers do, rather than over address pairs (the kernel's default):
	// one client's connections spread over the nodes.
	if err := sysctl(ctx, r.NS, "net.ipv4.fib_multipath_hash_policy=1", "net.ipv6.fib_multipath_hash_policy=1"); err != nil {
		return err
	}
	gateways := []netip.Addr{r.WANIPv4, r.WANIPv6}
	for _, c := range r.Clients {
		if err := createHost(ctx, c, wanBridge, false); err != nil {
			return err
		}
		for k, prefix := range labRoutes {
			if err := ip(ctx, "-n", c.NS, "route", "add", prefix.String(), "via", gateways[k].String()); err != nil {
				return err
			}
		}
	}
	for _, n := range l.Nodes {
		for k, prefix := range []netip.Prefix{WANPrefix4, WANPrefix6} {
			if err := ip(ctx, "-n", n.NS, "route", "add", prefix.String(), "via", r.Addrs()[k].String()); err != nil {
				return err
			}
		}
	}
	return nil
}

func (l *Lab) startRouter(ctx context.Context) error {
	if err := l.createRouter(ctx); err != nil {
		return err
	}
	f, err := l.StartFRR(ctx, l.Router.NS, "router", routerConfig(l.Router))
	l.Router.FRR = f
	return err
}

// BFDProfile is the bfdd configuration of a profile named name: interval both ways, and
// multiplier packets missed before the session is down.
func BFDProfile(name string, interval time.Duration, multiplier int) string {
	ms := interval.Milliseconds()
	return fmt.Sprintf("bfd\n profile %s\n  detect-multiplier %d\n  receive-interval %d\n  transmit-interval %d\n",
		name, multiplier, ms, ms)
}

// routerConfig is r's FRR configuration: any address of the LAN may open a session as a
// member of the peer group NODES (dynamic neighbours), BFD on every session, IPv4 and IPv6
// routes from up to 16 nodes installed as one ECMP route, through the nodes' global IPv6
// addresses rather than their link-local ones.
func routerConfig(r *Router) FRRConfig {
	o := r.Options
	return FRRConfig{
		BFDd: BFDProfile("nodes", o.BFDInterval, o.BFDMultiplier),
		BGPd: RouterBGPConfig(o.ASN, r.IPv4, o.ClusterASN, []netip.Prefix{LANPrefix4, LANPrefix6}),
	}
}

// RouterBGPConfig is the bgpd configuration of the lab's router, of AS asn and router ID
// id, for nodes of AS nodeASN: members of the peer group NODES, with BFD (profile "nodes"),
// IPv4 and IPv6 routes from up to 16 nodes installed as one ECMP route, through the nodes'
// global IPv6 addresses. A node is any address of a prefix of nodes (bgp listen range:
// dynamic neighbours), or, for a single address (a /32 or /128), that address as an
// explicit neighbour.
func RouterBGPConfig(asn uint32, id netip.Addr, nodeASN uint32, nodes []netip.Prefix) string {
	bgp := []string{
		"route-map NODES-IN permit 10",
		" set ipv6 next-hop prefer-global",
		"!",
		fmt.Sprintf("router bgp %d", asn),
		" bgp router-id " + id.String(),
		" no bgp ebgp-requires-policy",
		" neighbor NODES peer-group",
		fmt.Sprintf(" neighbor NODES remote-as %d", nodeASN),
		" neighbor NODES bfd",
		" neighbor NODES bfd profile nodes",
	}
	for _, n := range nodes {
		if n.IsSingleIP() {
			bgp = append(bgp, " neighbor "+n.Addr().String()+" peer-group NODES")
		} else {
			bgp = append(bgp, " bgp listen range "+n.String()+" peer-group NODES")
		}
	}
	bgp = append(bgp,
		" address-family ipv4 unicast",
		"  maximum-paths 16",
		" exit-address-family",
		" address-family ipv6 unicast",
		"  maximum-paths 16",
		"  neighbor NODES activate",
		"  neighbor NODES route-map NODES-IN in",
		" exit-address-family",
	)
	return strings.Join(bgp, "\n") + "\n"
}

// NextHops returns the gateways of the route to exactly prefix in h's main routing table,
// sorted: one per path of an ECMP route, none when there is no such route. Paths the kernel
// marks dead are left out.
func (h *Host) NextHops(ctx context.Context, prefix netip.Prefix) ([]netip.Addr, error) {
	return NextHops(ctx, h.NS, prefix)
}

// NextHops returns what Host.NextHops does, of the network namespace ns.
func NextHops(ctx context.Context, ns string, prefix netip.Prefix) ([]netip.Addr, error) {
	family := "-4"
	if prefix.Addr().Is6() {
		family = "-6"
	}
	out, err := run(ctx, "ip", "-n", ns, "-j", family, "route", "show", "exact", prefix.String())
	if err != nil {
		return nil, err
	}
	return parseNextHops([]byte(out))
}

// parseNextHops returns the gateways of the routes in the output of `ip -j route show`.
func parseNextHops(data []byte) ([]netip.Addr, error) {
	type hop struct {
		Gateway string   `json:"gateway"`
		Flags   []string `json:"flags"`
	}
	var routes []struct {
		hop
		Nexthops []hop `json:"nexthops"`
	}
	if len(data) == 0 {
		return nil, nil // ip prints nothing at all for an empty table
	}
	if err := json.Unmarshal(data, &routes); err != nil {
		return nil, fmt.Errorf("lab: parse routes: %w", err)
	}
	var gws []netip.Addr
	for _, r := range routes {
		for _, h := range append([]hop{r.hop}, r.Nexthops...) {
			if h.Gateway == "" || slices.Contains(h.Flags, "dead") {
				continue
			}
			a, err := netip.ParseAddr(h.Gateway)
			if err != nil {
				return nil, fmt.Errorf("lab: parse routes: gateway: %w", err)
			}
			gws = append(gws, a)
		}
	}
	slices.SortFunc(gws, netip.Addr.Compare)
	return slices.Compact(gws), nil
}
