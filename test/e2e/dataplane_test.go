package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/onprem-lb/onprem-lb/speaker"
	"github.com/onprem-lb/onprem-lb/test/demo"
	"github.com/onprem-lb/onprem-lb/test/lab"
	"github.com/onprem-lb/onprem-lb/test/lab/labtest"
)

// TestHealthGating: with kube-proxy on, a node that cannot serve gives its VIPs away.
func TestHealthGating(t *testing.T) {
	ctx, l, _ := startSpeakers(t, lab.Options{}, speakerPools)
	client := l.Clients[0]
	const ns = "health"
	podsOnEveryNode(ctx, t, l, ns, "web")
	create(ctx, t, l, lbService(ns, "web"))
	vip := waitIngress(ctx, t, l, ns, "web", 1)[0].IP

	t.Run("stopping kube-proxy on the owner moves the VIP to a healthy node", func(t *testing.T) {
		owner := announcer(ctx, t, l, ns, "web", vip, "")
		owner.KubeProxy.Kill()
		began := time.Now()
		next := announcer(ctx, t, l, ns, "web", vip, owner.Name)
		t.Logf("VIP %s left %s (kube-proxy stopped) for %s in %v (bounded by the poll)", vip, owner.Name, next.Name, time.Since(began).Round(time.Millisecond))
		waitAnswering(ctx, t, client, vip, macOf(ctx, t, next.Host))
		waitGet(ctx, t, client, vipURL(vip))
		if err := l.StartKubeProxy(ctx, owner); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("a Local Service whose pod turns unready is withdrawn from that node", func(t *testing.T) {
		pods := map[string]*corev1.Pod{}
		for _, node := range []string{"node-1", "node-2"} {
			pods[node] = addPod(ctx, t, l, ns, "loc-"+node, node, "loc")
		}
		create(ctx, t, l, lbService(ns, "loc", localService))
		vip := waitIngress(ctx, t, l, ns, "loc", 1)[0].IP
		owner := announcer(ctx, t, l, ns, "loc", vip, "")
		setReady(ctx, t, l, pods[owner.Name], false)
		next := announcer(ctx, t, l, ns, "loc", vip, owner.Name)
		waitAnswering(ctx, t, client, vip, macOf(ctx, t, next.Host))
		if r := waitGet(ctx, t, client, vipURL(vip)); r.Pod != ns+"/loc-"+next.Name {
			t.Errorf("answered by %s, want %s/loc-%s", r.Pod, ns, next.Name)
		}
	})
}

// foreignRule is a rule someone else put in PREROUTING before the speaker started.
var foreignRule = []string{"-t", "nat", "-I", "PREROUTING", "-s", "198.18.0.250/32", "-m", "comment", "--comment", "not onprem-lb", "-j", "RETURN"}

// TestIPTablesDataplane: without kube-proxy, with dataplane iptables, the speaker forwards
// VIP traffic itself.
func TestIPTablesDataplane(t *testing.T) {
	ctx, l, archives := startLab(t, lab.Options{NoKubeProxy: true, Clients: 2})
	before := map[string]string{}
	for _, n := range l.Nodes {
		if _, err := n.Exec(ctx, append([]string{"iptables"}, foreignRule...)...); err != nil {
			t.Fatal(err)
		}
		before[n.Name] = iptablesSave(ctx, t, n.Host)
	}
	pools, err := os.ReadFile(labtest.RepoPath("examples", "pools-iptables.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	sp := install(ctx, t, l, archives, string(pools))
	sp.waitLeader(ctx, "")
	sp.startSpeakers(ctx)
	client, outsider := l.Clients[0], l.Clients[1]
	const ns = "iptables"
	podsOnEveryNode(ctx, t, l, ns, "web")
	create(ctx, t, l, lbService(ns, "web", dualStack))
	ingress := waitIngress(ctx, t, l, ns, "web", 2)

	t.Run("ipMode Proxy, and TCP through each VIP spreads over pods on several nodes", func(t *testing.T) {
		for _, in := range ingress {
			if in.IPMode == nil || *in.IPMode != corev1.LoadBalancerIPModeProxy {
				t.Errorf("%s: ipMode %v, want Proxy", in.IP, in.IPMode)
			}
			waitGet(ctx, t, client, vipURL(in.IP))
			seen := map[string]bool{}
			for range 30 {
				r, err := lab.GetHTTP(ctx, client.NS, vipURL(in.IP))
				if err != nil {
					t.Fatalf("GET %s: %v", vipURL(in.IP), err)
				}
				seen[r.Pod] = true
			}
			if len(seen) < 2 {
				t.Errorf("%s: 30 requests all reached %v, want them spread over the pods", in.IP, seen)
			}
		}
	})

	var hcnp int32
	t.Run("Local reaches only local pods and keeps the client address", func(t *testing.T) {
		addPod(ctx, t, l, ns, "loc-1", "node-2", "loc")
		create(ctx, t, l, lbService(ns, "loc", localService))
		vip := waitIngress(ctx, t, l, ns, "loc", 1)[0].IP
		if got := announcer(ctx, t, l, ns, "loc", vip, ""); got.Name != "node-2" {
			t.Fatalf("announced by %s, want node-2 (the only endpoint)", got.Name)
		}
		waitGet(ctx, t, client, vipURL(vip))
		for range 10 {
			r, err := lab.GetHTTP(ctx, client.NS, vipURL(vip))
			if err != nil {
				t.Fatal(err)
			}
			if r.Pod != ns+"/loc-1" || r.ClientIP() != client.IPv4.String() {
				t.Fatalf("answered by %s seeing %s, want %s/loc-1 seeing the client %s", r.Pod, r.ClientIP(), ns, client.IPv4)
			}
		}
		svc, err := l.Client.CoreV1().Services(ns).Get(ctx, "loc", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		hcnp = svc.Spec.HealthCheckNodePort
	})

	t.Run("healthCheckNodePort answers as kube-proxy does", func(t *testing.T) {
		for node, want := range map[string]int{"node-2": 1, "node-1": 0} {
			n := labtest.Node(t, l, node)
			url := fmt.Sprintf("http://%s/", net.JoinHostPort(n.IPv4.String(), strconv.Itoa(int(hcnp))))
			status, body := waitHTTP(ctx, t, client, url)
			wantStatus := http.StatusOK
			if want == 0 {
				wantStatus = http.StatusServiceUnavailable
			}
			wantBody := map[string]any{"service": map[string]any{"namespace": ns, "name": "loc"}, "localEndpoints": float64(want), "serviceProxyHealthy": true}
			var got map[string]any
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatalf("%s: %v: %s", url, err, body)
			}
			if status != wantStatus {
				t.Errorf("%s: status %d, want %d", url, status, wantStatus)
			}
			if diff := cmp.Diff(wantBody, got); diff != "" {
				t.Errorf("%s: body (-want +got):\n%s", url, diff)
			}
		}
	})

	t.Run("a client outside loadBalancerSourceRanges is refused", func(t *testing.T) {
		create(ctx, t, l, lbService(ns, "ranged", func(s *corev1.Service) {
			s.Spec.Selector = map[string]string{"app": "web"}
			s.Spec.LoadBalancerSourceRanges = []string{client.IPv4.String() + "/32"}
		}))
		vip := waitIngress(ctx, t, l, ns, "ranged", 1)[0].IP
		waitGet(ctx, t, client, vipURL(vip))
		if r, err := lab.GetHTTP(ctx, outsider.NS, vipURL(vip)); err == nil {
			t.Errorf("%s from %s (outside the source ranges) answered by %s", vipURL(vip), outsider.IPv4, r.Pod)
		}
	})

	t.Run("UDP: a client that keeps sending reaches the new pod within a second of its pod's deletion", func(t *testing.T) {
		old := addPod(ctx, t, l, ns, "udp-1", "node-1", "udp")
		create(ctx, t, l, lbService(ns, "udp", func(s *corev1.Service) {
			s.Spec.Ports = []corev1.ServicePort{{Name: "dns", Port: 53, TargetPort: intstr.FromInt32(lab.UDPPort), Protocol: corev1.ProtocolUDP}}
		}))
		vip := waitIngress(ctx, t, l, ns, "udp", 1)[0].IP
		announcer(ctx, t, l, ns, "udp", vip, "")
		flow := newUDPFlow(ctx, t, client, net.JoinHostPort(vip, "53"))
		flow.waitPod(t, podKey(old), 15*time.Second)
		next := addPod(ctx, t, l, ns, "udp-2", "node-2", "udp")
		deletePod(ctx, t, l, old)
		deleted := time.Now()
		flow.waitPod(t, podKey(next), 10*time.Second)
		took := time.Since(deleted)
		t.Logf("the flow reached %s %v after %s was deleted", podKey(next), took.Round(time.Millisecond), podKey(old))
		if took > time.Second {
			t.Errorf("the flow took %v to reach the new pod, want at most 1 s", took.Round(time.Millisecond))
		}
	})

	t.Run("a speaker stopping and coming back moves each VIP with its open connections kept", func(t *testing.T) {
		for _, in := range ingress {
			owner := announcer(ctx, t, l, ns, "web", in.IP, "")
			open := dialKeepAlive(ctx, t, client, in.IP)
			pod := open.get(t, "before the handover").Pod
			sp.stopSpeaker(ctx, owner)
			next := announcer(ctx, t, l, ns, "web", in.IP, owner.Name)
			waitAnswering(ctx, t, client, in.IP, macOf(ctx, t, next.Host))
			if r := open.get(t, "after the handover to "+next.Name); r.Pod != pod {
				t.Errorf("%s: the open connection reached %q after the handover, %s before", in.IP, r.Pod, pod)
			}
			sp.startSpeaker(ctx, owner, "Membership converged")
			conditionMovesBack(ctx, t, l, ns, "web", in.IP, owner, next)
			waitAnswering(ctx, t, client, in.IP, macOf(ctx, t, owner.Host))
			if r := open.get(t, "after the VIP moved back to "+owner.Name); r.Pod != pod {
				t.Errorf("%s: the open connection reached %q after the VIP moved back, %s before", in.IP, r.Pod, pod)
			}
		}
	})

	t.Run("the uninstall's cleanup leaves iptables as before the speaker started, foreign rule included", func(t *testing.T) {
		for _, n := range l.Nodes {
			if !strings.Contains(iptablesSave(ctx, t, n.Host), "not onprem-lb") {
				t.Errorf("%s: the foreign rule is gone while the speaker runs", n.Name)
			}
			sp.stopSpeaker(ctx, n)
		}
		sp.cleanup(ctx, l.Nodes...)
		for _, n := range l.Nodes {
			if diff := cmp.Diff(before[n.Name], iptablesSave(ctx, t, n.Host)); diff != "" {
				t.Errorf("%s: iptables-save after --cleanup (-before +after):\n%s", n.Name, diff)
			}
		}
	})
}

// iptablesSave returns the IPv4 and IPv6 rules of host h without comments and counters, one
// table after the other in name order, leaving out tables that hold nothing (only built-in
// chains with policy ACCEPT): the kernel keeps such a table once anything touched it, and
// it means the same as no table.
func iptablesSave(ctx context.Context, t testing.TB, h *lab.Host) string {
	t.Helper()
	var out []string
	for _, cmd := range []string{"iptables-save", "ip6tables-save"} {
		s, err := h.Exec(ctx, cmd)
		if err != nil {
			t.Fatal(err)
		}
		var tables []string
		var table []string
		empty := true
		for _, line := range strings.Split(s, "\n") {
			line = counters.ReplaceAllString(line, "")
			switch {
			case strings.HasPrefix(line, "#") || line == "":
			case strings.HasPrefix(line, "*"):
				table, empty = []string{line}, true
			case line == "COMMIT":
				if !empty {
					tables = append(tables, strings.Join(append(table, line), "\n"))
				}
			default:
				table = append(table, line)
				if !strings.HasPrefix(line, ":") || !strings.HasSuffix(line, " ACCEPT") {
					empty = false
				}
			}
		}
		slices.Sort(tables)
		out = append(out, cmd+":")
		out = append(out, tables...)
	}
	return strings.Join(out, "\n")
}

// counters are the packet and byte counters at the end of a chain line of iptables-save.
var counters = regexp.MustCompile(` \[\d+:\d+\]$`)

// waitHTTP requests url from host h until it answers at all, and returns the status and body.
func waitHTTP(ctx context.Context, t testing.TB, h *lab.Host, url string) (int, []byte) {
	t.Helper()
	var status int
	var body []byte
	var last error
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 15*time.Second, true, func(ctx context.Context) (bool, error) {
		resp, err := lab.HTTPClient(h.NS, 2*time.Second).Get(url)
		if last = err; err != nil {
			return false, nil
		}
		defer resp.Body.Close()
		status = resp.StatusCode
		body, last = io.ReadAll(resp.Body)
		return last == nil, nil
	})
	if err != nil {
		t.Fatalf("GET %s: %v (last: %v)", url, err, last)
	}
	return status, body
}

// TestKubeProxyDataplane: dataplane kube-proxy with each service proxy mode the README
// claims (kube-proxy in iptables and in nftables mode): VIPs are served, the speaker's guard
// drops only what kube-proxy did not take, kube-proxy's own answers reach the client, and
// --cleanup removes the guard.
func TestKubeProxyDataplane(t *testing.T) {
	for _, mode := range []string{"iptables", "nftables"} {
		t.Run(mode, func(t *testing.T) { testKubeProxyMode(t, mode) })
	}
}

func testKubeProxyMode(t *testing.T, mode string) {
	ctx, l, sp := startSpeakers(t, lab.Options{ProxyMode: mode}, speakerPools)
	client := l.Clients[0]
	const ns = "kubeproxy"
	podsOnEveryNode(ctx, t, l, ns, "web")
	create(ctx, t, l, lbService(ns, "web"))
	vip := waitIngress(ctx, t, l, ns, "web", 1)[0].IP

	t.Run("a VIP is served through kube-proxy, with the guard in place", func(t *testing.T) {
		owner := announcer(ctx, t, l, ns, "web", vip, "")
		waitGet(ctx, t, client, vipURL(vip))
		if save := iptablesSave(ctx, t, owner.Host); !strings.Contains(save, "-d "+vip+"/32 -m comment --comment \"not forwarded by the service proxy\" -j DROP") {
			t.Errorf("%s: no guard (DROP) for %s in iptables:\n%s", owner.Name, vip, save)
		}
	})

	t.Run("a port kube-proxy does not serve is dropped by the guard, not forwarded", func(t *testing.T) {
		addr := net.JoinHostPort(vip, "81")
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		c, err := lab.DialContext(dctx, client.NS, "tcp", addr)
		if err == nil {
			c.Close()
			t.Fatalf("connected to %s", addr)
		}
		// No answer at all: the dial ends at its deadline (reported as the context's or, when
		// the socket's own deadline fires first, as the socket's).
		if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("connect to %s: %v, want no answer at all (dropped)", addr, err)
		}
	})

	t.Run("a Service without endpoints is refused at once, as kube-proxy answers", func(t *testing.T) {
		create(ctx, t, l, lbService(ns, "empty"))
		vip := waitIngress(ctx, t, l, ns, "empty", 1)[0].IP
		announcer(ctx, t, l, ns, "empty", vip, "")
		waitRefused(ctx, t, client, net.JoinHostPort(vip, "80"))
	})

	t.Run("the uninstall's cleanup (kubectl apply -k manifests/cleanup) removes the guard and leaves kube-proxy's rules", func(t *testing.T) {
		for _, n := range l.Nodes {
			sp.stopSpeaker(ctx, n)
		}
		sp.cleanup(ctx, l.Nodes...)
		for _, n := range l.Nodes {
			for _, save := range []string{"iptables-legacy-save", "iptables-nft-save", "ip6tables-legacy-save", "ip6tables-nft-save"} {
				if out, err := n.Exec(ctx, save); err != nil {
					t.Fatal(err)
				} else if strings.Contains(out, "ONPREM-LB") {
					t.Errorf("%s: %s after --cleanup still has ONPREM-LB:\n%s", n.Name, save, out)
				}
			}
		}
		// kube-proxy still serves the VIP on a node it reaches (ARP is gone with the
		// speakers): from node-1 itself.
		waitGet(ctx, t, l.Nodes[0].Host, vipURL(vip))
	})

	if mode != "iptables" {
		return
	}
	t.Run("kube-proxy in IPVS mode: the speaker refuses, says why, installs nothing", func(t *testing.T) {
		n := labtest.Node(t, l, "node-3")
		if len(sp.pods(ctx, demo.Speaker, n.Name)) > 0 {
			sp.stopSpeaker(ctx, n)
			sp.cleanup(ctx, n)
		}
		fakeIPVSKubeProxy(t, l, n)
		sp.startSpeaker(ctx, n, "Not serving any LoadBalancer IP from this node")
		want := "kube-proxy runs in IPVS mode, which dataplane kube-proxy does not support"
		err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
			list, err := l.Client.CoreV1().Events("").List(ctx, metav1.ListOptions{
				FieldSelector: fields.Set{"involvedObject.kind": "Node", "involvedObject.name": n.Name, "reason": speaker.EventServiceProxyUnsupported}.String(),
			})
			return err == nil && len(list.Items) > 0 && list.Items[0].Type == corev1.EventTypeWarning && strings.Contains(list.Items[0].Message, want), nil
		})
		if err != nil {
			t.Errorf("no Warning %s event on Node %s saying %q: %v", speaker.EventServiceProxyUnsupported, n.Name, want, err)
		}
		resp, err := http.Get("http://" + net.JoinHostPort(n.IPv4.String(), "7472") + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if m := `onprem_lb_speaker_service_proxy_unsupported{mode="ipvs"} 1`; !strings.Contains(string(body), m) {
			t.Errorf("%s's /metrics lacks %s", n.Name, m)
		}
		// The speaker stays up; nothing of it reaches iptables (a guard would drop every
		// IPVS VIP), and it announces nothing.
		log := sp.speakerLog(ctx, n)
		sp.stopSpeaker(ctx, n)
		if save := iptablesSave(ctx, t, n.Host); strings.Contains(save, "ONPREM-LB") {
			t.Errorf("%s: the refusing speaker installed chains:\n%s", n.Name, save)
		}
		if strings.Contains(log, "Membership converged") {
			t.Errorf("%s: the refusing speaker joined membership:\n%s", n.Name, lastLines(log, 20))
		}
	})
}

// fakeIPVSKubeProxy replaces kube-proxy on node n by one that says it runs in IPVS mode:
// /proxyMode answers "ipvs" on its metrics address, /healthz 200 on its health port.
func fakeIPVSKubeProxy(t *testing.T, l *lab.Lab, n *lab.Node) {
	t.Helper()
	n.KubeProxy.Kill()
	mux := http.NewServeMux()
	mux.HandleFunc("/proxyMode", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ipvs") })
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "{}") })
	for _, addr := range []string{"127.0.0.1:10249", "0.0.0.0:10256"} {
		var ln net.Listener
		if err := lab.InNetns(n.NS, func() (err error) {
			ln, err = net.Listen("tcp", addr)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: time.Second}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
	}
}

// waitRefused connects from host h to addr until the connection is refused within a second
// (the service proxy may not have synced yet; 15 s at most), and fails with what happened to
// every try otherwise.
func waitRefused(ctx context.Context, t testing.TB, h *lab.Host, addr string) {
	t.Helper()
	var tries []string
	began := time.Now()
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 15*time.Second, true, func(ctx context.Context) (bool, error) {
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		c, err := lab.DialContext(dctx, h.NS, "tcp", addr)
		if err == nil {
			c.Close()
		}
		tries = append(tries, fmt.Sprintf("after %v: %v", time.Since(began).Round(time.Millisecond), err))
		return errors.Is(err, syscall.ECONNREFUSED), nil
	})
	if err != nil {
		t.Fatalf("connect to %s from %s never refused within 1 s: %v\n%s", addr, h.Name, err, strings.Join(tries, "\n"))
	}
	t.Logf("connect to %s refused (%d tries)", addr, len(tries))
}

// udpFlow is one UDP socket of a client, connected to a VIP:port: every datagram it sends
// belongs to the same conntrack flow.
type udpFlow struct {
	ctx  context.Context
	conn net.Conn
	addr string
}

func newUDPFlow(ctx context.Context, t testing.TB, h *lab.Host, addr string) *udpFlow {
	t.Helper()
	conn, err := lab.DialContext(ctx, h.NS, "udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &udpFlow{ctx: ctx, conn: conn, addr: addr}
}

// waitPod sends a datagram every 50 ms until a reply comes from pod (namespace/name), for
// at most limit, and fails with the replies seen otherwise.
func (f *udpFlow) waitPod(t testing.TB, pod string, limit time.Duration) {
	t.Helper()
	seen := map[string]int{}
	err := wait.PollUntilContextTimeout(f.ctx, 50*time.Millisecond, limit, true, func(context.Context) (bool, error) {
		if _, err := f.conn.Write([]byte("ping")); err != nil {
			seen[err.Error()]++
			return false, nil
		}
		f.conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		buf := make([]byte, 1500)
		n, err := f.conn.Read(buf)
		if err != nil {
			seen["no reply"]++
			return false, nil
		}
		var r lab.Reply
		if err := json.Unmarshal(buf[:n], &r); err != nil {
			return false, err
		}
		seen[r.Pod]++
		return r.Pod == pod, nil
	})
	if err != nil {
		t.Fatalf("UDP to %s never answered by %s within %v: %v; seen %v", f.addr, pod, limit, err, seen)
	}
}
