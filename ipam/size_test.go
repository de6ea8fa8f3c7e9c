package ipam_test

import (
	"fmt"
	"testing"

	"github.com/onprem-lb/onprem-lb/ipam"
)

// TestHugePools shows that a pool's size costs nothing: allocating from a
// /48 or the whole IPv6 space keeps one free interval, and allocating and
// releasing costs the same allocations as in a /120.
func TestHugePools(t *testing.T) {
	allocs := map[string]float64{}
	for _, prefix := range []string{"2001:db8::/120", "2001:db8::/64", "2001:db8::/48", "::/0"} {
		t.Run(prefix, func(t *testing.T) {
			a, err := ipam.New([]ipam.Pool{{Name: "v6", AutoAssign: true, Addresses: ranges(prefix)}})
			if err != nil {
				t.Fatal(err)
			}
			for i := range 200 {
				if _, err := a.Allocate(ipam.Request{Service: key(fmt.Sprint("s", i)), Families: []ipam.Family{ipam.IPv6}}); err != nil {
					t.Fatal(err)
				}
			}
			if n := ipam.FreeIntervals(a, "v6", ipam.IPv6); n != 1 {
				t.Errorf("%d free intervals after allocating from the bottom, want 1", n)
			}
			a.Release(key("s100"))
			if n := ipam.FreeIntervals(a, "v6", ipam.IPv6); n != 2 {
				t.Errorf("%d free intervals after one hole, want 2", n)
			}
			req := ipam.Request{Service: key("x"), Families: []ipam.Family{ipam.IPv6}}
			allocs[prefix] = testing.AllocsPerRun(100, func() {
				if _, err := a.Allocate(req); err != nil {
					t.Fatal(err)
				}
				a.Release(req.Service)
			})
		})
	}
	for prefix, n := range allocs {
		if n != allocs["2001:db8::/120"] {
			t.Errorf("allocate+release in %s: %v allocations, in a /120: %v", prefix, n, allocs["2001:db8::/120"])
		}
	}
}
