package l2

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/klog/v2/ktesting"
)

// fakeKernel is the links and sockets of an Announcer under test.
type fakeKernel struct {
	mu     sync.Mutex
	links  []Link
	opened map[respKey][]*fakeSockets
	fail   map[string]error // open fails for these interfaces
	polls  int              // calls of listLinks: reconciles begun
}

// fakeSockets is the socket of one responder: arp or ndp, by protocol.
type fakeSockets struct {
	arp *fakeFrameConn
	ndp *fakeFrameConn
}

func (s *fakeSockets) conn(p protocol) *fakeFrameConn {
	if p == protoARP {
		return s.arp
	}
	return s.ndp
}

func (k *fakeKernel) setLinks(links ...Link) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.links = links
}

func (k *fakeKernel) listLinks() ([]Link, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.polls++
	return slices.Clone(k.links), nil
}

// waitPolls waits until the announcer has begun n more reconciles, so that
// n-1 have finished.
func (k *fakeKernel) waitPolls(t *testing.T, n int) {
	t.Helper()
	k.mu.Lock()
	want := k.polls + n
	k.mu.Unlock()
	waitFor(t, fmt.Sprintf("%d link polls", n), func() bool {
		k.mu.Lock()
		defer k.mu.Unlock()
		return k.polls >= want
	})
}

func (k *fakeKernel) open(l Link, p protocol) (frameConn, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.fail[l.Name]; err != nil {
		return nil, err
	}
	s := &fakeSockets{arp: newFakeFrameConn(), ndp: newFakeFrameConn()}
	key := respKey{l.Name, p}
	k.opened[key] = append(k.opened[key], s)
	return s.conn(p), nil
}

func (k *fakeKernel) sockets(iface string, p protocol) []*fakeSockets {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.opened[respKey{iface, p}])
}

func statusCmp() cmp.Option {
	return cmp.Comparer(func(a, b netip.Addr) bool { return a == b })
}

// TestAnnouncer runs an Announcer against a fake kernel: automatic and
// explicit interfaces, an interface that appears later, a flap, a socket
// that fails, withdrawal, and the end of Run.
func TestAnnouncer(t *testing.T) {
	eth0 := link("eth0", func(l *Link) { l.MAC = ourMAC }, "198.18.64.1/24", "2001:db8:64::1/64")
	eth9 := link("eth9", func(l *Link) { l.MAC = net.HardwareAddr{2, 0, 0, 0, 0, 9} })
	k := &fakeKernel{opened: map[respKey][]*fakeSockets{}, fail: map[string]error{}}
	k.setLinks(eth0)
	ev := &recEvents{}
	a := newAnnouncer(Options{
		Events:             ev,
		Metrics:            NewMetrics(),
		ProbeTimeout:       10 * time.Millisecond,
		GratuitousInterval: time.Millisecond,
		LinkPollInterval:   10 * time.Millisecond,
		Logger:             ktesting.NewLogger(t, ktesting.NewConfig()),
	}, k.listLinks, k.open)

	vipB := netip.MustParseAddr("198.18.64.11")
	desired := map[netip.Addr]Target{vip4: {}, vip6: {}, vipB: {Interfaces: []string{"eth9"}}}
	a.Sync(desired) // before Run: kept
	delete(desired, vip6)

	ctx, cancel := context.WithCancel(context.Background())
	var runErr error
	finished := make(chan struct{})
	go func() {
		runErr = a.Run(ctx)
		close(finished)
	}()
	t.Cleanup(func() {
		cancel()
		<-finished
	})

	waitState := func(what string, want map[netip.Addr]Status) {
		t.Helper()
		var diff string
		waitFor(t, what, func() bool {
			diff = cmp.Diff(want, a.State(), statusCmp())
			return diff == ""
		})
	}
	waitState("announced on eth0, eth9 missing", map[netip.Addr]Status{
		vip4: {Announced: []string{"eth0"}},
		vip6: {Announced: []string{"eth0"}},
		vipB: {Unavailable: []string{"eth9"}},
	})
	ev.wait(t, "announcing 198.18.64.10 eth0", "announcing 2001:db8:64::10 eth0", "error eth9: l2: no such interface")
	k.waitPolls(t, 5) // several polls: the error is told once
	if got := ev.take(); len(got) > 0 {
		t.Errorf("events after more polls: %v, want none", got)
	}
	arpSent := func() int { return len(k.sockets("eth0", protoARP)[0].arp.written()) }
	waitFor(t, "a probe and 3 gratuitous pairs", func() bool { return arpSent() >= 1+3*2 })
	if n := arpSent(); n != 1+3*2 {
		t.Errorf("%d ARP packets sent, want a probe and 3 gratuitous pairs", n)
	}

	// The configured interface appears.
	k.setLinks(eth0, eth9)
	waitState("announced on eth9", map[netip.Addr]Status{
		vip4: {Announced: []string{"eth0"}},
		vip6: {Announced: []string{"eth0"}},
		vipB: {Announced: []string{"eth9"}},
	})
	ev.wait(t, "announcing 198.18.64.11 eth9")

	// eth0 flaps: withdrawn, reopened, probed, announced, gratuitous again.
	eth0.CarrierChanges++
	k.setLinks(eth0, eth9)
	waitFor(t, "eth0 reopened", func() bool {
		s := k.sockets("eth0", protoARP)
		return len(s) == 2 && len(s[1].arp.written()) == 1+3*2 && len(k.sockets("eth0", protoNDP)) == 2
	})
	waitState("announced again", map[netip.Addr]Status{
		vip4: {Announced: []string{"eth0"}},
		vip6: {Announced: []string{"eth0"}},
		vipB: {Announced: []string{"eth9"}},
	})
	ev.wait(t, "announcing 198.18.64.10 eth0", "announcing 2001:db8:64::10 eth0", "withdrawn 198.18.64.10 eth0", "withdrawn 2001:db8:64::10 eth0")
	if !isClosed(k.sockets("eth0", protoARP)[0].arp.closed) {
		t.Error("old ARP socket not closed")
	}

	// eth9's socket fails: told, reopened.
	k.mu.Lock()
	k.fail["eth9"] = nil
	k.mu.Unlock()
	broken := k.sockets("eth9", protoARP)[0]
	a.rmu.Lock()
	r := a.responders[respKey{"eth9", protoARP}]
	a.rmu.Unlock()
	r.fail(errors.New("boom"))
	waitFor(t, "eth9 reopened", func() bool { return len(k.sockets("eth9", protoARP)) == 2 })
	waitState("announced again on eth9", map[netip.Addr]Status{
		vip4: {Announced: []string{"eth0"}},
		vip6: {Announced: []string{"eth0"}},
		vipB: {Announced: []string{"eth9"}},
	})
	if !isClosed(broken.arp.closed) {
		t.Error("failed socket not closed")
	}
	ev.wait(t, "announcing 198.18.64.11 eth9", "error eth9: boom", "withdrawn 198.18.64.11 eth9")

	// Withdraw all.
	a.Sync(nil)
	waitState("nothing", map[netip.Addr]Status{})
	ev.wait(t, "withdrawn 198.18.64.10 eth0", "withdrawn 198.18.64.11 eth9", "withdrawn 2001:db8:64::10 eth0")

	// The end of Run closes everything.
	a.Sync(map[netip.Addr]Target{vip4: {}})
	waitState("announced", map[netip.Addr]Status{vip4: {Announced: []string{"eth0"}}})
	ev.wait(t, "announcing 198.18.64.10 eth0")
	cancel()
	select {
	case <-finished:
		if runErr != nil {
			t.Errorf("Run: %v", runErr)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return")
	}
	for key, ss := range k.opened {
		for _, s := range ss {
			if !isClosed(s.conn(key.proto).closed) {
				t.Errorf("%v: socket left open", key)
			}
		}
	}
	if got := ev.take(); !slices.Equal(got, []string{"withdrawn 198.18.64.10 eth0"}) {
		t.Errorf("events: %v", got)
	}
}

func TestAnnouncerOpenError(t *testing.T) {
	k := &fakeKernel{opened: map[respKey][]*fakeSockets{}, fail: map[string]error{"eth0": errors.New("l2: opening NDP socket on eth0: operation not permitted")}}
	k.setLinks(link("eth0", nil, "198.18.64.1/24", "2001:db8:64::1/64"))
	ev := &recEvents{}
	a := newAnnouncer(Options{Events: ev, LinkPollInterval: 5 * time.Millisecond, Logger: ktesting.NewLogger(t, ktesting.NewConfig())}, k.listLinks, k.open)
	a.Sync(map[netip.Addr]Target{vip6: {}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	k.waitPolls(t, 5) // several polls: the error is told once
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got := ev.take()
	if len(got) != 1 || !strings.HasPrefix(got[0], "error eth0: ") {
		t.Errorf("events %v, want one error", got)
	}
}

func TestRunTwice(t *testing.T) {
	k := &fakeKernel{opened: map[respKey][]*fakeSockets{}}
	a := newAnnouncer(Options{}, k.listLinks, k.open)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- a.Run(ctx) }()
	waitFor(t, "running", a.running.Load)
	if err := a.Run(ctx); err == nil {
		t.Error("second Run: no error")
	}
	cancel()
	if err := <-done; err != nil {
		t.Error(err)
	}
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
