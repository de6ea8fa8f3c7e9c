package speaker

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"

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
	ReasonIPConflict     = "IPConflict"     // False: another host answers for the IP
	ReasonNoEligibleNode = "NoEligibleNode" // False: no node may announce the IP
)

// fieldManager names the speaker in the Service's managedFields.
const fieldManager = "onprem-speaker"

// conditionsFor returns the conditions node is responsible for on svc: for each ingress IP
// it owns, whether it announces it or found it in use; and, if node is the coordinator (the
// live member with the lowest name), for each IP nobody may announce, why. An IP whose owner
// is still probing gets no condition yet. It does not modify its inputs.
func conditionsFor(node string, coordinator bool, svc *corev1.Service, current map[netip.Addr]*Assignment, announced map[netip.Addr]announceState) []metav1.Condition {
	var out []metav1.Condition
	ips, _ := lbsvc.IngressIPs(svc)
	for _, ip := range ips {
		a := current[ip]
		if a == nil {
			continue
		}
		cond := metav1.Condition{Type: ConditionType(ip), ObservedGeneration: svc.Generation}
		switch st, reported := announced[ip]; {
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
			continue
		}
		out = append(out, cond)
	}
	return out
}

// processCondition writes the conditions of one queued Service; false once the queue shuts
// down.
func (c *controller) processCondition(ctx context.Context) bool {
	key, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(key)
	if err := c.writeConditions(ctx, key); err != nil {
		klog.ErrorS(err, "Update Service conditions", "service", key)
		c.queue.AddRateLimited(key)
		return true
	}
	c.queue.Forget(key)
	return true
}

// writeConditions patches the conditions of a Service that differ from what this node
// computes; the others, and the rest of the status, are left alone (a strategic merge on
// the condition type).
func (c *controller) writeConditions(ctx context.Context, key types.NamespacedName) error {
	svc, err := c.services.Services(key.Namespace).Get(key.Name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	c.mu.Lock()
	want := conditionsFor(c.node, c.coordinator, svc, c.current, c.announced)
	c.mu.Unlock()
	now := metav1.Now()
	var patch []metav1.Condition
	for _, w := range want {
		old := meta.FindStatusCondition(svc.Status.Conditions, w.Type)
		if old != nil && old.Status == w.Status && old.Reason == w.Reason && old.Message == w.Message {
			continue
		}
		w.LastTransitionTime = now
		if old != nil && old.Status == w.Status {
			w.LastTransitionTime = old.LastTransitionTime
		}
		patch = append(patch, w)
	}
	if len(patch) == 0 {
		return nil
	}
	data, err := json.Marshal(map[string]any{"status": map[string]any{"conditions": patch}})
	if err != nil {
		return err
	}
	_, err = c.client.CoreV1().Services(key.Namespace).Patch(ctx, key.Name, types.StrategicMergePatchType, data,
		metav1.PatchOptions{FieldManager: fieldManager}, "status")
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}
