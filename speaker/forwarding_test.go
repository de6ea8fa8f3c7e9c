package speaker

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/onprem-lb/onprem-lb/config"
	"github.com/onprem-lb/onprem-lb/speaker/dataplane"
	"github.com/onprem-lb/onprem-lb/speaker/health"
)

// endpointSlice has one endpoint per {node, ip, state} (state: "" ready, "serving"
// terminating but serving, "down" neither; ip may be ""), serving the port named "http" on
// 8080.
func endpointSlice(family discoveryv1.AddressType, endpoints ...[3]string) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{AddressType: family, Ports: []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP)}}}
	for _, e := range endpoints {
		ep := discoveryv1.Endpoint{NodeName: ptr.To(e[0])}
		if e[1] != "" {
			ep.Addresses = []string{e[1]}
		}
		switch e[2] {
		case "serving":
			ep.Conditions = discoveryv1.EndpointConditions{Ready: ptr.To(false), Serving: ptr.To(true), Terminating: ptr.To(true)}
		case "down":
			ep.Conditions = discoveryv1.EndpointConditions{Ready: ptr.To(false), Serving: ptr.To(false)}
		}
		s.Endpoints = append(s.Endpoints, ep)
	}
	return s
}

func TestForwarding(t *testing.T) {
	cfg, err := config.Parse("pools.yaml", []byte(assignPools+"dataplane: iptables\n"))
	if err != nil {
		t.Fatal(err)
	}
	withPort := func(s *corev1.Service) *corev1.Service {
		s.Spec.Ports = []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}
		return s
	}
	cluster := withPort(svcWith("web", false, "198.18.0.200", "2001:db8:18::200", "198.18.9.9"))
	cluster.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
	cluster.Spec.LoadBalancerSourceRanges = []string{"198.18.0.100/24", "bogus"}
	local := withPort(svcWith("loc", true, "198.18.0.201"))
	local.Spec.HealthCheckNodePort = 31000
	terminating := withPort(svcWith("term", false, "198.18.0.202"))
	pending := withPort(svcWith("pending", false))
	slices := map[string][]*discoveryv1.EndpointSlice{
		"web": {
			endpointSlice(discoveryv1.AddressTypeIPv4, [3]string{"node-1", "198.19.1.2"}, [3]string{"node-2", "198.19.2.2"}, [3]string{"node-2", "198.19.2.3", "down"}),
			endpointSlice(discoveryv1.AddressTypeIPv6, [3]string{"node-1", "2001:db8:19:1::2"}),
		},
		"loc":  {endpointSlice(discoveryv1.AddressTypeIPv4, [3]string{"node-1", "198.19.1.5"}, [3]string{"node-2", "198.19.2.5"})},
		"term": {endpointSlice(discoveryv1.AddressTypeIPv4, [3]string{"node-2", "198.19.2.9", "serving"}, [3]string{"node-2", "198.19.2.8", "down"})},
	}
	got, hcnp := forwarding(cfg, []*corev1.Service{cluster, local, terminating, pending}, func(k types.NamespacedName) []*discoveryv1.EndpointSlice { return slices[k.Name] }, "node-1")
	a := netip.MustParseAddr
	want := []dataplane.Service{{
		Namespace: "default", Name: "web", Local: false,
		VIPs:            []netip.Addr{a("198.18.0.200"), a("2001:db8:18::200")}, // 198.18.9.9 is outside the pools
		AffinityTimeout: 3 * time.Hour,
		SourceRanges:    []netip.Prefix{netip.MustParsePrefix("198.18.0.0/24")},
		Ports: []dataplane.Port{{Protocol: dataplane.TCP, Port: 80, Endpoints: []dataplane.Endpoint{
			{IP: a("198.19.1.2"), Port: 8080, Local: true}, {IP: a("198.19.2.2"), Port: 8080}, {IP: a("2001:db8:19:1::2"), Port: 8080, Local: true},
		}}},
	}, {
		Namespace: "default", Name: "loc", Local: true, VIPs: []netip.Addr{a("198.18.0.201")},
		Ports: []dataplane.Port{{Protocol: dataplane.TCP, Port: 80, Endpoints: []dataplane.Endpoint{
			{IP: a("198.19.1.5"), Port: 8080, Local: true}, {IP: a("198.19.2.5"), Port: 8080},
		}}},
	}, {
		Namespace: "default", Name: "term", VIPs: []netip.Addr{a("198.18.0.202")},
		Ports: []dataplane.Port{{Protocol: dataplane.TCP, Port: 80, Endpoints: []dataplane.Endpoint{{IP: a("198.19.2.9"), Port: 8080}}}},
	}}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b }), cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("dataplane services (-want +got):\n%s", diff)
	}
	wantHCNP := map[health.ServiceKey]health.ServiceHealth{{Namespace: "default", Name: "loc"}: {Port: 31000, LocalEndpoints: 1}}
	if diff := cmp.Diff(wantHCNP, hcnp); diff != "" {
		t.Errorf("healthCheckNodePorts (-want +got):\n%s", diff)
	}

	t.Run("dataplane kube-proxy: the VIPs are only guarded, kube-proxy serves the health ports", func(t *testing.T) {
		kubeProxy, err := config.Parse("pools.yaml", []byte(assignPools))
		if err != nil {
			t.Fatal(err)
		}
		got, hcnp := forwarding(kubeProxy, []*corev1.Service{cluster, local, pending}, func(k types.NamespacedName) []*discoveryv1.EndpointSlice { return slices[k.Name] }, "node-1")
		want := []dataplane.Service{
			{Namespace: "default", Name: "web", VIPs: []netip.Addr{a("198.18.0.200"), a("2001:db8:18::200")}, ProxiedElsewhere: true},
			{Namespace: "default", Name: "loc", VIPs: []netip.Addr{a("198.18.0.201")}, ProxiedElsewhere: true},
		}
		if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
			t.Errorf("dataplane services (-want +got):\n%s", diff)
		}
		if len(hcnp) != 0 {
			t.Errorf("healthCheckNodePorts served beside kube-proxy: %v", hcnp)
		}
	})
}
