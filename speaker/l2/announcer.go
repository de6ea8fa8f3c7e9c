package l2

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/klog/v2"
)

// Target is where one VIP is to be announced.
type Target struct {
	// Interfaces to announce on, by name; empty = choose automatically: the
	// interfaces holding an address whose prefix contains the VIP, else those
	// holding one of Options.NodeIPs of the VIP's family.
	Interfaces []string
}

// Options configure an Announcer. Zero values take defaults.
type Options struct {
	// NodeIPs are the node's own addresses: the fallback for the automatic
	// interface choice.
	NodeIPs []netip.Addr
	// IsPeerMAC reports whether a MAC belongs to a cluster peer: a probe
	// answered by one is a handover, not a conflict. nil: none are peers.
	// Called from the announcer's goroutines; must be fast and safe for
	// concurrent use.
	IsPeerMAC func(net.HardwareAddr) bool
	// Events, if not nil, is told what the announcer does.
	Events Events
	// Metrics, if not nil, count what the announcer does.
	Metrics *Metrics
	// ProbeTimeout is how long to wait for an answer to a conflict probe
	// (default 100ms).
	ProbeTimeout time.Duration
	// ReprobeInterval is how often a VIP in conflict is probed again
	// (default 10s).
	ReprobeInterval time.Duration
	// Gratuitous is how many gratuitous ARP (a request and a reply each) or
	// unsolicited NA are sent on takeover (default 3; negative: none).
	Gratuitous int
	// GratuitousInterval is the time between them (default 100ms).
	GratuitousInterval time.Duration
	// LinkPollInterval is how often interfaces are read again (default 1s).
	LinkPollInterval time.Duration
	// Logger logs; default klog.Background().
	Logger klog.Logger
}

// Events are told what the announcer does. They are called from the
// announcer's goroutines and must not block.
type Events interface {
	// Announcing: started answering for ip on iface, after a clean probe.
	Announcing(ip netip.Addr, iface string)
	// Withdrawn: stopped answering for ip on iface (told only for a VIP
	// Announcing was told for).
	Withdrawn(ip netip.Addr, iface string)
	// Conflict: another host (MAC mac; empty if it did not say) already
	// answers for ip on iface, so it is not announced there. Told when the
	// conflict is found and again only if the MAC changes.
	Conflict(ip netip.Addr, iface string, mac net.HardwareAddr)
	// InterfaceError: iface cannot be used or failed, e.g. a configured
	// interface that does not exist (errors.Is ErrNoInterface) or a socket
	// that cannot be opened. Told once until the interface works again
	// (iface is "" if the interfaces cannot be listed at all).
	InterfaceError(iface string, err error)
}

// Status is one VIP's state, by interface. A VIP is answered on the
// interfaces in Announced only. All lists are sorted by interface name; a
// desired VIP with all lists empty has no usable interface (none found
// automatically).
type Status struct {
	// Announced are the interfaces answering for the VIP.
	Announced []string
	// Probing are the interfaces where a conflict probe is due or in flight.
	Probing []string
	// Conflicts are the interfaces where another host holds the VIP.
	Conflicts []Conflict
	// Unavailable are the interfaces chosen for the VIP that cannot be used
	// now: a configured interface missing, down or unusable, or whose
	// sockets cannot be opened. They are retried at every link poll.
	Unavailable []string
}

// Conflict is another host holding a VIP on an interface.
type Conflict struct {
	Interface string
	// MAC of the other host; empty if its answer did not carry it.
	MAC net.HardwareAddr
}

// Announcer answers ARP and NDP for the desired VIPs. Its methods are safe
// for concurrent use. The zero value is not usable: call New.
type Announcer struct {
	opts Options
	log  klog.Logger

	// listLinks and open are the kernel; tests hand in fakes.
	listLinks func() ([]Link, error)
	open      func(l Link, p protocol) (frameConn, error)

	mu      sync.Mutex
	desired map[netip.Addr]Target // replaced whole by Sync, never mutated
	wake    chan struct{}
	running atomic.Bool

	ownMACs     atomic.Pointer[[]net.HardwareAddr]
	handingOver atomic.Bool

	// Owned by Run; rmu guards them for State.
	rmu         sync.Mutex
	responders  map[respKey]*responder
	unavailable map[netip.Addr][]string
	reported    map[string]bool // interfaces whose error was told and not cleared
}

// respKey names a responder: one per interface and protocol.
type respKey struct {
	iface string
	proto protocol
}

// New returns an Announcer that does nothing until Run: no goroutines, no
// sockets.
func New(opts Options) *Announcer {
	return newAnnouncer(opts, readLinks, openSocket)
}

func newAnnouncer(opts Options, listLinks func() ([]Link, error), open func(Link, protocol) (frameConn, error)) *Announcer {
	if opts.ProbeTimeout <= 0 {
		opts.ProbeTimeout = 100 * time.Millisecond
	}
	if opts.ReprobeInterval <= 0 {
		opts.ReprobeInterval = 10 * time.Second
	}
	switch {
	case opts.Gratuitous == 0:
		opts.Gratuitous = 3
	case opts.Gratuitous < 0:
		opts.Gratuitous = 0
	}
	if opts.GratuitousInterval <= 0 {
		opts.GratuitousInterval = 100 * time.Millisecond
	}
	if opts.LinkPollInterval <= 0 {
		opts.LinkPollInterval = time.Second
	}
	if opts.Events == nil {
		opts.Events = noEvents{}
	}
	if opts.IsPeerMAC == nil {
		opts.IsPeerMAC = func(net.HardwareAddr) bool { return false }
	}
	opts.NodeIPs = slices.Clone(opts.NodeIPs)
	log := opts.Logger
	if log.GetSink() == nil {
		log = klog.Background()
	}
	return &Announcer{
		opts:        opts,
		log:         log.WithName("l2"),
		listLinks:   listLinks,
		open:        open,
		wake:        make(chan struct{}, 1),
		responders:  map[respKey]*responder{},
		unavailable: map[netip.Addr][]string{},
		reported:    map[string]bool{},
	}
}

// Sync makes the announcer answer for exactly the VIPs in desired from now
// on; nil or empty stops answering for all. It does not block: Run applies
// it (at once if Run is running, else when it starts). desired is neither
// retained nor mutated. Invalid addresses are ignored; IPv4-mapped IPv6
// addresses count as IPv4.
func (a *Announcer) Sync(desired map[netip.Addr]Target) {
	cp := make(map[netip.Addr]Target, len(desired))
	for ip, t := range desired {
		ip = ip.Unmap().WithZone("")
		if !ip.IsValid() || ip.IsUnspecified() || ip.IsMulticast() {
			continue
		}
		cp[ip] = Target{Interfaces: slices.Clone(t.Interfaces)}
	}
	a.mu.Lock()
	a.desired = cp
	a.mu.Unlock()
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// State returns a snapshot of every desired VIP (and of VIPs still being
// withdrawn, for a moment after Sync).
func (a *Announcer) State() map[netip.Addr]Status {
	a.mu.Lock()
	desired := a.desired
	a.mu.Unlock()
	st := make(map[netip.Addr]Status, len(desired))
	for ip := range desired {
		st[ip] = Status{}
	}
	a.rmu.Lock()
	keys := slices.SortedFunc(maps.Keys(a.responders), func(x, y respKey) int {
		if c := strings.Compare(x.iface, y.iface); c != 0 {
			return c
		}
		return int(x.proto) - int(y.proto)
	})
	for _, k := range keys {
		a.responders[k].snapshot(st)
	}
	for ip, names := range a.unavailable {
		if v, ok := st[ip]; ok {
			v.Unavailable = slices.Clone(names)
			st[ip] = v
		}
	}
	a.rmu.Unlock()
	return st
}

// HandOver tells the announcer that this node is handing its VIPs over to
// other nodes: from now on until Run returns, conflict probes (ARP from
// 0.0.0.0, DAD neighbor solicitations from ::) for the VIPs it answers get no
// answer, so that a new owner finds them free and announces them at once;
// clients' requests are still answered. Call it before leaving the
// membership: the new owners probe as soon as they learn of the leave.
func (a *Announcer) HandOver() {
	a.handingOver.Store(true)
	a.log.V(2).Info("Handing over: conflict probes are no longer answered")
}

// Run opens the sockets, answers and follows the interfaces until ctx is
// done, then withdraws everything, closes every socket, waits for its
// goroutines and returns nil. It returns an error only if it is already
// running.
func (a *Announcer) Run(ctx context.Context) error {
	if !a.running.CompareAndSwap(false, true) {
		return errors.New("l2: Announcer.Run called while already running")
	}
	defer a.running.Store(false)
	a.log.V(2).Info("Starting L2 announcer", "linkPollInterval", a.opts.LinkPollInterval, "probeTimeout", a.opts.ProbeTimeout)
	defer a.closeAll()
	ticker := time.NewTicker(a.opts.LinkPollInterval)
	defer ticker.Stop()
	for {
		a.reconcile(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		case <-a.wake:
		}
	}
}

// closeAll withdraws everything and stops every responder.
func (a *Announcer) closeAll() {
	a.rmu.Lock()
	defer a.rmu.Unlock()
	for k, r := range a.responders {
		a.closeResponder(k, r)
	}
	clear(a.unavailable)
	a.log.V(2).Info("Stopped L2 announcer")
}

// closeResponder stops r and tells Withdrawn for what it announced. Called with rmu held.
func (a *Announcer) closeResponder(k respKey, r *responder) {
	for _, ip := range r.close() {
		a.opts.Events.Withdrawn(ip, k.iface)
	}
	delete(a.responders, k)
	a.log.V(2).Info("Closed responder", "interface", k.iface, "protocol", k.proto)
}

// reconcile reads the links, chooses the interfaces of every desired VIP and
// makes the responders match: closed where no longer wanted or where the link
// changed (gone, down, flapped, other index or MAC) or a socket failed,
// opened where wanted, and told their VIPs.
func (a *Announcer) reconcile(ctx context.Context) {
	links, err := a.listLinks()
	if err != nil {
		a.reportError("", err)
		return
	}
	a.clearError("")
	var own []net.HardwareAddr
	for _, l := range links {
		if len(l.MAC) > 0 {
			own = append(own, slices.Clone(l.MAC))
		}
	}
	a.ownMACs.Store(&own)

	a.mu.Lock()
	desired := a.desired
	a.mu.Unlock()

	plan := map[respKey]map[netip.Addr]struct{}{}
	unavailable := map[netip.Addr][]string{}
	errs := map[string]error{}
	for ip, t := range desired {
		c := chooseInterfaces(ip, t, links, a.opts.NodeIPs)
		p := protocolOf(ip)
		for _, name := range c.ifaces {
			k := respKey{name, p}
			if plan[k] == nil {
				plan[k] = map[netip.Addr]struct{}{}
			}
			plan[k][ip] = struct{}{}
		}
		for name, err := range c.errs {
			unavailable[ip] = append(unavailable[ip], name)
			errs[name] = err
		}
	}

	a.rmu.Lock()
	defer a.rmu.Unlock()
	byName := make(map[string]*Link, len(links))
	for i := range links {
		byName[links[i].Name] = &links[i]
	}
	for k, r := range a.responders {
		l := byName[k.iface]
		switch {
		case len(plan[k]) == 0:
		case l == nil || l.Index != r.cfg.link.Index || !bytes.Equal(l.MAC, r.cfg.link.MAC):
			a.log.V(2).Info("Interface changed, reopening", "interface", k.iface)
		case l.CarrierChanges != r.cfg.link.CarrierChanges:
			a.log.V(2).Info("Interface flapped, announcing again", "interface", k.iface)
		case r.failed() != nil:
			errs[k.iface] = r.failed()
			delete(a.reported, k.iface) // a new failure is told again
		default:
			continue
		}
		a.closeResponder(k, r)
	}
	for k, vips := range plan {
		r := a.responders[k]
		if r == nil {
			if ctx.Err() != nil {
				continue
			}
			l := byName[k.iface]
			var err error
			if r, err = a.startResponder(ctx, *l, k.proto); err != nil {
				errs[k.iface] = err
				for ip := range vips {
					unavailable[ip] = append(unavailable[ip], k.iface)
				}
				continue
			}
		}
		r.setDesired(vips)
	}
	for ip := range unavailable {
		slices.Sort(unavailable[ip])
		unavailable[ip] = slices.Compact(unavailable[ip])
	}
	a.unavailable = unavailable
	for name, err := range errs {
		a.reportError(name, err)
	}
	for name := range a.reported {
		if _, bad := errs[name]; !bad && name != "" {
			delete(a.reported, name)
		}
	}
}

func (a *Announcer) startResponder(ctx context.Context, l Link, p protocol) (*responder, error) {
	conn, err := a.open(l, p)
	if err != nil {
		return nil, err
	}
	r := newResponder(responderConfig{
		link:         l,
		proto:        p,
		isOwnMAC:     a.isOwnMAC,
		isPeerMAC:    a.opts.IsPeerMAC,
		handingOver:  a.handingOver.Load,
		events:       a.opts.Events,
		metrics:      a.opts.Metrics,
		probeTimeout: a.opts.ProbeTimeout,
		reprobe:      a.opts.ReprobeInterval,
		gratuitous:   a.opts.Gratuitous,
		gratInterval: a.opts.GratuitousInterval,
		logger:       a.log.WithValues("interface", l.Name, "protocol", p),
		onFail: func() {
			select {
			case a.wake <- struct{}{}:
			default:
			}
		},
	}, conn)
	r.start(ctx)
	a.responders[respKey{l.Name, p}] = r
	a.log.V(2).Info("Opened responder", "interface", l.Name, "protocol", p)
	return r, nil
}

// isOwnMAC reports whether mac belongs to one of this host's interfaces.
func (a *Announcer) isOwnMAC(mac net.HardwareAddr) bool {
	p := a.ownMACs.Load()
	if p == nil {
		return false
	}
	for _, m := range *p {
		if bytes.Equal(m, mac) {
			return true
		}
	}
	return false
}

// reportError tells an interface error once until it is cleared.
func (a *Announcer) reportError(iface string, err error) {
	if a.reported[iface] {
		return
	}
	a.reported[iface] = true
	a.opts.Metrics.interfaceError()
	a.log.V(2).Info("Interface cannot be used", "interface", iface, "err", err)
	a.opts.Events.InterfaceError(iface, err)
}

func (a *Announcer) clearError(iface string) { delete(a.reported, iface) }

// openSocket opens the kernel socket of one responder.
func openSocket(l Link, p protocol) (frameConn, error) {
	ifi, err := net.InterfaceByIndex(l.Index)
	if err != nil || ifi.Name != l.Name {
		return nil, fmt.Errorf("l2: interface %s changed while opening: %w", l.Name, ErrNoInterface)
	}
	if p == protoARP {
		return openARP(ifi)
	}
	return openNDP(ifi)
}

func wrapf(err error, format string, args ...any) error {
	return fmt.Errorf("l2: "+format+": %w", append(args, err)...)
}
