package lab_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"

	"github.com/onprem-lb/onprem-lb/test/lab"
	"github.com/onprem-lb/onprem-lb/test/lab/labtest"
)

func TestMain(m *testing.M) {
	lab.RunHelper()
	os.Exit(m.Run())
}

// TestSmoke proves that the lab is a working cluster: real kube-proxy forwards a ClusterIP
// and a NodePort Service to pods on two nodes, over IPv4 and IPv6, as seen from other
// namespaces; kubectl talks to it; a second lab is refused; and Stop leaves nothing behind.
func TestSmoke(t *testing.T) {
	// Something an earlier, crashed lab could have left: Start must remove it.
	if labtest.Unavailable() == "" {
		if out, err := exec.Command("ip", "netns", "add", "olb-stale").CombinedOutput(); err != nil {
			t.Fatalf("make a stale namespace: %v: %s", err, out)
		}
	}
	l := labtest.Start(t, lab.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if namespaces(t)["olb-stale"] {
		t.Errorf("Start left the stale namespace olb-stale of an earlier lab")
	}

	t.Run("kubectl sees three Ready nodes and server v1.36.3", func(t *testing.T) {
		out := kubectl(t, l, "get", "nodes", "--no-headers")
		if got := strings.Count(out, " Ready "); got != 3 {
			t.Errorf("kubectl get nodes: %d Ready nodes, want 3:\n%s", got, out)
		}
		var v struct {
			ClientVersion struct{ GitVersion string } `json:"clientVersion"`
			ServerVersion struct{ GitVersion string } `json:"serverVersion"`
		}
		if err := json.Unmarshal([]byte(kubectl(t, l, "version", "-o", "json")), &v); err != nil {
			t.Fatal(err)
		}
		if v.ClientVersion.GitVersion != "v1.36.3" || v.ServerVersion.GitVersion != "v1.36.3" {
			t.Errorf("kubectl version: client %q server %q, want v1.36.3 for both", v.ClientVersion.GitVersion, v.ServerVersion.GitVersion)
		}
	})

	t.Run("a second lab is refused and the first keeps running", func(t *testing.T) {
		_, err := lab.Start(ctx, lab.Options{})
		if !errors.Is(err, lab.ErrRunning) {
			t.Fatalf("second Start: got %v, want ErrRunning", err)
		}
		if _, err := l.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); err != nil {
			t.Fatalf("first lab broken after a refused second Start: %v", err)
		}
	})

	const ns = "smoke"
	if _, err := l.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitDefaultServiceAccount(ctx, t, l, ns)
	pods := map[string]bool{}
	for _, node := range []string{"node-1", "node-2"} {
		p, err := l.AddPod(ctx, lab.PodOptions{Namespace: ns, Name: "echo-" + node, Node: node, Labels: map[string]string{"app": "echo"}})
		if err != nil {
			t.Fatal(err)
		}
		pods[p.Key()] = true
	}

	clusterIP := createService(ctx, t, l, ns, "echo", "echo", corev1.ServiceTypeClusterIP)
	nodePort := createService(ctx, t, l, ns, "echo-np", "echo", corev1.ServiceTypeNodePort)
	waitEndpoints(ctx, t, l, ns, "echo", 2)
	waitEndpoints(ctx, t, l, ns, "echo-np", 2)

	// node-3 runs no pod: its kube-proxy must send the traffic across the segment.
	from := l.Nodes[2]
	for _, ip := range clusterIP.Spec.ClusterIPs {
		t.Run("ClusterIP "+ip+" from "+from.Name, func(t *testing.T) {
			url := fmt.Sprintf("http://%s/", net.JoinHostPort(ip, "80"))
			replies := spread(ctx, t, pods, func() (lab.Reply, error) { return lab.GetHTTP(ctx, from.NS, url) })
			// Traffic from a node to a ClusterIP is not masqueraded: the pod sees the node.
			for _, r := range replies {
				if !containsAddr(from.Addrs(), r.ClientIP()) {
					t.Errorf("backend %s saw client %s, want node-3's address", r.Pod, r.Client)
				}
			}
			r, err := lab.GetTCP(ctx, from.NS, net.JoinHostPort(ip, "9000"))
			if err != nil || !pods[r.Pod] {
				t.Errorf("plain TCP to %s port 9000: reply %+v, err %v", ip, r, err)
			}
		})
	}
	client := l.Clients[0]
	port := strconv.Itoa(int(nodePort.Spec.Ports[0].NodePort))
	for _, n := range []*lab.Node{l.Nodes[0], l.Nodes[2]} {
		for _, addr := range n.Addrs() {
			t.Run("NodePort "+addr.String()+" from the client", func(t *testing.T) {
				url := fmt.Sprintf("http://%s/", net.JoinHostPort(addr.String(), port))
				spread(ctx, t, pods, func() (lab.Reply, error) { return lab.GetHTTP(ctx, client.NS, url) })
			})
		}
	}

	t.Run("Stop leaves nothing behind", func(t *testing.T) {
		pids := labPIDs(t)
		l.Stop()
		for name := range namespaces(t) {
			if strings.HasPrefix(name, "olb-") {
				t.Errorf("network namespace %s left after Stop", name)
			}
		}
		if out, err := exec.Command("ip", "link", "show", "olb-host").CombinedOutput(); err == nil {
			t.Errorf("link olb-host left after Stop: %s", out)
		}
		if _, err := os.Stat(l.Dir()); !os.IsNotExist(err) {
			t.Errorf("lab directory %s left after Stop (stat: %v)", l.Dir(), err)
		}
		for _, pid := range pids {
			if _, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid))); err == nil {
				t.Errorf("process %d of the lab still runs after Stop", pid)
			}
		}
	})
}

// TestFailedStartLeavesNothing breaks kube-apiserver and checks that Start names the step
// and removes what it had made.
// binDirBreaking returns a directory of the lab binaries in which name only says "cannot
// start: broken on purpose" and fails.
func binDirBreaking(t *testing.T, name string) string {
	t.Helper()
	bin := t.TempDir()
	real := os.Getenv(lab.EnvToolsBin)
	entries, err := os.ReadDir(real)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != name {
			if err := os.Symlink(filepath.Join(real, e.Name()), filepath.Join(bin, e.Name())); err != nil {
				t.Fatal(err)
			}
		}
	}
	broken := "#!/bin/sh\necho 'cannot start: broken on purpose' >&2\nexit 3\n"
	if err := os.WriteFile(filepath.Join(bin, name), []byte(broken), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

func TestFailedStartLeavesNothing(t *testing.T) {
	if labtest.Unavailable() != "" {
		labtest.Start(t, lab.Options{}) // fails or skips with the reason
	}
	bin := binDirBreaking(t, "kube-apiserver")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l, err := lab.Start(ctx, lab.Options{BinDir: bin, Logf: t.Logf})
	if err == nil {
		l.Stop()
		t.Fatal("Start succeeded with a broken kube-apiserver")
	}
	for _, want := range []string{"start kube-apiserver", "broken on purpose"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Start error does not say %q:\n%v", want, err)
		}
	}
	for name := range namespaces(t) {
		if strings.HasPrefix(name, "olb-") {
			t.Errorf("network namespace %s left after a failed Start", name)
		}
	}
	if _, held := lab.LockHolder(); held {
		t.Errorf("lab lock still held after a failed Start")
	}
}

func kubectl(t *testing.T, l *lab.Lab, args ...string) string {
	t.Helper()
	out, err := exec.Command(l.Bin("kubectl"), append([]string{"--kubeconfig", l.Kubeconfig}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func namespaces(t *testing.T) map[string]bool {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			names[f[0]] = true
		}
	}
	return names
}

func labPIDs(t *testing.T) []int {
	t.Helper()
	var pids []int
	for name := range namespaces(t) {
		if !strings.HasPrefix(name, "olb-") {
			continue
		}
		out, _ := exec.Command("ip", "netns", "pids", name).Output()
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil {
				pids = append(pids, pid)
			}
		}
	}
	if len(pids) == 0 {
		t.Fatal("no lab processes found before Stop")
	}
	return pids
}

func waitDefaultServiceAccount(ctx context.Context, t *testing.T, l *lab.Lab, ns string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := l.Client.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
	if err != nil {
		t.Fatalf("ServiceAccount %s/default never appeared: %v", ns, err)
	}
}

// createService creates a dual-stack Service of the pods labelled app=<app>, ports 80 (to
// their "http" port) and 9000 (to "tcp").
func createService(ctx context.Context, t *testing.T, l *lab.Lab, ns, name, app string, typ corev1.ServiceType) *corev1.Service {
	t.Helper()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.ServiceSpec{
			Type:           typ,
			Selector:       map[string]string{"app": app},
			IPFamilyPolicy: ptr.To(corev1.IPFamilyPolicyRequireDualStack),
			Ports: []corev1.ServicePort{
				{Name: "http", Port: 80, TargetPort: intstr.FromString("http"), Protocol: corev1.ProtocolTCP},
				{Name: "tcp", Port: 9000, TargetPort: intstr.FromString("tcp"), Protocol: corev1.ProtocolTCP},
			},
		},
	}
	created, err := l.Client.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create Service %s/%s: %v", ns, name, err)
	}
	if len(created.Spec.ClusterIPs) != 2 {
		t.Fatalf("Service %s/%s got ClusterIPs %v, want one per family", ns, name, created.Spec.ClusterIPs)
	}
	return created
}

// waitEndpoints waits until the real EndpointSlice controller lists n ready endpoints for the
// Service in each family.
func waitEndpoints(ctx context.Context, t *testing.T, l *lab.Lab, ns, svc string, n int) {
	t.Helper()
	var seen []discoveryv1.EndpointSlice
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		slices, err := l.Client.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc})
		if err != nil {
			return false, nil
		}
		seen = slices.Items
		ready := map[discoveryv1.AddressType]int{}
		for _, s := range slices.Items {
			for _, e := range s.Endpoints {
				if ptr.Deref(e.Conditions.Ready, false) {
					ready[s.AddressType]++
				}
			}
		}
		return ready[discoveryv1.AddressTypeIPv4] == n && ready[discoveryv1.AddressTypeIPv6] == n, nil
	})
	if err != nil {
		t.Fatalf("EndpointSlices of %s/%s never had %d ready endpoints per family: %v\nlast seen: %+v", ns, svc, n, err, seen)
	}
}

// spread calls get until every pod has answered, failing on a reply from anything else. The
// first answer may take until kube-proxy has synced; after that, 50 tries at 50% each make
// missing a pod a one-in-10^15 event.
func spread(ctx context.Context, t *testing.T, pods map[string]bool, get func() (lab.Reply, error)) []lab.Reply {
	t.Helper()
	var replies []lab.Reply
	var last error
	deadline := time.Now().Add(20 * time.Second)
	for len(replies) == 0 && time.Now().Before(deadline) && ctx.Err() == nil {
		r, err := get()
		if err != nil {
			last = err
			time.Sleep(100 * time.Millisecond)
			continue
		}
		replies = append(replies, r)
	}
	if len(replies) == 0 {
		t.Fatalf("no answer within 20s: %v", last)
	}
	seen := map[string]bool{replies[0].Pod: true}
	for i := 0; i < 50 && len(seen) < len(pods); i++ {
		r, err := get()
		if err != nil {
			t.Fatalf("request %d failed after the first succeeded: %v", i, err)
		}
		replies = append(replies, r)
		seen[r.Pod] = true
	}
	for _, r := range replies {
		if !pods[r.Pod] {
			t.Fatalf("answer from %q, which is not one of the Service's pods %v", r.Pod, pods)
		}
	}
	if len(seen) != len(pods) {
		t.Errorf("only %v answered; want every pod of %v", seen, pods)
	}
	return replies
}

func containsAddr(addrs []netip.Addr, s string) bool {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return false
	}
	for _, b := range addrs {
		if a.Unmap() == b {
			return true
		}
	}
	return false
}
