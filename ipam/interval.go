package ipam

import (
	"math"
	"slices"
	"sort"
)

// interval is the closed range [first, last] of u128 values, first <= last.
type interval struct{ first, last u128 }

func (iv interval) contains(x u128) bool {
	return !x.less(iv.first) && !iv.last.less(x)
}

// size returns the number of values in iv, saturating at math.MaxUint64.
func (iv interval) size() uint64 {
	d := iv.last.sub(iv.first)
	if d.hi != 0 || d.lo == math.MaxUint64 {
		return math.MaxUint64
	}
	return d.lo + 1
}

// touches reports whether b, which starts at or after a, overlaps a or
// follows it without a gap.
func (a interval) touches(b interval) bool {
	return !a.last.less(b.first) || a.last.inc() == b.first
}

// mergeIntervals sorts ivs in place and returns their union as sorted,
// disjoint, non-adjacent intervals, reusing ivs' storage.
func mergeIntervals(ivs []interval) []interval {
	slices.SortFunc(ivs, func(a, b interval) int { return a.first.cmp(b.first) })
	out := ivs[:0]
	for _, iv := range ivs {
		if n := len(out); n > 0 && out[n-1].touches(iv) {
			if out[n-1].last.less(iv.last) {
				out[n-1].last = iv.last
			}
			continue
		}
		out = append(out, iv)
	}
	return out
}

// findInterval returns the index of the interval of sorted, disjoint ivs
// that contains x, or -1.
func findInterval(ivs []interval, x u128) int {
	if i := floorIndex(len(ivs), func(i int) u128 { return ivs[i].first }, x); i >= 0 && ivs[i].contains(x) {
		return i
	}
	return -1
}

// floorIndex returns the greatest i < n with first(i) <= x, or -1, by binary
// search; first must be ascending.
func floorIndex(n int, first func(int) u128, x u128) int {
	return sort.Search(n, func(i int) bool { return x.less(first(i)) }) - 1
}

// subtractIntervals returns the parts of from that are not in minus. Both
// must be sorted and disjoint; so is the result.
func subtractIntervals(from, minus []interval) []interval {
	var out []interval
	j := 0
	for _, iv := range from {
		cur := iv
		for ; j < len(minus) && minus[j].last.less(cur.first); j++ {
		}
		keep := true
		for k := j; k < len(minus) && !cur.last.less(minus[k].first); k++ {
			m := minus[k]
			if cur.first.less(m.first) {
				out = append(out, interval{cur.first, m.first.dec()})
			}
			if !m.last.less(cur.last) {
				keep = false
				break
			}
			cur.first = m.last.inc()
		}
		if keep {
			out = append(out, cur)
		}
	}
	return out
}
