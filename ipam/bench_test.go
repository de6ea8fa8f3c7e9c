package ipam_test

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/onprem-lb/onprem-lb/ipam"
)

func newBench(b *testing.B, pools ...ipam.Pool) *ipam.Allocator {
	b.Helper()
	a, err := ipam.New(pools)
	if err != nil {
		b.Fatal(err)
	}
	return a
}

// BenchmarkAllocateRelease allocates and releases one Service in a pool that
// already holds 10,000: "dense" packs them at the bottom of the pool,
// "fragmented" frees every other one, so the free set has 5,000 intervals.
func BenchmarkAllocateRelease(b *testing.B) {
	for _, fragmented := range []bool{false, true} {
		name := map[bool]string{false: "dense-10k", true: "fragmented-10k"}[fragmented]
		b.Run(name, func(b *testing.B) {
			a := newBench(b, ipam.Pool{Name: "lan", AutoAssign: true, Addresses: ranges("198.18.0.0/15", "2001:db8::/64")})
			for i := range 10_000 {
				if _, err := a.Allocate(ipam.Request{Service: key(fmt.Sprint("s", i)), Ports: tcp(80)}); err != nil {
					b.Fatal(err)
				}
			}
			if fragmented {
				for i := 0; i < 10_000; i += 2 {
					a.Release(key(fmt.Sprint("s", i)))
				}
			}
			req := ipam.Request{Service: key("bench"), Ports: tcp(80)}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := a.Allocate(req); err != nil {
					b.Fatal(err)
				}
				a.Release(req.Service)
			}
		})
	}
}

// BenchmarkAllocateIPv6 allocates a new Service per iteration, keeping them
// all, in pools of growing size: time and memory per allocation must not
// depend on the pool's size.
func BenchmarkAllocateIPv6(b *testing.B) {
	for _, prefix := range []string{"2001:db8::/96", "2001:db8::/64", "2001:db8::/48", "2001:db8::/32"} {
		b.Run(prefix, func(b *testing.B) {
			a := newBench(b, ipam.Pool{Name: "v6", AutoAssign: true, Addresses: ranges(prefix)})
			reqs := make([]ipam.Request, b.N)
			for i := range reqs {
				reqs[i] = ipam.Request{Service: key(fmt.Sprint("s", i)), Families: []ipam.Family{ipam.IPv6}}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if _, err := a.Allocate(reqs[i]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRebuild10k is a CCM restart: a new Allocator and Assign of the
// addresses 10,000 Services have in their status.
func BenchmarkRebuild10k(b *testing.B) {
	reqs := make([]ipam.Request, 10_000)
	ips := make([][]netip.Addr, len(reqs))
	base := netip.MustParseAddr("198.18.0.0")
	for i := range reqs {
		reqs[i] = ipam.Request{Service: key(fmt.Sprint("s", i)), Ports: tcp(80)}
		ips[i] = []netip.Addr{base}
		base = base.Next().Next()
	}
	b.ReportAllocs()
	for b.Loop() {
		a := newBench(b, ipam.Pool{Name: "lan", AutoAssign: true, Addresses: ranges("198.18.0.0/15")})
		for i, r := range reqs {
			if _, err := a.Assign(r, ips[i]); err != nil {
				b.Fatal(err)
			}
		}
	}
}
