package speaker

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

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
	}
	for _, tt := range []struct {
		name  string
		steps []step
	}{{
		name: "new routes pass at once, and changed attributes too",
		steps: []step{
			{0, []bgp.Route{r(a, 0), r(b, 0)}, []bgp.Route{r(a, 0), r(b, 0)}, 0},
			{time.Second, []bgp.Route{r(a, 200), r(b, 0)}, []bgp.Route{r(a, 200), r(b, 0)}, 0},
		},
	}, {
		name: "withdrawn and wanted again: held for the hold-down, then passed",
		steps: []step{
			{0, []bgp.Route{r(a, 0), r(b, 0)}, []bgp.Route{r(a, 0), r(b, 0)}, 0},
			{100 * time.Millisecond, []bgp.Route{r(b, 0)}, []bgp.Route{r(b, 0)}, 0},
			{600 * time.Millisecond, []bgp.Route{r(a, 0), r(b, 0)}, []bgp.Route{r(b, 0)}, holdDown - 500*time.Millisecond},
			{holdDown + 100*time.Millisecond, []bgp.Route{r(a, 0), r(b, 0)}, []bgp.Route{r(a, 0), r(b, 0)}, 0},
		},
	}, {
		name: "withdrawn and wanted again after the hold-down: passed at once",
		steps: []step{
			{0, []bgp.Route{r(a, 0)}, []bgp.Route{r(a, 0)}, 0},
			{time.Second, nil, nil, 0},
			{time.Second + holdDown, []bgp.Route{r(a, 0)}, []bgp.Route{r(a, 0)}, 0},
		},
	}, {
		name: "a flap within the hold-down restarts it",
		steps: []step{
			{0, []bgp.Route{r(a, 0)}, []bgp.Route{r(a, 0)}, 0},
			{time.Second, nil, nil, 0},
			{time.Second + holdDown, []bgp.Route{r(a, 0)}, []bgp.Route{r(a, 0)}, 0},
			{time.Second + holdDown + 100*time.Millisecond, nil, nil, 0},
			{time.Second + holdDown + 200*time.Millisecond, []bgp.Route{r(a, 0)}, nil, holdDown - 100*time.Millisecond},
		},
	}} {
		t.Run(tt.name, func(t *testing.T) {
			var d damper
			for i, s := range tt.steps {
				got, wait := d.filter(t0.Add(s.at), s.want)
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
