package lbsvc

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/utils/ptr"
)

func withIngress(ips ...string) *corev1.Service {
	svc := &corev1.Service{}
	for _, ip := range ips {
		svc.Status.LoadBalancer.Ingress = append(svc.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip})
	}
	return svc
}

func TestIngressIPs(t *testing.T) {
	tests := []struct {
		name        string
		ingress     []string
		want        []string
		wantInvalid []string
	}{
		{name: "none"},
		{name: "dual-stack", ingress: []string{"198.18.0.200", "2001:db8:18::200"}, want: []string{"198.18.0.200", "2001:db8:18::200"}},
		{name: "a zoned IPv6 address is no VIP", ingress: []string{"fe80::1%eth0", "198.18.0.200"}, want: []string{"198.18.0.200"}, wantInvalid: []string{"fe80::1%eth0"}},
		{name: "IPv4-mapped", ingress: []string{"::ffff:198.18.0.200"}, wantInvalid: []string{"::ffff:198.18.0.200"}},
		{name: "hostname and empty", ingress: []string{"lb.example.com", ""}, wantInvalid: []string{"lb.example.com", ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ips, invalid := IngressIPs(withIngress(tt.ingress...))
			var want []netip.Addr
			for _, s := range tt.want {
				want = append(want, netip.MustParseAddr(s))
			}
			if diff := cmp.Diff(want, ips, cmp.Comparer(func(a, b netip.Addr) bool { return a == b }), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("ips (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantInvalid, invalid, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("invalid (-want +got):\n%s", diff)
			}
		})
	}
}

func TestServes(t *testing.T) {
	lb := func(class *string) *corev1.Service {
		return &corev1.Service{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, LoadBalancerClass: class}}
	}
	tests := []struct {
		name  string
		class string
		svc   *corev1.Service
		want  bool
	}{
		{name: "no class, running without one", svc: lb(nil), want: true},
		{name: "a class, running without one", svc: lb(ptr.To("example.com/a")), want: false},
		{name: "its class", class: "example.com/a", svc: lb(ptr.To("example.com/a")), want: true},
		{name: "another class", class: "example.com/a", svc: lb(ptr.To("example.com/b")), want: false},
		{name: "no class, running with one", class: "example.com/a", svc: lb(nil), want: false},
		{name: "not a LoadBalancer", svc: &corev1.Service{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP}}, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Serves(tt.class, tt.svc); got != tt.want {
				t.Errorf("Serves(%q) = %v, want %v", tt.class, got, tt.want)
			}
		})
	}
}

func TestEndpointState(t *testing.T) {
	tests := []struct {
		name                   string
		c                      discoveryv1.EndpointConditions
		wantReady, wantServing bool
	}{
		{name: "nil: ready and serving", wantReady: true, wantServing: true},
		{name: "not ready, serving nil: as ready", c: discoveryv1.EndpointConditions{Ready: ptr.To(false)}},
		{name: "terminating but serving", c: discoveryv1.EndpointConditions{Ready: ptr.To(false), Serving: ptr.To(true), Terminating: ptr.To(true)}, wantServing: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ready, serving := EndpointState(tt.c)
			if ready != tt.wantReady || serving != tt.wantServing {
				t.Errorf("EndpointState = %v, %v; want %v, %v", ready, serving, tt.wantReady, tt.wantServing)
			}
		})
	}
	if got := ReadyOrServing([]int{1}, []int{1, 2}); !cmp.Equal(got, []int{1}) {
		t.Errorf("ReadyOrServing with ready ones = %v, want [1]", got)
	}
	if got := ReadyOrServing(nil, []int{2}); !cmp.Equal(got, []int{2}) {
		t.Errorf("ReadyOrServing without ready ones = %v, want the serving [2]", got)
	}
}
