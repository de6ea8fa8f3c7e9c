package ipam

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/types"
)

// ServiceKey names a Service: the one key type of the CCM and the speaker (String is
// "namespace/name").
type ServiceKey = types.NamespacedName

// compareKeys orders keys by namespace, then name.
func compareKeys(a, b ServiceKey) int {
	return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
}

// Protocol is a Service port protocol, spelled as in Kubernetes.
type Protocol string

// The protocols of Service ports.
const (
	TCP  Protocol = "TCP"
	UDP  Protocol = "UDP"
	SCTP Protocol = "SCTP"
)

// Port is one (protocol, port) pair a Service listens on. Two Services
// sharing an address must not have a Port in common.
type Port struct {
	Protocol Protocol
	Port     uint16
}

func (p Port) String() string { return fmt.Sprintf("%s/%d", p.Protocol, p.Port) }

// Request is what a Service asks of the allocator. The Allocator copies what
// it keeps and never modifies the caller's slices or map.
type Request struct {
	// Service names the Service; both parts are required.
	Service ServiceKey
	// Labels are the Service's labels, matched against pools' serviceSelector.
	Labels map[string]string
	// Families are the families wanted, in the order of spec.ipFamilies. If
	// empty: the family of the one requested IP, or IPv4, for SingleStack;
	// IPv4 then IPv6 for the dual-stack policies.
	Families []Family
	// Policy is spec.ipFamilyPolicy; "" means SingleStack. SingleStack
	// takes one family; RequireDualStack needs both.
	Policy IPFamilyPolicy
	// IPs are exact addresses asked for (spec.loadBalancerIP, annotation),
	// at most one per family, each of a family in Families. They must be
	// given exactly: no fallback to another address, whatever the policy.
	IPs []netip.Addr
	// Pool is the name of the pool asked for, or "". When set, every
	// address comes from that pool.
	Pool string
	// SharingKey lets Services of the same namespace with the same key share
	// an address; "" never shares.
	SharingKey string
	// Ports are the Service's (protocol, port) pairs.
	Ports []Port
	// PodSelector is, for externalTrafficPolicy Local, the canonical string
	// of the Service's pod selector; "" for Cluster. Services share an
	// address only if their PodSelectors are equal.
	PodSelector string
}

// request is a validated, normalized copy of a Request.
type request struct {
	key         ServiceKey
	labels      map[string]string
	families    []Family
	policy      IPFamilyPolicy
	explicit    [2]netip.Addr // per family index; invalid if none
	pool        string
	sharingKey  string
	ports       []Port
	podSelector string
}

// normalize validates req and returns the allocator's copy of it.
func normalize(req Request) (*request, error) {
	r := &request{
		key:         req.Service,
		labels:      maps.Clone(req.Labels),
		families:    slices.Clone(req.Families),
		policy:      req.Policy,
		pool:        req.Pool,
		sharingKey:  req.SharingKey,
		ports:       slices.Clone(req.Ports),
		podSelector: req.PodSelector,
	}
	invalid := func(format string, args ...any) error {
		return &RequestError{Service: r.key, Detail: fmt.Sprintf(format, args...), Err: ErrInvalidRequest}
	}
	if r.key.Namespace == "" || r.key.Name == "" {
		return nil, invalid("the service key needs a namespace and a name")
	}
	switch r.policy {
	case "":
		r.policy = SingleStack
	case SingleStack, PreferDualStack, RequireDualStack:
	default:
		return nil, invalid("unknown IP family policy %q", r.policy)
	}
	for _, a := range req.IPs {
		if err := checkAddr(a); err != nil {
			return nil, invalid("requested IP: %v", err)
		}
		fi := FamilyOf(a).index()
		if r.explicit[fi].IsValid() {
			return nil, invalid("two %s addresses requested (%s, %s), at most one per family", FamilyOf(a), r.explicit[fi], a)
		}
		r.explicit[fi] = a
	}
	if len(r.families) == 0 {
		switch {
		case r.policy != SingleStack:
			r.families = []Family{IPv4, IPv6}
		case len(req.IPs) > 0:
			r.families = []Family{FamilyOf(req.IPs[0])}
		default:
			r.families = []Family{IPv4}
		}
	}
	for i, f := range r.families {
		if !f.valid() {
			return nil, invalid("unknown IP family %q", f)
		}
		if slices.Contains(r.families[:i], f) {
			return nil, invalid("IP family %s listed twice", f)
		}
	}
	switch {
	case r.policy == SingleStack && len(r.families) > 1:
		return nil, invalid("SingleStack takes one IP family, got %v", r.families)
	case r.policy == RequireDualStack && len(r.families) < 2:
		return nil, invalid("RequireDualStack needs both IP families, got %v", r.families)
	}
	for _, a := range req.IPs {
		if f := FamilyOf(a); !r.wants(f) {
			return nil, &RequestError{Service: r.key, Family: f, IP: a, Err: ErrWrongFamily,
				Detail: fmt.Sprintf("requested IP %s is %s, the service wants %v", a, f, r.families)}
		}
	}
	for _, p := range r.ports {
		if p.Protocol != TCP && p.Protocol != UDP && p.Protocol != SCTP {
			return nil, invalid("port %s: unknown protocol", p)
		}
		if p.Port == 0 {
			return nil, invalid("port %s: port 0", p)
		}
	}
	return r, nil
}

// wants reports whether f is one of the request's families.
func (r *request) wants(f Family) bool { return slices.Contains(r.families, f) }

// asks reports whether the request names p or one of p's addresses: then p
// serves it even with autoAssign off.
func (r *request) asks(p *pool) bool {
	if r.pool == p.name {
		return true
	}
	for fi, a := range r.explicit {
		if a.IsValid() && p.spaces[fi] != nil && p.spaces[fi].contains(u128Of(a)) {
			return true
		}
	}
	return false
}

// collision returns a Port the two lists have in common.
func collision(a, b []Port) (Port, bool) {
	for _, p := range a {
		if slices.Contains(b, p) {
			return p, true
		}
	}
	return Port{}, false
}
