package ipam

import (
	"cmp"
	"fmt"
	"slices"
)

// Selector decides whether a pool may serve a Service, from the Service's
// labels. It is the pool's serviceSelector; a provider adapts a Kubernetes
// label selector to it. Matches is called with the Allocator's lock held: it
// must not call the Allocator, and must not modify labels.
type Selector interface {
	Matches(labels map[string]string) bool
}

// Pool is the configuration of one IP pool. The Allocator copies what it
// keeps; the caller may reuse the Pool afterwards.
type Pool struct {
	// Name is unique among the pools and a DNS label (RFC 1123).
	Name string
	// Addresses are the pool's ranges, IPv4 and IPv6 mixed. They must not
	// overlap each other or any other pool's.
	Addresses []AddressRange
	// Exclude lists addresses never handed out. Each entry must lie inside
	// the pool's addresses.
	Exclude []AddressRange
	// AutoAssign lets the pool serve any Service it matches. When false it
	// serves only Services that ask for it by name or ask for one of its
	// addresses. (The YAML loader defaults it to true.)
	AutoAssign bool
	// AvoidBuggyIPs skips IPv4 addresses ending in .0 and .255.
	AvoidBuggyIPs bool
	// Namespaces limits the pool to Services of these namespaces; empty
	// means every namespace.
	Namespaces []string
	// ServiceSelector limits the pool to Services whose labels it matches;
	// nil matches every Service.
	ServiceSelector Selector
	// Priority orders the pools a Service may use: higher first, then by
	// name.
	Priority int
}

// config is a validated pool list, ready to allocate from. It holds the
// free addresses of every pool; the Allocator holds the allocations.
type config struct {
	pools  []*pool // best first: priority descending, then name
	byName map[string]*pool
	// Per family index, every pool range, sorted, with its space.
	ranges [2][]ownedRange
}

type ownedRange struct {
	iv interval
	sp *space
}

type pool struct {
	name       string
	priority   int
	rank       int // position in config.pools
	autoAssign bool
	namespaces map[string]bool // nil: every namespace
	selector   Selector
	spaces     [2]*space // per family index; nil if the pool has no such addresses
}

// rangeEntry is one address entry of the pool list, for the overlap check.
type rangeEntry struct {
	r     AddressRange
	pool  int // index in the pool list
	entry int // index in the pool's addresses
}

// compile validates pools and builds a config from them. The error is a
// *PoolError naming the bad pool, field and reason; of several problems it
// reports the first in list order, overlaps last.
func compile(pools []Pool) (*config, error) {
	c := &config{byName: make(map[string]*pool, len(pools))}
	names := make(map[string]int, len(pools))
	var entries [2][]rangeEntry
	for i, pc := range pools {
		if j, dup := names[pc.Name]; dup {
			return nil, &PoolError{Index: i, Pool: pc.Name, Field: "name", Detail: fmt.Sprintf("duplicate name, also used by pools[%d]", j)}
		}
		names[pc.Name] = i
		p, err := compilePool(i, pc)
		if err != nil {
			return nil, err
		}
		c.pools = append(c.pools, p)
		c.byName[p.name] = p
		for k, r := range pc.Addresses {
			fi := r.Family().index()
			entries[fi] = append(entries[fi], rangeEntry{r, i, k})
		}
	}
	for fi := range entries {
		if err := checkOverlaps(pools, entries[fi]); err != nil {
			return nil, err
		}
		for _, p := range c.pools {
			if sp := p.spaces[fi]; sp != nil {
				for _, iv := range sp.ranges {
					c.ranges[fi] = append(c.ranges[fi], ownedRange{iv, sp})
				}
			}
		}
		slices.SortFunc(c.ranges[fi], func(a, b ownedRange) int { return a.iv.first.cmp(b.iv.first) })
	}
	slices.SortFunc(c.pools, func(a, b *pool) int {
		return cmp.Or(cmp.Compare(b.priority, a.priority), cmp.Compare(a.name, b.name))
	})
	for k, p := range c.pools {
		p.rank = k
	}
	return c, nil
}

// compilePool validates the fields of pools[i] that need no other pool, and
// builds it.
func compilePool(i int, pc Pool) (*pool, error) {
	fail := func(field string, err error, format string, args ...any) error {
		return &PoolError{Index: i, Pool: pc.Name, Field: field, Detail: fmt.Sprintf(format, args...), Err: err}
	}
	if why := checkDNSLabel(pc.Name); why != "" {
		return nil, fail("name", nil, "%s", why)
	}
	p := &pool{name: pc.Name, priority: pc.Priority, autoAssign: pc.AutoAssign, selector: pc.ServiceSelector}
	for k, ns := range pc.Namespaces {
		if why := checkDNSLabel(ns); why != "" {
			return nil, fail(fmt.Sprintf("namespaces[%d]", k), nil, "namespace %q: %s", ns, why)
		}
		if p.namespaces == nil {
			p.namespaces = make(map[string]bool, len(pc.Namespaces))
		}
		p.namespaces[ns] = true
	}
	if len(pc.Addresses) == 0 {
		return nil, fail("addresses", nil, "at least one address range is required")
	}
	var ranges, excludes [2][]interval
	for k, r := range pc.Addresses {
		if err := r.Validate(); err != nil {
			return nil, fail(fmt.Sprintf("addresses[%d]", k), err, "bad address range")
		}
		fi := r.Family().index()
		ranges[fi] = append(ranges[fi], r.interval())
	}
	for fi := range ranges {
		ranges[fi] = mergeIntervals(ranges[fi])
	}
	for k, r := range pc.Exclude {
		field := fmt.Sprintf("exclude[%d]", k)
		if err := r.Validate(); err != nil {
			return nil, fail(field, err, "bad address range")
		}
		fi, iv := r.Family().index(), r.interval()
		if j := findInterval(ranges[fi], iv.first); j < 0 || ranges[fi][j].last.less(iv.last) {
			return nil, fail(field, nil, "%s is not inside the pool's addresses", r)
		}
		excludes[fi] = append(excludes[fi], iv)
	}
	for fi, f := range [2]Family{IPv4, IPv6} {
		if len(ranges[fi]) > 0 {
			p.spaces[fi] = newSpace(p, f, ranges[fi], mergeIntervals(excludes[fi]), pc.AvoidBuggyIPs && f == IPv4)
		}
	}
	return p, nil
}

// checkOverlaps reports the first overlap among the address entries of one
// family, on the entry that comes later in the pool list.
func checkOverlaps(pools []Pool, es []rangeEntry) error {
	slices.SortFunc(es, func(a, b rangeEntry) int {
		return cmp.Or(a.r.First.Compare(b.r.First), cmp.Compare(a.pool, b.pool), cmp.Compare(a.entry, b.entry))
	})
	for k := 1; k < len(es); k++ {
		a, b := es[k-1], es[k]
		if b.r.First.Compare(a.r.Last) > 0 {
			continue
		}
		if cmp.Or(cmp.Compare(a.pool, b.pool), cmp.Compare(a.entry, b.entry)) > 0 {
			a, b = b, a
		}
		other := fmt.Sprintf("pools[%d].addresses[%d] (%s) of pool %q", a.pool, a.entry, a.r, pools[a.pool].Name)
		if a.pool == b.pool {
			other = fmt.Sprintf("addresses[%d] (%s) of the same pool", a.entry, a.r)
		}
		return &PoolError{Index: b.pool, Pool: pools[b.pool].Name, Field: fmt.Sprintf("addresses[%d]", b.entry),
			Detail: fmt.Sprintf("%s overlaps %s", b.r, other)}
	}
	return nil
}

// checkDNSLabel returns why s is not an RFC 1123 DNS label, or "".
func checkDNSLabel(s string) string {
	switch {
	case s == "":
		return "must not be empty"
	case len(s) > 63:
		return fmt.Sprintf("%q is longer than 63 characters", s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := 'a' <= c && c <= 'z' || '0' <= c && c <= '9'
		if !alnum && (c != '-' || i == 0 || i == len(s)-1) {
			return fmt.Sprintf("%q is not a DNS label (lower-case letters, digits and '-', starting and ending with a letter or digit)", s)
		}
	}
	return ""
}

// spaceOf returns the space holding address x of family f, or nil.
func (c *config) spaceOf(f Family, x u128) *space {
	rs := c.ranges[f.index()]
	if i := floorIndex(len(rs), func(i int) u128 { return rs[i].iv.first }, x); i >= 0 && rs[i].iv.contains(x) {
		return rs[i].sp
	}
	return nil
}
