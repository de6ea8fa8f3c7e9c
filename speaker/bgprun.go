package speaker

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/klog/v2"

	"github.com/onprem-lb/onprem-lb/config"
	"github.com/onprem-lb/onprem-lb/speaker/bgp"
)

// DefaultBGPDrainDelay is how long a stopping speaker advertises its routes with
// GRACEFUL_SHUTDOWN before it withdraws them: the time its routers take to move the traffic
// to the other nodes' paths.
const DefaultBGPDrainDelay = 3 * time.Second

// bgpSpeaker runs this node's BGP engine as the pool file says: none without a bgp: section;
// a new one when the ASN or the router ID change (every session restarts); else the same
// engine, given the peers whose nodeSelector matches this node and the routes the controller
// computes, so that only the sessions whose settings changed are reset.
type bgpSpeaker struct {
	node string
	// drain is how long routes carry GRACEFUL_SHUTDOWN before a stop or the exclusion label
	// withdraws them.
	drain    time.Duration
	metrics  *bgp.Metrics
	readFile func(name string) ([]byte, error)
	// changed wakes Run when engine was replaced.
	changed chan struct{}

	mu sync.Mutex
	// engine is the engine wanted, nil without a bgp: section; global its ASN and router ID.
	engine *bgp.Engine
	global bgpGlobal
	// stopping: the speaker is stopping, engine's routes carry GRACEFUL_SHUTDOWN.
	stopping bool
	// excludedAt is when sync first saw this node excluded from load balancers (the zero
	// time while it is not): from then its routes carry GRACEFUL_SHUTDOWN for drain, then are
	// withdrawn.
	excludedAt time.Time
}

// bgpGlobal is what an engine is made with: a change needs a new engine.
type bgpGlobal struct {
	asn      uint32
	routerID netip.Addr
}

func newBGPSpeaker(node string, m *bgp.Metrics, drain time.Duration) *bgpSpeaker {
	return &bgpSpeaker{node: node, drain: drain, metrics: m, readFile: os.ReadFile, changed: make(chan struct{}, 1)}
}

// sync makes the engine follow cfg, this node's Node self, and routes, the routes this node
// advertises, at now. While self has just got the exclusion label, the routes it had stay,
// with GRACEFUL_SHUTDOWN, for the drain delay: sync returns how long until it should be
// called again (0: no need). It returns what went wrong (a peer's password file unreadable,
// no router ID); the rest is applied all the same.
func (s *bgpSpeaker) sync(ctx context.Context, cfg *config.Config, self *corev1.Node, routes []bgp.Route, now time.Time) (time.Duration, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		return 0, nil
	}
	if cfg.BGP == nil {
		s.replace(nil, bgpGlobal{})
		return 0, nil
	}
	global := bgpGlobal{asn: cfg.BGP.ASN, routerID: cfg.BGP.RouterID}
	if !global.routerID.IsValid() {
		ip, ok := nodeIP(self, true)
		if !ok {
			s.replace(nil, bgpGlobal{})
			return 0, fmt.Errorf("speaker: BGP: node %s has no IPv4 InternalIP to be the router ID; set bgp.routerID in the pool file", s.node)
		}
		global.routerID = ip
	}
	if s.engine == nil || global != s.global {
		e, err := bgp.New(bgp.Config{ASN: global.asn, RouterID: global.routerID, Logger: klog.Background().WithName("bgp"), Metrics: s.metrics})
		if err != nil {
			return 0, fmt.Errorf("speaker: BGP: %w", err)
		}
		if s.engine != nil {
			klog.InfoS("BGP ASN or router ID changed: every session restarts", "asn", global.asn, "routerID", global.routerID)
		}
		s.replace(e, global)
	}
	peers, err := s.peersOf(cfg.BGP, self)
	err = errors.Join(err, s.engine.SetPeers(ctx, peers))
	out := excluded(self)
	switch {
	case out && s.excludedAt.IsZero():
		s.excludedAt = now
		klog.InfoS("Node excluded from load balancers: BGP routes carry GRACEFUL_SHUTDOWN, then are withdrawn", "node", s.node, "delay", s.drain)
		return s.drain, errors.Join(err, s.engine.SetGracefulShutdown(ctx, true))
	case out && now.Sub(s.excludedAt) < s.drain:
		return s.drain - now.Sub(s.excludedAt), err
	case !out && !s.excludedAt.IsZero():
		s.excludedAt = time.Time{}
		err = errors.Join(err, s.engine.SetGracefulShutdown(ctx, false))
	}
	return 0, errors.Join(err, s.engine.SetRoutes(ctx, routes))
}

func (s *bgpSpeaker) withdrawn(reason string, n int) { s.metrics.Withdrawn(reason, n) }

// replace makes e the engine wanted, and wakes Run to run it instead of the last one. s.mu
// is held.
func (s *bgpSpeaker) replace(e *bgp.Engine, global bgpGlobal) {
	if e == s.engine {
		return
	}
	s.engine, s.global = e, global
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// peersOf returns the peers of section b whose nodeSelector matches self, with their
// passwords; those whose password file cannot be read are left out and named in the error.
func (s *bgpSpeaker) peersOf(b *config.BGP, self *corev1.Node) ([]bgp.Peer, error) {
	var peers []bgp.Peer
	var errs []error
	for _, p := range b.Peers {
		if !p.NodeSelector.Matches(labels.Set(self.Labels)) {
			continue
		}
		peer := bgp.Peer{Session: p.Session}
		if p.PasswordFile != "" {
			data, err := s.readFile(p.PasswordFile)
			if err != nil {
				errs = append(errs, fmt.Errorf("speaker: BGP peer %s: password: %w", p.Name, err))
				continue
			}
			peer.Password = strings.TrimRight(string(data), "\r\n")
		}
		peers = append(peers, peer)
	}
	return peers, errors.Join(errs...)
}

// run runs the engine wanted until ctx ends, replacing it when sync does. Then it drains:
// the routes carry GRACEFUL_SHUTDOWN for the drain delay, then are withdrawn, then the
// engine stops.
func (s *bgpSpeaker) run(ctx context.Context) {
	var running *bgp.Engine
	stop, done := runEngine(nil)
	defer func() { stop(); <-done }()
	for ctx.Err() == nil {
		s.mu.Lock()
		want := s.engine
		s.mu.Unlock()
		if want != running {
			stop()
			<-done
			running = want
			stop, done = runEngine(running)
		}
		select {
		case <-s.changed:
		case <-ctx.Done():
		}
	}
	s.mu.Lock()
	s.stopping = true
	s.mu.Unlock()
	if running == nil {
		return
	}
	dctx, cancel := context.WithTimeout(context.Background(), s.drain+5*time.Second)
	defer cancel()
	if err := running.SetGracefulShutdown(dctx, true); err != nil {
		klog.ErrorS(err, "BGP graceful shutdown")
	}
	klog.InfoS("BGP routes carry GRACEFUL_SHUTDOWN; withdrawing them after the drain delay", "delay", s.drain)
	time.Sleep(s.drain)
	routes, _ := running.Routes()
	if err := running.WithdrawAll(dctx); err != nil {
		klog.ErrorS(err, "BGP withdraw")
		return
	}
	s.withdrawn(WithdrawStopping, len(routes))
}

// engineRetry is how long after a failed start an engine is started again.
const engineRetry = 5 * time.Second

// runEngine runs e (nil: none) until stop is called, starting it again engineRetry after a
// failed start; done is closed once it has stopped.
func runEngine(e *bgp.Engine) (stop context.CancelFunc, done chan struct{}) {
	ctx, stop := context.WithCancel(context.Background())
	done = make(chan struct{})
	if e == nil {
		close(done)
		return stop, done
	}
	go func() {
		defer close(done)
		for {
			err := e.Run(ctx)
			if err == nil || ctx.Err() != nil {
				return
			}
			klog.ErrorS(err, "BGP engine failed; starting it again", "after", engineRetry)
			select {
			case <-ctx.Done():
				return
			case <-time.After(engineRetry):
			}
		}
	}()
	return stop, done
}

// view returns the engine's sessions and routes, for /announcements/bgp.
func (s *bgpSpeaker) view() bgpView {
	s.mu.Lock()
	e := s.engine
	s.mu.Unlock()
	if e == nil {
		return bgpAnnouncements(nil, nil, false)
	}
	routes, draining := e.Routes()
	return bgpAnnouncements(e.Peers(), routes, draining)
}
