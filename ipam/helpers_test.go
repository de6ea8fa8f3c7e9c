package ipam_test

import (
	"net/netip"

	"github.com/google/go-cmp/cmp"

	"github.com/onprem-lb/onprem-lb/ipam"
)

// addrCmp compares netip values, whose fields are unexported.
var addrCmp = cmp.Options{
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
}

func mustRange(s string) ipam.AddressRange {
	r, err := ipam.ParseAddressRange(s)
	if err != nil {
		panic(err)
	}
	return r
}

func ranges(ss ...string) []ipam.AddressRange {
	out := make([]ipam.AddressRange, len(ss))
	for i, s := range ss {
		out[i] = mustRange(s)
	}
	return out
}

func addrs(ss ...string) []netip.Addr {
	out := make([]netip.Addr, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParseAddr(s)
	}
	return out
}
