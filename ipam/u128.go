package ipam

import (
	"encoding/binary"
	"math"
	"math/bits"
	"net/netip"
)

// u128 is an unsigned 128-bit integer. Every address of either family is a
// u128 (IPv4 in the low 32 bits), so pools of any size are handled with
// arithmetic and never enumerated.
type u128 struct{ hi, lo uint64 }

// u128Of returns the integer value of a, which must be valid.
func u128Of(a netip.Addr) u128 {
	if a.Is4() {
		b := a.As4()
		return u128{lo: uint64(binary.BigEndian.Uint32(b[:]))}
	}
	b := a.As16()
	return u128{hi: binary.BigEndian.Uint64(b[:8]), lo: binary.BigEndian.Uint64(b[8:])}
}

// addr returns x as an address of family f. For IPv4, x must be below 2^32.
func (x u128) addr(f Family) netip.Addr {
	if f == IPv4 {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], uint32(x.lo))
		return netip.AddrFrom4(b)
	}
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], x.hi)
	binary.BigEndian.PutUint64(b[8:], x.lo)
	return netip.AddrFrom16(b)
}

func (x u128) cmp(y u128) int {
	switch {
	case x.hi < y.hi:
		return -1
	case x.hi > y.hi:
		return 1
	case x.lo < y.lo:
		return -1
	case x.lo > y.lo:
		return 1
	}
	return 0
}

func (x u128) less(y u128) bool { return x.cmp(y) < 0 }

// inc returns x+1, wrapping at 2^128.
func (x u128) inc() u128 {
	lo, c := bits.Add64(x.lo, 1, 0)
	return u128{hi: x.hi + c, lo: lo}
}

// dec returns x-1, wrapping at 0.
func (x u128) dec() u128 {
	lo, b := bits.Sub64(x.lo, 1, 0)
	return u128{hi: x.hi - b, lo: lo}
}

// sub returns x-y, wrapping.
func (x u128) sub(y u128) u128 {
	lo, b := bits.Sub64(x.lo, y.lo, 0)
	hi, _ := bits.Sub64(x.hi, y.hi, b)
	return u128{hi: hi, lo: lo}
}

// satAdd returns a+b, or math.MaxUint64 if the sum overflows.
func satAdd(a, b uint64) uint64 {
	s, c := bits.Add64(a, b, 0)
	if c != 0 {
		return math.MaxUint64
	}
	return s
}
