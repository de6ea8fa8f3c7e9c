package ipam

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
)

// Eviction is an address Reconfigure took from a Service because the new
// pools no longer allow it there.
type Eviction struct {
	Service ServiceKey
	IP      netip.Addr
	// Err is a *RequestError saying why: ErrIPNotInPool, ErrIPExcluded,
	// ErrPoolNotFound, ErrNamespaceNotAllowed, ErrServiceSelectorMismatch
	// or ErrPoolNotAutoAssign.
	Err error
}

// Reconfigure replaces the pools, atomically. If pools fail validation it
// returns the *PoolError (wrapping ErrInvalidPool) and nothing changes.
// Otherwise every Service keeps each address that the new pools still allow
// it, under the request it last succeeded with (same rules as Assign); the
// addresses they do not allow are released and returned, sorted by Service
// and address, so the caller can allocate those Services again. A Service
// keeps its other addresses: a dual-stack Service may lose one family only.
func (a *Allocator) Reconfigure(pools []Pool) ([]Eviction, error) {
	cfg, err := compile(pools)
	if err != nil {
		return nil, fmt.Errorf("ipam: reconfigure: invalid pools: %w", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	var evicted []Eviction
	for ip, e := range a.ips {
		sp := cfg.spaceOf(FamilyOf(ip), u128Of(ip))
		keep := e.users[:0]
		for _, u := range e.users {
			if err := cfg.allows(u.req, ip, sp); err != nil {
				evicted = append(evicted, Eviction{Service: u.req.key, IP: ip, Err: err})
				a.ungroup(u)
				u.addrs = slices.DeleteFunc(u.addrs, func(o *ipEntry) bool { return o == e })
				a.group(u)
				continue
			}
			keep = append(keep, u)
		}
		clear(e.users[len(keep):])
		e.users = keep
		if len(keep) == 0 {
			delete(a.ips, ip)
			continue
		}
		e.space = sp
		sp.take(ip)
	}
	for key, h := range a.services {
		if len(h.addrs) == 0 {
			delete(a.services, key)
		}
	}
	a.cfg = cfg
	slices.SortFunc(evicted, func(x, y Eviction) int {
		return cmp.Or(compareKeys(x.Service, y.Service), x.IP.Compare(y.IP))
	})
	return evicted, nil
}

// allows checks that the address ip, in space sp (nil if in no pool), may be
// held under request r.
func (c *config) allows(r *request, ip netip.Addr, sp *space) error {
	if sp == nil {
		return &RequestError{Service: r.key, Family: FamilyOf(ip), IP: ip, Err: ErrIPNotInPool,
			Detail: fmt.Sprintf("%s is not in any pool", ip)}
	}
	if why := sp.unusable(u128Of(ip)); why != "" {
		return &RequestError{Service: r.key, Family: FamilyOf(ip), Pool: sp.pool.name, IP: ip, Err: ErrIPExcluded,
			Detail: fmt.Sprintf("%s %s", ip, why)}
	}
	return c.eligible(r, sp.pool, ip)
}
