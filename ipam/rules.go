package ipam

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// choose decides how family f of request r is served for h (nil: a Service
// holding nothing), without changing anything.
func (a *Allocator) choose(r *request, f Family, h *holder) (choice, error) {
	held := h.holding(f)
	if want := r.explicit[f.index()]; want.IsValid() {
		if held != nil && held.addr == want {
			return choice{entry: held}, a.keepable(r, held, h)
		}
		return a.claim(r, want, h)
	}
	if held != nil && a.keepable(r, held, h) == nil {
		return choice{entry: held}, nil
	}
	return a.pick(r, f, h)
}

// keepable checks that h may keep holding e under request r.
func (a *Allocator) keepable(r *request, e *ipEntry, h *holder) error {
	if err := a.cfg.eligible(r, e.space.pool, e.addr); err != nil {
		return err
	}
	return shareable(r, e, h)
}

// claim checks that h may have the address ip under request r, and returns
// how.
func (a *Allocator) claim(r *request, ip netip.Addr, h *holder) (choice, error) {
	sp := a.cfg.spaceOf(FamilyOf(ip), u128Of(ip))
	if err := a.cfg.allows(r, ip, sp); err != nil {
		return choice{}, err
	}
	if e := a.ips[ip]; e != nil {
		return choice{entry: e}, shareable(r, e, h)
	}
	return choice{space: sp, addr: ip}, nil
}

// pick chooses an address of family f for r from the pools r may use: one
// it may share, else the lowest free one (with why it could not share the
// best address of its sharing key, if there is one).
func (a *Allocator) pick(r *request, f Family, h *holder) (choice, error) {
	cands, err := a.cfg.candidates(r, f)
	if err != nil {
		return choice{}, err
	}
	var notShared error
	var notSharedEntry *ipEntry
	if r.sharingKey != "" {
		var best *ipEntry
		for e := range a.groups[groupKey{r.key.Namespace, r.sharingKey}] {
			if FamilyOf(e.addr) != f || cands[e.space.pool.rank] == nil || slices.Contains(e.users, h) {
				continue
			}
			if err := shareable(r, e, h); err != nil {
				if notSharedEntry == nil || better(e, notSharedEntry) {
					notShared, notSharedEntry = err, e
				}
				continue
			}
			if best == nil || better(e, best) {
				best = e
			}
		}
		if best != nil {
			return choice{entry: best}, nil
		}
	}
	var names []string
	for _, sp := range cands {
		if sp == nil {
			continue
		}
		if ip, ok := sp.lowestFree(); ok {
			return choice{space: sp, addr: ip, notShared: notShared}, nil
		}
		names = append(names, sp.pool.name)
	}
	detail := fmt.Sprintf("no free %s address in pool %s", f, names[0])
	if len(names) > 1 {
		detail = fmt.Sprintf("no free %s address in pools %s", f, strings.Join(names, ", "))
	}
	return choice{}, &RequestError{Service: r.key, Family: f, Pool: names[0], Err: ErrPoolExhausted, Detail: detail}
}

// better reports whether e comes before o in the order sharing prefers: best
// pool first, then lowest address.
func better(e, o *ipEntry) bool {
	return e.space.pool.rank < o.space.pool.rank || e.space.pool.rank == o.space.pool.rank && e.addr.Less(o.addr)
}

// candidates returns the spaces of family f that r may take addresses from,
// indexed by pool rank (nil where it may not), or why there is none.
func (c *config) candidates(r *request, f Family) ([]*space, error) {
	cands := make([]*space, len(c.pools))
	if r.pool != "" {
		p := c.byName[r.pool]
		if p == nil {
			return nil, &RequestError{Service: r.key, Family: f, Pool: r.pool, Err: ErrPoolNotFound,
				Detail: fmt.Sprintf("no pool is named %s", r.pool)}
		}
		if err := c.eligible(r, p, netip.Addr{}); err != nil {
			return nil, err
		}
		sp := p.spaces[f.index()]
		if sp == nil {
			return nil, &RequestError{Service: r.key, Family: f, Pool: p.name, Err: ErrWrongFamily,
				Detail: fmt.Sprintf("requested pool %s has no %s addresses", p.name, f)}
		}
		cands[p.rank] = sp
		return cands, nil
	}
	found := false
	var refused []string
	for _, p := range c.pools {
		sp := p.spaces[f.index()]
		if sp == nil {
			continue
		}
		if err := c.eligible(r, p, netip.Addr{}); err != nil {
			refused = append(refused, fmt.Sprintf("%s (%s)", p.name, ReasonOf(err)))
			continue
		}
		cands[p.rank], found = sp, true
	}
	if found {
		return cands, nil
	}
	detail := fmt.Sprintf("no pool has %s addresses", f)
	if len(refused) > 0 {
		detail = fmt.Sprintf("no pool with %s addresses may serve the service: %s", f, strings.Join(refused, ", "))
	}
	return nil, &RequestError{Service: r.key, Family: f, Err: ErrNoMatchingPool, Detail: detail}
}

// eligible checks that pool p may serve request r; ip, if valid, is the
// address of p concerned, for the error.
func (c *config) eligible(r *request, p *pool, ip netip.Addr) error {
	fail := func(kind error, format string, args ...any) error {
		e := &RequestError{Service: r.key, Pool: p.name, IP: ip, Err: kind, Detail: fmt.Sprintf(format, args...)}
		if ip.IsValid() {
			e.Family = FamilyOf(ip)
			e.Detail = fmt.Sprintf("%s: %s", ip, e.Detail)
		}
		return e
	}
	switch {
	case r.pool != "" && r.pool != p.name && c.byName[r.pool] == nil:
		return fail(ErrPoolNotFound, "the requested pool %s does not exist", r.pool)
	case r.pool != "" && r.pool != p.name:
		return fail(ErrIPNotInPool, "in pool %s, not in the requested pool %s", p.name, r.pool)
	case p.namespaces != nil && !p.namespaces[r.key.Namespace]:
		return fail(ErrNamespaceNotAllowed, "pool %s does not allow namespace %s", p.name, r.key.Namespace)
	case p.selector != nil && !p.selector.Matches(r.labels):
		return fail(ErrServiceSelectorMismatch, "the service's labels do not match the serviceSelector of pool %s", p.name)
	case !p.autoAssign && !r.asks(p):
		return fail(ErrPoolNotAutoAssign, "pool %s has autoAssign off and the service asks for neither it nor one of its IPs", p.name)
	}
	return nil
}

// shareable checks that r's Service (h, nil if it holds nothing) may use e
// alongside e's other users.
func shareable(r *request, e *ipEntry, h *holder) error {
	for _, u := range e.users {
		if u == h {
			continue
		}
		fail := func(kind error, format string, args ...any) error {
			return &RequestError{Service: r.key, Family: FamilyOf(e.addr), Pool: e.space.pool.name, IP: e.addr,
				Holder: u.req.key, Err: kind, Detail: fmt.Sprintf("%s is used by %s", e.addr, u.req.key) + fmt.Sprintf(format, args...)}
		}
		switch {
		case u.req.key.Namespace != r.key.Namespace:
			return fail(ErrIPInUse, " in another namespace")
		case r.sharingKey == "":
			return fail(ErrIPInUse, " and the service has no sharing key")
		case u.req.sharingKey == "":
			return fail(ErrIPInUse, ", which has no sharing key")
		case u.req.sharingKey != r.sharingKey:
			return fail(ErrIPInUse, " with sharing key %q, not %q", u.req.sharingKey, r.sharingKey)
		case u.req.podSelector != r.podSelector:
			return fail(ErrPodSelectorMismatch, ", which selects pods %s, not %s",
				describeSelector(u.req.podSelector), describeSelector(r.podSelector))
		}
		if p, ok := collision(r.ports, u.req.ports); ok {
			return fail(ErrPortCollision, ", which also uses %s", p)
		}
	}
	return nil
}

func describeSelector(s string) string {
	if s == "" {
		return "(externalTrafficPolicy Cluster)"
	}
	return fmt.Sprintf("%q (externalTrafficPolicy Local)", s)
}
