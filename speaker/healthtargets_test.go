package speaker

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/onprem-lb/onprem-lb/config"
	"github.com/onprem-lb/onprem-lb/speaker/health"
)

func TestHealthTargets(t *testing.T) {
	cfg, err := config.Parse("pools.yaml", []byte(assignPools))
	if err != nil {
		t.Fatal(err)
	}
	local := svcWith("loc", true, "198.18.0.200")
	local.Spec.HealthCheckNodePort = 31000
	pending := svcWith("pending", true) // no IP yet: nothing to gate
	pending.Spec.HealthCheckNodePort = 31001
	cluster := svcWith("web", false, "198.18.0.201")
	noIP := node("node-4", nil) // no InternalIP: cannot be probed
	nodes := []*corev1.Node{nodeWithIP("node-1", "198.18.0.11"), nodeWithIP("node-2", "2001:db8:18::c"), noIP}
	slices := map[string][]*discoveryv1.EndpointSlice{
		"loc": {slice(discoveryv1.AddressTypeIPv4, "node-1", "node-2:down"), slice(discoveryv1.AddressTypeIPv6, "node-2")},
	}
	got := healthTargets(cfg, []*corev1.Service{local, pending, cluster}, func(k types.NamespacedName) []*discoveryv1.EndpointSlice { return slices[k.Name] }, nodes)
	want := health.Targets{
		Nodes: map[string]netip.Addr{"node-1": netip.MustParseAddr("198.18.0.11"), "node-2": netip.MustParseAddr("2001:db8:18::c")},
		Local: map[health.ServiceKey]health.LocalTarget{{Namespace: "default", Name: "loc"}: {Port: 31000, Nodes: []string{"node-1", "node-2"}}},
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("targets (-want +got):\n%s", diff)
	}
}
