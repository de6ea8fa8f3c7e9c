package l2

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/klog/v2/textlogger"

	"github.com/onprem-lb/onprem-lb/test/lab/labtest"
)

// The real-kernel test. Three network namespaces on one L2 segment, a bridge
// in b joining a veth to a and a veth to c; addresses only in 198.18.64.0/24
// and 2001:db8:64::/64 (plus the kernel's own link-local ones), no routes
// beyond the segment:
//
//	a (olba, .1, ::1): runs the Announcer (this test binary, re-executed
//	                   with ip netns exec as TestNetnsChild)
//	b (olbbr, .2, ::2): asks with arping and ndisc6
//	c (olbc, .3, ::3, and .30, ::30 as real addresses): the conflicting host
const netnsChildEnv = "OLB_L2_NETNS_CHILD"

func TestNetns(t *testing.T) {
	if os.Getenv(netnsChildEnv) != "" {
		t.Skip("in the child")
	}
	labtest.NeedRoot(t, "ip", "arping", "ndisc6")
	pid := os.Getpid()
	nsA, nsB, nsC := fmt.Sprintf("olbt-l2-a-%d", pid), fmt.Sprintf("olbt-l2-b-%d", pid), fmt.Sprintf("olbt-l2-c-%d", pid)
	for _, ns := range []string{nsA, nsB, nsC} {
		run(t, "ip", "netns", "add", ns)
		t.Cleanup(func() { runQuiet("ip", "netns", "del", ns) })
		run(t, "ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
	}
	run(t, "ip", "-n", nsB, "link", "add", "olbbr", "type", "bridge", "forward_delay", "0", "mcast_snooping", "0")
	run(t, "ip", "link", "add", "olba", "netns", nsA, "type", "veth", "peer", "name", "olbab", "netns", nsB)
	run(t, "ip", "link", "add", "olbc", "netns", nsC, "type", "veth", "peer", "name", "olbcb", "netns", nsB)
	for _, port := range []string{"olbab", "olbcb"} {
		run(t, "ip", "-n", nsB, "link", "set", port, "master", "olbbr", "up")
	}
	for _, a := range []struct{ ns, dev, addr string }{
		{nsA, "olba", "198.18.64.1/24"}, {nsA, "olba", "2001:db8:64::1/64"},
		{nsB, "olbbr", "198.18.64.2/24"}, {nsB, "olbbr", "2001:db8:64::2/64"},
		{nsC, "olbc", "198.18.64.3/24"}, {nsC, "olbc", "2001:db8:64::3/64"},
		{nsC, "olbc", "198.18.64.30/24"}, {nsC, "olbc", "2001:db8:64::30/64"},
	} {
		args := []string{"-n", a.ns, "addr", "add", a.addr, "dev", a.dev}
		if strings.Contains(a.addr, ":") {
			args = append(args, "nodad")
		}
		run(t, "ip", args...)
	}
	run(t, "ip", "-n", nsB, "link", "set", "olbbr", "up")
	run(t, "ip", "-n", nsA, "link", "set", "olba", "up")
	run(t, "ip", "-n", nsC, "link", "set", "olbc", "up")
	macA := strings.TrimSpace(run(t, "ip", "netns", "exec", nsA, "cat", "/sys/class/net/olba/address"))
	macC := strings.TrimSpace(run(t, "ip", "netns", "exec", nsC, "cat", "/sys/class/net/olbc/address"))

	child := startChild(t, nsA)
	child.send(t, "sync 198.18.64.10,2001:db8:64::10,198.18.64.30,2001:db8:64::30")
	child.expect(t,
		"announcing 198.18.64.10 olba",
		"announcing 2001:db8:64::10 olba",
		"conflict 198.18.64.30 olba "+macC,
		"conflict 2001:db8:64::30 olba "+macC,
	)

	arping := func(ip string) []string {
		out, err := runMaybe(t, "ip", "netns", "exec", nsB, "arping", "-i", "olbbr", "-c", "3", "-W", "0.2", "-w", "2", "-r", ip)
		t.Logf("arping %s: %v\n%s", ip, err, out)
		return macsIn(out)
	}
	ndisc := func(ip string) []string {
		out, err := runMaybe(t, "ip", "netns", "exec", nsB, "ndisc6", "-m", "-n", "-r", "2", "-w", "500", ip, "olbbr")
		t.Logf("ndisc6 %s: %v\n%s", ip, err, out)
		return macsIn(out)
	}
	only := func(what string, got []string, want string) {
		t.Helper()
		if len(got) == 0 {
			t.Errorf("%s: no answer, want %s", what, want)
		}
		for _, m := range got {
			if m != want {
				t.Errorf("%s: answered by %s, want only %s", what, m, want)
			}
		}
	}
	only("ARP for the VIP", arping("198.18.64.10"), macA)
	only("NDP for the VIP", ndisc("2001:db8:64::10"), macA)
	only("ARP for the conflicting VIP", arping("198.18.64.30"), macC)
	only("NDP for the conflicting VIP", ndisc("2001:db8:64::30"), macC)
	state := child.state(t)
	for _, want := range []string{"198.18.64.30:conflict:olba:" + macC, "2001:db8:64::30:conflict:olba:" + macC, "198.18.64.10:announced:olba"} {
		if !strings.Contains(state, want) {
			t.Errorf("state %q lacks %q", state, want)
		}
	}

	// The NDP packet socket keeps the interface in all-multicast mode while
	// it is open.
	if n := allmulti(t, nsA, "olba"); n == 0 {
		t.Errorf("olba not in all-multicast mode while announcing (allmulti %d)", n)
	}

	// Neighbor unreachability detection: b holds a's MAC for the VIP as
	// STALE; traffic to the VIP makes b's kernel probe it with unicast
	// neighbor solicitations (IPv6 destination the VIP, Ethernet destination
	// a's MAC), which a's kernel does not deliver locally. Only an answer
	// from the announcer makes the entry REACHABLE; unanswered, it goes
	// FAILED.
	run(t, "ip", "netns", "exec", nsB, "sysctl", "-qw", "net.ipv6.neigh.olbbr.delay_first_probe_time=1")
	run(t, "ip", "-n", nsB, "-6", "neigh", "replace", "2001:db8:64::10", "lladdr", macA, "dev", "olbbr", "nud", "stale")
	run(t, "ip", "netns", "exec", nsB, "bash", "-c", "echo nud > /dev/udp/2001:db8:64::10/9")
	if st := waitNeigh(t, nsB, "2001:db8:64::10", "olbbr"); !strings.Contains(st, macA) || !strings.Contains(st, "REACHABLE") {
		t.Errorf("unicast NUD probe for the VIP not answered: neighbor entry in b is %q, want REACHABLE at %s", st, macA)
	}

	child.send(t, "sync")
	child.expect(t, "withdrawn 198.18.64.10 olba", "withdrawn 2001:db8:64::10 olba")
	if got := arping("198.18.64.10"); len(got) != 0 {
		t.Errorf("ARP after withdrawal answered by %v", got)
	}
	if got := ndisc("2001:db8:64::10"); len(got) != 0 {
		t.Errorf("NDP after withdrawal answered by %v", got)
	}
	if n := allmulti(t, nsA, "olba"); n != 0 {
		t.Errorf("olba left in all-multicast mode after its NDP socket closed (allmulti %d)", n)
	}

	// Many IPv6 VIPs on one interface, each with its own solicited-node
	// group (2001:db8:64::1:0 to ::1:bb7): the first and the last answer.
	var many []string
	ip := netip.MustParseAddr("2001:db8:64::1:0")
	for range manyVIPs {
		many = append(many, ip.String())
		ip = ip.Next()
	}
	first, last := many[0], many[len(many)-1]
	child.send(t, "sync "+strings.Join(many, ","))
	for _, line := range child.expect(t, "announcing "+first+" olba", "announcing "+last+" olba") {
		if strings.HasPrefix(line, "error ") {
			t.Errorf("announcing %d VIPs: %s", manyVIPs, line)
		}
	}
	// The first, the last and every 100th: a failed group join used to leave
	// VIPs unanswered at random.
	sample := []string{last}
	for i := 0; i < len(many); i += 100 {
		sample = append(sample, many[i])
	}
	var wg sync.WaitGroup
	answers := make([][]string, len(sample))
	sem := make(chan struct{}, 8)
	for i, ip := range sample {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			answers[i] = ndisc(ip)
		})
	}
	wg.Wait()
	for i, ip := range sample {
		only("NDP for "+ip+", one of many VIPs", answers[i], macA)
	}
}

// manyVIPs is how many IPv6 VIPs TestNetns announces at once: more than a
// socket may join multicast groups (net.core.optmem_max).
const manyVIPs = 3000

// allmulti is the all-multicast reference count of dev in ns (-1: ip does
// not show it).
func allmulti(t *testing.T, ns, dev string) int {
	t.Helper()
	out := run(t, "ip", "-d", "-n", ns, "link", "show", dev)
	m := regexp.MustCompile(`\ballmulti (\d+)`).FindStringSubmatch(out)
	if m == nil {
		t.Logf("ip -d link show %s: no allmulti count:\n%s", dev, out)
		return -1
	}
	n, err := strconv.Atoi(m[1])
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// waitNeigh waits until ip's neighbor entry on dev in ns settles (neither
// STALE, DELAY, PROBE nor INCOMPLETE) and returns it.
func waitNeigh(t *testing.T, ns, ip, dev string) string {
	t.Helper()
	var st string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		st = strings.TrimSpace(run(t, "ip", "-n", ns, "-6", "neigh", "show", ip, "dev", dev))
		t.Logf("neighbor %s: %s", ip, st)
		if !strings.Contains(st, "STALE") && !strings.Contains(st, "DELAY") && !strings.Contains(st, "PROBE") && !strings.Contains(st, "INCOMPLETE") {
			return st
		}
	}
	return st
}

// TestNetnsChild is the Announcer side of TestNetns, run inside namespace a.
// It reads commands on stdin ("sync ip,ip,...", "state") and writes events
// and state on stdout, one per line, prefixed with "L2 ".
func TestNetnsChild(t *testing.T) {
	if os.Getenv(netnsChildEnv) == "" {
		t.Skip("helper process of TestNetns")
	}
	var mu sync.Mutex
	say := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Printf("L2 "+format+"\n", args...)
	}
	a := New(Options{Events: printEvents(say), Metrics: NewMetrics(), LinkPollInterval: 200 * time.Millisecond, ReprobeInterval: time.Second,
		Logger: textlogger.NewLogger(textlogger.NewConfig(textlogger.Verbosity(4), textlogger.Output(os.Stderr)))})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- a.Run(ctx) }()
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		cmd, arg, _ := strings.Cut(sc.Text(), " ")
		switch cmd {
		case "sync":
			desired := map[netip.Addr]Target{}
			for _, s := range strings.FieldsFunc(arg, func(r rune) bool { return r == ',' }) {
				desired[netip.MustParseAddr(s)] = Target{}
			}
			a.Sync(desired)
		case "state":
			var parts []string
			for ip, st := range a.State() {
				for _, i := range st.Announced {
					parts = append(parts, ip.String()+":announced:"+i)
				}
				for _, c := range st.Conflicts {
					parts = append(parts, ip.String()+":conflict:"+c.Interface+":"+c.MAC.String())
				}
				for _, i := range st.Probing {
					parts = append(parts, ip.String()+":probing:"+i)
				}
			}
			say("state %s", strings.Join(parts, " "))
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

type printEvents func(format string, args ...any)

func (p printEvents) Announcing(ip netip.Addr, iface string) { p("announcing %s %s", ip, iface) }
func (p printEvents) Withdrawn(ip netip.Addr, iface string)  { p("withdrawn %s %s", ip, iface) }
func (p printEvents) Conflict(ip netip.Addr, iface string, mac net.HardwareAddr) {
	p("conflict %s %s %s", ip, iface, mac)
}
func (p printEvents) InterfaceError(iface string, err error) { p("error %s %v", iface, err) }

type child struct {
	stdin  *bufio.Writer
	closer func() error
	lines  chan string
	stderr *syncBuffer
}

func startChild(t *testing.T, ns string) *child {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns, os.Args[0], "-test.run=^TestNetnsChild$", "-test.count=1", "-test.timeout=2m")
	cmd.Env = append(os.Environ(), netnsChildEnv+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	c := &child{stdin: bufio.NewWriter(stdin), closer: stdin.Close, lines: make(chan string, 100), stderr: &syncBuffer{}}
	cmd.Stderr = c.stderr
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			if line, ok := strings.CutPrefix(sc.Text(), "L2 "); ok {
				c.lines <- line
			}
		}
		close(c.lines)
	}()
	t.Cleanup(func() {
		go func() {
			for range c.lines { // the child may still print, e.g. thousands of withdrawals
			}
		}()
		_ = c.closer()
		errc := make(chan error, 1)
		go func() { errc <- cmd.Wait() }()
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("child: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("child did not stop")
		}
		cancel()
		if t.Failed() {
			t.Logf("child stderr:\n%s", c.stderr.String())
		}
	})
	return c
}

func (c *child) send(t *testing.T, line string) {
	t.Helper()
	if _, err := c.stdin.WriteString(line + "\n"); err != nil {
		t.Fatal(err)
	}
	if err := c.stdin.Flush(); err != nil {
		t.Fatal(err)
	}
}

// expect waits for every line in want, in any order, and returns the other
// lines read meanwhile (the first 20 are logged).
func (c *child) expect(t *testing.T, want ...string) (others []string) {
	t.Helper()
	missing := map[string]bool{}
	for _, w := range want {
		missing[w] = true
	}
	logged, skipped := 0, 0
	defer func() {
		if skipped > 0 {
			t.Logf("child: %d more lines", skipped)
		}
	}()
	timeout := time.After(15 * time.Second)
	for len(missing) > 0 {
		select {
		case line, ok := <-c.lines:
			if !ok {
				t.Fatalf("child exited; still waiting for %v", missing)
			}
			switch {
			case missing[line]:
				delete(missing, line)
			case logged < 20:
				t.Logf("child: %s", line)
				logged++
				others = append(others, line)
			default:
				skipped++
				others = append(others, line)
			}
		case <-timeout:
			t.Fatalf("timed out waiting for %v", missing)
		}
	}
	return others
}

func (c *child) state(t *testing.T) string {
	t.Helper()
	c.send(t, "state")
	timeout := time.After(10 * time.Second)
	for {
		select {
		case line, ok := <-c.lines:
			if !ok {
				t.Fatal("child exited")
			}
			if s, ok := strings.CutPrefix(line, "state "); ok {
				return s
			}
			t.Logf("child: %s", line)
		case <-timeout:
			t.Fatal("timed out waiting for state")
		}
	}
}

// macsIn returns the MAC addresses in out, lower case.
func macsIn(out string) []string {
	var macs []string
	for _, f := range strings.Fields(strings.ToLower(out)) {
		f = strings.Trim(f, "[]()")
		if hw, err := net.ParseMAC(f); err == nil && len(hw) == 6 {
			macs = append(macs, hw.String())
		}
	}
	return macs
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := runMaybe(t, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

func runMaybe(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}

func runQuiet(name string, args ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_ = exec.CommandContext(ctx, name, args...).Run()
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
