package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/onprem-lb/onprem-lb/speaker"
	"github.com/onprem-lb/onprem-lb/test/demo"
	"github.com/onprem-lb/onprem-lb/test/lab"
)

// bgpPoolsWithBFD peers every node with the lab's router over IPv4 and IPv6, with BFD at
// interval x 3 (the router's timers must match), and announces the pool "public" over BGP
// only. Its ranges are outside the LAN, so that nothing but the speakers' routes brings their
// traffic to the nodes.
func bgpPoolsWithBFD(interval time.Duration) string {
	return fmt.Sprintf(`
bgp:
  asn: 64512
  peers:
    - name: router-v4
      address: 198.18.0.254
      asn: 64513
      bfd: {transmitInterval: %[1]dms, receiveInterval: %[1]dms, multiplier: 3}
    - name: router-v6
      address: 2001:db8:18::fe
      asn: 64513
      bfd: {transmitInterval: %[1]dms, receiveInterval: %[1]dms, multiplier: 3}
pools:
  - name: public
    addresses: [198.18.3.0/28, 2001:db8:1c::/124]
    announce: bgp
    bgpAdvertisement:
      communities: ["%[2]s"]
`, interval.Milliseconds(), bgpCommunity)
}

const bgpCommunity = "64512:100"

// TestBGP proves BGP mode against the lab's router (FRR): every node peers over both
// families with BFD; a Cluster Service is routed over every node (ECMP), a Local one over the
// nodes of its endpoints only, with the client's address kept; a node that loses its endpoint
// or dies leaves the router within a second, and so does one whose kube-proxy stops; a
// Service coming and going resets no session; and a node getting the exclusion label, or a
// speaker stopping, drains its paths (GRACEFUL_SHUTDOWN) before it withdraws them, without a
// failed request, and so does a rolling update of the DaemonSet; the Service's condition
// counts the nodes and names the peers, with one Advertised event per IP.
func TestBGP(t *testing.T) {
	ctx, l, sp := startSpeakers(t, lab.Options{Router: &lab.RouterOptions{}}, bgpPoolsWithBFD(100*time.Millisecond))
	ctx, cancel := context.WithTimeout(ctx, 6*time.Minute)
	defer cancel()
	r, client := l.Router, l.Router.Clients[0]
	const ns = "bgp"
	podsOnEveryNode(ctx, t, l, ns, "web")
	create(ctx, t, l, lbService(ns, "web", dualStack))
	web := vipPrefixes(waitIngress(ctx, t, l, ns, "web", 2))
	webWatch := watchHops(ctx, r, web)

	t.Run("every node has an IPv4 and an IPv6 session with the router, BFD up at 100 ms x 3", func(t *testing.T) {
		began := time.Now()
		var peers []netip.Addr
		for k, afi := range []string{"ipv4", "ipv6"} {
			want := hops(l.Nodes...)[k]
			peers = append(peers, want...)
			var states map[netip.Addr]string
			var last error
			err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
				states, last = r.FRR.BGPSessions(ctx, afi)
				return last == nil && !slices.ContainsFunc(want, func(a netip.Addr) bool { return states[a] != "Established" }), nil
			})
			if err != nil {
				t.Fatalf("router's %s sessions %v (err %v), want %v Established\n%s", afi, states, last, want, routeState(ctx, r, nil))
			}
		}
		if err := r.WaitBFDUp(ctx, peers, 30*time.Second); err != nil {
			t.Fatalf("%v\n%s", err, routeState(ctx, r, nil))
		}
		t.Logf("figure: %d sessions Established and BFD up with %v (%v after the speakers converged)", len(peers), peers, time.Since(began).Round(time.Millisecond))
	})

	t.Run("a Cluster Service is routed over every node, with the pool's community, and answers WAN clients", func(t *testing.T) {
		at := waitRouted(ctx, t, r, web, hops(l.Nodes...), 30*time.Second)
		defer steady(t, webWatch, hops(l.Nodes...), at)
		for k, p := range web {
			t.Logf("figure: %s routed over %v %v after the Service got its IPs", p, hops(l.Nodes...)[k], at[k].Sub(webWatch.began).Round(time.Millisecond))
			paths := bgpPaths(ctx, t, r, p)
			if len(paths) != len(l.Nodes) {
				t.Errorf("%s: %d paths in the router's BGP table, want %d: %+v", p, len(paths), len(l.Nodes), paths)
			}
			for _, path := range paths {
				if !slices.Contains(path.Communities, bgpCommunity) {
					t.Errorf("%s from %s: communities %v, want %s", p, path.Peer, path.Communities, bgpCommunity)
				}
			}
			url := servedEverywhere(ctx, t, client, p, l.Nodes...)
			entered := map[string]int{}
			for i := range 30 {
				reply, err := lab.GetHTTP(ctx, client.NS, url)
				if err != nil {
					t.Fatalf("GET %d of %s from %s: %v", i, url, client.Name, err)
				}
				entered[ingressNode(l, reply.ClientIP())]++
			}
			t.Logf("figure: 30 GETs of %s from %s through the router all answered; connections per node they entered by: %v", url, client.Name, entered)
			// 30 connections miss one of 3 nodes with probability 3 x (2/3)^30, 1.6e-5.
			if len(entered) != len(l.Nodes) {
				t.Errorf("%s: connections per node they entered by %v, want them spread over every node by the ECMP route", url, entered)
			}
		}
	})

	first := addPod(ctx, t, l, ns, "loc-node-1", "node-1", "loc")
	create(ctx, t, l, lbService(ns, "loc", dualStack, localService))
	loc := vipPrefixes(waitIngress(ctx, t, l, ns, "loc", 2))
	locWatch := watchHops(ctx, r, loc)

	t.Run("the condition counts the advertising nodes and names the peers; one Advertised event per IP, not per node", func(t *testing.T) {
		waitRouted(ctx, t, r, web, hops(l.Nodes...), time.Minute)
		waitAdvertised(ctx, t, l, ns, "web", web, 30*time.Second, l.Nodes...)
		var advertised []string
		for _, line := range strings.Split(events(ctx, l, ns, "web"), "\n") {
			if strings.HasPrefix(line, "Normal Advertised: ") {
				advertised = append(advertised, line)
			}
		}
		// Each IP has been advertised since its creation: one event each.
		if len(advertised) != len(web) {
			t.Errorf("%d Advertised events for %d IPs, want one each:\n%s", len(advertised), len(web), strings.Join(advertised, "\n"))
		}
	})

	t.Run("a Local Service is routed over the node of its pod only, and the pod sees the WAN client's address", func(t *testing.T) {
		at := waitRouted(ctx, t, r, loc, hops(l.Nodes[0]), 30*time.Second)
		defer steady(t, locWatch, hops(l.Nodes[0]), at)
		for k, p := range loc {
			if paths := bgpPaths(ctx, t, r, p); len(paths) != 1 || paths[0].Peer != l.Nodes[0].Addrs()[k] {
				t.Errorf("%s: paths %+v, want one from %s", p, paths, l.Nodes[0].Addrs()[k])
			}
			keepsClient(ctx, t, client, servedEverywhere(ctx, t, client, p, l.Nodes[0]), first, client.Addrs()[k])
		}
	})

	t.Run("a node whose local endpoint goes away leaves the router within a second of the EndpointSlice change", func(t *testing.T) {
		added := watchHops(ctx, r, loc)
		addPod(ctx, t, l, ns, "loc-node-2", "node-2", "loc")
		// A node that gets a local endpoint must not flap either; and the route must be
		// steady before the measure.
		steady(t, added, hops(l.Nodes[0], l.Nodes[1]), waitRouted(ctx, t, r, loc, hops(l.Nodes[0], l.Nodes[1]), 30*time.Second))
		changed := endpointNotReady(ctx, t, l, ns, "loc", first.Name)
		deleted := time.Now()
		deletePod(ctx, t, l, first)
		at := waitRouted(ctx, t, r, loc, hops(l.Nodes[1]), 10*time.Second)
		var sliceAt time.Time
		select {
		case sliceAt = <-changed:
		case <-time.After(10 * time.Second):
			t.Fatalf("the EndpointSlices of %s/loc never showed %s not ready", ns, first.Name)
		}
		for k, p := range loc {
			took := at[k].Sub(sliceAt)
			t.Logf("figure: %s lost %s %v after the EndpointSlice change (%v after the pod's deletion)", p, l.Nodes[0].Name, took.Round(time.Millisecond), at[k].Sub(deleted).Round(time.Millisecond))
			if took > 5*time.Second {
				t.Errorf("%s: %s left the router %v after the EndpointSlice change, want about a second (at most 5 s)", p, l.Nodes[0].Name, took.Round(time.Millisecond))
			}
		}
	})

	t.Run("a node that dies leaves the router within BFD's detection time", func(t *testing.T) {
		n := l.Nodes[2]
		killNode(ctx, t, l, n)
		killed := time.Now()
		at, err := routedWithin(ctx, r, web, hops(l.Nodes[0], l.Nodes[1]), 10*time.Second)
		reviveNode(ctx, t, l, n)
		if err != nil {
			t.Fatalf("%v\n%s", err, routeState(ctx, r, nil))
		}
		for k, p := range web {
			took := at[k].Sub(killed)
			t.Logf("figure: %s lost the dead %s %v after it died (BFD %v x %d)", p, n.Name, took.Round(time.Millisecond), r.Options.BFDInterval, r.Options.BFDMultiplier)
			if took > 3*time.Second {
				t.Errorf("%s: the dead %s left the router after %v, want at most 3 s (BFD)", p, n.Name, took.Round(time.Millisecond))
			}
		}
		revived := time.Now()
		at = waitRouted(ctx, t, r, web, hops(l.Nodes...), 2*time.Minute)
		if err := r.WaitBFDUp(ctx, n.Addrs(), 30*time.Second); err != nil {
			t.Fatal(err)
		}
		t.Logf("figure: %s routed over %s again %v after it came back", web[0], n.Name, at[0].Sub(revived).Round(time.Millisecond))
	})

	t.Run("kube-proxy stopped on a node withdraws its Cluster routes; started again, they come back", func(t *testing.T) {
		n := l.Nodes[0]
		waitRouted(ctx, t, r, web, hops(l.Nodes...), time.Minute)
		n.KubeProxy.Kill()
		stopped := time.Now()
		at, err := routedWithin(ctx, r, web, hops(l.Nodes[1], l.Nodes[2]), 10*time.Second)
		if err == nil {
			said := waitAdvertised(ctx, t, l, ns, "web", web, 10*time.Second, l.Nodes[1], l.Nodes[2])
			conditionFollowed(t, "the route lost "+n.Name, slices.MaxFunc(at, time.Time.Compare), said)
		}
		if startErr := l.StartKubeProxy(ctx, n); startErr != nil {
			t.Fatal(startErr)
		}
		if err != nil {
			t.Fatalf("%v\n%s", err, routeState(ctx, r, web))
		}
		for k, p := range web {
			took := at[k].Sub(stopped)
			t.Logf("figure: %s lost %s %v after its kube-proxy stopped", p, n.Name, took.Round(time.Millisecond))
			if took > 5*time.Second {
				t.Errorf("%s: %s left the router %v after its kube-proxy stopped, want about a second (at most 5 s)", p, n.Name, took.Round(time.Millisecond))
			}
		}
		restarted := time.Now()
		at = waitRouted(ctx, t, r, web, hops(l.Nodes...), time.Minute)
		t.Logf("figure: %s routed over %s again %v after its kube-proxy restarted", web[0], n.Name, at[0].Sub(restarted).Round(time.Millisecond))
	})

	t.Run("a Service created and deleted resets no session", func(t *testing.T) {
		before := establishedSince(t, l)
		create(ctx, t, l, lbService(ns, "extra"))
		extra := vipPrefixes(waitIngress(ctx, t, l, ns, "extra", 1))
		waitRouted(ctx, t, r, extra, hops(l.Nodes...)[:1], time.Minute)
		deleteAndWait(ctx, t, l, ns, "extra")
		waitRouted(ctx, t, r, extra, [][]netip.Addr{nil}, time.Minute)
		if diff := cmp.Diff(before, establishedSince(t, l)); diff != "" {
			t.Errorf("sessions (node peer: state since) before and after a Service came and went (-before +after):\n%s", diff)
		}
	})

	t.Run("the exclusion label drains a node's paths with GRACEFUL_SHUTDOWN first, and no WAN request fails; removed, they come back", func(t *testing.T) {
		n := l.Nodes[0]
		label := func(change string) {
			t.Helper()
			if out, err := l.Kubectl(ctx, "label", "node", n.Name, corev1.LabelNodeExcludeBalancers+change, "--overwrite"); err != nil {
				t.Fatalf("label node: %v\n%s", err, out)
			}
		}
		waitRouted(ctx, t, r, web, hops(l.Nodes...), 30*time.Second)
		drained(ctx, t, r, client, web, n, hops(l.Nodes[1], l.Nodes[2]), "the exclusion label was set", func() { label("=true") })
		label("-")
		removed := time.Now()
		at := waitRouted(ctx, t, r, web, hops(l.Nodes...), time.Minute)
		t.Logf("figure: %s routed over %s again %v after the exclusion label was removed", web[0], n.Name, at[0].Sub(removed).Round(time.Millisecond))
	})

	t.Run("a speaker that stops drains its paths with GRACEFUL_SHUTDOWN first, and no WAN request fails", func(t *testing.T) {
		n := l.Nodes[1]
		waitRouted(ctx, t, r, web, hops(l.Nodes...), 30*time.Second)
		var gone time.Time
		began := drained(ctx, t, r, client, web, n, hops(l.Nodes[0], l.Nodes[2]), "its speaker pod was deleted", func() {
			sp.stopSpeaker(ctx, n)
			gone = time.Now()
		})
		t.Logf("figure: %s's speaker pod gone %v after its deletion", n.Name, gone.Sub(began).Round(time.Millisecond))
	})

	t.Run("a rolling update of the speaker DaemonSet loses no WAN request", func(t *testing.T) {
		sp.startSpeaker(ctx, l.Nodes[1], "Membership converged") // stopped above
		waitRouted(ctx, t, r, web, hops(l.Nodes...), time.Minute)
		waitAdvertised(ctx, t, l, ns, "web", web, 30*time.Second, l.Nodes...)
		began := time.Now()
		var routed []time.Time
		var changes []conditionChange
		failures, total := lab.RequestsDuring(ctx, client.NS, vipURL(web[0].Addr().String()), nil, func() {
			changes = conditionsDuring(ctx, l, ns, "web", func() {
				sp.kubectl(ctx, "-n", system, "rollout", "restart", "daemonset/"+demo.Speaker)
				sp.kubectl(ctx, "-n", system, "rollout", "status", "daemonset/"+demo.Speaker, "--timeout=3m")
				routed = waitRouted(ctx, t, r, web, hops(l.Nodes...), time.Minute)
			})
		})
		t.Logf("figure: rolling update of %d speakers with BGP took %v; %d GETs of %s meanwhile, %d failed",
			len(l.Nodes), time.Since(began).Round(time.Millisecond), total, web[0].Addr(), len(failures))
		if len(failures) > 0 || total == 0 {
			t.Errorf("%d of %d GETs failed during the rolling update: %v\n%s", len(failures), total, failures, routeState(ctx, r, web))
		}
		// At least two nodes advertise web's IPs at any time: its conditions say so throughout,
		// naming the nodes that do, and all three again once the update is over.
		history := formatChanges(changes)
		t.Logf("figure: web's conditions during the rolling update:\n%s", history)
		for _, c := range changes {
			if !strings.HasPrefix(c.value, "True Advertised: ") {
				t.Errorf("during the rolling update, web's condition %s was %q, want True Advertised throughout:\n%s", c.typ, c.value, history)
				break
			}
		}
		said := waitAdvertised(ctx, t, l, ns, "web", web, 30*time.Second, l.Nodes...)
		conditionFollowed(t, "the rolling update", slices.MaxFunc(routed, time.Time.Compare), said)
	})

}

// drained does what makes node n drain its paths (change, described by what) while a WAN
// client sends GETs to the first of the prefixes, and checks that the router saw
// GRACEFUL_SHUTDOWN on n's path before the path was withdrawn, moved the traffic off n
// before that, routes the prefixes over rest afterwards, and that no GET failed until the
// path was gone. It returns when change began.
func drained(ctx context.Context, t *testing.T, r *lab.Router, client *lab.Host, prefixes []netip.Prefix, n *lab.Node, rest [][]netip.Addr, what string, change func()) time.Time {
	t.Helper()
	watch := watchPath(ctx, r, prefixes[0], n.IPv4)
	var began, withdrawn time.Time
	var routeErr error
	failures, total := lab.RequestsDuring(ctx, client.NS, vipURL(prefixes[0].Addr().String()), nil, func() {
		began = time.Now()
		change()
		_, routeErr = routedWithin(ctx, r, prefixes, rest, 10*time.Second)
		// The path itself goes at the end of the drain: the GETs go on until then.
		wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
			paths, err := r.FRR.BGPPaths(ctx, prefixes[0])
			if err != nil || slices.ContainsFunc(paths, func(p lab.BGPPath) bool { return p.Peer == n.IPv4 }) {
				return false, nil
			}
			withdrawn = time.Now()
			return true, nil
		})
	})
	seen := watch()
	if seen.withdrawn.IsZero() {
		seen.withdrawn = withdrawn // seen by the wait above between two polls of the watch
	}
	if routeErr != nil {
		t.Fatalf("%v\n%s", routeErr, routeState(ctx, r, prefixes))
	}
	since := func(at time.Time) string {
		if at.IsZero() {
			return "never"
		}
		return at.Sub(began).Round(time.Millisecond).String()
	}
	t.Logf("figure: after %s: GRACEFUL_SHUTDOWN on %s's path of %s after %s (local preference %d), out of the ECMP route after %s, path withdrawn after %s",
		what, n.Name, prefixes[0], since(seen.gshut), seen.gshutLocalPref, since(seen.left), since(seen.withdrawn))
	t.Logf("figure: %d GETs of %s from %s meanwhile, %d failed", total, prefixes[0].Addr(), client.Name, len(failures))
	switch {
	case seen.gshut.IsZero():
		t.Errorf("the router never saw GRACEFUL_SHUTDOWN on %s's path of %s", n.Name, prefixes[0])
	case seen.withdrawn.IsZero():
		t.Errorf("%s's path of %s never withdrawn", n.Name, prefixes[0])
	case !seen.gshut.Before(seen.withdrawn):
		t.Errorf("GRACEFUL_SHUTDOWN seen after %s, the path withdrawn after %s: want the drain first", since(seen.gshut), since(seen.withdrawn))
	case seen.left.IsZero() || !seen.left.Before(seen.withdrawn):
		t.Errorf("%s left the ECMP route after %s, its path was withdrawn after %s: want the router to move traffic away during the drain", n.Name, since(seen.left), since(seen.withdrawn))
	}
	if len(failures) > 0 {
		t.Errorf("%d of %d GETs failed:\n%s", len(failures), total, strings.Join(failures, "\n"))
	}
	return began
}

// establishedSince returns, for each node and peer, the state of the session and since when
// it is established, from each speaker's /announcements/bgp.
func establishedSince(t testing.TB, l *lab.Lab) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, n := range l.Nodes {
		resp, err := lab.HTTPClient(l.ControlPlane.NS, time.Second).Get("http://" + net.JoinHostPort(n.IPv4.String(), "7472") + "/announcements/bgp")
		if err != nil {
			t.Fatal(err)
		}
		var v struct {
			Sessions []struct {
				Peer, State   string
				EstablishedAt string `json:"establishedAt"`
			}
		}
		err = json.NewDecoder(resp.Body).Decode(&v)
		resp.Body.Close()
		if err != nil || len(v.Sessions) != 2 {
			t.Fatalf("%s's /announcements/bgp: %+v (err %v), want its 2 sessions", n.Name, v, err)
		}
		for _, s := range v.Sessions {
			out[n.Name+" "+s.Peer] = s.State + " since " + s.EstablishedAt
		}
	}
	return out
}

// ingressNode names the node by which a connection to a Cluster Service entered, from the
// source address its backend saw: the nodes masquerade such traffic, to their own address
// for a pod on another node, to their address on the pod's network for their own pods.
func ingressNode(l *lab.Lab, source string) string {
	a, err := netip.ParseAddr(source)
	if err != nil {
		return source
	}
	for _, n := range l.Nodes {
		if slices.Contains(n.Addrs(), a) || slices.ContainsFunc(n.PodCIDRs, func(p netip.Prefix) bool { return p.Contains(a) }) {
			return n.Name
		}
	}
	return source
}

// vipPrefixes returns the host prefixes (/32, /128) of a Service's ingress IPs, IPv4 first.
func vipPrefixes(ingress []corev1.LoadBalancerIngress) []netip.Prefix {
	var ps []netip.Prefix
	for _, in := range ingress {
		a := netip.MustParseAddr(in.IP)
		ps = append(ps, netip.PrefixFrom(a, a.BitLen()))
	}
	slices.SortFunc(ps, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	return ps
}

// hops returns the router's next hops through nodes, per family: their IPv4 addresses, then
// their IPv6 ones, each sorted as Router.NextHops sorts them.
func hops(nodes ...*lab.Node) [][]netip.Addr {
	out := make([][]netip.Addr, 2)
	for _, n := range nodes {
		for k, a := range n.Addrs() {
			out[k] = append(out[k], a)
		}
	}
	for _, h := range out {
		slices.SortFunc(h, netip.Addr.Compare)
	}
	return out
}

// servedEverywhere waits until kube-proxy has programmed prefix's VIP on every node of nodes
// and a WAN client gets an answer from it (routed by now), and returns its URL. The speakers
// advertise a VIP without waiting for kube-proxy: until it has, a node that gets the VIP's
// packets has no route for them (a lab node has no default route) and answers ICMP network
// unreachable. The figures logged say for how long.
func servedEverywhere(ctx context.Context, t testing.TB, client *lab.Host, prefix netip.Prefix, nodes ...*lab.Node) string {
	t.Helper()
	url := vipURL(prefix.Addr().String())
	began := time.Now()
	save := "iptables-save"
	if prefix.Addr().Is6() {
		save = "ip6tables-save"
	}
	for _, n := range nodes {
		var out string
		err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			var err error
			out, err = n.Exec(ctx, save, "-t", "nat")
			return err == nil && strings.Contains(out, "-d "+prefix.String()), nil
		})
		if err != nil {
			t.Fatalf("%s: kube-proxy never programmed %s: %v\n%s", n.Name, prefix, err, out)
		}
	}
	programmed := time.Since(began)
	waitGet(ctx, t, client, url)
	t.Logf("figure: %s programmed by kube-proxy on %d nodes %v after it was routed; answered the WAN client after %v", prefix.Addr(), len(nodes), programmed.Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
	return url
}

// hopsChange is when the router's next hops for a prefix changed, and to what.
type hopsChange struct {
	at   time.Time
	hops []netip.Addr
}

// hopsWatch records the router's next hops for some prefixes, polled every 10 ms, from
// began until stop.
type hopsWatch struct {
	prefixes []netip.Prefix
	began    time.Time
	stop     func() [][]hopsChange // each prefix's changes, the first what it saw first
}

func watchHops(ctx context.Context, r *lab.Router, prefixes []netip.Prefix) *hopsWatch {
	ctx, cancel := context.WithCancel(ctx)
	history := make([][]hopsChange, len(prefixes))
	var wg sync.WaitGroup
	for k, p := range prefixes {
		wg.Go(func() {
			wait.PollUntilContextCancel(ctx, 10*time.Millisecond, true, func(ctx context.Context) (bool, error) {
				hops, err := r.NextHops(ctx, p)
				if n := len(history[k]); err == nil && (n == 0 || !slices.Equal(history[k][n-1].hops, hops)) {
					history[k] = append(history[k], hopsChange{time.Now(), hops})
				}
				return false, nil
			})
		})
	}
	return &hopsWatch{prefixes, time.Now(), func() [][]hopsChange {
		cancel()
		wg.Wait()
		return history
	}}
}

// steady checks that the router's route to each prefix w watches reached want[k] and then
// stayed, watching it for 4 s after at[k], when it was seen to reach it: longer than the
// speakers' hold-down, so that a withdrawal and the advertisement after it are both seen.
// w should start with the change (an IP assigned, an endpoint added).
func steady(t testing.TB, w *hopsWatch, want [][]netip.Addr, at []time.Time) {
	t.Helper()
	time.Sleep(time.Until(slices.MaxFunc(at, time.Time.Compare).Add(4 * time.Second)))
	for k, changes := range w.stop() {
		var lines []string
		for _, c := range changes {
			lines = append(lines, fmt.Sprintf("after %v: %v", c.at.Sub(w.began).Round(time.Millisecond), c.hops))
		}
		if i := slices.IndexFunc(changes, func(c hopsChange) bool { return slices.Equal(c.hops, want[k]) }); i < 0 || i < len(changes)-1 {
			t.Errorf("the router's route to %s did not stay at %v once there; since the change:\n%s", w.prefixes[k], want[k], strings.Join(lines, "\n"))
		} else {
			t.Logf("figure: the router's route to %s since the change: %s", w.prefixes[k], strings.Join(lines, "; "))
		}
	}
}

// routedWithin waits, for every prefix at once, until the router's kernel routes prefixes[k]
// via exactly want[k], and returns when each did, or an error after timeout.
func routedWithin(ctx context.Context, r *lab.Router, prefixes []netip.Prefix, want [][]netip.Addr, timeout time.Duration) ([]time.Time, error) {
	at := make([]time.Time, len(prefixes))
	errs := make([]error, len(prefixes))
	var wg sync.WaitGroup
	for k := range prefixes {
		wg.Go(func() {
			_, errs[k] = r.WaitNextHops(ctx, prefixes[k], want[k], timeout)
			at[k] = time.Now()
		})
	}
	wg.Wait()
	return at, errors.Join(errs...)
}

// waitRouted is routedWithin failing t with the router's state.
func waitRouted(ctx context.Context, t testing.TB, r *lab.Router, prefixes []netip.Prefix, want [][]netip.Addr, timeout time.Duration) []time.Time {
	t.Helper()
	at, err := routedWithin(ctx, r, prefixes, want, timeout)
	if err != nil {
		t.Fatalf("%v\n%s", err, routeState(ctx, r, prefixes))
	}
	return at
}

// keepsClient checks that 10 GETs of url from client all reach pod, which sees the client's
// address from.
func keepsClient(ctx context.Context, t testing.TB, client *lab.Host, url string, pod *corev1.Pod, from netip.Addr) {
	t.Helper()
	for range 10 {
		reply, err := lab.GetHTTP(ctx, client.NS, url)
		if err != nil {
			t.Fatal(err)
		}
		if reply.Pod != podKey(pod) || reply.ClientIP() != from.String() {
			t.Fatalf("%s: answered by %s seeing %s, want %s seeing the client %s", url, reply.Pod, reply.ClientIP(), podKey(pod), from)
		}
	}
}

// advertisedBy is the condition of the IP of p once nodes advertise it over BGP to the lab's
// router (the Service's condition, as speakerConditions reports it).
func advertisedBy(p netip.Prefix, nodes ...*lab.Node) string {
	names := make([]string, len(nodes))
	for i, n := range nodes {
		names[i] = n.Name
	}
	unit := "nodes"
	if len(nodes) == 1 {
		unit = "node"
	}
	return fmt.Sprintf("True Advertised: %s is advertised over BGP by %d %s (%s) to peers router-v4, router-v6",
		p.Addr(), len(nodes), unit, strings.Join(names, ", "))
}

// waitAdvertised waits until the Service's conditions say that nodes advertise each of
// prefixes, and returns when they did; after timeout it fails t (and lets it go on).
func waitAdvertised(ctx context.Context, t testing.TB, l *lab.Lab, ns, name string, prefixes []netip.Prefix, timeout time.Duration, nodes ...*lab.Node) time.Time {
	t.Helper()
	var got map[string]string
	err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		var err error
		if got, err = speakerConditions(ctx, l, ns, name); err != nil {
			return false, nil
		}
		return !slices.ContainsFunc(prefixes, func(p netip.Prefix) bool {
			return got[speaker.ConditionType(p.Addr())] != advertisedBy(p, nodes...)
		}), nil
	})
	if err != nil {
		var want []string
		for _, p := range prefixes {
			want = append(want, advertisedBy(p, nodes...))
		}
		t.Errorf("Service %s/%s: conditions %q (%v, waited up to %v), want %q\nevents:\n%s", ns, name, got, err, timeout, want, events(ctx, l, ns, name))
	}
	return time.Now()
}

// conditionFollowed checks that a Service's condition said the truth (at said) within a
// second of when it became true (at truth, after what).
func conditionFollowed(t testing.TB, what string, truth, said time.Time) {
	t.Helper()
	took := said.Sub(truth).Round(time.Millisecond)
	t.Logf("figure: the condition followed %s %v after the router did", what, took)
	if took > time.Second {
		t.Errorf("the condition followed %s %v after the router did, want at most a second", what, took)
	}
}

// routeState is what the router says of its sessions and of prefixes.
func routeState(ctx context.Context, r *lab.Router, prefixes []netip.Prefix) string {
	cmds := []string{"show bgp summary", "show bfd peers brief"}
	for _, p := range prefixes {
		afi := "ipv4"
		if p.Addr().Is6() {
			afi = "ipv6"
		}
		cmds = append(cmds, fmt.Sprintf("show bgp %s unicast %s", afi, p), fmt.Sprintf("show %s route %s", strings.TrimSuffix(afi, "v4"), p))
	}
	out, err := r.FRR.Vtysh(ctx, cmds...)
	if err != nil {
		return fmt.Sprintf("router: %v\n%s", err, out)
	}
	return out
}

// bgpPaths returns the paths of prefix in the router's BGP table.
func bgpPaths(ctx context.Context, t testing.TB, r *lab.Router, prefix netip.Prefix) []lab.BGPPath {
	t.Helper()
	paths, err := r.FRR.BGPPaths(ctx, prefix)
	if err != nil {
		t.Fatal(err)
	}
	return paths
}

// endpointNotReady watches the EndpointSlices of Service ns/svc and sends on the returned
// channel the time one first shows pod not ready or without it.
func endpointNotReady(ctx context.Context, t testing.TB, l *lab.Lab, ns, svc, pod string) <-chan time.Time {
	t.Helper()
	w, err := l.Client.DiscoveryV1().EndpointSlices(ns).Watch(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc})
	if err != nil {
		t.Fatal(err)
	}
	changed := make(chan time.Time, 1)
	go func() {
		defer w.Stop()
		for ev := range w.ResultChan() {
			s, ok := ev.Object.(*discoveryv1.EndpointSlice)
			if !ok {
				continue
			}
			ready := slices.ContainsFunc(s.Endpoints, func(e discoveryv1.Endpoint) bool {
				return e.TargetRef != nil && e.TargetRef.Name == pod && (e.Conditions.Ready == nil || *e.Conditions.Ready)
			})
			if !ready {
				changed <- time.Now()
				return
			}
		}
	}()
	return changed
}

// pathSeen is when the router first saw a node's path of a prefix carry GRACEFUL_SHUTDOWN
// (and with which local preference), leave the kernel's ECMP route, and be withdrawn.
type pathSeen struct {
	gshut, left, withdrawn time.Time
	gshutLocalPref         int
}

// watchPath polls the router every 20 ms for the path of prefix from peer until the
// returned function is called, which returns what it saw.
func watchPath(ctx context.Context, r *lab.Router, prefix netip.Prefix, peer netip.Addr) func() pathSeen {
	ctx, cancel := context.WithCancel(ctx)
	var seen pathSeen
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for ctx.Err() == nil {
			now := time.Now()
			if paths, err := r.FRR.BGPPaths(ctx, prefix); err == nil {
				i := slices.IndexFunc(paths, func(p lab.BGPPath) bool { return p.Peer == peer })
				switch {
				case i < 0 && seen.withdrawn.IsZero():
					seen.withdrawn = now
				case i >= 0 && paths[i].GracefulShutdown() && seen.gshut.IsZero():
					seen.gshut, seen.gshutLocalPref = now, paths[i].LocalPref
				}
			}
			if nh, err := r.NextHops(ctx, prefix); err == nil && !slices.Contains(nh, peer) && seen.left.IsZero() {
				seen.left = now
			}
			select {
			case <-ctx.Done():
			case <-tick.C:
			}
		}
	}()
	return func() pathSeen {
		cancel()
		<-done
		return seen
	}
}

// TestBGPIPTablesDataplane proves BGP mode with dataplane iptables and no kube-proxy: the
// speakers start while the router refuses their sessions, and advertise once it accepts them;
// the speakers forward what the routes bring, a Cluster Service's connections masqueraded by
// the node they entered, a Local one's only through its pod's node, keeping the WAN client's
// address.
func TestBGPIPTablesDataplane(t *testing.T) {
	ctx, l, archives := startLab(t, lab.Options{NoKubeProxy: true, Router: &lab.RouterOptions{}})
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	r, client := l.Router, l.Router.Clients[0]
	// The router's bgpd is as good as down: connections to it are reset.
	refuse := []string{"INPUT", "-p", "tcp", "--dport", "179", "-j", "REJECT", "--reject-with", "tcp-reset"}
	for _, cmd := range []string{"iptables", "ip6tables"} {
		if out, err := r.Exec(ctx, append([]string{cmd, "-I"}, refuse...)...); err != nil {
			t.Fatalf("%s: %v\n%s", cmd, err, out)
		}
	}
	sp := install(ctx, t, l, archives, bgpPoolsWithBFD(100*time.Millisecond)+"dataplane: iptables\n")
	sp.waitLeader(ctx, "")
	sp.startSpeakers(ctx)
	const ns = "bgp-iptables"
	podsOnEveryNode(ctx, t, l, ns, "web")
	create(ctx, t, l, lbService(ns, "web", dualStack))
	web := vipPrefixes(waitIngress(ctx, t, l, ns, "web", 2))

	t.Run("a router that refuses the sessions when the speakers start gets the routes once it accepts them", func(t *testing.T) {
		for session, state := range establishedSince(t, l) {
			if strings.HasPrefix(state, "established") {
				t.Errorf("%s: %s while the router refuses every session", session, state)
			}
		}
		if got, err := r.NextHops(ctx, web[0]); err != nil || len(got) > 0 {
			t.Errorf("the router routes %s over %v (err %v) while it refuses every session", web[0], got, err)
		}
		for _, cmd := range []string{"iptables", "ip6tables"} {
			if out, err := r.Exec(ctx, append([]string{cmd, "-D"}, refuse...)...); err != nil {
				t.Fatalf("%s: %v\n%s", cmd, err, out)
			}
		}
		accepted := time.Now()
		at := waitRouted(ctx, t, r, web, hops(l.Nodes...), time.Minute)
		for k, p := range web {
			t.Logf("figure: %s routed over every node %v after the router accepted the sessions", p, at[k].Sub(accepted).Round(time.Millisecond))
		}
	})

	t.Run("a Cluster Service: every node forwards, masquerading, what the router sends it", func(t *testing.T) {
		for _, p := range web {
			url := vipURL(p.Addr().String())
			waitGet(ctx, t, client, url)
			entered := map[string]int{}
			for i := range 30 {
				reply, err := lab.GetHTTP(ctx, client.NS, url)
				if err != nil {
					t.Fatalf("GET %d of %s: %v", i, url, err)
				}
				entered[ingressNode(l, reply.ClientIP())]++
			}
			t.Logf("figure: 30 GETs of %s from %s, connections per node they entered by: %v", url, client.Name, entered)
			// 30 connections miss one of 3 nodes with probability 3 x (2/3)^30, 1.6e-5.
			if len(entered) != len(l.Nodes) {
				t.Errorf("%s: connections per node they entered by %v, want every node, each masquerading", url, entered)
			}
		}
	})

	t.Run("a Local Service: routed over its pod's node only, which keeps the WAN client's address", func(t *testing.T) {
		pod := addPod(ctx, t, l, ns, "loc-node-2", "node-2", "loc")
		create(ctx, t, l, lbService(ns, "loc", dualStack, localService))
		loc := vipPrefixes(waitIngress(ctx, t, l, ns, "loc", 2))
		waitRouted(ctx, t, r, loc, hops(l.Nodes[1]), 30*time.Second)
		for k, p := range loc {
			url := vipURL(p.Addr().String())
			waitGet(ctx, t, client, url)
			keepsClient(ctx, t, client, url, pod, client.Addrs()[k])
		}
	})
}
