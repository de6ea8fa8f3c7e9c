package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/onprem-lb/onprem-lb/test/demo"
	"github.com/onprem-lb/onprem-lb/test/lab"
	"github.com/onprem-lb/onprem-lb/test/lab/labtest"
)

// shippedLeaderElection returns the leader-election timing flags of
// manifests/ccm-deployment.yaml, which the lab's CCM pods run with.
func shippedLeaderElection(t testing.TB) []string {
	t.Helper()
	flags, err := demo.ShippedLeaderElection(labtest.RepoPath())
	if err != nil {
		t.Fatal(err)
	}
	return flags
}

func lbService(ns, name string, mutate ...func(*corev1.Service)) *corev1.Service {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: map[string]string{}},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeLoadBalancer,
			Selector: map[string]string{"app": name},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}},
		},
	}
	for _, m := range mutate {
		m(svc)
	}
	return svc
}

func dualStack(svc *corev1.Service) {
	svc.Spec.IPFamilyPolicy = ptr.To(corev1.IPFamilyPolicyRequireDualStack)
}

// noNodePorts skips node ports, which an L2 load balancer does not need and which run out
// after 2,768 Services.
func noNodePorts(svc *corev1.Service) {
	svc.Spec.AllocateLoadBalancerNodePorts = ptr.To(false)
}

func inPool(pool string) func(*corev1.Service) {
	return func(svc *corev1.Service) { svc.Annotations["onprem-lb.io/pool"] = pool }
}

func createNamespace(ctx context.Context, t testing.TB, l *lab.Lab, name string) {
	t.Helper()
	_, err := l.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

func create(ctx context.Context, t testing.TB, l *lab.Lab, svc *corev1.Service) {
	t.Helper()
	if _, err := l.Client.CoreV1().Services(svc.Namespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create Service %s/%s: %v", svc.Namespace, svc.Name, err)
	}
}

// ingress returns the Service's LoadBalancer ingress once it has n entries.
func waitIngress(ctx context.Context, t testing.TB, l *lab.Lab, ns, name string, n int) []corev1.LoadBalancerIngress {
	t.Helper()
	var got []corev1.LoadBalancerIngress
	err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		svc, err := l.Client.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		got = svc.Status.LoadBalancer.Ingress
		return len(got) == n, nil
	})
	if err != nil {
		t.Fatalf("Service %s/%s: ingress %v, want %d entries: %v\nevents: %s", ns, name, got, n, err, events(ctx, l, ns, name))
	}
	return got
}

func ips(ingress []corev1.LoadBalancerIngress) []string {
	var s []string
	for _, in := range ingress {
		s = append(s, in.IP)
	}
	return s
}

// events renders the events of a Service: "Type Reason: message" lines.
func events(ctx context.Context, l *lab.Lab, ns, name string) string {
	list, err := l.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{
		FieldSelector: fields.Set{"involvedObject.kind": "Service", "involvedObject.name": name}.String(),
	})
	if err != nil {
		return err.Error()
	}
	var lines []string
	for _, e := range list.Items {
		lines = append(lines, fmt.Sprintf("%s %s: %s", e.Type, e.Reason, e.Message))
	}
	return strings.Join(lines, "\n")
}

// waitEvent waits for an event of the Service whose "Type Reason: message" line contains want
// (a minute at most: an edit of the pool ConfigMap takes seconds to reach the pods).
func waitEvent(ctx context.Context, t testing.TB, l *lab.Lab, ns, name, want string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		return strings.Contains(events(ctx, l, ns, name), want), nil
	})
	if err != nil {
		t.Fatalf("Service %s/%s: no event %q; events:\n%s", ns, name, want, events(ctx, l, ns, name))
	}
}

func deleteAndWait(ctx context.Context, t testing.TB, l *lab.Lab, ns, name string) {
	t.Helper()
	if err := l.Client.CoreV1().Services(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := l.Client.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		t.Fatalf("Service %s/%s never went away (finalizer not removed?): %v", ns, name, err)
	}
}

// allIngress maps every LoadBalancer Service to its ingress IPs.
func allIngress(ctx context.Context, t testing.TB, l *lab.Lab) map[string][]string {
	t.Helper()
	list, err := l.Client.CoreV1().Services("").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m := map[string][]string{}
	for _, s := range list.Items {
		if s.Spec.Type == corev1.ServiceTypeLoadBalancer {
			m[s.Namespace+"/"+s.Name] = ips(s.Status.LoadBalancer.Ingress)
		}
	}
	return m
}

const testPools = `
pools:
  - name: lan
    addresses:
      - 198.18.0.200-198.18.0.239
      - 2001:db8:18::200/122
    exclude: [198.18.0.201]
  - name: tiny
    autoAssign: false
    addresses: [198.18.1.10-198.18.1.11]
  - name: bulk
    autoAssign: false
    addresses: [198.18.64.0/18]
`

// startCCM starts a lab of real nodes without kube-proxy and installs onprem-lb with the pool
// file pools (the CCM leads; no speaker runs), and returns a context that ends with the test.
func startCCM(t testing.TB, pools string) (context.Context, *lab.Lab, *onprem) {
	ctx, l, archives := startLab(t, lab.Options{NoKubeProxy: true})
	o := install(ctx, t, l, archives, pools)
	o.waitLeader(ctx, "")
	return ctx, l, o
}

func TestCCM(t *testing.T) {
	ctx, l, archives := startLab(t, lab.Options{NoKubeProxy: true})
	bad := "pools:\n  - name: a\n    addresses: [198.18.0.10-198.18.0.20]\n  - name: b\n    addresses: [198.18.0.15/32]\n"
	c := install(ctx, t, l, archives, bad)

	t.Run("a bad pool file at start: the CCM pods exit and say file, field and reason in kubectl describe pod", func(t *testing.T) {
		for _, want := range []string{"/etc/onprem-lb/pools.yaml", "pools[1]", "overlap"} {
			if msg := c.ccmCrash(ctx); !strings.Contains(msg, want) {
				t.Errorf("the CCM's termination message does not say %q:\n%s", want, lastLines(msg, 10))
			}
		}
	})
	// Fixed, and the pods restarted rather than left to their crash-loop back-off.
	c.setPools(ctx, testPools)
	c.kubectl(ctx, "-n", system, "rollout", "restart", "deployment/"+demo.CCM)
	c.waitLeader(ctx, "")
	const ns = "ccm"
	createNamespace(ctx, t, l, ns)

	var freed string
	t.Run("Services get IPs from the pools, visible in kubectl get svc", func(t *testing.T) {
		create(ctx, t, l, lbService(ns, "dual", dualStack))
		create(ctx, t, l, lbService(ns, "single"))
		dual := waitIngress(ctx, t, l, ns, "dual", 2)
		single := waitIngress(ctx, t, l, ns, "single", 1)
		lan := []netip.Prefix{netip.MustParsePrefix("198.18.0.192/26"), netip.MustParsePrefix("2001:db8:18::200/122")}
		for _, in := range append(dual, single...) {
			ip := netip.MustParseAddr(in.IP)
			if !slices.ContainsFunc(lan, func(p netip.Prefix) bool { return p.Contains(ip) }) || ip == netip.MustParseAddr("198.18.0.201") || ip.Is4() && ip.As4()[3] > 239 {
				t.Errorf("IP %s is not an allowed address of pool lan", ip)
			}
			if in.IPMode == nil || *in.IPMode != corev1.LoadBalancerIPModeVIP {
				t.Errorf("IP %s: ipMode %v, want VIP", ip, in.IPMode)
			}
		}
		if got := ips(dual); got[0] == got[1] || slices.Contains(got, single[0].IP) {
			t.Errorf("IPs given twice: dual %v, single %v", got, single[0].IP)
		}
		out, err := l.Kubectl(ctx, "get", "svc", "-n", ns, "single", "--no-headers")
		if err != nil || !strings.Contains(out, single[0].IP) {
			t.Errorf("kubectl get svc does not show EXTERNAL-IP %s: %v\n%s", single[0].IP, err, out)
		}
		waitEvent(ctx, t, l, ns, "single", "Normal IPAllocated: Allocated "+single[0].IP+" (pool lan)")
		freed = single[0].IP
	})

	t.Run("deleting a Service frees its IP for the next one", func(t *testing.T) {
		deleteAndWait(ctx, t, l, ns, "single")
		create(ctx, t, l, lbService(ns, "next"))
		if got := waitIngress(ctx, t, l, ns, "next", 1)[0].IP; got != freed {
			t.Errorf("next Service got %s, want the freed (lowest) %s", got, freed)
		}
	})

	t.Run("an exhausted pool leaves the Service pending with a Warning, served once an IP frees", func(t *testing.T) {
		create(ctx, t, l, lbService(ns, "tiny-1", inPool("tiny")))
		create(ctx, t, l, lbService(ns, "tiny-2", inPool("tiny")))
		freed := waitIngress(ctx, t, l, ns, "tiny-1", 1)[0].IP // tiny-1 and tiny-2 are synced in either order
		waitIngress(ctx, t, l, ns, "tiny-2", 1)
		create(ctx, t, l, lbService(ns, "tiny-3", inPool("tiny")))
		waitEvent(ctx, t, l, ns, "tiny-3", "Warning PoolExhausted")
		if got := allIngress(ctx, t, l)[ns+"/tiny-3"]; len(got) != 0 {
			t.Fatalf("tiny-3 got %v from an exhausted pool", got)
		}
		deleteAndWait(ctx, t, l, ns, "tiny-1")
		if got := waitIngress(ctx, t, l, ns, "tiny-3", 1)[0].IP; got != freed {
			t.Errorf("tiny-3 got %s, want the freed %s", got, freed)
		}
	})

	t.Run("1,000 Services with 10 workers get 1,000 distinct IPs", func(t *testing.T) {
		const bulk, n = "bulk", 1000
		createNamespace(ctx, t, l, bulk)
		began := time.Now()
		var wg sync.WaitGroup
		errs := make(chan error, n)
		sem := make(chan struct{}, 50)
		for i := range n {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				_, err := l.Client.CoreV1().Services(bulk).Create(ctx, lbService(bulk, fmt.Sprintf("s%04d", i), inPool("bulk"), noNodePorts), metav1.CreateOptions{})
				if err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		var seen map[string]string
		err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
			list, err := l.Client.CoreV1().Services(bulk).List(ctx, metav1.ListOptions{})
			if err != nil {
				return false, nil
			}
			seen = map[string]string{}
			for _, s := range list.Items {
				for _, ip := range ips(s.Status.LoadBalancer.Ingress) {
					if other, dup := seen[ip]; dup {
						return false, fmt.Errorf("IP %s given to both %s and %s", ip, other, s.Name)
					}
					seen[ip] = s.Name
				}
			}
			return len(seen) == n, nil
		})
		if err != nil {
			t.Fatalf("%d of %d Services have distinct IPs: %v", len(seen), n, err)
		}
		t.Logf("%d Services assigned in %v", n, time.Since(began).Round(time.Millisecond))
	})

	t.Run("restarting the CCM changes no IP", func(t *testing.T) {
		before := allIngress(ctx, t, l)
		c.restartCCM(ctx)
		create(ctx, t, l, lbService(ns, "after-restart"))
		fresh := waitIngress(ctx, t, l, ns, "after-restart", 1)[0].IP
		after := allIngress(ctx, t, l)
		for svc, want := range before {
			if got := after[svc]; !slices.Equal(got, want) {
				t.Errorf("%s: %v before the restart, %v after", svc, want, got)
			}
			if slices.Contains(want, fresh) {
				t.Errorf("new Service got %s, which %s holds", fresh, svc)
			}
		}
	})

	t.Run("metrics count addresses per pool and family, allocations and failures", func(t *testing.T) {
		m := c.metrics(ctx)
		for series, want := range map[string]float64{
			`onprem_lb_pool_addresses{family="IPv4",pool="lan"}`:         39, // 40 minus the excluded one
			`onprem_lb_pool_addresses{family="IPv6",pool="lan"}`:         64,
			`onprem_lb_pool_addresses_in_use{family="IPv4",pool="bulk"}`: 1000,
			`onprem_lb_pool_addresses_in_use{family="IPv4",pool="tiny"}`: 2,
		} {
			if got := metricValue(m, series); got != want {
				t.Errorf("%s = %v, want %v", series, got, want)
			}
		}
		// The counters start at the restart: a new exhaustion must show.
		create(ctx, t, l, lbService(ns, "tiny-4", inPool("tiny")))
		waitEvent(ctx, t, l, ns, "tiny-4", "Warning PoolExhausted")
		if got := metricValue(c.metrics(ctx), `onprem_lb_allocation_failures_total{reason="PoolExhausted"}`); got < 1 {
			t.Errorf("allocation_failures_total{reason=PoolExhausted} = %v, want >= 1", got)
		}
		if got := metricValue(c.metrics(ctx), `onprem_lb_allocations_total{pool="lan"}`); got < 1 {
			t.Errorf("allocations_total{pool=lan} = %v, want >= 1", got)
		}
		deleteAndWait(ctx, t, l, ns, "tiny-4")
	})

	t.Run("a bad pool file at reload changes nothing and is counted", func(t *testing.T) {
		before := allIngress(ctx, t, l)
		c.setPools(ctx, "pools: [ {name: broken")
		err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			return metricValue(c.metrics(ctx), `onprem_lb_config_reloads_total{result="failure"}`) >= 1, nil
		})
		if err != nil {
			t.Fatalf("the bad file was never counted: %v", err)
		}
		if got := metricValue(c.metrics(ctx), "onprem_lb_config_last_reload_success"); got != 0 {
			t.Errorf("config_last_reload_success = %v after a bad file, want 0", got)
		}
		create(ctx, t, l, lbService(ns, "during-bad-file"))
		waitIngress(ctx, t, l, ns, "during-bad-file", 1)
		after := allIngress(ctx, t, l)
		for svc, want := range before {
			if got := after[svc]; !slices.Equal(got, want) {
				t.Errorf("%s: %v before the bad file, %v after", svc, want, got)
			}
		}
	})

	t.Run("editing the pool file moves only the IPs it no longer allows, with a Warning", func(t *testing.T) {
		before := allIngress(ctx, t, l)
		moved := strings.Replace(testPools, "198.18.1.10-198.18.1.11", "198.18.1.20-198.18.1.21", 1)
		c.setPools(ctx, moved)
		for _, name := range []string{"tiny-2", "tiny-3"} {
			waitEvent(ctx, t, l, ns, name, "Warning IPMoved: The pool file no longer allows 198.18.1.1")
			err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
				got := allIngress(ctx, t, l)[ns+"/"+name]
				return len(got) == 1 && strings.HasPrefix(got[0], "198.18.1.2"), nil
			})
			if err != nil {
				t.Errorf("%s not moved into the new range: %v (events: %s)", name, allIngress(ctx, t, l)[ns+"/"+name], events(ctx, l, ns, name))
			}
		}
		after := allIngress(ctx, t, l)
		for svc, want := range before {
			if strings.HasPrefix(svc, ns+"/tiny-") {
				continue
			}
			if got := after[svc]; !slices.Equal(got, want) {
				t.Errorf("%s: %v before the edit, %v after: only tiny's Services should move", svc, want, got)
			}
		}
	})
}

// metrics returns the leading CCM's /metrics, fetched from its secure port as the lab admin.
func (o *onprem) metrics(ctx context.Context) string {
	o.t.Helper()
	tlsConfig, err := rest.TLSConfigFor(o.l.Config)
	if err != nil {
		o.t.Fatal(err)
	}
	tlsConfig.InsecureSkipVerify = true // the CCM serves a self-signed certificate
	hc := lab.HTTPClient(o.l.ControlPlane.NS, 5*time.Second)
	hc.Transport.(*http.Transport).TLSClientConfig = tlsConfig
	leader := o.waitLeader(ctx, "")
	resp, err := hc.Get("https://" + net.JoinHostPort(leader.Status.PodIP, "10258") + "/metrics")
	if err != nil {
		o.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		o.t.Fatalf("GET /metrics: %s: %s", resp.Status, body)
	}
	return string(body)
}

// metricValue returns the value of the sample whose line starts with series, or -1.
func metricValue(text, series string) float64 {
	for _, line := range strings.Split(text, "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			if v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64); err == nil {
				return v
			}
		}
	}
	return -1
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
