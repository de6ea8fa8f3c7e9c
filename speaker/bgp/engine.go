package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/server"
)

// Engine is this node's BGP speaker: one embedded GoBGP instance. Its methods are safe for
// concurrent use.
type Engine struct {
	cfg Config

	mu sync.Mutex
	// srv is the running GoBGP instance, nil outside Run: the setters then only record what
	// is wanted, which Run configures when it starts.
	srv *server.BgpServer
	// peers and routes are what is wanted (and, while srv runs, configured); routes are
	// normal. ex is the exclusions the export policy of srv holds; gshut whether routes carry
	// GRACEFUL_SHUTDOWN.
	peers  map[netip.Addr]Peer
	routes map[netip.Prefix]Route
	ex     map[netip.Addr][]netip.Prefix
	gshut  bool
	// health and status are per peer, from Run's last read of the sessions.
	health map[netip.Addr]*health
	status map[netip.Addr]PeerStatus
	// bfd holds, per peer with BFD, when the session its BFD session was attached to came
	// up; no entry while it is detached (see attachBFD).
	bfd map[netip.Addr]time.Time
}

// New returns an engine with no peers and no routes. It starts nothing: Run does.
func New(cfg Config) (*Engine, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Engine{
		cfg:    cfg,
		peers:  map[netip.Addr]Peer{},
		routes: map[netip.Prefix]Route{},
		health: map[netip.Addr]*health{},
		status: map[netip.Addr]PeerStatus{},
		bfd:    map[netip.Addr]time.Time{},
	}, nil
}

// Run runs GoBGP until ctx is done, then stops it (every session is closed with a Cease
// NOTIFICATION) and returns nil. It opens no BGP listening socket: sessions are outgoing
// only. It configures the peers and routes set so far, reads the sessions' state every
// PollInterval, and recovers a session that stays down (see the package documentation).
func (e *Engine) Run(ctx context.Context) error {
	log := e.cfg.Logger
	srv := server.NewBgpServer(server.LoggerOption(slog.New(logr.ToSlogHandler(log.WithName("gobgp").V(2))), nil))
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.Serve()
	}()
	stop := func() {
		srv.Stop()
		<-served
	}
	err := srv.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn: e.cfg.ASN, RouterId: e.cfg.RouterID.String(), ListenPort: -1,
	}})
	if err == nil {
		err = e.start(ctx, srv)
	}
	if err != nil {
		stop()
		return fmt.Errorf("bgp: start: %w", err)
	}
	log.Info("BGP engine started", "asn", e.cfg.ASN, "routerID", e.cfg.RouterID)
	t := time.NewTicker(e.cfg.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			e.stopped()
			stop()
			log.Info("BGP engine stopped")
			return nil
		case <-t.C:
			if err := e.poll(ctx, srv); err != nil && ctx.Err() == nil {
				log.Error(err, "Reading the BGP sessions' state")
			}
		}
	}
}

// stopped forgets the running GoBGP instance and the state of its sessions, which are
// down from now on.
func (e *Engine) stopped() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.srv = nil
	for a, s := range e.status {
		down := PeerStatus{Address: a, State: "unknown"}
		if s.BFD != "" {
			down.BFD = "down"
		}
		e.cfg.Metrics.observe(s, down, s.Established)
	}
	clear(e.status)
	clear(e.bfd)
}

// start configures srv with the policy, the peers and the routes wanted, and makes it e's.
func (e *Engine) start(ctx context.Context, srv *server.BgpServer) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.ex = nil
	if err := e.setPolicy(ctx, srv, exclusions(e.peers, e.routes)); err != nil {
		return err
	}
	for _, a := range slices.SortedFunc(maps.Keys(e.peers), netip.Addr.Compare) {
		if err := e.addPeer(ctx, srv, e.peers[a]); err != nil {
			return err
		}
	}
	if err := e.advertise(srv, slices.Collect(maps.Keys(e.routes))); err != nil {
		return err
	}
	e.srv = srv
	return nil
}

// SetPeers makes peers the peers to keep sessions with: it adds the new ones, deletes those
// that are gone, and resets (deletes and re-adds) those whose Peer value changed. It never
// touches a session whose Peer is unchanged.
func (e *Engine) SetPeers(ctx context.Context, peers []Peer) error {
	want, err := byAddress(peers)
	if err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	added, gone, changed := diffPeers(e.peers, want)
	if e.srv == nil {
		e.peers = want
		return nil
	}
	srv := e.srv
	for _, a := range append(gone, changed...) {
		if err := srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: a.String()}); err != nil {
			return fmt.Errorf("bgp: delete peer %v: %w", a, err)
		}
		delete(e.peers, a)
		if slices.Contains(gone, a) {
			delete(e.health, a)
			delete(e.status, a)
			delete(e.bfd, a)
			e.cfg.Metrics.forget(a)
			e.cfg.Logger.Info("BGP peer removed", "peer", a)
		}
	}
	// The policy follows the peers before any is added, so that a new session gets only
	// its routes.
	if err := e.setPolicy(ctx, srv, exclusions(want, e.routes)); err != nil {
		return err
	}
	for _, a := range append(added, changed...) {
		if err := e.addPeer(ctx, srv, want[a]); err != nil {
			return err
		}
		e.peers[a] = want[a]
		if slices.Contains(changed, a) {
			e.cfg.Logger.Info("BGP peer reconfigured: its session is reset", "peer", a)
		}
	}
	return nil
}

// addPeer adds p to srv, its BFD session detached, and starts watching its health afresh.
func (e *Engine) addPeer(ctx context.Context, srv *server.BgpServer, p Peer) error {
	if err := srv.AddPeer(ctx, &api.AddPeerRequest{Peer: apiPeer(p, e.cfg, false)}); err != nil {
		return fmt.Errorf("bgp: add peer %v: %w", p.Address, err)
	}
	delete(e.bfd, p.Address)
	e.health[p.Address] = &health{down: time.Now()}
	e.cfg.Logger.Info("BGP peer added", "peer", p.Address, "asn", p.ASN, "bfd", p.BFD.Enabled())
	return nil
}

// SetRoutes makes routes the routes to advertise: it advertises the new ones, withdraws
// those that are gone, and re-advertises those that changed. It never resets a session.
func (e *Engine) SetRoutes(ctx context.Context, routes []Route) error {
	want, err := byPrefix(routes)
	if err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.setRoutes(ctx, want)
}

func (e *Engine) setRoutes(ctx context.Context, want map[netip.Prefix]Route) error {
	added, gone, changed := diffRoutes(e.routes, want)
	if e.srv == nil {
		e.routes = want
		e.cfg.Metrics.setRoutes(len(want))
		return nil
	}
	srv := e.srv
	if len(gone) > 0 {
		ps, err := paths(e.routes, gone, e.gshut)
		if err != nil {
			return err
		}
		if err := srv.DeletePath(apiutil.DeletePathRequest{Paths: ps}); err != nil {
			return fmt.Errorf("bgp: withdraw %d routes: %w", len(gone), err)
		}
		for _, p := range gone {
			delete(e.routes, p)
		}
	}
	// Peers whose exclusions changed for routes that stay are re-sent their routes (a soft
	// reset out: no session is reset), which withdraws what they no longer get.
	old := e.ex
	newEx := exclusions(e.peers, want)
	if err := e.setPolicy(ctx, srv, newEx); err != nil {
		return err
	}
	for _, p := range append(added, changed...) {
		e.routes[p] = want[p]
	}
	if err := e.advertise(srv, append(added, changed...)); err != nil {
		// Not known to be advertised: the next call advertises them again.
		for _, p := range append(added, changed...) {
			delete(e.routes, p)
		}
		return err
	}
	for _, peer := range slices.SortedFunc(maps.Keys(e.peers), netip.Addr.Compare) {
		if !resent(old[peer], newEx[peer], e.routes, want) {
			continue
		}
		if err := srv.ResetPeer(ctx, &api.ResetPeerRequest{
			Address: peer.String(), Soft: true, Direction: api.ResetPeerRequest_DIRECTION_OUT,
		}); err != nil {
			return fmt.Errorf("bgp: re-send the routes of peer %v: %w", peer, err)
		}
	}
	e.cfg.Metrics.setRoutes(len(e.routes))
	if n := len(added) + len(gone) + len(changed); n > 0 {
		e.cfg.Logger.V(2).Info("BGP routes set", "routes", len(e.routes), "added", len(added), "withdrawn", len(gone), "changed", len(changed))
	}
	return nil
}

// resent reports whether a peer whose exclusions go from old to new must be re-sent its
// routes: a prefix of a route that was advertised before and still is (in have, before
// this change, and want) joined or left them.
func resent(old, new []netip.Prefix, have, want map[netip.Prefix]Route) bool {
	for _, p := range symmetricDifference(old, new) {
		if _, h := have[p]; h {
			if _, w := want[p]; w {
				return true
			}
		}
	}
	return false
}

// symmetricDifference returns the prefixes in one of a and b, both sorted, but not both.
func symmetricDifference(a, b []netip.Prefix) []netip.Prefix {
	var d []netip.Prefix
	for len(a) > 0 && len(b) > 0 {
		switch c := a[0].Compare(b[0]); {
		case c < 0:
			d, a = append(d, a[0]), a[1:]
		case c > 0:
			d, b = append(d, b[0]), b[1:]
		default:
			a, b = a[1:], b[1:]
		}
	}
	return append(append(d, a...), b...)
}

// advertise adds (or replaces) the paths of e.routes' prefixes in srv.
func (e *Engine) advertise(srv *server.BgpServer, prefixes []netip.Prefix) error {
	if len(prefixes) == 0 {
		return nil
	}
	ps, err := paths(e.routes, prefixes, e.gshut)
	if err != nil {
		return err
	}
	if _, err := srv.AddPath(apiutil.AddPathRequest{Paths: ps}); err != nil {
		return fmt.Errorf("bgp: advertise %d routes: %w", len(ps), err)
	}
	return nil
}

// setPolicy makes srv's export policy keep ex's prefixes from their peers, unless it does
// already.
func (e *Engine) setPolicy(ctx context.Context, srv *server.BgpServer, ex map[netip.Addr][]netip.Prefix) error {
	if e.ex != nil && maps.EqualFunc(e.ex, ex, slices.Equal) {
		return nil
	}
	if err := srv.SetPolicies(ctx, policies(ex)); err != nil {
		return fmt.Errorf("bgp: set export policy: %w", err)
	}
	if e.ex == nil {
		// The first time: the global export policy is ours, and the global import policy
		// rejects every route a peer sends (nothing here uses them: none is installed, none
		// is selected or re-advertised) and accepts this node's own.
		err := srv.SetPolicyAssignment(ctx, &api.SetPolicyAssignmentRequest{Assignment: &api.PolicyAssignment{
			Name: "global", Direction: api.PolicyDirection_POLICY_DIRECTION_EXPORT,
			Policies:      []*api.Policy{{Name: exportPolicy}},
			DefaultAction: api.RouteAction_ROUTE_ACTION_ACCEPT,
		}})
		if err != nil {
			return fmt.Errorf("bgp: assign export policy: %w", err)
		}
		err = srv.SetPolicyAssignment(ctx, &api.SetPolicyAssignmentRequest{Assignment: &api.PolicyAssignment{
			Name: "global", Direction: api.PolicyDirection_POLICY_DIRECTION_IMPORT,
			Policies:      []*api.Policy{{Name: importPolicy}},
			DefaultAction: api.RouteAction_ROUTE_ACTION_REJECT,
		}})
		if err != nil {
			return fmt.Errorf("bgp: assign import policy: %w", err)
		}
	}
	e.ex = ex
	return nil
}

// SetGracefulShutdown with on re-advertises every route with the GRACEFUL_SHUTDOWN community
// (RFC 8326) added, so that routers that honour it prefer other paths, and routes set later
// carry it too; the caller then waits for traffic to move, and withdraws or stops. Without on
// it re-advertises them as they are (the drain was called off).
func (e *Engine) SetGracefulShutdown(ctx context.Context, on bool) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.gshut == on {
		return nil
	}
	e.gshut = on
	if e.srv != nil {
		if err := e.advertise(e.srv, slices.Collect(maps.Keys(e.routes))); err != nil {
			e.gshut = !on
			return err
		}
	}
	e.cfg.Logger.Info("BGP graceful shutdown", "on", on, "routes", len(e.routes))
	return nil
}

// WithdrawAll withdraws every route, as SetRoutes(ctx, nil) does.
func (e *Engine) WithdrawAll(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.setRoutes(ctx, map[netip.Prefix]Route{})
}

// Routes returns the routes wanted (advertised while Run runs), sorted by prefix, and
// whether they carry GRACEFUL_SHUTDOWN.
func (e *Engine) Routes() ([]Route, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	rs := make([]Route, 0, len(e.routes))
	for _, p := range slices.SortedFunc(maps.Keys(e.routes), netip.Prefix.Compare) {
		rs = append(rs, e.routes[p])
	}
	return rs, e.gshut
}

// Peers returns the state of the session with each peer as Run last read it, sorted by
// address.
func (e *Engine) Peers() []PeerStatus {
	e.mu.Lock()
	defer e.mu.Unlock()
	ps := make([]PeerStatus, 0, len(e.peers))
	for a := range e.peers {
		s, ok := e.status[a]
		if !ok {
			s = PeerStatus{Address: a, State: "unknown"}
		}
		if h := e.health[a]; h != nil {
			s.Recoveries = h.recoveries
		}
		ps = append(ps, s)
	}
	slices.SortFunc(ps, func(a, b PeerStatus) int { return a.Address.Compare(b.Address) })
	return ps
}

// poll reads the sessions' state from srv, records it, logs what changed, and recovers the
// sessions that stay down.
func (e *Engine) poll(ctx context.Context, srv *server.BgpServer) error {
	var read []PeerStatus
	err := srv.ListPeer(ctx, &api.ListPeerRequest{EnableAdvertised: true}, func(p *api.Peer) {
		if s, ok := peerStatus(p); ok {
			read = append(read, s)
		}
	})
	if err != nil {
		return err
	}
	now := time.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.srv != srv {
		return nil // stopping
	}
	var errs []error
	for _, s := range read {
		h, ok := e.health[s.Address]
		if !ok {
			continue // just deleted
		}
		if err := e.attachBFD(ctx, srv, s); err != nil {
			errs = append(errs, err)
		}
		switch _, attached := e.bfd[s.Address]; {
		case !e.peers[s.Address].BFD.Enabled():
			s.BFD = ""
		case !attached:
			s.BFD = "down"
		}
		old, seen := e.status[s.Address]
		e.status[s.Address] = s
		reset := old.Established && (!s.Established || !s.EstablishedAt.Equal(old.EstablishedAt))
		e.cfg.Metrics.observe(old, s, reset)
		if s.PrefixesReceived > 0 && old.PrefixesReceived == 0 {
			e.cfg.Logger.Info("BGP peer sends routes; they are ignored (none is installed or used): configure the router to send this node none",
				"peer", s.Address, "prefixesReceived", s.PrefixesReceived)
		}
		if !seen || old.State != s.State || old.BFD != s.BFD {
			e.cfg.Logger.Info("BGP session state", "peer", s.Address, "state", s.State, "previous", old.State,
				"bfd", s.BFD, "previousBFD", old.BFD, "prefixesSent", s.PrefixesSent)
		}
		episode := now.Sub(h.down)
		if ok, why := h.observe(now, s, e.cfg); ok {
			if err := e.recover(ctx, srv, s, why, episode); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// recover deletes and re-adds the peer of session s, which has not been stably up for
// down, for the reason why.
func (e *Engine) recover(ctx context.Context, srv *server.BgpServer, s PeerStatus, why string, down time.Duration) error {
	a := s.Address
	e.cfg.Logger.Info("BGP session stays down: deleting and re-adding the peer", "peer", a, "reason", why,
		"state", s.State, "bfd", s.BFD, "down", down.Round(time.Millisecond), "recoveries", e.health[a].recoveries)
	if err := srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: a.String()}); err != nil {
		return fmt.Errorf("bgp: recover peer %v: %w", a, err)
	}
	if err := srv.AddPeer(ctx, &api.AddPeerRequest{Peer: apiPeer(e.peers[a], e.cfg, false)}); err != nil {
		return fmt.Errorf("bgp: recover peer %v: %w", a, err)
	}
	delete(e.bfd, a)
	e.cfg.Metrics.recovered(a)
	return nil
}

// attachBFD makes the BFD session of the peer of session s, if it has BFD, follow the
// session: attached (GoBGP makes a fresh BFD session) once the session is established,
// detached while it is not. An established session that came up again since the BFD
// session was attached gets a fresh one too. Neither resets the session.
//
// FRR makes its BFD session with a peer when the TCP connection comes (a peer of a listen
// range) or re-makes it with the connection's local address (an explicit neighbor). A GoBGP
// BFD session that bound itself to FRR's first one never takes up FRR's new one: its
// packets name a discriminator FRR no longer has, and it drops FRR's, until it expires and
// resets the BGP session, which repeats with every new session. And a BFD session that
// expires while the BGP session is down queues a reset for the next one (osrg/gobgp#3561).
// Attached only to an established session, it meets FRR's final BFD session, and cannot
// expire while the session is down.
func (e *Engine) attachBFD(ctx context.Context, srv *server.BgpServer, s PeerStatus) error {
	p := e.peers[s.Address]
	if !p.BFD.Enabled() {
		return nil
	}
	at, attached := e.bfd[s.Address]
	update := func(bfd bool) error {
		if _, err := srv.UpdatePeer(ctx, &api.UpdatePeerRequest{Peer: apiPeer(p, e.cfg, bfd)}); err != nil {
			return fmt.Errorf("bgp: peer %v: attach BFD %v: %w", s.Address, bfd, err)
		}
		return nil
	}
	switch {
	case !s.Established && attached:
		delete(e.bfd, s.Address)
		e.cfg.Logger.V(2).Info("BGP session down: BFD detached", "peer", s.Address)
		return update(false)
	case s.Established && (!attached || !at.Equal(s.EstablishedAt)):
		if attached {
			if err := update(false); err != nil {
				return err
			}
		}
		e.bfd[s.Address] = s.EstablishedAt
		e.cfg.Logger.V(2).Info("BGP session established: BFD attached", "peer", s.Address)
		return update(true)
	}
	return nil
}

// peerStatus returns the state of the session of p, as ListPeer reports it.
func peerStatus(p *api.Peer) (PeerStatus, bool) {
	st := p.GetState()
	a, err := netip.ParseAddr(st.GetNeighborAddress())
	if err != nil {
		a, err = netip.ParseAddr(p.GetConf().GetNeighborAddress())
		if err != nil {
			return PeerStatus{}, false
		}
	}
	s := PeerStatus{
		Address: a.Unmap(),
		State:   strings.ToLower(strings.TrimPrefix(st.GetSessionState().String(), "SESSION_STATE_")),
	}
	s.Established = st.GetSessionState() == api.PeerState_SESSION_STATE_ESTABLISHED
	if up := p.GetTimers().GetState().GetUptime(); s.Established && up != nil {
		s.EstablishedAt = up.AsTime()
	}
	if bfd := st.GetBfdState(); bfd != nil {
		s.BFD = strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(bfd.GetSessionState().String(), "BFD_SESSION_STATE_")), "_", "-")
	}
	for _, af := range p.GetAfiSafis() {
		s.PrefixesSent += af.GetState().GetAdvertised()
		s.PrefixesReceived += af.GetState().GetReceived()
	}
	return s, true
}
