package speaker

import (
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/onprem-lb/onprem-lb/config"
	"github.com/onprem-lb/onprem-lb/lbsvc"
	"github.com/onprem-lb/onprem-lb/speaker/health"
)

// healthTargets returns what the prober checks: every node's service proxy at its
// InternalIP, and each served Local Service's healthCheckNodePort on the nodes the
// EndpointSlices say have a ready local endpoint. It does not modify its inputs.
func healthTargets(cfg *config.Config, svcs []*corev1.Service, endpoints func(types.NamespacedName) []*discoveryv1.EndpointSlice, nodes []*corev1.Node) health.Targets {
	t := health.Targets{Nodes: map[string]netip.Addr{}, Local: map[health.ServiceKey]health.LocalTarget{}}
	var names []string
	for _, n := range nodes {
		if ips := nodeIPs(n); len(ips) > 0 {
			t.Nodes[n.Name] = ips[0]
			names = append(names, n.Name)
		}
	}
	slices.Sort(names)
	for _, svc := range svcs {
		if !lbsvc.Serves(cfg.LoadBalancerClass, svc) || svc.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyLocal ||
			svc.Spec.HealthCheckNodePort == 0 || len(svc.Status.LoadBalancer.Ingress) == 0 {
			continue
		}
		eps := endpoints(keyOf(svc))
		var with []string
		for _, family := range []discoveryv1.AddressType{discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6} {
			with = union(with, localNodes(eps, family, names))
		}
		t.Local[keyOf(svc)] = health.LocalTarget{Port: uint16(svc.Spec.HealthCheckNodePort), Nodes: with}
	}
	return t
}
