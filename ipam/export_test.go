package ipam

import (
	"fmt"
	"slices"
)

// SelectorFunc adapts a function to a Selector, for tests.
type SelectorFunc func(labels map[string]string) bool

// Matches returns f(labels).
func (f SelectorFunc) Matches(labels map[string]string) bool { return f(labels) }

// CheckInvariants verifies every internal invariant of a and returns the
// first broken one. Tests call it after each step.
func CheckInvariants(a *Allocator) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	inUse := map[*space]uint64{}
	for ip, e := range a.ips {
		if e.addr != ip {
			return fmt.Errorf("entry %s stored under %s", e.addr, ip)
		}
		if len(e.users) == 0 {
			return fmt.Errorf("%s: entry without users", ip)
		}
		if !slices.IsSortedFunc(e.users, func(x, y *holder) int { return compareKeys(x.req.key, y.req.key) }) {
			return fmt.Errorf("%s: users not sorted", ip)
		}
		for _, u := range e.users {
			if a.services[u.req.key] != u || !slices.Contains(u.addrs, e) {
				return fmt.Errorf("%s: user %s does not hold it", ip, u.req.key)
			}
		}
		sp := a.cfg.spaceOf(FamilyOf(ip), u128Of(ip))
		if sp != e.space {
			return fmt.Errorf("%s: entry space is not the config's", ip)
		}
		if sp.unusable(u128Of(ip)) != "" {
			return fmt.Errorf("%s: in use but never to be handed out", ip)
		}
		if n := sp.free.floor(sp.index(u128Of(ip))); n != nil && n.iv.contains(sp.index(u128Of(ip))) {
			return fmt.Errorf("%s: in use and free", ip)
		}
		inUse[sp]++
	}
	for key, h := range a.services {
		if h.req.key != key || len(h.addrs) == 0 {
			return fmt.Errorf("service %s: bad holder", key)
		}
		last := -1
		for _, e := range h.addrs {
			if a.ips[e.addr] != e || !slices.Contains(e.users, h) {
				return fmt.Errorf("service %s: %s not recorded", key, e.addr)
			}
			i := slices.Index(h.req.families, FamilyOf(e.addr))
			if i <= last {
				return fmt.Errorf("service %s: addresses not in family order", key)
			}
			last = i
		}
		if h.req.sharingKey != "" {
			g := a.groups[groupKey{key.Namespace, h.req.sharingKey}]
			for _, e := range h.addrs {
				if g[e] < 1 {
					return fmt.Errorf("service %s: %s missing from sharing group", key, e.addr)
				}
			}
		}
	}
	for k, g := range a.groups {
		if len(g) == 0 {
			return fmt.Errorf("empty sharing group %v", k)
		}
		for e, n := range g {
			count := 0
			for _, u := range e.users {
				if u.req.sharingKey == k.sharingKey && u.req.key.Namespace == k.namespace {
					count++
				}
			}
			if count != n {
				return fmt.Errorf("sharing group %v: %s counted %d, has %d users", k, e.addr, n, count)
			}
		}
	}
	for _, p := range a.cfg.pools {
		for _, sp := range p.spaces {
			if sp == nil {
				continue
			}
			if sp.inUse != inUse[sp] {
				return fmt.Errorf("pool %s %s: inUse %d, counted %d", p.name, sp.family, sp.inUse, inUse[sp])
			}
			free, err := checkTree(sp.free.root)
			if err != nil {
				return fmt.Errorf("pool %s %s: %w", p.name, sp.family, err)
			}
			if sp.total != ^uint64(0) && free+sp.inUse != sp.total {
				return fmt.Errorf("pool %s %s: %d free + %d in use != %d total", p.name, sp.family, free, sp.inUse, sp.total)
			}
		}
	}
	return nil
}

// checkTree verifies the AVL and interval invariants of a tree and returns
// the number of values it holds (saturating).
func checkTree(root *avlNode) (uint64, error) {
	var ivs []interval
	var walk func(n *avlNode) (int, error)
	walk = func(n *avlNode) (int, error) {
		if n == nil {
			return 0, nil
		}
		l, err := walk(n.left)
		if err != nil {
			return 0, err
		}
		if n.iv.last.less(n.iv.first) {
			return 0, fmt.Errorf("interval %v reversed", n.iv)
		}
		ivs = append(ivs, n.iv)
		r, err := walk(n.right)
		if err != nil {
			return 0, err
		}
		if n.height != 1+max(l, r) || l-r > 1 || r-l > 1 {
			return 0, fmt.Errorf("node %v: height %d, children %d and %d", n.iv, n.height, l, r)
		}
		return n.height, nil
	}
	if _, err := walk(root); err != nil {
		return 0, err
	}
	var total uint64
	for i, iv := range ivs {
		if i > 0 && ivs[i-1].touches(iv) {
			return 0, fmt.Errorf("intervals %v and %v overlap or touch", ivs[i-1], iv)
		}
		total = satAdd(total, iv.size())
	}
	return total, nil
}

// Snapshot returns every Service's addresses.
func Snapshot(a *Allocator) map[ServiceKey][]Address {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[ServiceKey][]Address, len(a.services))
	for k, h := range a.services {
		out[k] = h.addresses()
	}
	return out
}

// FreeIntervals returns the number of intervals in the free set of a pool's
// family, to show that memory does not depend on the pool's size.
func FreeIntervals(a *Allocator, pool string, f Family) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	var count func(n *avlNode) int
	count = func(n *avlNode) int {
		if n == nil {
			return 0
		}
		return 1 + count(n.left) + count(n.right)
	}
	return count(a.cfg.byName[pool].spaces[f.index()].free.root)
}
