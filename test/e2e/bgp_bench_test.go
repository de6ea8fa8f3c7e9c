package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/onprem-lb/onprem-lb/test/demo"
	"github.com/onprem-lb/onprem-lb/test/lab"
)

// BenchmarkBGP measures BGP mode in the lab against the router (FRR), with the speakers' and
// the router's BFD at 100 ms x 3 (bfd=100ms) and at 300 ms x 3 (bfd=300ms, the outage only).
// Run with -benchtime 1x; each run reports its own figures:
//   - outage-ms: a node dies hard (everything on it frozen, its cable pulled) while a WAN
//     client opens a new connection to a VIP every 10 ms (100 ms timeout): from the kill until
//     the end of the client's last failed request; median of 5 kills, one node after the
//     other. The Service is Local with a pod on every node, so that only the router's route,
//     not kube-proxy's endpoints, decides where a connection goes.
//   - graceful-failed-requests: requests that failed while each node's speaker pod in turn was
//     deleted (SIGTERM: GRACEFUL_SHUTDOWN, then the routes withdrawn) and started again, and
//     during a rolling update of the DaemonSet (target 0)
//   - route-after-status-ms: IP in the Service's status (seen through a watch) -> the router's
//     kernel routes it; ecmp-after-status-ms: -> routes it over all three nodes; medians of 20
//     Services
//   - flows-moved: of 1,000 flows (the client's ports 20000-20999 to the VIP's port 80) that
//     the router sends to the two nodes that stay, how many it sends to the other one once
//     the third node's path is gone (the router's kernel decides: hash-threshold ECMP)
func BenchmarkBGP(b *testing.B) {
	for _, bfd := range []time.Duration{100 * time.Millisecond, 300 * time.Millisecond} {
		b.Run(fmt.Sprintf("bfd=%v", bfd), func(b *testing.B) {
			ctx, l, sp := startSpeakers(b, lab.Options{Router: &lab.RouterOptions{BFDInterval: bfd}}, bgpPoolsWithBFD(bfd))
			r, client := l.Router, l.Router.Clients[0]
			const ns = "bench"
			podsOnEveryNode(ctx, b, l, ns, "web")
			create(ctx, b, l, lbService(ns, "web", localService))
			web := vipPrefixes(waitIngress(ctx, b, l, ns, "web", 1))
			url := vipURL(web[0].Addr().String())
			everyNode := hops(l.Nodes...)[:1]
			waitRouted(ctx, b, r, web, everyNode, time.Minute)
			waitGet(ctx, b, client, url)

			for b.Loop() {
				var outages []time.Duration
				for i := range 5 {
					n := l.Nodes[i%len(l.Nodes)]
					waitRouted(ctx, b, r, web, everyNode, 2*time.Minute)
					if err := r.WaitBFDUp(ctx, n.Addrs()[:1], time.Minute); err != nil {
						b.Fatal(err)
					}
					window := 3*time.Second + 10*bfd
					outage, failed := ecmpOutage(ctx, client.NS, url, window, func() { killNode(ctx, b, l, n) })
					if outage > window-time.Second {
						b.Fatalf("%s killed: requests still failed %v after the kill, near the end of the %v measured", n.Name, outage.Round(time.Millisecond), window)
					}
					b.Logf("%s killed: %d requests failed, the last one ended %v after the kill", n.Name, failed, outage.Round(time.Millisecond))
					outages = append(outages, outage)
					reviveNode(ctx, b, l, n)
				}
				b.ReportMetric(medianMS(outages), "outage-ms")
				if bfd != 100*time.Millisecond {
					continue
				}

				failed := 0
				for _, n := range l.Nodes {
					waitRouted(ctx, b, r, web, everyNode, 2*time.Minute)
					f, _ := lab.RequestsDuring(ctx, client.NS, url, nil, func() {
						sp.stopSpeaker(ctx, n)
						sp.startSpeaker(ctx, n, "Membership converged")
						waitRouted(ctx, b, r, web, everyNode, time.Minute)
					})
					for _, e := range f {
						b.Logf("%s's speaker stopped and started: request failed %s", n.Name, e)
					}
					failed += len(f)
				}
				f, _ := lab.RequestsDuring(ctx, client.NS, url, nil, func() {
					sp.kubectl(ctx, "-n", system, "rollout", "restart", "daemonset/"+demo.Speaker)
					sp.kubectl(ctx, "-n", system, "rollout", "status", "daemonset/"+demo.Speaker, "--timeout=3m")
					waitRouted(ctx, b, r, web, everyNode, time.Minute)
				})
				for _, e := range f {
					b.Logf("rolling update: request failed %s", e)
				}
				b.ReportMetric(float64(failed+len(f)), "graceful-failed-requests")

				first, all := routeAfterStatus(ctx, b, l, ns, 20)
				b.ReportMetric(first, "route-after-status-ms")
				b.ReportMetric(all, "ecmp-after-status-ms")

				b.ReportMetric(float64(flowsMoved(ctx, b, l, web[0].Addr(), l.Nodes[2])), "flows-moved")
			}
		})
	}
}

// ecmpOutage kills a node (kill) while requesting url from the network namespace ns with a new
// connection every 10 ms (100 ms timeout) for window after the kill, and returns how long
// after the kill the last failed request ended (0 if none failed) and how many failed. Through
// an ECMP route only the connections hashed to the dead node fail, until its path is gone.
func ecmpOutage(ctx context.Context, ns, url string, window time.Duration, kill func()) (time.Duration, int) {
	hc := lab.HTTPClient(ns, 100*time.Millisecond)
	began := time.Now()
	kill()
	var last time.Duration
	failed := 0
	for time.Since(began) < window && ctx.Err() == nil {
		resp, err := hc.Get(url)
		if err == nil {
			resp.Body.Close()
		} else {
			failed++
			last = time.Since(began)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return last, failed
}

// routeAfterStatus creates n Services one by one, each in the BGP pool, and returns the
// medians, in ms, from the moment a watch shows the IP in the status until the router's
// kernel routes it (first) and routes it over every node (all).
func routeAfterStatus(ctx context.Context, b testing.TB, l *lab.Lab, ns string, n int) (first, all float64) {
	var firsts, alls []time.Duration
	afterStatus(ctx, b, l, ns, "route", n, func(ip netip.Addr) {
		p := netip.PrefixFrom(ip, ip.BitLen())
		began := time.Now()
		var routed time.Duration
		err := wait.PollUntilContextTimeout(ctx, 2*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
			got, err := l.Router.NextHops(ctx, p)
			if err == nil && len(got) > 0 && routed == 0 {
				routed = time.Since(began)
			}
			return err == nil && len(got) == len(l.Nodes), nil
		})
		if err != nil {
			b.Fatalf("%s not routed over %d nodes 10 s after it was in the status\n%s", p, len(l.Nodes), routeState(ctx, l.Router, []netip.Prefix{p}))
		}
		firsts, alls = append(firsts, routed), append(alls, time.Since(began))
	})
	return medianMS(firsts), medianMS(alls)
}

// flowsMoved asks the router where it sends 1,000 TCP flows from its client to vip (ports
// 20000-20999 to 80) while every node advertises it, and again once node's path is gone
// (node killed), and returns how many of the flows of the other nodes changed node.
func flowsMoved(ctx context.Context, b testing.TB, l *lab.Lab, vip netip.Addr, node *lab.Node) int {
	r := l.Router
	p := netip.PrefixFrom(vip, vip.BitLen())
	waitRouted(ctx, b, r, []netip.Prefix{p}, hops(l.Nodes...)[:1], 2*time.Minute)
	before := flowHops(ctx, b, r, vip)
	killNode(ctx, b, l, node)
	defer reviveNode(ctx, b, l, node)
	var rest []*lab.Node
	for _, n := range l.Nodes {
		if n != node {
			rest = append(rest, n)
		}
	}
	waitRouted(ctx, b, r, []netip.Prefix{p}, hops(rest...)[:1], 30*time.Second)
	after := flowHops(ctx, b, r, vip)
	moved, kept := 0, 0
	for i, hop := range before {
		if hop == node.IPv4 {
			continue
		}
		if after[i] != hop {
			moved++
		} else {
			kept++
		}
	}
	perNode := map[netip.Addr]int{}
	for _, hop := range after {
		perNode[hop]++
	}
	route, _ := r.Exec(ctx, "ip", "route", "show", "exact", p.String())
	nexthops, _ := r.Exec(ctx, "ip", "nexthop", "show")
	b.Logf("of %d flows to %s on the nodes that stayed, %d moved to the other one when %s's path went (%d stayed); flows per next hop now %v; the router's route:\n%s\nits nexthop objects:\n%s",
		moved+kept, vip, moved, node.Name, kept, perNode, route, nexthops)
	return moved
}

// flowHops returns the next hop the router chooses for each of 1,000 TCP flows from its
// first client to vip port 80, from ports 20000-20999 (`ip route get`, one batch).
func flowHops(ctx context.Context, b testing.TB, r *lab.Router, vip netip.Addr) []netip.Addr {
	var batch strings.Builder
	for port := 20000; port < 21000; port++ {
		fmt.Fprintf(&batch, "route get %s from %s iif eth1 ipproto tcp sport %d dport 80\n", vip, r.Clients[0].IPv4, port)
	}
	path := filepath.Join(b.TempDir(), "flows")
	if err := os.WriteFile(path, []byte(batch.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	out, err := r.Exec(ctx, "ip", "-batch", path)
	if err != nil {
		b.Fatalf("ip route get: %v\n%s", err, out)
	}
	var got []netip.Addr
	for line := range strings.Lines(out) {
		_, after, ok := strings.Cut(line, " via ")
		if !ok {
			continue
		}
		via, _, _ := strings.Cut(after, " ")
		hop, err := netip.ParseAddr(via)
		if err != nil {
			b.Fatalf("ip route get: %q: %v", line, err)
		}
		got = append(got, hop)
	}
	if len(got) != 1000 {
		b.Fatalf("ip route get: %d next hops for 1,000 flows:\n%s", len(got), out)
	}
	return got
}

// bulkBGPPools is testPools' bulk pool announced by ARP and BGP to the lab's router, over
// IPv4 only and without BFD: what this measures is the advertisement of 10,000 routes by a
// node whose API server is busy with 10,000 Services, not failure detection.
const bulkBGPPools = `
bgp:
  asn: 64512
  peers:
    - {name: router-v4, address: 198.18.0.254, asn: 64513}
pools:
  - name: bulk
    autoAssign: false
    addresses: [198.18.64.0/18]
    announce: both
`

// advertise10k makes the lab's only node announce its n VIPs over BGP too (bulkBGPPools),
// then restarts its speaker, and returns how long after the start of the new speaker pod the
// router had a route to each of the n VIPs, and that pod.
func advertise10k(ctx context.Context, b testing.TB, l *lab.Lab, sp *onprem, n int) (time.Duration, *corev1.Pod) {
	node := l.Nodes[0]
	wait := func(n int, timeout time.Duration) {
		if err := waitBGPRoutes(ctx, l.Router, n, timeout); err != nil {
			var lines []string
			for line := range strings.Lines(sp.speakerLog(ctx, node)) {
				if strings.Contains(line, "BGP") || strings.Contains(line, "bgp") || strings.Contains(line, "ool file") {
					lines = append(lines, line)
				}
			}
			b.Fatalf("%v\n%s\nthe speaker's log about BGP and the pool file:\n%s", err, routeState(ctx, l.Router, nil), strings.Join(lines[max(0, len(lines)-40):], ""))
		}
	}
	sp.setPools(ctx, bulkBGPPools)
	wait(n, 3*time.Minute) // the kubelet brings the file to the pod
	sp.stopSpeaker(ctx, node)
	if err := waitBGPRoutes(ctx, l.Router, 0, time.Minute); err != nil {
		b.Fatal(err)
	}
	began := time.Now()
	pod := sp.startSpeaker(ctx, node, "Membership converged")
	wait(n, 3*time.Minute)
	return time.Since(began), pod
}

// waitBGPRoutes waits until the router's kernel has exactly n IPv4 routes from BGP.
func waitBGPRoutes(ctx context.Context, r *lab.Router, n int, timeout time.Duration) error {
	got, most := -1, 0
	var last error
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		out, err := r.Exec(ctx, "ip", "-4", "route", "show", "proto", "bgp")
		if err != nil {
			last = err
			return false, nil
		}
		got = len(strings.FieldsFunc(out, func(r rune) bool { return r == '\n' })) // one route a line
		most = max(most, got)
		return got == n, nil
	})
	if err != nil {
		return fmt.Errorf("the router's kernel has %d routes from BGP (at most %d seen; last error %v) after %v, want %d", got, most, last, timeout, n)
	}
	return nil
}
