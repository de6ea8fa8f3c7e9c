package health

import (
	"context"
	"maps"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
)

// Defaults of [Options]. With them a target that starts failing is judged
// unhealthy within 2 × DefaultInterval + DefaultTimeout = 1 s in the worst
// case:
//
//   - the target breaks just after a probe of it succeeded (time 0);
//   - the next probe starts at most one Interval later (400 ms) and fails: at
//     once if the target answers 503 or refuses, after at most Timeout
//     (200 ms) if it does not answer;
//   - the probe after that starts one Interval later still (800 ms) and is
//     the second consecutive failure: the verdict flips when it ends, at
//     800 ms plus a round trip for a 503 or a refusal, at 1000 ms for a
//     timeout. On average the flip comes half an Interval sooner.
//
// The 500 ms / 300 ms first proposed gave 2 × 500 + 300 = 1.3 s for a target
// that stops answering, hence these values. Rounds are paced by a ticker: a
// round that takes longer than Interval (many targets, few workers, many
// timeouts) delays the next one, which stretches these figures.
const (
	DefaultInterval  = 400 * time.Millisecond
	DefaultTimeout   = 200 * time.Millisecond
	DefaultProxyPort = 10256
	DefaultWorkers   = 8
)

// ServiceKey names a Service: the one Service key of the speaker.
type ServiceKey = types.NamespacedName

// Targets is everything a [Prober] probes. Every speaker should be given the
// same Targets (they derive from the API server) so that all of them judge
// the same nodes and compute the same owners.
type Targets struct {
	// Nodes maps a node's name to the address to probe (its InternalIP).
	// Every node listed has its service proxy probed at
	// http://<addr>:<ProxyPort>/healthz. A zero (invalid) address is not
	// probed.
	Nodes map[string]netip.Addr
	// Local lists the Services with externalTrafficPolicy Local to check.
	Local map[ServiceKey]LocalTarget
}

// LocalTarget is one Local Service's healthCheckNodePort and the nodes to
// probe it on: those the EndpointSlices say have a ready local endpoint.
// A node that is not in [Targets.Nodes] has no address and is not probed;
// a Port of 0 is not probed.
type LocalTarget struct {
	Port  uint16
	Nodes []string
}

// Options configure a [Prober]. Zero fields take their defaults.
type Options struct {
	// Interval between the starts of two probe rounds; default
	// DefaultInterval.
	Interval time.Duration
	// Timeout of one probe (connect, request and response headers); default
	// DefaultTimeout.
	Timeout time.Duration
	// ProxyPort is the service proxy's health port on every node; default
	// DefaultProxyPort (kube-proxy's healthz).
	ProxyPort uint16
	// Workers is the number of goroutines that probe, each one node at a
	// time; default DefaultWorkers.
	Workers int
	// OnChange, if not nil, is called from Run's goroutine after a probe
	// round that changed at least one verdict (once per round, however many
	// changed), without the prober's lock held. It must not block: enqueue a
	// resync and return. It is not called by SetTargets.
	OnChange func()
	// Logger logs; default klog.Background().
	Logger klog.Logger
	// Metrics, if not nil, count the probes and the unhealthy targets.
	Metrics *Metrics
	// Transport makes the HTTP requests; nil means a real one that never
	// goes through an HTTP proxy from the environment and keeps one idle
	// connection per target between rounds. Redirects are never followed
	// (a 3xx is a failure), whatever the transport.
	Transport http.RoundTripper
}

// Prober probes, from one speaker, whether each node can serve: its service
// proxy is healthy (Cluster Services) and, for each Local Service, its
// healthCheckNodePort reports local endpoints. It turns the probe results
// into verdicts that the controller reads with [Prober.ProxyHealthy] and
// [Prober.LocalHealthy].
//
// The verdict rules, for each target (a node's proxy, or a Local Service on
// a node):
//
//   - A target not probed yet, or not a target at all, is healthy: the
//     EndpointSlices already said the node may serve, and a fresh VIP must
//     not wait for a probe.
//   - A target becomes unhealthy after 2 consecutive failed probes, and
//     healthy again after 1 successful one. A probe succeeds when the target
//     answers with a 2xx status; it fails on any other status (kube-proxy
//     answers 503), a timeout, an unreachable node, a transport error, or a
//     refused connection, except as follows.
//   - Where a node has no service proxy health endpoint at all (its proxy
//     port has refused every connection and never answered HTTP, e.g. a
//     service proxy without healthz), the node's proxy verdict stays healthy:
//     the speaker relies on the EndpointSlices alone. This is logged once per
//     node while it is a target. Once the port answers, it is used; a refusal after that is a
//     failure (the proxy went away).
//   - A Local target has no such fallback: a refused healthCheckNodePort
//     means no service proxy serves that Service on the node, so it is a
//     failure, and 2 of them make the target unhealthy.
//   - A node whose proxy probe gets no answer in time (or no route) is taken
//     as unreachable for that round: its Local targets count a failure
//     without being probed, so an unreachable node costs one Timeout per
//     round, not one per Service.
//
// All methods are safe for concurrent use. One mutex guards the targets and
// verdicts; probes run without it.
type Prober struct {
	interval  time.Duration
	timeout   time.Duration
	proxyPort uint16
	workers   int
	onChange  func()
	log       klog.Logger
	metrics   *Metrics
	client    *http.Client

	mu     sync.RWMutex
	nodes  map[string]*nodeState
	locals map[localKey]*localState
	byNode map[string][]localKey // Local targets per node, sorted
	// noEndpointLogged: nodes already logged as having no proxy health
	// endpoint, while they are targets.
	noEndpointLogged map[string]bool
}

type nodeState struct {
	addr netip.Addr
	v    verdict
}

type localState struct {
	port uint16
	v    verdict
}

type localKey struct {
	svc  ServiceKey
	node string
}

// NewProber returns a Prober with no targets. It starts no goroutine: probing
// happens in Run.
func NewProber(opts Options) *Prober {
	p := &Prober{
		interval:         opts.Interval,
		timeout:          opts.Timeout,
		proxyPort:        opts.ProxyPort,
		workers:          opts.Workers,
		onChange:         opts.OnChange,
		log:              opts.Logger,
		metrics:          opts.Metrics,
		nodes:            map[string]*nodeState{},
		locals:           map[localKey]*localState{},
		byNode:           map[string][]localKey{},
		noEndpointLogged: map[string]bool{},
	}
	if p.interval <= 0 {
		p.interval = DefaultInterval
	}
	if p.timeout <= 0 {
		p.timeout = DefaultTimeout
	}
	if p.proxyPort == 0 {
		p.proxyPort = DefaultProxyPort
	}
	if p.workers <= 0 {
		p.workers = DefaultWorkers
	}
	if p.log.GetSink() == nil {
		p.log = klog.Background()
	}
	p.log = p.log.WithName("health")
	rt := opts.Transport
	if rt == nil {
		rt = newTransport(p.timeout)
	}
	p.client = &http.Client{
		Transport: rt,
		// A redirect is not a healthy answer: report the 3xx itself.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return p
}

// SetTargets replaces what is probed. t is neither retained nor modified.
// A target that stays (same node and address; same Service, node and port)
// keeps its verdict and history; a new or changed one starts as "not probed
// yet", which is healthy; a dropped one is forgotten (and so healthy if
// asked about). SetTargets does not call OnChange: the caller knows it
// changed the targets.
func (p *Prober) SetTargets(t Targets) {
	nodes := make(map[string]*nodeState, len(t.Nodes))
	locals := map[localKey]*localState{}
	byNode := map[string][]localKey{}

	p.mu.Lock()
	defer p.mu.Unlock()
	for name, addr := range t.Nodes {
		if !addr.IsValid() {
			continue
		}
		if old := p.nodes[name]; old != nil && old.addr == addr {
			nodes[name] = old
			continue
		}
		nodes[name] = &nodeState{addr: addr}
	}
	for svc, lt := range t.Local {
		if lt.Port == 0 {
			continue
		}
		for _, node := range lt.Nodes {
			k := localKey{svc: svc, node: node}
			if _, dup := locals[k]; dup {
				continue
			}
			if old := p.locals[k]; old != nil && old.port == lt.Port {
				locals[k] = old
			} else {
				locals[k] = &localState{port: lt.Port}
			}
			byNode[node] = append(byNode[node], k)
		}
	}
	for _, keys := range byNode {
		slices.SortFunc(keys, func(a, b localKey) int {
			if c := strings.Compare(a.svc.Namespace, b.svc.Namespace); c != 0 {
				return c
			}
			return strings.Compare(a.svc.Name, b.svc.Name)
		})
	}
	p.nodes, p.locals, p.byNode = nodes, locals, byNode
	maps.DeleteFunc(p.noEndpointLogged, func(node string, _ bool) bool { return nodes[node] == nil })
	p.setGaugesLocked()
}

// ProxyHealthy reports whether node's service proxy is healthy by the rules
// of [Prober]: true unless its last 2 probes failed (a node not probed, not
// a target, or without a proxy health endpoint is healthy).
func (p *Prober) ProxyHealthy(node string) bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	n := p.nodes[node]
	return n == nil || n.v.healthy()
}

// LocalHealthy reports whether svc's healthCheckNodePort on node reports
// local endpoints by the rules of [Prober]: true unless its last 2 probes
// failed (a target not probed yet, or not a target, is healthy). It says
// nothing of the node's proxy: check ProxyHealthy too.
func (p *Prober) LocalHealthy(svc ServiceKey, node string) bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	l := p.locals[localKey{svc: svc, node: node}]
	return l == nil || l.v.healthy()
}

// LocalConfirmed reports whether svc's healthCheckNodePort on node has reported local
// endpoints at least once since it became a target, and LocalHealthy holds: a target not
// probed yet is not confirmed. BGP waits for it, because a route attracts traffic at
// once, from the whole network; kube-proxy answers 503 until it has programmed the
// Service.
func (p *Prober) LocalConfirmed(svc ServiceKey, node string) bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	l := p.locals[localKey{svc: svc, node: node}]
	return l != nil && l.v.confirmed()
}

// Run probes every target once per Interval, the first round at once, with
// a fixed pool of Workers goroutines, each probing one node's targets (its
// proxy, then its Local Services) at a time. It returns when ctx is done,
// after its goroutines have stopped and idle connections are closed. The
// results of a round cut short by ctx are dropped. Run must not be called
// twice at the same time.
func (p *Prober) Run(ctx context.Context) {
	jobs, stop := p.startWorkers(ctx)
	defer stop()

	ticker := time.NewTicker(p.interval)
	defer ticker.Stop()
	for {
		start := time.Now()
		p.round(ctx, jobs)
		if took := time.Since(start); took > p.interval && ctx.Err() == nil {
			p.log.V(2).Info("Probe round took longer than the interval", "took", took, "interval", p.interval)
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// startWorkers starts the pool of Workers goroutines that probe the nodes
// sent on jobs. stop closes jobs, waits for the workers to return and closes
// idle connections.
func (p *Prober) startWorkers(ctx context.Context) (jobs chan<- *nodeJob, stop func()) {
	ch := make(chan *nodeJob)
	var workers sync.WaitGroup
	for range p.workers {
		workers.Go(func() {
			for j := range ch {
				p.probeNode(ctx, j)
				j.done.Done()
			}
		})
	}
	return ch, func() {
		close(ch)
		workers.Wait()
		p.client.CloseIdleConnections()
	}
}

// nodeJob is one node's share of a round: what to probe, then what was seen.
type nodeJob struct {
	node     string
	addr     netip.Addr
	proxy    outcome
	proxyErr error
	locals   []localJob
	done     *sync.WaitGroup
}

type localJob struct {
	key  localKey
	port uint16
	out  outcome
	err  error
}

// round probes every target once, through jobs, then folds the results into
// the verdicts and calls OnChange if one changed.
func (p *Prober) round(ctx context.Context, jobs chan<- *nodeJob) {
	plan := p.plan()
	var done sync.WaitGroup
	for _, j := range plan {
		j.done = &done
		done.Add(1)
		select {
		case jobs <- j:
		case <-ctx.Done():
			done.Done()
			done.Wait()
			return
		}
	}
	done.Wait()
	if ctx.Err() != nil {
		return // probes cut short by cancellation say nothing of the targets
	}
	if p.apply(plan) && p.onChange != nil {
		p.onChange()
	}
}

// plan snapshots the targets into one job per node.
func (p *Prober) plan() []*nodeJob {
	p.mu.RLock()
	defer p.mu.RUnlock()
	plan := make([]*nodeJob, 0, len(p.nodes))
	for name, n := range p.nodes {
		j := &nodeJob{node: name, addr: n.addr}
		for _, k := range p.byNode[name] {
			j.locals = append(j.locals, localJob{key: k, port: p.locals[k].port})
		}
		plan = append(plan, j)
	}
	return plan
}

// probeNode probes one node's proxy, then its Local targets, unless the
// proxy probe found the node unreachable.
func (p *Prober) probeNode(ctx context.Context, j *nodeJob) {
	j.proxy, j.proxyErr = p.probe(ctx, probeURL(j.addr, p.proxyPort, "/healthz"))
	for i := range j.locals {
		l := &j.locals[i]
		if j.proxy == outcomeUnreachable {
			l.out, l.err = outcomeUnreachable, j.proxyErr
			continue
		}
		l.out, l.err = p.probe(ctx, probeURL(j.addr, l.port, "/"))
	}
}

// apply folds a round's results into the verdicts of the targets that are
// still the ones probed, and reports whether a verdict changed.
func (p *Prober) apply(plan []*nodeJob) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	changed := false
	for _, j := range plan {
		p.metrics.probed(kindProxy, j.proxy)
		if n := p.nodes[j.node]; n != nil && n.addr == j.addr {
			before := n.v
			n.v = step(kindProxy, n.v, j.proxy)
			if before.healthy() != n.v.healthy() {
				changed = true
				p.log.Info("Service proxy health changed", "node", j.node, "healthy", n.v.healthy(), "reason", errString(j.proxyErr))
			}
			switch {
			case n.v.noEndpoint && !before.noEndpoint && !p.noEndpointLogged[j.node]:
				p.noEndpointLogged[j.node] = true
				p.log.Info("No service proxy health endpoint on node; relying on EndpointSlices", "node", j.node, "address", j.addr, "port", p.proxyPort)
			case before.noEndpoint && !n.v.noEndpoint && n.v.answered:
				p.log.Info("Service proxy health endpoint answers on node; using it", "node", j.node, "address", j.addr, "port", p.proxyPort)
			}
		}
		for _, l := range j.locals {
			p.metrics.probed(kindLocal, l.out)
			s := p.locals[l.key]
			if s == nil || s.port != l.port {
				continue
			}
			before := s.v
			s.v = step(kindLocal, s.v, l.out)
			if before.healthy() != s.v.healthy() {
				changed = true
				p.log.Info("Local endpoints health changed", "service", l.key.svc, "node", l.key.node, "port", l.port, "healthy", s.v.healthy(), "reason", errString(l.err))
			}
			changed = changed || before.confirmed() != s.v.confirmed() // LocalConfirmed
		}
	}
	p.setGaugesLocked()
	return changed
}

func (p *Prober) setGaugesLocked() {
	if p.metrics == nil {
		return
	}
	proxy, local := 0, 0
	for _, n := range p.nodes {
		if !n.v.healthy() {
			proxy++
		}
	}
	for _, l := range p.locals {
		if !l.v.healthy() {
			local++
		}
	}
	p.metrics.setUnhealthy(proxy, local)
}

func errString(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}
