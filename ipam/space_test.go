package ipam

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func addrValue(s string) u128 { return u128Of(netip.MustParseAddr(s)) }

func TestBuggyIndexInterval(t *testing.T) {
	sp := &space{family: IPv4, buggy: true}
	tests := []struct {
		name        string
		first, last string
		want        []string // first and last usable address, nil if none
	}{
		{name: "whole /24", first: "10.0.0.0", last: "10.0.0.255", want: []string{"10.0.0.1", "10.0.0.254"}},
		{name: "across blocks", first: "10.0.0.255", last: "10.0.2.0", want: []string{"10.0.1.1", "10.0.1.254"}},
		{name: "usable ends", first: "10.0.0.7", last: "10.0.3.9", want: []string{"10.0.0.7", "10.0.3.9"}},
		{name: "only .255 and .0", first: "10.0.0.255", last: "10.0.1.0"},
		{name: "only 0.0.0.0", first: "0.0.0.0", last: "0.0.0.0"},
		{name: "top of the space", first: "255.255.255.254", last: "255.255.255.255", want: []string{"255.255.255.254", "255.255.255.254"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			iv, ok := sp.indexInterval(interval{addrValue(tt.first), addrValue(tt.last)})
			var got []string
			if ok {
				got = []string{sp.addr(iv.first).String(), sp.addr(iv.last).String()}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("usable range (-want +got):\n%s", diff)
			}
		})
	}
}

// FuzzBuggyIndex checks that the avoidBuggyIPs numbering is a bijection
// between usable IPv4 addresses and indexes, in order.
func FuzzBuggyIndex(f *testing.F) {
	f.Add(uint32(0), uint32(1))
	f.Add(uint32(0x0a0000fe), uint32(0x0a000101))
	f.Add(uint32(0xffffffff), uint32(0))
	sp := &space{family: IPv4, buggy: true}
	f.Fuzz(func(t *testing.T, a, b uint32) {
		x, y := u128{lo: uint64(a)}, u128{lo: uint64(b)}
		for _, z := range []u128{x, y} {
			if sp.skipped(z) {
				continue
			}
			if got := sp.addr(sp.index(z)); got != z.addr(IPv4) {
				t.Fatalf("%s → index %d → %s", z.addr(IPv4), sp.index(z).lo, got)
			}
		}
		if !sp.skipped(x) && !sp.skipped(y) && x.cmp(y) != sp.index(x).cmp(sp.index(y)) {
			t.Fatalf("order of %s and %s not kept", x.addr(IPv4), y.addr(IPv4))
		}
		if x.less(y) || x == y {
			iv, ok := sp.indexInterval(interval{x, y})
			if !ok {
				for z := x; !y.less(z); z = z.inc() {
					if !sp.skipped(z) {
						t.Fatalf("[%s, %s] said empty but holds %s", x.addr(IPv4), y.addr(IPv4), z.addr(IPv4))
					}
				}
				return
			}
			lo, hi := sp.addr(iv.first), sp.addr(iv.last)
			if lo.Less(x.addr(IPv4)) || y.addr(IPv4).Less(hi) || sp.skipped(u128Of(lo)) || sp.skipped(u128Of(hi)) {
				t.Fatalf("[%s, %s] → [%s, %s]", x.addr(IPv4), y.addr(IPv4), lo, hi)
			}
			// Nothing usable lies between x and lo, or hi and y.
			for z := x; z.less(u128Of(lo)); z = z.inc() {
				if !sp.skipped(z) {
					t.Fatalf("[%s, %s] starts at %s, skipping usable %s", x.addr(IPv4), y.addr(IPv4), lo, z.addr(IPv4))
				}
			}
			for z := y; u128Of(hi).less(z); z = z.dec() {
				if !sp.skipped(z) {
					t.Fatalf("[%s, %s] ends at %s, skipping usable %s", x.addr(IPv4), y.addr(IPv4), hi, z.addr(IPv4))
				}
			}
		}
	})
}
