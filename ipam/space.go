package ipam

import "net/netip"

// space is the addresses of one family in one pool, and which are free.
//
// The free addresses are kept as index values. Without avoidBuggyIPs an
// address's index is its integer value. With it, IPv4 addresses are
// numbered skipping every .0 and .255 (index = 254·(a>>8) + (a&255) − 1),
// so skipped addresses take no room in the free set, and two usable blocks
// separated only by skipped addresses merge into one interval: the lowest
// free address is always the first value of the first interval.
type space struct {
	pool     *pool
	family   Family
	ranges   []interval // address values, sorted, merged
	excluded []interval // address values, sorted, merged, inside ranges
	buggy    bool       // IPv4 with avoidBuggyIPs
	free     intervalSet
	total    uint64 // addresses that can be handed out, saturating at math.MaxUint64
	inUse    uint64 // addresses held by at least one Service
}

// newSpace returns the space of ranges minus excludes, all free.
func newSpace(p *pool, f Family, ranges, excludes []interval, buggy bool) *space {
	sp := &space{pool: p, family: f, ranges: ranges, excluded: excludes, buggy: buggy}
	var free []interval
	for _, iv := range subtractIntervals(ranges, excludes) {
		if iv, ok := sp.indexInterval(iv); ok {
			if n := len(free); n > 0 && free[n-1].touches(iv) {
				free[n-1].last = iv.last
			} else {
				free = append(free, iv)
			}
			sp.total = satAdd(sp.total, iv.size())
		}
	}
	sp.free = newIntervalSet(free)
	return sp
}

// skipped reports whether address value x is never handed out because of
// avoidBuggyIPs.
func (sp *space) skipped(x u128) bool {
	o := x.lo & 0xff
	return sp.buggy && (o == 0 || o == 0xff)
}

// unusable returns why the address value x of the space is never handed
// out, or "".
func (sp *space) unusable(x u128) string {
	switch {
	case findInterval(sp.excluded, x) >= 0:
		return "is excluded from pool " + sp.pool.name
	case sp.skipped(x):
		return "ends in .0 or .255 and pool " + sp.pool.name + " avoids buggy IPs"
	}
	return ""
}

// index returns the index of address value x, which must not be skipped.
func (sp *space) index(x u128) u128 {
	if !sp.buggy {
		return x
	}
	return u128{lo: (x.lo>>8)*254 + x.lo&0xff - 1}
}

// addr returns the address with index i.
func (sp *space) addr(i u128) netip.Addr {
	if !sp.buggy {
		return i.addr(sp.family)
	}
	return u128{lo: (i.lo/254)<<8 | (i.lo%254 + 1)}.addr(sp.family)
}

// indexInterval returns the indexes of the usable addresses of the address
// interval iv; ok is false if it has none.
func (sp *space) indexInterval(iv interval) (interval, bool) {
	if !sp.buggy {
		return iv, true
	}
	// Lowest usable index at or above first, highest at or below last.
	first, last := int64(iv.first.lo), int64(iv.last.lo)
	lo := first>>8*254 + min(max(first&0xff-1, 0), 254)
	hi := last>>8*254 + min(last&0xff, 254) - 1
	if hi < lo {
		return interval{}, false
	}
	return interval{u128{lo: uint64(lo)}, u128{lo: uint64(hi)}}, true
}

// take marks the free address a as used.
func (sp *space) take(a netip.Addr) {
	sp.free.remove(sp.index(u128Of(a)))
	sp.inUse++
}

// give marks the used address a as free.
func (sp *space) give(a netip.Addr) {
	sp.free.add(sp.index(u128Of(a)))
	sp.inUse--
}

// lowestFree returns the lowest free address.
func (sp *space) lowestFree() (netip.Addr, bool) {
	i, ok := sp.free.min()
	if !ok {
		return netip.Addr{}, false
	}
	return sp.addr(i), true
}

// contains reports whether address value x is in the space's ranges.
func (sp *space) contains(x u128) bool { return findInterval(sp.ranges, x) >= 0 }
