package speaker

import (
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/onprem-lb/onprem-lb/config"
	"github.com/onprem-lb/onprem-lb/lbsvc"
)

// Inputs are everything the owner of a VIP depends on. Every speaker holds the same Inputs
// (the API objects through informers, the members through gossip), so every speaker computes
// the same Assignments.
type Inputs struct {
	Config *config.Config
	// Services are every Service; those this configuration does not serve are ignored.
	Services []*corev1.Service
	// Endpoints returns the EndpointSlices of a Service.
	Endpoints func(svc types.NamespacedName) []*discoveryv1.EndpointSlice
	// Nodes are every Node, by name.
	Nodes map[string]*corev1.Node
	// Members are the names of the nodes whose speaker is alive.
	Members []string
	// ProxyHealthy says whether a node's service proxy is healthy, so that it can serve
	// Cluster Services; nil means every node's is.
	ProxyHealthy func(node string) bool
	// LocalHealthy says whether a node's healthCheckNodePort for a Local Service reports
	// local endpoints; nil means it does wherever the EndpointSlices say so.
	LocalHealthy func(svc types.NamespacedName, node string) bool
	// LocalConfirmed is LocalHealthy for VIPs advertised over BGP: a node's
	// healthCheckNodePort must have reported local endpoints at least once (a route attracts
	// traffic from the whole network at once); nil means LocalHealthy.
	LocalConfirmed func(svc types.NamespacedName, node string) bool
}

// Assignment says which node announces one VIP.
type Assignment struct {
	IP netip.Addr
	// Owner is the node that announces IP; "" if no node may (see Reason).
	Owner string
	// Pool is the name of the pool that holds IP.
	Pool string
	// Interfaces are the pool's interfaces; empty means the speaker chooses.
	Interfaces []string
	// Services are the Services that have IP in their status, sorted.
	Services []types.NamespacedName
	// Reason says why no node may announce IP; "" when Owner is set.
	Reason string
	// Nodes are the nodes that can serve IP, sorted, Owner among them; empty when Reason is
	// set. With BGP each of them advertises IP.
	Nodes []string
	// Announce is how the pool announces IP.
	Announce config.Announce
}

// Skipped is an ingress IP of a served Service that no speaker announces.
type Skipped struct {
	Service types.NamespacedName
	IP      string
	Reason  string
}

// Assign computes the owner of every VIP: the IPs in the status of the Services the
// configuration serves. A VIP outside every pool is never assigned; it is reported in skipped.
// The eligible nodes of a VIP are the live members that have a Node, lack the
// node.kubernetes.io/exclude-from-external-load-balancers label and match the pool's
// nodeSelector, and, for each Service, whose service proxy is healthy (Cluster) or that
// have a ready local endpoint of the VIP's family (or, when no node has one, a serving one,
// as kube-proxy falls back to terminating endpoints) that their healthCheckNodePort confirms
// (Local; for a pool announced over BGP, that has confirmed it at least once: see
// Inputs.LocalConfirmed). Services that share a VIP get the nodes eligible for all of
// them, or, if no node is, for any of them. Assign does not modify its inputs.
func Assign(in Inputs) (assignments map[netip.Addr]*Assignment, skipped []Skipped) {
	base := baseNodes(in)
	byIP := map[netip.Addr][]*corev1.Service{}
	for _, svc := range in.Services {
		if !lbsvc.Serves(in.Config.LoadBalancerClass, svc) {
			continue
		}
		ips, invalid := lbsvc.IngressIPs(svc)
		for _, s := range invalid {
			skipped = append(skipped, Skipped{keyOf(svc), s, "not an IP address"})
		}
		for _, ip := range ips {
			byIP[ip] = append(byIP[ip], svc)
		}
	}
	assignments = make(map[netip.Addr]*Assignment, len(byIP))
	for ip, svcs := range byIP {
		pool, ok := in.Config.PoolOf(ip)
		if !ok {
			for _, svc := range svcs {
				skipped = append(skipped, Skipped{keyOf(svc), ip.String(), "outside every pool of the pool file"})
			}
			continue
		}
		a := &Assignment{IP: ip, Pool: pool.Name, Interfaces: pool.Interfaces, Announce: pool.Announce}
		for _, svc := range svcs {
			a.Services = append(a.Services, keyOf(svc))
		}
		slices.SortFunc(a.Services, compareKeys)
		a.Nodes, a.Reason = servingNodes(in, ip, pool, base, svcs)
		if len(a.Nodes) > 0 {
			a.Owner = Owner(ip, a.Nodes)
		}
		assignments[ip] = a
	}
	slices.SortStableFunc(skipped, func(a, b Skipped) int { return compareKeys(a.Service, b.Service) })
	return assignments, skipped
}

// excluded reports whether node n has the exclusion label
// (node.kubernetes.io/exclude-from-external-load-balancers): it serves no VIP.
func excluded(n *corev1.Node) bool {
	_, ok := n.Labels[corev1.LabelNodeExcludeBalancers]
	return ok
}

// baseNodes returns the live members that have a Node without the exclusion label, sorted.
func baseNodes(in Inputs) []*corev1.Node {
	var nodes []*corev1.Node
	for _, name := range in.Members {
		n, ok := in.Nodes[name]
		if !ok {
			continue
		}
		if excluded(n) {
			continue
		}
		nodes = append(nodes, n)
	}
	slices.SortFunc(nodes, func(a, b *corev1.Node) int { return strings.Compare(a.Name, b.Name) })
	return nodes
}

// servingNodes returns the base nodes that can serve ip, sorted, or says why there is none.
func servingNodes(in Inputs, ip netip.Addr, pool *config.Pool, base []*corev1.Node, svcs []*corev1.Service) ([]string, string) {
	if len(base) == 0 {
		return nil, "no live speaker on a node that may announce (exclusion label)"
	}
	var candidates []string
	for _, n := range base {
		if pool.NodeSelector.Matches(labels.Set(n.Labels)) {
			candidates = append(candidates, n.Name)
		}
	}
	if len(candidates) == 0 {
		return nil, "no live speaker on a node matching the nodeSelector of pool " + pool.Name
	}
	var all, some []string
	for i, svc := range svcs {
		var nodes []string
		if svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal {
			key := keyOf(svc)
			healthy := in.LocalHealthy
			if pool.Announce.BGP() && in.LocalConfirmed != nil {
				healthy = in.LocalConfirmed
			}
			nodes = slices.DeleteFunc(localNodes(in.Endpoints(key), familyOf(ip), candidates), func(n string) bool {
				return healthy != nil && !healthy(key, n)
			})
		} else {
			nodes = slices.DeleteFunc(slices.Clone(candidates), func(n string) bool {
				return in.ProxyHealthy != nil && !in.ProxyHealthy(n)
			})
		}
		if i == 0 {
			all = nodes
		} else {
			all = intersect(all, nodes)
		}
		some = union(some, nodes)
	}
	if len(all) == 0 {
		all = some
	}
	if len(all) == 0 {
		return nil, "no eligible node has a healthy service proxy, or, for externalTrafficPolicy Local, a ready local endpoint"
	}
	return all, ""
}

// familyOf returns the EndpointSlice address type of ip's family.
func familyOf(ip netip.Addr) discoveryv1.AddressType {
	if ip.Is6() {
		return discoveryv1.AddressTypeIPv6
	}
	return discoveryv1.AddressTypeIPv4
}

// localNodes returns the candidates with a ready endpoint of the family, or, if none has
// one, those with a serving endpoint.
func localNodes(eps []*discoveryv1.EndpointSlice, family discoveryv1.AddressType, candidates []string) []string {
	ready, serving := map[string]bool{}, map[string]bool{}
	for _, s := range eps {
		if s.AddressType != family {
			continue
		}
		for _, ep := range s.Endpoints {
			if ep.NodeName == nil {
				continue
			}
			isReady, isServing := lbsvc.EndpointState(ep.Conditions)
			if isReady {
				ready[*ep.NodeName] = true
			}
			if isServing {
				serving[*ep.NodeName] = true
			}
		}
	}
	pick := func(set map[string]bool) []string {
		var out []string
		for _, n := range candidates {
			if set[n] {
				out = append(out, n)
			}
		}
		return out
	}
	return lbsvc.ReadyOrServing(pick(ready), pick(serving))
}

// intersect returns the names in both sorted lists, sorted.
func intersect(a, b []string) []string {
	var out []string
	for _, x := range a {
		if _, ok := slices.BinarySearch(b, x); ok {
			out = append(out, x)
		}
	}
	return out
}

// union returns the names in either sorted list, sorted.
func union(a, b []string) []string {
	out := slices.Concat(a, b)
	slices.Sort(out)
	return slices.Compact(out)
}

func keyOf(svc *corev1.Service) types.NamespacedName {
	return types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name}
}

func compareKeys(a, b types.NamespacedName) int {
	if c := strings.Compare(a.Namespace, b.Namespace); c != 0 {
		return c
	}
	return strings.Compare(a.Name, b.Name)
}
