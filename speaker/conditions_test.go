package speaker

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"github.com/onprem-lb/onprem-lb/config"
	"github.com/onprem-lb/onprem-lb/speaker/l2"
)

func TestConditionsFor(t *testing.T) {
	cfg, err := config.Parse("pools.yaml", []byte(assignPools))
	if err != nil {
		t.Fatal(err)
	}
	v4, v6 := netip.MustParseAddr("198.18.0.200"), netip.MustParseAddr("2001:db8:18::200")
	mac, _ := net.ParseMAC("02:00:00:00:00:99")
	stale := []metav1.Condition{
		{Type: ConditionAnnouncedIPv4, Status: metav1.ConditionTrue, Reason: ReasonAnnounced, Message: "198.18.0.200 is announced by node node-3 on eth0"},
		{Type: ConditionAnnouncedIPv6, Status: metav1.ConditionTrue, Reason: ReasonAnnounced, Message: "2001:db8:18::200 is announced by node node-3 on eth0"},
		{Type: "example.com/Other", Status: metav1.ConditionTrue, Reason: "Other"},
	}
	both := map[netip.Addr]*Assignment{v4: {IP: v4, Owner: "node-2"}, v6: {IP: v6, Owner: "node-2"}}
	tests := []struct {
		name        string
		svc         func(*corev1.Service) // changes to a dual-stack LoadBalancer Service with stale conditions
		coordinator bool
		current     map[netip.Addr]*Assignment
		announced   map[netip.Addr]announceState
		want        []metav1.Condition
		wantRemove  []string
	}{{
		name:      "owner announcing both families",
		current:   map[netip.Addr]*Assignment{v4: {IP: v4, Owner: "node-1"}, v6: {IP: v6, Owner: "node-1"}},
		announced: map[netip.Addr]announceState{v4: {iface: "eth0"}, v6: {iface: "eth1"}},
		want: []metav1.Condition{
			{Type: ConditionAnnouncedIPv4, Status: metav1.ConditionTrue, Reason: ReasonAnnounced, ObservedGeneration: 3, Message: "198.18.0.200 is announced by node node-1 on eth0"},
			{Type: ConditionAnnouncedIPv6, Status: metav1.ConditionTrue, Reason: ReasonAnnounced, ObservedGeneration: 3, Message: "2001:db8:18::200 is announced by node node-1 on eth1"},
		},
	}, {
		name: "BGP only: the owner says who advertises, without waiting for ARP/NDP",
		current: map[netip.Addr]*Assignment{
			v4: {IP: v4, Owner: "node-1", Announce: config.AnnounceBGP, Nodes: []string{"node-1", "node-3"}},
			v6: {IP: v6, Owner: "node-1", Announce: config.AnnounceBGP, Nodes: []string{"n1", "n2", "n3", "n4", "n5", "n6", "n7"}},
		},
		announced: map[netip.Addr]announceState{},
		want: []metav1.Condition{
			{Type: ConditionAnnouncedIPv4, Status: metav1.ConditionTrue, Reason: ReasonAdvertised, ObservedGeneration: 3, Message: "198.18.0.200 is advertised over BGP by 2 nodes (node-1, node-3) to peers 198.18.0.254"},
			{Type: ConditionAnnouncedIPv6, Status: metav1.ConditionTrue, Reason: ReasonAdvertised, ObservedGeneration: 3, Message: "2001:db8:18::200 is advertised over BGP by 7 nodes (n1, n2, n3, n4, n5, ...) to peers 198.18.0.254"},
		},
	}, {
		name:      "BGP and L2: the owner reports once it answers ARP/NDP",
		current:   map[netip.Addr]*Assignment{v4: {IP: v4, Owner: "node-1", Announce: config.AnnounceBoth, Nodes: []string{"node-1"}}},
		announced: map[netip.Addr]announceState{},
	}, {
		name:      "owner still probing: no condition yet; the other family is another node's",
		current:   map[netip.Addr]*Assignment{v4: {IP: v4, Owner: "node-1"}, v6: {IP: v6, Owner: "node-2"}},
		announced: map[netip.Addr]announceState{},
	}, {
		name:      "conflict",
		current:   map[netip.Addr]*Assignment{v4: {IP: v4, Owner: "node-1"}},
		announced: map[netip.Addr]announceState{v4: {iface: "eth0", conflict: mac}},
		want: []metav1.Condition{{Type: ConditionAnnouncedIPv4, Status: metav1.ConditionFalse, Reason: ReasonIPConflict, ObservedGeneration: 3,
			Message: "198.18.0.200 is already in use on the LAN by 02:00:00:00:00:99; node node-1 does not announce it"}},
	}, {
		name:        "nobody may announce: the coordinator says why",
		coordinator: true,
		current:     map[netip.Addr]*Assignment{v4: {IP: v4, Reason: "no live speaker"}, v6: {IP: v6, Owner: "node-2"}},
		want: []metav1.Condition{{Type: ConditionAnnouncedIPv4, Status: metav1.ConditionFalse, Reason: ReasonNoEligibleNode, ObservedGeneration: 3,
			Message: "198.18.0.200 is not announced: no live speaker"}},
	}, {
		name:    "nobody may announce: the others stay silent",
		current: map[netip.Addr]*Assignment{v4: {IP: v4, Reason: "no live speaker"}},
	}, {
		name:        "not assigned yet (before the next sync): nothing, not even from the coordinator",
		coordinator: true,
		current:     map[netip.Addr]*Assignment{},
		announced:   map[netip.Addr]announceState{v4: {iface: "eth0"}},
	}, {
		name: "changed to ClusterIP: the coordinator removes both, and only the speaker's",
		svc: func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeClusterIP
			s.Status.LoadBalancer = corev1.LoadBalancerStatus{}
		},
		coordinator: true,
		current:     both,
		wantRemove:  []string{ConditionAnnouncedIPv4, ConditionAnnouncedIPv6},
	}, {
		name:    "changed to ClusterIP: the others leave it to the coordinator",
		svc:     func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeClusterIP },
		current: both,
	}, {
		name:        "IPv6 dropped: the coordinator removes its condition",
		svc:         func(s *corev1.Service) { s.Status.LoadBalancer.Ingress = s.Status.LoadBalancer.Ingress[:1] },
		coordinator: true,
		current:     both,
		wantRemove:  []string{ConditionAnnouncedIPv6},
	}, {
		name:        "IPv4 outside every pool: the coordinator removes its condition",
		svc:         func(s *corev1.Service) { s.Status.LoadBalancer.Ingress[0].IP = "198.18.9.9" },
		coordinator: true,
		current:     both,
		wantRemove:  []string{ConditionAnnouncedIPv4},
	}, {
		name:        "IP released (pending): the coordinator removes both",
		svc:         func(s *corev1.Service) { s.Status.LoadBalancer = corev1.LoadBalancerStatus{} },
		coordinator: true,
		current:     both,
		wantRemove:  []string{ConditionAnnouncedIPv4, ConditionAnnouncedIPv6},
	}, {
		name:        "another loadBalancerClass: not the speaker's, left alone",
		svc:         func(s *corev1.Service) { s.Spec.LoadBalancerClass = ptr.To("example.com/other") },
		coordinator: true,
		current:     both,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc := svcWith("web", false, "198.18.0.200", "2001:db8:18::200")
			svc.Generation = 3
			svc.Status.Conditions = stale
			if tt.svc != nil {
				tt.svc(svc)
			}
			before := svc.DeepCopy()
			got, remove := conditionsFor("node-1", tt.coordinator, cfg, svc, tt.current, tt.announced)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("conditions (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantRemove, remove); diff != "" {
				t.Errorf("removed (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(before, svc); diff != "" {
				t.Errorf("Service modified (-before +after):\n%s", diff)
			}
		})
	}
}

func TestConditionPatch(t *testing.T) {
	then, now := metav1.Unix(100, 0), metav1.Unix(200, 0)
	existing := []metav1.Condition{
		{Type: ConditionAnnouncedIPv4, Status: metav1.ConditionTrue, Reason: ReasonAnnounced, Message: "by node-1", LastTransitionTime: then},
		{Type: ConditionAnnouncedIPv6, Status: metav1.ConditionTrue, Reason: ReasonAnnounced, Message: "by node-1", LastTransitionTime: then},
	}
	tests := []struct {
		name       string
		set        []metav1.Condition
		remove     []string
		want       []metav1.Condition
		wantRemove []string
	}{{
		name: "the same condition at another time: nothing to write",
		set:  []metav1.Condition{{Type: ConditionAnnouncedIPv4, Status: metav1.ConditionTrue, Reason: ReasonAnnounced, Message: "by node-1", LastTransitionTime: now}},
	}, {
		name: "another node, same status: the transition time is kept",
		set:  []metav1.Condition{{Type: ConditionAnnouncedIPv4, Status: metav1.ConditionTrue, Reason: ReasonAnnounced, Message: "by node-2"}},
		want: []metav1.Condition{{Type: ConditionAnnouncedIPv4, Status: metav1.ConditionTrue, Reason: ReasonAnnounced, Message: "by node-2", LastTransitionTime: then}},
	}, {
		name: "a new status: transition now",
		set:  []metav1.Condition{{Type: ConditionAnnouncedIPv6, Status: metav1.ConditionFalse, Reason: ReasonIPConflict, Message: "in use"}},
		want: []metav1.Condition{{Type: ConditionAnnouncedIPv6, Status: metav1.ConditionFalse, Reason: ReasonIPConflict, Message: "in use", LastTransitionTime: now}},
	}, {
		name:       "removing: only what is there",
		remove:     []string{ConditionAnnouncedIPv6, "onprem-lb.io/Absent"},
		wantRemove: []string{ConditionAnnouncedIPv6},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, remove := conditionPatch(existing, tt.set, tt.remove, now)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("set (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantRemove, remove); diff != "" {
				t.Errorf("remove (-want +got):\n%s", diff)
			}
		})
	}
}

// writesCounter counts the status patches a fake clientset receives and cancels stop once
// they exceed limit (a write storm, which never lets time pass, must still end the test).
func writesCounter(client *fake.Clientset, limit int64, stop context.CancelFunc) *atomic.Int64 {
	var n atomic.Int64
	client.PrependReactor("patch", "services", func(action k8stesting.Action) (bool, runtime.Object, error) {
		if action.GetSubresource() == "status" && n.Add(1) > limit {
			stop()
		}
		return false, nil, nil
	})
	return &n
}

// announcedBy returns the node the Service's IPv4 condition says announces its IP, or "".
func announcedBy(t *testing.T, client kubernetes.Interface, ns, name string) string {
	t.Helper()
	svc, err := client.CoreV1().Services(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := meta.FindStatusCondition(svc.Status.Conditions, ConditionAnnouncedIPv4)
	if c == nil || c.Status != metav1.ConditionTrue {
		return ""
	}
	_, after, _ := strings.Cut(c.Message, "by node ")
	node, _, _ := strings.Cut(after, " ")
	return node
}

// TestConditionWritesConvergeWhileOwnersDisagree runs two speakers that both believe they
// own a VIP (their membership is split) against one API server for ten minutes (of a fake
// clock): each overwrites the other's condition, but after a write that was overwritten it
// waits longer each time, so the writes stay few; once their membership heals, the
// condition names the real owner and nobody writes again.
func TestConditionWritesConvergeWhileOwnersDisagree(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg, err := config.Parse("pools.yaml", []byte(assignPools))
		if err != nil {
			t.Fatal(err)
		}
		const vip = "198.18.0.200"
		client := fake.NewClientset(nodeWithIP("node-1", "198.18.0.11"), nodeWithIP("node-2", "198.18.0.12"), svcWith("web", false, vip))
		ctx, cancel := context.WithCancel(context.Background())
		const storm = 1000
		writes := writesCounter(client, storm, cancel)

		members := map[string]*fakeMembers{"node-1": {names: []string{"node-1"}}, "node-2": {names: []string{"node-2"}}}
		var ctrls []*controller
		var wg sync.WaitGroup
		stop := func() {
			cancel()
			wg.Wait()
			for _, c := range ctrls {
				c.factory.Shutdown()
			}
		}
		defer stop()
		for _, n := range []string{"node-1", "node-2"} {
			c := newTestController(n, client, cfg, members[n])
			if err := c.startInformers(ctx); err != nil {
				t.Fatal(err)
			}
			ctrls = append(ctrls, c)
			wg.Go(func() { c.run(ctx, 2) })
		}
		synctest.Wait()
		for _, c := range ctrls {
			c.Announcing(netip.MustParseAddr(vip), "eth0") // each one's announcer took the VIP
		}

		const fight = 10 * time.Minute
		time.Sleep(fight)
		fought := writes.Load()
		t.Logf("%d condition writes in %v of split ownership", fought, fight)
		if fought > 60 {
			t.Errorf("%d condition writes in %v of split ownership, want at most 60 (backoff after each overwritten write)", fought, fight)
			return
		}

		// The split heals: both compute the same owner; the other one's announcer withdraws.
		vipAddr := netip.MustParseAddr(vip)
		owner := Owner(vipAddr, []string{"node-1", "node-2"})
		for _, c := range ctrls {
			members[c.node].set("node-1", "node-2")
			c.kick()
			if c.node != owner {
				c.Withdrawn(vipAddr, "eth0")
			}
		}
		time.Sleep(time.Minute)
		if got := announcedBy(t, client, "default", "web"); got != owner {
			t.Errorf("a minute after the split healed, the condition names %q, want the owner %s", got, owner)
		}
		healed := writes.Load()
		time.Sleep(fight)
		if quiet := writes.Load() - healed; quiet != 0 {
			t.Errorf("%d condition writes in %v after ownership converged, want none", quiet, fight)
		}
	})
}

// reportingAnnouncer announces every VIP it is given at once and withdraws every VIP taken
// away, telling events as l2.Announcer does.
type reportingAnnouncer struct {
	events l2.Events
	mu     sync.Mutex
	have   map[netip.Addr]bool
}

func (f *reportingAnnouncer) Sync(desired map[netip.Addr]l2.Target) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for ip := range desired {
		if !f.have[ip] {
			go f.events.Announcing(ip, "eth0")
		}
	}
	for ip := range f.have {
		if _, ok := desired[ip]; !ok {
			go f.events.Withdrawn(ip, "eth0")
		}
	}
	f.have = map[netip.Addr]bool{}
	for ip := range desired {
		f.have[ip] = true
	}
}

// TestConditionsFollowTheTruth runs a speaker on each of two nodes against one API server and
// checks, a second (of a fake clock) after each change, what a user sees in the Service's
// conditions: who announces each IP, when the IP moves away and back, when a family is
// dropped, and when the Service stops being a LoadBalancer.
func TestConditionsFollowTheTruth(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg, err := config.Parse("pools.yaml", []byte(assignPools))
		if err != nil {
			t.Fatal(err)
		}
		v4, v6 := netip.MustParseAddr("198.18.0.200"), netip.MustParseAddr("2001:db8:18::200")
		client := fake.NewClientset(nodeWithIP("node-1", "198.18.0.11"), nodeWithIP("node-2", "198.18.0.12"), svcWith("web", false, v4.String(), v6.String()))
		ctx, cancel := context.WithCancel(context.Background())
		var ctrls []*controller
		var wg sync.WaitGroup
		defer func() {
			cancel()
			wg.Wait()
			for _, c := range ctrls {
				c.factory.Shutdown()
			}
		}()
		for _, n := range []string{"node-1", "node-2"} {
			c := newTestController(n, client, cfg, &fakeMembers{names: []string{"node-1", "node-2"}})
			c.announce = &reportingAnnouncer{events: c}
			if err := c.startInformers(ctx); err != nil {
				t.Fatal(err)
			}
			ctrls = append(ctrls, c)
			wg.Go(func() { c.run(ctx, 2) })
		}
		svcs := client.CoreV1().Services("default")
		// conditions returns, a second after a change, the Service's condition messages by type.
		conditions := func() map[string]string {
			t.Helper()
			time.Sleep(time.Second)
			synctest.Wait()
			svc, err := svcs.Get(ctx, "web", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for _, c := range svc.Status.Conditions {
				got[c.Type] = string(c.Status) + " " + c.Reason + ": " + c.Message
			}
			return got
		}
		check := func(step string, want map[string]string) {
			t.Helper()
			if diff := cmp.Diff(want, conditions()); diff != "" {
				t.Errorf("%s: conditions (-want +got):\n%s", step, diff)
			}
		}
		announced := func(ip netip.Addr, node string) string {
			return "True Announced: " + ip.String() + " is announced by node " + node + " on eth0"
		}
		owner4, owner6 := Owner(v4, []string{"node-1", "node-2"}), Owner(v6, []string{"node-1", "node-2"})
		check("created", map[string]string{ConditionAnnouncedIPv4: announced(v4, owner4), ConditionAnnouncedIPv6: announced(v6, owner6)})

		label := func(node string, labels map[string]string) {
			t.Helper()
			n := nodeWithIP(node, "198.18.0.1"+node[len(node)-1:])
			n.Labels = labels
			if _, err := client.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		other := map[string]string{"node-1": "node-2", "node-2": "node-1"}[owner4]
		label(owner4, map[string]string{corev1.LabelNodeExcludeBalancers: "true"})
		check("IPv4 owner excluded", map[string]string{ConditionAnnouncedIPv4: announced(v4, other), ConditionAnnouncedIPv6: announced(v6, other)})
		label(owner4, nil)
		check("IPv4 owner back", map[string]string{ConditionAnnouncedIPv4: announced(v4, owner4), ConditionAnnouncedIPv6: announced(v6, owner6)})

		svc, err := svcs.Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		svc.Status.LoadBalancer.Ingress = svc.Status.LoadBalancer.Ingress[:1]
		if svc, err = svcs.UpdateStatus(ctx, svc, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		check("IPv6 dropped", map[string]string{ConditionAnnouncedIPv4: announced(v4, owner4)})

		svc.Spec.Type = corev1.ServiceTypeClusterIP
		if svc, err = svcs.Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		svc.Status.LoadBalancer = corev1.LoadBalancerStatus{} // the CCM releases the IP
		if _, err = svcs.UpdateStatus(ctx, svc, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		check("changed to ClusterIP", map[string]string{})
	})
}

// TestDeletedServiceForgetsBackoff checks that the condition backoff of a Service does not
// outlive it: the per-Service state is pruned when the Service goes away.
func TestDeletedServiceForgetsBackoff(t *testing.T) {
	cfg, err := config.Parse("pools.yaml", []byte(assignPools))
	if err != nil {
		t.Fatal(err)
	}
	c := newTestController("node-1", fake.NewClientset(), cfg, &fakeMembers{})
	t.Cleanup(c.queue.ShutDown)
	for _, deleted := range []any{svcWith("a", false), cache.DeletedFinalStateUnknown{Key: "default/b", Obj: svcWith("b", false)}} {
		svc := svcWith("a", false)
		if tomb, ok := deleted.(cache.DeletedFinalStateUnknown); ok {
			svc = tomb.Obj.(*corev1.Service)
		}
		key := keyOf(svc)
		for range 3 {
			c.queue.AddRateLimited(key) // three overwritten writes
		}
		c.serviceDeleted(deleted)
		if n := c.queue.NumRequeues(key); n != 0 {
			t.Errorf("%s deleted: backoff of %d requeues kept, want none", key, n)
		}
	}
}

func TestAnnouncedByReadsTheCondition(t *testing.T) {
	ip := netip.MustParseAddr("2001:db8:18::200")
	svc := svcWith("web", false, ip.String())
	a := &Assignment{IP: ip, Owner: "node-2"}
	cond, ok := conditionOf("node-2", false, &config.Config{}, svc, ip, a, map[netip.Addr]announceState{ip: {iface: "eth0"}})
	if !ok {
		t.Fatal("no condition for an announced IP")
	}
	svc.Status.Conditions = []metav1.Condition{cond}
	if node, ok := AnnouncedBy(svc, ip); node != "node-2" || !ok {
		t.Errorf("AnnouncedBy = %q, %v; want node-2, true", node, ok)
	}
	if node, ok := AnnouncedBy(svc, netip.MustParseAddr("2001:db8:18::201")); ok {
		t.Errorf("AnnouncedBy of another IP of the family = %q, want none", node)
	}
	svc.Status.Conditions[0].Status, svc.Status.Conditions[0].Reason = metav1.ConditionFalse, ReasonIPConflict
	if node, ok := AnnouncedBy(svc, ip); ok {
		t.Errorf("AnnouncedBy of an IP in conflict = %q, want none", node)
	}
}

// One event per IP when it starts or stops being advertised over BGP; none when only the
// nodes advertising it change, or for L2 conditions.
func TestAdvertisingEvents(t *testing.T) {
	cond := func(typ, reason, msg string) metav1.Condition {
		status := metav1.ConditionTrue
		if reason == ReasonNoEligibleNode {
			status = metav1.ConditionFalse
		}
		return metav1.Condition{Type: typ, Status: status, Reason: reason, Message: msg}
	}
	adv4 := cond(ConditionAnnouncedIPv4, ReasonAdvertised, "198.18.4.1 is advertised over BGP by 2 nodes (a, b)")
	adv4b := cond(ConditionAnnouncedIPv4, ReasonAdvertised, "198.18.4.1 is advertised over BGP by 1 node (a)")
	none4 := cond(ConditionAnnouncedIPv4, ReasonNoEligibleNode, "198.18.4.1 is not announced: no node has a ready endpoint")
	adv6 := cond(ConditionAnnouncedIPv6, ReasonAdvertised, "2001:db8:40::1 is advertised over BGP by 1 node (a)")
	l2 := cond(ConditionAnnouncedIPv6, ReasonAnnounced, "2001:db8:40::1 is announced by node a on eth0")
	for _, tt := range []struct {
		name          string
		existing, set []metav1.Condition
		remove        []string
		want          []event
	}{
		{"first advertised", nil, []metav1.Condition{adv4, adv6}, nil, []event{
			{corev1.EventTypeNormal, EventAdvertised, adv4.Message},
			{corev1.EventTypeNormal, EventAdvertised, adv6.Message}}},
		{"other nodes: no event", []metav1.Condition{adv4}, []metav1.Condition{adv4b}, nil, nil},
		{"no node any more", []metav1.Condition{adv4}, []metav1.Condition{none4}, nil, []event{
			{corev1.EventTypeWarning, EventNotAdvertised, none4.Message}}},
		{"advertised again", []metav1.Condition{none4}, []metav1.Condition{adv4}, nil, []event{
			{corev1.EventTypeNormal, EventAdvertised, adv4.Message}}},
		{"released", []metav1.Condition{adv4, adv6}, nil, []string{ConditionAnnouncedIPv6}, []event{
			{corev1.EventTypeNormal, EventNotAdvertised, "2001:db8:40::1 is no longer advertised over BGP: it left the Service or the pools"}}},
		{"L2 only: none", nil, []metav1.Condition{l2}, nil, nil},
	} {
		if diff := cmp.Diff(tt.want, advertisingEvents(tt.existing, tt.set, tt.remove), cmp.AllowUnexported(event{})); diff != "" {
			t.Errorf("%s: events (-want +got):\n%s", tt.name, diff)
		}
	}
}
