package lab_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/onprem-lb/onprem-lb/test/lab"
	"github.com/onprem-lb/onprem-lb/test/lab/labtest"
)

// The addresses the router test's peers advertise, from their lo.
var (
	vip4 = netip.MustParsePrefix("198.18.3.1/32")
	vip6 = netip.MustParsePrefix("2001:db8:1c::1/128")
)

// TestRouter proves the lab's upstream router against real BGP speakers: FRR's own bgpd and
// bfdd in two node namespaces, each advertising the same /32 and /128 from its lo, as the
// speaker will. The router installs one ECMP route per family over both nodes; a WAN client
// reaches the address through it, and its address is kept; a peer that stops cleanly or
// freezes (BFD) loses its next hop; and Stop leaves nothing behind.
func TestRouter(t *testing.T) {
	parent, logDir := t, filepath.Join(os.TempDir(), "onprem-lb-lab-logs", t.Name())
	l := labtest.Start(t, lab.Options{Nodes: 3, NoKubeProxy: true, Router: &lab.RouterOptions{}})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	r := l.Router
	client := r.Clients[0]

	t.Run("WAN clients route the lab through the router only", func(t *testing.T) {
		out, err := client.Exec(ctx, "ip", "-j", "route", "show", "default")
		if err != nil || out != "[]" && out != "" {
			t.Errorf("%s has a default route %s (err %v), want none", client.Name, out, err)
		}
		gateways := []netip.Addr{r.WANIPv4, r.WANIPv6}
		for k, prefix := range []netip.Prefix{netip.MustParsePrefix("198.18.0.0/15"), netip.MustParsePrefix("2001:db8::/32")} {
			hops, err := client.NextHops(ctx, prefix)
			if err != nil || !slices.Equal(hops, gateways[k:k+1]) {
				t.Errorf("%s routes %s via %v (err %v), want %v", client.Name, prefix, hops, err, gateways[k])
			}
		}
	})

	peers := map[string]*lab.FRR{}
	for _, n := range l.Nodes[:2] {
		for _, vip := range []netip.Prefix{vip4, vip6} {
			if _, err := n.Exec(ctx, "ip", "addr", "add", vip.String(), "dev", "lo"); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := l.StartBackend(ctx, n.Host); err != nil {
			t.Fatal(err)
		}
		p, err := l.StartFRR(ctx, n.NS, "peer-"+n.Name, peerConfig(n, r))
		if err != nil {
			t.Fatal(err)
		}
		peers[n.Name] = p
	}
	both := func(k int) []netip.Addr { return []netip.Addr{l.Nodes[0].Addrs()[k], l.Nodes[1].Addrs()[k]} }
	waitNextHops(ctx, t, r, vip4, both(0), 30*time.Second)
	waitNextHops(ctx, t, r, vip6, both(1), 30*time.Second)

	t.Run("BFD is up with both nodes, both families, at 100 ms x 3", func(t *testing.T) {
		waitBFDUp(ctx, t, r, append(both(0), both(1)...))
	})

	t.Run("a WAN client reaches both nodes through the ECMP route, its address kept", func(t *testing.T) {
		for k, vip := range []netip.Prefix{vip4, vip6} {
			addr := net.JoinHostPort(vip.Addr().String(), strconv.Itoa(lab.TCPPort))
			answered := map[string]bool{}
			// The router hashes flows over both paths; 40 connections from different source
			// ports miss one node with probability 2^-39.
			for i := 0; i < 40 && len(answered) < 2; i++ {
				reply, err := lab.GetTCP(ctx, client.NS, addr)
				if err != nil {
					t.Fatalf("connection %d to %s from %s: %v", i, addr, client.Name, err)
				}
				if got := reply.ClientIP(); got != client.Addrs()[k].String() {
					t.Errorf("%s saw client %s, want %s", reply.Pod, got, client.Addrs()[k])
				}
				answered[reply.Pod] = true
			}
			if !answered["node-1"] || !answered["node-2"] {
				t.Errorf("%s: answers from %v, want node-1 and node-2", addr, answered)
			}
		}
	})

	t.Run("a frozen node loses its next hop within BFD's detection time", func(t *testing.T) {
		n, peer := l.Nodes[1], peers["node-2"]
		var took []time.Duration
		thaw := func() {
			if err := lab.Plug(ctx, n.Host); err != nil {
				t.Error(err)
			}
			if err := peer.Signal(syscall.SIGCONT); err != nil {
				t.Error(err)
			}
		}
		for run := 0; run < 5; run++ {
			if err := peer.Signal(syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			if err := lab.Unplug(ctx, n.Host); err != nil {
				thaw()
				t.Fatal(err)
			}
			v4, err4 := r.WaitNextHops(ctx, vip4, both(0)[:1], 5*time.Second)
			_, err6 := r.WaitNextHops(ctx, vip6, both(1)[:1], 5*time.Second)
			thaw()
			if err := errors.Join(err4, err6); err != nil {
				t.Fatalf("run %d: %v", run+1, err)
			}
			took = append(took, v4)
			waitNextHops(ctx, t, r, vip4, both(0), 30*time.Second)
			waitNextHops(ctx, t, r, vip6, both(1), 30*time.Second)
			// A session whose BFD is not up yet would wait out its hold time.
			waitBFDUp(ctx, t, r, []netip.Addr{n.IPv4, n.IPv6})
		}
		sorted := slices.Clone(took)
		sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
		o := r.Options
		median := sorted[len(sorted)/2]
		t.Logf("figure: frozen node's next hop gone after %v (median of %d: %v), BFD %v x %d", median, len(took), took, o.BFDInterval, o.BFDMultiplier)
		// BFD detects in interval x multiplier; without it, the session waits out its hold
		// time, 3 s at the very least.
		if detect := o.BFDInterval * time.Duration(o.BFDMultiplier); median > detect+time.Second {
			t.Errorf("median %v, BFD detects in %v: BFD did not end the session", median, detect)
		}
	})

	t.Run("a peer that stops loses its next hop", func(t *testing.T) {
		began := time.Now()
		peers["node-2"].Stop(5 * time.Second)
		waitNextHops(ctx, t, r, vip4, both(0)[:1], 5*time.Second)
		waitNextHops(ctx, t, r, vip6, both(1)[:1], 5*time.Second)
		t.Logf("figure: stopped peer's next hops gone %v after SIGTERM", time.Since(began).Round(time.Millisecond))
	})

	t.Run("Stop removes the router, its clients and FRR's files", func(t *testing.T) {
		var daemons []string
		for _, f := range []*lab.FRR{r.FRR, peers["node-1"]} {
			for _, p := range []*lab.Process{f.Zebra, f.BFDd, f.BGPd} {
				daemons = append(daemons, fmt.Sprintf("/var/tmp/frr/%s.%d", strings.TrimPrefix(p.Name, f.Name+"-"), p.PID()))
			}
		}
		if parent.Failed() {
			if err := l.SaveLogs(logDir); err == nil {
				t.Logf("lab logs saved in %s", logDir)
			}
		}
		l.Stop()
		for _, ns := range []string{r.NS, client.NS} {
			if namespaces(t)[ns] {
				t.Errorf("namespace %s left after Stop", ns)
			}
		}
		for _, dir := range daemons {
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("FRR's %s left after Stop (stat: %v)", dir, err)
			}
		}
	})
}

// peerConfig is the FRR configuration of a node that advertises vip4 and vip6 to the router,
// over an IPv4 and an IPv6 session, with the router's BFD timers.
func peerConfig(n *lab.Node, r *lab.Router) lab.FRRConfig {
	var b strings.Builder
	fmt.Fprintf(&b, "router bgp %d\n bgp router-id %s\n no bgp ebgp-requires-policy\n no bgp default ipv4-unicast\n no bgp network import-check\n",
		r.Options.ClusterASN, n.IPv4)
	for _, a := range r.Addrs() {
		fmt.Fprintf(&b, " neighbor %s remote-as %d\n neighbor %s timers connect 1\n neighbor %s bfd profile lab\n", a, r.Options.ASN, a, a)
	}
	for k, af := range []string{"ipv4", "ipv6"} {
		fmt.Fprintf(&b, " address-family %s unicast\n  network %s\n  neighbor %s activate\n exit-address-family\n",
			af, []netip.Prefix{vip4, vip6}[k], r.Addrs()[k])
	}
	ms := r.Options.BFDInterval.Milliseconds()
	return lab.FRRConfig{
		BFDd: fmt.Sprintf("bfd\n profile lab\n  detect-multiplier %d\n  receive-interval %d\n  transmit-interval %d\n", r.Options.BFDMultiplier, ms, ms),
		BGPd: b.String(),
	}
}

// waitNextHops waits until the router's kernel routes prefix via exactly want, and returns
// how long that took.
func waitNextHops(ctx context.Context, t *testing.T, r *lab.Router, prefix netip.Prefix, want []netip.Addr, timeout time.Duration) time.Duration {
	t.Helper()
	took, err := r.WaitNextHops(ctx, prefix, want, timeout)
	if err != nil {
		out, _ := r.FRR.Vtysh(ctx, "show bgp summary", "show ip route", "show ipv6 route")
		t.Fatalf("%v\n%s", err, out)
	}
	return took
}

// waitBFDUp waits until the router's BFD sessions with every address of peers are up with
// the router's timers.
func waitBFDUp(ctx context.Context, t *testing.T, r *lab.Router, peers []netip.Addr) {
	t.Helper()
	if err := r.WaitBFDUp(ctx, peers, 10*time.Second); err != nil {
		t.Fatal(err)
	}
}
