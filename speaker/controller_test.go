package speaker

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/record"

	"github.com/onprem-lb/onprem-lb/config"
	"github.com/onprem-lb/onprem-lb/speaker/dataplane"
	"github.com/onprem-lb/onprem-lb/speaker/health"
	"github.com/onprem-lb/onprem-lb/speaker/l2"
	"github.com/onprem-lb/onprem-lb/speaker/membership"
)

type fakeMembers struct{ names []string }

func (f *fakeMembers) Members() []membership.Member {
	var out []membership.Member
	for _, n := range f.names {
		mac, _ := net.ParseMAC("02:00:00:00:00:0" + n[len(n)-1:])
		meta, _ := EncodeMACs([]net.HardwareAddr{mac})
		out = append(out, membership.Member{Name: n, Meta: meta})
	}
	return out
}
func (f *fakeMembers) Changed() <-chan struct{} { return nil }

type fakeAnnouncer struct {
	mu      sync.Mutex
	desired map[netip.Addr]l2.Target
}

func (f *fakeAnnouncer) Sync(d map[netip.Addr]l2.Target) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.desired = d
}

type fakeForwarder struct{ services []dataplane.Service }

func (f *fakeForwarder) Sync(s []dataplane.Service) error { f.services = s; return nil }

type fakeHCNP struct{}

func (fakeHCNP) SyncServices(map[health.ServiceKey]health.ServiceHealth) {}

func nodeWithIP(name, ip string) *corev1.Node {
	n := node(name, nil)
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}}
	return n
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
	members.names = []string{"node-1"}
	c.sync()
	if len(ann.desired) != len(svcs) {
		t.Errorf("after node-2 left, node-1 announces %d VIPs, want all %d", len(ann.desired), len(svcs))
	}
}
