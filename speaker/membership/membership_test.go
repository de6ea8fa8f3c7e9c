package membership

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/go-cmp/cmp"
	"k8s.io/klog/v2"
	"k8s.io/klog/v2/ktesting"
)

var loopback = netip.MustParseAddr("127.0.0.1")

// testLogger logs to the test at V(2) (shown with -v or on failure); a
// benchmark logs nothing, its output is the figure.
func testLogger(tb testing.TB) klog.Logger {
	if _, ok := tb.(*testing.B); ok {
		return logr.Discard()
	}
	return ktesting.NewLogger(tb, ktesting.NewConfig(ktesting.Verbosity(2)))
}

// freePort returns a port free for both TCP and UDP on 127.0.0.1.
func freePort(tb testing.TB) int {
	tb.Helper()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatalf("listen: %v", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		l.Close()
		if err != nil {
			continue
		}
		u.Close()
		return port
	}
	tb.Fatalf("no free TCP+UDP port on 127.0.0.1")
	return 0
}

// member is a Membership running on loopback in this process.
type member struct {
	*Membership
	name   string
	port   int
	cancel context.CancelFunc
	done   chan error
}

// addr is where the member listens.
func (n *member) addr() netip.AddrPort { return netip.AddrPortFrom(loopback, uint16(n.port)) }

type memberOpt func(*Config)

func withKey(k string) memberOpt { return withKeys(k) }
func withKeys(ks ...string) memberOpt {
	return func(c *Config) {
		c.SecretKeys = nil
		for _, k := range ks {
			c.SecretKeys = append(c.SecretKeys, []byte(k))
		}
	}
}
func onPort(p int) memberOpt        { return func(c *Config) { c.Port = p } }
func withTiming(t Timing) memberOpt { return func(c *Config) { c.Timing = t } }
func withConverge(d time.Duration) memberOpt {
	return func(c *Config) { c.ConvergeTimeout = d }
}

// newMember creates a member on a free port that joins the addresses
// peers returns; start runs it. Cleanup stops it.
func newMember(tb testing.TB, name string, peers func() []netip.AddrPort, opts ...memberOpt) *member {
	tb.Helper()
	port := freePort(tb)
	cfg := Config{
		Name:     name,
		BindAddr: loopback,
		Port:     port,
		Meta:     []byte("meta-of-" + name),
		Logger:   testLogger(tb).WithName(name),
	}
	for _, o := range opts {
		o(&cfg)
	}
	m, err := New(cfg)
	// freePort's port can be taken by another test before New binds it:
	// unless the test chose the port, take another.
	for try := 0; err != nil && cfg.Port == port && strings.Contains(err.Error(), "address already in use") && try < 5; try++ {
		port = freePort(tb)
		cfg.Port = port
		m, err = New(cfg)
	}
	if err != nil {
		tb.Fatalf("New(%s): %v", name, err)
	}
	if peers == nil {
		peers = func() []netip.AddrPort { return nil }
	}
	m.peers = peers
	return &member{Membership: m, name: name, port: cfg.Port}
}

func (n *member) start(tb testing.TB) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel, n.done = cancel, make(chan error, 1)
	go func() { n.done <- n.Run(ctx) }()
	tb.Cleanup(func() { n.stop(tb) })
	// Run has created the memberlist when Members shows self.
	deadline := time.Now().Add(5 * time.Second)
	for n.Members() == nil {
		select {
		case err := <-n.done:
			n.done <- err
			tb.Fatalf("%s: Run returned early: %v", n.name, err)
		default:
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s: not running after 5s", n.name)
		}
		time.Sleep(time.Millisecond)
	}
}

// stop cancels Run and waits for it; stopping twice is fine.
func (n *member) stop(tb testing.TB) {
	tb.Helper()
	if n.cancel == nil {
		return
	}
	n.cancel()
	select {
	case err := <-n.done:
		if err != nil {
			tb.Errorf("%s: Run() = %v, want nil", n.name, err)
		}
		n.done <- nil
	case <-time.After(10 * time.Second):
		tb.Errorf("%s: Run did not return 10s after cancel", n.name)
	}
}

// kill shuts the member down without leaving, like kill -9: the others only
// learn by failure detection.
func (n *member) kill(tb testing.TB) {
	tb.Helper()
	n.hardStop.Store(true)
	n.stop(tb)
}

// countCalls wraps *peers so that each call (each join attempt) sends on the
// returned channel, without blocking: calls beyond its 64 buffered are not
// counted.
func countCalls(peers *func() []netip.AddrPort) chan struct{} {
	called, inner := make(chan struct{}, 64), *peers
	*peers = func() []netip.AddrPort {
		select {
		case called <- struct{}{}:
		default:
		}
		return inner()
	}
	return called
}

// peersOf returns a Peers function giving the members' addresses.
func peersOf(ms ...*member) func() []netip.AddrPort {
	return func() []netip.AddrPort {
		var out []netip.AddrPort
		for _, m := range ms {
			out = append(out, m.addr())
		}
		return out
	}
}

func names(ms []Member) []string {
	out := make([]string, 0, len(ms))
	for _, m := range ms {
		out = append(out, m.Name)
	}
	return out
}

// waitMembers waits, on Changed (with a slow poll as a safety net), until
// n's member names are want, and returns when that was seen.
func waitMembers(tb testing.TB, n *member, want []string, timeout time.Duration) time.Time {
	tb.Helper()
	deadline := time.After(timeout)
	poll := time.NewTicker(100 * time.Millisecond)
	defer poll.Stop()
	for {
		got := names(n.Members())
		if slices.Equal(got, want) {
			return time.Now()
		}
		select {
		case <-n.Changed():
		case <-poll.C:
		case <-deadline:
			tb.Fatalf("%s: members = %v after %v, want %v", n.name, got, timeout, want)
		}
	}
}

func waitConverged(tb testing.TB, n *member, timeout time.Duration) {
	tb.Helper()
	select {
	case <-n.Converged():
	case <-time.After(timeout):
		tb.Fatalf("%s: not converged after %v", n.name, timeout)
	}
}

// startCluster starts n members that each join all the others.
func startCluster(tb testing.TB, n int, opts ...memberOpt) []*member {
	tb.Helper()
	ms := make([]*member, n)
	var all []*member
	for i := range ms {
		ms[i] = newMember(tb, fmt.Sprintf("node-%d", i+1), nil, opts...)
		all = append(all, ms[i])
	}
	for _, m := range ms {
		m.peers = peersOf(all...)
	}
	for _, m := range ms {
		m.start(tb)
	}
	want := make([]string, 0, n)
	for _, m := range ms {
		want = append(want, m.name)
	}
	for _, m := range ms {
		waitMembers(tb, m, want, 5*time.Second)
		waitConverged(tb, m, 5*time.Second)
	}
	return ms
}

func TestThreeMembersConverge(t *testing.T) {
	ms := startCluster(t, 3, withKey("0123456789abcdef0123456789abcdef"))
	want := make([]Member, 0, len(ms))
	for _, m := range ms {
		want = append(want, Member{Name: m.name, Addr: loopback, Meta: []byte("meta-of-" + m.name)})
	}
	for _, m := range ms {
		if diff := cmp.Diff(want, m.Members(), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
			t.Errorf("%s: Members() mismatch (-want +got):\n%s", m.name, diff)
		}
	}
	// Members is the caller's: changing it changes nothing inside.
	got := ms[0].Members()
	got[0].Meta[0] = 'X'
	if ms[0].Members()[0].Meta[0] == 'X' {
		t.Errorf("Members() shares Meta with memberlist")
	}
}

func TestLeaveIsSeenAtOnce(t *testing.T) {
	ms := startCluster(t, 3)
	leaver := ms[2]
	// Drain the signals of the joins.
	for _, m := range ms[:2] {
		select {
		case <-m.Changed():
		default:
		}
	}
	start := time.Now()
	if err := leaver.Leave(time.Second); err != nil {
		t.Fatalf("Leave() = %v", err)
	}
	for _, m := range ms[:2] {
		seen := waitMembers(t, m, []string{"node-1", "node-2"}, 5*time.Second)
		// Failure detection would take ≥ ProbeTimeout + suspicion
		// (40 + 200 ms); a leave takes about one GossipInterval.
		if d := seen.Sub(start); d > 500*time.Millisecond {
			t.Errorf("%s saw the leave after %v, want < 500ms", m.name, d)
		} else {
			t.Logf("%s saw the leave after %v", m.name, d)
		}
	}
	if got := names(leaver.Members()); slices.Contains(got, leaver.name) {
		t.Errorf("after Leave, the leaver's Members() = %v, want without itself", got)
	}
	for _, m := range ms[:2] {
		if !m.LeftGracefully(leaver.name, time.Minute) {
			t.Errorf("%s: LeftGracefully(%s) = false after it left", m.name, leaver.name)
		}
		if m.LeftGracefully(leaver.name, 0) {
			t.Errorf("%s: LeftGracefully(%s, 0) = true, want false once the window is over", m.name, leaver.name)
		}
	}
	if err := leaver.Leave(time.Second); err != nil {
		t.Errorf("second Leave() = %v, want nil", err)
	}
	// Run then only shuts down, and returns nil.
	leaver.stop(t)
	if got := leaver.Members(); got != nil {
		t.Errorf("Members() after Run returned = %v, want nil", got)
	}
	if err := leaver.Leave(time.Second); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Leave() after Run returned = %v, want ErrNotRunning", err)
	}
}

func TestStopLeavesGracefully(t *testing.T) {
	ms := startCluster(t, 3)
	start := time.Now()
	ms[2].stop(t) // ctx cancelled: Run leaves, then shuts down
	for _, m := range ms[:2] {
		if d := waitMembers(t, m, []string{"node-1", "node-2"}, 5*time.Second).Sub(start); d > 500*time.Millisecond {
			t.Errorf("%s saw the stopped member go after %v, want < 500ms", m.name, d)
		}
		if !m.LeftGracefully("node-3", time.Minute) {
			t.Errorf("%s: LeftGracefully(node-3) = false after it stopped", m.name)
		}
	}
}

func TestHardKilledMemberIsDeclaredDead(t *testing.T) {
	ms := startCluster(t, 3)
	start := time.Now()
	ms[2].kill(t)
	for _, m := range ms[:2] {
		d := waitMembers(t, m, []string{"node-1", "node-2"}, 5*time.Second).Sub(start)
		t.Logf("%s declared node-3 dead after %v", m.name, d)
		if m.LeftGracefully("node-3", time.Minute) {
			t.Errorf("%s: LeftGracefully(node-3) = true for a member that died", m.name)
		}
	}
}

func TestDifferentKeysDoNotJoin(t *testing.T) {
	a := newMember(t, "node-a", nil, withKey("aaaaaaaaaaaaaaaa"), withConverge(300*time.Millisecond),
		withTiming(Timing{RejoinInterval: 100 * time.Millisecond}))
	b := newMember(t, "node-b", peersOf(a), withKey("bbbbbbbbbbbbbbbb"), withConverge(300*time.Millisecond),
		withTiming(Timing{RejoinInterval: 100 * time.Millisecond}))
	c := newMember(t, "node-c", peersOf(a), withConverge(300*time.Millisecond), // no key at all
		withTiming(Timing{RejoinInterval: 100 * time.Millisecond}))
	a.peers = peersOf(b, c)
	joins := map[*member]chan struct{}{}
	for _, m := range []*member{a, b, c} {
		joins[m] = countCalls(&m.peers)
		m.start(t)
	}
	// Converged anyway, by timeout: the speaker must not wait forever.
	for _, m := range []*member{a, b, c} {
		waitConverged(t, m, 5*time.Second)
	}
	// Several rejoins later, each is still alone.
	for m, joined := range joins {
		for len(joined) > 0 { // the joins before it converged
			<-joined
		}
		for range 3 {
			select {
			case <-joined:
			case <-time.After(5 * time.Second):
				t.Fatalf("%s: no rejoin within 5s", m.name)
			}
		}
	}
	for _, m := range []*member{a, b, c} {
		if got, want := names(m.Members()), []string{m.name}; !slices.Equal(got, want) {
			t.Errorf("%s: Members() = %v, want %v", m.name, got, want)
		}
	}
}

func TestLateMemberIsFoundByRejoin(t *testing.T) {
	fast := withTiming(Timing{RejoinInterval: 200 * time.Millisecond})
	late := newMember(t, "node-late", nil, fast) // joins nobody itself
	early := newMember(t, "node-early", peersOf(late), fast, withConverge(300*time.Millisecond))
	early.start(t)
	// Its only peer is down: converged by timeout, alone.
	waitConverged(t, early, 5*time.Second)
	if got := names(early.Members()); !slices.Equal(got, []string{"node-early"}) {
		t.Fatalf("early: Members() = %v, want itself only", got)
	}
	late.start(t)
	want := []string{"node-early", "node-late"}
	waitMembers(t, early, want, 5*time.Second)
	waitMembers(t, late, want, 5*time.Second)
}

func TestConvergedWithoutPeers(t *testing.T) {
	for _, tt := range []struct {
		name  string
		peers func(self *member) func() []netip.AddrPort
	}{
		{name: "no peers", peers: func(*member) func() []netip.AddrPort { return func() []netip.AddrPort { return nil } }},
		{name: "only self", peers: func(self *member) func() []netip.AddrPort { return peersOf(self) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m := newMember(t, "alone", nil) // ConvergeTimeout 3s: must not be what closes it
			m.peers = tt.peers(m)
			m.start(t)
			waitConverged(t, m, time.Second)
			if got := names(m.Members()); !slices.Equal(got, []string{"alone"}) {
				t.Errorf("Members() = %v, want [alone]", got)
			}
		})
	}
}

func TestLifecycleErrors(t *testing.T) {
	m := newMember(t, "node-1", nil)
	if err := m.Leave(time.Second); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Leave() before Run = %v, want ErrNotRunning", err)
	}
	if got := m.Members(); got != nil {
		t.Errorf("Members() before Run = %v, want nil", got)
	}
	m.start(t)
	if err := m.Run(context.Background()); !errors.Is(err, ErrAlreadyRunning) {
		t.Errorf("second Run() = %v, want ErrAlreadyRunning", err)
	}

	// A port already taken: Run fails to start, and says why.
	other, err := New(Config{Name: "node-2", BindAddr: loopback, Port: m.port, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := other.Run(ctx); err == nil {
		t.Errorf("Run() on a port in use = nil, want an error")
	}
}

func TestChangedIsSignalled(t *testing.T) {
	a := newMember(t, "node-a", nil)
	a.start(t)
	// Self joining signalled once; drain it.
	select {
	case <-a.Changed():
	case <-time.After(time.Second):
		t.Fatalf("no Changed signal for self")
	}
	b := newMember(t, "node-b", peersOf(a))
	b.start(t)
	select {
	case <-a.Changed():
	case <-time.After(5 * time.Second):
		t.Fatalf("no Changed signal when node-b joined")
	}
	if got := names(a.Members()); !slices.Equal(got, []string{"node-a", "node-b"}) {
		t.Errorf("Members() after Changed = %v, want [node-a node-b]", got)
	}
}

// BenchmarkFailureDetection measures, with DefaultTiming, the time from a
// member dying without leaving to both other members of three having
// dropped it. It reports a figure, not an assertion.
func BenchmarkFailureDetection(b *testing.B) {
	var (
		total time.Duration
		runs  int
	)
	for b.Loop() {
		// Encrypted, as a speaker runs: also keeps the unencrypted warning out of the
		// benchmark's result lines.
		ms := startCluster(b, 3, withKey("0123456789abcdef0123456789abcdef"))
		start := time.Now()
		ms[2].kill(b)
		// Sequential waits give the later of the two times: the second
		// returns at once if its member dropped node-3 first.
		var last time.Time
		for _, m := range ms[:2] {
			last = waitMembers(b, m, []string{"node-1", "node-2"}, 5*time.Second)
		}
		total += last.Sub(start)
		runs++
		for _, m := range ms {
			m.stop(b)
		}
	}
	b.ReportMetric(float64(total.Microseconds())/1000/float64(runs), "detect-ms")
}

func TestConvergedWhenJoinedByPeer(t *testing.T) {
	down := newMember(t, "node-down", nil)     // never started
	a := newMember(t, "node-a", peersOf(down)) // ConvergeTimeout 3s
	a.start(t)
	select {
	case <-a.Converged():
		t.Fatalf("node-a converged with its only peer down and nobody joining")
	case <-time.After(200 * time.Millisecond):
	}
	b := newMember(t, "node-b", peersOf(a))
	start := time.Now()
	b.start(t)
	waitConverged(t, a, 2*time.Second) // well before the 3s timeout
	t.Logf("node-a converged %v after node-b started", time.Since(start))
	if got := names(a.Members()); !slices.Equal(got, []string{"node-a", "node-b"}) {
		t.Errorf("node-a: Members() when converged = %v, want [node-a node-b]", got)
	}
}

// TestKeyRotationKeepsMembers rotates the gossip key of three members the way a user rolls a
// DaemonSet: at each step every member in turn restarts (leaves, comes back on its port)
// with the step's keyring. After every restart, mixed keyrings included, every member sees
// all three: the cluster never splits. A member with only the new key among members with
// only the old one is not heard: the steps are what keeps it whole.
func TestKeyRotationKeepsMembers(t *testing.T) {
	const oldKey, newKey = "old-key-0123456789abcdef01234567", "new-key-0123456789abcdef01234567"
	fast := withTiming(Timing{RejoinInterval: 100 * time.Millisecond})
	ms := startCluster(t, 3, withKeys(oldKey), fast)
	all := []string{"node-1", "node-2", "node-3"}
	addrs := peersOf(ms...)() // a restarted member keeps its port
	peers := func() []netip.AddrPort { return addrs }
	restart := func(i int, keys ...string) {
		t.Helper()
		ms[i].stop(t)
		ms[i] = newMember(t, ms[i].name, peers, onPort(ms[i].port), withKeys(keys...), fast)
		ms[i].start(t)
	}
	for _, step := range []struct {
		name string
		keys []string
	}{
		{name: "add the new key second", keys: []string{oldKey, newKey}},
		{name: "make the new key first", keys: []string{newKey, oldKey}},
		{name: "remove the old key", keys: []string{newKey}},
	} {
		for i := range ms {
			restart(i, step.keys...)
			for _, m := range ms {
				waitMembers(t, m, all, 5*time.Second)
			}
			t.Logf("%s: %s restarted, all see %v", step.name, ms[i].name, all)
		}
	}

	// Skipping a step splits: node-3 with only the old key is not heard.
	restart(2, oldKey)
	waitConverged(t, ms[2], 5*time.Second)
	waitMembers(t, ms[0], all[:2], 5*time.Second)
	if got := names(ms[2].Members()); !slices.Equal(got, all[2:]) {
		t.Errorf("node-3 with the old key only: members %v, want only itself", got)
	}
}
