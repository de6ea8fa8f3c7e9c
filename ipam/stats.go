package ipam

import (
	"cmp"
	"slices"
)

// PoolStats counts the addresses of one family of one pool.
type PoolStats struct {
	Pool   string
	Family Family
	// Total is the number of addresses that can be handed out: the pool's
	// addresses of the family, minus exclude and, with avoidBuggyIPs, the
	// IPv4 .0 and .255 addresses. It saturates at math.MaxUint64 (2^64−1),
	// which an IPv6 pool larger than a /64 reaches.
	Total uint64
	// InUse is the number of those addresses held by at least one Service
	// (a shared address counts once).
	InUse uint64
}

// Stats returns the counts of every pool and family it has addresses of,
// sorted by pool name, IPv4 first.
func (a *Allocator) Stats() []PoolStats {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []PoolStats
	for _, p := range a.cfg.pools {
		for _, sp := range p.spaces {
			if sp != nil {
				out = append(out, PoolStats{Pool: p.name, Family: sp.family, Total: sp.total, InUse: sp.inUse})
			}
		}
	}
	slices.SortFunc(out, func(x, y PoolStats) int {
		return cmp.Or(cmp.Compare(x.Pool, y.Pool), cmp.Compare(x.Family.index(), y.Family.index()))
	})
	return out
}
