package lab

import (
	"context"
	"fmt"
	"net/netip"
	"runtime"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
)

// Node is a node namespace with either a real kubelet (Options.Kubelets) or a Node object
// the lab keeps Ready for it, as a kubelet would.
type Node struct {
	*Host
	Index     int // from 1
	PodCIDRs  []netip.Prefix
	KubeProxy *Process // nil when the lab runs without kube-proxy
	// Containerd and Kubelet run a real node (Options.Kubelets); nil otherwise.
	Containerd, Kubelet *Process

	mounts *Process // holds a real node's mount namespace

	pods int // pod addresses handed out so far; guarded by Lab.mu
}

// heartbeatEvery is how often the lab renews each node's Lease and Ready condition.
const heartbeatEvery = 10 * time.Second

func (l *Lab) registerNodes(ctx context.Context) error {
	for _, n := range l.Nodes {
		if err := l.registerNode(ctx, n); err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
	}
	hbCtx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		t := time.NewTicker(heartbeatEvery)
		defer t.Stop()
		for {
			select {
			case <-hbCtx.Done():
				return
			case <-t.C:
				for _, n := range l.Nodes {
					if err := l.heartbeat(hbCtx, n); err != nil && hbCtx.Err() == nil {
						l.opts.Logf("lab: heartbeat of %s: %v", n.Name, err)
					}
				}
			}
		}
	}()
	return nil
}

func (l *Lab) registerNode(ctx context.Context, n *Node) error {
	cidrs := make([]string, len(n.PodCIDRs))
	for i, c := range n.PodCIDRs {
		cidrs[i] = c.String()
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: n.Name,
			Labels: map[string]string{
				corev1.LabelHostname: n.Name, corev1.LabelOSStable: "linux", corev1.LabelArchStable: runtime.GOARCH,
			},
		},
		Spec: corev1.NodeSpec{PodCIDR: cidrs[0], PodCIDRs: cidrs},
	}
	created, err := l.Client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("2"),
		corev1.ResourceMemory: resource.MustParse("8Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	created.Status = corev1.NodeStatus{
		Capacity:    capacity,
		Allocatable: capacity,
		Phase:       corev1.NodeRunning,
		Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: n.IPv4.String()},
			{Type: corev1.NodeInternalIP, Address: n.IPv6.String()},
			{Type: corev1.NodeHostName, Address: n.Name},
		},
		NodeInfo: corev1.NodeSystemInfo{
			KubeletVersion: "v1.36.3", OperatingSystem: "linux", Architecture: runtime.GOARCH,
			ContainerRuntimeVersion: "onprem-lb-lab://1",
		},
		Conditions: nodeConditions(time.Now()),
	}
	if _, err := l.Client.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		return err
	}
	lease := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: n.Name, Namespace: corev1.NamespaceNodeLease},
		Spec: coordinationv1.LeaseSpec{
			HolderIdentity:       ptr.To(n.Name),
			LeaseDurationSeconds: ptr.To[int32](40),
			RenewTime:            &metav1.MicroTime{Time: time.Now()},
		},
	}
	_, err = l.Client.CoordinationV1().Leases(corev1.NamespaceNodeLease).Create(ctx, lease, metav1.CreateOptions{})
	return err
}

// nodeConditions are a healthy kubelet's conditions, last heard from at now.
func nodeConditions(now time.Time) []corev1.NodeCondition {
	t := metav1.NewTime(now)
	cond := func(typ corev1.NodeConditionType, status corev1.ConditionStatus, reason string) corev1.NodeCondition {
		return corev1.NodeCondition{Type: typ, Status: status, Reason: reason, LastHeartbeatTime: t, LastTransitionTime: t}
	}
	return []corev1.NodeCondition{
		cond(corev1.NodeReady, corev1.ConditionTrue, "KubeletReady"),
		cond(corev1.NodeMemoryPressure, corev1.ConditionFalse, "KubeletHasSufficientMemory"),
		cond(corev1.NodeDiskPressure, corev1.ConditionFalse, "KubeletHasNoDiskPressure"),
		cond(corev1.NodePIDPressure, corev1.ConditionFalse, "KubeletHasSufficientPID"),
	}
}

// heartbeat renews n's Lease and the heartbeat time of its conditions, keeping transitions.
func (l *Lab) heartbeat(ctx context.Context, n *Node) error {
	now := time.Now()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		node, err := l.Client.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for i := range node.Status.Conditions {
			node.Status.Conditions[i].LastHeartbeatTime = metav1.NewTime(now)
		}
		_, err = l.Client.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return err
	}
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		leases := l.Client.CoordinationV1().Leases(corev1.NamespaceNodeLease)
		lease, err := leases.Get(ctx, n.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		lease.Spec.RenewTime = &metav1.MicroTime{Time: now}
		_, err = leases.Update(ctx, lease, metav1.UpdateOptions{})
		return err
	})
}
