// Package lbsvc is what onprem-lb reads of a Service, in one place for the
// cloud-controller-manager and the speaker: whether it serves the Service, the IPs of its
// status, and which of its endpoints count. It has no state and modifies nothing.
package lbsvc

import (
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/utils/ptr"
)

// Serves reports whether onprem-lb running with loadBalancerClass class serves svc: a
// LoadBalancer Service of that class, or, for "", one without a class. Both binaries pass
// the class they started with (config.Watcher keeps it until a restart).
func Serves(class string, svc *corev1.Service) bool {
	return svc.Spec.Type == corev1.ServiceTypeLoadBalancer && ptr.Deref(svc.Spec.LoadBalancerClass, "") == class
}

// IngressIPs returns the IPs of svc's status.loadBalancer.ingress in order, and the
// entries that are not a plain IPv4 or IPv6 address (a hostname, an IPv6 address with a
// zone such as fe80::1%eth0, an IPv4-mapped IPv6 address, garbage): no VIP is one of those.
func IngressIPs(svc *corev1.Service) (ips []netip.Addr, invalid []string) {
	for _, in := range svc.Status.LoadBalancer.Ingress {
		ip, err := netip.ParseAddr(in.IP)
		if err != nil || ip.Zone() != "" || ip.Is4In6() {
			invalid = append(invalid, in.IP)
			continue
		}
		ips = append(ips, ip)
	}
	return ips, invalid
}

// EndpointState says whether an endpoint is ready and whether it is serving, with the
// API's defaults: a nil Ready means ready, a nil Serving means as Ready.
func EndpointState(c discoveryv1.EndpointConditions) (ready, serving bool) {
	ready = ptr.Deref(c.Ready, true)
	return ready, ptr.Deref(c.Serving, ready)
}

// ReadyOrServing returns ready if it is not empty, else serving: as kube-proxy does, a
// Service whose endpoints are all terminating is served by the serving ones.
func ReadyOrServing[T any](ready, serving []T) []T {
	if len(ready) > 0 {
		return ready
	}
	return serving
}
