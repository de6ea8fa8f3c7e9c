package bgp

import (
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/onprem-lb/onprem-lb/config"
	"k8s.io/klog/v2"
)

// Config configures an Engine.
type Config struct {
	// ASN is this node's autonomous system number.
	ASN uint32
	// RouterID is the BGP identifier, an IPv4 address.
	RouterID netip.Addr
	// Logger logs state changes (default: klog's global logger).
	Logger klog.Logger
	// Metrics count sessions, recoveries and routes; nil counts nothing.
	Metrics *Metrics

	// IdleHoldTimeAfterReset is how long a session stays idle after a reset before it
	// reconnects, in whole seconds (default 1 s; GoBGP's own default is 30 s).
	IdleHoldTimeAfterReset time.Duration
	// ConnectRetry is the interval between connection attempts, in whole seconds, 2 s or
	// more (default 2 s; GoBGP's own default is 120 s).
	ConnectRetry time.Duration
	// PollInterval is how often Run reads the sessions' state (default 500 ms, at most 1 s:
	// shorter than a reconnection, so that Run sees every session go down).
	PollInterval time.Duration
	// StableAfter is how long a session must stay established to count as up for recovery
	// (default 3 s): a session that comes up and is torn down at once is still down.
	StableAfter time.Duration
	// RecoverAfter is how long a session may stay not stably up, counted from when it went
	// down, the peer was added or its BFD session came up, before Run deletes and re-adds the
	// peer (default 10 s). It doubles with each such recovery that does not bring the
	// session up, up to eight times. See the package documentation for the other recovery.
	RecoverAfter time.Duration

	// passive makes sessions passive (tests: no connection attempt leaves this host).
	passive bool
}

// withDefaults returns c with defaults filled in, or an error naming the bad field.
func (c Config) withDefaults() (Config, error) {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.IdleHoldTimeAfterReset, time.Second)
	def(&c.ConnectRetry, 2*time.Second)
	def(&c.PollInterval, 500*time.Millisecond)
	def(&c.StableAfter, 3*time.Second)
	def(&c.RecoverAfter, 10*time.Second)
	if c.Logger.GetSink() == nil {
		c.Logger = klog.Background()
	}
	switch {
	case c.ASN == 0:
		return c, fmt.Errorf("bgp: no ASN")
	case !c.RouterID.Is4():
		return c, fmt.Errorf("bgp: router ID %v: want an IPv4 address", c.RouterID)
	case c.IdleHoldTimeAfterReset < time.Second || c.IdleHoldTimeAfterReset%time.Second != 0:
		return c, fmt.Errorf("bgp: idle hold time %v: want whole seconds, at least 1", c.IdleHoldTimeAfterReset)
	case c.ConnectRetry < 2*time.Second || c.ConnectRetry%time.Second != 0:
		return c, fmt.Errorf("bgp: connect retry %v: want whole seconds, at least 2", c.ConnectRetry)
	case c.PollInterval < 0 || c.PollInterval > time.Second:
		return c, fmt.Errorf("bgp: poll interval %v: want at most 1 s", c.PollInterval)
	}
	return c, nil
}

// Peer is a router to keep a BGP session with. Two Peers that are == need no reset of the
// session between them.
type Peer struct {
	config.Session
	// Password is the TCP MD5 password, "" for none.
	Password string
}

// Route is a prefix to advertise.
type Route struct {
	// Prefix is a /32 or /128, or shorter when addresses are aggregated.
	Prefix netip.Prefix
	// Communities and LargeCommunities are attached to the route.
	Communities      []config.Community
	LargeCommunities []config.LargeCommunity
	// LocalPreference is the LOCAL_PREF sent to iBGP peers; 0 sends none.
	LocalPreference uint32
	// Peers are the addresses of the peers that get the route; empty means every peer.
	Peers []netip.Addr
}

// normal returns r with its prefix masked and its peers sorted and unique, so that routes
// that mean the same compare equal.
func (r Route) normal() Route {
	r.Prefix = r.Prefix.Masked()
	if len(r.Peers) > 0 {
		r.Peers = slices.Compact(slices.SortedFunc(slices.Values(r.Peers), netip.Addr.Compare))
	}
	return r
}

// equal reports whether r and o, both normal, are the same route.
func (r Route) equal(o Route) bool {
	return r.Prefix == o.Prefix && r.LocalPreference == o.LocalPreference &&
		slices.Equal(r.Communities, o.Communities) && slices.Equal(r.LargeCommunities, o.LargeCommunities) &&
		slices.Equal(r.Peers, o.Peers)
}

// sendsTo reports whether r, normal, is for peer.
func (r Route) sendsTo(peer netip.Addr) bool {
	if r.Prefix.Addr().Is4() != peer.Is4() {
		return false // see the package documentation: no IPv4 route over an IPv6 session, nor the reverse
	}
	_, found := slices.BinarySearchFunc(r.Peers, peer, netip.Addr.Compare)
	return len(r.Peers) == 0 || found
}

// PeerStatus is the state of the session with a peer, as Run last read it.
type PeerStatus struct {
	Address netip.Addr
	// State is GoBGP's session state: "idle", "connect", "active", "opensent",
	// "openconfirm" or "established"; "unknown" before Run has read it.
	State       string
	Established bool
	// EstablishedAt is when the session came up (to the second, as GoBGP has it), zero
	// when it is not established.
	EstablishedAt time.Time
	// BFD is the BFD session's state: "up", "down", "init", "admin-down", or "" without BFD;
	// "down" while the session is not established (see the package documentation).
	BFD string
	// PrefixesSent is the number of routes the peer has been sent.
	PrefixesSent uint64
	// PrefixesReceived is the number of routes the peer sent; all are rejected.
	PrefixesReceived uint64
	// Recoveries counts the times Run deleted and re-added the peer because its session
	// stayed down.
	Recoveries int
}

// byAddress indexes peers by address, or returns an error on a duplicate or invalid one.
func byAddress(peers []Peer) (map[netip.Addr]Peer, error) {
	m := make(map[netip.Addr]Peer, len(peers))
	for _, p := range peers {
		if !p.Address.IsValid() || p.Address.Zone() != "" {
			return nil, fmt.Errorf("bgp: peer address %q: want an IPv4 or IPv6 address without zone", p.Address)
		}
		if p.ASN == 0 {
			return nil, fmt.Errorf("bgp: peer %v: no ASN", p.Address)
		}
		p.Address = p.Address.Unmap()
		if _, dup := m[p.Address]; dup {
			return nil, fmt.Errorf("bgp: peer %v given twice", p.Address)
		}
		m[p.Address] = p
	}
	return m, nil
}

// byPrefix indexes routes, made normal, by prefix, or returns an error on a duplicate or
// invalid prefix.
func byPrefix(routes []Route) (map[netip.Prefix]Route, error) {
	m := make(map[netip.Prefix]Route, len(routes))
	for _, r := range routes {
		if !r.Prefix.IsValid() || r.Prefix.Addr().Zone() != "" || r.Prefix.Addr().Is4In6() {
			return nil, fmt.Errorf("bgp: route prefix %q is not valid", r.Prefix)
		}
		r = r.normal()
		if _, dup := m[r.Prefix]; dup {
			return nil, fmt.Errorf("bgp: route %v given twice", r.Prefix)
		}
		m[r.Prefix] = r
	}
	return m, nil
}

// diff returns the keys only in want (added), only in have (gone), and in both but with
// values that differ by equal (changed), each sorted by compare.
func diff[K comparable, V any](have, want map[K]V, equal func(a, b V) bool, compare func(a, b K) int) (added, gone, changed []K) {
	for k, w := range want {
		h, ok := have[k]
		switch {
		case !ok:
			added = append(added, k)
		case !equal(h, w):
			changed = append(changed, k)
		}
	}
	for k := range have {
		if _, ok := want[k]; !ok {
			gone = append(gone, k)
		}
	}
	for _, s := range [][]K{added, gone, changed} {
		slices.SortFunc(s, compare)
	}
	return added, gone, changed
}

// diffPeers compares the peers configured (have) with those wanted.
func diffPeers(have, want map[netip.Addr]Peer) (added, gone, changed []netip.Addr) {
	return diff(have, want, func(a, b Peer) bool { return a == b }, netip.Addr.Compare)
}

// diffRoutes compares the routes advertised (have) with those wanted, both normal.
func diffRoutes(have, want map[netip.Prefix]Route) (added, gone, changed []netip.Prefix) {
	return diff(have, want, Route.equal, netip.Prefix.Compare)
}

// exclusions returns, for every peer that must not get some routes of its address family,
// those routes' prefixes, sorted: the routes whose Peers name others only.
func exclusions(peers map[netip.Addr]Peer, routes map[netip.Prefix]Route) map[netip.Addr][]netip.Prefix {
	ex := map[netip.Addr][]netip.Prefix{}
	for _, r := range routes {
		if len(r.Peers) == 0 {
			continue
		}
		for a := range peers {
			if a.Is4() == r.Prefix.Addr().Is4() && !r.sendsTo(a) {
				ex[a] = append(ex[a], r.Prefix)
			}
		}
	}
	for _, s := range ex {
		slices.SortFunc(s, netip.Prefix.Compare)
	}
	return ex
}
