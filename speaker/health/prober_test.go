package health

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/testutil"
	"k8s.io/klog/v2"
	"k8s.io/klog/v2/ktesting"
)

// target is a real HTTP server on 127.0.0.1 answering a settable status.
type target struct {
	srv    *httptest.Server
	status atomic.Int32
	hits   atomic.Int32
}

func newTarget(t *testing.T, status int) *target {
	t.Helper()
	tg := &target{}
	tg.status.Store(int32(status))
	tg.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		tg.hits.Add(1)
		w.WriteHeader(int(tg.status.Load()))
	}))
	t.Cleanup(tg.srv.Close)
	return tg
}

func (tg *target) addr() string { return tg.srv.Listener.Addr().String() }

// refusedAddr returns a 127.0.0.1 address where nothing listens.
func refusedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// blackhole returns a 127.0.0.1 address that accepts connections and never
// answers: probes of it time out.
func blackhole(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return ln.Addr().String()
}

// lan routes the lab addresses the prober dials ("198.18.0.1:10256") to
// real 127.0.0.1 servers; an address without a route refuses.
type lan struct {
	refused string
	mu      sync.Mutex
	routes  map[string]string
}

func newLAN(t *testing.T) *lan {
	return &lan{refused: refusedAddr(t), routes: map[string]string{}}
}

func (l *lan) route(from string, to string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if to == "" {
		delete(l.routes, from)
		return
	}
	l.routes[from] = to
}

// transport dials through the routes; no keep-alive, so that a route change
// applies to the next probe.
func (l *lan) transport() *http.Transport {
	return &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			l.mu.Lock()
			to, ok := l.routes[addr]
			l.mu.Unlock()
			if !ok {
				to = l.refused
			}
			var d net.Dialer
			return d.DialContext(ctx, network, to)
		},
	}
}

func bufferedLogger(t *testing.T) klog.Logger {
	return ktesting.NewLogger(t, ktesting.NewConfig(ktesting.BufferLogs(true), ktesting.Verbosity(2)))
}

func countLogs(logger klog.Logger, msg string) int {
	n := 0
	for _, e := range logger.GetSink().(ktesting.Underlier).GetBuffer().Data() {
		if e.Message == msg {
			n++
		}
	}
	return n
}

const noEndpointMsg = "No service proxy health endpoint on node; relying on EndpointSlices"

// TestProberRounds drives probe rounds one at a time against real HTTP
// servers and checks the verdicts, OnChange and the logs after each.
func TestProberRounds(t *testing.T) {
	var (
		web = ServiceKey{Namespace: "shop", Name: "web"}
		api = ServiceKey{Namespace: "shop", Name: "api"}
		// Node a: kube-proxy healthz, web's and api's HCNPs.
		// Node b: no healthz at first (refused), comes later.
		// Node c: answers nothing (times out); web's HCNP there is never probed.
		addrA = netip.MustParseAddr("198.18.0.1")
		addrB = netip.MustParseAddr("198.18.0.2")
		addrC = netip.MustParseAddr("198.18.0.3")
	)
	const proxyPort, webPort, apiPort = 10256, 31000, 31001
	at := func(a netip.Addr, port int) string { return net.JoinHostPort(a.String(), strconv.Itoa(port)) }

	net := newLAN(t)
	proxyA := newTarget(t, http.StatusOK)
	webA := newTarget(t, http.StatusOK)
	apiA := newTarget(t, http.StatusOK)
	proxyB := newTarget(t, http.StatusOK)
	net.route(at(addrA, proxyPort), proxyA.addr())
	net.route(at(addrA, webPort), webA.addr())
	net.route(at(addrA, apiPort), apiA.addr())
	net.route(at(addrC, proxyPort), blackhole(t))
	webC := newTarget(t, http.StatusOK)
	net.route(at(addrC, webPort), webC.addr())

	var changes atomic.Int32
	logger := bufferedLogger(t)
	reg := metrics.NewKubeRegistry()
	m := NewMetrics()
	m.Register(reg.MustRegister)
	p := NewProber(Options{
		Timeout:   250 * time.Millisecond, // the blackhole costs it, twice per round
		Transport: net.transport(),
		OnChange:  func() { changes.Add(1) },
		Logger:    logger,
		Metrics:   m,
	})
	ctx, cancel := context.WithCancel(context.Background())
	jobs, stop := p.startWorkers(ctx)
	t.Cleanup(func() { cancel(); stop() })

	targets := Targets{
		Nodes: map[string]netip.Addr{"a": addrA, "b": addrB, "c": addrC},
		Local: map[ServiceKey]LocalTarget{
			web: {Port: webPort, Nodes: []string{"a", "c"}},
			api: {Port: apiPort, Nodes: []string{"a"}},
		},
	}
	p.SetTargets(targets)

	type verdicts struct {
		Proxy map[string]bool
		Local map[string]bool // "svc@node"
	}
	get := func() verdicts {
		v := verdicts{Proxy: map[string]bool{}, Local: map[string]bool{}}
		for _, n := range []string{"a", "b", "c", "unknown"} {
			v.Proxy[n] = p.ProxyHealthy(n)
		}
		for _, svc := range []ServiceKey{web, api} {
			for _, n := range []string{"a", "b", "c"} {
				v.Local[svc.Name+"@"+n] = p.LocalHealthy(svc, n)
			}
		}
		return v
	}
	all := func(edit func(v *verdicts)) verdicts {
		v := verdicts{
			Proxy: map[string]bool{"a": true, "b": true, "c": true, "unknown": true},
			Local: map[string]bool{"web@a": true, "web@b": true, "web@c": true, "api@a": true, "api@b": true, "api@c": true},
		}
		if edit != nil {
			edit(&v)
		}
		return v
	}

	if diff := cmp.Diff(all(nil), get()); diff != "" {
		t.Fatalf("before any probe, all healthy (-want +got):\n%s", diff)
	}
	if p.LocalConfirmed(web, "a") {
		t.Error("before any probe, web on a is confirmed, want not (not probed yet)")
	}

	steps := []struct {
		name       string
		before     func()
		want       verdicts
		wantChange bool
	}{
		{
			name:       "first round: c times out once, b refuses (no endpoint); web and api answer on a: confirmed",
			want:       all(nil),
			wantChange: true, // LocalConfirmed
		},
		{
			name:       "second round: c times out twice, its Local target fails unprobed",
			want:       all(func(v *verdicts) { v.Proxy["c"] = false; v.Local["web@c"] = false }),
			wantChange: true,
		},
		{
			name:   "a's proxy answers 503 once",
			before: func() { proxyA.status.Store(http.StatusServiceUnavailable) },
			want:   all(func(v *verdicts) { v.Proxy["c"] = false; v.Local["web@c"] = false }),
		},
		{
			name:       "a's proxy answers 503 twice; web has no local endpoint on a once",
			before:     func() { webA.status.Store(http.StatusServiceUnavailable) },
			want:       all(func(v *verdicts) { v.Proxy["a"] = false; v.Proxy["c"] = false; v.Local["web@c"] = false }),
			wantChange: true,
		},
		{
			name:       "a's proxy heals at once; web on a fails twice",
			before:     func() { proxyA.status.Store(http.StatusOK) },
			want:       all(func(v *verdicts) { v.Local["web@a"] = false; v.Proxy["c"] = false; v.Local["web@c"] = false }),
			wantChange: true,
		},
		{
			name: "c comes back, b's healthz appears, api's HCNP on a is refused once",
			before: func() {
				net.route(at(addrC, proxyPort), proxyA.addr())
				net.route(at(addrB, proxyPort), proxyB.addr())
				net.route(at(addrA, apiPort), "")
			},
			want:       all(func(v *verdicts) { v.Local["web@a"] = false }),
			wantChange: true,
		},
		{
			name:       "api's HCNP refused twice: no fallback for Local",
			want:       all(func(v *verdicts) { v.Local["web@a"] = false; v.Local["api@a"] = false }),
			wantChange: true,
		},
		{
			name:   "b's healthz goes away once after it answered",
			before: func() { net.route(at(addrB, proxyPort), "") },
			want:   all(func(v *verdicts) { v.Local["web@a"] = false; v.Local["api@a"] = false }),
		},
		{
			name:       "b's healthz refused twice after it answered: proxy gone",
			want:       all(func(v *verdicts) { v.Proxy["b"] = false; v.Local["web@a"] = false; v.Local["api@a"] = false }),
			wantChange: true,
		},
	}
	for _, s := range steps {
		if s.before != nil {
			s.before()
		}
		before := changes.Load()
		p.round(ctx, jobs)
		if diff := cmp.Diff(s.want, get()); diff != "" {
			t.Errorf("%s: verdicts (-want +got):\n%s", s.name, diff)
		}
		if s.name == steps[0].name && (!p.LocalConfirmed(web, "a") || !p.LocalConfirmed(api, "a")) {
			t.Errorf("%s: web and api on a not confirmed after answering 200", s.name)
		}
		if got := changes.Load() - before; (got > 0) != s.wantChange || got > 1 {
			t.Errorf("%s: OnChange called %d times, want change=%v (at most once per round)", s.name, got, s.wantChange)
		}
	}

	if got := countLogs(logger, noEndpointMsg); got != 1 {
		t.Errorf("%q logged %d times, want once (for node b)", noEndpointMsg, got)
	}
	if got := webC.hits.Load(); got != 4 {
		// c's proxy answers from step 6 on: rounds 6 to 9.
		t.Errorf("web's HCNP on c probed %d times, want 4 (never while c was unreachable)", got)
	}

	// 9 rounds × 3 nodes, 3 Local targets per round.
	wantMetrics := `
		# HELP onprem_lb_speaker_unhealthy_targets [ALPHA] Probe targets this speaker currently judges unhealthy, by kind (proxy: nodes; local: Service and node pairs).
		# TYPE onprem_lb_speaker_unhealthy_targets gauge
		onprem_lb_speaker_unhealthy_targets{kind="local"} 2
		onprem_lb_speaker_unhealthy_targets{kind="proxy"} 1
	`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(wantMetrics), "onprem_lb_speaker_unhealthy_targets"); err != nil {
		t.Error(err)
	}
	total := 0
	for _, k := range []string{"proxy", "local"} {
		for _, r := range []string{"ok", "fail"} {
			v, err := testutil.GetCounterMetricValue(m.probes.WithLabelValues(k, r))
			if err != nil {
				t.Fatal(err)
			}
			total += int(v)
		}
	}
	if want := 9*3 + 9*3; total != want {
		t.Errorf("probes counted %d, want %d", total, want)
	}
}

// TestProberNoEndpointLoggedOnce checks the fallback is logged once per node while it is a
// target: its targets replaced by the same do not log again; a node dropped from the
// targets is forgotten, the log with it (the set does not grow with every node that ever
// was), and logged again if it comes back.
func TestProberNoEndpointLoggedOnce(t *testing.T) {
	net := newLAN(t)
	logger := bufferedLogger(t)
	p := NewProber(Options{Timeout: time.Second, Transport: net.transport(), Logger: logger})
	ctx, cancel := context.WithCancel(context.Background())
	jobs, stop := p.startWorkers(ctx)
	t.Cleanup(func() { cancel(); stop() })

	nodes := map[string]netip.Addr{"x": netip.MustParseAddr("198.18.0.10"), "y": netip.MustParseAddr("198.18.0.11")}
	for i := range 4 {
		p.SetTargets(Targets{Nodes: nodes})
		if i == 2 {
			p.SetTargets(Targets{Nodes: map[string]netip.Addr{"x": nodes["x"]}}) // y dropped: forgotten
			p.SetTargets(Targets{Nodes: nodes})
		}
		p.round(ctx, jobs)
		for n := range nodes {
			if !p.ProxyHealthy(n) {
				t.Errorf("round %d: node %s without a health endpoint judged unhealthy", i, n)
			}
		}
	}
	if got := countLogs(logger, noEndpointMsg); got != 3 {
		t.Errorf("%q logged %d times, want 3 (once per node, once more for y, dropped and re-added)", noEndpointMsg, got)
	}
	p.SetTargets(Targets{})
	if n := len(p.noEndpointLogged); n != 0 {
		t.Errorf("with no targets, %d nodes still remembered as logged, want none", n)
	}
}

// TestSetTargets checks what SetTargets keeps, resets and forgets, and that
// it does not modify its input.
func TestSetTargets(t *testing.T) {
	web := ServiceKey{Namespace: "ns", Name: "web"}
	net := newLAN(t) // no routes: everything refuses
	var changes atomic.Int32
	p := NewProber(Options{Timeout: time.Second, Transport: net.transport(), OnChange: func() { changes.Add(1) }, Logger: ktesting.NewLogger(t, ktesting.NewConfig())})
	ctx, cancel := context.WithCancel(context.Background())
	jobs, stop := p.startWorkers(ctx)
	t.Cleanup(func() { cancel(); stop() })

	mk := func(addr string, port uint16) Targets {
		return Targets{
			Nodes: map[string]netip.Addr{"n": netip.MustParseAddr(addr), "bad": {}},
			Local: map[ServiceKey]LocalTarget{web: {Port: port, Nodes: []string{"n", "n", "nowhere"}}},
		}
	}
	in := mk("198.18.0.1", 31000)
	p.SetTargets(in)
	if diff := cmp.Diff(mk("198.18.0.1", 31000), in, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("SetTargets modified its input (-want +got):\n%s", diff)
	}
	p.round(ctx, jobs)
	p.round(ctx, jobs)
	if p.LocalHealthy(web, "n") {
		t.Fatal("refused HCNP twice: want unhealthy")
	}
	if !p.LocalHealthy(web, "nowhere") || !p.ProxyHealthy("bad") {
		t.Error("targets without an address must stay healthy (not probed)")
	}

	steps := []struct {
		name    string
		targets Targets
		want    bool
	}{
		{name: "same targets keep the verdict", targets: mk("198.18.0.1", 31000), want: false},
		{name: "a new port starts over", targets: mk("198.18.0.1", 31001), want: true},
		{name: "back to the old port: still a new target", targets: mk("198.18.0.1", 31000), want: true},
	}
	for _, s := range steps {
		n := changes.Load()
		p.SetTargets(s.targets)
		if got := p.LocalHealthy(web, "n"); got != s.want {
			t.Errorf("%s: LocalHealthy = %v, want %v", s.name, got, s.want)
		}
		if changes.Load() != n {
			t.Errorf("%s: SetTargets called OnChange", s.name)
		}
	}
	p.SetTargets(Targets{})
	if !p.LocalHealthy(web, "n") || !p.ProxyHealthy("n") {
		t.Error("forgotten targets must be healthy")
	}
}

// TestProberRun runs the prober with its default transport against real
// servers on 127.0.0.1 and follows a proxy and a Local target through
// failure and recovery, waiting on OnChange.
func TestProberRun(t *testing.T) {
	proxy := newTarget(t, http.StatusOK)
	hcnp := newTarget(t, http.StatusOK)
	port := func(tg *target) uint16 {
		return uint16(tg.srv.Listener.Addr().(*net.TCPAddr).Port)
	}
	svc := ServiceKey{Namespace: "ns", Name: "svc"}
	changed := make(chan struct{}, 1)
	p := NewProber(Options{
		Interval:  5 * time.Millisecond,
		Timeout:   time.Second,
		ProxyPort: port(proxy),
		Workers:   2,
		OnChange: func() {
			select {
			case changed <- struct{}{}:
			default:
			}
		},
		Logger: ktesting.NewLogger(t, ktesting.NewConfig()),
	})
	p.SetTargets(Targets{
		Nodes: map[string]netip.Addr{"n1": netip.MustParseAddr("127.0.0.1")},
		Local: map[ServiceKey]LocalTarget{svc: {Port: port(hcnp), Nodes: []string{"n1"}}},
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after its context was cancelled")
		}
	})

	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.After(5 * time.Second)
		for !cond() {
			select {
			case <-changed:
			case <-time.After(5 * time.Millisecond): // probe counts change without OnChange
			case <-deadline:
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	// Probes happen, and verdicts stay healthy.
	waitFor("probes", func() bool { return proxy.hits.Load() >= 3 && hcnp.hits.Load() >= 3 })
	if !p.ProxyHealthy("n1") || !p.LocalHealthy(svc, "n1") {
		t.Fatal("healthy targets judged unhealthy")
	}
	proxy.status.Store(http.StatusServiceUnavailable)
	waitFor("proxy unhealthy", func() bool { return !p.ProxyHealthy("n1") })
	hcnp.status.Store(http.StatusServiceUnavailable)
	waitFor("local unhealthy", func() bool { return !p.LocalHealthy(svc, "n1") })
	proxy.status.Store(http.StatusOK)
	hcnp.status.Store(http.StatusOK)
	waitFor("both healthy again", func() bool { return p.ProxyHealthy("n1") && p.LocalHealthy(svc, "n1") })
	// A closed HCNP (refused after it answered) is a failure.
	hcnp.srv.Close()
	waitFor("closed HCNP unhealthy", func() bool { return !p.LocalHealthy(svc, "n1") })

	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context was cancelled")
	}
}
