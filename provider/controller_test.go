package provider

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"
	servicehelper "k8s.io/cloud-provider/service/helpers"
	"k8s.io/utils/ptr"

	"github.com/onprem-lb/onprem-lb/config"
)

// waitTimeout bounds every wait; reaching it fails the test.
const waitTimeout = 20 * time.Second

// harness is a provider serving Services from a fake API server. Every write to a
// Service goes through one reactor, which records after each one every IP in the status
// of two Services (shared IPs included: tests of sharing do not look).
type harness struct {
	t      *testing.T
	ctx    context.Context
	cloud  *Cloud
	client *fake.Clientset
	events *events
	path   string

	mu         sync.Mutex
	duplicates []string
}

// startProvider runs the provider on the pool file doc with workers sync workers.
func startProvider(t *testing.T, doc string, workers int) *harness {
	t.Helper()
	h := &harness{t: t, path: filepath.Join(t.TempDir(), "pools.yaml"), events: &events{}}
	h.writePools(doc)
	cloud, err := New(h.path, nil)
	if err != nil {
		t.Fatal(err)
	}
	h.cloud = cloud
	h.client = fake.NewClientset()
	write := clienttesting.ObjectReaction(h.client.Tracker())
	for _, verb := range []string{"create", "update", "patch"} {
		h.client.PrependReactor(verb, "services", func(action clienttesting.Action) (bool, runtime.Object, error) {
			h.mu.Lock()
			defer h.mu.Unlock()
			handled, obj, err := write(action)
			h.checkDuplicates()
			return handled, obj, err
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	h.ctx = ctx
	if err := cloud.start(ctx, h.client, h.events); err != nil {
		t.Fatal(err)
	}
	cloud.RunServiceController(ctx, workers)
	return h
}

// checkDuplicates records every IP in the status of more than one Service. The caller
// holds h.mu.
func (h *harness) checkDuplicates() {
	objs, err := h.client.Tracker().List(corev1.SchemeGroupVersion.WithResource("services"), corev1.SchemeGroupVersion.WithKind("Service"), "")
	if err != nil {
		h.t.Error(err)
		return
	}
	holders := map[string]string{}
	for _, svc := range objs.(*corev1.ServiceList).Items {
		for _, in := range svc.Status.LoadBalancer.Ingress {
			if other, ok := holders[in.IP]; ok {
				h.duplicates = append(h.duplicates, fmt.Sprintf("%s in %s and %s/%s", in.IP, other, svc.Namespace, svc.Name))
			}
			holders[in.IP] = svc.Namespace + "/" + svc.Name
		}
	}
}

func (h *harness) writePools(doc string) {
	h.t.Helper()
	if err := os.WriteFile(h.path, []byte(doc), 0o644); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) create(svc *corev1.Service) {
	h.t.Helper()
	if _, err := h.client.CoreV1().Services(svc.Namespace).Create(h.ctx, svc, metav1.CreateOptions{}); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) get(ns, name string) *corev1.Service {
	h.t.Helper()
	svc, err := h.client.CoreV1().Services(ns).Get(h.ctx, name, metav1.GetOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	return svc
}

// touch sets a label of a Service, as a user editing it would (the status stays as it is).
func (h *harness) touch(ns, name, value string) {
	patch := fmt.Sprintf(`{"metadata":{"labels":{"touched":%q}}}`, value)
	if _, err := h.client.CoreV1().Services(ns).Patch(h.ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		h.t.Error(err)
	}
}

// eventually waits until cond holds; what describes the state when it does not.
func (h *harness) eventually(what string, cond func() (bool, string)) {
	h.t.Helper()
	var state string
	for deadline := time.Now().Add(waitTimeout); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		var ok bool
		if ok, state = cond(); ok {
			return
		}
	}
	h.t.Fatalf("%s: not within %s; last: %s", what, waitTimeout, state)
}

// waitIPs waits until the Service's status holds exactly ips.
func (h *harness) waitIPs(ns, name string, ips ...string) {
	h.t.Helper()
	h.eventually(fmt.Sprintf("%s/%s has %v", ns, name, ips), func() (bool, string) {
		got := ingressIPs(h.get(ns, name))
		return slices.Equal(got, ips), fmt.Sprint(got)
	})
}

func (h *harness) noDuplicates() {
	h.t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.duplicates) > 0 {
		h.t.Errorf("an IP was in two Services' status %d times, first: %s", len(h.duplicates), h.duplicates[0])
	}
}

func ingressIPs(svc *corev1.Service) []string {
	var ips []string
	for _, in := range svc.Status.LoadBalancer.Ingress {
		ips = append(ips, in.IP)
	}
	return ips
}

// lbService returns a LoadBalancer Service on TCP port.
func lbService(ns, name string, port int32, mutate ...func(*corev1.Service)) *corev1.Service {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, CreationTimestamp: metav1.Now()},
		Spec: corev1.ServiceSpec{
			Type:       corev1.ServiceTypeLoadBalancer,
			IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol},
			Ports:      []corev1.ServicePort{{Port: port, Protocol: corev1.ProtocolTCP}},
		},
	}
	for _, m := range mutate {
		m(svc)
	}
	return svc
}

// events is an EventRecorder that keeps every event as "Type Reason namespace/name: message".
type events struct {
	mu  sync.Mutex
	all []string
}

func (e *events) Event(obj runtime.Object, typ, reason, message string) {
	svc, _ := obj.(*corev1.Service)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.all = append(e.all, fmt.Sprintf("%s %s %s/%s: %s", typ, reason, svc.Namespace, svc.Name, message))
}

func (e *events) Eventf(obj runtime.Object, typ, reason, format string, args ...any) {
	e.Event(obj, typ, reason, fmt.Sprintf(format, args...))
}

func (e *events) AnnotatedEventf(obj runtime.Object, _ map[string]string, typ, reason, format string, args ...any) {
	e.Eventf(obj, typ, reason, format, args...)
}

// matching returns the events that contain every one of parts.
func (e *events) matching(parts ...string) []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.DeleteFunc(slices.Clone(e.all), func(ev string) bool {
		return !slices.ContainsFunc(parts, func(p string) bool { return strings.Contains(ev, p) }) ||
			slices.ContainsFunc(parts, func(p string) bool { return !strings.Contains(ev, p) })
	})
}

func TestSharingCollisionEvent(t *testing.T) {
	h := startProvider(t, "pools:\n- name: lan\n  addresses: [198.18.0.0/29]\n", 2)
	web := func(s *corev1.Service) { s.Annotations = map[string]string{AnnotationSharingKey: "web"} }
	h.create(lbService("ns", "a", 80, web))
	h.waitIPs("ns", "a", "198.18.0.0")
	h.create(lbService("ns", "b", 443, web))
	h.waitIPs("ns", "b", "198.18.0.0") // shares
	h.create(lbService("ns", "c", 80, web))
	h.waitIPs("ns", "c", "198.18.0.1") // TCP/80 collides with a

	want := []string{`Warning IPNotShared ns/c: Sharing key "web": `}
	got := h.events.matching("IPNotShared")
	if len(got) != 1 || !strings.HasPrefix(got[0], want[0]) ||
		!strings.Contains(got[0], "198.18.0.0 is used by ns/a, which also uses TCP/80") ||
		!strings.HasSuffix(got[0], "got 198.18.0.1 (pool lan) instead") {
		t.Errorf("IPNotShared events = %q, want one on ns/c naming 198.18.0.0, ns/a, TCP/80 and 198.18.0.1", got)
	}
}

func TestClassChangeWaitsForRestart(t *testing.T) {
	const pools = "pools:\n- name: lan\n  addresses: [198.18.0.0/29]\n"
	h := startProvider(t, pools+"loadBalancerClass: example.com/a\n", 2)
	classA := func(s *corev1.Service) { s.Spec.LoadBalancerClass = ptr.To("example.com/a") }
	classB := func(s *corev1.Service) { s.Spec.LoadBalancerClass = ptr.To("example.com/b") }
	h.create(lbService("ns", "a1", 80, classA))
	h.waitIPs("ns", "a1", "198.18.0.0")

	// The file now names class b, and a second pool so that the reload shows.
	h.writePools(pools + "- name: more\n  addresses: [198.18.1.0/29]\nloadBalancerClass: example.com/b\n")
	h.eventually("the reload", func() (bool, string) {
		cfg := h.cloud.cfg.Load()
		return len(cfg.Pools) == 2, fmt.Sprint(len(cfg.Pools), " pools")
	})
	h.touch("ns", "a1", "1") // a sync of a1 under the new file
	h.create(lbService("ns", "b1", 80, classB))
	h.create(lbService("ns", "a2", 81, classA))
	h.waitIPs("ns", "a2", "198.18.0.1") // served after the reload: class a still

	a1 := h.get("ns", "a1")
	if got := ingressIPs(a1); !slices.Equal(got, []string{"198.18.0.0"}) || !servicehelper.HasLBFinalizer(a1) {
		t.Errorf("ns/a1 after the class changed in the file: IPs %v, finalizer %v; want it kept until restart", got, servicehelper.HasLBFinalizer(a1))
	}
	if got := ingressIPs(h.get("ns", "b1")); len(got) != 0 {
		t.Errorf("ns/b1 of the new class got %v before a restart", got)
	}
	if got := h.events.matching("IPReleased"); len(got) != 0 {
		t.Errorf("events %q, want no release", got)
	}
}

// TestReloadWhileSyncing flips two pools between two namespaces while Services are
// synced concurrently: every flip moves every Service, and the IPs one namespace gives
// up are the ones the other needs. No IP may ever be in two Services' status.
func TestReloadWhileSyncing(t *testing.T) {
	flip := func(first, second string) *config.Config {
		doc := fmt.Sprintf("pools:\n- name: p1\n  addresses: [198.18.0.0/26]\n  namespaces: [%s]\n- name: p2\n  addresses: [198.18.1.0/26]\n  namespaces: [%s]\n", first, second)
		cfg, err := config.Parse("flip", []byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	const perNamespace = 12
	h := startProvider(t, "pools:\n- name: p1\n  addresses: [198.18.0.0/26]\n  namespaces: [a]\n- name: p2\n  addresses: [198.18.1.0/26]\n  namespaces: [b]\n", 8)
	namespaces := []string{"a", "b"}
	for i := range perNamespace {
		for _, ns := range namespaces {
			h.create(lbService(ns, fmt.Sprintf("s%d", i), 80))
		}
	}
	inPool := func(prefix string) func() (bool, string) {
		return func() (bool, string) {
			for i := range perNamespace {
				for k, ns := range namespaces {
					ips := ingressIPs(h.get(ns, fmt.Sprintf("s%d", i)))
					want := []string{"198.18.0.", "198.18.1."}[(k+len(prefix))%2]
					if len(ips) != 1 || !strings.HasPrefix(ips[0], want) {
						return false, fmt.Sprintf("%s/s%d has %v, want one in %s0/26", ns, i, ips, want)
					}
				}
			}
			return true, ""
		}
	}
	h.eventually("every Service in its namespace's pool", inPool(""))
	for n := range 6 {
		// Edits of every Service make syncs run while the pools flip.
		var touching sync.WaitGroup
		for _, ns := range namespaces {
			touching.Go(func() {
				for i := range perNamespace {
					h.touch(ns, fmt.Sprintf("s%d", i), fmt.Sprint(n))
				}
			})
		}
		if n%2 == 0 {
			h.cloud.reload(h.ctx, flip("b", "a"))
		} else {
			h.cloud.reload(h.ctx, flip("a", "b"))
		}
		touching.Wait()
	}
	h.eventually("every Service in its namespace's pool after the flips", inPool(""))
	h.noDuplicates()
}
