package speaker

import (
	"net/netip"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/onprem-lb/onprem-lb/config"
	"github.com/onprem-lb/onprem-lb/lbsvc"
	"github.com/onprem-lb/onprem-lb/speaker/dataplane"
	"github.com/onprem-lb/onprem-lb/speaker/health"
)

// forwarding translates the served Services that have VIPs, and their EndpointSlices, into
// what the iptables dataplane programs on node, and what node's healthCheckNodePorts
// report. With dataplane kube-proxy, kube-proxy forwards and serves those ports: the
// Services are only guarded (dataplane.Service.ProxiedElsewhere), so that a connection
// tried before kube-proxy programs a new VIP is dropped and retried rather than stuck. It
// does not modify its inputs.
func forwarding(cfg *config.Config, svcs []*corev1.Service, endpoints func(types.NamespacedName) []*discoveryv1.EndpointSlice, node string) ([]dataplane.Service, map[health.ServiceKey]health.ServiceHealth) {
	var out []dataplane.Service
	hcnp := map[health.ServiceKey]health.ServiceHealth{}
	for _, svc := range svcs {
		if !lbsvc.Serves(cfg.LoadBalancerClass, svc) {
			continue
		}
		ips, _ := lbsvc.IngressIPs(svc)
		var vips []netip.Addr
		for _, ip := range ips {
			if _, ok := cfg.PoolOf(ip); ok {
				vips = append(vips, ip)
			}
		}
		if len(vips) == 0 {
			continue
		}
		if cfg.Dataplane != config.DataplaneIPTables {
			out = append(out, dataplane.Service{Namespace: svc.Namespace, Name: svc.Name, VIPs: vips, ProxiedElsewhere: true})
			continue
		}
		local := svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal
		slices := endpoints(keyOf(svc))
		d := dataplane.Service{Namespace: svc.Namespace, Name: svc.Name, VIPs: vips, Local: local}
		if svc.Spec.SessionAffinity == corev1.ServiceAffinityClientIP {
			timeout := int32(corev1.DefaultClientIPServiceAffinitySeconds)
			if c := svc.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil {
				timeout = *c.ClientIP.TimeoutSeconds
			}
			d.AffinityTimeout = time.Duration(timeout) * time.Second
		}
		for _, r := range svc.Spec.LoadBalancerSourceRanges {
			if p, err := netip.ParsePrefix(r); err == nil {
				d.SourceRanges = append(d.SourceRanges, p.Masked())
			}
		}
		// Local endpoints, per family (IPv6?): a dual-stack pod counts once, as kube-proxy
		// counts it.
		localEndpoints := map[bool]map[netip.Addr]bool{false: {}, true: {}}
		for _, sp := range svc.Spec.Ports {
			port := dataplane.Port{Protocol: dataplane.Protocol(sp.Protocol), Port: uint16(sp.Port)}
			port.Endpoints = endpointsOf(slices, sp, node)
			for _, ep := range port.Endpoints {
				if ep.Local {
					localEndpoints[ep.IP.Is6()][ep.IP] = true
				}
			}
			d.Ports = append(d.Ports, port)
		}
		out = append(out, d)
		if local && svc.Spec.HealthCheckNodePort != 0 {
			hcnp[keyOf(svc)] = health.ServiceHealth{
				Port: uint16(svc.Spec.HealthCheckNodePort), LocalEndpoints: max(len(localEndpoints[false]), len(localEndpoints[true])),
			}
		}
	}
	return out, hcnp
}

// endpointsOf returns the endpoints of the Service port sp in slices: the ready ones, or, if
// none is ready, the serving ones (as kube-proxy falls back to terminating endpoints), each
// with the target port the slice gives for sp's name.
func endpointsOf(slices []*discoveryv1.EndpointSlice, sp corev1.ServicePort, node string) []dataplane.Endpoint {
	var ready, serving []dataplane.Endpoint
	for _, s := range slices {
		var target *int32
		for _, p := range s.Ports {
			if ptr.Deref(p.Name, "") == sp.Name && ptr.Deref(p.Protocol, corev1.ProtocolTCP) == sp.Protocol {
				target = p.Port
			}
		}
		if target == nil {
			continue
		}
		for _, ep := range s.Endpoints {
			isReady, isServing := lbsvc.EndpointState(ep.Conditions)
			if !isServing {
				continue
			}
			for _, a := range ep.Addresses {
				ip, err := netip.ParseAddr(a)
				if err != nil {
					continue
				}
				e := dataplane.Endpoint{IP: ip, Port: uint16(*target), Local: ptr.Deref(ep.NodeName, "") == node}
				if isReady {
					ready = append(ready, e)
				}
				serving = append(serving, e)
			}
		}
	}
	return lbsvc.ReadyOrServing(ready, serving)
}
