package bgp

import (
	"context"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	api "github.com/osrg/gobgp/v4/api"
	gobgp "github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"google.golang.org/protobuf/testing/protocmp"
	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/testutil"
	"k8s.io/klog/v2/ktesting"

	"github.com/onprem-lb/onprem-lb/config"
)

// r4b is a router's address too.
var r4b = netip.MustParseAddr("198.18.250.3")

// netipEqual compares netip values with ==.
var netipEqual = cmp.Options{
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
}

func peer(a netip.Addr, asn uint32) Peer {
	return Peer{Session: config.Session{Address: a, ASN: asn}}
}

func TestDiffPeers(t *testing.T) {
	bfd := peer(router4, 64513)
	bfd.BFD = config.BFD{TransmitInterval: 300 * time.Millisecond, ReceiveInterval: 300 * time.Millisecond, Multiplier: 3}
	pw := peer(router6, 64513)
	pw.Password = "secret"
	tests := []struct {
		name                 string
		have, want           []Peer
		added, gone, changed []netip.Addr
	}{
		{name: "none"},
		{name: "same", have: []Peer{peer(router4, 1), peer(router6, 1)}, want: []Peer{peer(router6, 1), peer(router4, 1)}},
		{name: "added", have: []Peer{peer(router4, 1)}, want: []Peer{peer(router6, 1), peer(router4, 1), peer(r4b, 1)},
			added: []netip.Addr{r4b, router6}},
		{name: "gone", have: []Peer{peer(router4, 1), peer(router6, 1)}, want: []Peer{peer(router6, 1)}, gone: []netip.Addr{router4}},
		{name: "ASN changed", have: []Peer{peer(router4, 1), peer(router6, 1)}, want: []Peer{peer(router4, 2), peer(router6, 1)},
			changed: []netip.Addr{router4}},
		{name: "BFD and password changed", have: []Peer{peer(router4, 64513), peer(router6, 64513)}, want: []Peer{bfd, pw},
			changed: []netip.Addr{router4, router6}},
		{name: "all at once", have: []Peer{peer(router4, 1), peer(r4b, 1)}, want: []Peer{peer(r4b, 2), peer(router6, 1)},
			added: []netip.Addr{router6}, gone: []netip.Addr{router4}, changed: []netip.Addr{r4b}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			have, err := byAddress(tt.have)
			if err != nil {
				t.Fatal(err)
			}
			want, err := byAddress(tt.want)
			if err != nil {
				t.Fatal(err)
			}
			added, gone, changed := diffPeers(have, want)
			got := [][]netip.Addr{added, gone, changed}
			if d := cmp.Diff([][]netip.Addr{tt.added, tt.gone, tt.changed}, got, netipEqual); d != "" {
				t.Errorf("added, gone, changed (-want +got):\n%s", d)
			}
		})
	}
}

func TestByAddressRejects(t *testing.T) {
	for name, peers := range map[string][]Peer{
		"duplicate": {peer(router4, 1), peer(router4, 2)},
		"no ASN":    {peer(router4, 0)},
		"invalid":   {peer(netip.Addr{}, 1)},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := byAddress(peers); err == nil {
				t.Error("no error")
			}
		})
	}
}

func TestDiffRoutes(t *testing.T) {
	comm := Route{Prefix: vip4, Communities: []config.Community{65000<<16 | 1}}
	tests := []struct {
		name                 string
		have, want           []Route
		added, gone, changed []netip.Prefix
	}{
		{name: "none"},
		{name: "same, peers in another order", have: []Route{{Prefix: vip4, Peers: []netip.Addr{router4, r4b}}, {Prefix: vip6}},
			want: []Route{{Prefix: vip6}, {Prefix: vip4, Peers: []netip.Addr{r4b, router4, r4b}}}},
		{name: "unmasked prefix is the same", have: []Route{{Prefix: netip.MustParsePrefix("198.18.251.0/24")}},
			want: []Route{{Prefix: netip.MustParsePrefix("198.18.251.7/24")}}},
		{name: "added and gone", have: []Route{{Prefix: vip4}}, want: []Route{{Prefix: vip6}, {Prefix: vip4b}},
			added: []netip.Prefix{vip4b, vip6}, gone: []netip.Prefix{vip4}},
		{name: "community added", have: []Route{{Prefix: vip4}}, want: []Route{comm}, changed: []netip.Prefix{vip4}},
		{name: "large community", have: []Route{comm}, want: []Route{{Prefix: vip4, Communities: comm.Communities,
			LargeCommunities: []config.LargeCommunity{{Global: 1, Local1: 2, Local2: 3}}}}, changed: []netip.Prefix{vip4}},
		{name: "local preference", have: []Route{{Prefix: vip4}}, want: []Route{{Prefix: vip4, LocalPreference: 200}},
			changed: []netip.Prefix{vip4}},
		{name: "peers", have: []Route{{Prefix: vip4}}, want: []Route{{Prefix: vip4, Peers: []netip.Addr{router4}}},
			changed: []netip.Prefix{vip4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			have, err := byPrefix(tt.have)
			if err != nil {
				t.Fatal(err)
			}
			want, err := byPrefix(tt.want)
			if err != nil {
				t.Fatal(err)
			}
			added, gone, changed := diffRoutes(have, want)
			got := [][]netip.Prefix{added, gone, changed}
			if d := cmp.Diff([][]netip.Prefix{tt.added, tt.gone, tt.changed}, got, netipEqual); d != "" {
				t.Errorf("added, gone, changed (-want +got):\n%s", d)
			}
		})
	}
}

func TestExclusions(t *testing.T) {
	peers, err := byAddress([]Peer{peer(router4, 1), peer(r4b, 1), peer(router6, 1)})
	if err != nil {
		t.Fatal(err)
	}
	routes, err := byPrefix([]Route{
		{Prefix: vip4}, // every peer
		{Prefix: vip4b, Peers: []netip.Addr{r4b}},                                        // r4b only
		{Prefix: vip6, Peers: []netip.Addr{router4, router6}},                            // router6 (router4 is IPv4)
		{Prefix: netip.MustParsePrefix("198.19.250.3/32"), Peers: []netip.Addr{router6}}, // nobody
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[netip.Addr][]netip.Prefix{
		router4: {vip4b, netip.MustParsePrefix("198.19.250.3/32")},
		r4b:     {netip.MustParsePrefix("198.19.250.3/32")},
	}
	if d := cmp.Diff(want, exclusions(peers, routes), netipEqual); d != "" {
		t.Errorf("exclusions (-want +got):\n%s", d)
	}
}

func TestSymmetricDifference(t *testing.T) {
	got := symmetricDifference([]netip.Prefix{vip4, vip4b}, []netip.Prefix{vip4b, vip6})
	if d := cmp.Diff([]netip.Prefix{vip4, vip6}, got, netipEqual); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
}

func TestAPIPeer(t *testing.T) {
	c, err := Config{ASN: 64512, RouterID: node4}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	p := Peer{Session: config.Session{
		Address: router6, ASN: 64513, Port: 1179, HoldTime: 9 * time.Second, EBGPMultihop: 2,
		BFD: config.BFD{TransmitInterval: 300 * time.Millisecond, ReceiveInterval: 200 * time.Millisecond, Multiplier: 3},
	}, Password: "pw"}
	want := &api.Peer{
		Conf: &api.PeerConf{NeighborAddress: "2001:db8:fa::1", PeerAsn: 64513, LocalAsn: 64512, AuthPassword: "pw"},
		Timers: &api.Timers{Config: &api.TimersConfig{
			HoldTime: 9, KeepaliveInterval: 3, ConnectRetry: 2, IdleHoldTimeAfterReset: 1,
		}},
		Transport:    &api.Transport{RemotePort: 1179},
		EbgpMultihop: &api.EbgpMultihop{Enabled: true, MultihopTtl: 2},
		Bfd: &api.BfdPeerConfig{Enabled: true, DesiredMinimumTxInterval: 300000, RequiredMinimumReceive: 200000,
			DetectionMultiplier: 3},
		AfiSafis: []*api.AfiSafi{{Config: &api.AfiSafiConfig{
			Family: &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}, Enabled: true,
		}}},
	}
	if d := cmp.Diff(want, apiPeer(p, c, true), protocmp.Transform()); d != "" {
		t.Errorf("IPv6 peer with everything (-want +got):\n%s", d)
	}
	want = &api.Peer{
		Conf: &api.PeerConf{NeighborAddress: "198.18.250.1", PeerAsn: 64513, LocalAsn: 64512},
		Timers: &api.Timers{Config: &api.TimersConfig{
			HoldTime: 90, KeepaliveInterval: 30, ConnectRetry: 2, IdleHoldTimeAfterReset: 1,
		}},
		Transport: &api.Transport{RemotePort: 179},
		AfiSafis: []*api.AfiSafi{{Config: &api.AfiSafiConfig{
			Family: &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}, Enabled: true,
		}}},
	}
	if d := cmp.Diff(want, apiPeer(peer(router4, 64513), c, true), protocmp.Transform()); d != "" {
		t.Errorf("IPv4 peer with defaults (-want +got):\n%s", d)
	}
	if got := apiPeer(p, c, false); got.Bfd != nil {
		t.Errorf("BFD held back: %v", got.Bfd)
	}
}

func TestCommunities(t *testing.T) {
	tests := []struct {
		name  string
		r     Route
		gshut bool
		want  []uint32
	}{
		{name: "none", want: []uint32{}},
		{name: "kept in order", r: Route{Communities: []config.Community{65000<<16 | 2, 65000<<16 | 1}},
			want: []uint32{65000<<16 | 2, 65000<<16 | 1}},
		{name: "graceful shutdown added", r: Route{Communities: []config.Community{65000<<16 | 1}}, gshut: true,
			want: []uint32{65000<<16 | 1, 0xffff0000}},
		{name: "graceful shutdown not twice", r: Route{Communities: []config.Community{config.GracefulShutdown}},
			gshut: true, want: []uint32{0xffff0000}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if d := cmp.Diff(tt.want, communities(tt.r, tt.gshut)); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

func TestPath(t *testing.T) {
	r := Route{Prefix: vip6, Communities: []config.Community{65000<<16 | 1},
		LargeCommunities: []config.LargeCommunity{{Global: 64512, Local1: 1, Local2: 2}}, LocalPreference: 150}
	p, err := path(r, true)
	if err != nil {
		t.Fatal(err)
	}
	if p.Family != gobgp.RF_IPv6_UC || p.Nlri.String() != vip6.String() {
		t.Errorf("family %v, NLRI %v: want IPv6 unicast %v", p.Family, p.Nlri, vip6)
	}
	var got []string
	for _, a := range p.Attrs {
		got = append(got, a.String())
	}
	want := []string{
		"{Origin: i}", "{AsPath: }", "{MpReach(ipv6-unicast): {Nexthop: ::, NLRIs: [2001:db8:fb::1/128:0]}}",
		"{Communities: 65000:1, planned-shut}", "{LargeCommunity: [ 64512:1:2]}", "{LocalPref: 150}",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("attributes (-want +got):\n%s", d)
	}
	p, err = path(Route{Prefix: vip4}, false)
	if err != nil {
		t.Fatal(err)
	}
	got = nil
	for _, a := range p.Attrs {
		got = append(got, a.String())
	}
	if d := cmp.Diff([]string{"{Origin: i}", "{AsPath: }", "{Nexthop: 0.0.0.0}"}, got); d != "" {
		t.Errorf("IPv4 attributes (-want +got):\n%s", d)
	}
}

func TestHealth(t *testing.T) {
	c, err := Config{ASN: 1, RouterID: router4}.withDefaults() // StableAfter 3 s, RecoverAfter 10 s
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1000, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	up := func(since float64, bfd string) PeerStatus {
		return PeerStatus{Established: true, EstablishedAt: at(since), BFD: bfd}
	}
	down := func(bfd string) PeerStatus { return PeerStatus{State: "active", BFD: bfd} }
	idle := func(bfd string) PeerStatus { return PeerStatus{State: "idle", BFD: bfd} }
	type step struct {
		at      float64
		s       PeerStatus
		recover bool
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{name: "comes up in time", steps: []step{{1, down(""), false}, {5, up(4, ""), false}, {9.9, up(4, ""), false}, {30, up(4, ""), false}}},
		{name: "never comes up, with backoff", steps: []step{
			{5, down(""), false}, {10, down(""), true}, {29, down(""), false}, {30, down(""), true},
			{69, down(""), false}, {70, down(""), true}, {149, down(""), false}, {150, down(""), true}, {230, down(""), true},
		}},
		{name: "flaps: up but never stably", steps: []step{
			// BFD first seen up at 1 s starts the clock.
			{1, up(1, "up"), false}, {3, down("up"), false}, {5, up(5, "up"), false}, {7, down("up"), false},
			{10, up(10, "up"), false}, {10.9, down("up"), false}, {11, down("up"), true},
		}},
		{name: "established is never recovered", steps: []step{
			{9, up(8.5, ""), false}, {11, up(8.5, ""), false}, {11.4, down(""), true},
		}},
		{name: "BFD up again restarts the clock", steps: []step{
			{20, up(10, "up"), false}, {21, down("down"), false}, {29, down("down"), false},
			{30, down("up"), false}, {39.9, down("up"), false}, {40, down("up"), true},
		}},
		{name: "idle: recovered quickly, once", steps: []step{
			{0.5, idle("down"), false}, {2.4, idle("down"), false}, {2.5, idle("down"), true}, {3.5, down(""), false},
			{4, idle(""), false}, {12.4, idle(""), false}, {12.5, idle(""), true},
		}},
		{name: "quick recovery again once established", steps: []step{
			{1, idle(""), false}, {3, idle(""), true}, {4, up(4, ""), false}, {4.5, idle(""), false}, {6.5, idle(""), true},
		}},
		{name: "stably up resets the backoff", steps: []step{
			{10, down(""), true}, {20, up(15, ""), false}, {21, down(""), false}, {31, down(""), true},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &health{down: t0}
			for _, s := range tt.steps {
				if got, _ := h.observe(at(s.at), s.s, c); got != s.recover {
					t.Errorf("at %v s: recover %v, want %v", s.at, got, s.recover)
				}
			}
		})
	}
}

// TestEngineWithoutSessions runs GoBGP with passive peers (it connects to none, and listens
// on no BGP port) and routes restricted to some of them: configuring it all, changing it and
// stopping must work without a session.
func TestEngineWithoutSessions(t *testing.T) {
	logger, ctx := ktesting.NewTestContext(t)
	e, err := New(Config{ASN: 64512, RouterID: node4, Logger: logger,
		PollInterval: 50 * time.Millisecond, passive: true})
	if err != nil {
		t.Fatal(err)
	}
	// Set before Run: recorded, configured when Run starts.
	passive4 := Peer{Session: config.Session{Address: netip.MustParseAddr("198.18.250.1"), ASN: 64513}}
	if err := e.SetPeers(ctx, []Peer{passive4}); err != nil {
		t.Fatal(err)
	}
	if err := e.SetRoutes(ctx, []Route{{Prefix: vip4, Peers: []netip.Addr{router4}}, {Prefix: vip6}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- e.Run(ctx) }()
	stop := sync.OnceFunc(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	defer stop()
	passive6 := Peer{Session: config.Session{Address: netip.MustParseAddr("2001:db8:fa::1"), ASN: 64513}}
	steps := []struct {
		name   string
		peers  []Peer
		routes []Route
	}{
		{name: "peer added, route restricted to it", peers: []Peer{passive4, passive6},
			routes: []Route{{Prefix: vip4, Peers: []netip.Addr{passive4.Address}}, {Prefix: vip6, Peers: []netip.Addr{passive6.Address}}}},
		{name: "restriction changed", peers: []Peer{passive4, passive6},
			routes: []Route{{Prefix: vip4, Peers: []netip.Addr{router4}}, {Prefix: vip4b}, {Prefix: vip6}}},
		{name: "peer gone", peers: []Peer{passive6}, routes: []Route{{Prefix: vip4b}}},
	}
	for _, s := range steps {
		if err := e.SetPeers(ctx, s.peers); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if err := e.SetRoutes(ctx, s.routes); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
	}
	if err := e.SetGracefulShutdown(ctx, true); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		ps := e.Peers()
		if len(ps) == 1 && ps[0].Address == passive6.Address && ps[0].State != "unknown" {
			if ps[0].Established {
				t.Errorf("passive session established: %+v", ps[0])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("peers %+v: want %v's state", ps, passive6.Address)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := e.WithdrawAll(ctx); err != nil {
		t.Fatal(err)
	}
	stop()
	if ps := e.Peers(); len(ps) != 1 || ps[0].State != "unknown" {
		t.Errorf("peers after Run returned: %+v, want %v's state unknown", ps, passive6.Address)
	}
}

func TestMetrics(t *testing.T) {
	m := NewMetrics()
	reg := metrics.NewKubeRegistry()
	m.Register(reg.MustRegister)
	up4 := PeerStatus{Address: router4, Established: true, BFD: "up", PrefixesSent: 3}
	down4 := PeerStatus{Address: router4, Established: true, BFD: "down", PrefixesSent: 3}
	m.observe(PeerStatus{}, down4, false) // first seen: no change
	m.observe(down4, up4, false)
	m.observe(up4, down4, false)
	m.observe(down4, up4, false)
	m.observe(up4, up4, false)
	m.observe(PeerStatus{}, PeerStatus{Address: r4b, Established: true, PrefixesSent: 3}, false)
	m.observe(PeerStatus{}, PeerStatus{Address: router6, BFD: "down", PrefixesReceived: 7}, true)
	m.Withdrawn("released", 2)
	m.Withdrawn("released", 1)
	m.Withdrawn("no-local-endpoint", 4)
	m.Withdrawn("stopping", 0)
	m.recovered(router6)
	m.setRoutes(5)
	m.forget(r4b)
	want := `
# HELP onprem_lb_bgp_bfd_state_changes_total [ALPHA] Times the BFD session with the peer was seen to go up or down.
# TYPE onprem_lb_bgp_bfd_state_changes_total counter
onprem_lb_bgp_bfd_state_changes_total{peer="198.18.250.1"} 3
# HELP onprem_lb_bgp_bfd_up [ALPHA] 1 while the BFD session with the peer is up, else 0; peers with BFD only.
# TYPE onprem_lb_bgp_bfd_up gauge
onprem_lb_bgp_bfd_up{peer="198.18.250.1"} 1
onprem_lb_bgp_bfd_up{peer="2001:db8:fa::1"} 0
# HELP onprem_lb_bgp_prefixes_received [ALPHA] Routes the peer sent; the speaker rejects them all (installs and uses none).
# TYPE onprem_lb_bgp_prefixes_received gauge
onprem_lb_bgp_prefixes_received{peer="198.18.250.1"} 0
onprem_lb_bgp_prefixes_received{peer="2001:db8:fa::1"} 7
# HELP onprem_lb_bgp_prefixes_sent [ALPHA] Routes the peer has been sent.
# TYPE onprem_lb_bgp_prefixes_sent gauge
onprem_lb_bgp_prefixes_sent{peer="198.18.250.1"} 3
onprem_lb_bgp_prefixes_sent{peer="2001:db8:fa::1"} 0
# HELP onprem_lb_bgp_routes_advertised [ALPHA] Routes this node advertises (each to the peers it is for).
# TYPE onprem_lb_bgp_routes_advertised gauge
onprem_lb_bgp_routes_advertised 5
# HELP onprem_lb_bgp_session_recoveries_total [ALPHA] Times the peer was deleted and re-added because its session stayed down while it should come up.
# TYPE onprem_lb_bgp_session_recoveries_total counter
onprem_lb_bgp_session_recoveries_total{peer="2001:db8:fa::1"} 1
# HELP onprem_lb_bgp_session_resets_total [ALPHA] Established BGP sessions with the peer seen to go down, for any reason.
# TYPE onprem_lb_bgp_session_resets_total counter
onprem_lb_bgp_session_resets_total{peer="2001:db8:fa::1"} 1
# HELP onprem_lb_bgp_session_up [ALPHA] 1 while the BGP session with the peer is established, else 0.
# TYPE onprem_lb_bgp_session_up gauge
onprem_lb_bgp_session_up{peer="198.18.250.1"} 1
onprem_lb_bgp_session_up{peer="2001:db8:fa::1"} 0
# HELP onprem_lb_bgp_withdrawals_total [ALPHA] Routes this node stopped advertising, by reason.
# TYPE onprem_lb_bgp_withdrawals_total counter
onprem_lb_bgp_withdrawals_total{reason="no-local-endpoint"} 4
onprem_lb_bgp_withdrawals_total{reason="released"} 3
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	var nilMetrics *Metrics // counts nothing, and does not panic
	nilMetrics.observe(PeerStatus{}, PeerStatus{Address: router4}, true)
	nilMetrics.Withdrawn("released", 1)
	nilMetrics.recovered(router4)
	nilMetrics.forget(router4)
	nilMetrics.setRoutes(1)
}

func TestConfigRejects(t *testing.T) {
	for name, c := range map[string]Config{
		"no ASN":            {RouterID: node4},
		"IPv6 router ID":    {ASN: 1, RouterID: router6},
		"no router ID":      {ASN: 1},
		"idle hold in ms":   {ASN: 1, RouterID: node4, IdleHoldTimeAfterReset: 1500 * time.Millisecond},
		"connect retry 1 s": {ASN: 1, RouterID: node4, ConnectRetry: time.Second},
		"poll interval 2 s": {ASN: 1, RouterID: node4, PollInterval: 2 * time.Second},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := New(c); err == nil {
				t.Error("no error")
			}
		})
	}
}
