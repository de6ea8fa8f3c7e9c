package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/mdlayher/arp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/onprem-lb/onprem-lb/test/demo"
	"github.com/onprem-lb/onprem-lb/test/lab"
)

// BenchmarkSpeakerFailover measures, in the lab with kube-proxy and three speakers (run with
// -benchtime 1x; each run reports its own figures):
//   - hard-outage-ms: the owner of a VIP dies hard (everything on the node frozen, its
//     cable pulled) → the client's next successful request through the VIP; median of 5
//     kills. The client
//     sends a request (new TCP connection, 100 ms timeout) every 10 ms.
//   - graceful-failed-requests: requests that failed while the owner's speaker pod was
//     deleted (SIGTERM) and handed over, summed over 3 handovers (target 0)
//   - arp-after-status-ms: IP in the Service's status (seen through a watch) → the VIP
//     answers ARP; median of 20 Services
//   - proxy-down-withdraw-ms: kube-proxy on the owner stopped → another node answers ARP for
//     the VIP; median of 3
func BenchmarkSpeakerFailover(b *testing.B) {
	ctx, l, sp := startSpeakers(b, lab.Options{Clients: 2}, speakerPools)
	client := l.Clients[0]
	const ns = "bench"
	podsOnEveryNode(ctx, b, l, ns, "web")
	create(ctx, b, l, lbService(ns, "web"))
	vip := waitIngress(ctx, b, l, ns, "web", 1)[0].IP
	arpc := arpClient(b, client)

	for b.Loop() {
		var outages []time.Duration
		for range 5 {
			owner := stableOwner(ctx, b, l, arpc, ns, "web", vip)
			waitGet(ctx, b, client, vipURL(vip))
			d, err := demo.Outage(ctx, client.NS, vip, func() error {
				killNode(ctx, b, l, owner)
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
			outages = append(outages, d)
			reviveNode(ctx, b, l, owner)
		}
		b.ReportMetric(medianMS(outages), "hard-outage-ms")

		failed := 0
		for range 3 {
			owner := stableOwner(ctx, b, l, arpc, ns, "web", vip)
			waitGet(ctx, b, client, vipURL(vip))
			f, _ := requestsDuring(ctx, client, vip, func() {
				sp.stopSpeaker(ctx, owner)
				time.Sleep(2 * time.Second)
			})
			for _, e := range f {
				b.Logf("handover from %s: request failed %s", owner.Name, e)
			}
			failed += len(f)
			sp.startSpeaker(ctx, owner, "Membership converged")
		}
		b.ReportMetric(float64(failed), "graceful-failed-requests")

		b.ReportMetric(arpAfterStatus(ctx, b, l, arpc, ns, 20), "arp-after-status-ms")

		var withdrawals []time.Duration
		for range 3 {
			owner := stableOwner(ctx, b, l, arpc, ns, "web", vip)
			waitGet(ctx, b, client, vipURL(vip))
			mac, err := net.ParseMAC(macOf(ctx, b, owner.Host))
			if err != nil {
				b.Fatal(err)
			}
			drain(arpc)
			began := time.Now()
			owner.KubeProxy.Kill()
			withdrawals = append(withdrawals, untilAnsweredByOther(ctx, b, arpc, netip.MustParseAddr(vip), mac, began))
			if err := l.StartKubeProxy(ctx, owner); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(medianMS(withdrawals), "proxy-down-withdraw-ms")
	}
}

// stableOwner waits until the node the Service's condition names for the IPv4 vip is also
// the one whose MAC answers ARP for it (after a takeover the condition follows the
// announcement), and returns it.
func stableOwner(ctx context.Context, b testing.TB, l *lab.Lab, c *arp.Client, ns, name, vip string) *lab.Node {
	ip := netip.MustParseAddr(vip)
	var node *lab.Node
	var answered string
	for range 100 {
		node = announcer(ctx, b, l, ns, name, vip, "")
		drain(c)
		if err := c.SetDeadline(time.Now().Add(50 * time.Millisecond)); err == nil {
			if mac, err := c.Resolve(ip); err == nil {
				answered = mac.String()
				if answered == macOf(ctx, b, node.Host) {
					return node
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.Fatalf("%s: the condition names %s but %s answers ARP", vip, node.Name, answered)
	return nil
}

// drain discards the ARP packets waiting on c (gratuitous ARPs of an earlier takeover), so
// that the next Resolve sees only answers to its own request.
func drain(c *arp.Client) {
	for {
		if err := c.SetReadDeadline(time.Now().Add(time.Millisecond)); err != nil {
			return
		}
		if _, _, err := c.Read(); err != nil {
			return
		}
	}
}

// untilAnsweredByOther asks for ip by ARP every 5 ms until a MAC other than old answers, and
// returns the time since began (bounded by 30 s).
func untilAnsweredByOther(ctx context.Context, b testing.TB, c *arp.Client, ip netip.Addr, old net.HardwareAddr, began time.Time) time.Duration {
	for time.Since(began) < 30*time.Second && ctx.Err() == nil {
		if err := c.SetDeadline(time.Now().Add(5 * time.Millisecond)); err == nil {
			if mac, err := c.Resolve(ip); err == nil && mac.String() != old.String() {
				return time.Since(began)
			}
		}
	}
	b.Fatalf("%s still answered by %s 30 s after its node stopped serving", ip, old)
	return 0
}

// BenchmarkSpeaker10k measures one speaker that owns 10,000 VIPs (one node, the CCM
// assigning 10,000 Services): the ARP reply latency seen from the client (reply-us: median
// of 1,000 requests to VIPs spread over the range; reply-p99-us) and the speaker's resident
// memory (rss-mib, VmRSS). Then the pool announces the VIPs over BGP too: from the start of
// the node's speaker pod until the lab's router has a route to every VIP (bgp-routed-s), and
// the resident memory of that speaker, announcing 10,000 VIPs by ARP and BGP (bgp-rss-mib).
func BenchmarkSpeaker10k(b *testing.B) {
	ctx, l, sp := startSpeakers(b, lab.Options{Nodes: 1, NoKubeProxy: true, Router: &lab.RouterOptions{}}, testPools)
	const ns, n = "bulk", 10000
	createNamespace(ctx, b, l, ns)
	createMany(ctx, b, l, ns, n)
	waitAllAssigned(ctx, b, l, ns, n)
	arpc := arpClient(b, l.Clients[0])
	vips := make([]netip.Addr, 0, n)
	for _, got := range allIngress(ctx, b, l) {
		for _, ip := range got {
			vips = append(vips, netip.MustParseAddr(ip))
		}
	}
	// Wait until the last VIP answers: every VIP is announced.
	slices.SortFunc(vips, netip.Addr.Compare)
	waitARP(ctx, b, arpc, vips[len(vips)-1], time.Minute)

	for b.Loop() {
		var samples []time.Duration
		for i := range 1000 {
			ip := vips[(i*7919)%len(vips)]
			began := time.Now()
			if !resolve(arpc, ip, 100*time.Millisecond) {
				b.Fatalf("%s did not answer ARP", ip)
			}
			samples = append(samples, time.Since(began))
		}
		slices.Sort(samples)
		b.ReportMetric(float64(samples[len(samples)/2].Microseconds()), "reply-us")
		b.ReportMetric(float64(samples[len(samples)*99/100].Microseconds()), "reply-p99-us")
		pods := sp.pods(ctx, demo.Speaker, "node-1")
		if len(pods) != 1 {
			b.Fatalf("%d speaker pods on node-1, want 1", len(pods))
		}
		b.ReportMetric(speakerRSS(ctx, b, l, &pods[0]), "rss-mib")
		if dir := os.Getenv("ONPREM_LB_PROFILE_DIR"); dir != "" {
			saveHeapProfile(b, l, l.Nodes[0].Host, filepath.Join(dir, "speaker-10k-heap.pb.gz"))
		}

		routed, pod := advertise10k(ctx, b, l, sp, len(vips))
		b.ReportMetric(routed.Seconds(), "bgp-routed-s")
		b.ReportMetric(speakerRSS(ctx, b, l, pod), "bgp-rss-mib")
	}
}

// speakerRSS returns the resident memory, in MiB, of the speaker of pod.
func speakerRSS(ctx context.Context, b testing.TB, l *lab.Lab, pod *corev1.Pod) float64 {
	rss, err := lab.ProcessRSS(containerPID(ctx, b, l, pod))
	if err != nil {
		b.Fatal(err)
	}
	return float64(rss) / (1 << 20)
}

// saveHeapProfile writes the heap profile of node's speaker (served with
// --profiling on its metrics port) to path, for `go tool pprof`.
func saveHeapProfile(b testing.TB, l *lab.Lab, node *lab.Host, path string) {
	url := "http://" + net.JoinHostPort(node.IPv4.String(), "7472") + "/debug/pprof/heap"
	resp, err := lab.HTTPClient(l.ControlPlane.NS, 30*time.Second).Get(url)
	if err != nil {
		b.Fatalf("heap profile: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("heap profile: GET %s: %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		b.Fatalf("heap profile: %v", err)
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		b.Fatalf("heap profile: %s: %v", path, err)
	}
	if err := f.Close(); err != nil {
		b.Fatalf("heap profile: %v", err)
	}
	b.Logf("speaker heap profile of %s: %s", node.Name, path)
}

// arpClient opens an ARP client on eth0 of host h (the socket stays in h's namespace).
func arpClient(b testing.TB, h *lab.Host) *arp.Client {
	var c *arp.Client
	err := lab.InNetns(h.NS, func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		c, err = arp.Dial(ifi)
		return err
	})
	if err != nil {
		b.Fatalf("ARP client in %s: %v", h.NS, err)
	}
	b.Cleanup(func() { c.Close() })
	return c
}

// resolve sends one ARP request for ip and reports whether a reply came within timeout.
func resolve(c *arp.Client, ip netip.Addr, timeout time.Duration) bool {
	if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return false
	}
	_, err := c.Resolve(ip)
	return err == nil
}

// waitARP waits until ip answers ARP.
func waitARP(ctx context.Context, b testing.TB, c *arp.Client, ip netip.Addr, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for !resolve(c, ip, 10*time.Millisecond) {
		if time.Now().After(deadline) || ctx.Err() != nil {
			b.Fatalf("%s never answered ARP", ip)
		}
	}
}

// arpAfterStatus creates n Services one by one and returns the median time, in ms, from the
// moment a watch shows the IP in the status to the first ARP reply for it.
func arpAfterStatus(ctx context.Context, b testing.TB, l *lab.Lab, c *arp.Client, ns string, n int) float64 {
	var samples []time.Duration
	afterStatus(ctx, b, l, ns, "arp", n, func(ip netip.Addr) {
		began := time.Now()
		waitARP(ctx, b, c, ip, 10*time.Second)
		samples = append(samples, time.Since(began))
	})
	return medianMS(samples)
}

// afterStatus creates n LoadBalancer Services in ns, <name>-0 to <name>-<n-1>, one by one;
// calls reached with the first IP of each the moment a watch shows it in the status; and
// deletes it again.
func afterStatus(ctx context.Context, b testing.TB, l *lab.Lab, ns, name string, n int, reached func(ip netip.Addr)) {
	w, err := l.Client.CoreV1().Services(ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Stop()
	for i := range n {
		name := fmt.Sprintf("%s-%d", name, i)
		create(ctx, b, l, lbService(ns, name))
		var ip netip.Addr
		for !ip.IsValid() {
			select {
			case ev := <-w.ResultChan():
				if svc, ok := ev.Object.(*corev1.Service); ok && ev.Type == watch.Modified && svc.Name == name && len(svc.Status.LoadBalancer.Ingress) > 0 {
					ip = netip.MustParseAddr(svc.Status.LoadBalancer.Ingress[0].IP)
				}
			case <-time.After(10 * time.Second):
				b.Fatalf("Service %s got no IP within 10s", name)
			}
		}
		reached(ip)
		deleteAndWait(ctx, b, l, ns, name)
	}
}

func medianMS(samples []time.Duration) float64 {
	slices.Sort(samples)
	return float64(samples[len(samples)/2].Microseconds()) / 1000
}
