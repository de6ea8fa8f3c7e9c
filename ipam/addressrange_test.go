package ipam_test

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/onprem-lb/onprem-lb/ipam"
)

func TestParseAddressRange(t *testing.T) {
	tests := []struct {
		name        string
		in          string
		first, last string // want; empty: an error
		str         string // want String(); "" means in
	}{
		{name: "IPv4 CIDR", in: "198.18.0.0/24", first: "198.18.0.0", last: "198.18.0.255"},
		{name: "IPv4 /32", in: "198.18.0.7/32", first: "198.18.0.7", last: "198.18.0.7", str: "198.18.0.7"},
		{name: "IPv4 /0", in: "0.0.0.0/0", first: "0.0.0.0", last: "255.255.255.255"},
		{name: "IPv6 CIDR", in: "2001:db8:18::200/122", first: "2001:db8:18::200", last: "2001:db8:18::23f"},
		{name: "IPv6 /64", in: "2001:db8::/64", first: "2001:db8::", last: "2001:db8::ffff:ffff:ffff:ffff"},
		{name: "IPv6 /0", in: "::/0", first: "::", last: "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"},
		{name: "IPv6 /63", in: "2001:db8::/63", first: "2001:db8::", last: "2001:db8:0:1:ffff:ffff:ffff:ffff"},
		{name: "IPv4 range", in: "198.18.0.200-198.18.0.239", first: "198.18.0.200", last: "198.18.0.239"},
		{name: "range with spaces", in: " 198.18.0.200 - 198.18.0.239 ", first: "198.18.0.200", last: "198.18.0.239", str: "198.18.0.200-198.18.0.239"},
		{name: "range that is a CIDR", in: "198.18.0.0-198.18.0.255", first: "198.18.0.0", last: "198.18.0.255", str: "198.18.0.0/24"},
		{name: "IPv6 range", in: "2001:db8::10-2001:db8::1:0", first: "2001:db8::10", last: "2001:db8::1:0"},
		{name: "single range", in: "198.18.0.5-198.18.0.5", first: "198.18.0.5", last: "198.18.0.5", str: "198.18.0.5"},
		{name: "single IPv4", in: "198.18.0.201", first: "198.18.0.201", last: "198.18.0.201"},
		{name: "single IPv6", in: "2001:db8::1", first: "2001:db8::1", last: "2001:db8::1"},
		{name: "empty", in: ""},
		{name: "blank", in: "   "},
		{name: "garbage", in: "lan"},
		{name: "first after last", in: "198.18.0.9-198.18.0.1"},
		{name: "mixed families", in: "198.18.0.1-2001:db8::1"},
		{name: "missing last", in: "198.18.0.1-"},
		{name: "missing first", in: "-198.18.0.1"},
		{name: "two dashes", in: "198.18.0.1-198.18.0.2-198.18.0.3"},
		{name: "host bits set", in: "198.18.0.1/24"},
		{name: "bad prefix length", in: "198.18.0.0/33"},
		{name: "zone", in: "fe80::1%eth0"},
		{name: "zone in range", in: "fe80::1%eth0-fe80::2"},
		{name: "IPv4-mapped", in: "::ffff:198.18.0.1"},
		{name: "IPv4-mapped CIDR", in: "::ffff:198.18.0.0/120"},
		{name: "CIDR in range", in: "198.18.0.0/24-198.18.1.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ipam.ParseAddressRange(tt.in)
			if tt.first == "" {
				if !errors.Is(err, ipam.ErrInvalidAddressRange) {
					t.Fatalf("ParseAddressRange(%q) = %v, %v; want ErrInvalidAddressRange", tt.in, r, err)
				}
				if got := ipam.ReasonOf(err); got != "InvalidAddressRange" {
					t.Errorf("ReasonOf = %q", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseAddressRange(%q): %v", tt.in, err)
			}
			want := ipam.AddressRange{First: netip.MustParseAddr(tt.first), Last: netip.MustParseAddr(tt.last)}
			if diff := cmp.Diff(want, r, addrCmp); diff != "" {
				t.Errorf("range (-want +got):\n%s", diff)
			}
			str := tt.str
			if str == "" {
				str = tt.in
			}
			if diff := cmp.Diff(str, r.String()); diff != "" {
				t.Errorf("String (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAddressRangeValidate(t *testing.T) {
	a := netip.MustParseAddr
	tests := []struct {
		name string
		r    ipam.AddressRange
		ok   bool
	}{
		{name: "ok", r: ipam.AddressRange{First: a("10.0.0.1"), Last: a("10.0.0.2")}, ok: true},
		{name: "zero", r: ipam.AddressRange{}},
		{name: "no last", r: ipam.AddressRange{First: a("10.0.0.1")}},
		{name: "reversed", r: ipam.AddressRange{First: a("10.0.0.2"), Last: a("10.0.0.1")}},
		{name: "mixed", r: ipam.AddressRange{First: a("10.0.0.2"), Last: a("2001:db8::1")}},
		{name: "mapped", r: ipam.AddressRange{First: a("::ffff:10.0.0.2"), Last: a("::ffff:10.0.0.3")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.r.Validate()
			if tt.ok != (err == nil) || err != nil && !errors.Is(err, ipam.ErrInvalidAddressRange) {
				t.Errorf("Validate() = %v, want ok %v", err, tt.ok)
			}
		})
	}
}

func TestAddressRangeContains(t *testing.T) {
	r := mustRange("198.18.0.10-198.18.0.20")
	for _, tt := range []struct {
		ip   string
		want bool
	}{{"198.18.0.10", true}, {"198.18.0.20", true}, {"198.18.0.9", false}, {"198.18.0.21", false}, {"::ffff:198.18.0.15", false}, {"2001:db8::", false}} {
		if got := r.Contains(netip.MustParseAddr(tt.ip)); got != tt.want {
			t.Errorf("Contains(%s) = %v, want %v", tt.ip, got, tt.want)
		}
	}
}

// FuzzParseAddressRange checks that parsing never panics, that every range it
// accepts is valid, and that parse → String → parse is the identity.
func FuzzParseAddressRange(f *testing.F) {
	for _, s := range []string{
		"198.18.0.0/24", "198.18.0.200-198.18.0.239", "2001:db8:18::200/122", "2001:db8::/64",
		"198.18.0.201", "::", "::/0", "0.0.0.0/0", "198.18.0.9-198.18.0.1", "198.18.0.1/24",
		"fe80::1%eth0", "::ffff:1.2.3.4", "1.2.3.4-::1", " 1.2.3.4 - 1.2.3.5 ", "-", "/", "1.2.3.4/",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ipam.ParseAddressRange(s)
		if err != nil {
			if !errors.Is(err, ipam.ErrInvalidAddressRange) {
				t.Fatalf("ParseAddressRange(%q): error %v does not wrap ErrInvalidAddressRange", s, err)
			}
			return
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("ParseAddressRange(%q) = %v, which is invalid: %v", s, r, err)
		}
		if !r.Contains(r.First) || !r.Contains(r.Last) {
			t.Fatalf("%v does not contain its ends", r)
		}
		again, err := ipam.ParseAddressRange(r.String())
		if err != nil {
			t.Fatalf("ParseAddressRange(%q) = %v; its String %q does not parse: %v", s, r, r.String(), err)
		}
		if again != r {
			t.Fatalf("ParseAddressRange(%q) = %v; String %q parses to %v", s, r, r.String(), again)
		}
	})
}
