package speaker

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/onprem-lb/onprem-lb/config"
)

// An ingress entry that is not a plain IP address (a zoned IPv6 address, an IPv4-mapped
// one) is no VIP anywhere in the speaker: not assigned, not forwarded.
func TestOddIngressIsNoVIP(t *testing.T) {
	cfg, err := config.Parse("pools.yaml", []byte(assignPools+"dataplane: iptables\n"))
	if err != nil {
		t.Fatal(err)
	}
	svc := svcWith("web", false, "fe80::1%eth0", "::ffff:198.18.0.200", "198.18.0.201")
	svc.Spec.Ports = []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}
	none := func(types.NamespacedName) []*discoveryv1.EndpointSlice { return nil }

	assignments, skipped := Assign(Inputs{Config: cfg, Services: []*corev1.Service{svc}, Endpoints: none,
		Nodes: map[string]*corev1.Node{"node-1": node("node-1", nil)}, Members: []string{"node-1"}})
	key := types.NamespacedName{Namespace: "default", Name: "web"}
	wantSkipped := []Skipped{{key, "fe80::1%eth0", "not an IP address"}, {key, "::ffff:198.18.0.200", "not an IP address"}}
	if diff := cmp.Diff(wantSkipped, skipped); diff != "" {
		t.Errorf("skipped (-want +got):\n%s", diff)
	}
	var assigned []string
	for ip := range assignments {
		assigned = append(assigned, ip.String())
	}
	if diff := cmp.Diff([]string{"198.18.0.201"}, assigned); diff != "" {
		t.Errorf("assigned VIPs (-want +got):\n%s", diff)
	}

	services, _ := forwarding(cfg, []*corev1.Service{svc}, none, "node-1")
	if len(services) != 1 || !cmp.Equal(services[0].VIPs, []netip.Addr{netip.MustParseAddr("198.18.0.201")}, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })) {
		t.Errorf("forwarding = %+v, want only 198.18.0.201 as a VIP", services)
	}
}
