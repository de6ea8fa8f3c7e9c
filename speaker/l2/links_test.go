package l2

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func link(name string, mut func(*Link), prefixes ...string) Link {
	l := Link{Name: name, Index: len(name), MAC: net.HardwareAddr{2, 0, 0, 0, 0, byte(len(name))}, Flags: net.FlagUp | net.FlagRunning | net.FlagBroadcast}
	for _, p := range prefixes {
		l.Prefixes = append(l.Prefixes, netip.MustParsePrefix(p))
	}
	if mut != nil {
		mut(&l)
	}
	return l
}

func TestChooseInterfaces(t *testing.T) {
	links := []Link{
		link("bond0", nil, "198.18.0.10/24", "2001:db8:18::10/64"),
		link("br0", nil, "198.18.64.1/24"),
		link("dummy0", func(l *Link) { l.NoARP = true }, "198.18.66.1/24"),
		link("eth0", func(l *Link) { l.BondMember = true }),
		link("eth1", func(l *Link) { l.BondMember = true }),
		link("eth2", nil, "10.0.0.5/8", "2001:db8:99::5/64"),
		link("eth3", func(l *Link) { l.Flags &^= net.FlagRunning }, "198.18.70.1/24"),
		link("lo", func(l *Link) { l.Flags |= net.FlagLoopback; l.MAC = nil }, "127.0.0.1/8", "198.18.71.1/32"),
		link("veth1", func(l *Link) { l.BridgePort = true }, "198.18.72.1/24"),
	}
	nodeIPs := []netip.Addr{netip.MustParseAddr("10.0.0.5"), netip.MustParseAddr("2001:db8:99::5")}
	tests := []struct {
		name    string
		vip     string
		target  Target
		nodeIPs []netip.Addr
		want    []string
		wantErr map[string]error
	}{
		{name: "IPv4 in a bond's prefix", vip: "198.18.0.200", want: []string{"bond0"}},
		{name: "IPv6 in a bond's prefix", vip: "2001:db8:18::200", want: []string{"bond0"}},
		{name: "IPv4 in a bridge's prefix", vip: "198.18.64.20", want: []string{"br0"}},
		{name: "no prefix: node IP's interface", vip: "203.0.113.1", nodeIPs: nodeIPs, want: []string{"eth2"}},
		{name: "no prefix: node IP of the same family", vip: "2001:db8:77::1", nodeIPs: nodeIPs, want: []string{"eth2"}},
		{name: "no prefix, no node IP of the family", vip: "2001:db8:77::1", nodeIPs: nodeIPs[:1]},
		{name: "NOARP link skipped", vip: "198.18.66.20"},
		{name: "down link skipped", vip: "198.18.70.20"},
		{name: "loopback skipped", vip: "198.18.71.1"},
		{name: "bridge port skipped", vip: "198.18.72.20"},
		{name: "NOARP falls back on node IP", vip: "198.18.66.20", nodeIPs: nodeIPs, want: []string{"eth2"}},
		{name: "explicit overrides choice", vip: "198.18.0.200", target: Target{Interfaces: []string{"eth2", "br0", "eth2"}}, want: []string{"eth2", "br0"}},
		{name: "explicit bond member accepted", vip: "198.18.0.200", target: Target{Interfaces: []string{"eth0"}}, want: []string{"eth0"}},
		{
			name: "explicit missing, down, NOARP",
			vip:  "198.18.0.200", target: Target{Interfaces: []string{"eth9", "eth3", "dummy0", "br0"}},
			want:    []string{"br0"},
			wantErr: map[string]error{"eth9": ErrNoInterface, "eth3": ErrInterfaceDown, "dummy0": ErrInterfaceNoARP},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := chooseInterfaces(netip.MustParseAddr(tt.vip), tt.target, links, tt.nodeIPs)
			if diff := cmp.Diff(tt.want, got.ifaces); diff != "" {
				t.Errorf("interfaces (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantErr, got.errs, cmp.Comparer(func(a, b error) bool { return errors.Is(a, b) })); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("input not mutated", func(t *testing.T) {
		before := cmp.Diff(nil, links, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }))
		chooseInterfaces(netip.MustParseAddr("198.18.0.1"), Target{Interfaces: []string{"eth2"}}, links, nodeIPs)
		if after := cmp.Diff(nil, links, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); after != before {
			t.Error("links changed")
		}
	})
}

func TestAnnounceMACs(t *testing.T) {
	mac := func(b byte) net.HardwareAddr { return net.HardwareAddr{2, 0, 0, 0, 1, b} }
	withMAC := func(b byte, mut func(*Link)) func(*Link) {
		return func(l *Link) {
			l.MAC = mac(b)
			if mut != nil {
				mut(l)
			}
		}
	}
	links := []Link{
		link("bond0", withMAC(1, nil), "198.18.0.10/24"),
		link("bond0.100", withMAC(1, nil), "198.18.1.10/24"), // a VLAN shares its parent's MAC
		link("cali1", withMAC(2, nil)),                       // a pod's veth, no address
		link("cni0", withMAC(3, nil), "10.244.0.1/24"),
		link("dummy0", withMAC(4, func(l *Link) { l.NoARP = true }), "198.18.66.1/24"),
		link("eth0", withMAC(5, func(l *Link) { l.BondMember = true })),
		link("eth2", withMAC(6, func(l *Link) { l.Flags = 0 }), "198.18.70.1/24"), // down counts
		link("eth3", withMAC(7, nil), "fe80::1/64"),
		link("ib0", func(l *Link) { l.MAC = make(net.HardwareAddr, 20) }, "198.18.68.1/24"),
		link("lo", func(l *Link) { l.Flags |= net.FlagLoopback; l.MAC = nil }, "127.0.0.1/8"),
		link("vethab", withMAC(8, nil), "10.244.0.1/32", "fe80::1/64"), // ptp plugin's pod veth
		link("vethcd", withMAC(9, func(l *Link) { l.BridgePort = true })),
		link("wlan0", withMAC(10, nil), "2001:db8:5::1/64"),
	}
	nodeIPs := []netip.Addr{netip.MustParseAddr("::ffff:198.18.1.10")}
	tests := []struct {
		name     string
		explicit []string
		want     []net.HardwareAddr
	}{
		{name: "node IP first, then subnets", want: []net.HardwareAddr{mac(1), mac(3), mac(6), mac(10)}},
		{
			name:     "pools' interfaces first, bond member and pod veth included, missing and NOARP skipped",
			explicit: []string{"eth0", "eth9", "dummy0", "cali1", "wlan0"},
			want:     []net.HardwareAddr{mac(5), mac(2), mac(10), mac(1), mac(3), mac(6)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, announceMACs(links, tt.explicit, nodeIPs)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestReadLinksDumpsAddressesOnce: one address dump per read, however many links (it was one
// dump per link, each dump listing every address: quadratic in links).
func TestReadLinksDumpsAddressesOnce(t *testing.T) {
	for _, n := range []int{1, 10, 500} {
		ifis := make([]net.Interface, n)
		addrs := map[int][]netip.Prefix{}
		for i := range ifis {
			ifis[i] = net.Interface{Index: i + 1, Name: fmt.Sprintf("olbfake%03d", i), Flags: net.FlagUp}
			addrs[i+1] = []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), 24)}
		}
		dumps := 0
		links, err := readLinksFrom(
			func() ([]net.Interface, error) { return ifis, nil },
			func() (map[int][]netip.Prefix, error) { dumps++; return addrs, nil })
		if err != nil {
			t.Fatal(err)
		}
		if dumps != 1 {
			t.Errorf("%d links: %d address dumps, want 1", n, dumps)
		}
		for _, l := range links {
			if diff := cmp.Diff(addrs[l.Index], l.Prefixes, cmpopts.EquateComparable(netip.Prefix{})); diff != "" {
				t.Errorf("%s's prefixes (-want +got):\n%s", l.Name, diff)
			}
		}
	}
}

// TestDumpAddrs: the one dump gives each interface of this host the addresses the net package
// reads for it, one dump each.
func TestDumpAddrs(t *testing.T) {
	ifis, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	got, err := dumpAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, ifi := range ifis {
		addrs, err := ifi.Addrs()
		if err != nil {
			t.Fatal(err)
		}
		var want []netip.Prefix
		for _, a := range addrs {
			ipn := a.(*net.IPNet)
			ip, _ := netip.AddrFromSlice(ipn.IP)
			ones, _ := ipn.Mask.Size()
			want = append(want, netip.PrefixFrom(ip.Unmap(), ones))
		}
		if diff := cmp.Diff(want, got[ifi.Index], cmpopts.EquateComparable(netip.Prefix{})); diff != "" {
			t.Errorf("%s (-net package +dump):\n%s", ifi.Name, diff)
		}
	}
}

// BenchmarkReadLinks reads the links of the network namespace it runs in (run it with ip
// netns exec in one with many links to see the cost per poll).
func BenchmarkReadLinks(b *testing.B) {
	for b.Loop() {
		if _, err := readLinks(); err != nil {
			b.Fatal(err)
		}
	}
}
