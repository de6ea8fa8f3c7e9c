package lab_test

import (
	"context"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"

	"github.com/onprem-lb/onprem-lb/test/lab"
	"github.com/onprem-lb/onprem-lb/test/lab/labtest"
)

// uninitializedTaint is what a kubelet started with --cloud-provider=external puts on its Node
// until a cloud provider initializes it.
const uninitializedTaint = "node.cloudprovider.kubernetes.io/uninitialized"

// kubeletSysctls are machine-wide settings a kubelet would change if the lab let it.
var kubeletSysctls = []string{"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops", "kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes"}

// TestKubelets proves that real nodes work: three kubelets register their nodes, which
// become Ready with the uninitialized taint; the scheduler places a hostNetwork pod with
// NET_RAW and NET_ADMIN and a bridge-CNI pod on each; pods reach pods on other nodes, their
// node, and ClusterIPs through kube-proxy; the API server reaches the kubelets; and Stop
// leaves no process, mount, namespace, cgroup, file or changed kernel setting behind.
func TestKubelets(t *testing.T) {
	images := labtest.Images(t)
	sysctlsBefore := readSysctls(t)
	began := time.Now()
	l := labtest.Start(t, lab.Options{Kubelets: true, Images: images})
	t.Logf("figure: lab with 3 real nodes ready in %v (binaries warm)", time.Since(began).Round(10*time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	t.Run("three kubelets registered Ready nodes with the uninitialized taint", func(t *testing.T) {
		nodes, err := l.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(nodes.Items) != 3 {
			t.Fatalf("%d nodes, want 3", len(nodes.Items))
		}
		for _, node := range nodes.Items {
			info := node.Status.NodeInfo
			if info.KubeletVersion != "v1.36.3" || !strings.HasPrefix(info.ContainerRuntimeVersion, "containerd://") {
				t.Errorf("node %s: kubelet %q runtime %q, want v1.36.3 on containerd", node.Name, info.KubeletVersion, info.ContainerRuntimeVersion)
			}
			if !slices.ContainsFunc(node.Spec.Taints, func(taint corev1.Taint) bool { return taint.Key == uninitializedTaint }) {
				t.Errorf("node %s: taints %v, want %s", node.Name, node.Spec.Taints, uninitializedTaint)
			}
			var internal []string
			for _, a := range node.Status.Addresses {
				if a.Type == corev1.NodeInternalIP {
					internal = append(internal, a.Address)
				}
			}
			n := labtest.Node(t, l, node.Name)
			if want := []string{n.IPv4.String(), n.IPv6.String()}; !slices.Equal(internal, want) {
				t.Errorf("node %s: InternalIPs %v, want %v", node.Name, internal, want)
			}
		}
	})

	const ns = "kubelets"
	if _, err := l.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitDefaultServiceAccount(ctx, t, l, ns)
	backend, err := lab.ImageNamed(images, "backend")
	if err != nil {
		t.Fatal(err)
	}
	podsAt := time.Now()
	for _, n := range l.Nodes {
		for _, hostNetwork := range []bool{true, false} {
			if _, err := l.Client.CoreV1().Pods(ns).Create(ctx, backendPod(ns, n.Name, backend, hostNetwork), metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	pods := map[string]*corev1.Pod{}
	for _, n := range l.Nodes {
		for _, name := range []string{"host-" + n.Name, "bridge-" + n.Name} {
			pods[name] = waitPodReady(ctx, t, l, ns, name)
		}
	}
	t.Logf("figure: 6 pods (hostNetwork and bridge, one of each per node) Ready %v after creation", time.Since(podsAt).Round(10*time.Millisecond))

	t.Run("the scheduler placed every pod on its node, bridge pods in the node's pod CIDRs", func(t *testing.T) {
		for _, n := range l.Nodes {
			host, bridge := pods["host-"+n.Name], pods["bridge-"+n.Name]
			if host.Spec.NodeName != n.Name || bridge.Spec.NodeName != n.Name {
				t.Errorf("pods for %s run on %q and %q", n.Name, host.Spec.NodeName, bridge.Spec.NodeName)
			}
			if host.Status.PodIP != n.IPv4.String() {
				t.Errorf("hostNetwork pod on %s has IP %s, want the node's %s", n.Name, host.Status.PodIP, n.IPv4)
			}
			if got := podIPs(bridge); len(got) != 2 || !n.PodCIDRs[0].Contains(got[0]) || !n.PodCIDRs[1].Contains(got[1]) {
				t.Errorf("bridge pod on %s has IPs %v, want one in each of %v", n.Name, got, n.PodCIDRs)
			}
		}
	})

	// The client is the bridge pod on node-2, seen from inside its container's namespace.
	clientPod := pods["bridge-node-2"]
	clientNS, err := l.ContainerNetns(ctx, l.Nodes[1], clientPod.Status.ContainerStatuses[0].ContainerID)
	if err != nil {
		t.Fatal(err)
	}
	target := pods["bridge-node-1"]
	for _, ip := range podIPs(target) {
		t.Run("a bridge pod answers "+ip.String()+" from a pod on another node", func(t *testing.T) {
			r, err := lab.GetTCP(ctx, clientNS, net.JoinHostPort(ip.String(), strconv.Itoa(lab.TCPPort)))
			if err != nil {
				t.Fatal(err)
			}
			if r.Pod != ns+"/"+target.Name || !containsAddr(podIPs(clientPod), r.ClientIP()) {
				t.Errorf("reply %+v, want %s/%s seeing the client pod's own address %v", r, ns, target.Name, podIPs(clientPod))
			}
		})
	}
	t.Run("a hostNetwork pod answers on its node's address from a pod", func(t *testing.T) {
		n := l.Nodes[0]
		r, err := lab.GetTCP(ctx, clientNS, net.JoinHostPort(n.IPv4.String(), strconv.Itoa(lab.TCPPort)))
		if err != nil || r.Pod != ns+"/host-"+n.Name {
			t.Errorf("reply %+v, err %v; want %s/host-%s", r, err, ns, n.Name)
		}
	})
	t.Run("kube-proxy serves a ClusterIP to a pod", func(t *testing.T) {
		svc := createService(ctx, t, l, ns, "bridge", "bridge", corev1.ServiceTypeClusterIP)
		waitEndpoints(ctx, t, l, ns, svc.Name, len(l.Nodes))
		want := map[string]bool{}
		for _, n := range l.Nodes {
			want[ns+"/bridge-"+n.Name] = true
		}
		for _, ip := range svc.Spec.ClusterIPs {
			spread(ctx, t, want, func() (lab.Reply, error) {
				return lab.GetTCP(ctx, clientNS, net.JoinHostPort(ip, strconv.Itoa(lab.TCPPort)))
			})
		}
	})
	t.Run("the API server reaches the kubelets (kubectl logs)", func(t *testing.T) {
		for _, n := range l.Nodes {
			kubectl(t, l, "logs", "-n", ns, "bridge-"+n.Name)
		}
	})
	for _, n := range l.Nodes {
		rss, err := l.NodeMemory(n)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("figure: %s: containerd + kubelet + shims resident memory %.0f MiB", n.Name, float64(rss)/(1<<20))
	}

	t.Run("FreezeNode stops everything a node runs, ThawNode lets it go on", func(t *testing.T) {
		n := l.Nodes[2]
		logs := func() error {
			_, err := l.Kubectl(ctx, "logs", "--request-timeout=3s", "-n", ns, "bridge-"+n.Name)
			return err
		}
		if err := l.FreezeNode(n); err != nil {
			t.Fatal(err)
		}
		if err := logs(); err == nil {
			t.Errorf("kubectl logs of a pod on frozen %s answered", n.Name)
		}
		if state := processState(n.KubeProxy.PID()); state != "T" {
			t.Errorf("kube-proxy of frozen %s is in state %q, want T (stopped)", n.Name, state)
		}
		if err := l.ThawNode(n); err != nil {
			t.Fatal(err)
		}
		if err := logs(); err != nil {
			t.Errorf("kubectl logs of a pod on thawed %s: %v", n.Name, err)
		}
		if state := processState(n.KubeProxy.PID()); state == "T" {
			t.Errorf("kube-proxy of thawed %s is still stopped", n.Name)
		}
		// Stop must remove a node that is frozen, as a failed test leaves it.
		if err := l.FreezeNode(n); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("Stop leaves nothing behind, a frozen node included", func(t *testing.T) {
		pids := append(labPIDs(t), cgroupPIDs(t)...)
		l.Stop()
		assertNothingLeft(t, l.Dir())
		for _, pid := range pids {
			if state := processState(pid); state != "" && state != "Z" {
				t.Errorf("process %d of the lab still runs after Stop (state %s)", pid, state)
			}
		}
		if diff := sysctlsDiff(sysctlsBefore, readSysctls(t)); diff != "" {
			t.Errorf("kernel settings changed by the lab: %s", diff)
		}
	})
}

// TestKubeletFailsStart breaks the kubelet and checks that Start names the step and the node,
// and leaves nothing behind.
func TestKubeletFailsStart(t *testing.T) {
	images := labtest.Images(t)
	if labtest.Unavailable() != "" {
		labtest.Start(t, lab.Options{Kubelets: true, Images: images}) // fails or skips with the reason
	}
	bin := binDirBreaking(t, "kubelet")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	l, err := lab.Start(ctx, lab.Options{BinDir: bin, Kubelets: true, Images: images, Logf: t.Logf})
	if err == nil {
		l.Stop()
		t.Fatal("Start succeeded with a broken kubelet")
	}
	for _, want := range []string{"start real nodes (containerd, kubelet)", "node-1: start kubelet", "broken on purpose"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Start error does not say %q:\n%v", want, err)
		}
	}
	assertNothingLeft(t, lab.DefaultDir)
	if _, held := lab.LockHolder(); held {
		t.Errorf("lab lock still held after a failed Start")
	}
}

// backendPod is a pod of the backend image pinned to a node by the scheduler (nodeSelector),
// tolerating the uninitialized taint; with hostNetwork it runs in the node's network
// namespace with NET_RAW and NET_ADMIN, as the speaker does.
func backendPod(ns, node, image string, hostNetwork bool) *corev1.Pod {
	name, labels := "bridge-"+node, map[string]string{"app": "bridge"}
	var sc *corev1.SecurityContext
	if hostNetwork {
		name, labels = "host-"+node, map[string]string{"app": "host"}
		sc = &corev1.SecurityContext{Capabilities: &corev1.Capabilities{
			Drop: []corev1.Capability{"ALL"}, Add: []corev1.Capability{"NET_RAW", "NET_ADMIN"},
		}}
	}
	backend := lab.BackendContainer(image)
	backend.SecurityContext = sc
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: corev1.PodSpec{
			HostNetwork:                   hostNetwork,
			NodeSelector:                  map[string]string{corev1.LabelHostname: node},
			Tolerations:                   []corev1.Toleration{{Key: uninitializedTaint, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}},
			AutomountServiceAccountToken:  ptr.To(false),
			TerminationGracePeriodSeconds: ptr.To[int64](0),
			Containers:                    []corev1.Container{backend},
		},
	}
}

// waitPodReady waits until the kubelet reports the pod Ready, and says why not if it never does.
func waitPodReady(ctx context.Context, t *testing.T, l *lab.Lab, ns, name string) *corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		p, err := l.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		pod = p
		return p.Status.Phase == corev1.PodRunning && lab.PodReady(p), nil
	})
	if err != nil {
		describe, _ := l.Kubectl(ctx, "describe", "pod", "-n", ns, name)
		t.Fatalf("pod %s/%s never became Ready: %v\n%s", ns, name, err, describe)
	}
	return pod
}

// assertNothingLeft checks the machine holds nothing of a lab: no namespace, link, cgroup,
// mount or file.
func assertNothingLeft(t *testing.T, dir string) {
	t.Helper()
	for name := range namespaces(t) {
		if strings.HasPrefix(name, "olb-") {
			t.Errorf("network namespace %s left", name)
		}
	}
	if out, err := exec.Command("ip", "link", "show", "olb-host").CombinedOutput(); err == nil {
		t.Errorf("link olb-host left: %s", out)
	}
	cgroups, _ := filepath.Glob("/sys/fs/cgroup/*/olb-*")
	for _, c := range cgroups {
		t.Errorf("cgroup %s left", c)
	}
	mountinfo, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(mountinfo), "\n") {
		if strings.Contains(line, dir) || strings.Contains(line, "olb-node") {
			t.Errorf("mount left: %s", line)
		}
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("lab directory %s left (stat: %v)", dir, err)
	}
}

// cgroupPIDs returns the processes in the lab's cgroups: real nodes' daemons and containers.
func cgroupPIDs(t *testing.T) []int {
	t.Helper()
	var pids []int
	tops, _ := filepath.Glob("/sys/fs/cgroup/pids/olb-*")
	for _, top := range tops {
		filepath.WalkDir(top, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.Name() != "cgroup.procs" {
				return err
			}
			data, _ := os.ReadFile(path)
			for _, field := range strings.Fields(string(data)) {
				if pid, err := strconv.Atoi(field); err == nil {
					pids = append(pids, pid)
				}
			}
			return nil
		})
	}
	if len(pids) == 0 {
		t.Fatal("no process in the lab's cgroups before Stop")
	}
	return pids
}

// processState returns the state letter of a process ("R", "S", ...; "Z" for a zombie that
// its parent, for shims and containers the machine's init, has yet to collect), or "" once
// it is gone.
func processState(pid int) string {
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return ""
	}
	_, after, _ := strings.Cut(string(stat), ") ")
	state, _, _ := strings.Cut(after, " ")
	return state
}

func readSysctls(t *testing.T) map[string]string {
	t.Helper()
	values := map[string]string{}
	for _, name := range kubeletSysctls {
		v, err := os.ReadFile("/proc/sys/" + name)
		if err != nil {
			t.Fatal(err)
		}
		values[name] = strings.TrimSpace(string(v))
	}
	return values
}

func sysctlsDiff(before, after map[string]string) string {
	var diffs []string
	for _, name := range kubeletSysctls {
		if before[name] != after[name] {
			diffs = append(diffs, fmt.Sprintf("%s %s -> %s", name, before[name], after[name]))
		}
	}
	return strings.Join(diffs, ", ")
}

// podIPs returns the pod's addresses as the kubelet reports them.
func podIPs(p *corev1.Pod) []netip.Addr {
	var ips []netip.Addr
	for _, ip := range p.Status.PodIPs {
		if a, err := netip.ParseAddr(ip.IP); err == nil {
			ips = append(ips, a)
		}
	}
	return ips
}
