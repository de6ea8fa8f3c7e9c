package provider

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/onprem-lb/onprem-lb/ipam"
)

func service(mutate func(*corev1.Service)) *corev1.Service {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web", Labels: map[string]string{"team": "a"}},
		Spec: corev1.ServiceSpec{
			Type:       corev1.ServiceTypeLoadBalancer,
			IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol},
			Selector:   map[string]string{"app": "web", "tier": "front"},
			Ports: []corev1.ServicePort{
				{Port: 80, Protocol: corev1.ProtocolTCP},
				{Port: 53, Protocol: corev1.ProtocolUDP},
			},
		},
	}
	if mutate != nil {
		mutate(svc)
	}
	return svc
}

func TestRequestFor(t *testing.T) {
	base := ipam.Request{
		Service:  ipam.ServiceKey{Namespace: "ns", Name: "web"},
		Labels:   map[string]string{"team": "a"},
		Families: []ipam.Family{ipam.IPv4},
		Ports:    []ipam.Port{{Protocol: ipam.TCP, Port: 80}, {Protocol: ipam.UDP, Port: 53}},
	}
	with := func(f func(*ipam.Request)) ipam.Request {
		r := base
		f(&r)
		return r
	}
	tests := []struct {
		name    string
		svc     func(*corev1.Service)
		want    ipam.Request
		wantErr string // field the ServiceError names
	}{
		{name: "plain Service", want: base},
		{
			name: "dual-stack, IPv6 first",
			svc: func(s *corev1.Service) {
				s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol, corev1.IPv4Protocol}
				s.Spec.IPFamilyPolicy = ptr.To(corev1.IPFamilyPolicyRequireDualStack)
			},
			want: with(func(r *ipam.Request) {
				r.Families = []ipam.Family{ipam.IPv6, ipam.IPv4}
				r.Policy = ipam.RequireDualStack
			}),
		},
		{
			name: "spec.loadBalancerIP and the annotation agree",
			svc: func(s *corev1.Service) {
				s.Spec.LoadBalancerIP = "198.18.0.210"
				s.Annotations = map[string]string{AnnotationIPs: " 198.18.0.210 , 2001:db8:18::210"}
			},
			want: with(func(r *ipam.Request) {
				r.IPs = []netip.Addr{netip.MustParseAddr("198.18.0.210"), netip.MustParseAddr("2001:db8:18::210")}
			}),
		},
		{
			name: "pool, sharing key and Local traffic",
			svc: func(s *corev1.Service) {
				s.Annotations = map[string]string{AnnotationPool: "lan", AnnotationSharingKey: "dns"}
				s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
			},
			want: with(func(r *ipam.Request) {
				r.Pool, r.SharingKey, r.PodSelector = "lan", "dns", "app=web,tier=front"
			}),
		},
		{name: "two IPv4 addresses", svc: func(s *corev1.Service) {
			s.Annotations = map[string]string{AnnotationIPs: "198.18.0.210,198.18.0.211"}
		}, wantErr: "metadata.annotations[onprem-lb.io/load-balancer-ips]"},
		{name: "spec.loadBalancerIP disagrees with the annotation", svc: func(s *corev1.Service) {
			s.Spec.LoadBalancerIP = "198.18.0.210"
			s.Annotations = map[string]string{AnnotationIPs: "198.18.0.211"}
		}, wantErr: "metadata.annotations[onprem-lb.io/load-balancer-ips]"},
		{name: "not an IP", svc: func(s *corev1.Service) { s.Spec.LoadBalancerIP = "web.example" }, wantErr: "spec.loadBalancerIP"},
		{name: "IP with a zone", svc: func(s *corev1.Service) {
			s.Annotations = map[string]string{AnnotationIPs: "fe80::1%eth0"}
		}, wantErr: "metadata.annotations[onprem-lb.io/load-balancer-ips]"},
		{name: "empty IP list", svc: func(s *corev1.Service) {
			s.Annotations = map[string]string{AnnotationIPs: " "}
		}, wantErr: "metadata.annotations[onprem-lb.io/load-balancer-ips]"},
		{name: "pool name not a DNS label", svc: func(s *corev1.Service) {
			s.Annotations = map[string]string{AnnotationPool: "Lan_1"}
		}, wantErr: "metadata.annotations[onprem-lb.io/pool]"},
		{name: "empty sharing key", svc: func(s *corev1.Service) {
			s.Annotations = map[string]string{AnnotationSharingKey: ""}
		}, wantErr: "metadata.annotations[onprem-lb.io/sharing-key]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc := service(tt.svc)
			orig := svc.DeepCopy()
			got, err := requestFor(svc)
			if tt.wantErr != "" {
				var se *ServiceError
				if !errors.As(err, &se) || se.Field != tt.wantErr || !errors.Is(err, ErrInvalidService) {
					t.Fatalf("error %v, want a ServiceError about %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateComparable(netip.Addr{})); diff != "" {
				t.Errorf("request (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(orig, svc); diff != "" {
				t.Errorf("requestFor modified the Service (-before +after):\n%s", diff)
			}
		})
	}
}

// FuzzRequestFor feeds arbitrary annotation values and spec.loadBalancerIP: every input gets
// a request or a ServiceError, never a panic, and accepted IPs are at most one per family.
func FuzzRequestFor(f *testing.F) {
	for _, seed := range [][4]string{
		{"198.18.0.210", "198.18.0.210,2001:db8:18::210", "lan", "key"},
		{"", ",", "", ""},
		{"::ffff:1.2.3.4", "1.2.3.4,,", "-", "a b"},
		{"", "2001:db8::1,2001:db8::1", "x", "_"},
	} {
		f.Add(seed[0], seed[1], seed[2], seed[3])
	}
	f.Fuzz(func(t *testing.T, lbIP, ips, pool, key string) {
		svc := service(func(s *corev1.Service) {
			s.Spec.LoadBalancerIP = lbIP
			s.Annotations = map[string]string{AnnotationIPs: ips, AnnotationPool: pool, AnnotationSharingKey: key}
		})
		req, err := requestFor(svc)
		if err != nil {
			if !errors.Is(err, ErrInvalidService) {
				t.Fatalf("error %v is not an ErrInvalidService", err)
			}
			return
		}
		families := map[ipam.Family]bool{}
		for _, ip := range req.IPs {
			if families[ipam.FamilyOf(ip)] {
				t.Fatalf("two %s IPs accepted from %q / %q", ipam.FamilyOf(ip), lbIP, ips)
			}
			families[ipam.FamilyOf(ip)] = true
		}
	})
}
