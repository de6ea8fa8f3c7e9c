package speaker

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	coreinformers "k8s.io/client-go/informers/core/v1"
	discoveryinformers "k8s.io/client-go/informers/discovery/v1"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"

	"github.com/onprem-lb/onprem-lb/config"
	"github.com/onprem-lb/onprem-lb/speaker/bgp"
	"github.com/onprem-lb/onprem-lb/speaker/dataplane"
	"github.com/onprem-lb/onprem-lb/speaker/health"
	"github.com/onprem-lb/onprem-lb/speaker/l2"
	"github.com/onprem-lb/onprem-lb/speaker/membership"
)

// Event reasons the speaker records on Services.
const (
	EventAnnouncing = "Announcing"     // Normal: a node started answering ARP/NDP for the Service's IP
	EventIPConflict = "IPConflict"     // Warning: another host already answers for the IP; not announced
	EventNotServed  = "IPNotAnnounced" // Warning: an IP in status that no speaker announces (outside the pools, not an IP)
)

// members is what the controller needs of membership.Membership.
type members interface {
	Members() []membership.Member
	Changed() <-chan struct{}
	LeftGracefully(name string, within time.Duration) bool
}

// announcer is what the controller needs of l2.Announcer.
type announcer interface {
	Sync(desired map[netip.Addr]l2.Target)
}

// forwarder is what the controller needs of dataplane.Dataplane.
type forwarder interface {
	SetHandovers(h dataplane.Handovers)
	Sync(services []dataplane.Service) error
}

// bgpSyncer is what the controller needs of bgpSpeaker.
type bgpSyncer interface {
	sync(ctx context.Context, cfg *config.Config, self *corev1.Node, routes []bgp.Route, now time.Time) (time.Duration, error)
	// withdrawn counts n routes withdrawn for reason (a Withdraw* constant).
	withdrawn(reason string, n int)
}

// hcnpServer is what the controller needs of health.HCNPServer.
type hcnpServer interface {
	SyncServices(want map[health.ServiceKey]health.ServiceHealth)
}

// prober is what the controller needs of health.Prober.
type prober interface {
	SetTargets(t health.Targets)
	ProxyHealthy(node string) bool
	LocalHealthy(svc health.ServiceKey, node string) bool
	LocalConfirmed(svc health.ServiceKey, node string) bool
}

// resyncPeriod is how often the controller recomputes ownership whatever happened.
const resyncPeriod = 30 * time.Second

// handoverWindow is how long, after a node left gracefully, the VIPs taken over from it keep
// forwarding their open connections to it (see dataplane.Handover); from a node that is still
// a member (the VIP moved for another reason) they do as long as this node owns the VIP.
const handoverWindow = 2 * time.Minute

// controller computes which VIPs this node owns from the informers and the members, hands
// them to the announcer, and reports on the Services (events, conditions).
type controller struct {
	node     string
	client   kubernetes.Interface
	cfg      atomic.Pointer[config.Config]
	members  members
	announce announcer
	prober   prober
	forward  forwarder
	hcnp     hcnpServer
	bgp      bgpSyncer
	recorder record.EventRecorder
	metrics  *Metrics

	factory  informers.SharedInformerFactory
	services corelisters.ServiceLister
	slices   cache.Indexer
	nodes    corelisters.NodeLister
	synced   []cache.InformerSynced
	trigger  chan struct{}
	queue    workqueue.TypedRateLimitingInterface[types.NamespacedName]

	// peerMACs are the MACs the live members published; a probe answered from one of them is
	// a handover, not a conflict.
	peerMACs atomic.Pointer[map[string]bool]

	mu sync.Mutex
	// current are the last assignments, by VIP.
	current map[netip.Addr]*Assignment
	// announced says, for each VIP the announcer reported on, what it does.
	announced map[netip.Addr]announceState
	// skipped are the VIPs of the last sync that no speaker announces, already reported.
	skipped map[Skipped]bool
	// coordinator is true when this node is the live member with the lowest name: it writes
	// the conditions of the VIPs nobody may announce.
	coordinator bool
	// handovers are the VIPs this node took over from a node still up, by VIP: the node.
	handovers map[netip.Addr]string

	// forwardingHealthy is false while the last iptables sync failed.
	forwardingHealthy atomic.Bool

	// damper holds back the routes withdrawn a moment ago; only sync uses it.
	damper damper
}

// announceState is what the announcer last reported for a VIP.
type announceState struct {
	iface    string
	conflict net.HardwareAddr // nil unless another host answers for the VIP
}

// serviceIndex indexes EndpointSlices by the namespace/name of their Service.
const serviceIndex = "service"

func newController(node string, client kubernetes.Interface, cfg *config.Config, m members, recorder record.EventRecorder, metrics *Metrics) *controller {
	c := &controller{
		node:      node,
		client:    client,
		members:   m,
		recorder:  recorder,
		metrics:   metrics,
		trigger:   make(chan struct{}, 1),
		queue:     newConditionQueue(),
		current:   map[netip.Addr]*Assignment{},
		announced: map[netip.Addr]announceState{},
		skipped:   map[Skipped]bool{},
	}
	c.cfg.Store(cfg)
	c.peerMACs.Store(&map[string]bool{})
	c.factory = informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTransform(slim))
	kick := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { c.kick() },
		UpdateFunc: func(any, any) { c.kick() },
		DeleteFunc: func(any) { c.kick() },
	}
	// Services and EndpointSlices without the factory's namespace index (the speaker looks
	// them up by key or by Service): with 10,000 Services it holds 3.5 MB of key sets.
	svcInformer := c.factory.InformerFor(&corev1.Service{}, func(cl kubernetes.Interface, resync time.Duration) cache.SharedIndexInformer {
		return coreinformers.NewServiceInformer(cl, metav1.NamespaceAll, resync, cache.Indexers{})
	})
	// A Service's status may change under this node (another speaker wrote a condition this
	// node disagrees with, e.g. after ownership moved back here while its cache was stale;
	// the CCM released its IP): every add and update also rechecks its conditions.
	svcInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { c.kick(); c.serviceChanged(obj) },
		UpdateFunc: func(_, obj any) { c.kick(); c.serviceChanged(obj) },
		DeleteFunc: func(obj any) { c.kick(); c.serviceDeleted(obj) },
	})
	c.services = corelisters.NewServiceLister(svcInformer.GetIndexer())
	nodeInformer := c.factory.Core().V1().Nodes()
	nodeInformer.Informer().AddEventHandler(kick)
	c.nodes = nodeInformer.Lister()
	sliceInformer := c.factory.InformerFor(&discoveryv1.EndpointSlice{}, func(cl kubernetes.Interface, resync time.Duration) cache.SharedIndexInformer {
		return discoveryinformers.NewEndpointSliceInformer(cl, metav1.NamespaceAll, resync, cache.Indexers{serviceIndex: sliceService})
	})
	sliceInformer.AddEventHandler(kick)
	c.slices = sliceInformer.GetIndexer()
	c.synced = []cache.InformerSynced{svcInformer.HasSynced, nodeInformer.Informer().HasSynced, sliceInformer.HasSynced}
	return c
}

// slim drops from cached objects what the speaker never reads and what makes up much of
// their size: managed fields and annotations of every object (the speaker reads no
// annotation, and writes Services by patch, never by update); of a Service also its labels
// and the spec fields of the cluster side (selector, cluster IPs, IP families, external IPs
// and name, internal traffic policy and distribution, node port allocation, unready
// addresses); of an EndpointSlice also its owner references, every label but the Service's
// name, and each endpoint's target reference, hostname and hints. With 10,000 Services and
// their EndpointSlices the metadata is most of the speaker's memory.
func slim(obj any) (any, error) {
	if m, ok := obj.(metav1.Object); ok {
		m.SetManagedFields(nil)
		m.SetAnnotations(nil)
	}
	if s, ok := obj.(*corev1.Service); ok {
		s.Labels = nil
		sp := &s.Spec
		sp.Selector, sp.ClusterIP, sp.ClusterIPs, sp.ExternalIPs, sp.ExternalName = nil, "", nil, nil, ""
		sp.IPFamilies, sp.IPFamilyPolicy, sp.InternalTrafficPolicy, sp.TrafficDistribution = nil, nil, nil, nil
		sp.AllocateLoadBalancerNodePorts, sp.PublishNotReadyAddresses = nil, false
	}
	if s, ok := obj.(*discoveryv1.EndpointSlice); ok {
		s.OwnerReferences = nil
		s.GenerateName = ""
		if name, ok := s.Labels[discoveryv1.LabelServiceName]; ok {
			s.Labels = map[string]string{discoveryv1.LabelServiceName: name}
		} else {
			s.Labels = nil
		}
		for i := range s.Endpoints {
			e := &s.Endpoints[i]
			e.TargetRef, e.Hostname, e.Hints, e.DeprecatedTopology = nil, nil, nil, nil
		}
	}
	return obj, nil
}

// sliceService indexes an EndpointSlice under namespace/name of its Service.
func sliceService(obj any) ([]string, error) {
	s, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return nil, nil
	}
	name := s.Labels[discoveryv1.LabelServiceName]
	if name == "" {
		return nil, nil
	}
	return []string{s.Namespace + "/" + name}, nil
}

// startInformers starts the informers and waits for their caches.
func (c *controller) startInformers(ctx context.Context) error {
	c.factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), c.synced...) {
		return fmt.Errorf("speaker: informer caches never synced: %w", ctx.Err())
	}
	return nil
}

// kick asks for a recomputation; many kicks before it runs make one.
func (c *controller) kick() {
	select {
	case c.trigger <- struct{}{}:
	default:
	}
}

// setConfig swaps in a new pool file.
func (c *controller) setConfig(cfg *config.Config) {
	c.cfg.Store(cfg)
	c.kick()
}

// run recomputes ownership on every change until ctx ends; condition writes run beside it.
// It must be called after startInformers, once membership has converged.
func (c *controller) run(ctx context.Context, workers int) {
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for c.processCondition(ctx) {
			}
		})
	}
	defer func() {
		c.queue.ShutDown()
		wg.Wait()
	}()
	tick := time.NewTicker(resyncPeriod)
	defer tick.Stop()
	c.sync()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.trigger:
		case <-c.members.Changed():
		case <-tick.C:
		}
		c.sync()
	}
}

// sync computes the assignments, gives this node's VIPs to the announcer and queues the
// Services whose condition may change.
func (c *controller) sync() {
	in, svcs, nodeList, err := c.inputs()
	if err != nil {
		klog.ErrorS(err, "Read the ownership inputs")
		return
	}
	c.prober.SetTargets(healthTargets(in.Config, svcs, c.endpoints, nodeList))
	assignments, skipped := Assign(in)
	c.mu.Lock()
	step := computeSync(c.node, in.Members, c.current, assignments, skipped, c.skipped)
	step.handovers = nextHandovers(c.node, assignments, c.handovers, c.previousOwner, c.upForHandover(in.Members))
	c.mu.Unlock()
	c.apply(in, svcs, step)
}

// previousOwner returns the node that owned ip before this sync assigned a: the last
// assignment's owner, or, for an IP this speaker has not assigned yet (it just started), the
// node the Service's condition names. c.mu is held.
func (c *controller) previousOwner(ip netip.Addr, a *Assignment) string {
	if old := c.current[ip]; old != nil {
		return old.Owner
	}
	for _, key := range a.Services {
		if svc, err := c.services.Services(key.Namespace).Get(key.Name); err == nil {
			if node, ok := AnnouncedBy(svc, ip); ok {
				return node
			}
		}
	}
	return ""
}

// upForHandover returns whether a node, given the live members, may still hold open
// connections of a VIP it owned: it is a member, or left gracefully within handoverWindow.
func (c *controller) upForHandover(members []string) func(node string) bool {
	live := make(map[string]bool, len(members))
	for _, m := range members {
		live[m] = true
	}
	return func(node string) bool {
		return live[node] || c.members.LeftGracefully(node, handoverWindow)
	}
}

// nextHandovers returns the handovers of node after a sync that assigned assignments: those
// it had for VIPs it still owns from a node still up, and one for each VIP it took over from
// another node (previousOwner) that is up (not one that died: its connections died with it,
// and a reset from here tells their clients sooner than silence).
func nextHandovers(node string, assignments map[netip.Addr]*Assignment, had map[netip.Addr]string, previousOwner func(netip.Addr, *Assignment) string, up func(node string) bool) map[netip.Addr]string {
	next := map[netip.Addr]string{}
	for ip, a := range assignments {
		if a.Owner != node {
			continue
		}
		from, ok := had[ip]
		if !ok {
			from = previousOwner(ip, a)
		}
		if from != "" && from != node && up(from) {
			next[ip] = from
		}
	}
	return next
}

// inputs reads what ownership depends on: the live members (and the MACs they publish,
// which it makes current), the Services and the Nodes of the informer caches.
func (c *controller) inputs() (Inputs, []*corev1.Service, []*corev1.Node, error) {
	mems := c.members.Members()
	names := make([]string, len(mems))
	macs := map[string]bool{}
	for i, m := range mems {
		names[i] = m.Name
		if m.Name != c.node {
			for _, mac := range DecodeMACs(m.Meta) {
				macs[mac.String()] = true
			}
		}
	}
	c.peerMACs.Store(&macs)
	svcs, err := c.services.List(labels.Everything())
	if err != nil {
		return Inputs{}, nil, nil, fmt.Errorf("list Services: %w", err)
	}
	nodeList, err := c.nodes.List(labels.Everything())
	if err != nil {
		return Inputs{}, nil, nil, fmt.Errorf("list Nodes: %w", err)
	}
	nodes := make(map[string]*corev1.Node, len(nodeList))
	for _, n := range nodeList {
		nodes[n.Name] = n
	}
	return Inputs{
		Config:       c.cfg.Load(),
		Services:     svcs,
		Endpoints:    c.endpoints,
		Nodes:        nodes,
		Members:      names,
		ProxyHealthy: c.prober.ProxyHealthy,
		LocalHealthy: func(svc types.NamespacedName, node string) bool {
			return c.prober.LocalHealthy(health.ServiceKey{Namespace: svc.Namespace, Name: svc.Name}, node)
		},
		LocalConfirmed: func(svc types.NamespacedName, node string) bool {
			return c.prober.LocalConfirmed(health.ServiceKey{Namespace: svc.Namespace, Name: svc.Name}, node)
		},
	}, svcs, nodeList, nil
}

// syncStep is what one sync changes, computed by computeSync and applied by apply.
type syncStep struct {
	assignments map[netip.Addr]*Assignment
	// desired are the VIPs this node owns of pools announced by ARP/NDP, for the announcer.
	desired map[netip.Addr]l2.Target
	// coordinator: this node is the live member with the lowest name.
	coordinator bool
	// changed are the Services whose assignment changed or went away (owner, reason, how it
	// is announced, its Services, and for BGP only the advertising nodes): their conditions may.
	changed []types.NamespacedName
	// changes counts the VIPs this node took or gave up.
	changes int
	// skipped are the skipped VIPs, fresh those not reported by the previous sync.
	skipped map[Skipped]bool
	fresh   []Skipped
	// handovers are the VIPs this node took over from a node still up (nextHandovers).
	handovers map[netip.Addr]string
}

// computeSync returns what node does after a sync that assigned assignments and skipped
// skipped, given the previous assignments and skipped VIPs and the live members. It does
// not modify its inputs.
func computeSync(node string, members []string, previous, assignments map[netip.Addr]*Assignment, skipped []Skipped, wasSkipped map[Skipped]bool) syncStep {
	st := syncStep{
		assignments: assignments,
		desired:     map[netip.Addr]l2.Target{},
		coordinator: len(members) > 0 && slices.Min(members) == node,
		skipped:     make(map[Skipped]bool, len(skipped)),
	}
	for ip, a := range assignments {
		if a.Owner == node && a.Announce.L2() {
			st.desired[ip] = l2.Target{Interfaces: a.Interfaces}
		}
		old := previous[ip]
		// Only a condition of an IP announced by BGP alone names its nodes (conditionOf).
		if old == nil || old.Owner != a.Owner || old.Reason != a.Reason || old.Announce != a.Announce ||
			(!a.Announce.L2() && !slices.Equal(old.Nodes, a.Nodes)) || !slices.Equal(old.Services, a.Services) {
			st.changed = append(st.changed, a.Services...)
		}
		if (old != nil && old.Owner == node) != (a.Owner == node) {
			st.changes++
		}
	}
	for ip, old := range previous {
		if _, ok := assignments[ip]; !ok {
			st.changed = append(st.changed, old.Services...) // the coordinator removes their conditions
			if old.Owner == node {
				st.changes++
			}
		}
	}
	for _, s := range skipped {
		if !wasSkipped[s] {
			st.fresh = append(st.fresh, s)
		}
		st.skipped[s] = true
	}
	return st
}

// apply makes the step current: this node's state, the announcer and the dataplane, the
// metrics, the conditions to write and the events of fresh skipped VIPs.
func (c *controller) apply(in Inputs, svcs []*corev1.Service, st syncStep) {
	c.mu.Lock()
	c.current = st.assignments
	// What the announcer reported for VIPs this node no longer owns is over (it reports
	// Withdrawn only for VIPs it announced, not for those it found in conflict).
	for ip := range c.announced {
		if _, ok := st.desired[ip]; !ok {
			delete(c.announced, ip)
		}
	}
	becameCoordinator := st.coordinator && !c.coordinator
	c.coordinator = st.coordinator
	c.skipped = st.skipped
	fresh := 0
	for ip, from := range st.handovers {
		if c.handovers[ip] != from {
			fresh++
		}
	}
	if fresh > 0 {
		klog.V(2).InfoS("Forwarding the open connections of VIPs taken over to their previous owners", "vips", fresh, "total", len(st.handovers))
		// The window of a node that left ends without a sync of its own.
		time.AfterFunc(handoverWindow+time.Second, c.kick)
	}
	c.handovers = st.handovers
	c.mu.Unlock()

	// The assignments are current before the announcer can report on them (its events name
	// the Services of each VIP). With dataplane iptables the rules must be in place before
	// the VIP is announced; with kube-proxy the guard is not worth delaying the announcement
	// by an iptables-restore. A VIP taken over from a node that is up needs its handover in
	// place before the clients move here, or their open connections are reset in between;
	// that node still answers for it meanwhile, so announcing a little later costs nothing.
	c.forward.SetHandovers(c.handoversOf(st.handovers, in.Nodes))
	if in.Config.Dataplane == config.DataplaneIPTables || fresh > 0 {
		c.syncForwarding(in.Config, svcs)
		c.announce.Sync(st.desired)
	} else {
		c.announce.Sync(st.desired)
		c.syncForwarding(in.Config, svcs)
	}
	c.syncBGP(in, st.assignments)

	c.metrics.members.Set(float64(len(in.Members)))
	c.metrics.owned.Set(float64(len(st.desired)))
	c.metrics.ownershipChanges.Add(float64(st.changes))
	c.metrics.handovers.Set(float64(len(st.handovers)))
	if st.changes > 0 {
		klog.V(2).InfoS("Ownership changed", "node", c.node, "owned", len(st.desired), "changes", st.changes, "members", len(in.Members))
	}
	changed := st.changed
	if becameCoordinator {
		// The coordinator's conditions (no eligible node, removals) are now this node's.
		for _, svc := range svcs {
			if set, remove := c.plan(svc); len(set) > 0 || len(remove) > 0 {
				changed = append(changed, keyOf(svc))
			}
		}
	}
	c.requeue(changed)
	for _, s := range st.fresh {
		klog.InfoS("Not announcing an IP", "service", s.Service, "ip", s.IP, "reason", s.Reason)
		if svc, err := c.services.Services(s.Service.Namespace).Get(s.Service.Name); err == nil {
			c.recorder.Eventf(svc, corev1.EventTypeWarning, EventNotServed, "%s is not announced: %s", s.IP, s.Reason)
		}
	}
}

// syncForwarding programs the iptables dataplane (with dataplane: iptables, the forwarding
// and the healthCheckNodePorts; with kube-proxy, the guard of the VIPs it forwards). A
// failed sync is retried a second later.
func (c *controller) syncForwarding(cfg *config.Config, svcs []*corev1.Service) {
	services, hcnp := forwarding(cfg, svcs, c.endpoints, c.node)
	c.hcnp.SyncServices(hcnp)
	if err := c.forward.Sync(services); err != nil {
		c.forwardingHealthy.Store(false)
		klog.ErrorS(err, "Program the iptables dataplane; retrying in a second")
		time.AfterFunc(time.Second, c.kick)
		return
	}
	c.forwardingHealthy.Store(true)
}

// isLocal reports whether a Service's externalTrafficPolicy is Local.
func (c *controller) isLocal(key types.NamespacedName) bool {
	svc, err := c.services.Services(key.Namespace).Get(key.Name)
	return err == nil && svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal
}

// bgpRetry is how long after a failed BGP sync (a password file unreadable, ...) the
// controller tries again.
const bgpRetry = 5 * time.Second

// syncBGP gives the BGP engine the pool file, this node and the routes it advertises now
// (those withdrawn a moment ago held back by the damper). A failure is retried.
func (c *controller) syncBGP(in Inputs, assignments map[netip.Addr]*Assignment) {
	self := in.Nodes[c.node]
	if c.bgp == nil || self == nil {
		return
	}
	now := time.Now()
	released := func(p netip.Prefix) bool { return len(advertisedIn(p, assignments)) == 0 }
	want, held, gone := c.damper.filter(now, routes(c.node, in.Config, assignments), released)
	for reason, n := range withdrawReasons(gone, assignments, excluded(self), c.isLocal) {
		c.bgp.withdrawn(reason, n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	draining, err := c.bgp.sync(ctx, in.Config, self, want, now)
	if err != nil {
		klog.ErrorS(err, "BGP not fully configured; retrying", "after", bgpRetry)
		time.AfterFunc(bgpRetry, c.kick)
	}
	for _, wait := range []time.Duration{held, draining} {
		if wait > 0 {
			time.AfterFunc(wait, c.kick)
		}
	}
}

// handoversOf returns what the dataplane needs of the handovers: each VIP with its previous
// owner's InternalIP of the VIP's family (none: not forwarded), and the MACs of the peers.
func (c *controller) handoversOf(handovers map[netip.Addr]string, nodes map[string]*corev1.Node) dataplane.Handovers {
	var h dataplane.Handovers
	for ip, from := range handovers {
		if n := nodes[from]; n != nil {
			if to, ok := nodeIP(n, ip.Is4()); ok {
				h.VIPs = append(h.VIPs, dataplane.Handover{VIP: ip, To: to})
			}
		}
	}
	for mac := range *c.peerMACs.Load() {
		if hw, err := net.ParseMAC(mac); err == nil {
			h.Peers = append(h.Peers, hw)
		}
	}
	return h
}

// endpoints returns the EndpointSlices of a Service from the informer cache.
func (c *controller) endpoints(svc types.NamespacedName) []*discoveryv1.EndpointSlice {
	objs, err := c.slices.ByIndex(serviceIndex, svc.String())
	if err != nil {
		return nil
	}
	out := make([]*discoveryv1.EndpointSlice, 0, len(objs))
	for _, o := range objs {
		if s, ok := o.(*discoveryv1.EndpointSlice); ok {
			out = append(out, s)
		}
	}
	return out
}

// isPeerMAC reports whether mac belongs to another live speaker.
func (c *controller) isPeerMAC(mac net.HardwareAddr) bool {
	return (*c.peerMACs.Load())[mac.String()]
}

// peers returns the addresses of the other nodes, of the family of self, for membership to
// join: their InternalIPs from the Node objects.
func (c *controller) peers(self netip.Addr) []netip.Addr {
	nodeList, err := c.nodes.List(labels.Everything())
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, n := range nodeList {
		if n.Name == c.node {
			continue
		}
		if ip, ok := nodeIP(n, self.Is4()); ok {
			out = append(out, ip)
		}
	}
	return out
}

// nodeIP returns the first InternalIP of n of the given family.
func nodeIP(n *corev1.Node, ipv4 bool) (netip.Addr, bool) {
	for _, a := range n.Status.Addresses {
		if a.Type != corev1.NodeInternalIP {
			continue
		}
		if ip, err := netip.ParseAddr(a.Address); err == nil && ip.Is4() == ipv4 {
			return ip, true
		}
	}
	return netip.Addr{}, false
}

// nodeIPs returns n's first IPv4 and first IPv6 InternalIP, IPv4 first, those it has.
func nodeIPs(n *corev1.Node) []netip.Addr {
	var ips []netip.Addr
	for _, ipv4 := range []bool{true, false} {
		if ip, ok := nodeIP(n, ipv4); ok {
			ips = append(ips, ip)
		}
	}
	return ips
}

// The announcer's events (l2.Events). They are called from its goroutines and do not block.

// Announcing records that this node answers for ip on iface.
func (c *controller) Announcing(ip netip.Addr, iface string) {
	c.report(ip, announceState{iface: iface}, corev1.EventTypeNormal, EventAnnouncing,
		"Node %s announces %s on %s", c.node, ip, iface)
}

// Withdrawn records that this node no longer answers for ip on iface.
func (c *controller) Withdrawn(ip netip.Addr, iface string) {
	c.mu.Lock()
	delete(c.announced, ip)
	c.mu.Unlock()
	klog.V(2).InfoS("Withdrawn", "ip", ip, "interface", iface)
}

// Conflict records that another host answers for ip, so this node does not.
func (c *controller) Conflict(ip netip.Addr, iface string, mac net.HardwareAddr) {
	c.report(ip, announceState{iface: iface, conflict: mac}, corev1.EventTypeWarning, EventIPConflict,
		"%s is already in use on the LAN by %s (seen from node %s on %s): not announced; probing again", ip, mac, c.node, iface)
}

// InterfaceError logs a problem with an interface; the announcer retries.
func (c *controller) InterfaceError(iface string, err error) {
	klog.ErrorS(err, "Interface unusable for announcing", "interface", iface)
}

// report keeps what the announcer did for ip, records an event on each of its Services and
// queues their conditions.
func (c *controller) report(ip netip.Addr, st announceState, eventType, reason, format string, args ...any) {
	c.mu.Lock()
	c.announced[ip] = st
	var keys []types.NamespacedName
	if a := c.current[ip]; a != nil {
		keys = a.Services
	}
	c.mu.Unlock()
	msg := fmt.Sprintf(format, args...)
	klog.InfoS(msg, "ip", ip, "interface", st.iface)
	for _, key := range keys {
		if svc, err := c.services.Services(key.Namespace).Get(key.Name); err == nil {
			c.recorder.Event(svc, eventType, reason, msg)
		}
	}
	c.requeue(keys)
}

// serviceDeleted forgets the backoff of a deleted Service.
func (c *controller) serviceDeleted(obj any) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	if svc, ok := obj.(*corev1.Service); ok {
		c.queue.Forget(keyOf(svc))
	}
}
