package config

import (
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/onprem-lb/onprem-lb/ipam"
)

// Config is a valid IP-pool file.
type Config struct {
	// Pools are the pools in file order; there is at least one.
	Pools []Pool
	// Dataplane says who forwards VIP traffic; never "" (the default is
	// DataplaneKubeProxy).
	Dataplane Dataplane
	// LoadBalancerClass is the class of the Services served: "" for Services
	// without a class, else a qualified name.
	LoadBalancerClass string
	// BGP is the bgp: section; nil when the file has none (no pool may then
	// announce over BGP).
	BGP *BGP
	// Warnings are problems that did not stop the file from loading, one
	// sentence each, e.g. "pools[0].autoassign: unknown field". The caller
	// logs them.
	Warnings []string
}

// Pool is one pool: what the allocator needs, plus what the speaker needs.
type Pool struct {
	// Pool is the allocator's part. Its ServiceSelector is nil when the
	// file gives no serviceSelector or an empty one (every Service matches).
	ipam.Pool
	// Interfaces are the interfaces the speaker announces this pool's
	// addresses on; empty means the speaker chooses.
	Interfaces []string
	// NodeSelector selects the nodes that may announce this pool's
	// addresses; labels.Everything() when the file gives none. Never nil.
	NodeSelector labels.Selector
	// Announce says how the addresses reach the network; never "" (the
	// default is AnnounceL2).
	Announce Announce
	// BGPAdvertisement is how they are advertised when Announce.BGP(); else
	// the default (aggregation lengths 32 and 128, nothing else).
	BGPAdvertisement BGPAdvertisement
}

// IPAMPools returns the allocator's part of every pool, in file order, for
// ipam.New or Allocator.Reconfigure. The pools share their slices with c and
// must not be modified.
func (c *Config) IPAMPools() []ipam.Pool {
	pools := make([]ipam.Pool, len(c.Pools))
	for i, p := range c.Pools {
		pools[i] = p.Pool
	}
	return pools
}

// Equal reports whether c and o configure the same thing, warnings
// included. Selectors are equal when their requirements are. It is meant for
// Configs returned by Parse: a ServiceSelector of another kind is equal to
// nothing.
func (c *Config) Equal(o *Config) bool {
	if c == nil || o == nil {
		return c == o
	}
	return c.Dataplane == o.Dataplane && c.LoadBalancerClass == o.LoadBalancerClass &&
		slices.Equal(c.Warnings, o.Warnings) && slices.EqualFunc(c.Pools, o.Pools, Pool.equal) &&
		c.BGP.equal(o.BGP)
}

func (p Pool) equal(o Pool) bool {
	return p.Name == o.Name && p.AutoAssign == o.AutoAssign && p.AvoidBuggyIPs == o.AvoidBuggyIPs &&
		p.Priority == o.Priority && slices.Equal(p.Addresses, o.Addresses) && slices.Equal(p.Exclude, o.Exclude) &&
		slices.Equal(p.Namespaces, o.Namespaces) && slices.Equal(p.Interfaces, o.Interfaces) &&
		serviceSelectorsEqual(p.ServiceSelector, o.ServiceSelector) &&
		selectorKey(p.NodeSelector) == selectorKey(o.NodeSelector) &&
		p.Announce == o.Announce && p.BGPAdvertisement.equal(o.BGPAdvertisement)
}

func serviceSelectorsEqual(a, b ipam.Selector) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	sa, okA := a.(serviceSelector)
	sb, okB := b.(serviceSelector)
	return okA && okB && selectorKey(sa.sel) == selectorKey(sb.sel)
}

// selectorKey returns the requirements of s in a canonical form: the order
// in which a LabelSelector lists them does not matter.
func selectorKey(s labels.Selector) string {
	if s == nil {
		return "<nil>"
	}
	reqs, selectable := s.Requirements()
	if !selectable {
		return "<nothing>"
	}
	keys := make([]string, len(reqs))
	for i, r := range reqs {
		keys[i] = r.String()
	}
	slices.Sort(keys)
	return strings.Join(keys, ",")
}

// serviceSelector adapts a label selector to ipam.Selector.
type serviceSelector struct{ sel labels.Selector }

// Matches reports whether the selector matches the Service labels l.
func (s serviceSelector) Matches(l map[string]string) bool { return s.sel.Matches(labels.Set(l)) }

// String returns the selector in kubectl's syntax, e.g. "env=prod,tier in (a,b)".
func (s serviceSelector) String() string { return s.sel.String() }

// Dataplane says who forwards traffic to a VIP on the node that owns it.
type Dataplane string

const (
	// DataplaneKubeProxy: the node's service proxy (kube-proxy or any proxy
	// honoring ipMode VIP) forwards VIP traffic. The default.
	DataplaneKubeProxy Dataplane = "kube-proxy"
	// DataplaneIPTables: the speaker programs its own iptables chains, for
	// service proxies that do not handle LoadBalancer IPs.
	DataplaneIPTables Dataplane = "iptables"
)

// IPMode returns the ipMode of the Service status ingress entries under d:
// Proxy for DataplaneIPTables, VIP for DataplaneKubeProxy (and for any value
// Parse would not return).
func (d Dataplane) IPMode() corev1.LoadBalancerIPMode {
	if d == DataplaneIPTables {
		return corev1.LoadBalancerIPModeProxy
	}
	return corev1.LoadBalancerIPModeVIP
}

// PoolOf returns the pool whose addresses hold ip, or false if none does.
// Pools never overlap (Parse rejects that), so there is at most one.
func (c *Config) PoolOf(ip netip.Addr) (*Pool, bool) {
	for i := range c.Pools {
		for _, r := range c.Pools[i].Addresses {
			if r.Contains(ip) {
				return &c.Pools[i], true
			}
		}
	}
	return nil, false
}
