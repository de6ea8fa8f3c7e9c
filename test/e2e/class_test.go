package e2e

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// TestLoadBalancerClass runs the CCM with a loadBalancerClass: Services of that class are
// served by its own controller (finalizer, status, release), the others are left alone.
func TestLoadBalancerClass(t *testing.T) {
	ctx, l, _ := startCCM(t, testPools+"loadBalancerClass: onprem-lb.io/l2\n")
	const ns = "class"
	createNamespace(ctx, t, l, ns)
	ours := func(s *corev1.Service) { s.Spec.LoadBalancerClass = ptr.To("onprem-lb.io/l2") }
	create(ctx, t, l, lbService(ns, "ours", ours, dualStack))
	create(ctx, t, l, lbService(ns, "classless"))

	got := waitIngress(ctx, t, l, ns, "ours", 2)
	svc, err := l.Client.CoreV1().Services(ns).Get(ctx, "ours", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(svc.Finalizers, "service.kubernetes.io/load-balancer-cleanup") {
		t.Errorf("Service of our class has no cleanup finalizer: %v", svc.Finalizers)
	}
	waitEvent(ctx, t, l, ns, "ours", "Normal IPAllocated")

	// The class-less Service had every chance while ours was served.
	other, err := l.Client.CoreV1().Services(ns).Get(ctx, "classless", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(other.Status.LoadBalancer.Ingress) != 0 || len(other.Finalizers) != 0 {
		t.Errorf("Service without a class was touched: ingress %v, finalizers %v", other.Status.LoadBalancer.Ingress, other.Finalizers)
	}

	deleteAndWait(ctx, t, l, ns, "ours")
	create(ctx, t, l, lbService(ns, "next", ours, dualStack))
	if next := ips(waitIngress(ctx, t, l, ns, "next", 2)); !slices.Equal(next, ips(got)) {
		t.Errorf("next Service of our class got %v, want the freed %v", next, ips(got))
	}
}
