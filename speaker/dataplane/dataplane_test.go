package dataplane

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func webService(eps ...Endpoint) Service {
	return Service{Namespace: "ns", Name: "web", VIPs: []netip.Addr{addr("198.18.0.10"), addr("2001:db8::10")},
		Ports: []Port{{Protocol: TCP, Port: 80, Endpoints: eps}}}
}

var (
	ep1 = Endpoint{IP: addr("10.0.0.1"), Port: 8080}
	ep2 = Endpoint{IP: addr("10.0.0.2"), Port: 8080}
	ep6 = Endpoint{IP: addr("fd00::1"), Port: 8080}
)

// chainsIn is the set of chains an iptables-restore input declares.
func chainsIn(input string) []string {
	var out []string
	for _, line := range strings.Split(input, "\n") {
		if strings.HasPrefix(line, ":") {
			name, _, _ := strings.Cut(line[1:], " ")
			out = append(out, name)
		}
	}
	return out
}

func TestSyncSendsOnlyChanges(t *testing.T) {
	k := newFakeKernel()
	d := New(Options{Runner: k, Logger: testLogger(t)})
	other := Service{Namespace: "ns", Name: "other", VIPs: []netip.Addr{addr("198.18.0.20")},
		Ports: []Port{{Protocol: TCP, Port: 80, Endpoints: []Endpoint{ep2}}}}

	if err := d.Sync([]Service{webService(ep1, ep6), other}); err != nil {
		t.Fatal(err)
	}
	if n := len(k.restores[IPv4]); n != 1 {
		t.Fatalf("first Sync: %d IPv4 restores, want 1", n)
	}
	// The same again: nothing sent.
	if err := d.Sync([]Service{webService(ep1, ep6), other}); err != nil {
		t.Fatal(err)
	}
	if n := len(k.restores[IPv4]) + len(k.restores[IPv6]); n != 2 {
		t.Errorf("unchanged Sync ran iptables-restore (%d restores in all, want 2)", n)
	}
	// web's IPv4 endpoints change: only its SVC chain, in IPv4 only.
	if err := d.Sync([]Service{webService(ep1, ep2, ep6), other}); err != nil {
		t.Fatal(err)
	}
	web := svcName("ns", "web", "tcp", 80)
	if diff := cmp.Diff([]string{web}, chainsIn(k.restores[IPv4][1])); diff != "" {
		t.Errorf("chains sent for an endpoint change (-want +got):\n%s", diff)
	}
	if n := len(k.restores[IPv6]); n != 1 {
		t.Errorf("an IPv4 endpoint change ran ip6tables-restore (%d restores)", n)
	}
	// other goes: its SVC chain and its (now empty) shards are deleted, the
	// dispatch chains rewritten.
	if err := d.Sync([]Service{webService(ep1, ep2, ep6)}); err != nil {
		t.Fatal(err)
	}
	last := k.restores[IPv4][len(k.restores[IPv4])-1]
	otherSVC := svcName("ns", "other", "tcp", 80)
	if !strings.Contains(last, "-X "+otherSVC+"\n") {
		t.Errorf("removing a Service did not delete its chain:\n%s", last)
	}
	if diff := cmp.Diff([]string{servicesChain, otherSVC, "ONPREM-LB-VIPS-14", firewallChain, "ONPREM-LB-FW-14"}, chainsIn(last)); diff != "" {
		t.Errorf("chains sent for a removed Service (-want +got):\n%s", diff)
	}
	if strings.Contains(k.saveAll(IPv4), otherSVC) {
		t.Errorf("%s still in the kernel", otherSVC)
	}
}

func TestSyncFailureKeepsPreviousState(t *testing.T) {
	k := newFakeKernel()
	m := NewMetrics()
	d := New(Options{Runner: k, Logger: testLogger(t), Metrics: m})
	if err := d.Sync([]Service{webService(ep1)}); err != nil {
		t.Fatal(err)
	}
	before := k.saveAll(IPv4)
	boom := errors.New("boom")
	k.failNext = boom
	err := d.Sync([]Service{webService(ep1, ep2)})
	if !errors.Is(err, boom) {
		t.Fatalf("Sync with a failing restore: %v, want it to wrap %v", err, boom)
	}
	if !strings.HasPrefix(err.Error(), "dataplane: ipv4: ") {
		t.Errorf("error %q lacks context", err)
	}
	if got := k.saveAll(IPv4); got != before {
		t.Errorf("a failed restore changed the kernel")
	}
	// The next Sync retries the whole diff.
	if err := d.Sync([]Service{webService(ep1, ep2)}); err != nil {
		t.Fatal(err)
	}
	last := k.restores[IPv4][len(k.restores[IPv4])-1]
	if !strings.Contains(last, "--to-destination 10.0.0.2:8080") {
		t.Errorf("retry did not send the change:\n%s", last)
	}
}

func TestResyncRepairsDrift(t *testing.T) {
	k := newFakeKernel()
	d := New(Options{Runner: k, Logger: testLogger(t)})
	d.repairDrift() // before any Sync: nothing
	if n := len(k.restores[IPv4]); n != 0 {
		t.Fatalf("Resync before Sync ran %d restores", n)
	}
	if err := d.Sync([]Service{webService(ep1)}); err != nil {
		t.Fatal(err)
	}
	want := k.saveAll(IPv4)
	web := svcName("ns", "web", "tcp", 80)
	for _, tt := range []struct {
		name  string
		drift func()
	}{
		{"dispatch chain flushed", func() { k.flush(IPv4, tableNAT, servicesChain) }},
		{"SVC chain changed", func() {
			k.flush(IPv4, tableNAT, web)
			k.insert(IPv4, tableNAT, web, "-A "+web+" -j ACCEPT")
		}},
		{"jump rule deleted", func() { k.flush(IPv4, tableNAT, "PREROUTING") }},
		{"stale chain of ours", func() {
			k.mu.Lock()
			k.fams[IPv4].restore("*nat\n:ONPREM-LB-SVC-STALE - [0:0]\n-A ONPREM-LB-SVC-STALE -j RETURN\nCOMMIT\n")
			k.mu.Unlock()
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d.repairDrift() // records the kernel's rendering
			tt.drift()
			d.repairDrift()
			if diff := cmp.Diff(want, k.saveAll(IPv4)); diff != "" {
				t.Errorf("after the resync (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFirstSyncRemovesLeftovers(t *testing.T) {
	k := newFakeKernel()
	d := New(Options{Runner: k, Logger: testLogger(t)})
	if err := d.Sync([]Service{webService(ep1), {Namespace: "ns", Name: "gone", VIPs: []netip.Addr{addr("198.18.0.99")},
		Ports: []Port{{Protocol: TCP, Port: 1, Endpoints: []Endpoint{ep1}}}}}); err != nil {
		t.Fatal(err)
	}
	// A new process (restart) wants less.
	d2 := New(Options{Runner: k, Logger: testLogger(t)})
	if err := d2.Sync([]Service{webService(ep1)}); err != nil {
		t.Fatal(err)
	}
	k2 := newFakeKernel()
	d3 := New(Options{Runner: k2, Logger: testLogger(t)})
	if err := d3.Sync([]Service{webService(ep1)}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(k2.saveAll(IPv4), k.saveAll(IPv4)); diff != "" {
		t.Errorf("after a restart, leftovers (-fresh +restarted):\n%s", diff)
	}
}

func TestCleanup(t *testing.T) {
	k := newFakeKernel()
	foreign := `-A PREROUTING -s 192.0.2.1/32 -m comment --comment "not ours" -j RETURN`
	k.insert(IPv4, tableNAT, "PREROUTING", foreign)
	for _, f := range families {
		addKubeProxyJumps(k, f)
	}
	before := [2]string{k.saveAll(IPv4), k.saveAll(IPv6)}
	d := New(Options{Runner: k, Logger: testLogger(t)})
	guarded := Service{Namespace: "ns", Name: "guarded", VIPs: []netip.Addr{addr("198.18.0.11"), addr("2001:db8::11")}, ProxiedElsewhere: true}
	if err := d.Sync([]Service{webService(ep1, ep6), guarded}); err != nil {
		t.Fatal(err)
	}
	if err := Cleanup(context.Background(), k); err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if diff := cmp.Diff(before[f], k.saveAll(f)); diff != "" {
			t.Errorf("%s after Cleanup (-before +after):\n%s", f, diff)
		}
	}
	// Idempotent.
	if err := Cleanup(context.Background(), k); err != nil {
		t.Fatal(err)
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	k := newFakeKernel()
	d := New(Options{Runner: k, Logger: testLogger(t), Resync: 1})
	if err := d.Sync([]Service{webService(ep1)}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- d.Run(ctx) }()
	// Let a few resyncs run concurrently with Syncs (-race).
	for range 20 {
		if err := d.Sync([]Service{webService(ep1, ep2)}); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	if !strings.Contains(k.saveAll(IPv4), "10.0.0.2:8080") {
		t.Errorf("rules gone after Run returned")
	}
}

// kubeProxyJumps are kube-proxy's (iptables mode) jumps in the filter built-in chains.
var kubeProxyJumps = map[string][]string{
	"INPUT": {
		`-A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES`,
	},
	"FORWARD": {
		`-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES`,
		`-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES`,
	},
}

// addKubeProxyJumps puts kube-proxy's jumps first in the filter chains, as kube-proxy does.
func addKubeProxyJumps(k *fakeKernel, f Family) {
	for chain, rules := range kubeProxyJumps {
		for i := len(rules) - 1; i >= 0; i-- {
			k.insert(f, tableFilter, chain, rules[i])
		}
	}
}

// TestGuardInManglePostrouting: the guard of a VIP kube-proxy forwards drops in mangle
// POSTROUTING, after every filter hook, so kube-proxy's own answer for a VIP it programmed
// (its REJECT of a Service without endpoints, in filter) comes first whatever the order of
// the jumps; filter holds nothing for the VIP.
func TestGuardInManglePostrouting(t *testing.T) {
	k := newFakeKernel()
	addKubeProxyJumps(k, IPv4)
	d := New(Options{Runner: k, Logger: testLogger(t)})
	guarded := Service{Namespace: "ns", Name: "web", VIPs: []netip.Addr{addr("198.18.0.10")}, ProxiedElsewhere: true}
	if err := d.Sync([]Service{guarded}); err != nil {
		t.Fatal(err)
	}
	save := k.saveAll(IPv4)
	for _, want := range []string{
		`-A POSTROUTING -m conntrack --ctstate NEW -m comment --comment "onprem-lb VIP guard" -j ONPREM-LB-GUARD`,
		`-A ONPREM-LB-GUARD -d 0.0.0.10/0.0.0.255 -j ONPREM-LB-GUARD-0A`,
		`-A ONPREM-LB-GUARD-0A -d 198.18.0.10/32 -m comment --comment "not forwarded by the service proxy" -j DROP`,
	} {
		if !strings.Contains(save, want+"\n") {
			t.Errorf("no %s in:\n%s", want, save)
		}
	}
	if strings.Contains(save, "ONPREM-LB-FW-0A") || strings.Contains(save, "ONPREM-LB-VIPS-0A") {
		t.Errorf("a guarded VIP has nat or filter rules:\n%s", save)
	}
}
