package e2e

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/onprem-lb/onprem-lb/test/demo"
	"github.com/onprem-lb/onprem-lb/test/lab"
)

const scenarioPools = `
pools:
  - name: lan
    addresses:
      - 198.18.0.200-198.18.0.219
      - 2001:db8:18::200/122
  - name: tiny
    autoAssign: false
    addresses: [198.18.0.230-198.18.0.230]
  - name: reserved
    autoAssign: false
    namespaces: [payments]
    addresses: [198.18.0.240-198.18.0.249]
`

// TestScenarios runs what a new user tries, with kube-proxy, the CCM (two replicas) and the
// speakers, checking status, events and real traffic from the client.
func TestScenarios(t *testing.T) {
	ctx, l, sp := startSpeakers(t, lab.Options{}, scenarioPools)
	client := l.Clients[0]
	const ns = "scenarios"
	podsOnEveryNode(ctx, t, l, ns, "app")
	app := func(s *corev1.Service) { s.Spec.Selector = map[string]string{"app": "app"} }

	t.Run("IPv6-only Service: traffic through its VIP", func(t *testing.T) {
		create(ctx, t, l, lbService(ns, "v6", app, func(s *corev1.Service) {
			s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol}
		}))
		vip := waitIngress(ctx, t, l, ns, "v6", 1)[0].IP
		if !strings.Contains(vip, ":") {
			t.Fatalf("an IPv6-only Service got %s", vip)
		}
		waitGet(ctx, t, client, vipURL(vip))
	})

	t.Run("shared IP: two Services, one VIP, each port reaches its Service", func(t *testing.T) {
		shared := func(port int32, target int) func(*corev1.Service) {
			return func(s *corev1.Service) {
				s.Annotations["onprem-lb.io/sharing-key"] = "web"
				s.Spec.Ports = []corev1.ServicePort{{Name: "p", Port: port, TargetPort: intstr.FromInt(target), Protocol: corev1.ProtocolTCP}}
			}
		}
		create(ctx, t, l, lbService(ns, "shared-http", app, shared(80, lab.HTTPPort)))
		create(ctx, t, l, lbService(ns, "shared-tcp", app, shared(9000, lab.TCPPort)))
		a, b := waitIngress(ctx, t, l, ns, "shared-http", 1)[0].IP, waitIngress(ctx, t, l, ns, "shared-tcp", 1)[0].IP
		if a != b {
			t.Fatalf("shared-http got %s, shared-tcp %s: want one IP", a, b)
		}
		waitGet(ctx, t, client, vipURL(a))
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 15*time.Second, true, func(ctx context.Context) (bool, error) {
			_, err := lab.GetTCP(ctx, client.NS, net.JoinHostPort(a, strconv.Itoa(9000)))
			return err == nil, nil
		})
		if err != nil {
			t.Errorf("TCP %s:9000 (shared-tcp) never answered: %v", a, err)
		}
		// Same key, colliding TCP/80: its own IP, and a Warning saying why.
		create(ctx, t, l, lbService(ns, "shared-clash", app, shared(80, lab.HTTPPort)))
		if c := waitIngress(ctx, t, l, ns, "shared-clash", 1)[0].IP; c == a {
			t.Errorf("shared-clash got %s, which shared-http uses on TCP/80", c)
		} else {
			waitEvent(ctx, t, l, ns, "shared-clash", "Warning IPNotShared: Sharing key \"web\": ")
			waitEvent(ctx, t, l, ns, "shared-clash", "got "+c)
		}
	})

	t.Run("pinned IP: the Service gets exactly it and traffic flows", func(t *testing.T) {
		create(ctx, t, l, lbService(ns, "pinned", app, func(s *corev1.Service) {
			s.Annotations["onprem-lb.io/load-balancer-ips"] = "198.18.0.215"
		}))
		if got := waitIngress(ctx, t, l, ns, "pinned", 1)[0].IP; got != "198.18.0.215" {
			t.Fatalf("pinned got %s, want 198.18.0.215", got)
		}
		waitGet(ctx, t, client, vipURL("198.18.0.215"))
	})

	t.Run("exhausted pool: pending with an event, served with traffic once an IP frees", func(t *testing.T) {
		create(ctx, t, l, lbService(ns, "tiny-1", app, inPool("tiny")))
		vip := waitIngress(ctx, t, l, ns, "tiny-1", 1)[0].IP
		create(ctx, t, l, lbService(ns, "tiny-2", app, inPool("tiny")))
		waitEvent(ctx, t, l, ns, "tiny-2", "Warning PoolExhausted")
		deleteAndWait(ctx, t, l, ns, "tiny-1")
		if got := waitIngress(ctx, t, l, ns, "tiny-2", 1)[0].IP; got != vip {
			t.Fatalf("tiny-2 got %s, want the freed %s", got, vip)
		}
		waitGet(ctx, t, client, vipURL(vip))
	})

	t.Run("a namespace that may not use a pool: pending with an event saying so", func(t *testing.T) {
		create(ctx, t, l, lbService(ns, "not-payments", app, inPool("reserved")))
		waitEvent(ctx, t, l, ns, "not-payments", "Warning NamespaceNotAllowed")
		if got := allIngress(ctx, t, l)[ns+"/not-payments"]; len(got) != 0 {
			t.Errorf("got %v from a pool its namespace may not use", got)
		}
	})

	t.Run("pool file edited while running: the moved IP is announced and served, the old one no longer", func(t *testing.T) {
		vip := waitIngress(ctx, t, l, ns, "tiny-2", 1)[0].IP
		owner := announcer(ctx, t, l, ns, "tiny-2", vip, "")
		edited := strings.Replace(scenarioPools, "198.18.0.230-198.18.0.230", "198.18.0.231-198.18.0.231", 1)
		sp.setPools(ctx, edited)
		waitEvent(ctx, t, l, ns, "tiny-2", "Warning IPMoved: The pool file no longer allows "+vip)
		moved := waitIngressIs(ctx, t, l, ns, "tiny-2", "198.18.0.231")
		waitAnswering(ctx, t, client, moved, macOf(ctx, t, announcer(ctx, t, l, ns, "tiny-2", moved, "").Host))
		waitGet(ctx, t, client, vipURL(moved))
		// The old IP is outside every pool now: its owner stops answering for it.
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
			got, err := answering(ctx, client, vip)
			return err == nil && len(got) == 0, nil
		})
		if err != nil {
			t.Errorf("%s (no longer in any pool) is still answered, last by %s: %v", vip, owner.Name, err)
		}
	})

	t.Run("loadBalancerClass edited in the pool file: nothing changes until restart, traffic keeps flowing", func(t *testing.T) {
		before := allIngress(ctx, t, l)
		vip := before[ns+"/pinned"][0]
		owner := announcer(ctx, t, l, ns, "pinned", vip, "")
		current := sp.pools(ctx)
		failures, total := requestsDuring(ctx, client, vip, func() {
			sp.setPools(ctx, current+"loadBalancerClass: example.com/other\n")
			sp.waitLogged(ctx, sp.waitLeader(ctx, "").Name, "is ignored until restart")
			for _, p := range sp.pods(ctx, demo.Speaker, "") {
				sp.waitLogged(ctx, p.Name, "is ignored until restart")
			}
			// Still serving Services without a class, new ones included.
			create(ctx, t, l, lbService(ns, "after-class-edit", app))
			waitGet(ctx, t, client, vipURL(waitIngress(ctx, t, l, ns, "after-class-edit", 1)[0].IP))
			sp.setPools(ctx, current)
		})
		if len(failures) != 0 {
			t.Errorf("%d of %d requests failed while the class changed in the pool file:\n%s", len(failures), total, strings.Join(failures, "\n"))
		}
		after := allIngress(ctx, t, l)
		for svc, ips := range before {
			if !slices.Equal(after[svc], ips) {
				t.Errorf("%s: %v before the class edit, %v after", svc, ips, after[svc])
			}
		}
		if now := announcer(ctx, t, l, ns, "pinned", vip, ""); now.Name != owner.Name {
			t.Errorf("%s moved from %s to %s", vip, owner.Name, now.Name)
		}
	})

	t.Run("CCM leader killed with two replicas: no IP changes, traffic keeps flowing, a new leader serves", func(t *testing.T) {
		before := allIngress(ctx, t, l)
		var outages []time.Duration
		for run := range 3 {
			leader := sp.waitLeader(ctx, "")
			pid := containerPID(ctx, t, l, leader)
			failures, total := requestsDuring(ctx, client, before[ns+"/pinned"][0], func() {
				if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				killed := time.Now()
				name := fmt.Sprintf("after-leader-kill-%d", run)
				create(ctx, t, l, lbService(ns, name, app))
				waitIngress(ctx, t, l, ns, name, 1)
				outages = append(outages, time.Since(killed))
			})
			if len(failures) != 0 {
				t.Errorf("%d of %d requests failed during the leader change:\n%s", len(failures), total, strings.Join(failures, "\n"))
			}
			// The kubelet restarts the killed container; both replicas run again.
			sp.kubectl(ctx, "-n", system, "rollout", "status", "deployment/"+demo.CCM, "--timeout=2m")
		}
		sorted := slices.Sorted(slices.Values(outages))
		t.Logf("CCM leader container SIGKILLed, 2 replicas, %v: a new Service got its IP after %v (median %v)",
			shippedLeaderElection(t), outages, sorted[len(sorted)/2].Round(100*time.Millisecond))

		// Deleting the leading pod (as a rollout does) stops it gracefully: it gives the
		// lease up and the other replica leads without waiting for it to expire.
		var handovers []time.Duration
		for run := range 3 {
			leader := sp.waitLeader(ctx, "")
			stopped := time.Now()
			sp.kubectl(ctx, "-n", system, "delete", "pod", leader.Name, "--wait=false")
			name := fmt.Sprintf("after-leader-stop-%d", run)
			create(ctx, t, l, lbService(ns, name, app))
			waitIngress(ctx, t, l, ns, name, 1)
			handovers = append(handovers, time.Since(stopped))
			sp.kubectl(ctx, "-n", system, "rollout", "status", "deployment/"+demo.CCM, "--timeout=2m")
		}
		sorted = slices.Sorted(slices.Values(handovers))
		t.Logf("CCM leader pod deleted (SIGTERM), 2 replicas: a new Service got its IP after %v (median %v)",
			handovers, sorted[len(sorted)/2].Round(100*time.Millisecond))
		after := allIngress(ctx, t, l)
		for svc, ips := range before {
			if !slices.Equal(after[svc], ips) {
				t.Errorf("%s: %v before the leader changes, %v after", svc, ips, after[svc])
			}
		}
	})
}

// waitIngressIs waits until the Service's only ingress IP is want, and returns it.
func waitIngressIs(ctx context.Context, t testing.TB, l *lab.Lab, ns, name, want string) string {
	t.Helper()
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
		got := allIngress(ctx, t, l)[ns+"/"+name]
		return len(got) == 1 && got[0] == want, nil
	})
	if err != nil {
		t.Fatalf("%s/%s: ingress %v, want %s: %v\nevents: %s", ns, name, allIngress(ctx, t, l)[ns+"/"+name], want, err, events(ctx, l, ns, name))
	}
	return want
}
