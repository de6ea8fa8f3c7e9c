package speaker

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/types"

	"github.com/onprem-lb/onprem-lb/config"
	"github.com/onprem-lb/onprem-lb/speaker/bgp"
)

const bgpPools = `
bgp:
  asn: 64512
  peers:
  - {name: tor-a, address: 198.18.0.254, asn: 64513}
  - {name: tor-b, address: "2001:db8:18::fe", asn: 64513}
pools:
- name: lan
  addresses: [198.18.0.200-198.18.0.239]
- name: wan
  addresses: [198.18.4.0/24, "2001:db8:40::/64"]
  announce: bgp
  bgpAdvertisement:
    communities: ["64512:100"]
    largeCommunities: ["64512:1:2"]
    localPreference: 150
- name: agg
  addresses: [198.18.5.0/24]
  announce: both
  bgpAdvertisement:
    aggregationLength: 28
    peers: [tor-a]
`

func TestRoutes(t *testing.T) {
	cfg, err := config.Parse("pools.yaml", []byte(bgpPools))
	if err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr
	a := func(addr, pool string, announce config.Announce, nodes ...string) *Assignment {
		return &Assignment{IP: ip(addr), Pool: pool, Announce: announce, Nodes: nodes}
	}
	assignments := map[netip.Addr]*Assignment{
		ip("198.18.0.200"):    a("198.18.0.200", "lan", config.AnnounceL2, "node-1"),               // L2 only
		ip("198.18.4.1"):      a("198.18.4.1", "wan", config.AnnounceBGP, "node-1", "node-2"),      // both serve
		ip("198.18.4.2"):      a("198.18.4.2", "wan", config.AnnounceBGP, "node-2"),                // node-1 cannot serve
		ip("198.18.4.3"):      a("198.18.4.3", "wan", config.AnnounceBGP),                          // nobody can
		ip("2001:db8:40::7"):  a("2001:db8:40::7", "wan", config.AnnounceBGP, "node-1"),            // IPv6
		ip("198.18.5.1"):      a("198.18.5.1", "agg", config.AnnounceBoth, "node-2"),               // aggregated ...
		ip("198.18.5.2"):      a("198.18.5.2", "agg", config.AnnounceBoth, "node-1", "node-3"),     // ... with this one
		ip("198.18.5.17"):     a("198.18.5.17", "agg", config.AnnounceBoth, "node-3"),              // another /28
		ip("198.18.9.9"):      a("198.18.9.9", "gone", config.AnnounceBGP, "node-1"),               // a pool no longer in the file
		ip("2001:db8:40::99"): a("2001:db8:40::99", "wan", config.AnnounceBGP, "node-0", "node-2"), // not node-1
	}
	wan := func(prefix string) bgp.Route {
		return bgp.Route{Prefix: netip.MustParsePrefix(prefix), Communities: []config.Community{64512<<16 | 100},
			LargeCommunities: []config.LargeCommunity{{Global: 64512, Local1: 1, Local2: 2}}, LocalPreference: 150}
	}
	want := []bgp.Route{
		wan("198.18.4.1/32"),
		{Prefix: netip.MustParsePrefix("198.18.5.0/28"), Peers: []netip.Addr{ip("198.18.0.254")}},
		wan("2001:db8:40::7/128"),
	}
	if diff := cmp.Diff(want, routes("node-1", cfg, assignments), cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
		cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("routes of node-1 (-want +got):\n%s", diff)
	}
	noBGP, err := config.Parse("pools.yaml", []byte("pools: [{name: lan, addresses: [198.18.0.0/24]}]"))
	if err != nil {
		t.Fatal(err)
	}
	if got := routes("node-1", noBGP, assignments); len(got) != 0 {
		t.Errorf("routes without a bgp section = %v, want none", got)
	}
}

func TestDamper(t *testing.T) {
	r := func(prefix string, pref uint32) bgp.Route {
		return bgp.Route{Prefix: netip.MustParsePrefix(prefix), LocalPreference: pref}
	}
	a, b := "198.18.4.1/32", "198.18.4.2/32"
	t0 := time.Unix(1000, 0)
	type step struct {
		at       time.Duration // after t0
		want     []bgp.Route
		pass     []bgp.Route
		waitLeft time.Duration
		released bool // the prefixes gone at this step hold no assigned IP any more
	}
	for _, tt := range []struct {
		name  string
		steps []step
	}{{
		name: "new routes pass at once, and changed attributes too",
		steps: []step{
			{0, []bgp.Route{r(a, 0), r(b, 0)}, []bgp.Route{r(a, 0), r(b, 0)}, 0, false},
			{time.Second, []bgp.Route{r(a, 200), r(b, 0)}, []bgp.Route{r(a, 200), r(b, 0)}, 0, false},
		},
	}, {
		name: "withdrawn and wanted again: held for the hold-down, then passed",
		steps: []step{
			{0, []bgp.Route{r(a, 0), r(b, 0)}, []bgp.Route{r(a, 0), r(b, 0)}, 0, false},
			{100 * time.Millisecond, []bgp.Route{r(b, 0)}, []bgp.Route{r(b, 0)}, 0, false},
			{600 * time.Millisecond, []bgp.Route{r(a, 0), r(b, 0)}, []bgp.Route{r(b, 0)}, holdDown - 500*time.Millisecond, false},
			{holdDown + 100*time.Millisecond, []bgp.Route{r(a, 0), r(b, 0)}, []bgp.Route{r(a, 0), r(b, 0)}, 0, false},
		},
	}, {
		name: "withdrawn and wanted again after the hold-down: passed at once",
		steps: []step{
			{0, []bgp.Route{r(a, 0)}, []bgp.Route{r(a, 0)}, 0, false},
			{time.Second, nil, nil, 0, false},
			{time.Second + holdDown, []bgp.Route{r(a, 0)}, []bgp.Route{r(a, 0)}, 0, false},
		},
	}, {
		name: "released, then assigned again (another Service): passed at once",
		steps: []step{
			{0, []bgp.Route{r(a, 0), r(b, 0)}, []bgp.Route{r(a, 0), r(b, 0)}, 0, false},
			{100 * time.Millisecond, []bgp.Route{r(b, 0)}, []bgp.Route{r(b, 0)}, 0, true},
			{200 * time.Millisecond, []bgp.Route{r(a, 0), r(b, 0)}, []bgp.Route{r(a, 0), r(b, 0)}, 0, false},
		},
	}, {
		name: "a flap within the hold-down restarts it",
		steps: []step{
			{0, []bgp.Route{r(a, 0)}, []bgp.Route{r(a, 0)}, 0, false},
			{time.Second, nil, nil, 0, false},
			{time.Second + holdDown, []bgp.Route{r(a, 0)}, []bgp.Route{r(a, 0)}, 0, false},
			{time.Second + holdDown + 100*time.Millisecond, nil, nil, 0, false},
			{time.Second + holdDown + 200*time.Millisecond, []bgp.Route{r(a, 0)}, nil, holdDown - 100*time.Millisecond, false},
		},
	}} {
		t.Run(tt.name, func(t *testing.T) {
			var d damper
			for i, s := range tt.steps {
				got, wait, _ := d.filter(t0.Add(s.at), s.want, func(netip.Prefix) bool { return s.released })
				if diff := cmp.Diff(s.pass, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
					t.Errorf("step %d: routes passed (-want +got):\n%s", i, diff)
				}
				if wait != s.waitLeft {
					t.Errorf("step %d: wait %v, want %v", i, wait, s.waitLeft)
				}
			}
		})
	}
}

// notReleased says of every prefix that its IPs are still assigned.
func notReleased(netip.Prefix) bool { return false }

// The damper names the prefixes it withdraws, once, including one held back; and each
// withdrawal is counted under why the node stopped advertising it.
func TestWithdrawReasons(t *testing.T) {
	pfx := netip.MustParsePrefix
	a, b, c, d, e, agg := pfx("198.18.4.1/32"), pfx("198.18.4.2/32"), pfx("198.18.4.3/32"), pfx("198.18.4.4/32"), pfx("2001:db8:40::5/128"), pfx("198.18.5.0/28")
	route := func(p netip.Prefix) bgp.Route { return bgp.Route{Prefix: p} }
	var dm damper
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	dm.filter(t0, []bgp.Route{route(a), route(b), route(c), route(d), route(e), route(agg)}, notReleased)
	_, _, gone := dm.filter(t0.Add(time.Second), []bgp.Route{route(c)}, notReleased)
	_, _, again := dm.filter(t0.Add(2*time.Second), []bgp.Route{route(a), route(c)}, notReleased) // a held back: not gone again
	if diff := cmp.Diff([]netip.Prefix{a, b, d, agg, e}, sortedPrefixes(gone), cmp.Comparer(func(x, y netip.Prefix) bool { return x == y })); diff != "" {
		t.Errorf("gone (-want +got):\n%s", diff)
	}
	if len(again) != 0 {
		t.Errorf("gone after a held-back prefix is wanted again: %v, want none", again)
	}

	key := func(name string) []types.NamespacedName { return []types.NamespacedName{{Namespace: "ns", Name: name}} }
	local := map[types.NamespacedName]bool{key("local")[0]: true, key("local2")[0]: true}
	isLocal := func(key types.NamespacedName) bool { return local[key] }
	assignments := map[netip.Addr]*Assignment{
		// a: released. b: a Cluster Service's. d: a Local one's. e: an L2-only pool's now.
		b.Addr():                          {IP: b.Addr(), Services: key("cluster"), Announce: config.AnnounceBGP},
		d.Addr():                          {IP: d.Addr(), Services: key("local"), Announce: config.AnnounceBoth},
		e.Addr():                          {IP: e.Addr(), Services: key("cluster"), Announce: config.AnnounceL2},
		netip.MustParseAddr("198.18.5.3"): {Services: key("local2"), Announce: config.AnnounceBoth},
	}
	for _, tt := range []struct {
		name     string
		excluded bool
		want     map[string]int
	}{
		{"eligible", false, map[string]int{WithdrawReleased: 2, WithdrawNotEligible: 1, WithdrawNoLocalEndpoint: 2}},
		{"excluded", true, map[string]int{WithdrawReleased: 2, WithdrawExcluded: 3}},
	} {
		if diff := cmp.Diff(tt.want, withdrawReasons(gone, assignments, tt.excluded, isLocal)); diff != "" {
			t.Errorf("%s: reasons (-want +got):\n%s", tt.name, diff)
		}
	}
	if got := withdrawReasons(nil, assignments, false, isLocal); got != nil {
		t.Errorf("nothing gone: %v", got)
	}
}

func sortedPrefixes(ps []netip.Prefix) []netip.Prefix {
	return slices.SortedFunc(slices.Values(ps), netip.Prefix.Compare)
}

// The Advertised condition counts and names the nodes and names the peers of the IP's pool.
func TestAdvertisedMessage(t *testing.T) {
	cfg, err := config.Parse("pools.yaml", []byte(bgpPools))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		ip    string
		nodes []string
		want  string
	}{
		{"198.18.4.1", []string{"a"}, "198.18.4.1 is advertised over BGP by 1 node (a) to peers tor-a, tor-b"},
		{"198.18.5.1", []string{"a", "b"}, "198.18.5.1 is advertised over BGP by 2 nodes (a, b) to peers tor-a"},
		{"2001:db8:40::1", []string{"a", "b", "c", "d", "e", "f"}, "2001:db8:40::1 is advertised over BGP by 6 nodes (a, b, c, d, e, ...) to peers tor-a, tor-b"},
	} {
		if got := advertisedMessage(cfg, netip.MustParseAddr(tt.ip), tt.nodes); got != tt.want {
			t.Errorf("%s by %v:\n got %q\nwant %q", tt.ip, tt.nodes, got, tt.want)
		}
	}
	if got, want := advertisedMessage(&config.Config{}, netip.MustParseAddr("198.18.4.1"), []string{"a"}), "198.18.4.1 is advertised over BGP by 1 node (a)"; got != want {
		t.Errorf("without a bgp: section: %q, want %q", got, want)
	}
}
