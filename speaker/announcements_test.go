package speaker

import (
	"encoding/json"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/onprem-lb/onprem-lb/config"
	"github.com/onprem-lb/onprem-lb/speaker/bgp"
	"github.com/onprem-lb/onprem-lb/speaker/l2"
)

func TestAnnouncements(t *testing.T) {
	mac, _ := net.ParseMAC("02:00:00:00:00:99")
	state := map[netip.Addr]l2.Status{
		netip.MustParseAddr("2001:db8:18::200"): {Announced: []string{"eth0"}, Unavailable: []string{"eth1"}},
		netip.MustParseAddr("198.18.0.201"):     {Conflicts: []l2.Conflict{{Interface: "eth0", MAC: mac}}},
		netip.MustParseAddr("198.18.0.200"):     {Probing: []string{"eth0"}},
		netip.MustParseAddr("198.18.0.202"):     {},
	}
	want := []announcement{
		{IP: "198.18.0.200", State: "probing", Interfaces: []string{"eth0"}},
		{IP: "198.18.0.201", State: "conflict", Interfaces: []string{"eth0"}, ConflictMACs: []string{"02:00:00:00:00:99"}},
		{IP: "198.18.0.202", State: "unavailable"},
		{IP: "2001:db8:18::200", State: "announced", Interfaces: []string{"eth0"}},
	}
	if diff := cmp.Diff(want, announcements(state)); diff != "" {
		t.Errorf("announcements (-want +got):\n%s", diff)
	}
}

func TestBGPAnnouncements(t *testing.T) {
	up := time.Date(2026, 12, 2, 3, 4, 5, 0, time.UTC)
	peers := []bgp.PeerStatus{
		{Address: netip.MustParseAddr("198.18.0.254"), State: "established", Established: true, EstablishedAt: up, BFD: "up", PrefixesSent: 2},
		{Address: netip.MustParseAddr("2001:db8:18::fe"), State: "active", Recoveries: 1},
	}
	routes := []bgp.Route{
		{Prefix: netip.MustParsePrefix("198.18.3.0/32"), Communities: []config.Community{64512<<16 | 100, config.GracefulShutdown},
			LargeCommunities: []config.LargeCommunity{{Global: 64512, Local1: 1, Local2: 2}}, LocalPreference: 150,
			Peers: []netip.Addr{netip.MustParseAddr("198.18.0.254")}},
		{Prefix: netip.MustParsePrefix("2001:db8:1c::/128")},
	}
	want := bgpView{
		Draining: true,
		Sessions: []bgpSession{
			{Peer: "198.18.0.254", State: "established", Established: "2026-12-02T03:04:05Z", BFD: "up", PrefixesSent: 2},
			{Peer: "2001:db8:18::fe", State: "active", Recoveries: 1},
		},
		Routes: []bgpRoute{
			{Prefix: "198.18.3.0/32", Communities: []string{"64512:100", "65535:0"}, LargeCommunities: []string{"64512:1:2"}, LocalPreference: 150, Peers: []string{"198.18.0.254"}},
			{Prefix: "2001:db8:1c::/128"},
		},
	}
	if diff := cmp.Diff(want, bgpAnnouncements(peers, routes, true)); diff != "" {
		t.Errorf("BGP announcements (-want +got):\n%s", diff)
	}
	if got, err := json.Marshal(bgpAnnouncements(nil, nil, false)); err != nil || string(got) != `{"draining":false,"sessions":[],"routes":[]}` {
		t.Errorf("without BGP: %s (err %v), want empty lists", got, err)
	}
}
