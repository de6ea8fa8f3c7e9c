package e2e

import (
	"os"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/onprem-lb/onprem-lb/test/lab/labtest"
)

// TestExamples applies every example Service with kubectl, against the CCM running the
// example pool file of manifests/, and checks what each example promises.
func TestExamples(t *testing.T) {
	pools, err := os.ReadFile(labtest.RepoPath("examples", "pools-basic.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, l, _ := startCCM(t, string(pools))
	const ns = "examples"
	createNamespace(ctx, t, l, ns)
	for _, f := range []string{"service-pinned-ip.yaml", "service-cluster.yaml", "service-local.yaml", "service-dual-stack.yaml", "service-shared-ip.yaml"} {
		if out, err := l.Kubectl(ctx, "apply", "-n", ns, "-f", labtest.RepoPath("examples", f)); err != nil {
			t.Fatalf("kubectl apply %s: %v\n%s", f, err, out)
		}
	}
	vip := corev1.LoadBalancerIPModeVIP
	for _, tt := range []struct {
		service string
		check   func(t *testing.T, got []corev1.LoadBalancerIngress)
		n       int
	}{
		{"web-pinned", func(t *testing.T, got []corev1.LoadBalancerIngress) {
			if want := []string{"198.18.0.210", "2001:db8:18::210"}; !slices.Equal(ips(got), want) {
				t.Errorf("got %v, want the pinned %v", ips(got), want)
			}
		}, 2},
		{"web", nil, 1},
		{"web-local", nil, 1},
		{"web-dual", nil, 2},
	} {
		t.Run(tt.service, func(t *testing.T) {
			got := waitIngress(ctx, t, l, ns, tt.service, tt.n)
			for _, in := range got {
				if in.IPMode == nil || *in.IPMode != vip {
					t.Errorf("%s: ipMode %v, want VIP (dataplane kube-proxy)", in.IP, in.IPMode)
				}
			}
			if tt.check != nil {
				tt.check(t, got)
			}
		})
	}
	t.Run("dns-tcp and dns-udp share one IP", func(t *testing.T) {
		tcp, udp := ips(waitIngress(ctx, t, l, ns, "dns-tcp", 1)), ips(waitIngress(ctx, t, l, ns, "dns-udp", 1))
		if !slices.Equal(tcp, udp) {
			t.Errorf("dns-tcp %v, dns-udp %v: want one shared IP", tcp, udp)
		}
	})
	t.Run("no IP is given twice except the shared one", func(t *testing.T) {
		owner := map[string]string{}
		for svc, list := range allIngress(ctx, t, l) {
			for _, ip := range list {
				if other, dup := owner[ip]; dup && !(slices.Contains([]string{other, svc}, ns+"/dns-tcp") && slices.Contains([]string{other, svc}, ns+"/dns-udp")) {
					t.Errorf("%s given to %s and %s", ip, other, svc)
				}
				owner[ip] = svc
			}
		}
	})
}
