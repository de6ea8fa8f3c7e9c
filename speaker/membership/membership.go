package membership

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"k8s.io/klog/v2"
)

const (
	// DefaultPort is the TCP and UDP port of the gossip when Config.Port is 0.
	DefaultPort = 7946
	// MaxMetaSize is the most Config.Meta may hold: memberlist's limit.
	MaxMetaSize = memberlist.MetaMaxSize
	// DefaultConvergeTimeout is Config.ConvergeTimeout when it is 0.
	DefaultConvergeTimeout = 3 * time.Second

	// label is put on every packet and stream (and authenticated when
	// encrypted): gossip from another memberlist cluster on the same port
	// is dropped.
	label = "onprem-lb/speaker"
	// streamTimeout bounds a TCP state exchange (join, push/pull): a few
	// kilobytes on a LAN. It also bounds how long Run waits, when it
	// returns, for a join to a silent address.
	streamTimeout = 2 * time.Second
	// leaveTimeout bounds the Leave that Run does when ctx is done, and a
	// Leave called with a timeout ≤ 0.
	leaveTimeout = time.Second
	// joinConcurrency is how many peers are joined at once: Join is
	// sequential in memberlist, and each silent peer costs streamTimeout.
	joinConcurrency = 16
	// deadNodeReclaimTime lets a node name come back with another address
	// (a node re-addressed) after it has been dead this long.
	deadNodeReclaimTime = 30 * time.Second
)

var (
	// ErrInvalidConfig is wrapped by every error New returns.
	ErrInvalidConfig = errors.New("invalid membership config")
	// ErrNotRunning is wrapped by Leave when Run has not created the
	// memberlist yet, or has shut it down.
	ErrNotRunning = errors.New("membership not running")
	// ErrAlreadyRunning is returned by a second call to Run.
	ErrAlreadyRunning = errors.New("membership already running")
)

// Config is what a Membership needs. Name and BindAddr are required.
type Config struct {
	// Name is this node's name; unique among the members.
	Name string
	// BindAddr is the node's IP to bind and advertise (speakers run with
	// hostNetwork). It must be a specific unicast address.
	BindAddr netip.Addr
	// Port is the TCP and UDP port of the gossip, on this node and on every
	// peer; 0 means DefaultPort.
	Port int
	// SecretKeys is the keyring, each key 16, 24 or 32 bytes
	// (AES-128/192/256), from a Kubernetes Secret: gossip is encrypted and
	// authenticated with the first key, and accepted under any of them;
	// members that share no key are not heard. A key rotation keeps every
	// member heard: add the new key second on every member, then put it
	// first on every member, then remove the old one. Empty: unencrypted
	// (Run logs a warning once).
	SecretKeys [][]byte
	// Meta is published to the other members, at most MaxMetaSize bytes;
	// the speaker puts its MAC addresses here.
	Meta []byte
	// Peers returns the addresses of the other nodes to join (from the
	// Node InternalIPs). It is called when Run starts and every
	// Timing.RejoinInterval, from one goroutine at a time. Addresses that
	// are this node or already members are skipped. nil: no peers.
	Peers func() []netip.Addr
	// Timing are the failure detector's timers; zero fields take
	// DefaultTiming's.
	Timing Timing
	// ConvergeTimeout bounds how long Converged waits for the first state
	// exchange with a peer; 0 means DefaultConvergeTimeout.
	ConvergeTimeout time.Duration
	// Logger receives the package's and memberlist's logs; the zero value
	// means klog.Background().
	Logger klog.Logger
}

// Member is a live member as this node sees it.
type Member struct {
	Name string
	Addr netip.Addr
	Meta []byte
}

// viewed is a live member as the event delegate copied it.
type viewed struct {
	Member
	gossip netip.AddrPort // Addr and the member's gossip port
}

// viewOf copies n.
func viewOf(n *memberlist.Node) viewed {
	a, _ := netip.AddrFromSlice(n.Addr)
	a = a.Unmap()
	return viewed{Member{Name: n.Name, Addr: a, Meta: bytes.Clone(n.Meta)}, netip.AddrPortFrom(a, n.Port)}
}

// record sets (alive) or removes a member of the view and signals Changed.
func (m *Membership) record(n *memberlist.Node, alive bool) {
	m.viewMu.Lock()
	if alive {
		m.view[n.Name] = viewOf(n)
		delete(m.departed, n.Name)
	} else {
		delete(m.view, n.Name)
	}
	m.viewMu.Unlock()
	m.signal()
}

// leavingMsg, followed by its name, is what a member sends every other one just before it
// leaves (memberlist's own leave message does not reach the event delegate as such: a member
// that left and one declared dead both arrive as NotifyLeave, with the same node state).
const leavingMsg = "onprem-lb/leaving\x00"

// LeftGracefully reports whether member name said it was leaving (Leave: a speaker
// stopping) within the last d, is gone, and has not come back since; a member that died, or
// whose message was lost, did not.
func (m *Membership) LeftGracefully(name string, d time.Duration) bool {
	m.viewMu.Lock()
	defer m.viewMu.Unlock()
	at, ok := m.departed[name]
	_, alive := m.view[name]
	return ok && !alive && time.Since(at) <= d
}

// sayLeaving sends every other member the leaving message (best effort, UDP), just
// before this one leaves.
func (m *Membership) sayLeaving(ml *memberlist.Memberlist) {
	msg := []byte(leavingMsg + m.cfg.Name)
	for _, n := range ml.Members() {
		if n.Name != m.cfg.Name {
			if err := ml.SendBestEffort(n, msg); err != nil {
				m.logger.V(2).Info("Telling a member this one leaves", "member", n.Name, "err", err)
			}
		}
	}
}

// leaving records that member name announced its leave.
func (m *Membership) leaving(name string) {
	m.viewMu.Lock()
	m.departed[name] = time.Now()
	m.viewMu.Unlock()
}

// Membership tells who is alive among the speakers. Create it with New,
// start it with Run; its methods are safe for concurrent use.
type Membership struct {
	cfg    Config
	logger klog.Logger
	// peers are the addresses to join; New derives it from Config.Peers
	// and Config.Port, tests replace it to give each member its own port.
	peers func() []netip.AddrPort

	changed       chan struct{}
	converged     chan struct{}
	convergedOnce sync.Once
	warnOnce      sync.Once
	started       atomic.Bool

	// ml is the running memberlist: set by Run after Create, nil again
	// before Shutdown.
	ml atomic.Pointer[memberlist.Memberlist]
	// viewMu guards view, the live members by name, copied by the event
	// delegate. Memberlist's own Members returns pointers into nodes it
	// rewrites (address, meta) under its lock, so reading those races.
	viewMu   sync.Mutex
	view     map[string]viewed
	departed map[string]time.Time // members that left gracefully, when; not dead ones
	// lifeMu serializes Leave and Shutdown (memberlist panics on Leave
	// after Shutdown) and guards shutdown.
	lifeMu   sync.Mutex
	shutdown bool
	left     atomic.Bool
	// hardStop makes Run shut down without leaving, like a killed
	// process; for tests.
	hardStop atomic.Bool
}

// New validates cfg and returns a Membership that does nothing until Run.
// Every error wraps ErrInvalidConfig.
func New(cfg Config) (*Membership, error) {
	if cfg.Name == "" {
		return nil, fmt.Errorf("membership: empty node name: %w", ErrInvalidConfig)
	}
	if len(cfg.Name) > 255 {
		return nil, fmt.Errorf("membership: node name is %d bytes, want ≤ 255: %w", len(cfg.Name), ErrInvalidConfig)
	}
	if !cfg.BindAddr.IsValid() {
		return nil, fmt.Errorf("membership: no bind address: %w", ErrInvalidConfig)
	}
	cfg.BindAddr = cfg.BindAddr.Unmap()
	if cfg.BindAddr.IsUnspecified() || cfg.BindAddr.IsMulticast() || cfg.BindAddr.Zone() != "" {
		return nil, fmt.Errorf("membership: bind address %s cannot be advertised, want a node's unicast IP without zone: %w",
			cfg.BindAddr, ErrInvalidConfig)
	}
	if cfg.Port == 0 {
		cfg.Port = DefaultPort
	}
	if cfg.Port < 1 || cfg.Port > 65535 {
		return nil, fmt.Errorf("membership: port %d out of range 1-65535: %w", cfg.Port, ErrInvalidConfig)
	}
	keys := make([][]byte, len(cfg.SecretKeys))
	for i, k := range cfg.SecretKeys {
		if n := len(k); n != 16 && n != 24 && n != 32 {
			return nil, fmt.Errorf("membership: secret key %d is %d bytes, want 16, 24 or 32 (AES-128, -192, -256): %w",
				i+1, n, ErrInvalidConfig)
		}
		keys[i] = bytes.Clone(k)
	}
	cfg.SecretKeys = keys
	if len(cfg.Meta) > MaxMetaSize {
		return nil, fmt.Errorf("membership: meta is %d bytes, want ≤ %d: %w", len(cfg.Meta), MaxMetaSize, ErrInvalidConfig)
	}
	cfg.Meta = bytes.Clone(cfg.Meta)
	cfg.Timing = cfg.Timing.withDefaults()
	if err := cfg.Timing.validate(); err != nil {
		return nil, err
	}
	if cfg.ConvergeTimeout == 0 {
		cfg.ConvergeTimeout = DefaultConvergeTimeout
	}
	if cfg.ConvergeTimeout < 0 {
		return nil, fmt.Errorf("membership: converge timeout is %v, want > 0: %w", cfg.ConvergeTimeout, ErrInvalidConfig)
	}
	logger := cfg.Logger
	if logger.GetSink() == nil {
		logger = klog.Background()
	}
	m := &Membership{
		cfg:       cfg,
		logger:    logger,
		changed:   make(chan struct{}, 1),
		view:      map[string]viewed{},
		departed:  map[string]time.Time{},
		converged: make(chan struct{}),
	}
	m.peers = func() []netip.AddrPort { return withPort(cfg.Peers, cfg.Port) }
	return m, nil
}

// withPort returns peers() with port, nil if peers is nil.
func withPort(peers func() []netip.Addr, port int) []netip.AddrPort {
	if peers == nil {
		return nil
	}
	addrs := peers()
	out := make([]netip.AddrPort, 0, len(addrs))
	for _, a := range addrs {
		if a.IsValid() {
			out = append(out, netip.AddrPortFrom(a.Unmap(), uint16(port)))
		}
	}
	return out
}

// self is the address this member binds and advertises.
func (m *Membership) self() netip.AddrPort {
	return netip.AddrPortFrom(m.cfg.BindAddr, uint16(m.cfg.Port))
}

// Run creates the memberlist, joins Peers(), re-joins the peers that are not
// members every Timing.RejoinInterval, and blocks until ctx is done. Then it
// leaves gracefully (unless Leave was called), waiting at most a second for
// the leave to go out, and shuts down. It returns an error only if the
// memberlist cannot start (address in use, for instance), or if called twice.
func (m *Membership) Run(ctx context.Context) error {
	if !m.started.CompareAndSwap(false, true) {
		return fmt.Errorf("membership: Run called twice: %w", ErrAlreadyRunning)
	}
	if len(m.cfg.SecretKeys) == 0 {
		m.warnOnce.Do(func() {
			m.logger.Info("WARNING: gossip between speakers is neither encrypted nor authenticated; set a secret key")
		})
	}
	mlConfig, err := m.memberlistConfig()
	if err != nil {
		return err
	}
	ml, err := memberlist.Create(mlConfig)
	if err != nil {
		return fmt.Errorf("membership: starting memberlist on %s: %w", m.self(), err)
	}
	m.ml.Store(ml)
	m.logger.V(2).Info("Membership started", "name", m.cfg.Name, "address", m.self(),
		"encrypted", len(m.cfg.SecretKeys) > 0, "keys", len(m.cfg.SecretKeys))

	joinCtx, cancelJoins := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancelJoins()
		m.stop(ml)
		wg.Wait()
		m.logger.V(2).Info("Membership stopped", "name", m.cfg.Name)
	}()

	converge := time.NewTimer(m.cfg.ConvergeTimeout)
	defer converge.Stop()
	rejoin := time.NewTicker(m.cfg.Timing.RejoinInterval)
	defer rejoin.Stop()

	type joinResult struct{ attempted, reached int }
	joined := make(chan joinResult, 1)
	joining := false
	startJoin := func() {
		if joining || m.left.Load() {
			return
		}
		joining = true
		wg.Add(1)
		go func() {
			defer wg.Done()
			a, r := m.join(joinCtx, ml)
			joined <- joinResult{a, r}
		}()
	}

	startJoin()
	for {
		select {
		case <-ctx.Done():
			return nil
		case res := <-joined:
			joining = false
			switch {
			case res.attempted == 0:
				m.markConverged("no peers to join")
			case res.reached > 0:
				m.markConverged("state exchanged with a peer")
			}
		case <-converge.C:
			if m.markConverged("converge timeout") {
				m.logger.Info("No state exchange with a peer within the converge timeout; going on with the members known",
					"timeout", m.cfg.ConvergeTimeout, "members", ml.NumMembers())
			}
		case <-rejoin.C:
			startJoin()
		}
	}
}

// join joins, a few at a time, the peers that are neither this member nor
// already members. It returns how many it tried and how many it reached (a
// reached peer exchanged full state with us over TCP).
func (m *Membership) join(ctx context.Context, ml *memberlist.Memberlist) (attempted, reached int) {
	targets := joinTargets(m.peers(), m.self(), m.memberAddrs())
	if len(targets) == 0 {
		return 0, 0
	}
	var (
		wg    sync.WaitGroup
		n     atomic.Int64
		sem   = make(chan struct{}, joinConcurrency)
		start = time.Now()
	)
	for _, t := range targets {
		if ctx.Err() != nil {
			break
		}
		attempted++
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if _, err := ml.Join([]string{t.String()}); err != nil {
				m.logger.V(4).Info("Cannot join peer", "peer", t, "err", err)
				return
			}
			n.Add(1)
		}()
	}
	wg.Wait()
	reached = int(n.Load())
	if reached > 0 {
		m.logger.V(2).Info("Joined peers", "reached", reached, "tried", attempted, "duration", time.Since(start))
	} else {
		m.logger.V(4).Info("No peer reached", "tried", attempted, "duration", time.Since(start))
	}
	return attempted, reached
}

// joinTargets returns peers minus self, minus the members' addresses, minus
// duplicates, in order.
func joinTargets(peers []netip.AddrPort, self netip.AddrPort, members []netip.AddrPort) []netip.AddrPort {
	skip := make(map[netip.AddrPort]bool, len(members)+1)
	skip[self] = true
	for _, a := range members {
		skip[a] = true
	}
	var out []netip.AddrPort
	for _, p := range peers {
		p = netip.AddrPortFrom(p.Addr().Unmap(), p.Port())
		if !p.IsValid() || skip[p] {
			continue
		}
		skip[p] = true
		out = append(out, p)
	}
	return out
}

// memberAddrs returns the gossip addresses of the live members.
func (m *Membership) memberAddrs() []netip.AddrPort {
	m.viewMu.Lock()
	defer m.viewMu.Unlock()
	out := make([]netip.AddrPort, 0, len(m.view))
	for _, v := range m.view {
		out = append(out, v.gossip)
	}
	return out
}

// markConverged closes Converged once; it reports whether this call did.
func (m *Membership) markConverged(reason string) (closed bool) {
	m.convergedOnce.Do(func() {
		m.logger.V(2).Info("Membership converged", "reason", reason)
		close(m.converged)
		closed = true
	})
	return closed
}

// stop leaves (unless Leave was called or this is a hard stop) and shuts the
// memberlist down. Members returns nil from then on.
func (m *Membership) stop(ml *memberlist.Memberlist) {
	m.lifeMu.Lock()
	defer m.lifeMu.Unlock()
	if !m.left.Load() && !m.hardStop.Load() {
		m.left.Store(true)
		m.sayLeaving(ml)
		if err := ml.Leave(leaveTimeout); err != nil {
			m.logger.Error(err, "Leaving the membership timed out; peers will notice by failure detection", "timeout", leaveTimeout)
		}
	}
	m.shutdown = true
	m.ml.Store(nil)
	if err := ml.Shutdown(); err != nil {
		m.logger.Error(err, "Shutting down the membership")
	}
}

// Leave leaves the membership gracefully: it tells the other members, which
// drop this member at once rather than after failure detection (and, unless the
// message is lost, know it left: LeftGracefully), and waits
// up to timeout (≤ 0: one second) for the message to go out. It is safe to
// call while Run runs, before ctx is cancelled; Run then only shuts down,
// and stops re-joining. A second Leave does nothing. It fails with
// ErrNotRunning before Run has started the memberlist and after Run returned.
func (m *Membership) Leave(timeout time.Duration) error {
	if timeout <= 0 {
		timeout = leaveTimeout
	}
	m.lifeMu.Lock()
	defer m.lifeMu.Unlock()
	ml := m.ml.Load()
	if ml == nil || m.shutdown {
		return fmt.Errorf("membership: leave: %w", ErrNotRunning)
	}
	if m.left.Load() {
		return nil
	}
	m.left.Store(true)
	start := time.Now()
	m.sayLeaving(ml)
	if err := ml.Leave(timeout); err != nil {
		return fmt.Errorf("membership: leave within %v: %w", timeout, err)
	}
	m.logger.V(2).Info("Left the membership", "name", m.cfg.Name, "duration", time.Since(start))
	return nil
}

// Members returns the live members, this one included (until it leaves),
// sorted by Name. A suspect member, one that missed a probe and has not yet
// been declared dead, is still a member. Before Run has started and after it
// returned, Members returns nil. The result is the caller's.
func (m *Membership) Members() []Member {
	ml := m.ml.Load()
	if ml == nil {
		return nil
	}
	m.viewMu.Lock()
	out := make([]Member, 0, len(m.view))
	for _, v := range m.view {
		out = append(out, Member{Name: v.Name, Addr: v.Addr, Meta: bytes.Clone(v.Meta)})
	}
	m.viewMu.Unlock()
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Changed is signalled, without blocking, whenever a member joins, leaves,
// dies or updates its meta, this member included. It has capacity 1: a
// reader that was busy finds one signal for any number of changes, so it
// calls Members after each receive.
func (m *Membership) Changed() <-chan struct{} { return m.changed }

// Converged is closed once this member knows the membership well enough to
// act on it: a full state exchange (push/pull) with a peer completed, whether
// this member's join reached the peer or the peer's join reached this
// member; or there was no peer to join; or ConvergeTimeout passed. The
// speaker announces nothing before.
func (m *Membership) Converged() <-chan struct{} { return m.converged }

// signal signals Changed without blocking.
func (m *Membership) signal() {
	select {
	case m.changed <- struct{}{}:
	default:
	}
}

// memberlistConfig is the memberlist configuration for m.
func (m *Membership) memberlistConfig() (*memberlist.Config, error) {
	c := memberlist.DefaultLANConfig()
	c.Name = m.cfg.Name
	c.BindAddr = m.cfg.BindAddr.String()
	c.BindPort = m.cfg.Port
	c.AdvertiseAddr = m.cfg.BindAddr.String()
	c.AdvertisePort = m.cfg.Port
	c.Label = label
	c.TCPTimeout = streamTimeout
	c.DeadNodeReclaimTime = deadNodeReclaimTime

	t := m.cfg.Timing
	c.ProbeInterval = t.ProbeInterval
	c.ProbeTimeout = t.ProbeTimeout
	c.GossipInterval = t.GossipInterval
	c.PushPullInterval = t.PushPullInterval
	c.SuspicionMult = t.SuspicionMult
	c.SuspicionMaxTimeoutMult = t.SuspicionMaxTimeoutMult

	if keys := m.cfg.SecretKeys; len(keys) > 0 {
		ring, err := memberlist.NewKeyring(keys[1:], keys[0])
		if err != nil {
			return nil, fmt.Errorf("membership: keyring: %w", err)
		}
		c.Keyring = ring
		c.GossipVerifyIncoming = true
		c.GossipVerifyOutgoing = true
	}
	c.Delegate = &delegate{m: m, meta: m.cfg.Meta}
	c.Events = &events{m: m}
	c.Logger = log.New(&logWriter{logger: m.logger.WithName("memberlist")}, "", 0)
	return c, nil
}

// delegate publishes the member's meta and closes Converged after a full
// state exchange. Memberlist hands user state to MergeRemoteState after it
// merged the member lists, and only when the other side sent some, so every
// member sends one byte.
type delegate struct {
	m    *Membership
	meta []byte
}

var _ memberlist.Delegate = (*delegate)(nil)

func (d *delegate) NodeMeta(limit int) []byte {
	if len(d.meta) > limit { // New checked against MetaMaxSize; memberlist panics over limit.
		return nil
	}
	return d.meta
}

func (d *delegate) LocalState(join bool) []byte { return stateMarker }

// MergeRemoteState runs after a push/pull with a peer, ours or theirs, join
// or periodic, completed and was merged: Members shows the peer's view.
func (d *delegate) MergeRemoteState(buf []byte, join bool) {
	d.m.markConverged("state exchanged with a peer")
}

// NotifyMsg takes the leaving message of a member.
func (d *delegate) NotifyMsg(msg []byte) {
	if name, ok := bytes.CutPrefix(msg, []byte(leavingMsg)); ok && len(name) > 0 {
		d.m.leaving(string(name))
	}
}

func (*delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }

// stateMarker is the user state of a push/pull: its presence is what makes
// memberlist call MergeRemoteState.
var stateMarker = []byte{1}

// events logs membership changes and signals Changed. Memberlist calls it
// with its node lock held, after the change is visible: it must not call
// back into the memberlist.
type events struct{ m *Membership }

var _ memberlist.EventDelegate = (*events)(nil)

func (e *events) NotifyJoin(n *memberlist.Node) {
	e.m.logger.V(2).Info("Member joined", "member", n.Name, "address", net.IP(n.Addr))
	e.m.record(n, true)
}

func (e *events) NotifyLeave(n *memberlist.Node) {
	e.m.logger.V(2).Info("Member left or died", "member", n.Name, "address", net.IP(n.Addr))
	e.m.record(n, false)
}

func (e *events) NotifyUpdate(n *memberlist.Node) {
	e.m.logger.V(2).Info("Member updated", "member", n.Name, "address", net.IP(n.Addr))
	e.m.record(n, true)
}

// logWriter takes memberlist's log lines ("[LEVEL] memberlist: text") to
// klog: warnings and errors at V(2), the rest at V(4).
type logWriter struct{ logger klog.Logger }

func (w *logWriter) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	level := "INFO"
	if strings.HasPrefix(line, "[") {
		if i := strings.IndexByte(line, ']'); i > 0 {
			level, line = line[1:i], strings.TrimSpace(line[i+1:])
		}
	}
	line = strings.TrimPrefix(line, "memberlist: ")
	v := 4
	if level == "WARN" || level == "ERR" {
		v = 2
	}
	w.logger.V(v).Info(line, "level", level)
	return len(p), nil
}
