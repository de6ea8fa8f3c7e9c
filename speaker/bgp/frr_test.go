package bgp

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/onprem-lb/onprem-lb/config"
	"github.com/onprem-lb/onprem-lb/test/lab"
	"github.com/onprem-lb/onprem-lb/test/lab/labtest"
)

const (
	routerASN = 64513
	nodeASN   = 64512
)

var (
	router4 = netip.MustParseAddr("198.18.250.1")
	router6 = netip.MustParseAddr("2001:db8:fa::1")
	node4   = netip.MustParseAddr("198.18.250.2")
	node6   = netip.MustParseAddr("2001:db8:fa::2")
	// The routes advertised: in TestFRR they only ever reach the router namespace's table.
	vip4  = netip.MustParsePrefix("198.19.250.1/32")
	vip4b = netip.MustParsePrefix("198.19.250.2/32")
	vip6  = netip.MustParsePrefix("2001:db8:fb::1/128")
)

// frrBed is the test bed of TestFRR: a router namespace running FRR and a node namespace
// running the engine, joined by a veth pair.
type frrBed struct {
	t              *testing.T
	router, node   string // namespaces
	frr            *lab.FRR
	engine         *helper
	peer4, peer6   Peer
	ctx            context.Context
	establishedAt0 map[netip.Addr]time.Time
}

// sh runs a command and fails the test if it fails.
func sh(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestFRR runs the engine against FRR (Debian's frr, test/deps.sh), as root, in network
// namespaces of its own, and measures what the package documentation promises.
func TestFRR(t *testing.T) {
	// Skips without root or FRR, but fails under CI=true (test/deps.sh installs FRR).
	labtest.NeedRoot(t, "ip", "vtysh", "/usr/lib/frr/zebra", "/usr/lib/frr/bfdd", "/usr/lib/frr/bgpd")
	if testing.Short() {
		t.Skip("takes a minute")
	}
	// The lab's router accepts any node of its subnet (bgp listen range): FRR then makes the
	// peer, and its BFD session, when the node connects, and deletes them when the session
	// goes down. With an explicit neighbor, FRR keeps them. Both must recover.
	t.Run("listen range", func(t *testing.T) { testFRR(t, "d", true) })
	t.Run("explicit neighbors", func(t *testing.T) { testFRR(t, "e", false) })
}

// testFRR runs the scenarios against FRR in namespaces obt-<pid>-<variant>r and ...n: all of
// them when FRR accepts the node by a listen range (dynamic), those of failures and recovery
// otherwise.
func testFRR(t *testing.T, variant string, dynamic bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Second)
	defer cancel()
	b := &frrBed{t: t, ctx: ctx,
		router: fmt.Sprintf("obt-%d-%sr", os.Getpid(), variant), node: fmt.Sprintf("obt-%d-%sn", os.Getpid(), variant)}
	b.createNetwork()
	dir, err := os.MkdirTemp("", "obt-bgp-")
	if err != nil {
		t.Fatal(err)
	}
	if os.Getenv("OBT_BGP_KEEP") != "" {
		t.Logf("keeping %s (OBT_BGP_KEEP)", dir)
	} else {
		t.Cleanup(func() { os.RemoveAll(dir) })
	}
	if err := os.Chmod(dir, 0o711); err != nil { // the daemons, user frr, must reach their directory
		t.Fatal(err)
	}
	b.frr, err = lab.RunFRR(ctx, dir, dir, b.router, "router", routerConf(dynamic))
	if err != nil {
		t.Fatal(err)
	}
	if os.Getenv("OBT_BGP_DEBUG") != "" {
		if _, err := b.frr.Vtysh(ctx, "configure terminal", "log stdout debugging", "debug bfd peer", "debug bfd network", "debug bgp bfd", "debug bgp neighbor-events"); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("FRR's bgpd log ends with:\n%s", b.frr.BGPd.Tail(30))
		}
		b.frr.Stop(5 * time.Second)
		lab.RemoveFRRLeftovers(dir)
	})
	bfd := config.BFD{TransmitInterval: 300 * time.Millisecond, ReceiveInterval: 300 * time.Millisecond, Multiplier: 3}
	b.peer4 = Peer{Session: config.Session{Address: router4, ASN: routerASN, HoldTime: 9 * time.Second, BFD: bfd}}
	b.peer6 = Peer{Session: config.Session{Address: router6, ASN: routerASN, HoldTime: 9 * time.Second, BFD: bfd}}

	start := time.Now()
	b.engine = startHelper(t, b.node, nodeASN, node4, filepath.Join(dir, "engine.log"))
	b.do(helperRequest{Op: "peers", Peers: []Peer{b.peer4, b.peer6}})

	steps := []struct {
		name     string
		f        func(t *testing.T)
		failures bool // one of the scenarios of failures and recovery
	}{
		{"sessions up", func(t *testing.T) { b.sessionsUp(t, start) }, true},
		{"routes", b.routes, true},
		{"one peer changed", b.onePeerChanged, false},
		{"route for some peers", b.routePeers, false},
		{"routes from the router ignored", b.routesFromRouter, false},
		{"wrong ASN, then a password the router lacks", b.badPeer, false},
		{"frozen speaker", b.frozen, true},
		{"BFD dropped by the router", b.bfdDropped, true},
		{"10000 routes", b.manyRoutes, false},
		{"graceful shutdown", b.gracefulShutdown, false},
	}
	for _, s := range steps {
		if !dynamic && !s.failures {
			continue
		}
		if !t.Run(s.name, s.f) {
			break // the bed is in an unknown state
		}
	}
}

// createNetwork makes the two namespaces and the veth pair, deleted by t's cleanup.
func (b *frrBed) createNetwork() {
	t := b.t
	for _, ns := range []string{b.router, b.node} {
		sh(t, "ip", "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	}
	sh(t, "ip", "-n", b.router, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", b.node)
	for ns, addrs := range map[string][]netip.Addr{b.router: {router4, router6}, b.node: {node4, node6}} {
		sh(t, "ip", "-n", ns, "link", "set", "lo", "up")
		sh(t, "ip", "-n", ns, "addr", "add", addrs[0].String()+"/24", "dev", "eth0")
		sh(t, "ip", "-n", ns, "addr", "add", addrs[1].String()+"/64", "dev", "eth0", "nodad")
		sh(t, "ip", "-n", ns, "link", "set", "eth0", "up")
	}
}

// routerConf is FRR's configuration, the lab router's: the node's addresses as eBGP
// neighbours (dynamic: any address of the subnets) with BFD at 300 ms x 3.
func routerConf(dynamic bool) lab.FRRConfig {
	nodes := []netip.Prefix{netip.MustParsePrefix("198.18.250.0/24"), netip.MustParsePrefix("2001:db8:fa::/64")}
	if !dynamic {
		nodes = []netip.Prefix{netip.PrefixFrom(node4, 32), netip.PrefixFrom(node6, 128)}
	}
	return lab.FRRConfig{
		BFDd: lab.BFDProfile("nodes", 300*time.Millisecond, 3),
		BGPd: lab.RouterBGPConfig(routerASN, router4, nodeASN, nodes),
	}
}

// do sends req to the engine, failing the test on an error.
func (b *frrBed) do(req helperRequest) []PeerStatus {
	b.t.Helper()
	ps, err := b.engine.do(req)
	if err != nil {
		b.t.Fatalf("%s: %v", req.Op, err)
	}
	return ps
}

// status returns the engine's view of the sessions.
func (b *frrBed) status(t *testing.T) map[netip.Addr]PeerStatus {
	ps, err := b.engine.do(helperRequest{Op: "status"})
	if err != nil {
		t.Fatal(err)
	}
	m := map[netip.Addr]PeerStatus{}
	for _, p := range ps {
		m[p.Address] = p
	}
	return m
}

// waitFor polls cond every 20 ms until it holds, and returns how long that took; it fails
// the test after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, error)) time.Duration {
	t.Helper()
	start := time.Now()
	var last error
	for {
		ok, err := cond()
		if ok {
			return time.Since(start)
		}
		last = err
		if time.Since(start) > timeout {
			t.Fatalf("%s: not after %v (last error: %v)", what, timeout, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// figure logs a measured figure.
func figure(t *testing.T, what string, d time.Duration) {
	t.Helper()
	t.Logf("FIGURE %s: %v", what, d.Round(time.Millisecond))
}

// established waits until the engine's sessions with every peer of addrs are established.
func (b *frrBed) established(t *testing.T, timeout time.Duration, addrs ...netip.Addr) time.Duration {
	t.Helper()
	return waitFor(t, timeout, fmt.Sprintf("sessions with %v established", addrs), func() (bool, error) {
		st := b.status(t)
		for _, a := range addrs {
			if !st[a].Established {
				return false, fmt.Errorf("%v: %+v", a, st[a])
			}
		}
		return true, nil
	})
}

// nextHops returns the router's next hops for prefix.
func (b *frrBed) nextHops(prefix netip.Prefix) ([]netip.Addr, error) {
	return lab.NextHops(b.ctx, b.router, prefix)
}

// via waits until the router routes prefix via the node's address of its family, or has no
// route for it (want false).
func (b *frrBed) via(t *testing.T, timeout time.Duration, prefix netip.Prefix, want bool) time.Duration {
	t.Helper()
	node := node4
	if prefix.Addr().Is6() {
		node = node6
	}
	return waitFor(t, timeout, fmt.Sprintf("route %v via the node: %v", prefix, want), func() (bool, error) {
		hops, err := b.nextHops(prefix)
		if err != nil {
			return false, err
		}
		if want {
			return slices.Equal(hops, []netip.Addr{node}), fmt.Errorf("next hops %v", hops)
		}
		return len(hops) == 0, fmt.Errorf("next hops %v", hops)
	})
}

// frrNeighbor is a neighbor in FRR's `show bgp neighbors json`.
type frrNeighbor struct {
	State       string `json:"bgpState"`
	Established int    `json:"connectionsEstablished"`
	// Since is when the session came up, in seconds since the epoch: FRR computes it from
	// the uptime, so it may differ by one from one call to the next.
	Since int64 `json:"bgpTimerUpEstablishedEpoch"`
}

func abs(i int64) int64 { return max(i, -i) }

func (b *frrBed) neighbors(t *testing.T) map[string]frrNeighbor {
	t.Helper()
	out, err := b.frr.Vtysh(b.ctx, "show bgp neighbors json")
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]frrNeighbor
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	return m
}

// bfdUp waits until FRR's BFD sessions with both node addresses are up.
func (b *frrBed) bfdUp(t *testing.T, timeout time.Duration) time.Duration {
	t.Helper()
	return waitFor(t, timeout, "FRR's BFD sessions up", func() (bool, error) {
		peers, err := b.frr.BFDPeers(b.ctx)
		if err != nil {
			return false, err
		}
		up := 0
		for _, p := range peers {
			if p.Status == "up" && (p.Peer == node4 || p.Peer == node6) {
				up++
			}
		}
		return up == 2, fmt.Errorf("BFD peers %+v", peers)
	})
}

func (b *frrBed) sessionsUp(t *testing.T, start time.Time) {
	b.established(t, 20*time.Second, router4, router6)
	figure(t, "engine start to both sessions established", time.Since(start))
	first := b.status(t)
	b.bfdUp(t, 20*time.Second)
	figure(t, "engine start to both BFD sessions up (FRR's view, 300 ms x 3)", time.Since(start))
	waitFor(t, 30*time.Second, "both sessions established for 3 s", func() (bool, error) {
		st := b.status(t)
		for _, a := range []netip.Addr{router4, router6} {
			if !st[a].Established || time.Since(st[a].EstablishedAt) < 3*time.Second {
				return false, fmt.Errorf("%+v", st)
			}
		}
		return true, nil
	})
	for a, s := range b.status(t) {
		if s.BFD != "up" {
			t.Errorf("engine's BFD session with %v: %q, want up", a, s.BFD)
		}
		if !s.EstablishedAt.Equal(first[a].EstablishedAt) {
			t.Errorf("session with %v reset after it came up: %+v, then %+v", a, first[a], s)
		}
		t.Logf("engine's view of %v: %+v", a, s)
	}
}

func (b *frrBed) routes(t *testing.T) {
	start := time.Now()
	b.do(helperRequest{Op: "routes", Routes: []Route{{Prefix: vip4}, {Prefix: vip6}}})
	b.via(t, 10*time.Second, vip4, true)
	b.via(t, 10*time.Second, vip6, true)
	figure(t, "SetRoutes to IPv4 /32 and IPv6 /128 in the router's kernel table", time.Since(start))
	before := b.neighbors(t)
	engineBefore := b.status(t)

	start = time.Now()
	b.do(helperRequest{Op: "routes", Routes: []Route{{Prefix: vip4}}})
	d := b.via(t, 10*time.Second, vip6, false)
	figure(t, "SetRoutes without the IPv6 route to its withdrawal from the router's table", d)
	if d > 3*time.Second {
		t.Errorf("withdrawal took %v, want about a second at most", d)
	}
	if _, err := b.nextHops(vip4); err != nil {
		t.Fatal(err)
	}
	b.via(t, time.Second, vip4, true)
	b.notReset(t, before, engineBefore, router4, router6)
	b.do(helperRequest{Op: "routes", Routes: []Route{{Prefix: vip4}, {Prefix: vip6}}})
	b.via(t, 10*time.Second, vip6, true)
}

// notReset fails the test if a session with any of peers was reset since FRR's neighbors
// and the engine's status were before and engineBefore.
func (b *frrBed) notReset(t *testing.T, before map[string]frrNeighbor, engineBefore map[netip.Addr]PeerStatus, peers ...netip.Addr) {
	t.Helper()
	after := b.neighbors(t)
	engineAfter := b.status(t)
	node := map[netip.Addr]netip.Addr{router4: node4, router6: node6}
	for _, p := range peers {
		n := node[p].String()
		if b, a := before[n], after[n]; a.State != b.State || a.Established != b.Established || abs(a.Since-b.Since) > 1 {
			t.Errorf("FRR's session with %s reset: %+v, then %+v", n, b, a)
		}
		if !engineAfter[p].Established || !engineAfter[p].EstablishedAt.Equal(engineBefore[p].EstablishedAt) {
			t.Errorf("engine's session with %v reset: %+v, then %+v", p, engineBefore[p], engineAfter[p])
		}
	}
}

func (b *frrBed) onePeerChanged(t *testing.T) {
	before := b.neighbors(t)
	engineBefore := b.status(t)
	changed := b.peer6
	changed.HoldTime = 12 * time.Second
	b.do(helperRequest{Op: "peers", Peers: []Peer{b.peer4, changed}})
	b.peer6 = changed
	d := waitFor(t, 20*time.Second, "the changed session re-established", func() (bool, error) {
		s := b.status(t)[router6]
		return s.Established && !s.EstablishedAt.Equal(engineBefore[router6].EstablishedAt), fmt.Errorf("%+v", s)
	})
	figure(t, "SetPeers with a changed peer to its session re-established", d)
	after := b.neighbors(t)
	// A session of a listen range is a new peer each time: its count of sessions stays 1.
	if n := node6.String(); after[n].Established <= before[n].Established && after[n].Since < before[n].Since+2 {
		t.Errorf("FRR's session with %s not reset: %+v, then %+v", n, before[n], after[n])
	}
	b.notReset(t, before, engineBefore, router4)
	b.via(t, 10*time.Second, vip6, true)
}

func (b *frrBed) routePeers(t *testing.T) {
	before := b.neighbors(t)
	engineBefore := b.status(t)
	nobody := netip.MustParseAddr("198.18.250.99")
	// A route for another peer only: the router must not get it.
	b.do(helperRequest{Op: "routes", Routes: []Route{{Prefix: vip4}, {Prefix: vip6}, {Prefix: vip4b, Peers: []netip.Addr{nobody}}}})
	b.via(t, 5*time.Second, vip4, true)
	time.Sleep(time.Second) // long enough for the route to arrive, were it sent
	if hops, err := b.nextHops(vip4b); err != nil || len(hops) > 0 {
		t.Errorf("route for %v only: the router has it via %v (%v)", nobody, hops, err)
	}
	// The same route for the router too: re-sent without a reset.
	b.do(helperRequest{Op: "routes", Routes: []Route{{Prefix: vip4}, {Prefix: vip6}, {Prefix: vip4b, Peers: []netip.Addr{nobody, router4}}}})
	figure(t, "route's peers extended to the router to the route in its table", b.via(t, 10*time.Second, vip4b, true))
	b.do(helperRequest{Op: "routes", Routes: []Route{{Prefix: vip4}, {Prefix: vip6}, {Prefix: vip4b, Peers: []netip.Addr{nobody}}}})
	figure(t, "route's peers without the router to its withdrawal", b.via(t, 10*time.Second, vip4b, false))
	b.notReset(t, before, engineBefore, router4, router6)
	b.do(helperRequest{Op: "routes", Routes: []Route{{Prefix: vip4}, {Prefix: vip6}}})
}

// routesFromRouter: the router sends the node routes of both families; the engine counts
// them, installs none in the node's table, and no session is reset.
func (b *frrBed) routesFromRouter(t *testing.T) {
	before, engineBefore := b.neighbors(t), b.status(t)
	sent := []netip.Prefix{netip.MustParsePrefix("198.18.251.0/24"), netip.MustParsePrefix("2001:db8:fb::/64")}
	network := func(no string) {
		t.Helper()
		if _, err := b.frr.Vtysh(b.ctx, "configure terminal", fmt.Sprintf("router bgp %d", routerASN), "no bgp network import-check",
			"address-family ipv4 unicast", no+"network "+sent[0].String(), "exit-address-family",
			"address-family ipv6 unicast", no+"network "+sent[1].String(), "exit-address-family"); err != nil {
			t.Fatal(err)
		}
	}
	network("")
	defer network("no ")
	waitFor(t, 10*time.Second, "the routes the router sends counted", func() (bool, error) {
		st := b.status(t)
		return st[router4].PrefixesReceived >= 1 && st[router6].PrefixesReceived >= 1, nil
	})
	for _, p := range sent {
		if hops, err := lab.NextHops(b.ctx, b.node, p); err != nil || len(hops) > 0 {
			t.Errorf("the node's table has %v via %v (%v), want no route", p, hops, err)
		}
	}
	b.via(t, 5*time.Second, vip4, true)
	b.notReset(t, before, engineBefore, router4, router6)
}

// badPeer: the IPv4 peer configured with a wrong ASN, then with a password the router does
// not have, never comes up and leaves the IPv6 session alone; set right again, it comes
// back within seconds.
func (b *frrBed) badPeer(t *testing.T) {
	wrongASN, password := b.peer4, b.peer4
	wrongASN.ASN = routerASN + 100
	password.Password = "not-the-routers"
	for _, bad := range []struct {
		name string
		peer Peer
	}{{"wrong ASN", wrongASN}, {"password", password}} {
		before, engineBefore := b.neighbors(t), b.status(t)
		b.do(helperRequest{Op: "peers", Peers: []Peer{bad.peer, b.peer6}})
		b.via(t, 10*time.Second, vip4, false)
		time.Sleep(3 * time.Second) // long enough to come up, were it right
		if s := b.status(t)[router4]; s.Established {
			t.Errorf("%s: the IPv4 session is up: %+v", bad.name, s)
		}
		b.notReset(t, before, engineBefore, router6)
		b.do(helperRequest{Op: "peers", Peers: []Peer{b.peer4, b.peer6}})
		figure(t, bad.name+" corrected to the route back in the router", b.via(t, 30*time.Second, vip4, true))
	}
}

func (b *frrBed) frozen(t *testing.T) {
	b.bfdUp(t, 10*time.Second)
	pid := b.engine.cmd.Process.Pid
	start := time.Now()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := true
	defer func() {
		if stopped {
			syscall.Kill(pid, syscall.SIGCONT)
		}
	}()
	d := b.via(t, 10*time.Second, vip4, false)
	figure(t, "speaker frozen (SIGSTOP) to its route gone from the router (BFD 300 ms x 3)", d)
	if d > 3*time.Second {
		t.Errorf("the router kept the frozen speaker's route for %v, want about a second", d)
	}
	time.Sleep(2*time.Second - time.Since(start))
	start = time.Now()
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	stopped = false
	b.via(t, 30*time.Second, vip4, true)
	b.via(t, 30*time.Second, vip6, true)
	figure(t, "speaker thawed (SIGCONT) after 2 s frozen to its routes back on the router", time.Since(start))
	b.established(t, 10*time.Second, router4, router6)
	figure(t, "speaker thawed to both sessions established", time.Since(start))
	b.bfdUp(t, 10*time.Second)
	figure(t, "speaker thawed to both BFD sessions up (FRR's view)", time.Since(start))
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("recovery took %v, want a few seconds", d)
	}
	recoveries := 0
	for _, s := range b.status(t) {
		recoveries += s.Recoveries
	}
	t.Logf("engine recoveries (delete and re-add) so far: %d", recoveries)
	t.Logf("engine's view: %+v", b.status(t))
}

func (b *frrBed) bfdDropped(t *testing.T) {
	rules := [][]string{
		{"iptables", "-p", "udp", "--dport", "3784", "-j", "DROP"},
		{"ip6tables", "-p", "udp", "--dport", "3784", "-j", "DROP"},
	}
	iptables := func(op string, r []string) error {
		args := append([]string{"netns", "exec", b.router, r[0], "-w", op, "INPUT"}, r[1:]...)
		out, err := exec.Command("ip", args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	}
	b.bfdUp(t, 10*time.Second)
	recoveriesBefore := 0
	for _, s := range b.status(t) {
		recoveriesBefore += s.Recoveries
	}
	start := time.Now()
	for _, r := range rules {
		if err := iptables("-I", r); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { iptables("-D", r) })
	}
	d := b.via(t, 10*time.Second, vip4, false)
	figure(t, "router drops BFD packets to the route withdrawn", d)
	time.Sleep(2*time.Second - time.Since(start))
	for _, r := range rules {
		if err := iptables("-D", r); err != nil {
			t.Fatal(err)
		}
	}
	start = time.Now()
	b.via(t, 30*time.Second, vip4, true)
	b.via(t, 30*time.Second, vip6, true)
	figure(t, "BFD let through again (after 2 s) to the routes back on the router", time.Since(start))
	b.established(t, 10*time.Second, router4, router6)
	b.bfdUp(t, 10*time.Second)
	d = time.Since(start)
	figure(t, "BFD let through again to sessions established and BFD up", d)
	if d > 20*time.Second {
		t.Errorf("recovery took %v, want a few seconds", d)
	}
	// Stays up: no stale reset (osrg/gobgp#3561) tears the new sessions down.
	time.Sleep(3 * time.Second)
	recoveries := 0
	for a, s := range b.status(t) {
		if !s.Established {
			t.Errorf("session with %v down again 3 s later: %+v", a, s)
		}
		recoveries += s.Recoveries
	}
	t.Logf("engine recoveries (delete and re-add) during the test: %d", recoveries-recoveriesBefore)
	t.Logf("engine's view: %+v", b.status(t))
}

func (b *frrBed) manyRoutes(t *testing.T) {
	const n = 10000
	routes := []Route{{Prefix: vip4}, {Prefix: vip6}}
	base := netip.MustParseAddr("198.19.0.1").As4()
	for i := range n {
		a := base
		a[2] += byte(i / 250)
		a[3] = byte(1 + i%250)
		routes = append(routes, Route{Prefix: netip.PrefixFrom(netip.AddrFrom4(a), 32)})
	}
	count := func() (int, error) {
		out, err := exec.Command("ip", "-n", b.router, "-4", "route", "show", "proto", "bgp").Output()
		if err != nil {
			return 0, err
		}
		return strings.Count(string(out), "\n"), nil
	}
	start := time.Now()
	b.do(helperRequest{Op: "routes", Routes: routes})
	figure(t, "SetRoutes of 10000 IPv4 routes returned", time.Since(start))
	waitFor(t, 60*time.Second, "10001 IPv4 routes in the router's table", func() (bool, error) {
		c, err := count()
		return c == n+1, fmt.Errorf("%d routes (%v)", c, err)
	})
	figure(t, "SetRoutes of 10000 IPv4 routes to all in the router's kernel table", time.Since(start))
	start = time.Now()
	b.do(helperRequest{Op: "routes", Routes: routes[:2]})
	waitFor(t, 60*time.Second, "1 IPv4 route left in the router's table", func() (bool, error) {
		c, err := count()
		return c == 1, fmt.Errorf("%d routes (%v)", c, err)
	})
	figure(t, "SetRoutes withdrawing 10000 IPv4 routes to all gone from the router's kernel table", time.Since(start))
}

func (b *frrBed) gracefulShutdown(t *testing.T) {
	start := time.Now()
	b.do(helperRequest{Op: "gshut"})
	d := waitFor(t, 10*time.Second, "the router sees GRACEFUL_SHUTDOWN on "+vip4.String(), func() (bool, error) {
		out, err := b.frr.Vtysh(b.ctx, "show bgp ipv4 unicast "+vip4.String()+" json")
		if err != nil {
			return false, err
		}
		return strings.Contains(out, "gshut") || strings.Contains(out, "graceful-shutdown") || strings.Contains(out, "65535:0"),
			fmt.Errorf("%s", out)
	})
	figure(t, "GracefulShutdown to the router seeing 65535:0", d)
	_ = start
	out, _ := b.frr.Vtysh(b.ctx, "show bgp ipv4 unicast "+vip4.String()+" json")
	t.Logf("router's view of %v: %s", vip4, out)
}
