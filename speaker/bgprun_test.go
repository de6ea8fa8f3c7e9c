package speaker

import (
	"context"
	"errors"
	"io/fs"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/onprem-lb/onprem-lb/config"
	"github.com/onprem-lb/onprem-lb/speaker/bgp"
)

func TestBGPSpeakerSync(t *testing.T) {
	const peers = `
  peers:
  - {name: tor-a, address: 198.18.0.254, asn: 64513, passwordFile: /secret/tor-a}
  - {name: tor-b, address: 198.18.0.253, asn: 64513, nodeSelector: {matchLabels: {rack: b}}}
  - {name: tor-c, address: 198.18.0.252, asn: 64513, passwordFile: /secret/missing}
pools: [{name: routed, addresses: [198.18.2.0/24], announce: bgp}]
`
	parse := func(doc string) *config.Config {
		t.Helper()
		cfg, err := config.Parse("pools.yaml", []byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	self := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1", Labels: map[string]string{"rack": "a"}},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "198.18.0.11"}}}}
	s := newBGPSpeaker("node-1", nil, 3*time.Second)
	s.readFile = func(name string) ([]byte, error) {
		if name == "/secret/tor-a" {
			return []byte("s3cret\n"), nil
		}
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	ctx := context.Background()
	addrs := func() []netip.Addr {
		var out []netip.Addr
		for _, p := range s.engine.Peers() {
			out = append(out, p.Address)
		}
		return out
	}
	route := []bgp.Route{{Prefix: netip.MustParsePrefix("198.18.2.1/32")}}
	now := time.Unix(1000, 0)

	if _, err := s.sync(ctx, parse("pools: [{name: lan, addresses: [198.18.0.0/24]}]"), self, nil, now); err != nil || s.engine != nil {
		t.Fatalf("without a bgp section: engine %v, err %v; want none, nil", s.engine, err)
	}

	_, err := s.sync(ctx, parse("bgp:\n  asn: 64512\n"+peers), self, route, now)
	if err == nil || !strings.Contains(err.Error(), "tor-c") || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("sync with an unreadable password file: err %v, want one naming tor-c", err)
	}
	if s.engine == nil || s.global != (bgpGlobal{64512, netip.MustParseAddr("198.18.0.11")}) {
		t.Fatalf("engine %v with %+v, want one with ASN 64512 and the node's IPv4 as router ID", s.engine, s.global)
	}
	if v := s.view(); len(v.Sessions) != 1 || len(v.Routes) != 1 || v.Routes[0].Prefix != "198.18.2.1/32" || v.Sessions[0].State != "unknown" {
		t.Errorf("/announcements/bgp before the engine runs: %+v, want tor-a's session (unknown) and 198.18.2.1/32", v)
	}
	// tor-b is for rack b, tor-c has no password: only tor-a.
	if diff := cmp.Diff([]netip.Addr{netip.MustParseAddr("198.18.0.254")}, addrs(), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("peers (-want +got):\n%s", diff)
	}

	first := s.engine
	self.Labels["rack"] = "b"
	fixed := parse("bgp:\n  asn: 64512\n" + strings.Replace(peers, "/secret/missing", "/secret/tor-a", 1))
	if _, err := s.sync(ctx, fixed, self, route, now); err != nil {
		t.Fatal(err)
	}
	if s.engine != first {
		t.Error("peers changed: the engine was replaced, want the same engine (only those sessions change)")
	}
	if got := len(addrs()); got != 3 {
		t.Errorf("after the node moved to rack b and tor-c's password appeared: %d peers, want 3", got)
	}

	if _, err := s.sync(ctx, parse("bgp:\n  asn: 64520\n"+peers), self, route, now); err == nil || s.engine == first {
		t.Errorf("ASN changed: same engine %v (err %v), want a new one", s.engine == first, err)
	}

	self.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "2001:db8:18::11"}}
	if _, err := s.sync(ctx, parse("bgp:\n  asn: 64520\n"+peers), self, route, now); err == nil || !strings.Contains(err.Error(), "routerID") || s.engine != nil {
		t.Errorf("an IPv6-only node without bgp.routerID: engine %v, err %v; want none and an error saying to set bgp.routerID", s.engine, err)
	}
	if _, err := s.sync(ctx, parse("bgp:\n  asn: 64520\n  routerID: 198.18.0.99\n"+peers), self, route, now); s.engine == nil || s.global.routerID != netip.MustParseAddr("198.18.0.99") {
		t.Errorf("with bgp.routerID: engine %v with %+v (err %v), want the file's router ID", s.engine, s.global, err)
	}

	// The exclusion label: the routes stay, with GRACEFUL_SHUTDOWN, for the drain delay; the
	// controller is asked back when it ends.
	withRouterID := parse("bgp:\n  asn: 64520\n  routerID: 198.18.0.99\n" + peers)
	self.Labels[corev1.LabelNodeExcludeBalancers] = ""
	for _, step := range []struct {
		at   time.Duration
		want time.Duration
	}{{0, 3 * time.Second}, {time.Second, 2 * time.Second}, {3 * time.Second, 0}} {
		if wait, _ := s.sync(ctx, withRouterID, self, nil, now.Add(step.at)); wait != step.want {
			t.Errorf("excluded %v ago: come back in %v, want %v", step.at, wait, step.want)
		}
	}
	delete(self.Labels, corev1.LabelNodeExcludeBalancers)
	if wait, _ := s.sync(ctx, withRouterID, self, route, now.Add(4*time.Second)); wait != 0 || !s.excludedAt.IsZero() {
		t.Errorf("label removed: come back in %v, excluded since %v; want 0 and not excluded", wait, s.excludedAt)
	}
}
