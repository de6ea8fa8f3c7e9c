package ipam

import (
	"fmt"
	"math/bits"
	"net/netip"
	"strings"
)

// AddressRange is the closed range of addresses [First, Last] of one family.
// Its zero value is not a valid range.
type AddressRange struct {
	First, Last netip.Addr
}

// ParseAddressRange parses one pool address entry. It accepts
//
//	a CIDR in canonical form    198.18.0.0/24, 2001:db8:18::200/122
//	a range "first-last"        198.18.0.200-198.18.0.239 (spaces around "-" allowed)
//	a single address            198.18.0.201
//
// Both ends of a range must be of the same family and first <= last. A CIDR
// with host bits set (198.18.0.1/24) is rejected rather than guessed at, as
// are zoned addresses and IPv4-mapped IPv6 addresses. Errors wrap
// ErrInvalidAddressRange and say why.
//
// For every r it returns, ParseAddressRange(r.String()) returns r.
func ParseAddressRange(s string) (AddressRange, error) {
	r, err := parseAddressRange(strings.TrimSpace(s))
	if err != nil {
		return AddressRange{}, fmt.Errorf("ipam: address range %q: %w", s, err)
	}
	return r, nil
}

func parseAddressRange(s string) (AddressRange, error) {
	if s == "" {
		return AddressRange{}, fmt.Errorf("empty: %w", ErrInvalidAddressRange)
	}
	if first, last, ok := strings.Cut(s, "-"); ok {
		a, err := parseAddr(strings.TrimSpace(first))
		if err != nil {
			return AddressRange{}, fmt.Errorf("first address: %w", err)
		}
		b, err := parseAddr(strings.TrimSpace(last))
		if err != nil {
			return AddressRange{}, fmt.Errorf("last address: %w", err)
		}
		r := AddressRange{First: a, Last: b}
		return r, r.Validate()
	}
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return AddressRange{}, fmt.Errorf("%w: %w", ErrInvalidAddressRange, err)
		}
		if err := checkAddr(p.Addr()); err != nil {
			return AddressRange{}, err
		}
		if m := p.Masked(); m != p {
			return AddressRange{}, fmt.Errorf("host bits set, the network is %s: %w", m, ErrInvalidAddressRange)
		}
		return RangeOfPrefix(p), nil
	}
	a, err := parseAddr(s)
	if err != nil {
		return AddressRange{}, err
	}
	return AddressRange{First: a, Last: a}, nil
}

func parseAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%w: %w", ErrInvalidAddressRange, err)
	}
	return a, checkAddr(a)
}

// checkAddr rejects addresses that have no single family or no place in a
// pool.
func checkAddr(a netip.Addr) error {
	switch {
	case !a.IsValid():
		return fmt.Errorf("missing address: %w", ErrInvalidAddressRange)
	case a.Zone() != "":
		return fmt.Errorf("%s has a zone: %w", a, ErrInvalidAddressRange)
	case a.Is4In6():
		return fmt.Errorf("%s is an IPv4-mapped IPv6 address, write %s: %w", a, a.Unmap(), ErrInvalidAddressRange)
	}
	return nil
}

// RangeOfPrefix returns the addresses of the valid prefix p (masked first).
func RangeOfPrefix(p netip.Prefix) AddressRange {
	p = p.Masked()
	first := u128Of(p.Addr())
	hostBits := p.Addr().BitLen() - p.Bits()
	last := first
	switch {
	case hostBits >= 128:
		last = u128{^uint64(0), ^uint64(0)}
	case hostBits >= 64:
		last.hi |= 1<<(hostBits-64) - 1
		last.lo = ^uint64(0)
	default:
		last.lo |= 1<<hostBits - 1
	}
	f := FamilyOf(p.Addr())
	return AddressRange{First: p.Addr(), Last: last.addr(f)}
}

// Validate reports whether r is a usable range: both ends valid, unzoned,
// not IPv4-mapped, of the same family, and First <= Last. Errors wrap
// ErrInvalidAddressRange.
func (r AddressRange) Validate() error {
	if err := checkAddr(r.First); err != nil {
		return fmt.Errorf("first address: %w", err)
	}
	if err := checkAddr(r.Last); err != nil {
		return fmt.Errorf("last address: %w", err)
	}
	if FamilyOf(r.First) != FamilyOf(r.Last) {
		return fmt.Errorf("mixed families: %s is %s, %s is %s: %w",
			r.First, FamilyOf(r.First), r.Last, FamilyOf(r.Last), ErrInvalidAddressRange)
	}
	if r.Last.Less(r.First) {
		return fmt.Errorf("first address %s is after last address %s: %w", r.First, r.Last, ErrInvalidAddressRange)
	}
	return nil
}

// Family returns the family of a valid range.
func (r AddressRange) Family() Family { return FamilyOf(r.First) }

// Contains reports whether a lies in r.
func (r AddressRange) Contains(a netip.Addr) bool {
	return a.IsValid() && a.BitLen() == r.First.BitLen() && !a.Less(r.First) && !r.Last.Less(a)
}

// String returns r in the shortest form ParseAddressRange reads back: a
// single address, a CIDR when r is exactly one prefix, else "first-last".
func (r AddressRange) String() string {
	if !r.First.IsValid() || !r.Last.IsValid() {
		return "invalid range"
	}
	if r.First == r.Last {
		return r.First.String()
	}
	if p, ok := r.prefix(); ok {
		return p.String()
	}
	return r.First.String() + "-" + r.Last.String()
}

// prefix returns the prefix whose addresses are exactly r, if there is one.
func (r AddressRange) prefix() (netip.Prefix, bool) {
	if r.Validate() != nil {
		return netip.Prefix{}, false
	}
	// The range is a prefix if last-first is all ones in its low bits and
	// first is aligned to it.
	d := u128Of(r.Last).sub(u128Of(r.First))
	var hostBits int
	switch {
	case d.hi == 0 && d.lo&(d.lo+1) == 0:
		hostBits = bits.OnesCount64(d.lo)
	case d.lo == ^uint64(0) && d.hi&(d.hi+1) == 0:
		hostBits = 64 + bits.OnesCount64(d.hi)
	default:
		return netip.Prefix{}, false
	}
	p := netip.PrefixFrom(r.First, r.First.BitLen()-hostBits)
	if !p.IsValid() || p.Masked().Addr() != r.First {
		return netip.Prefix{}, false
	}
	return p, true
}

// interval returns r as integers.
func (r AddressRange) interval() interval {
	return interval{u128Of(r.First), u128Of(r.Last)}
}
