package dataplane

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/klog/v2"
	"k8s.io/klog/v2/textlogger"

	"github.com/onprem-lb/onprem-lb/test/lab/labtest"
)

// The real-kernel tests build this, in network namespaces named
// olbt-dp-<pid>-<role>, with addresses only in 198.18.96.0/24 and
// 2001:db8:96::/64 and no default route:
//
//	cli  (.2 and .3, ::1:2 and ::1:3) ── node (.1, ::1:1)
//	                                      node (.17, ::2:1) ── b1 (.18, ::2:2), a local endpoint
//	                                      node (.33, ::3:1) ── b2 (.34, ::3:2), a remote one
//
// The node runs the Dataplane. The VIPs (198.18.96.192/26,
// 2001:db8:96::a:0/112) are routed to it from cli, and on the node to a
// veth whose peer is down the sink (as a default route would), so traffic that is not DNATed
// goes through filter FORWARD. b1 and b2 run a TCP server on :8080 that
// answers "<name> <client address>".
type testbed struct {
	node, cli, b1, b2 string // namespace names
}

type famAddrs struct {
	cliIn, cliOut netip.Addr // a client inside and one outside the source ranges
	b1, b2        netip.Addr
	nodeB1        netip.Addr // the node's address toward b1 (masquerade source)
	nodeB2        netip.Addr
	vipBase       netip.Addr // VIPs are vipBase+0, +1, ...
}

var testAddrs = map[Family]famAddrs{
	IPv4: {
		cliIn: netip.MustParseAddr("198.18.96.2"), cliOut: netip.MustParseAddr("198.18.96.3"),
		b1: netip.MustParseAddr("198.18.96.18"), b2: netip.MustParseAddr("198.18.96.34"),
		nodeB1: netip.MustParseAddr("198.18.96.17"), nodeB2: netip.MustParseAddr("198.18.96.33"),
		vipBase: netip.MustParseAddr("198.18.96.200"),
	},
	IPv6: {
		cliIn: netip.MustParseAddr("2001:db8:96::1:2"), cliOut: netip.MustParseAddr("2001:db8:96::1:3"),
		b1: netip.MustParseAddr("2001:db8:96::2:2"), b2: netip.MustParseAddr("2001:db8:96::3:2"),
		nodeB1: netip.MustParseAddr("2001:db8:96::2:1"), nodeB2: netip.MustParseAddr("2001:db8:96::3:1"),
		vipBase: netip.MustParseAddr("2001:db8:96::a:c8"),
	},
}

func vip(f Family, i int) netip.Addr {
	a := testAddrs[f].vipBase
	for range i {
		a = a.Next()
	}
	return a
}

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func nsRun(t testing.TB, ns string, args ...string) string {
	t.Helper()
	return run(t, "ip", append([]string{"netns", "exec", ns}, args...)...)
}

// newNamespaces makes namespaces olbt-dp-<pid>-<tag>-<role>, removed in
// t.Cleanup.
func newNamespaces(t testing.TB, tag string, roles ...string) []string {
	t.Helper()
	var names []string
	for _, r := range roles {
		ns := fmt.Sprintf("olbt-dp-%d-%s-%s", os.Getpid(), tag, r)
		run(t, "ip", "netns", "add", ns)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
		nsRun(t, ns, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
		run(t, "ip", "-n", ns, "link", "set", "lo", "up")
		names = append(names, ns)
	}
	return names
}

func newTestbed(t *testing.T) testbed {
	t.Helper()
	ns := newNamespaces(t, "fw", "node", "cli", "b1", "b2")
	tb := testbed{node: ns[0], cli: ns[1], b1: ns[2], b2: ns[3]}
	// No ICMP rate limits: every rejected SYN is answered at once.
	nsRun(t, tb.node, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1", "net.ipv4.icmp_ratelimit=0", "net.ipv6.icmp.ratelimit=0")
	type link struct {
		peer, nodeDev, peerDev string
		nodeAddrs, peerAddrs   []string
	}
	for _, l := range []link{
		{tb.cli, "dpc", "eth0", []string{"198.18.96.1/28", "2001:db8:96::1:1/112"}, []string{"198.18.96.2/28", "198.18.96.3/28", "2001:db8:96::1:2/112", "2001:db8:96::1:3/112"}},
		{tb.b1, "dpb1", "eth0", []string{"198.18.96.17/28", "2001:db8:96::2:1/112"}, []string{"198.18.96.18/28", "2001:db8:96::2:2/112"}},
		{tb.b2, "dpb2", "eth0", []string{"198.18.96.33/28", "2001:db8:96::3:1/112"}, []string{"198.18.96.34/28", "2001:db8:96::3:2/112"}},
	} {
		run(t, "ip", "link", "add", l.nodeDev, "netns", tb.node, "type", "veth", "peer", "name", l.peerDev, "netns", l.peer)
		for _, a := range l.nodeAddrs {
			run(t, "ip", "-n", tb.node, "addr", "add", a, "dev", l.nodeDev, "nodad")
		}
		for _, a := range l.peerAddrs {
			run(t, "ip", "-n", l.peer, "addr", "add", a, "dev", l.peerDev, "nodad")
		}
		run(t, "ip", "-n", tb.node, "link", "set", l.nodeDev, "up")
		run(t, "ip", "-n", l.peer, "link", "set", l.peerDev, "up")
	}
	// Routes: cli sends the VIPs to the node; the backends send the test
	// /24 and /64 back through it; the node has the VIPs on a dummy.
	run(t, "ip", "-n", tb.cli, "route", "add", "198.18.96.192/26", "via", "198.18.96.1")
	run(t, "ip", "-n", tb.cli, "-6", "route", "add", "2001:db8:96::a:0/112", "via", "2001:db8:96::1:1")
	// And b1 itself, for traffic through the node that is not to a VIP.
	run(t, "ip", "-n", tb.cli, "route", "add", "198.18.96.16/28", "via", "198.18.96.1")
	run(t, "ip", "-n", tb.cli, "-6", "route", "add", "2001:db8:96::2:0/112", "via", "2001:db8:96::1:1")
	for _, b := range []struct{ ns, via4, via6 string }{{tb.b1, "198.18.96.17", "2001:db8:96::2:1"}, {tb.b2, "198.18.96.33", "2001:db8:96::3:1"}} {
		run(t, "ip", "-n", b.ns, "route", "add", "198.18.96.0/24", "via", b.via4)
		run(t, "ip", "-n", b.ns, "-6", "route", "add", "2001:db8:96::/64", "via", b.via6)
	}
	run(t, "ip", "-n", tb.node, "link", "add", "dpvips", "type", "veth", "peer", "name", "dpsink")
	run(t, "ip", "-n", tb.node, "link", "set", "dpvips", "up")
	run(t, "ip", "-n", tb.node, "link", "set", "dpsink", "up")
	run(t, "ip", "-n", tb.node, "route", "add", "198.18.96.192/26", "dev", "dpvips")
	run(t, "ip", "-n", tb.node, "-6", "route", "add", "2001:db8:96::a:0/112", "dev", "dpvips")
	serve(t, tb.b1, "b1")
	serve(t, tb.b2, "b2")
	return tb
}

// serve runs a TCP server on :8080 in namespace ns that answers each
// connection with "<name> <client address>".
func serve(t *testing.T, ns, name string) {
	t.Helper()
	var ln net.Listener
	if err := inNetns("/run/netns/"+ns, func() (err error) {
		ln, err = net.Listen("tcp", ":8080")
		return err
	}); err != nil {
		t.Fatalf("listening in %s: %v", ns, err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
			fmt.Fprintf(c, "%s %s\n", name, host)
			c.Close()
		}
	})
}

// connectTimeout bounds a connection that must succeed. It is generous: on a
// busy machine (CI runs every package's tests at once, under -race) a lost
// SYN or neighbour solicitation is retransmitted after a second, and a
// successful dial returns at once anyway. Dials that must be dropped use
// their own, short, timeouts.
const connectTimeout = 5 * time.Second

// dial connects from src in namespace ns to dst:port and returns the answer
// ("b1 198.18.96.17") or the error.
func dial(ns string, src, dst netip.Addr, port uint16, timeout time.Duration) (string, error) {
	var answer string
	err := inNetns("/run/netns/"+ns, func() error {
		d := net.Dialer{Timeout: timeout, LocalAddr: &net.TCPAddr{IP: src.AsSlice()}}
		c, err := d.Dial("tcp", netip.AddrPortFrom(dst, port).String())
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(timeout))
		line, err := bufio.NewReader(c).ReadString('\n')
		answer = strings.TrimSpace(line)
		return err
	})
	return answer, err
}

func testLogger(t testing.TB) klog.Logger {
	return textlogger.NewLogger(textlogger.NewConfig(textlogger.Verbosity(2), textlogger.Output(testWriter{t})))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// saveAll is iptables-save of both families in ns, without the comment
// lines and with counters zeroed.
func saveAll(t testing.TB, ns string) string {
	t.Helper()
	counters := regexp.MustCompile(`\[\d+:\d+\]`)
	var b strings.Builder
	for _, tool := range []string{"iptables-save", "ip6tables-save"} {
		for _, line := range strings.Split(nsRun(t, ns, tool), "\n") {
			if strings.HasPrefix(line, "#") || line == "" {
				continue
			}
			b.WriteString(counters.ReplaceAllString(line, "[0:0]") + "\n")
		}
	}
	return b.String()
}

func TestNetnsForwarding(t *testing.T) {
	labtest.NeedRoot(t, "ip", "iptables", "ip6tables", "iptables-restore", "ip6tables-restore", "iptables-save")
	tb := newTestbed(t)

	// Foreign rules, before anything of ours: they must survive everything.
	foreign := [][]string{
		{"-t", "nat", "-I", "PREROUTING", "-s", "198.18.96.99/32", "-m", "comment", "--comment", "foreign", "-j", "RETURN"},
		{"-t", "filter", "-I", "INPUT", "-s", "198.18.96.99/32", "-m", "comment", "--comment", "foreign", "-j", "ACCEPT"},
		{"-t", "filter", "-I", "FORWARD", "-s", "198.18.96.99/32", "-m", "comment", "--comment", "foreign", "-j", "ACCEPT"},
		{"-t", "mangle", "-I", "POSTROUTING", "-s", "198.18.96.99/32", "-m", "comment", "--comment", "foreign", "-j", "RETURN"},
	}
	foreign6 := [][]string{
		{"-t", "nat", "-I", "PREROUTING", "-s", "2001:db8:96::99/128", "-m", "comment", "--comment", "foreign", "-j", "RETURN"},
		{"-t", "filter", "-I", "INPUT", "-s", "2001:db8:96::99/128", "-m", "comment", "--comment", "foreign", "-j", "ACCEPT"},
		{"-t", "mangle", "-I", "POSTROUTING", "-s", "2001:db8:96::99/128", "-m", "comment", "--comment", "foreign", "-j", "RETURN"},
	}
	for _, r := range foreign {
		nsRun(t, tb.node, append([]string{"iptables"}, r...)...)
	}
	for _, r := range foreign6 {
		nsRun(t, tb.node, append([]string{"ip6tables"}, r...)...)
	}
	before := saveAll(t, tb.node)

	runner := NewRunner(RunnerOptions{NetnsPath: "/run/netns/" + tb.node, Logger: testLogger(t)})
	d := New(Options{Logger: testLogger(t), Runner: runner, Metrics: NewMetrics()})

	var services []Service
	eps := func(f Family, local1, local2 bool) []Endpoint {
		a := testAddrs[f]
		return []Endpoint{{IP: a.b1, Port: 8080, Local: local1}, {IP: a.b2, Port: 8080, Local: local2}}
	}
	both := func(i int) []netip.Addr { return []netip.Addr{vip(IPv4, i), vip(IPv6, i)} }
	port80 := func(eps []Endpoint) []Port { return []Port{{Protocol: TCP, Port: 80, Endpoints: eps}} }
	all := append(eps(IPv4, true, false), eps(IPv6, true, false)...)
	services = append(services,
		Service{Namespace: "t", Name: "cluster", VIPs: both(0), Ports: port80(all)},
		Service{Namespace: "t", Name: "local", VIPs: both(1), Ports: port80(all), Local: true},
		Service{Namespace: "t", Name: "ranges", VIPs: both(2), Ports: port80(all),
			SourceRanges: []netip.Prefix{netip.MustParsePrefix("198.18.96.2/32"), netip.MustParsePrefix("2001:db8:96::1:2/128")}},
		Service{Namespace: "t", Name: "noeps", VIPs: both(3), Ports: port80(nil)},
		Service{Namespace: "t", Name: "affinity", VIPs: both(4), Ports: port80(all), AffinityTimeout: time.Hour},
		Service{Namespace: "t", Name: "nolocal", VIPs: both(5), Ports: port80(append(eps(IPv4, false, false), eps(IPv6, false, false)...)), Local: true},
		// A Cluster VIP in b1's shard (same last byte), never dialled: the
		// shard marks for masquerade what enters it.
		Service{Namespace: "t", Name: "b1shard", VIPs: []netip.Addr{netip.MustParseAddr("198.18.97.18"), netip.MustParseAddr("2001:db8:96::a:2")}, Ports: port80(all)},
	)
	if err := d.Sync(services); err != nil {
		t.Fatalf("Sync: %v", err)
	}

	for _, f := range families {
		t.Run(f.String(), func(t *testing.T) {
			checkTraffic(t, tb, f)
		})
	}

	// Foreign rules survive Sync.
	for _, r := range foreign {
		checkRule(t, tb.node, "iptables", r)
	}
	for _, r := range foreign6 {
		checkRule(t, tb.node, "ip6tables", r)
	}

	// Drift: flush the dispatch chain, delete a jump; a resync repairs both.
	for _, f := range families {
		ipt := map[Family]string{IPv4: "iptables", IPv6: "ip6tables"}[f]
		nsRun(t, tb.node, ipt, "-t", "nat", "-F", servicesChain)
		if got, err := dial(tb.cli, testAddrs[f].cliIn, vip(f, 0), 80, time.Second); err == nil {
			t.Errorf("%s: with %s flushed, connected anyway: %q", f, servicesChain, got)
		}
	}
	nsRun(t, tb.node, "iptables", "-t", "filter", "-D", "FORWARD", "-m", "conntrack", "--ctstate", "NEW", "-m", "comment", "--comment", "onprem-lb VIP firewall", "-j", firewallChain)
	d.repairDrift()
	for _, f := range families {
		if got, err := dial(tb.cli, testAddrs[f].cliIn, vip(f, 0), 80, connectTimeout); err != nil {
			t.Errorf("%s: after the resync: %v", f, err)
		} else {
			t.Logf("%s: after the resync: %s", f, got)
		}
	}
	if _, err := dial(tb.cli, testAddrs[IPv4].cliIn, vip(IPv4, 3), 80, time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("after the resync, VIP without endpoints: %v, want connection refused (FORWARD jump restored)", err)
	}

	// Cleanup: back to exactly what was there before, foreign rules included.
	if err := Cleanup(context.Background(), runner); err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	if diff := cmp.Diff(before, saveAll(t, tb.node)); diff != "" {
		t.Errorf("iptables-save after Cleanup differs from before the first Sync (-before +after):\n%s", diff)
	}
	// A second Cleanup has nothing to do.
	if err := Cleanup(context.Background(), runner); err != nil {
		t.Fatalf("second Cleanup: %v", err)
	}
}

func checkRule(t *testing.T, ns, ipt string, insert []string) {
	t.Helper()
	check := replaceArg(insert, "-I", "-C")
	if _, err := exec.Command("ip", append([]string{"netns", "exec", ns, ipt}, check...)...).CombinedOutput(); err != nil {
		t.Errorf("foreign rule %v gone: %v", insert, err)
	}
}

func replaceArg(s []string, old, new string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		if v == old {
			v = new
		}
		out[i] = v
	}
	return out
}

func checkTraffic(t *testing.T, tb testbed, f Family) {
	a := testAddrs[f]
	const tries = 30
	connect := func(src netip.Addr, v netip.Addr, port uint16) (map[string]int, map[string]int) {
		backends, sources := map[string]int{}, map[string]int{}
		for range tries {
			got, err := dial(tb.cli, src, v, port, connectTimeout)
			if err != nil {
				t.Errorf("connecting from %s to %s: %v", src, netip.AddrPortFrom(v, port), err)
				return backends, sources
			}
			name, seen, _ := strings.Cut(got, " ")
			backends[name]++
			sources[seen]++
		}
		return backends, sources
	}

	t.Run("cluster spreads over both backends, masqueraded", func(t *testing.T) {
		backends, sources := connect(a.cliIn, vip(f, 0), 80)
		if backends["b1"] == 0 || backends["b2"] == 0 {
			t.Errorf("backends reached in %d connections: %v, want both", tries, backends)
		}
		for src := range sources {
			if src != a.nodeB1.String() && src != a.nodeB2.String() {
				t.Errorf("a backend saw the client as %s, want the node's address (masquerade)", src)
			}
		}
	})
	t.Run("local reaches only the local backend, with the client's address", func(t *testing.T) {
		backends, sources := connect(a.cliIn, vip(f, 1), 80)
		if diff := cmp.Diff(map[string]int{"b1": tries}, backends); diff != "" {
			t.Errorf("backends reached (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(map[string]int{a.cliIn.String(): tries}, sources); diff != "" {
			t.Errorf("client addresses seen (-want +got):\n%s", diff)
		}
	})
	t.Run("source ranges", func(t *testing.T) {
		if _, err := dial(tb.cli, a.cliIn, vip(f, 2), 80, connectTimeout); err != nil {
			t.Errorf("from %s, inside the ranges: %v", a.cliIn, err)
		}
		got, err := dial(tb.cli, a.cliOut, vip(f, 2), 80, 500*time.Millisecond)
		if err == nil {
			t.Errorf("from %s, outside the ranges: connected, answer %q", a.cliOut, got)
		} else if errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("from %s, outside the ranges: %v, want a timeout (dropped)", a.cliOut, err)
		}
		// The same client reaches a Service without ranges.
		if _, err := dial(tb.cli, a.cliOut, vip(f, 0), 80, connectTimeout); err != nil {
			t.Errorf("from %s to a Service without ranges: %v", a.cliOut, err)
		}
	})
	t.Run("rejected: no endpoints, no local endpoint, port not served", func(t *testing.T) {
		for _, c := range []struct {
			name string
			vip  netip.Addr
			port uint16
		}{
			{"no endpoints", vip(f, 3), 80},
			{"Local without local endpoints", vip(f, 5), 80},
			{"port not served", vip(f, 0), 81},
		} {
			if got, err := dial(tb.cli, a.cliIn, c.vip, c.port, 2*time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
				t.Errorf("%s (%s): %q, %v; want connection refused", c.name, netip.AddrPortFrom(c.vip, c.port), got, err)
			}
		}
	})
	t.Run("not to a VIP, through a shard with Cluster Services: not masqueraded", func(t *testing.T) {
		got, err := dial(tb.cli, a.cliIn, a.b1, 8080, connectTimeout)
		if want := "b1 " + a.cliIn.String(); err != nil || got != want {
			t.Errorf("straight to b1: %q, %v; want %q", got, err, want)
		}
	})
	t.Run("session affinity", func(t *testing.T) {
		backends, _ := connect(a.cliIn, vip(f, 4), 80)
		if len(backends) != 1 {
			t.Errorf("with ClientIP affinity one client reached %v, want one backend", backends)
		}
	})
}

// TestNetnsCleanupNode: chains and jumps of ours in both backends (a guard, as dataplane
// kube-proxy makes, and a nat chain) are all removed; foreign rules stay.
func TestNetnsCleanupNode(t *testing.T) {
	labtest.NeedRoot(t, "ip", "iptables-legacy", "iptables-nft", "ip6tables-legacy", "ip6tables-nft")
	ns := newNamespaces(t, "clean", "node")[0]
	for _, ipt := range []string{"iptables-legacy", "iptables-nft", "ip6tables-legacy", "ip6tables-nft"} {
		vip := "198.18.96.200"
		if strings.HasPrefix(ipt, "ip6") {
			vip = "2001:db8:96::a:c8"
		}
		for _, args := range [][]string{
			{"-t", "filter", "-I", "INPUT", "-s", vip, "-m", "comment", "--comment", "foreign", "-j", "ACCEPT"},
			{"-t", "filter", "-N", firewallChain},
			{"-t", "filter", "-N", fwShardPrefix + "C8"},
			{"-t", "filter", "-A", fwShardPrefix + "C8", "-d", vip, "-j", "DROP"},
			{"-t", "filter", "-A", firewallChain, "-j", fwShardPrefix + "C8"},
			{"-t", "filter", "-I", "INPUT", "-m", "conntrack", "--ctstate", "NEW", "-j", firewallChain},
			{"-t", "filter", "-I", "FORWARD", "-m", "conntrack", "--ctstate", "NEW", "-j", firewallChain},
			{"-t", "nat", "-N", servicesChain},
			{"-t", "nat", "-I", "PREROUTING", "-j", servicesChain},
		} {
			nsRun(t, ns, append([]string{ipt}, args...)...)
		}
	}
	if err := CleanupNode(context.Background(), RunnerOptions{NetnsPath: "/run/netns/" + ns, Logger: testLogger(t)}); err != nil {
		t.Fatalf("CleanupNode: %v", err)
	}
	for _, save := range []string{"iptables-legacy-save", "iptables-nft-save", "ip6tables-legacy-save", "ip6tables-nft-save"} {
		out := nsRun(t, ns, save)
		if strings.Contains(out, chainPrefix) {
			t.Errorf("%s after CleanupNode still has %s:\n%s", save, chainPrefix, out)
		}
		if !strings.Contains(out, `--comment foreign -j ACCEPT`) {
			t.Errorf("%s after CleanupNode lost the foreign rule:\n%s", save, out)
		}
	}
}

// TestNetnsGuard: a ProxiedElsewhere VIP on a real kernel, with a stand-in for kube-proxy:
// what it DNATs gets through, what it rejects is refused (in iptables filter, appended after
// everything of ours, and in an nftables table of its own at filter priority, as kube-proxy's
// nftables mode does), and what it leaves alone is dropped (no answer).
func TestNetnsGuard(t *testing.T) {
	labtest.NeedRoot(t, "ip", "iptables", "iptables-restore", "iptables-save", "nft")
	tb := newTestbed(t)
	a := testAddrs[IPv4]
	v := vip(IPv4, 6)
	runner := NewRunner(RunnerOptions{NetnsPath: "/run/netns/" + tb.node, Logger: testLogger(t)})
	d := New(Options{Logger: testLogger(t), Runner: runner})
	if err := d.Sync([]Service{{Namespace: "t", Name: "guarded", VIPs: []netip.Addr{v}, ProxiedElsewhere: true}}); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	// kube-proxy: DNAT :83, REJECT :80 (iptables) and :82 (nftables).
	nsRun(t, tb.node, "iptables", "-t", "nat", "-A", "PREROUTING", "-d", v.String(), "-p", "tcp", "--dport", "83", "-j", "DNAT", "--to-destination", a.b1.String()+":8080")
	nsRun(t, tb.node, "iptables", "-t", "filter", "-A", "FORWARD", "-d", v.String(), "-p", "tcp", "--dport", "80", "-j", "REJECT")
	nsRun(t, tb.node, "nft", "add table ip kp; add chain ip kp filter-forward { type filter hook forward priority filter; }; add rule ip kp filter-forward ip daddr "+v.String()+" tcp dport 82 reject")
	for _, c := range []struct {
		port uint16
		want string
	}{{80, "refused"}, {82, "refused"}, {83, "connected"}, {81, "no answer"}} {
		got := "connected"
		if _, err := dial(tb.cli, a.cliIn, v, c.port, time.Second); errors.Is(err, syscall.ECONNREFUSED) {
			got = "refused"
		} else if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
			got = "no answer"
		} else if err != nil {
			got = err.Error()
		}
		if got != c.want {
			t.Errorf("connect to %s: %s, want %s", netip.AddrPortFrom(v, c.port), got, c.want)
		}
	}
	if err := Cleanup(context.Background(), runner); err != nil {
		t.Fatal(err)
	}
}
