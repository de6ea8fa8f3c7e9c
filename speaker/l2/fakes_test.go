package l2

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/klog/v2/ktesting"
)

var (
	ourMAC   = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
	otherMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x02}
	peerMAC  = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x03}
)

// fakeFrameConn is a packet socket: ReadFrom returns what is put in in,
// WriteTo records the frames.
type fakeFrameConn struct {
	in       chan []byte
	closed   chan struct{}
	once     sync.Once
	mu       sync.Mutex
	writes   [][]byte
	writeErr error
}

func newFakeFrameConn() *fakeFrameConn {
	return &fakeFrameConn{in: make(chan []byte, 16), closed: make(chan struct{})}
}

func (c *fakeFrameConn) ReadFrom(b []byte) (int, net.Addr, error) {
	select {
	case p := <-c.in:
		return copy(b, p), nil, nil
	case <-c.closed:
		return 0, nil, net.ErrClosed
	}
}

func (c *fakeFrameConn) WriteTo(b []byte, _ net.Addr) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.writeErr != nil {
		return 0, c.writeErr
	}
	c.writes = append(c.writes, slices.Clone(b))
	return len(b), nil
}

func (c *fakeFrameConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

func (c *fakeFrameConn) written() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.writes)
}

// recEvents records events as strings, in order.
type recEvents struct {
	mu  sync.Mutex
	evs []string
}

func (e *recEvents) add(s string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.evs = append(e.evs, s)
}

func (e *recEvents) Announcing(ip netip.Addr, iface string) {
	e.add("announcing " + ip.String() + " " + iface)
}
func (e *recEvents) Withdrawn(ip netip.Addr, iface string) {
	e.add("withdrawn " + ip.String() + " " + iface)
}
func (e *recEvents) Conflict(ip netip.Addr, iface string, mac net.HardwareAddr) {
	e.add("conflict " + ip.String() + " " + iface + " " + mac.String())
}
func (e *recEvents) InterfaceError(iface string, err error) {
	e.add("error " + iface + ": " + err.Error())
}

// wait waits until as many events as want were told since the last take or
// wait, and checks they are want, in any order.
func (e *recEvents) wait(t *testing.T, want ...string) {
	t.Helper()
	var got []string
	waitFor(t, fmt.Sprintf("events %q", want), func() bool {
		got = append(got, e.take()...)
		return len(got) >= len(want)
	})
	slices.Sort(got)
	want = slices.Sorted(slices.Values(want))
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

func (e *recEvents) take() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	evs := e.evs
	e.evs = nil
	return evs
}

// waitFor polls cond until it holds or the time is up.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

const (
	testProbeTimeout = 100 * time.Millisecond
	testReprobe      = 10 * time.Second
	testGratInterval = 100 * time.Millisecond
)

// newTestResponder returns a responder of protocol p on eth0 (ourMAC) with
// a fake socket (arpc or ndpc, by p); peerMAC is a peer. Nothing runs until
// the test calls step.
func newTestResponder(t testing.TB, p protocol) (*responder, *fakeFrameConn, *fakeFrameConn, *recEvents) {
	arpc, ndpc := newFakeFrameConn(), newFakeFrameConn()
	ev := &recEvents{}
	cfg := responderConfig{
		link:         Link{Name: "eth0", Index: 2, MAC: ourMAC},
		proto:        p,
		isPeerMAC:    func(m net.HardwareAddr) bool { return m.String() == peerMAC.String() },
		events:       ev,
		metrics:      NewMetrics(),
		probeTimeout: testProbeTimeout,
		reprobe:      testReprobe,
		gratuitous:   3,
		gratInterval: testGratInterval,
		logger:       ktesting.NewLogger(t, ktesting.NewConfig()),
	}
	conn := arpc
	if p == protoNDP {
		conn = ndpc
	}
	return newResponder(cfg, conn), arpc, ndpc, ev
}

// forceAnnounced puts ips in r as announced, without probing.
func forceAnnounced(r *responder, ips ...netip.Addr) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ip := range ips {
		r.vips[ip] = &vipState{phase: phaseAnnounced}
	}
}

func set(ips ...string) map[netip.Addr]struct{} {
	m := map[netip.Addr]struct{}{}
	for _, s := range ips {
		m[netip.MustParseAddr(s)] = struct{}{}
	}
	return m
}
