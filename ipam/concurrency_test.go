package ipam_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"
	"testing"

	"github.com/onprem-lb/onprem-lb/ipam"
)

// TestConcurrentNoDuplicates runs many workers allocating, re-allocating and
// releasing at once against small pools, so they compete for the last
// addresses, while another goroutine reconfigures back and forth and reads
// stats. No address may ever be held by two Services; run with -race.
func TestConcurrentNoDuplicates(t *testing.T) {
	base := []ipam.Pool{
		{Name: "lan", AutoAssign: true, AvoidBuggyIPs: true, Addresses: ranges("198.18.0.0/26", "2001:db8::/122")},
		{Name: "dmz", AutoAssign: true, Priority: 1, Addresses: ranges("198.18.1.0/28")},
	}
	// more adds a pool; switching between base and more evicts nobody.
	more := append(clonePools(base), ipam.Pool{Name: "extra", AutoAssign: true, Priority: 2, Addresses: ranges("198.18.2.0/28")})
	// Services already in extra would be evicted by base: keep extra for
	// Services that ask for its IPs, so no one gets there automatically.
	more[2].AutoAssign = false
	a, err := ipam.New(base)
	if err != nil {
		t.Fatal(err)
	}

	// holders records which Services hold each address, and whether they
	// have the sharing key. A worker forgets its Service's addresses before
	// the call that may free them and records what it got after the call
	// returns: two Services recorded for one address at once, unless both
	// have the sharing key, means the allocator handed it out twice.
	var mu sync.Mutex
	holders := map[netip.Addr]map[string]bool{}
	var dups []string
	record := func(svc string, shares bool, ips []netip.Addr) {
		mu.Lock()
		defer mu.Unlock()
		for _, ip := range ips {
			for other, otherShares := range holders[ip] {
				if !shares || !otherShares {
					dups = append(dups, fmt.Sprintf("%s held by %s and %s", ip, other, svc))
				}
			}
			if holders[ip] == nil {
				holders[ip] = map[string]bool{}
			}
			holders[ip][svc] = shares
		}
	}
	forget := func(svc string) {
		mu.Lock()
		defer mu.Unlock()
		for ip, hs := range holders {
			delete(hs, svc)
			if len(hs) == 0 {
				delete(holders, ip)
			}
		}
	}

	const workers, ops = 16, 500
	var wg sync.WaitGroup
	done := make(chan struct{})
	reconfigured := make(chan struct{})
	go func() {
		defer close(reconfigured)
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			ev, err := a.Reconfigure([][]ipam.Pool{base, more}[i%2])
			if err != nil || len(ev) > 0 {
				t.Errorf("Reconfigure: %v, %v", ev, err)
				return
			}
			_ = a.Stats()
		}
	}()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for range ops {
				svc := fmt.Sprintf("w%d-s%d", w, rng.IntN(8))
				req := ipam.Request{Service: key(svc), Ports: tcp(uint16(1 + rng.IntN(3)))}
				switch rng.IntN(5) {
				case 0:
					req.Policy = ipam.PreferDualStack
				case 1:
					req.IPs = addrs(fmt.Sprintf("198.18.0.%d", 1+rng.IntN(62)))
				case 2:
					req.SharingKey = "k"
				}
				if rng.IntN(3) == 0 {
					forget(svc)
					a.Release(key(svc))
					continue
				}
				forget(svc)
				al, err := a.Allocate(req)
				switch {
				case err == nil:
					record(svc, req.SharingKey != "", al.IPs())
				case ipam.ReasonOf(err) == "Unknown" || errors.Is(err, ipam.ErrInvalidRequest):
					t.Errorf("Allocate(%s): %v", svc, err)
				}
			}
		}()
	}
	wg.Wait()
	close(done)
	<-reconfigured
	if len(dups) > 0 {
		t.Fatalf("%d duplicate addresses, first: %s", len(dups), dups[0])
	}
	if err := ipam.CheckInvariants(a); err != nil {
		t.Fatal(err)
	}
	// Release everything: every pool is empty again.
	for svc := range ipam.Snapshot(a) {
		a.Release(svc)
	}
	for _, s := range a.Stats() {
		if s.InUse != 0 {
			t.Errorf("%+v: in use after releasing every Service", s)
		}
	}
}
