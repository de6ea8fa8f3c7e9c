package ipam

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"
)

// Allocator hands out addresses from pools to Services. It is safe for
// concurrent use: one mutex serializes every method, each of which runs to
// completion under it (Selector.Matches is called with it held). The zero
// value is not usable; call New.
type Allocator struct {
	mu       sync.Mutex
	cfg      *config
	services map[ServiceKey]*holder
	ips      map[netip.Addr]*ipEntry
	// groups indexes the addresses used under each sharing key, so a Service
	// with a key finds the addresses it may share without a scan.
	groups map[groupKey]map[*ipEntry]int
}

// holder is a Service that holds addresses.
type holder struct {
	req   *request   // the request it last succeeded with
	addrs []*ipEntry // one per family, in the request's family order
}

// ipEntry is an address in use, and the Services using it.
type ipEntry struct {
	addr  netip.Addr
	space *space
	users []*holder // sorted by Service key
}

type groupKey struct{ namespace, sharingKey string }

// Address is an address held by a Service, and the pool it comes from.
type Address struct {
	IP   netip.Addr
	Pool string
}

// Allocation is the result of a successful Allocate or Assign: the addresses
// the Service now holds, in its family order.
type Allocation struct {
	Addresses []Address
	// Unmet is non-nil when PreferDualStack could not give every family: it
	// says why the missing family was not given.
	Unmet error
	// NotShared is non-nil when the Service, which has a sharing key, got a
	// new address although its key already holds one of that family in a
	// pool it may use: the *RequestError of why it could not share it (e.g.
	// ErrPortCollision, naming the address and its user). Only set when an
	// address is newly given.
	NotShared error
}

// IPs returns the addresses alone.
func (a Allocation) IPs() []netip.Addr {
	ips := make([]netip.Addr, len(a.Addresses))
	for i, ad := range a.Addresses {
		ips[i] = ad.IP
	}
	return ips
}

// New returns an Allocator for pools, holding no allocations. A *PoolError
// (wrapping ErrInvalidPool) says which pool and field is wrong and why.
func New(pools []Pool) (*Allocator, error) {
	cfg, err := compile(pools)
	if err != nil {
		return nil, fmt.Errorf("ipam: invalid pools: %w", err)
	}
	return &Allocator{
		cfg:      cfg,
		services: make(map[ServiceKey]*holder),
		ips:      make(map[netip.Addr]*ipEntry),
		groups:   make(map[groupKey]map[*ipEntry]int),
	}, nil
}

// Allocate gives the Service one address per wanted family and returns them.
//
// For each family, in order: the address the Service already holds, if it
// still satisfies the request (so allocating again returns the same
// addresses); else the requested IP, if any; else, from the pools the
// Service may use (the requested pool, or those whose namespaces and
// serviceSelector match it and that have autoAssign or hold a requested IP),
// an address it may share under its sharing key, best pool first, lowest
// address first; else the lowest free address of the best pool (highest
// priority, then name) that has one.
//
// SingleStack and RequireDualStack fail if any family fails;
// PreferDualStack fails only if every family fails, and reports the missing
// one in Allocation.Unmet (a requested IP that cannot be given fails the
// request whatever the policy). On success the Service holds exactly the
// returned addresses; addresses it held for families it no longer wants, or
// that no longer satisfy the request, are released. On error nothing
// changes. The error is a *RequestError. Allocate is O(log n) in the number
// of allocations (plus the addresses shared under the Service's sharing key).
func (a *Allocator) Allocate(req Request) (Allocation, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	r, err := normalize(req)
	if err != nil {
		return Allocation{}, err
	}
	h := a.services[r.key]
	var plan []choice
	var unmet, notShared error
	for _, f := range r.families {
		c, err := a.choose(r, f, h)
		if err != nil {
			if r.policy != PreferDualStack || r.explicit[f.index()].IsValid() {
				return Allocation{}, err
			}
			if unmet == nil {
				unmet = err
			}
			continue
		}
		if notShared == nil {
			notShared = c.notShared
		}
		plan = append(plan, c)
	}
	if len(plan) == 0 {
		return Allocation{}, unmet
	}
	return Allocation{Addresses: a.apply(r, h, plan), Unmet: unmet, NotShared: notShared}, nil
}

// Assign makes the Service hold exactly ips, one per family at most, each of
// a family the request wants (a subset is fine: a later Allocate adds the
// rest). It is how state is rebuilt from Service status after a restart, and
// applies the same rules as Allocate: each address must be one the Service
// may use and may share, and equal the requested IP of its family if there
// is one. On error nothing changes; the error is a *RequestError.
func (a *Allocator) Assign(req Request, ips []netip.Addr) (Allocation, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	r, err := normalize(req)
	if err != nil {
		return Allocation{}, err
	}
	if len(ips) == 0 {
		return Allocation{}, &RequestError{Service: r.key, Err: ErrInvalidRequest, Detail: "no IP to assign"}
	}
	var byFamily [2]netip.Addr
	for _, ip := range ips {
		if err := checkAddr(ip); err != nil {
			return Allocation{}, &RequestError{Service: r.key, Err: ErrInvalidRequest, Detail: fmt.Sprintf("IP to assign: %v", err)}
		}
		f := FamilyOf(ip)
		switch want := r.explicit[f.index()]; {
		case byFamily[f.index()].IsValid():
			return Allocation{}, &RequestError{Service: r.key, Family: f, IP: ip, Err: ErrInvalidRequest,
				Detail: fmt.Sprintf("two %s addresses to assign (%s, %s), at most one per family", f, byFamily[f.index()], ip)}
		case !r.wants(f):
			return Allocation{}, &RequestError{Service: r.key, Family: f, IP: ip, Err: ErrWrongFamily,
				Detail: fmt.Sprintf("%s is %s, the service wants %v", ip, f, r.families)}
		case want.IsValid() && want != ip:
			return Allocation{}, &RequestError{Service: r.key, Family: f, IP: ip, Err: ErrIPNotRequested,
				Detail: fmt.Sprintf("%s is not the requested %s", ip, want)}
		}
		byFamily[f.index()] = ip
	}
	h := a.services[r.key]
	var plan []choice
	for _, f := range r.families {
		ip := byFamily[f.index()]
		if !ip.IsValid() {
			continue
		}
		var c choice
		var err error
		if e := h.holding(f); e != nil && e.addr == ip {
			c, err = choice{entry: e}, a.keepable(r, e, h)
		} else {
			c, err = a.claim(r, ip, h)
		}
		if err != nil {
			return Allocation{}, err
		}
		plan = append(plan, c)
	}
	return Allocation{Addresses: a.apply(r, h, plan)}, nil
}

// Release frees every address the Service holds (an address shared with
// other Services stays theirs) and returns them; nil if it held none.
func (a *Allocator) Release(key ServiceKey) []netip.Addr {
	a.mu.Lock()
	defer a.mu.Unlock()
	h := a.services[key]
	if h == nil {
		return nil
	}
	a.ungroup(h)
	ips := make([]netip.Addr, len(h.addrs))
	for i, e := range h.addrs {
		ips[i] = e.addr
		a.drop(e, h)
	}
	delete(a.services, key)
	return ips
}

// Lookup returns the addresses the Service holds, in its family order.
func (a *Allocator) Lookup(key ServiceKey) ([]Address, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	h := a.services[key]
	if h == nil {
		return nil, false
	}
	return h.addresses(), true
}

// choice is how one family of a request is served: an address already in
// use (kept or joined), or a free address of a space.
type choice struct {
	entry *ipEntry
	space *space
	addr  netip.Addr
	// notShared says why an address of the sharing key was not chosen.
	notShared error
}

// apply makes h (nil: a new holder) hold exactly the plan's addresses, in
// order, with request r, and returns them. It cannot fail: choose, claim and
// keepable checked everything.
func (a *Allocator) apply(r *request, h *holder, plan []choice) []Address {
	if h == nil {
		h = &holder{}
		a.services[r.key] = h
	}
	a.ungroup(h)
	addrs := make([]*ipEntry, 0, len(plan))
	for _, c := range plan {
		e := c.entry
		if e == nil {
			e = &ipEntry{addr: c.addr, space: c.space}
			c.space.take(c.addr)
			a.ips[c.addr] = e
		}
		if !slices.Contains(e.users, h) {
			e.addUser(h, r.key)
		}
		addrs = append(addrs, e)
	}
	for _, old := range h.addrs {
		if !slices.Contains(addrs, old) {
			a.drop(old, h)
		}
	}
	h.req, h.addrs = r, addrs
	a.group(h)
	return h.addresses()
}

// drop removes h from the users of e, and frees e if it was the last.
func (a *Allocator) drop(e *ipEntry, h *holder) {
	e.users = slices.DeleteFunc(e.users, func(u *holder) bool { return u == h })
	if len(e.users) == 0 {
		e.space.give(e.addr)
		delete(a.ips, e.addr)
	}
}

// group adds h's addresses to the index of its sharing key.
func (a *Allocator) group(h *holder) {
	if h.req.sharingKey == "" || len(h.addrs) == 0 {
		return
	}
	k := groupKey{h.req.key.Namespace, h.req.sharingKey}
	g := a.groups[k]
	if g == nil {
		g = make(map[*ipEntry]int)
		a.groups[k] = g
	}
	for _, e := range h.addrs {
		g[e]++
	}
}

// ungroup removes h's addresses from the index of its sharing key.
func (a *Allocator) ungroup(h *holder) {
	if h.req == nil || h.req.sharingKey == "" {
		return
	}
	k := groupKey{h.req.key.Namespace, h.req.sharingKey}
	g := a.groups[k]
	for _, e := range h.addrs {
		if g[e]--; g[e] == 0 {
			delete(g, e)
		}
	}
	if len(g) == 0 {
		delete(a.groups, k)
	}
}

// holding returns the address h holds of family f, or nil. h may be nil.
func (h *holder) holding(f Family) *ipEntry {
	if h == nil {
		return nil
	}
	for _, e := range h.addrs {
		if FamilyOf(e.addr) == f {
			return e
		}
	}
	return nil
}

func (h *holder) addresses() []Address {
	out := make([]Address, len(h.addrs))
	for i, e := range h.addrs {
		out[i] = Address{IP: e.addr, Pool: e.space.pool.name}
	}
	return out
}

// addUser adds h, the Service key, keeping users sorted by key.
func (e *ipEntry) addUser(h *holder, key ServiceKey) {
	i, _ := slices.BinarySearchFunc(e.users, key, func(u *holder, k ServiceKey) int { return compareKeys(u.req.key, k) })
	e.users = slices.Insert(e.users, i, h)
}
