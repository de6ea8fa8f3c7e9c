package speaker

import (
	"net"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

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
