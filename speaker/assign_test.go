package speaker

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/onprem-lb/onprem-lb/config"
)

func TestOwnerIsOrderIndependentAndStable(t *testing.T) {
	nodes := []string{"node-1", "node-2", "node-3", "node-4"}
	reversed := []string{"node-4", "node-3", "node-2", "node-1"}
	moved := 0
	const n = 2000
	for i := range n {
		ip := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
		a, b := Owner(ip, nodes), Owner(ip, reversed)
		if a != b {
			t.Fatalf("%s: owner %s for %v, %s for %v", ip, a, nodes, b, reversed)
		}
		// node-4 leaves: only its IPs move.
		after := Owner(ip, nodes[:3])
		if a != "node-4" && after != a {
			t.Fatalf("%s moved from %s to %s although %s stayed", ip, a, after, a)
		}
		if a == "node-4" {
			moved++
		}
	}
	// Rendezvous hashing spreads evenly: each of 4 nodes owns about a quarter.
	if moved < n/4-n/10 || moved > n/4+n/10 {
		t.Errorf("node-4 owned %d of %d IPs, want about %d", moved, n, n/4)
	}
	if got := Owner(netip.MustParseAddr("198.18.0.1"), nil); got != "" {
		t.Errorf("Owner with no nodes = %q, want \"\"", got)
	}
}

func TestOwnerSpreadsEvenly(t *testing.T) {
	nodes := []string{"a", "b", "c"}
	count := map[string]int{}
	const n = 3000
	for i := range n {
		count[Owner(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 14: byte(i >> 8), 15: byte(i)}), nodes)]++
	}
	for _, node := range nodes {
		if c := count[node]; c < n/3-n/15 || c > n/3+n/15 {
			t.Errorf("node %s owns %d of %d IPv6 VIPs, want about %d", node, c, n, n/3)
		}
	}
}

const assignPools = `
pools:
  - name: lan
    addresses: [198.18.0.200-198.18.0.239, 2001:db8:18::200/122]
  - name: rack
    addresses: [198.18.1.0/24]
    interfaces: [eth1]
    nodeSelector:
      matchLabels: {rack: a}
  - name: routed
    addresses: [198.18.2.0/24]
    announce: bgp
bgp:
  asn: 64512
  peers: [{address: 198.18.0.254, asn: 64513}]
`

func node(name string, labels map[string]string) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
}

func svcWith(name string, local bool, ips ...string) *corev1.Service {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer},
	}
	if local {
		svc.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	}
	for _, ip := range ips {
		svc.Status.LoadBalancer.Ingress = append(svc.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip})
	}
	return svc
}

// slice has one endpoint per "node" (ready), "node:serving" (terminating but serving) or
// "node:down" (neither), without addresses.
func slice(family discoveryv1.AddressType, endpoints ...string) *discoveryv1.EndpointSlice {
	eps := make([][3]string, len(endpoints))
	for i, e := range endpoints {
		node, state, _ := strings.Cut(e, ":")
		eps[i] = [3]string{node, "", state}
	}
	return endpointSlice(family, eps...)
}

func TestAssign(t *testing.T) {
	cfg, err := config.Parse("pools.yaml", []byte(assignPools))
	if err != nil {
		t.Fatal(err)
	}
	three := map[string]*corev1.Node{"node-1": node("node-1", nil), "node-2": node("node-2", nil), "node-3": node("node-3", nil)}
	all := []string{"node-1", "node-2", "node-3"}
	ip := netip.MustParseAddr("198.18.0.200")
	ip6 := netip.MustParseAddr("2001:db8:18::200")
	v4 := discoveryv1.AddressTypeIPv4
	v6 := discoveryv1.AddressTypeIPv6
	web := types.NamespacedName{Namespace: "default", Name: "web"}
	dns := types.NamespacedName{Namespace: "default", Name: "dns"}

	tests := []struct {
		name      string
		services  []*corev1.Service
		slices    map[string][]*discoveryv1.EndpointSlice
		nodes     map[string]*corev1.Node
		members   []string
		unhealthy map[string]bool // node, or namespace/name/node for a Local Service
		// unconfirmed are the namespace/name/node of Local Services whose healthCheckNodePort
		// has not reported local endpoints yet.
		unconfirmed map[string]bool
		want        map[netip.Addr]*Assignment
		skipped     []Skipped
	}{{
		name:     "cluster: any live node",
		services: []*corev1.Service{svcWith("web", false, "198.18.0.200")},
		nodes:    three, members: all,
		want: map[netip.Addr]*Assignment{ip: {IP: ip, Owner: Owner(ip, all), Pool: "lan", Services: []types.NamespacedName{web}, Nodes: all}},
	}, {
		name:     "a member without a Node object and a dead node are not eligible",
		services: []*corev1.Service{svcWith("web", false, "198.18.0.200")},
		nodes:    map[string]*corev1.Node{"node-2": node("node-2", nil)}, members: []string{"node-2", "stranger"},
		want: map[netip.Addr]*Assignment{ip: {IP: ip, Owner: "node-2", Pool: "lan", Services: []types.NamespacedName{web}, Nodes: []string{"node-2"}}},
	}, {
		name:     "exclusion label",
		services: []*corev1.Service{svcWith("web", false, "198.18.0.200")},
		nodes: map[string]*corev1.Node{
			"node-1": node("node-1", map[string]string{corev1.LabelNodeExcludeBalancers: ""}),
			"node-2": node("node-2", map[string]string{corev1.LabelNodeExcludeBalancers: "true"}),
			"node-3": node("node-3", nil),
		},
		members: all,
		want:    map[netip.Addr]*Assignment{ip: {IP: ip, Owner: "node-3", Pool: "lan", Services: []types.NamespacedName{web}, Nodes: []string{"node-3"}}},
	}, {
		name:     "every node excluded: no owner, and why",
		services: []*corev1.Service{svcWith("web", false, "198.18.0.200")},
		nodes:    map[string]*corev1.Node{"node-1": node("node-1", map[string]string{corev1.LabelNodeExcludeBalancers: ""})},
		members:  []string{"node-1"},
		want: map[netip.Addr]*Assignment{ip: {IP: ip, Pool: "lan", Services: []types.NamespacedName{web},
			Reason: "no live speaker on a node that may announce (exclusion label)"}},
	}, {
		name:     "pool nodeSelector and interfaces",
		services: []*corev1.Service{svcWith("web", false, "198.18.1.7")},
		nodes:    map[string]*corev1.Node{"node-1": node("node-1", nil), "node-2": node("node-2", map[string]string{"rack": "a"}), "node-3": node("node-3", nil)},
		members:  all,
		want: map[netip.Addr]*Assignment{netip.MustParseAddr("198.18.1.7"): {IP: netip.MustParseAddr("198.18.1.7"), Owner: "node-2", Pool: "rack",
			Interfaces: []string{"eth1"}, Services: []types.NamespacedName{web}, Nodes: []string{"node-2"}}},
	}, {
		name:     "nodeSelector matches no live node",
		services: []*corev1.Service{svcWith("web", false, "198.18.1.7")},
		nodes:    three, members: all,
		want: map[netip.Addr]*Assignment{netip.MustParseAddr("198.18.1.7"): {IP: netip.MustParseAddr("198.18.1.7"), Pool: "rack",
			Interfaces: []string{"eth1"}, Services: []types.NamespacedName{web},
			Reason: "no live speaker on a node matching the nodeSelector of pool rack"}},
	}, {
		name:     "local: only the node with a ready endpoint of the VIP's family",
		services: []*corev1.Service{svcWith("web", true, "198.18.0.200", "2001:db8:18::200")},
		slices:   map[string][]*discoveryv1.EndpointSlice{"web": {slice(v4, "node-3", "node-1:down"), slice(v6, "node-2")}},
		nodes:    three, members: all,
		want: map[netip.Addr]*Assignment{
			ip:  {IP: ip, Owner: "node-3", Pool: "lan", Services: []types.NamespacedName{web}, Nodes: []string{"node-3"}},
			ip6: {IP: ip6, Owner: "node-2", Pool: "lan", Services: []types.NamespacedName{web}, Nodes: []string{"node-2"}},
		},
	}, {
		name:     "local: ready endpoints win over serving ones",
		services: []*corev1.Service{svcWith("web", true, "198.18.0.200")},
		slices:   map[string][]*discoveryv1.EndpointSlice{"web": {slice(v4, "node-1:serving", "node-2")}},
		nodes:    three, members: all,
		want: map[netip.Addr]*Assignment{ip: {IP: ip, Owner: "node-2", Pool: "lan", Services: []types.NamespacedName{web}, Nodes: []string{"node-2"}}},
	}, {
		name:     "local: serving endpoints when none is ready",
		services: []*corev1.Service{svcWith("web", true, "198.18.0.200")},
		slices:   map[string][]*discoveryv1.EndpointSlice{"web": {slice(v4, "node-1:serving", "node-2:down")}},
		nodes:    three, members: all,
		want: map[netip.Addr]*Assignment{ip: {IP: ip, Owner: "node-1", Pool: "lan", Services: []types.NamespacedName{web}, Nodes: []string{"node-1"}}},
	}, {
		name:     "local: the endpoint's node is dead",
		services: []*corev1.Service{svcWith("web", true, "198.18.0.200")},
		slices:   map[string][]*discoveryv1.EndpointSlice{"web": {slice(v4, "node-3")}},
		nodes:    three, members: []string{"node-1", "node-2"},
		want: map[netip.Addr]*Assignment{ip: {IP: ip, Pool: "lan", Services: []types.NamespacedName{web},
			Reason: "no eligible node has a healthy service proxy, or, for externalTrafficPolicy Local, a ready local endpoint"}},
	}, {
		name:     "cluster: a node whose service proxy is unhealthy is not eligible",
		services: []*corev1.Service{svcWith("web", false, "198.18.0.200")},
		nodes:    three, members: all,
		unhealthy: map[string]bool{Owner(ip, all): true},
		want: map[netip.Addr]*Assignment{ip: {IP: ip, Owner: Owner(ip, slices.DeleteFunc(slices.Clone(all), func(n string) bool { return n == Owner(ip, all) })),
			Pool: "lan", Services: []types.NamespacedName{web},
			Nodes: slices.DeleteFunc(slices.Clone(all), func(n string) bool { return n == Owner(ip, all) })}},
	}, {
		name:     "cluster: no healthy service proxy anywhere",
		services: []*corev1.Service{svcWith("web", false, "198.18.0.200")},
		nodes:    three, members: all,
		unhealthy: map[string]bool{"node-1": true, "node-2": true, "node-3": true},
		want: map[netip.Addr]*Assignment{ip: {IP: ip, Pool: "lan", Services: []types.NamespacedName{web},
			Reason: "no eligible node has a healthy service proxy, or, for externalTrafficPolicy Local, a ready local endpoint"}},
	}, {
		name:     "local: the healthCheckNodePort of a node with the endpoint says it has none",
		services: []*corev1.Service{svcWith("web", true, "198.18.0.200")},
		slices:   map[string][]*discoveryv1.EndpointSlice{"web": {slice(v4, "node-1", "node-2")}},
		nodes:    three, members: all,
		unhealthy: map[string]bool{"default/web/node-1": true, "node-2": true},
		want:      map[netip.Addr]*Assignment{ip: {IP: ip, Owner: "node-2", Pool: "lan", Services: []types.NamespacedName{web}, Nodes: []string{"node-2"}}},
	}, {
		name:     "shared IP: one owner, eligible for every Service",
		services: []*corev1.Service{svcWith("web", true, "198.18.0.200"), svcWith("dns", true, "198.18.0.200")},
		slices: map[string][]*discoveryv1.EndpointSlice{
			"web": {slice(v4, "node-1", "node-2")},
			"dns": {slice(v4, "node-2", "node-3")},
		},
		nodes: three, members: all,
		want: map[netip.Addr]*Assignment{ip: {IP: ip, Owner: "node-2", Pool: "lan", Services: []types.NamespacedName{dns, web}, Nodes: []string{"node-2"}}},
	}, {
		name:     "shared IP, disjoint endpoints: any node eligible for one of them",
		services: []*corev1.Service{svcWith("web", true, "198.18.0.200"), svcWith("dns", true, "198.18.0.200")},
		slices: map[string][]*discoveryv1.EndpointSlice{
			"web": {slice(v4, "node-1")},
			"dns": {slice(v4, "node-3")},
		},
		nodes: three, members: all,
		want: map[netip.Addr]*Assignment{ip: {IP: ip, Owner: Owner(ip, []string{"node-1", "node-3"}), Pool: "lan", Services: []types.NamespacedName{dns, web}, Nodes: []string{"node-1", "node-3"}}},
	}, {
		name:     "BGP pool: the owner among every node that can serve, which all advertise",
		services: []*corev1.Service{svcWith("web", false, "198.18.2.9")},
		nodes:    three, members: all,
		want: map[netip.Addr]*Assignment{netip.MustParseAddr("198.18.2.9"): {IP: netip.MustParseAddr("198.18.2.9"),
			Owner: Owner(netip.MustParseAddr("198.18.2.9"), all), Pool: "routed", Services: []types.NamespacedName{web}, Nodes: all, Announce: config.AnnounceBGP}},
	}, {
		name:     "BGP pool, local: only nodes whose healthCheckNodePort confirmed local endpoints",
		services: []*corev1.Service{svcWith("web", true, "198.18.2.9")},
		slices:   map[string][]*discoveryv1.EndpointSlice{"web": {slice(v4, "node-1", "node-2")}},
		nodes:    three, members: all,
		unconfirmed: map[string]bool{"default/web/node-1": true},
		want: map[netip.Addr]*Assignment{netip.MustParseAddr("198.18.2.9"): {IP: netip.MustParseAddr("198.18.2.9"),
			Owner: "node-2", Pool: "routed", Services: []types.NamespacedName{web}, Nodes: []string{"node-2"}, Announce: config.AnnounceBGP}},
	}, {
		name:     "L2 pool, local: a node not probed yet is eligible (a fresh VIP does not wait)",
		services: []*corev1.Service{svcWith("web", true, "198.18.0.200")},
		slices:   map[string][]*discoveryv1.EndpointSlice{"web": {slice(v4, "node-1")}},
		nodes:    three, members: all,
		unconfirmed: map[string]bool{"default/web/node-1": true},
		want:        map[netip.Addr]*Assignment{ip: {IP: ip, Owner: "node-1", Pool: "lan", Services: []types.NamespacedName{web}, Nodes: []string{"node-1"}}},
	}, {
		name: "VIPs outside the pools, bad IPs, other classes and other types are never assigned",
		services: []*corev1.Service{
			svcWith("web", false, "198.18.5.5", "not-an-ip"),
			func() *corev1.Service {
				s := svcWith("classy", false, "198.18.0.201")
				s.Spec.LoadBalancerClass = ptr.To("example.com/other")
				return s
			}(),
			func() *corev1.Service {
				s := svcWith("plain", false, "198.18.0.202")
				s.Spec.Type = corev1.ServiceTypeClusterIP
				return s
			}(),
		},
		nodes: three, members: all,
		want: map[netip.Addr]*Assignment{},
		skipped: []Skipped{
			{web, "not-an-ip", "not an IP address"},
			{web, "198.18.5.5", "outside every pool of the pool file"},
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := Inputs{
				Config:   cfg,
				Services: tt.services,
				Endpoints: func(svc types.NamespacedName) []*discoveryv1.EndpointSlice {
					return tt.slices[svc.Name]
				},
				Nodes:        tt.nodes,
				Members:      tt.members,
				ProxyHealthy: func(node string) bool { return !tt.unhealthy[node] },
				LocalHealthy: func(svc types.NamespacedName, node string) bool { return !tt.unhealthy[svc.String()+"/"+node] },
				LocalConfirmed: func(svc types.NamespacedName, node string) bool {
					return !tt.unhealthy[svc.String()+"/"+node] && !tt.unconfirmed[svc.String()+"/"+node]
				},
			}
			for _, a := range tt.want {
				if a.Announce == "" {
					a.Announce = config.AnnounceL2 // the pools' default
				}
			}
			got, skipped := Assign(in)
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("assignments (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.skipped, skipped); diff != "" {
				t.Errorf("skipped (-want +got):\n%s", diff)
			}
		})
	}
}
