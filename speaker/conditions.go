package speaker

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"

	"github.com/onprem-lb/onprem-lb/config"
	"github.com/onprem-lb/onprem-lb/lbsvc"
)

// Condition types the speaker sets on a Service, one per IP family: who announces its IP.
const (
	ConditionAnnouncedIPv4 = "onprem-lb.io/AnnouncedIPv4"
	ConditionAnnouncedIPv6 = "onprem-lb.io/AnnouncedIPv6"
)

// ConditionType returns the condition type that says who announces ip.
func ConditionType(ip netip.Addr) string {
	if ip.Is6() {
		return ConditionAnnouncedIPv6
	}
	return ConditionAnnouncedIPv4
}

// Condition reasons.
const (
	ReasonAnnounced      = "Announced"      // True: a node answers ARP/NDP for the IP
	ReasonAdvertised     = "Advertised"     // True: nodes advertise the IP over BGP (a pool announced by BGP only)
	ReasonIPConflict     = "IPConflict"     // False: another host answers for the IP
	ReasonNoEligibleNode = "NoEligibleNode" // False: no node may announce the IP
)

// fieldManager names the speaker in the Service's managedFields.
const fieldManager = "onprem-speaker"

// Condition backoff: after this node wrote a Service's conditions and another writer
// changed them back (two speakers briefly both believe they own the IP), it writes again
// only after a delay that doubles each time, from conditionBackoffBase to
// conditionBackoffMax, until its own view of the Service changes.
const (
	conditionBackoffBase = 10 * time.Millisecond
	conditionBackoffMax  = 30 * time.Second
)

// newConditionQueue returns the queue of Services whose conditions this node may have to
// write, rate-limited per Service by the condition backoff.
func newConditionQueue() workqueue.TypedRateLimitingInterface[types.NamespacedName] {
	return workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedItemExponentialFailureRateLimiter[types.NamespacedName](conditionBackoffBase, conditionBackoffMax),
		workqueue.TypedRateLimitingQueueConfig[types.NamespacedName]{Name: "conditions"})
}

// isAnnouncedType reports whether a condition type is one of the speaker's.
func isAnnouncedType(t string) bool {
	return t == ConditionAnnouncedIPv4 || t == ConditionAnnouncedIPv6
}

// conditionsFor returns what node writes on svc's conditions: set the conditions in set,
// remove the types in remove. Exactly one node writes each condition:
//   - for each ingress IP in the pools that node owns: whether it announces it or found it in
//     use (an IP whose owner is still probing gets no condition yet);
//   - if node is the coordinator (the live member with the lowest name): for each IP nobody
//     may announce, why; and it removes the speaker's conditions of every family for which
//     svc has no such IP (no longer a LoadBalancer, the family dropped, the IP out of the
//     pools or released).
//
// A LoadBalancer Service of another class is not the speaker's: nothing is written.
// Which IPs svc has and whether they are in the pools is read from svc and cfg, not from
// current, so that a Service updated before the next sync is judged on what it is now.
// It does not modify its inputs.
func conditionsFor(node string, coordinator bool, cfg *config.Config, svc *corev1.Service, current map[netip.Addr]*Assignment, announced map[netip.Addr]announceState) (set []metav1.Condition, remove []string) {
	served := lbsvc.Serves(cfg.LoadBalancerClass, svc)
	if !served && svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
		return nil, nil
	}
	has := map[string]bool{}
	var ips []netip.Addr
	if served {
		ips, _ = lbsvc.IngressIPs(svc)
	}
	for _, ip := range ips {
		if _, ok := cfg.PoolOf(ip); !ok {
			continue
		}
		has[ConditionType(ip)] = true
		if cond, ok := conditionOf(node, coordinator, cfg, svc, ip, current[ip], announced); ok {
			set = append(set, cond)
		}
	}
	if coordinator {
		for _, c := range svc.Status.Conditions {
			if isAnnouncedType(c.Type) && !has[c.Type] {
				remove = append(remove, c.Type)
			}
		}
	}
	return set, remove
}

// conditionOf returns the condition node writes for ip, assigned a (nil: not computed yet)
// under cfg, and false if it writes none.
func conditionOf(node string, coordinator bool, cfg *config.Config, svc *corev1.Service, ip netip.Addr, a *Assignment, announced map[netip.Addr]announceState) (metav1.Condition, bool) {
	cond := metav1.Condition{Type: ConditionType(ip), ObservedGeneration: svc.Generation}
	if a == nil {
		return cond, false
	}
	switch st, reported := announced[ip]; {
	case a.Owner == node && !a.Announce.L2():
		cond.Status, cond.Reason = metav1.ConditionTrue, ReasonAdvertised
		cond.Message = advertisedMessage(cfg, ip, a.Nodes)
	case a.Owner == node && reported && st.conflict == nil:
		cond.Status, cond.Reason = metav1.ConditionTrue, ReasonAnnounced
		cond.Message = fmt.Sprintf("%s is announced by node %s on %s", ip, node, st.iface)
	case a.Owner == node && reported:
		cond.Status, cond.Reason = metav1.ConditionFalse, ReasonIPConflict
		cond.Message = fmt.Sprintf("%s is already in use on the LAN by %s; node %s does not announce it", ip, st.conflict, node)
	case a.Owner == "" && coordinator:
		cond.Status, cond.Reason = metav1.ConditionFalse, ReasonNoEligibleNode
		cond.Message = fmt.Sprintf("%s is not announced: %s", ip, a.Reason)
	default:
		return cond, false
	}
	return cond, true
}

// maxListedNodes is how many nodes a condition's message names at most.
const maxListedNodes = 5

// advertisedMessage says how many nodes, which, advertise ip over BGP, and to which of cfg's
// peers: "198.18.0.200 is advertised over BGP by 2 nodes (a, b) to peers tor-a, tor-b"; for
// more than maxListedNodes, "by 7 nodes (a, b, c, d, e, ...)".
func advertisedMessage(cfg *config.Config, ip netip.Addr, nodes []string) string {
	unit := "nodes"
	if len(nodes) == 1 {
		unit = "node"
	}
	listed := strings.Join(nodes[:min(len(nodes), maxListedNodes)], ", ")
	if len(nodes) > maxListedNodes {
		listed += ", ..."
	}
	msg := fmt.Sprintf("%s is advertised over BGP by %d %s (%s)", ip, len(nodes), unit, listed)
	if peers := peerNames(cfg, ip); len(peers) > 0 {
		msg += " to peers " + strings.Join(peers, ", ")
	}
	return msg
}

// peerNames are the names of the peers cfg advertises ip to: those its pool's
// bgpAdvertisement names, else every peer.
func peerNames(cfg *config.Config, ip netip.Addr) []string {
	if cfg.BGP == nil {
		return nil
	}
	if pool, ok := cfg.PoolOf(ip); ok && len(pool.BGPAdvertisement.Peers) > 0 {
		return pool.BGPAdvertisement.Peers
	}
	names := make([]string, len(cfg.BGP.Peers))
	for i, p := range cfg.BGP.Peers {
		names[i] = p.Name
	}
	return names
}

// AnnouncedBy returns the node that announces ip, as svc's condition (conditionOf) says.
func AnnouncedBy(svc *corev1.Service, ip netip.Addr) (string, bool) {
	c := meta.FindStatusCondition(svc.Status.Conditions, ConditionType(ip))
	if c == nil || c.Status != metav1.ConditionTrue || c.Reason != ReasonAnnounced || !strings.HasPrefix(c.Message, ip.String()+" ") {
		return "", false
	}
	_, after, _ := strings.Cut(c.Message, " by node ")
	node, _, _ := strings.Cut(after, " ")
	return node, node != ""
}

// conditionPatch returns what must change in existing for it to say what set and remove
// say: the conditions of set that differ in status, reason or message (with
// lastTransitionTime now if the status changes, else kept), and the types of remove that
// are present. Both empty: nothing to write.
func conditionPatch(existing, set []metav1.Condition, remove []string, now metav1.Time) ([]metav1.Condition, []string) {
	var patch []metav1.Condition
	for _, w := range set {
		old := meta.FindStatusCondition(existing, w.Type)
		if old != nil && old.Status == w.Status && old.Reason == w.Reason && old.Message == w.Message {
			continue
		}
		w.LastTransitionTime = now
		if old != nil && old.Status == w.Status {
			w.LastTransitionTime = old.LastTransitionTime
		}
		patch = append(patch, w)
	}
	var gone []string
	for _, typ := range remove {
		if meta.FindStatusCondition(existing, typ) != nil {
			gone = append(gone, typ)
		}
	}
	return patch, gone
}

// plan returns the condition changes this node would write on svc now.
func (c *controller) plan(svc *corev1.Service) ([]metav1.Condition, []string) {
	c.mu.Lock()
	set, remove := conditionsFor(c.node, c.coordinator, c.cfg.Load(), svc, c.current, c.announced)
	c.mu.Unlock()
	return conditionPatch(svc.Status.Conditions, set, remove, metav1.Now())
}

// serviceChanged queues a Service that another writer (or the CCM) changed so that its
// conditions no longer say what this node would write, after the Service's backoff: a
// Service whose conditions two speakers keep rewriting is written ever more rarely. This
// node's own writes match its view and queue nothing.
func (c *controller) serviceChanged(obj any) {
	svc, ok := obj.(*corev1.Service)
	if !ok {
		return
	}
	if set, remove := c.plan(svc); len(set) > 0 || len(remove) > 0 {
		c.queue.AddRateLimited(keyOf(svc))
	}
}

// requeue queues Services whose conditions may change because this node's view of them
// changed (ownership, what the announcer did): at once, their backoff reset.
func (c *controller) requeue(keys []types.NamespacedName) {
	for _, key := range keys {
		c.queue.Forget(key)
		c.queue.Add(key)
	}
}

// processCondition writes the conditions of one queued Service; false once the queue shuts
// down. A Service that needed no write has converged: its backoff is reset.
func (c *controller) processCondition(ctx context.Context) bool {
	key, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(key)
	wrote, err := c.writeConditions(ctx, key)
	switch {
	case err != nil:
		klog.ErrorS(err, "Update Service conditions", "service", key)
		c.queue.AddRateLimited(key)
	case !wrote:
		c.queue.Forget(key)
	}
	return true
}

// writeConditions patches the conditions of a Service that differ from what this node
// computes, and removes those it must remove; the others, and the rest of the status, are
// left alone (a strategic merge on the condition type). It reports whether it wrote.
func (c *controller) writeConditions(ctx context.Context, key types.NamespacedName) (bool, error) {
	svc, err := c.services.Services(key.Namespace).Get(key.Name)
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	set, remove := c.plan(svc)
	if len(set) == 0 && len(remove) == 0 {
		return false, nil
	}
	conditions := make([]any, 0, len(set)+len(remove))
	for _, cond := range set {
		conditions = append(conditions, cond)
	}
	for _, typ := range remove {
		conditions = append(conditions, map[string]string{"type": typ, "$patch": "delete"})
	}
	data, err := json.Marshal(map[string]any{"status": map[string]any{"conditions": conditions}})
	if err != nil {
		return false, err
	}
	_, err = c.client.CoreV1().Services(key.Namespace).Patch(ctx, key.Name, types.StrategicMergePatchType, data,
		metav1.PatchOptions{FieldManager: fieldManager}, "status")
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	for _, e := range advertisingEvents(svc.Status.Conditions, set, remove) {
		c.recorder.Event(svc, e.eventType, e.reason, e.message)
	}
	return true, nil
}

// Events on a Service when its IP starts or stops being advertised over BGP: one per IP and
// change, by the node that writes the condition, however many nodes advertise it.
const (
	EventAdvertised    = "Advertised"    // Normal: nodes started advertising the IP over BGP
	EventNotAdvertised = "NotAdvertised" // Warning: no node advertises the IP any more (why); Normal: the IP was released
)

// event is one event to record on a Service.
type event struct {
	eventType, reason, message string
}

// advertisingEvents are the events for a write of set and remove over the conditions
// existing: Advertised for each condition that starts to say Advertised, NotAdvertised for
// each that stops (with the new condition's message, or, removed, because the IP left).
func advertisingEvents(existing, set []metav1.Condition, remove []string) []event {
	var events []event
	for _, w := range set {
		old := meta.FindStatusCondition(existing, w.Type)
		was := old != nil && old.Reason == ReasonAdvertised
		switch is := w.Reason == ReasonAdvertised; {
		case is && !was:
			events = append(events, event{corev1.EventTypeNormal, EventAdvertised, w.Message})
		case was && !is:
			events = append(events, event{corev1.EventTypeWarning, EventNotAdvertised, w.Message})
		}
	}
	for _, typ := range remove {
		if old := meta.FindStatusCondition(existing, typ); old != nil && old.Reason == ReasonAdvertised {
			ip, _, _ := strings.Cut(old.Message, " ")
			events = append(events, event{corev1.EventTypeNormal, EventNotAdvertised, ip + " is no longer advertised over BGP: it left the Service or the pools"})
		}
	}
	return events
}
