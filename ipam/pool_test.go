package ipam_test

import (
	"errors"
	"math"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/onprem-lb/onprem-lb/ipam"
)

func TestNewValidation(t *testing.T) {
	lan := ipam.Pool{Name: "lan", Addresses: ranges("198.18.0.0/24", "2001:db8:18::/120"), AutoAssign: true}
	type where struct {
		Index  int
		Pool   string
		Field  string
		Detail string // a substring of the detail
	}
	tests := []struct {
		name  string
		pools []ipam.Pool
		want  *where // nil: valid
		parse bool   // the error also wraps ErrInvalidAddressRange
	}{
		{name: "empty list", pools: nil},
		{name: "valid", pools: []ipam.Pool{lan, {Name: "dmz", Addresses: ranges("198.18.1.0/24")}}},
		{
			name:  "adjacent pools",
			pools: []ipam.Pool{{Name: "a", Addresses: ranges("198.18.0.0-198.18.0.9")}, {Name: "b", Addresses: ranges("198.18.0.10-198.18.0.19")}},
		},
		{
			name:  "adjacent ranges in a pool",
			pools: []ipam.Pool{{Name: "a", Addresses: ranges("198.18.0.0-198.18.0.9", "198.18.0.10-198.18.0.19"), Exclude: ranges("198.18.0.5-198.18.0.15")}},
		},
		{
			name:  "empty name",
			pools: []ipam.Pool{{Addresses: ranges("198.18.0.0/24")}},
			want:  &where{0, "", "name", "must not be empty"},
		},
		{
			name:  "name not a DNS label",
			pools: []ipam.Pool{lan, {Name: "Lan_2", Addresses: ranges("198.18.1.0/24")}},
			want:  &where{1, "Lan_2", "name", "not a DNS label"},
		},
		{
			name:  "name ends with dash",
			pools: []ipam.Pool{{Name: "lan-", Addresses: ranges("198.18.1.0/24")}},
			want:  &where{0, "lan-", "name", "not a DNS label"},
		},
		{
			name:  "name too long",
			pools: []ipam.Pool{{Name: strings.Repeat("a", 64), Addresses: ranges("198.18.1.0/24")}},
			want:  &where{0, strings.Repeat("a", 64), "name", "longer than 63"},
		},
		{
			name:  "duplicate name",
			pools: []ipam.Pool{lan, {Name: "lan", Addresses: ranges("198.18.1.0/24")}},
			want:  &where{1, "lan", "name", "duplicate name, also used by pools[0]"},
		},
		{
			name:  "no addresses",
			pools: []ipam.Pool{{Name: "lan"}},
			want:  &where{0, "lan", "addresses", "at least one"},
		},
		{
			name:  "first after last",
			pools: []ipam.Pool{{Name: "lan", Addresses: []ipam.AddressRange{mustRange("198.18.0.0/24"), {First: netip.MustParseAddr("198.18.1.9"), Last: netip.MustParseAddr("198.18.1.1")}}}},
			want:  &where{0, "lan", "addresses[1]", "bad address range"},
			parse: true,
		},
		{
			name:  "mixed families",
			pools: []ipam.Pool{{Name: "lan", Addresses: []ipam.AddressRange{{First: netip.MustParseAddr("198.18.1.1"), Last: netip.MustParseAddr("2001:db8::1")}}}},
			want:  &where{0, "lan", "addresses[0]", "bad address range"},
			parse: true,
		},
		{
			name:  "zero range",
			pools: []ipam.Pool{{Name: "lan", Addresses: make([]ipam.AddressRange, 1)}},
			want:  &where{0, "lan", "addresses[0]", "bad address range"},
			parse: true,
		},
		{
			name:  "overlap across pools",
			pools: []ipam.Pool{lan, {Name: "dmz", Addresses: ranges("198.18.1.0/24", "198.18.0.200-198.18.1.5")}},
			want:  &where{1, "dmz", "addresses[1]", `198.18.0.200-198.18.1.5 overlaps pools[0].addresses[0] (198.18.0.0/24) of pool "lan"`},
		},
		{
			name:  "IPv6 overlap across pools",
			pools: []ipam.Pool{{Name: "big", Addresses: ranges("2001:db8::/32")}, lan},
			want:  &where{1, "lan", "addresses[1]", `2001:db8:18::/120 overlaps pools[0].addresses[0] (2001:db8::/32) of pool "big"`},
		},
		{
			name:  "overlap within a pool",
			pools: []ipam.Pool{{Name: "lan", Addresses: ranges("198.18.0.0/24", "198.18.0.7")}},
			want:  &where{0, "lan", "addresses[1]", "overlaps addresses[0] (198.18.0.0/24) of the same pool"},
		},
		{
			name:  "same range twice",
			pools: []ipam.Pool{{Name: "lan", Addresses: ranges("198.18.0.0/24", "198.18.0.0/24")}},
			want:  &where{0, "lan", "addresses[1]", "overlaps addresses[0]"},
		},
		{
			name:  "exclude outside the pool",
			pools: []ipam.Pool{{Name: "lan", Addresses: ranges("198.18.0.0/24"), Exclude: ranges("198.18.0.1", "198.18.1.1")}},
			want:  &where{0, "lan", "exclude[1]", "198.18.1.1 is not inside the pool's addresses"},
		},
		{
			name:  "exclude partly outside the pool",
			pools: []ipam.Pool{{Name: "lan", Addresses: ranges("198.18.0.0/24"), Exclude: ranges("198.18.0.250-198.18.1.2")}},
			want:  &where{0, "lan", "exclude[0]", "not inside"},
		},
		{
			name:  "exclude of the other family",
			pools: []ipam.Pool{{Name: "lan", Addresses: ranges("198.18.0.0/24"), Exclude: ranges("2001:db8::1")}},
			want:  &where{0, "lan", "exclude[0]", "not inside"},
		},
		{
			name:  "bad exclude",
			pools: []ipam.Pool{{Name: "lan", Addresses: ranges("198.18.0.0/24"), Exclude: make([]ipam.AddressRange, 1)}},
			want:  &where{0, "lan", "exclude[0]", "bad address range"},
			parse: true,
		},
		{
			name:  "bad namespace",
			pools: []ipam.Pool{{Name: "lan", Addresses: ranges("198.18.0.0/24"), Namespaces: []string{"team-a", "Team B"}}},
			want:  &where{0, "lan", "namespaces[1]", `namespace "Team B"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := ipam.New(tt.pools)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				if a == nil {
					t.Fatal("New returned nil")
				}
				return
			}
			if !errors.Is(err, ipam.ErrInvalidPool) {
				t.Fatalf("New: %v, want ErrInvalidPool", err)
			}
			if got := errors.Is(err, ipam.ErrInvalidAddressRange); got != tt.parse {
				t.Errorf("errors.Is(ErrInvalidAddressRange) = %v, want %v", got, tt.parse)
			}
			if got := ipam.ReasonOf(err); got != "InvalidPool" {
				t.Errorf("ReasonOf = %q, want InvalidPool", got)
			}
			var pe *ipam.PoolError
			if !errors.As(err, &pe) {
				t.Fatalf("New: %v is not a *PoolError", err)
			}
			got := &where{pe.Index, pe.Pool, pe.Field, tt.want.Detail}
			if !strings.Contains(pe.Detail, tt.want.Detail) {
				got.Detail = pe.Detail
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("pool error (-want +got):\n%s\nerror: %v", diff, err)
			}
		})
	}
}

func TestStats(t *testing.T) {
	a, err := ipam.New([]ipam.Pool{
		{Name: "v4", AutoAssign: true, Priority: 1, Addresses: ranges("198.18.0.0/24", "198.18.1.0-198.18.1.9"), Exclude: ranges("198.18.0.0/30", "198.18.1.9")},
		{Name: "buggy", AutoAssign: true, AvoidBuggyIPs: true, Addresses: ranges("198.19.0.0/22", "2001:db8:1::/120"), Exclude: ranges("198.19.0.255-198.19.1.1")},
		{Name: "v6-64", Addresses: ranges("2001:db8:2::/64")},
		{Name: "v6-48", Addresses: ranges("2001:db8:3::/48", "2001:db8:4::/63")},
		{Name: "v6-65", Addresses: ranges("2001:db8:5::/65")},
	})
	if err != nil {
		t.Fatal(err)
	}
	key := func(n string) ipam.ServiceKey { return ipam.ServiceKey{Namespace: "default", Name: n} }
	for _, r := range []ipam.Request{
		{Service: key("a"), SharingKey: "k", Ports: []ipam.Port{{ipam.TCP, 80}}},
		{Service: key("b"), SharingKey: "k", Ports: []ipam.Port{{ipam.TCP, 443}}},
		{Service: key("c"), Pool: "v6-64", Families: []ipam.Family{ipam.IPv6}},
		{Service: key("d"), Pool: "buggy", Policy: ipam.RequireDualStack},
	} {
		if _, err := a.Allocate(r); err != nil {
			t.Fatal(err)
		}
	}
	want := []ipam.PoolStats{
		{Pool: "buggy", Family: ipam.IPv4, Total: 4*254 - 1, InUse: 1},
		{Pool: "buggy", Family: ipam.IPv6, Total: 256, InUse: 1},
		{Pool: "v4", Family: ipam.IPv4, Total: 256 - 4 + 9, InUse: 1},
		{Pool: "v6-48", Family: ipam.IPv6, Total: math.MaxUint64},
		{Pool: "v6-64", Family: ipam.IPv6, Total: math.MaxUint64, InUse: 1},
		{Pool: "v6-65", Family: ipam.IPv6, Total: 1 << 63},
	}
	if diff := cmp.Diff(want, a.Stats()); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
}
