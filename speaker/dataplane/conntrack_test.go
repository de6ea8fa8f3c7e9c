package dataplane

import (
	"context"
	"net/netip"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func udpService(local bool, eps ...Endpoint) Service {
	return Service{Namespace: "ns", Name: "dns", VIPs: []netip.Addr{addr("198.18.0.53"), addr("2001:db8::53")}, Local: local,
		Ports: []Port{{Protocol: UDP, Port: 53, Endpoints: eps}, {Protocol: TCP, Port: 53, Endpoints: eps}}}
}

func TestStaleUDP(t *testing.T) {
	v4, v6 := addr("198.18.0.53"), addr("2001:db8::53")
	e1 := Endpoint{IP: addr("10.0.0.1"), Port: 5353, Local: true}
	e2 := Endpoint{IP: addr("10.0.0.2"), Port: 5353}
	e2other := Endpoint{IP: addr("10.0.0.2"), Port: 5454}
	e6 := Endpoint{IP: addr("fd00::1"), Port: 5353}
	for _, tt := range []struct {
		name     string
		old, new []Service
		want     []Flow
	}{
		{"nothing changed", []Service{udpService(false, e1, e2)}, []Service{udpService(false, e1, e2)}, nil},
		{"an endpoint added", []Service{udpService(false, e1)}, []Service{udpService(false, e1, e2)}, nil},
		{"an endpoint removed: its flows to each VIP of its family",
			[]Service{udpService(false, e1, e2, e6)}, []Service{udpService(false, e1, e6)},
			[]Flow{{VIP: v4, Port: 53, Endpoint: e2.IP}}},
		{"an IPv6 endpoint removed", []Service{udpService(false, e1, e6)}, []Service{udpService(false, e1)},
			[]Flow{{VIP: v6, Port: 53, Endpoint: e6.IP}}},
		{"the same address on another target port is the same flow", []Service{udpService(false, e2)}, []Service{udpService(false, e2other)}, nil},
		{"the Service removed", []Service{udpService(false, e1)}, nil,
			[]Flow{{VIP: v4, Port: 53, Endpoint: e1.IP}}},
		{"Local: a remote endpoint was never forwarded to", []Service{udpService(true, e1, e2)}, []Service{udpService(true, e1)}, nil},
		{"turned Local: the remote endpoint is no longer used", []Service{udpService(false, e1, e2)}, []Service{udpService(true, e1, e2)},
			[]Flow{{VIP: v4, Port: 53, Endpoint: e2.IP}}},
		{"TCP only: nothing", []Service{webService(ep1, ep2)}, []Service{webService(ep1)}, nil},
		{"guarded (kube-proxy forwards): nothing", []Service{{Namespace: "ns", Name: "g", VIPs: []netip.Addr{v4}, ProxiedElsewhere: true}}, nil, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, staleUDP(tt.old, tt.new), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("staleUDP (-want +got):\n%s", diff)
			}
		})
	}
}

type fakeConntrack struct {
	mu      sync.Mutex
	deleted []Flow
}

func (c *fakeConntrack) DeleteUDP(_ context.Context, f Flow) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deleted = append(c.deleted, f)
	return nil
}

// TestSyncClearsStaleUDP: a Sync that removes a UDP endpoint deletes its conntrack entries,
// after the rules no longer lead to it; a failed Sync deletes them at the next success.
func TestSyncClearsStaleUDP(t *testing.T) {
	k, ct := newFakeKernel(), &fakeConntrack{}
	d := New(Options{Runner: k, Conntrack: ct, Logger: testLogger(t)})
	e1, e2 := Endpoint{IP: addr("10.0.0.1"), Port: 5353}, Endpoint{IP: addr("10.0.0.2"), Port: 5353}
	if err := d.Sync([]Service{udpService(false, e1, e2)}); err != nil {
		t.Fatal(err)
	}
	if len(ct.deleted) != 0 {
		t.Fatalf("first Sync deleted %v", ct.deleted)
	}
	k.failNext = context.Canceled
	if err := d.Sync([]Service{udpService(false, e1)}); err == nil {
		t.Fatal("Sync with a failing restore: no error")
	}
	if err := d.Sync([]Service{udpService(false, e1)}); err != nil {
		t.Fatal(err)
	}
	want := []Flow{{VIP: addr("198.18.0.53"), Port: 53, Endpoint: e2.IP}}
	if diff := cmp.Diff(want, ct.deleted, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("conntrack deletions (-want +got):\n%s", diff)
	}
}
