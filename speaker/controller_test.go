package speaker

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/record"

	"github.com/onprem-lb/onprem-lb/config"
	"github.com/onprem-lb/onprem-lb/speaker/dataplane"
	"github.com/onprem-lb/onprem-lb/speaker/health"
	"github.com/onprem-lb/onprem-lb/speaker/l2"
	"github.com/onprem-lb/onprem-lb/speaker/membership"
)

type fakeMembers struct {
	mu    sync.Mutex
	names []string
	left  map[string]bool // LeftGracefully
}

func (f *fakeMembers) set(names ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.names = names
}

func (f *fakeMembers) Members() []membership.Member {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []membership.Member
	for _, n := range f.names {
		mac, _ := net.ParseMAC("02:00:00:00:00:0" + n[len(n)-1:])
		meta, _ := EncodeMACs([]net.HardwareAddr{mac})
		out = append(out, membership.Member{Name: n, Meta: meta})
	}
	return out
}
func (f *fakeMembers) Changed() <-chan struct{} { return nil }

func (f *fakeMembers) LeftGracefully(name string, _ time.Duration) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.left[name]
}

type fakeAnnouncer struct {
	mu      sync.Mutex
	desired map[netip.Addr]l2.Target
}

func (f *fakeAnnouncer) Sync(d map[netip.Addr]l2.Target) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.desired = d
}

type fakeForwarder struct {
	services  []dataplane.Service
	handovers dataplane.Handovers
}

func (f *fakeForwarder) SetHandovers(h dataplane.Handovers) { f.handovers = h }
func (f *fakeForwarder) Sync(s []dataplane.Service) error   { f.services = s; return nil }

type fakeHCNP struct{}

func (fakeHCNP) SyncServices(map[health.ServiceKey]health.ServiceHealth) {}

func nodeWithIP(name, ip string) *corev1.Node {
	n := node(name, nil)
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}}
	return n
}

// newTestController returns a controller of node with fakes for everything but the
// clientset and the members.
func newTestController(node string, client kubernetes.Interface, cfg *config.Config, members *fakeMembers) *controller {
	c := newController(node, client, cfg, members, record.NewFakeRecorder(1000), NewMetrics())
	c.announce, c.prober, c.forward, c.hcnp = &fakeAnnouncer{}, health.NewProber(health.Options{}), &fakeForwarder{}, fakeHCNP{}
	return c
}

func TestControllerSyncAnnouncesOwnedVIPsAndReports(t *testing.T) {
	cfg, err := config.Parse("pools.yaml", []byte(assignPools))
	if err != nil {
		t.Fatal(err)
	}
	var svcs []*corev1.Service
	objs := []runtime.Object{nodeWithIP("node-1", "198.18.0.11"), nodeWithIP("node-2", "198.18.0.12")}
	for i := range 20 {
		s := svcWith("svc-"+string(rune('a'+i)), false, netip.AddrFrom4([4]byte{198, 18, 0, byte(200 + i)}).String())
		svcs = append(svcs, s)
		objs = append(objs, s)
	}
	client := fake.NewClientset(objs...)
	recorder := record.NewFakeRecorder(100)
	members := &fakeMembers{names: []string{"node-1", "node-2"}}
	ann := &fakeAnnouncer{}
	c := newController("node-1", client, cfg, members, recorder, NewMetrics())
	c.announce = ann
	c.prober = health.NewProber(health.Options{})
	fwd := &fakeForwarder{}
	c.forward, c.hcnp = fwd, fakeHCNP{}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.startInformers(ctx); err != nil {
		t.Fatal(err)
	}
	c.sync()

	want := map[netip.Addr]l2.Target{}
	var mine *corev1.Service
	for _, s := range svcs {
		ip := netip.MustParseAddr(s.Status.LoadBalancer.Ingress[0].IP)
		if Owner(ip, []string{"node-1", "node-2"}) == "node-1" {
			want[ip] = l2.Target{}
			mine = s
		}
	}
	if len(want) == 0 || len(want) == len(svcs) {
		t.Fatalf("test needs VIPs owned by each node; node-1 owns %d of %d", len(want), len(svcs))
	}
	if diff := cmp.Diff(want, ann.desired, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("announced (-want +got):\n%s", diff)
	}
	if len(fwd.services) != len(svcs) || !fwd.services[0].ProxiedElsewhere {
		t.Errorf("dataplane kube-proxy: %d Services guarded (%+v), want all %d, proxied elsewhere", len(fwd.services), fwd.services, len(svcs))
	}
	mac, _ := net.ParseMAC("02:00:00:00:00:02")
	if !c.isPeerMAC(mac) {
		t.Errorf("node-2's published MAC %s is not a peer MAC", mac)
	}
	if own, _ := net.ParseMAC("02:00:00:00:00:01"); c.isPeerMAC(own) {
		t.Errorf("this node's own MAC counts as a peer's")
	}
	if got := c.peers(netip.MustParseAddr("198.18.0.11")); !cmp.Equal(got, []netip.Addr{netip.MustParseAddr("198.18.0.12")}, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })) {
		t.Errorf("peers = %v, want [198.18.0.12]", got)
	}

	// The announcer reports the takeover: an event on the Service and a True condition.
	ip := mine.Status.LoadBalancer.Ingress[0].IP
	c.Announcing(netip.MustParseAddr(ip), "eth0")
	select {
	case e := <-recorder.Events:
		if wantEvent := "Normal Announcing Node node-1 announces " + ip + " on eth0"; e != wantEvent {
			t.Errorf("event %q, want %q", e, wantEvent)
		}
	default:
		t.Error("no event recorded")
	}
	for c.queue.Len() > 0 {
		c.processCondition(ctx)
	}
	got, err := client.CoreV1().Services(mine.Namespace).Get(ctx, mine.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cond := meta.FindStatusCondition(got.Status.Conditions, ConditionAnnouncedIPv4)
	if cond == nil || cond.Status != metav1.ConditionTrue || cond.Message != ip+" is announced by node node-1 on eth0" {
		t.Errorf("condition %+v, want True: %s is announced by node node-1 on eth0", cond, ip)
	}
	if len(got.Status.LoadBalancer.Ingress) != 1 || got.Status.LoadBalancer.Ingress[0].IP != ip {
		t.Errorf("the condition patch changed status.loadBalancer to %v", got.Status.LoadBalancer)
	}

	// node-2 dies: node-1 owns everything.
	members.set("node-1")
	c.sync()
	if len(ann.desired) != len(svcs) {
		t.Errorf("after node-2 left, node-1 announces %d VIPs, want all %d", len(ann.desired), len(svcs))
	}
	if len(fwd.handovers.VIPs) != 0 {
		t.Errorf("VIPs taken from a dead node forward their connections to it: %v", fwd.handovers.VIPs)
	}

	// node-2 comes back, then stops gracefully: node-1 takes its VIPs again, and their open
	// connections go on to node-2 (the same when a VIP moves back to a node that rejoins).
	members.set("node-1", "node-2")
	c.sync()
	members.mu.Lock()
	members.names, members.left = []string{"node-1"}, map[string]bool{"node-2": true}
	members.mu.Unlock()
	c.sync()
	var want2 []dataplane.Handover
	for _, s := range svcs {
		if ip := netip.MustParseAddr(s.Status.LoadBalancer.Ingress[0].IP); Owner(ip, []string{"node-1", "node-2"}) == "node-2" {
			want2 = append(want2, dataplane.Handover{VIP: ip, To: netip.MustParseAddr("198.18.0.12")})
		}
	}
	byVIP := func(a, b dataplane.Handover) int { return a.VIP.Compare(b.VIP) }
	slices.SortFunc(fwd.handovers.VIPs, byVIP)
	slices.SortFunc(want2, byVIP)
	if diff := cmp.Diff(want2, fwd.handovers.VIPs, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("handovers after node-2 left gracefully (-want +got):\n%s", diff)
	}
}

func TestComputeSync(t *testing.T) {
	ip := func(s string) netip.Addr { return netip.MustParseAddr(s) }
	key := func(name string) types.NamespacedName { return types.NamespacedName{Namespace: "default", Name: name} }
	a := func(addr, owner, reason string, svcs ...string) *Assignment {
		as := &Assignment{IP: ip(addr), Owner: owner, Reason: reason, Interfaces: []string{"eth0"}}
		for _, s := range svcs {
			as.Services = append(as.Services, key(s))
		}
		return as
	}
	bgpOnly := func(as *Assignment, nodes ...string) *Assignment {
		as.Announce, as.Nodes = config.AnnounceBGP, nodes
		return as
	}
	kept := Skipped{Service: key("old"), IP: "198.18.9.1", Reason: "outside every pool of the pool file"}
	fresh := Skipped{Service: key("new"), IP: "198.18.9.2", Reason: "outside every pool of the pool file"}
	previous := map[netip.Addr]*Assignment{
		ip("198.18.0.200"): a("198.18.0.200", "node-1", "", "same"),
		ip("198.18.0.201"): a("198.18.0.201", "node-2", "", "moves"),
		ip("198.18.0.202"): a("198.18.0.202", "node-1", "", "released"),
		ip("198.18.0.203"): a("198.18.0.203", "", "no live speaker", "unserved"),
		ip("198.18.0.206"): bgpOnly(a("198.18.0.206", "node-1", "", "fewer"), "node-1", "node-2"),
		ip("198.18.0.207"): a("198.18.0.207", "node-1", "", "now-bgp"),
		ip("198.18.0.208"): bgpOnly(a("198.18.0.208", "node-2", "", "steady"), "node-1", "node-2"),
	}
	assignments := map[netip.Addr]*Assignment{
		ip("198.18.0.200"): a("198.18.0.200", "node-1", "", "same"),
		ip("198.18.0.201"): a("198.18.0.201", "node-1", "", "moves"),
		ip("198.18.0.203"): a("198.18.0.203", "", "no node matches", "unserved"),
		ip("198.18.0.204"): a("198.18.0.204", "node-2", "", "created"),
		ip("198.18.0.205"): bgpOnly(a("198.18.0.205", "node-1", "", "advertised"), "node-1"),
		// Same owner, but the condition names the advertising nodes (one fewer) or says how
		// the IP is announced (the pool moved from ARP to BGP): it changes.
		ip("198.18.0.206"): bgpOnly(a("198.18.0.206", "node-1", "", "fewer"), "node-1"),
		ip("198.18.0.207"): bgpOnly(a("198.18.0.207", "node-1", "", "now-bgp"), "node-1"),
		ip("198.18.0.208"): bgpOnly(a("198.18.0.208", "node-2", "", "steady"), "node-1", "node-2"),
	}
	before := maps.Clone(previous)
	got := computeSync("node-1", []string{"node-2", "node-1"}, previous, assignments, []Skipped{kept, fresh}, map[Skipped]bool{kept: true})
	slices.SortFunc(got.changed, compareKeys)
	want := syncStep{
		assignments: assignments,
		desired:     map[netip.Addr]l2.Target{ip("198.18.0.200"): {Interfaces: []string{"eth0"}}, ip("198.18.0.201"): {Interfaces: []string{"eth0"}}},
		coordinator: true,
		changed:     []types.NamespacedName{key("advertised"), key("created"), key("fewer"), key("moves"), key("now-bgp"), key("released"), key("unserved")},
		changes:     3, // took .201 and .205 (owned, though advertised by BGP only), gave up .202
		skipped:     map[Skipped]bool{kept: true, fresh: true},
		fresh:       []Skipped{fresh},
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(syncStep{}), cmp.Comparer(func(x, y netip.Addr) bool { return x == y })); diff != "" {
		t.Errorf("computeSync (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(before, previous, cmp.Comparer(func(x, y netip.Addr) bool { return x == y })); diff != "" {
		t.Errorf("previous modified (-before +after):\n%s", diff)
	}
}

func TestNextHandovers(t *testing.T) {
	vip, other := netip.MustParseAddr("198.18.0.200"), netip.MustParseAddr("198.18.0.201")
	owned := func(owner string) map[netip.Addr]*Assignment {
		return map[netip.Addr]*Assignment{vip: {Owner: owner}, other: {Owner: "node-3"}}
	}
	up := func(nodes ...string) func(string) bool {
		return func(n string) bool { return slices.Contains(nodes, n) }
	}
	was := func(node string) func(netip.Addr, *Assignment) string {
		return func(ip netip.Addr, _ *Assignment) string {
			if ip == vip {
				return node
			}
			return "node-3"
		}
	}
	for _, tt := range []struct {
		name     string
		assigned map[netip.Addr]*Assignment
		had      map[netip.Addr]string
		previous func(netip.Addr, *Assignment) string
		up       func(string) bool
		want     map[netip.Addr]string
	}{
		{"taken from a node still up", owned("node-1"), nil, was("node-2"), up("node-2"), map[netip.Addr]string{vip: "node-2"}},
		{"taken from a node that died", owned("node-1"), nil, was("node-2"), up(), map[netip.Addr]string{}},
		{"not taken: owned before", owned("node-1"), nil, was("node-1"), up("node-1", "node-2"), map[netip.Addr]string{}},
		{"new IP, nobody owned it", owned("node-1"), nil, was(""), up("node-2"), map[netip.Addr]string{}},
		{"kept while the node is up", owned("node-1"), map[netip.Addr]string{vip: "node-2"}, was("node-1"), up("node-2"), map[netip.Addr]string{vip: "node-2"}},
		{"over once the node is gone", owned("node-1"), map[netip.Addr]string{vip: "node-2"}, was("node-1"), up(), map[netip.Addr]string{}},
		{"over once the VIP moved on", owned("node-3"), map[netip.Addr]string{vip: "node-2"}, was("node-1"), up("node-2"), map[netip.Addr]string{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := nextHandovers("node-1", tt.assigned, tt.had, tt.previous, tt.up)
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("handovers (-want +got):\n%s", diff)
			}
		})
	}
}

// callLog records the order of the calls of loggingAnnouncer and loggingForwarder.
type callLog struct{ calls []string }

type loggingAnnouncer struct{ log *callLog }

func (a loggingAnnouncer) Sync(d map[netip.Addr]l2.Target) {
	a.log.calls = append(a.log.calls, fmt.Sprintf("announce %d", len(d)))
}

type loggingForwarder struct {
	log       *callLog
	handovers int
}

func (f *loggingForwarder) SetHandovers(h dataplane.Handovers) { f.handovers = len(h.VIPs) }
func (f *loggingForwarder) Sync([]dataplane.Service) error {
	f.log.calls = append(f.log.calls, fmt.Sprintf("forward %d handovers", f.handovers))
	return nil
}

// TestHandoverBeforeAnnouncing: VIPs taken over from a node that left gracefully get their
// handover programmed before they are announced (else the connections in flight when the
// clients move are reset); other syncs announce first (dataplane kube-proxy).
func TestHandoverBeforeAnnouncing(t *testing.T) {
	cfg, err := config.Parse("pools.yaml", []byte(assignPools))
	if err != nil {
		t.Fatal(err)
	}
	objs := []runtime.Object{nodeWithIP("node-1", "198.18.0.11"), nodeWithIP("node-2", "198.18.0.12")}
	for i := range 10 {
		objs = append(objs, svcWith("svc-"+string(rune('a'+i)), false, netip.AddrFrom4([4]byte{198, 18, 0, byte(200 + i)}).String()))
	}
	members := &fakeMembers{names: []string{"node-1", "node-2"}}
	c := newTestController("node-1", fake.NewClientset(objs...), cfg, members)
	log := &callLog{}
	c.announce, c.forward = loggingAnnouncer{log}, &loggingForwarder{log: log}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.startInformers(ctx); err != nil {
		t.Fatal(err)
	}
	c.sync()
	mine := 0
	for i := range 10 {
		if Owner(netip.AddrFrom4([4]byte{198, 18, 0, byte(200 + i)}), []string{"node-1", "node-2"}) == "node-1" {
			mine++
		}
	}
	members.mu.Lock()
	members.names, members.left = []string{"node-1"}, map[string]bool{"node-2": true}
	members.mu.Unlock()
	c.sync()
	want := []string{
		fmt.Sprintf("announce %d", mine), "forward 0 handovers",
		fmt.Sprintf("forward %d handovers", 10-mine), "announce 10",
	}
	if diff := cmp.Diff(want, log.calls); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
}

// TestSlimKeepsWhatTheSpeakerReads: a slimmed EndpointSlice still indexes
// under its Service and keeps every endpoint's address, conditions, node and
// the ports; what the speaker never reads is gone.
func TestSlimKeepsWhatTheSpeakerReads(t *testing.T) {
	ready, node := true, "node-a"
	full := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: "shop", Name: "web-x7k2p", GenerateName: "web-", ResourceVersion: "42",
			Labels: map[string]string{
				discoveryv1.LabelServiceName: "web", discoveryv1.LabelManagedBy: "endpointslice-controller.k8s.io",
				"app": "web",
			},
			Annotations:     map[string]string{"endpoints.kubernetes.io/last-change-trigger-time": "2026-12-01T10:00:00Z"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Service", Name: "web", UID: "u1"}},
			ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "kube-controller-manager"}},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{
			Addresses:  []string{"198.18.10.5"},
			Conditions: discoveryv1.EndpointConditions{Ready: &ready, Serving: &ready},
			NodeName:   &node,
			Hostname:   new("web-0"),
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: "shop", Name: "web-0", UID: "p1"},
			Hints:      &discoveryv1.EndpointHints{ForZones: []discoveryv1.ForZone{{Name: "a"}}},
		}},
		Ports: []discoveryv1.EndpointPort{{Name: new("http"), Port: new(int32(8080))}},
	}
	before := full.Size()
	want := full.DeepCopy()
	obj, err := slim(full)
	if err != nil {
		t.Fatal(err)
	}
	got := obj.(*discoveryv1.EndpointSlice)
	if keys, _ := sliceService(got); !slices.Equal(keys, []string{"shop/web"}) {
		t.Errorf("slimmed slice indexed under %v, want [shop/web]", keys)
	}
	want.ObjectMeta = metav1.ObjectMeta{Namespace: "shop", Name: "web-x7k2p", ResourceVersion: "42",
		Labels: map[string]string{discoveryv1.LabelServiceName: "web"}}
	want.Endpoints[0].Hostname, want.Endpoints[0].TargetRef, want.Endpoints[0].Hints = nil, nil, nil
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("slimmed slice (-want +got):\n%s", diff)
	}
	t.Logf("EndpointSlice: %d bytes before, %d after", before, got.Size())
}

// TestSlimServiceKeepsWhatTheSpeakerReads: what the speaker computes from a Service (owners,
// forwarding rules, health targets, conditions) is the same after slim, which drops the
// cluster side of its spec, its labels, annotations and managed fields.
func TestSlimServiceKeepsWhatTheSpeakerReads(t *testing.T) {
	cfg, err := config.Parse("pools.yaml", []byte(assignPools))
	if err != nil {
		t.Fatal(err)
	}
	full := svcWith("web", true, "198.18.0.200", "2001:db8:18::200")
	full.Labels, full.Annotations = map[string]string{"app": "web"}, map[string]string{"note": "x"}
	full.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}
	policy, itp := corev1.IPFamilyPolicyPreferDualStack, corev1.ServiceInternalTrafficPolicyLocal
	full.Spec = corev1.ServiceSpec{
		Type: corev1.ServiceTypeLoadBalancer, ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal, HealthCheckNodePort: 31000,
		Ports:    []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(8080), NodePort: 30080}},
		Selector: map[string]string{"app": "web"}, ClusterIP: "10.96.0.10", ClusterIPs: []string{"10.96.0.10", "fd00::10"},
		IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}, IPFamilyPolicy: &policy, InternalTrafficPolicy: &itp,
		ExternalIPs: []string{"192.0.2.1"}, AllocateLoadBalancerNodePorts: new(true), PublishNotReadyAddresses: true,
		SessionAffinity: corev1.ServiceAffinityClientIP, LoadBalancerSourceRanges: []string{"198.18.0.0/16"},
		SessionAffinityConfig: &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: new(int32(60))}},
	}
	obj, err := slim(full.DeepCopy())
	if err != nil {
		t.Fatal(err)
	}
	slimmed := obj.(*corev1.Service)
	t.Logf("Service: %d bytes before, %d after", full.Size(), slimmed.Size())
	if slimmed.Spec.Selector != nil || slimmed.Spec.ClusterIPs != nil || slimmed.Labels != nil {
		t.Errorf("slimmed Service keeps the cluster side: %+v", slimmed)
	}
	eps := []*discoveryv1.EndpointSlice{slice(discoveryv1.AddressTypeIPv4, "node-1", "node-2:serving")}
	endpoints := func(types.NamespacedName) []*discoveryv1.EndpointSlice { return eps }
	nodes := []*corev1.Node{nodeWithIP("node-1", "198.18.0.11"), nodeWithIP("node-2", "198.18.0.12")}
	computed := func(svc *corev1.Service) any {
		in := Inputs{Config: cfg, Services: []*corev1.Service{svc}, Endpoints: endpoints,
			Nodes: map[string]*corev1.Node{"node-1": nodes[0], "node-2": nodes[1]}, Members: []string{"node-1", "node-2"}}
		assignments, skipped := Assign(in)
		rules, hcnp := forwarding(cfg, in.Services, endpoints, "node-1")
		set, remove := conditionsFor("node-1", true, cfg, svc, assignments, map[netip.Addr]announceState{})
		return []any{assignments, skipped, rules, hcnp, healthTargets(cfg, in.Services, endpoints, nodes), set, remove}
	}
	if diff := cmp.Diff(computed(full), computed(slimmed), cmpopts.EquateEmpty(), cmp.Exporter(func(reflect.Type) bool { return true })); diff != "" {
		t.Errorf("computed from the full and the slimmed Service (-full +slimmed):\n%s", diff)
	}
}
