package lab

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseNextHops(t *testing.T) {
	tests := []struct {
		name    string
		out     string
		want    []netip.Addr
		wantErr bool
	}{
		{name: "no route", out: "", want: nil},
		{name: "empty list", out: "[]", want: nil},
		{name: "one path, nexthop object",
			out:  `[{"dst":"198.18.3.1","nhid":6,"gateway":"198.18.0.11","dev":"eth0","protocol":"bgp","metric":20,"flags":[]}]`,
			want: addrs("198.18.0.11")},
		{name: "ECMP, sorted",
			out: `[{"dst":"2001:db8:1c::1","nhid":22,"protocol":"bgp","metric":20,"flags":[],"nexthops":[` +
				`{"gateway":"2001:db8:18::c","dev":"eth0","weight":1,"flags":[]},{"gateway":"2001:db8:18::b","dev":"eth0","weight":1,"flags":[]}]}]`,
			want: addrs("2001:db8:18::b", "2001:db8:18::c")},
		{name: "a dead path is left out",
			out: `[{"dst":"198.18.3.1","nexthops":[` +
				`{"gateway":"198.18.0.11","dev":"eth0","weight":1,"flags":["dead","linkdown"]},{"gateway":"198.18.0.12","dev":"eth0","weight":1,"flags":[]}]}]`,
			want: addrs("198.18.0.12")},
		{name: "connected route: no gateway", out: `[{"dst":"198.18.0.0/24","dev":"eth0","protocol":"kernel","scope":"link","prefsrc":"198.18.0.254","flags":[]}]`, want: nil},
		{name: "not JSON", out: "198.18.3.1 via 198.18.0.11 dev eth0", wantErr: true},
		{name: "bad gateway", out: `[{"dst":"198.18.3.1","gateway":"198.18.0.256"}]`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseNextHops([]byte(tt.out))
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseNextHops: error %v, want error %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("next hops (-want +got):\n%s", diff)
			}
		})
	}
}

func FuzzParseNextHops(f *testing.F) {
	f.Add([]byte(`[{"dst":"198.18.3.1","gateway":"198.18.0.11","nexthops":[{"gateway":"2001:db8:18::b","flags":["dead"]}]}]`))
	f.Add([]byte(`[{"gateway":""}]`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		hops, err := parseNextHops(data)
		if err != nil {
			return
		}
		for i, h := range hops {
			if !h.IsValid() || (i > 0 && hops[i-1].Compare(h) >= 0) {
				t.Fatalf("next hops %v: not valid, sorted and unique", hops)
			}
		}
	})
}

func TestParseBFDPeers(t *testing.T) {
	// As FRR 8.4's bfdd prints it for a dynamic BGP neighbour.
	out := `[{"multihop":false,"peer":"198.18.0.11","local":"198.18.0.254","vrf":"default","interface":"eth0","id":3422268305,` +
		`"remote-id":2284271367,"passive-mode":false,"status":"up","uptime":1,"diagnostic":"ok","remote-diagnostic":"ok",` +
		`"receive-interval":100,"transmit-interval":100,"echo-receive-interval":50,"echo-transmit-interval":0,"detect-multiplier":3,` +
		`"remote-receive-interval":300,"remote-transmit-interval":300,"remote-echo-receive-interval":50,"remote-detect-multiplier":3}]`
	got, err := parseBFDPeers([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	want := []BFDPeer{{
		Peer: netip.MustParseAddr("198.18.0.11"), Local: netip.MustParseAddr("198.18.0.254"), Interface: "eth0",
		Status: "up", ReceiveInterval: 100, TransmitInterval: 100, DetectMultiplier: 3,
	}}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("BFD peers (-want +got):\n%s", diff)
	}
	for _, bad := range []string{"", "BFD Peers:", `[{"peer":"not an address"}]`} {
		if _, err := parseBFDPeers([]byte(bad)); err == nil {
			t.Errorf("parseBFDPeers(%q) succeeded", bad)
		}
	}
}

func FuzzParseBFDPeers(f *testing.F) {
	f.Add([]byte(`[{"peer":"2001:db8:18::b","local":"2001:db8:18::fe","status":"down","receive-interval":300}]`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		parseBFDPeers(data) // must not panic
	})
}

func TestRouterOptions(t *testing.T) {
	got, err := RouterOptions{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	want := RouterOptions{ASN: 64513, ClusterASN: 64512, BFDInterval: 100 * time.Millisecond, BFDMultiplier: 3, Clients: 1}
	if got != want {
		t.Errorf("defaults: got %+v, want %+v", got, want)
	}
	for _, bad := range []RouterOptions{
		{BFDInterval: 5 * time.Millisecond}, {BFDInterval: 1500 * time.Microsecond}, {BFDMultiplier: 1}, {BFDMultiplier: 256}, {Clients: 51},
	} {
		if _, err := bad.withDefaults(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

// TestRouterConfig checks what the router's FRR configuration says to the daemons that read it;
// that FRR accepts it and acts on it is TestRouter's part.
func TestRouterConfig(t *testing.T) {
	o, err := RouterOptions{ASN: 65001, ClusterASN: 65002, BFDInterval: 300 * time.Millisecond, BFDMultiplier: 5}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	conf := routerConfig(newRouter(o))
	for _, want := range []string{
		"router bgp 65001\n", " bgp router-id 198.18.0.254\n", " neighbor NODES remote-as 65002\n",
		" bgp listen range 198.18.0.0/24 peer-group NODES\n", " bgp listen range 2001:db8:18::/64 peer-group NODES\n",
		" neighbor NODES bfd profile nodes\n", " no bgp ebgp-requires-policy\n",
	} {
		if !strings.Contains(conf.BGPd, want) {
			t.Errorf("bgpd.conf lacks %q:\n%s", want, conf.BGPd)
		}
	}
	if got := strings.Count(conf.BGPd, "  maximum-paths 16\n"); got != 2 {
		t.Errorf("bgpd.conf has maximum-paths 16 %d times, want once per address family:\n%s", got, conf.BGPd)
	}
	if want := "bfd\n profile nodes\n  detect-multiplier 5\n  receive-interval 300\n  transmit-interval 300\n"; conf.BFDd != want {
		t.Errorf("bfdd.conf:\n%s\nwant:\n%s", conf.BFDd, want)
	}
}

func addrs(ss ...string) []netip.Addr {
	var as []netip.Addr
	for _, s := range ss {
		as = append(as, netip.MustParseAddr(s))
	}
	return as
}

func TestParseBGPPaths(t *testing.T) {
	// FRR 8.4's `show bgp ipv6 unicast <prefix> json`, trimmed, of two nodes' paths, one of
	// them draining.
	out := `{"prefix": "2001:db8:1c::/128", "paths": [
		{"aspath": {"string": "64512"}, "valid": true, "multipath": true, "community": {"string": "64512:100", "list": ["64512:100"]},
		 "nexthops": [{"ip": "2001:db8:18::d", "afi": "ipv6", "scope": "global", "used": true}],
		 "peer": {"peerId": "2001:db8:18::d", "routerId": "198.18.0.13", "type": "external"}},
		{"aspath": {"string": "64512"}, "valid": true, "locPrf": 0, "bestpath": {"overall": true, "selectionReason": "Older Path"},
		 "community": {"string": "64512:100 graceful-shutdown", "list": ["64512:100", "gracefulShutdown"]},
		 "nexthops": [{"ip": "2001:db8:18::b", "afi": "ipv6", "scope": "global", "used": true}],
		 "peer": {"peerId": "2001:db8:18::b", "routerId": "198.18.0.11", "type": "external"}}]}`
	got, err := parseBGPPaths([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	want := []BGPPath{
		{Peer: netip.MustParseAddr("2001:db8:18::d"), Communities: []string{"64512:100"}, LocalPref: -1, Multipath: true},
		{Peer: netip.MustParseAddr("2001:db8:18::b"), Communities: []string{"64512:100", "graceful-shutdown"}, LocalPref: 0, Best: true},
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("parseBGPPaths (-want +got):\n%s", diff)
	}
	if got[0].GracefulShutdown() || !got[1].GracefulShutdown() {
		t.Errorf("GracefulShutdown: %v, %v, want false, true", got[0].GracefulShutdown(), got[1].GracefulShutdown())
	}
	if none, err := parseBGPPaths([]byte(`{}`)); err != nil || len(none) != 0 {
		t.Errorf("no route: %v, %v; want no path", none, err)
	}
}

func TestParseBGPSessions(t *testing.T) {
	// FRR 8.4's `show bgp ipv6 unicast summary json`, trimmed.
	out := `{"routerId": "198.18.0.254", "as": 64513, "peers": {
		"198.18.0.11": {"dynamicPeer": true, "remoteAs": 64512, "state": "Established", "peerState": "OK", "pfxRcd": 0},
		"2001:db8:18::c": {"dynamicPeer": true, "remoteAs": 64512, "state": "Active", "peerState": "OK"}}}`
	got, err := parseBGPSessions([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	want := map[netip.Addr]string{netip.MustParseAddr("198.18.0.11"): "Established", netip.MustParseAddr("2001:db8:18::c"): "Active"}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("parseBGPSessions (-want +got):\n%s", diff)
	}
}
