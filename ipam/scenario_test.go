package ipam_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/onprem-lb/onprem-lb/ipam"
)

// op is what a scenario step does.
type op int

const (
	allocate op = iota
	assign
	release
	reconfigure
)

// step is one operation of a scenario and what it must give. After every
// step the allocator's invariants are checked, and a step that fails must
// leave every Service's addresses as they were.
type step struct {
	name  string // what the step shows
	op    op
	req   ipam.Request // allocate, assign
	ips   []string     // assign
	svc   string       // release: a Service of namespace default
	pools []ipam.Pool  // reconfigure

	want      []string // addresses given (allocate, assign) or released (release)
	wantPools []string // if set, the pool of each address given
	wantErr   error    // the sentinel the error wraps; nil: success
	wantUnmet error    // the sentinel Allocation.Unmet wraps
	wantEvict []string // reconfigure: "namespace/name ip Reason"
}

type scenario struct {
	name  string
	pools []ipam.Pool
	steps []step
}

func key(name string) ipam.ServiceKey { return ipam.ServiceKey{Namespace: "default", Name: name} }

func nskey(ns, name string) ipam.ServiceKey { return ipam.ServiceKey{Namespace: ns, Name: name} }

func tcp(ports ...uint16) []ipam.Port {
	out := make([]ipam.Port, len(ports))
	for i, p := range ports {
		out[i] = ipam.Port{Protocol: ipam.TCP, Port: p}
	}
	return out
}

func strs[T fmt.Stringer](xs []T) []string {
	if len(xs) == 0 {
		return nil
	}
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = x.String()
	}
	return out
}

func runScenarios(t *testing.T, scenarios []scenario) {
	t.Helper()
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			a, err := ipam.New(sc.pools)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			for i, s := range sc.steps {
				runStep(t, a, fmt.Sprintf("step %d (%s)", i, s.name), s)
				if t.Failed() {
					return
				}
			}
		})
	}
}

func runStep(t *testing.T, a *ipam.Allocator, name string, s step) {
	t.Helper()
	before := ipam.Snapshot(a)
	var (
		got    []string
		pools  []string
		err    error
		unmet  error
		evicts []string
	)
	switch s.op {
	case allocate, assign:
		var al ipam.Allocation
		if s.op == allocate {
			al, err = a.Allocate(s.req)
		} else {
			al, err = a.Assign(s.req, addrs(s.ips...))
		}
		got, unmet = strs(al.IPs()), al.Unmet
		for _, ad := range al.Addresses {
			pools = append(pools, ad.Pool)
		}
	case release:
		got = strs(a.Release(key(s.svc)))
	case reconfigure:
		var ev []ipam.Eviction
		ev, err = a.Reconfigure(s.pools)
		for _, e := range ev {
			evicts = append(evicts, fmt.Sprintf("%s %s %s", e.Service, e.IP, ipam.ReasonOf(e.Err)))
		}
	}
	if !errors.Is(err, s.wantErr) || (err == nil) != (s.wantErr == nil) {
		t.Errorf("%s: error %v, want %v", name, err, s.wantErr)
	}
	if err != nil {
		if ipam.ReasonOf(err) == "Unknown" {
			t.Errorf("%s: error %v has no reason", name, err)
		}
		if diff := cmp.Diff(before, ipam.Snapshot(a), addrCmp); diff != "" {
			t.Errorf("%s: failed, yet changed the allocations (-before +after):\n%s", name, diff)
		}
	}
	if !errors.Is(unmet, s.wantUnmet) || (unmet == nil) != (s.wantUnmet == nil) {
		t.Errorf("%s: unmet %v, want %v", name, unmet, s.wantUnmet)
	}
	if diff := cmp.Diff(s.want, got); diff != "" {
		t.Errorf("%s: addresses (-want +got):\n%s", name, diff)
	}
	if s.wantPools != nil {
		if diff := cmp.Diff(s.wantPools, pools); diff != "" {
			t.Errorf("%s: pools (-want +got):\n%s", name, diff)
		}
	}
	if diff := cmp.Diff(s.wantEvict, evicts); diff != "" {
		t.Errorf("%s: evictions (-want +got):\n%s", name, diff)
	}
	if err := ipam.CheckInvariants(a); err != nil {
		t.Errorf("%s: invariant broken: %v", name, err)
	}
	if s.op == allocate && err == nil {
		// Allocating again for the same request is idempotent.
		al, err := a.Allocate(s.req)
		if err != nil || !cmp.Equal(got, strs(al.IPs())) {
			t.Errorf("%s: allocating again gave %v, %v; want %v", name, al.IPs(), err, got)
		}
	}
}
