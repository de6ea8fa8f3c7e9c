package l2

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/klog/v2"
)

// frameConn is the part of a packet socket (github.com/mdlayher/packet.Conn)
// a responder uses; tests hand in fakes.
type frameConn interface {
	ReadFrom(b []byte) (int, net.Addr, error)
	WriteTo(b []byte, addr net.Addr) (int, error)
	Close() error
}

// phase is where one VIP stands on one interface.
type phase uint8

const (
	// phaseProbing: not answered; a conflict probe is due or in flight.
	phaseProbing phase = iota
	// phaseAnnounced: answered.
	phaseAnnounced
	// phaseConflict: another host answered the probe; not answered, probed again later.
	phaseConflict
)

// vipState is one VIP on one interface. Guarded by responder.mu.
type vipState struct {
	phase phase
	// due is when the next action is due: sending the probe (probing, not
	// sent), reading its outcome (probing, sent), probing again (conflict).
	due       time.Time
	probeSent bool
	// seen is set by the readers when, during a probe, a host that is
	// neither this one nor a peer claims the VIP; seenMAC is its MAC (nil if
	// unknown).
	seen    bool
	seenMAC net.HardwareAddr
	// conflictMAC is the MAC of the last conflict reported (phaseConflict).
	conflictMAC net.HardwareAddr
	// handedOver is set by the readers when, while this node hands its VIPs
	// over, another host announces the VIP: the new owner answers it from
	// then on, and two responders would make clients flip between them,
	// breaking the connections in flight at each flip.
	handedOver bool
	// gratLeft gratuitous packets are still to be sent, the next at gratDue.
	gratLeft int
	gratDue  time.Time
}

// responderConfig is what a responder needs besides its sockets.
type responderConfig struct {
	link         Link
	proto        protocol
	isOwnMAC     func(net.HardwareAddr) bool
	isPeerMAC    func(net.HardwareAddr) bool
	handingOver  func() bool // true: conflict probes are not answered
	events       Events
	metrics      *Metrics
	probeTimeout time.Duration
	reprobe      time.Duration
	gratuitous   int
	gratInterval time.Duration
	logger       klog.Logger
	onFail       func() // called (once) when a socket fails; must not block
}

// responder answers for the VIPs of one family on one interface: an ARP
// responder (arp set) or an NDP responder (ndp set).
//
// Locking: mu guards vips. The readers take the read lock for their lookup,
// so an answer never waits for more than one state change.
type responder struct {
	cfg responderConfig
	mac net.HardwareAddr

	arp frameConn // ARP frames in and out
	ndp frameConn // NS and NA frames in; NA from the VIP and DAD-style NS from :: out

	mu   sync.RWMutex
	vips map[netip.Addr]*vipState

	wake     chan struct{}
	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
	err      atomic.Pointer[error]
}

// newResponder returns a responder of cfg.proto that reads and writes on
// conn: the ARP socket or the NDP socket of the interface.
func newResponder(cfg responderConfig, conn frameConn) *responder {
	if cfg.isOwnMAC == nil {
		mac := cfg.link.MAC
		cfg.isOwnMAC = func(m net.HardwareAddr) bool { return bytes.Equal(m, mac) }
	}
	if cfg.isPeerMAC == nil {
		cfg.isPeerMAC = func(net.HardwareAddr) bool { return false }
	}
	if cfg.handingOver == nil {
		cfg.handingOver = func() bool { return false }
	}
	if cfg.events == nil {
		cfg.events = noEvents{}
	}
	if cfg.onFail == nil {
		cfg.onFail = func() {}
	}
	r := &responder{
		cfg:  cfg,
		mac:  cfg.link.MAC,
		vips: map[netip.Addr]*vipState{},
		wake: make(chan struct{}, 1),
		stop: make(chan struct{}),
	}
	if cfg.proto == protoARP {
		r.arp = conn
	} else {
		r.ndp = conn
	}
	return r
}

// start runs the responder's goroutines until ctx is done or close is called.
func (r *responder) start(ctx context.Context) {
	r.wg.Add(2)
	go func() {
		defer r.wg.Done()
		r.loop(ctx)
	}()
	go func() {
		defer r.wg.Done()
		if r.cfg.proto == protoARP {
			r.readARP()
		} else {
			r.readNDP()
		}
	}()
}

// failed returns the error that broke a socket, or nil.
func (r *responder) failed() error {
	if p := r.err.Load(); p != nil {
		return *p
	}
	return nil
}

func (r *responder) fail(err error) {
	select {
	case <-r.stop:
		return // closing: the error is the close
	default:
	}
	if r.err.CompareAndSwap(nil, &err) {
		r.cfg.onFail()
	}
}

// close stops answering, closes the socket (which ends the interface's
// all-multicast membership of an NDP socket), waits for the goroutines and
// returns the VIPs that were announced.
func (r *responder) close() []netip.Addr {
	r.stopOnce.Do(func() {
		close(r.stop)
		for _, c := range []frameConn{r.arp, r.ndp} {
			if c != nil {
				_ = c.Close() // nothing to do about it: the socket is dropped either way
			}
		}
	})
	r.wg.Wait()
	r.mu.Lock()
	defer r.mu.Unlock()
	var withdrawn []netip.Addr
	for ip, s := range r.vips {
		if s.phase == phaseAnnounced {
			withdrawn = append(withdrawn, ip)
		}
	}
	r.vips = map[netip.Addr]*vipState{}
	slices.SortFunc(withdrawn, netip.Addr.Compare)
	return withdrawn
}

func (r *responder) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// setDesired makes want the VIPs of this responder: VIPs no longer wanted
// stop being answered at once (Withdrawn is told for those that were
// announced), new VIPs are probed. want is not retained.
func (r *responder) setDesired(want map[netip.Addr]struct{}) {
	var added, withdrawn []netip.Addr
	r.mu.Lock()
	for ip, s := range r.vips {
		if _, ok := want[ip]; !ok {
			delete(r.vips, ip)
			if s.phase == phaseAnnounced {
				withdrawn = append(withdrawn, ip)
			}
		}
	}
	for ip := range want {
		if _, ok := r.vips[ip]; !ok {
			r.vips[ip] = &vipState{phase: phaseProbing}
			added = append(added, ip)
		}
	}
	r.mu.Unlock()
	slices.SortFunc(withdrawn, netip.Addr.Compare)
	for _, ip := range withdrawn {
		r.cfg.logger.V(2).Info("Withdrawing VIP", "vip", ip, "interface", r.cfg.link.Name)
		r.cfg.events.Withdrawn(ip, r.cfg.link.Name)
	}
	if len(added) > 0 {
		r.poke()
	}
}

// loop runs step whenever something is due or the VIP set changed.
func (r *responder) loop(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		next := r.step(time.Now())
		timer.Stop()
		if !next.IsZero() {
			timer.Reset(time.Until(next))
		}
		select {
		case <-ctx.Done():
			return
		case <-r.stop:
			return
		case <-r.wake:
		case <-timer.C:
		}
	}
}

// vipAction is what advancing one VIP's state asks the responder to do.
type vipAction struct {
	probe, grat bool // send a probe, a gratuitous packet
	announce    bool // tell Announcing
	conflict    bool // tell Conflict, with mac
	mac         net.HardwareAddr
	next        time.Time // when the VIP next has something due; zero: nothing
}

// advance moves s to now and says what is due: sending a probe, concluding it
// (announce, or report a conflict, told again only if the MAC changed),
// probing a conflict again, sending a gratuitous packet. It does no I/O; the
// caller holds responder.mu.
func (s *vipState) advance(now time.Time, cfg *responderConfig) vipAction {
	var a vipAction
	later := func(t time.Time) {
		if a.next.IsZero() || t.Before(a.next) {
			a.next = t
		}
	}
	switch s.phase {
	case phaseConflict:
		if now.Before(s.due) {
			later(s.due)
			break
		}
		s.phase, s.probeSent = phaseProbing, false
		fallthrough
	case phaseProbing:
		switch {
		case !s.probeSent && now.Before(s.due):
			later(s.due)
		case !s.probeSent:
			s.probeSent, s.seen, s.seenMAC, s.due = true, false, nil, now.Add(cfg.probeTimeout)
			a.probe = true
			later(s.due)
		case now.Before(s.due):
			later(s.due)
		case s.seen:
			s.phase, s.probeSent, s.due = phaseConflict, false, now.Add(cfg.reprobe)
			a.conflict, a.mac = s.conflictMAC == nil || !bytes.Equal(s.conflictMAC, s.seenMAC), s.seenMAC
			s.conflictMAC = s.seenMAC
			if s.conflictMAC == nil {
				s.conflictMAC = net.HardwareAddr{} // unknown MAC, reported once
			}
			later(s.due)
		default:
			s.phase, s.probeSent, s.conflictMAC = phaseAnnounced, false, nil
			s.gratLeft, s.gratDue = cfg.gratuitous, now
			a.announce = true
		}
	}
	if s.phase == phaseAnnounced && s.gratLeft > 0 {
		if now.Before(s.gratDue) {
			later(s.gratDue)
		} else {
			a.grat = true
			s.gratLeft--
			s.gratDue = now.Add(cfg.gratInterval)
			if s.gratLeft > 0 {
				later(s.gratDue)
			}
		}
	}
	return a
}

// step advances every VIP to now (advance, under the lock) and then does
// what is due (apply, outside it). It returns when it next has something to
// do (zero: nothing).
func (r *responder) step(now time.Time) time.Time {
	r.mu.Lock()
	acts := make(map[netip.Addr]vipAction, len(r.vips))
	for ip, s := range r.vips {
		acts[ip] = s.advance(now, &r.cfg)
	}
	r.mu.Unlock()
	return r.apply(now, acts)
}

// apply tells the events of acts and sends their probes and gratuitous
// packets (none while handing over), in VIP order. A probe that cannot be sent is due again after the
// probe timeout: a VIP is never announced without one. It returns the
// earliest next of acts.
func (r *responder) apply(now time.Time, acts map[netip.Addr]vipAction) (next time.Time) {
	name, sent := r.cfg.link.Name, 0
	var failedProbes []netip.Addr
	for _, ip := range slices.SortedFunc(maps.Keys(acts), netip.Addr.Compare) {
		a := acts[ip]
		if !a.next.IsZero() && (next.IsZero() || a.next.Before(next)) {
			next = a.next
		}
		switch {
		case a.announce:
			r.cfg.logger.V(2).Info("Announcing VIP", "vip", ip, "interface", name)
			r.cfg.events.Announcing(ip, name)
		case a.conflict:
			r.cfg.logger.V(2).Info("VIP held by another host, not announcing", "vip", ip, "interface", name, "mac", a.mac)
			r.cfg.metrics.conflict(r.cfg.proto)
			r.cfg.events.Conflict(ip, name, a.mac)
		}
		if a.probe {
			if err := r.sendProbe(ip); err != nil {
				r.cfg.logger.V(2).Info("Cannot send probe", "vip", ip, "interface", name, "err", err)
				failedProbes = append(failedProbes, ip)
			}
		}
		if a.grat && !r.cfg.handingOver() { // the new owner probes and announces now
			n, err := r.sendGratuitous(ip)
			sent += n
			if err != nil {
				r.cfg.logger.V(2).Info("Cannot send gratuitous packet", "vip", ip, "interface", name, "err", err)
			}
		}
	}
	if len(failedProbes) > 0 {
		r.mu.Lock()
		for _, ip := range failedProbes {
			if s := r.vips[ip]; s != nil && s.phase == phaseProbing {
				s.probeSent, s.due = false, now.Add(r.cfg.probeTimeout)
			}
		}
		r.mu.Unlock()
	}
	r.cfg.metrics.gratuitousSent(r.cfg.proto, sent)
	return next
}

// observe records that mac claims ip (an ARP packet sent from ip, or a
// neighbor advertisement for ip); during a probe, a claim by a host that is
// neither this one nor a peer is a conflict; while handing over, a claim by
// another host of an announced VIP hands it over: it is answered no more.
// mac may be nil if unknown.
func (r *responder) observe(ip netip.Addr, mac net.HardwareAddr) {
	r.mu.RLock()
	s := r.vips[ip]
	probing := s != nil && s.phase == phaseProbing && s.probeSent && !s.seen
	takenOver := s != nil && s.phase == phaseAnnounced && !s.handedOver && mac != nil && !r.cfg.isOwnMAC(mac) && r.cfg.handingOver()
	r.mu.RUnlock()
	if takenOver {
		r.mu.Lock()
		if s := r.vips[ip]; s != nil && s.phase == phaseAnnounced {
			s.handedOver = true
		}
		r.mu.Unlock()
		return
	}
	if !probing || (mac != nil && (r.cfg.isOwnMAC(mac) || r.cfg.isPeerMAC(mac))) {
		return
	}
	r.mu.Lock()
	if s := r.vips[ip]; s != nil && s.phase == phaseProbing && s.probeSent && !s.seen {
		s.seen, s.seenMAC = true, slices.Clone(mac)
	}
	r.mu.Unlock()
}

// announced reports whether ip is answered on this interface (announced, and
// not yet handed over): a map lookup under the read lock.
func (r *responder) announced(ip netip.Addr) bool {
	r.mu.RLock()
	s := r.vips[ip]
	ok := s != nil && s.phase == phaseAnnounced && !s.handedOver
	r.mu.RUnlock()
	return ok
}

func (r *responder) sendProbe(ip netip.Addr) error {
	if r.cfg.proto == protoARP {
		return r.sendARPProbe(ip)
	}
	return r.sendDADProbe(ip)
}

func (r *responder) sendGratuitous(ip netip.Addr) (int, error) {
	if r.cfg.proto == protoARP {
		return r.sendARPGratuitous(ip)
	}
	return r.sendUnsolicitedNA(ip)
}

// snapshot adds this responder's view of each VIP to st.
func (r *responder) snapshot(st map[netip.Addr]Status) {
	name := r.cfg.link.Name
	r.mu.RLock()
	defer r.mu.RUnlock()
	for ip, s := range r.vips {
		v := st[ip]
		switch s.phase {
		case phaseAnnounced:
			v.Announced = append(v.Announced, name)
		case phaseProbing:
			if s.conflictMAC == nil {
				v.Probing = append(v.Probing, name)
				break
			}
			fallthrough // probing again, still in conflict until the probe says otherwise
		case phaseConflict:
			v.Conflicts = append(v.Conflicts, Conflict{Interface: name, MAC: slices.Clone(s.conflictMAC)})
		}
		st[ip] = v
	}
}

// readLoop reads with read until the responder is closed; a read error
// before that fails the responder (the announcer reopens it).
func (r *responder) readLoop(read func() error) {
	for {
		if err := read(); err != nil {
			if !errors.Is(err, net.ErrClosed) {
				r.fail(err)
			}
			return
		}
	}
}

type noEvents struct{}

func (noEvents) Announcing(netip.Addr, string)                 {}
func (noEvents) Withdrawn(netip.Addr, string)                  {}
func (noEvents) Conflict(netip.Addr, string, net.HardwareAddr) {}
func (noEvents) InterfaceError(string, error)                  {}
