package e2e

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/onprem-lb/onprem-lb/speaker"
	"github.com/onprem-lb/onprem-lb/test/demo"
	"github.com/onprem-lb/onprem-lb/test/lab"
	"github.com/onprem-lb/onprem-lb/test/lab/labtest"
)

const speakerPools = `
pools:
  - name: lan
    addresses:
      - 198.18.0.200-198.18.0.229
      - 2001:db8:18::200/122
  - name: pinned
    autoAssign: false
    addresses: [198.18.0.230-198.18.0.239]
`

// startSpeakers starts a lab of real nodes (opts), installs onprem-lb with the pool file
// pools, and waits until the CCM leads and a speaker runs on every node.
func startSpeakers(t testing.TB, opts lab.Options, pools string) (context.Context, *lab.Lab, *onprem) {
	ctx, l, archives := startLab(t, opts)
	o := install(ctx, t, l, archives, pools)
	o.waitLeader(ctx, "")
	o.startSpeakers(ctx)
	return ctx, l, o
}

// podsOnEveryNode creates namespace ns and, on every node, a pod <app>-<node> labelled
// app=<app>.
func podsOnEveryNode(ctx context.Context, t testing.TB, l *lab.Lab, ns, app string) {
	t.Helper()
	createNamespace(ctx, t, l, ns)
	for _, n := range l.Nodes {
		addPod(ctx, t, l, ns, app+"-"+n.Name, n.Name, app)
	}
}

// vipURL is the HTTP URL of a VIP on port 80.
func vipURL(ip string) string { return "http://" + net.JoinHostPort(ip, "80") + "/" }

func TestSpeaker(t *testing.T) {
	ctx, l, sp := startSpeakers(t, lab.Options{Clients: 2}, speakerPools)
	client := l.Clients[0]
	const ns = "speaker"
	createNamespace(ctx, t, l, ns)
	webPods := map[string]*corev1.Pod{ // by node
		"node-1": addPod(ctx, t, l, ns, "web-1", "node-1", "web"),
		"node-2": addPod(ctx, t, l, ns, "web-2", "node-2", "web"),
	}
	create(ctx, t, l, lbService(ns, "web", dualStack))
	vips := ips(waitIngress(ctx, t, l, ns, "web", 2))

	t.Run("exactly one node, the owner, answers ARP and NDP for each VIP", func(t *testing.T) {
		for _, vip := range vips {
			owner := announcer(ctx, t, l, ns, "web", vip, "")
			waitAnswering(ctx, t, client, vip, macOf(ctx, t, owner.Host))
			waitEvent(ctx, t, l, ns, "web", fmt.Sprintf("Normal Announcing: Node %s announces %s on eth0", owner.Name, vip))
			// The owner's /announcements says so too.
			resp, err := http.Get("http://" + net.JoinHostPort(owner.IPv4.String(), "7472") + "/announcements")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if want := fmt.Sprintf(`"ip": %q,
    "state": "announced",
    "interfaces": [
      "eth0"
    ]`, vip); !strings.Contains(string(body), want) {
				t.Errorf("%s's /announcements does not show %s announced on eth0:\n%s", owner.Name, vip, body)
			}
		}
	})

	t.Run("the client reaches the Service through each VIP with real kube-proxy", func(t *testing.T) {
		for _, vip := range vips {
			if r := waitGet(ctx, t, client, vipURL(vip)); r.Pod != ns+"/web-1" && r.Pod != ns+"/web-2" {
				t.Errorf("GET %s answered by %q, want a web pod", vipURL(vip), r.Pod)
			}
		}
	})

	t.Run("a new Service's first connection gets through, even if kube-proxy programs its VIP after it is announced", func(t *testing.T) {
		create(ctx, t, l, lbService(ns, "fresh", func(s *corev1.Service) { s.Spec.Selector = map[string]string{"app": "web"} }))
		vip := waitIngress(ctx, t, l, ns, "fresh", 1)[0].IP
		announcer(ctx, t, l, ns, "fresh", vip, "")
		began := time.Now()
		resp, err := lab.HTTPClient(client.NS, 8*time.Second).Get(vipURL(vip))
		if err != nil {
			t.Fatalf("first GET %s after the VIP was announced: %v", vipURL(vip), err)
		}
		resp.Body.Close()
		t.Logf("first GET %s answered after %v", vipURL(vip), time.Since(began).Round(time.Millisecond))
	})

	t.Run("Local: the node with the endpoint answers, keeps the client address, and moves with the endpoint", func(t *testing.T) {
		p := addPod(ctx, t, l, ns, "local-1", "node-3", "local")
		create(ctx, t, l, lbService(ns, "local", localService))
		vip := waitIngress(ctx, t, l, ns, "local", 1)[0].IP
		if got := announcer(ctx, t, l, ns, "local", vip, ""); got.Name != "node-3" {
			t.Fatalf("announced by %s, want node-3 (the only endpoint)", got.Name)
		}
		waitAnswering(ctx, t, client, vip, macOf(ctx, t, labtest.Node(t, l, "node-3").Host))
		if r := waitGet(ctx, t, client, vipURL(vip)); r.Pod != ns+"/local-1" || r.ClientIP() != client.IPv4.String() {
			t.Errorf("answered by %s seeing client %s, want %s/local-1 seeing %s", r.Pod, r.ClientIP(), ns, client.IPv4)
		}
		deletePod(ctx, t, l, p)
		addPod(ctx, t, l, ns, "local-2", "node-1", "local")
		if got := announcer(ctx, t, l, ns, "local", vip, "node-3"); got.Name != "node-1" {
			t.Errorf("after the endpoint moved, announced by %s, want node-1", got.Name)
		}
		waitAnswering(ctx, t, client, vip, macOf(ctx, t, labtest.Node(t, l, "node-1").Host))
		if r := waitGet(ctx, t, client, vipURL(vip)); r.Pod != ns+"/local-2" {
			t.Errorf("answered by %s, want %s/local-2", r.Pod, ns)
		}
	})

	t.Run("SIGTERM hands the VIP over with no failed request, no conflict, the client's ARP entry flushed, open connections kept", func(t *testing.T) {
		vip := vips[0]
		owner := announcer(ctx, t, l, ns, "web", vip, "")
		conditions := falseConditions(ctx, t, l, ns, "web")
		// A connection open across the handover and back: its requests reach the pod it
		// reached first, through the node that held it, whoever answers ARP now.
		open := dialKeepAlive(ctx, t, client, vip)
		pod := open.get(t, "before the handover").Pod
		// The client forgets who answers the VIP before every tenth request (every ~200 ms),
		// during the handover and after the old owner is gone: only a node that announces
		// the VIP answers. (Between requests: a flush during a request's own resolution
		// would fail that request whoever answers.)
		flush := func(n int) {
			if n%10 != 0 {
				return
			}
			if out, err := client.Exec(ctx, "ip", "neigh", "flush", "to", vip); err != nil {
				t.Errorf("ip neigh flush to %s: %v: %s", vip, err, out)
			}
		}
		var ended *corev1.ContainerStateTerminated
		failures, total := requestsDuringBefore(ctx, client, vip, flush, func() {
			ended = sp.stopSpeaker(ctx, owner)
			time.Sleep(time.Second) // requests go on after the old owner is gone
		})
		if ended == nil || ended.ExitCode != 0 {
			t.Errorf("speaker on %s ended %+v; want a clean exit (0) on SIGTERM", owner.Name, ended)
		}
		if len(failures) != 0 {
			t.Errorf("%d of %d requests failed during the handover:\n%s", len(failures), total, strings.Join(failures, "\n"))
		}
		next := announcer(ctx, t, l, ns, "web", vip, owner.Name)
		waitAnswering(ctx, t, client, vip, macOf(ctx, t, next.Host))
		if got := conditions(); len(got) > 0 {
			t.Errorf("False conditions during the handover:\n%s", strings.Join(got, "\n"))
		}
		if evs := events(ctx, l, ns, "web"); strings.Contains(evs, speaker.EventIPConflict) {
			t.Errorf("%s event during the handover:\n%s", speaker.EventIPConflict, evs)
		}
		if r := open.get(t, "after the handover to "+next.Name); r.Pod != pod {
			t.Errorf("the open connection reached %s after the handover, %s before", r.Pod, pod)
		}
		sp.startSpeaker(ctx, owner, "Membership converged")
		conditionMovesBack(ctx, t, l, ns, "web", vip, owner, next)
		waitAnswering(ctx, t, client, vip, macOf(ctx, t, owner.Host))
		if r := open.get(t, "after the VIP moved back to "+owner.Name); r.Pod != pod {
			t.Errorf("the open connection reached %s after the VIP moved back, %s before", r.Pod, pod)
		}
	})

	t.Run("the owner's node dying (everything on it frozen, cable pulled) moves the VIP", func(t *testing.T) {
		vip := vips[0]
		owner := announcer(ctx, t, l, ns, "web", vip, "")
		killNode(ctx, t, l, owner)
		// The dead node's pod stays Ready until the node lifecycle controller gives up on
		// the node (40 s): take it out of the endpoints at once, as it would, else half the
		// requests go on to an unreachable pod.
		if p := webPods[owner.Name]; p != nil {
			markNotReady(ctx, t, l, p)
		}
		began := time.Now()
		next := announcer(ctx, t, l, ns, "web", vip, owner.Name)
		waitAnswering(ctx, t, client, vip, macOf(ctx, t, next.Host))
		t.Logf("VIP %s moved from %s to %s in %v (bounded by the poll)", vip, owner.Name, next.Name, time.Since(began).Round(time.Millisecond))
		waitGet(ctx, t, client, vipURL(vip))
		reviveNode(ctx, t, l, owner)
		// Its speaker, declared dead, rejoins the gossip first (a healed partition), and every
		// speaker probes its service proxy again: once every speaker counts every node and
		// judges every proxy healthy, it may serve again (CI saw the VIP move back and forth
		// for 2.5 s while the speakers' probes of the thawed node disagreed).
		revived := time.Now()
		for _, n := range l.Nodes {
			waitServable(ctx, t, l, n, len(l.Nodes))
		}
		t.Logf("%s's speaker a member, and its proxy healthy, again %v after the node came back", owner.Name, time.Since(revived).Round(time.Millisecond))
		conditionMovesBack(ctx, t, l, ns, "web", vip, owner, next)
	})

	t.Run("the exclusion label moves the VIP off a node; removing it lets the node serve again", func(t *testing.T) {
		vip := vips[0]
		owner := announcer(ctx, t, l, ns, "web", vip, "")
		label := func(value string) {
			t.Helper()
			if out, err := l.Kubectl(ctx, "label", "node", owner.Name, "node.kubernetes.io/exclude-from-external-load-balancers"+value, "--overwrite"); err != nil {
				t.Fatalf("label node: %v\n%s", err, out)
			}
		}
		label("=true")
		next := announcer(ctx, t, l, ns, "web", vip, owner.Name)
		waitAnswering(ctx, t, client, vip, macOf(ctx, t, next.Host))
		label("-")
		// Rendezvous hashing gives the VIP back to its first owner once it may serve again.
		conditionMovesBack(ctx, t, l, ns, "web", vip, owner, next)
		waitAnswering(ctx, t, client, vip, macOf(ctx, t, owner.Host))
	})

	t.Run("conditions disappear within a second with the IP: a family dropped, the type changed to ClusterIP", func(t *testing.T) {
		testConditionsFollowTheService(ctx, t, l, ns)
	})

	t.Run("the speaker's ServiceAccount may change only the onprem-lb.io conditions of a Service (admission policy)", func(t *testing.T) {
		testSpeakerAdmission(ctx, t, l, ns, "web")
	})

	t.Run("a VIP a foreign host already uses is reported and not fought", func(t *testing.T) {
		foreign := l.Clients[1]
		const vip = "198.18.0.233"
		if _, err := foreign.Exec(ctx, "ip", "addr", "add", vip+"/24", "dev", "eth0"); err != nil {
			t.Fatal(err)
		}
		create(ctx, t, l, lbService(ns, "squatted", func(s *corev1.Service) {
			s.Annotations["onprem-lb.io/load-balancer-ips"] = vip
		}))
		waitIngress(ctx, t, l, ns, "squatted", 1)
		mac := macOf(ctx, t, foreign)
		waitCondition(ctx, t, l, ns, "squatted", vip, metav1.ConditionFalse, speaker.ReasonIPConflict)
		waitEvent(ctx, t, l, ns, "squatted", "Warning IPConflict: "+vip+" is already in use on the LAN by "+mac)
		if got, err := answering(ctx, client, vip); err != nil || len(got) != 1 || got[0] != mac {
			t.Errorf("%s answered by %v (%v), want only the foreign host %s", vip, got, err, mac)
		}
		// Once the foreign host lets go, the speaker's re-probe finds it free and announces.
		if _, err := foreign.Exec(ctx, "ip", "addr", "del", vip+"/24", "dev", "eth0"); err != nil {
			t.Fatal(err)
		}
		owner := announcer(ctx, t, l, ns, "squatted", vip, "")
		waitAnswering(ctx, t, client, vip, macOf(ctx, t, owner.Host))
	})
}

// conditionMovesBack checks that, once the VIP may move back to its first owner (rendezvous
// hashing gives it back), the Service's condition names that owner within a second.
func conditionMovesBack(ctx context.Context, t *testing.T, l *lab.Lab, ns, name, vip string, owner, interim *lab.Node) {
	t.Helper()
	began := time.Now()
	if back := announcer(ctx, t, l, ns, name, vip, interim.Name); back.Name != owner.Name {
		t.Errorf("%s moved on to %s, want back to %s", vip, back.Name, owner.Name)
	}
	took := time.Since(began)
	t.Logf("the condition named %s again %v after %s could serve %s again", owner.Name, took.Round(time.Millisecond), owner.Name, vip)
	if took > time.Second {
		t.Errorf("the condition named %s for %v after %s could serve %s again, want at most 1s\nevents: %s",
			interim.Name, took.Round(time.Millisecond), owner.Name, vip, events(ctx, l, ns, name))
	}
}

// speakerConditions returns the onprem-lb.io conditions of a Service, by type.
func speakerConditions(ctx context.Context, l *lab.Lab, ns, name string) (map[string]string, error) {
	svc, err := l.Client.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, c := range svc.Status.Conditions {
		if strings.HasPrefix(c.Type, "onprem-lb.io/") {
			out[c.Type] = string(c.Status) + " " + c.Reason + ": " + c.Message
		}
	}
	return out, nil
}

// conditionChange is a change of one of a Service's onprem-lb.io conditions (value "": gone),
// after some time.
type conditionChange struct {
	after      time.Duration
	typ, value string
}

// conditionsDuring reads a Service's onprem-lb.io conditions every 50 ms while fn runs, and
// returns what they were at first and each change (a failed read is skipped).
func conditionsDuring(ctx context.Context, l *lab.Lab, ns, name string, fn func()) []conditionChange {
	ctx, cancel := context.WithCancel(ctx)
	began := time.Now()
	var changes []conditionChange
	var last map[string]string
	done := make(chan struct{})
	go func() {
		defer close(done)
		wait.PollUntilContextCancel(ctx, 50*time.Millisecond, true, func(ctx context.Context) (bool, error) {
			now, err := speakerConditions(ctx, l, ns, name)
			if err != nil {
				return false, nil
			}
			types := map[string]bool{}
			for typ := range last {
				types[typ] = true
			}
			for typ := range now {
				types[typ] = true
			}
			for _, typ := range slices.Sorted(maps.Keys(types)) {
				if last == nil || last[typ] != now[typ] {
					changes = append(changes, conditionChange{time.Since(began), typ, now[typ]})
				}
			}
			last = now
			return false, nil
		})
	}()
	fn()
	cancel()
	<-done
	return changes
}

// formatChanges is one line per change.
func formatChanges(changes []conditionChange) string {
	lines := make([]string, len(changes))
	for i, c := range changes {
		lines[i] = fmt.Sprintf("after %v: %s %q", c.after.Round(time.Millisecond), c.typ, c.value)
	}
	return strings.Join(lines, "\n")
}

// testConditionsFollowTheService checks that a Service's conditions disappear with its IPs:
// a family dropped, then the type changed to ClusterIP.
func testConditionsFollowTheService(ctx context.Context, t *testing.T, l *lab.Lab, ns string) {
	create(ctx, t, l, lbService(ns, "fleeting", dualStack))
	vips := ips(waitIngress(ctx, t, l, ns, "fleeting", 2))
	for _, vip := range vips {
		announcer(ctx, t, l, ns, "fleeting", vip, "")
	}
	// gone waits until the Service has no condition of the types, and says how long it took.
	gone := func(change string, types ...string) {
		t.Helper()
		began := time.Now()
		var got map[string]string
		err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
			var err error
			if got, err = speakerConditions(ctx, l, ns, "fleeting"); err != nil {
				return false, nil
			}
			return !slices.ContainsFunc(types, func(typ string) bool { _, ok := got[typ]; return ok }), nil
		})
		took := time.Since(began)
		t.Logf("%s: conditions %v gone in %v", change, types, took.Round(time.Millisecond))
		if err != nil || took > time.Second {
			t.Errorf("%s: after %v the conditions are %v, want none of %v within 1s", change, took.Round(time.Millisecond), got, types)
		}
	}
	if out, err := l.Kubectl(ctx, "-n", ns, "patch", "svc", "fleeting", "--type=merge",
		"-p", `{"spec":{"ipFamilyPolicy":"SingleStack"}}`); err != nil {
		t.Fatalf("drop IPv6: %v\n%s", err, out)
	}
	gone("IPv6 dropped", speaker.ConditionAnnouncedIPv6)
	if got, err := speakerConditions(ctx, l, ns, "fleeting"); err != nil || got[speaker.ConditionAnnouncedIPv4] == "" {
		t.Errorf("after IPv6 was dropped, conditions %v (%v), want the IPv4 one kept", got, err)
	}
	if out, err := l.Kubectl(ctx, "-n", ns, "patch", "svc", "fleeting", "--type=merge", "-p", `{"spec":{"type":"ClusterIP"}}`); err != nil {
		t.Fatalf("change to ClusterIP: %v\n%s", err, out)
	}
	gone("changed to ClusterIP", speaker.ConditionAnnouncedIPv4, speaker.ConditionAnnouncedIPv6)
}

// testSpeakerAdmission checks, against the real API server, what the speaker's
// ServiceAccount may write on a Service's status under manifests/speaker-admission.yaml,
// and that the CCM's is not concerned.
func testSpeakerAdmission(ctx context.Context, t *testing.T, l *lab.Lab, ns, name string) {
	// As the pods' ServiceAccounts of manifests/.
	clientOf := func(serviceAccount string) kubernetes.Interface {
		kubeconfig, err := l.ServiceAccountKubeconfig(ctx, system, serviceAccount)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			t.Fatal(err)
		}
		return kubernetes.NewForConfigOrDie(cfg)
	}
	speakerSA, ccmSA := clientOf(demo.Speaker), clientOf(demo.CCM)
	patch := func(c kubernetes.Interface, typ types.PatchType, body string) error {
		_, err := c.CoreV1().Services(ns).Patch(ctx, name, typ, []byte(body), metav1.PatchOptions{}, "status")
		return err
	}
	condition := func(typ string) string {
		return `{"status":{"conditions":[{"type":"` + typ + `","status":"True","reason":"Probe","message":"admission test","lastTransitionTime":"2026-01-01T00:00:00Z"}]}}`
	}
	removal := func(typ string) string {
		return `{"status":{"conditions":[{"type":"` + typ + `","$patch":"delete"}]}}`
	}
	const denied = "onprem-speaker may change only the onprem-lb.io/* conditions of a Service"
	hijack := `{"status":{"loadBalancer":{"ingress":[{"ip":"198.18.0.228"}]}}}`
	// The policy takes effect once the API server has read it: wait for the first denial.
	var err error
	waitErr := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
		err = patch(speakerSA, types.MergePatchType, hijack)
		return err != nil, nil
	})
	if waitErr != nil || !strings.Contains(err.Error(), denied+", not status.loadBalancer") {
		t.Fatalf("the speaker's ServiceAccount patching status.loadBalancer.ingress: %v, want denied: %s, not status.loadBalancer", err, denied)
	}
	if err := patch(speakerSA, types.StrategicMergePatchType, condition("example.com/Probe")); err == nil || !strings.Contains(err.Error(), denied+", not other conditions") {
		t.Errorf("the speaker's ServiceAccount setting an example.com condition: %v, want denied", err)
	}
	if err := patch(speakerSA, types.StrategicMergePatchType, condition("onprem-lb.io/Probe")); err != nil {
		t.Errorf("the speaker's ServiceAccount setting an onprem-lb.io condition: %v, want allowed", err)
	}
	if err := patch(speakerSA, types.StrategicMergePatchType, removal("onprem-lb.io/Probe")); err != nil {
		t.Errorf("the speaker's ServiceAccount removing an onprem-lb.io condition: %v, want allowed", err)
	}
	if err := patch(ccmSA, types.StrategicMergePatchType, condition("example.com/Probe")); err != nil {
		t.Errorf("the CCM's ServiceAccount setting an example.com condition: %v, want allowed (the policy is the speaker's only)", err)
	}
	if err := patch(ccmSA, types.StrategicMergePatchType, removal("example.com/Probe")); err != nil {
		t.Errorf("the CCM's ServiceAccount removing an example.com condition: %v, want allowed", err)
	}
	svc, err := l.Client.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, ing := range svc.Status.LoadBalancer.Ingress {
		if ing.IP == "198.18.0.228" {
			t.Errorf("the speaker's ServiceAccount moved 198.18.0.228 to %s/%s: %v", ns, name, svc.Status.LoadBalancer.Ingress)
		}
	}
}

// requestsDuring sends TCP requests to vip:80 from client, one every 20 ms, while fn runs,
// and returns the errors of those that failed (with the time since fn started) and how many
// were sent.
func requestsDuring(ctx context.Context, client *lab.Host, vip string, fn func()) (failures []string, total int) {
	return requestsDuringBefore(ctx, client, vip, nil, fn)
}

// requestsDuringBefore is requestsDuring calling before (if not nil) ahead of each request,
// in the requesting goroutine, with the number of requests made so far.
func requestsDuringBefore(ctx context.Context, client *lab.Host, vip string, before func(n int), fn func()) (failures []string, total int) {
	return lab.RequestsDuring(ctx, client.NS, vipURL(vip), before, fn)
}

// falseConditions records, from now until the returned function is called, the False
// onprem-lb.io conditions the Service shows: "type reason: message" lines, without repeats.
func falseConditions(ctx context.Context, t testing.TB, l *lab.Lab, ns, name string) (stop func() []string) {
	t.Helper()
	w, err := l.Client.CoreV1().Services(ns).Watch(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("metadata.name", name).String(),
	})
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			svc, ok := ev.Object.(*corev1.Service)
			if !ok {
				continue
			}
			for _, c := range svc.Status.Conditions {
				line := fmt.Sprintf("%s %s: %s", c.Type, c.Reason, c.Message)
				if strings.HasPrefix(c.Type, "onprem-lb.io/") && c.Status == metav1.ConditionFalse && !slices.Contains(seen, line) {
					seen = append(seen, line)
				}
			}
		}
	}()
	return func() []string {
		w.Stop()
		<-done
		return seen
	}
}
