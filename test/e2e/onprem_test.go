package e2e

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/onprem-lb/onprem-lb/test/demo"
	"github.com/onprem-lb/onprem-lb/test/lab"
	"github.com/onprem-lb/onprem-lb/test/lab/labtest"
)

// onprem is onprem-lb installed in the lab as a user installs it: `kubectl apply -k` of an
// overlay of manifests/ that names the images `make images` built, the test's pool file in
// the pool ConfigMap, a gossip key in the Secret the README has users create. The overlay adds
// only what a test needs to steer it and a user would not: a speaker runs only on nodes
// labelled speakerLabel (so that a test stops and starts one node's speaker the way the
// DaemonSet controller does, by deleting and creating its pod), the speakers serve their
// metrics on every address (the test reads them from outside the node) and log at -v=2, and
// the CCM may write as fast as the 1,000-Service tests need.
type onprem struct {
	t        testing.TB
	l        *lab.Lab
	archives []string
	overlay  string
}

const (
	system         = demo.Namespace
	speakerLabel   = "e2e.onprem-lb.io/speaker"
	cleanupLabel   = "e2e.onprem-lb.io/cleanup"
	poolsConfigMap = "onprem-lb-pools" // manifests/kustomization.yaml
	poolsKey       = "pools.yaml"
	leaseName      = "cloud-controller-manager" // manifests/ccm-deployment.yaml
)

// The test overlay: the patches, and the cleanup overlay's (speakers' cleanup on the nodes
// labelled cleanupLabel only).
const (
	overlayExtra = `configMapGenerator:
  - name: ` + poolsConfigMap + `
    namespace: ` + system + `
    behavior: replace
    files: [` + poolsKey + `]
generatorOptions:
  disableNameSuffixHash: true
patches:
  - target: {kind: DaemonSet, name: ` + demo.Speaker + `}
    patch: |
      - {op: add, path: /spec/template/spec/nodeSelector, value: {"` + speakerLabel + `": "run"}}
      - {op: add, path: /spec/template/spec/containers/0/args/-, value: -v=2}
      # the last --metrics-bind-address wins
      - {op: add, path: /spec/template/spec/containers/0/args/-, value: "--metrics-bind-address=0.0.0.0:7472"}
      - {op: add, path: /spec/template/spec/containers/0/args/-, value: --profiling}
  - target: {kind: Deployment, name: ` + demo.CCM + `}
    patch: |
      - {op: add, path: /spec/template/spec/containers/0/args/-, value: --kube-api-qps=500}
      - {op: add, path: /spec/template/spec/containers/0/args/-, value: --kube-api-burst=1000}
`
	cleanupExtra = `patches:
  - target: {kind: DaemonSet}
    patch: |
      - {op: add, path: /spec/template/spec/nodeSelector, value: {"` + cleanupLabel + `": "run"}}
`
)

// labOptions are the lab options every e2e lab needs on top of the test's own: real nodes
// holding our images, whose kubelets bring an edited ConfigMap to the pods within seconds.
func labOptions(t testing.TB, opts lab.Options) (lab.Options, []string) {
	archives := labtest.Images(t)
	opts.Kubelets, opts.Images, opts.KubeletSyncFrequency = true, archives, 5*time.Second
	return opts, archives
}

// startLab starts a lab of real nodes (opts and labOptions) and returns a context that ends
// with the test; if the test fails, it logs what a user would look at.
func startLab(t testing.TB, opts lab.Options) (context.Context, *lab.Lab, []string) {
	opts, archives := labOptions(t, opts)
	l := labtest.Start(t, opts)
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	t.Cleanup(cancel)
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(demo.Diagnose(context.Background(), l))
		}
	})
	return ctx, l, archives
}

// noServiceProxy is the overlay's addition in a lab without kube-proxy, where no ClusterIP
// works: the pods reach the API server at its own address, as in a cluster whose service
// proxy is not kube-proxy (%s: the containers' env naming it).
const noServiceProxy = `  - target: {kind: Deployment, name: ` + demo.CCM + `}
    patch: '{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "` + demo.CCM + `", "namespace": "` + system + `"},
      "spec": {"template": {"spec": {"containers": [{"name": "` + demo.CCM + `", "env": %[1]s}]}}}}'
  - target: {kind: DaemonSet, name: ` + demo.Speaker + `}
    patch: '{"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "` + demo.Speaker + `", "namespace": "` + system + `"},
      "spec": {"template": {"spec": {"containers": [{"name": "` + demo.Speaker + `", "env": %[1]s}]}}}}'
`

// install applies the test overlay with the pool file pools. No speaker runs until
// startSpeaker; waitLeader waits for the CCM.
func install(ctx context.Context, t testing.TB, l *lab.Lab, archives []string, pools string) *onprem {
	t.Helper()
	o := &onprem{t: t, l: l, archives: archives, overlay: t.TempDir()}
	extra := overlayExtra
	if l.Nodes[0].KubeProxy == nil {
		u, err := url.Parse(l.Config.Host)
		if err != nil {
			t.Fatal(err)
		}
		env := fmt.Sprintf(`[{"name": "KUBERNETES_SERVICE_HOST", "value": %q}, {"name": "KUBERNETES_SERVICE_PORT", "value": %q}]`, u.Hostname(), u.Port())
		extra += fmt.Sprintf(noServiceProxy, env)
	}
	o.writeOverlay(o.overlay, demo.WriteOverlay, extra)
	if err := os.WriteFile(filepath.Join(o.overlay, poolsKey), []byte(pools), 0o644); err != nil {
		t.Fatal(err)
	}
	o.kubectl(ctx, "apply", "-k", o.overlay)
	key := make([]byte, 32)
	rand.Read(key)
	o.kubectl(ctx, "-n", system, "create", "secret", "generic", "onprem-speaker-memberlist", "--from-literal=key="+base64.StdEncoding.EncodeToString(key))
	return o
}

// writeOverlay writes an overlay with write (demo.WriteOverlay or demo.WriteCleanupOverlay)
// and appends extra to its kustomization.
func (o *onprem) writeOverlay(dir string, write func(dir, repo string, archives []string) error, extra string) {
	o.t.Helper()
	if err := write(dir, labtest.RepoPath(), o.archives); err != nil {
		o.t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "kustomization.yaml"), os.O_APPEND|os.O_WRONLY, 0)
	if err == nil {
		_, err = f.WriteString(extra)
		err = errors.Join(err, f.Close())
	}
	if err != nil {
		o.t.Fatal(err)
	}
}

func (o *onprem) kubectl(ctx context.Context, args ...string) string {
	o.t.Helper()
	out, err := o.l.Kubectl(ctx, args...)
	if err != nil {
		o.t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// pools returns the pool file the pods mount.
func (o *onprem) pools(ctx context.Context) string {
	o.t.Helper()
	cm, err := o.l.Client.CoreV1().ConfigMaps(system).Get(ctx, poolsConfigMap, metav1.GetOptions{})
	if err != nil {
		o.t.Fatal(err)
	}
	return cm.Data[poolsKey]
}

// setPools edits the pool ConfigMap, as `kubectl edit` would; the kubelets bring the file to
// the pods within seconds (lab.Options.KubeletSyncFrequency).
func (o *onprem) setPools(ctx context.Context, content string) {
	o.t.Helper()
	patch := fmt.Sprintf(`{"data": {%q: %q}}`, poolsKey, content)
	if _, err := o.l.Client.CoreV1().ConfigMaps(system).Patch(ctx, poolsConfigMap, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		o.t.Fatal(err)
	}
}

// leader returns the name of the CCM pod that holds the lease, "" if none does.
func (o *onprem) leader(ctx context.Context) string {
	lease, err := o.l.Client.CoordinationV1().Leases(system).Get(ctx, leaseName, metav1.GetOptions{})
	if err != nil || lease.Spec.HolderIdentity == nil {
		return ""
	}
	pod, _, _ := strings.Cut(*lease.Spec.HolderIdentity, "_")
	return pod
}

// waitLeader waits until a running CCM pod other than except leads, and returns it.
func (o *onprem) waitLeader(ctx context.Context, except string) *corev1.Pod {
	o.t.Helper()
	var pod *corev1.Pod
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		name := o.leader(ctx)
		if name == "" || name == except {
			return false, nil
		}
		p, err := o.l.Client.CoreV1().Pods(system).Get(ctx, name, metav1.GetOptions{})
		if err != nil || p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil {
			return false, nil
		}
		pod = p
		return true, nil
	})
	if err != nil {
		o.t.Fatalf("no CCM pod other than %q leads: %v\n%s", except, err, demo.Diagnose(ctx, o.l))
	}
	return pod
}

// ccmCrash waits until a CCM pod has exited with an error, and returns its termination
// message.
func (o *onprem) ccmCrash(ctx context.Context) string {
	o.t.Helper()
	msg, err := demo.CrashMessage(ctx, o.l, demo.CCM, "")
	if err != nil {
		o.t.Fatal(err)
	}
	return msg
}

// ccmPods returns the CCM's pods that are not being deleted.
func (o *onprem) ccmPods(ctx context.Context) []corev1.Pod {
	o.t.Helper()
	pods := o.pods(ctx, demo.CCM, "")
	return slices.DeleteFunc(pods, func(p corev1.Pod) bool { return p.DeletionTimestamp != nil })
}

// pods lists the pods of workload (demo.CCM, demo.Speaker) on node ("": every node).
func (o *onprem) pods(ctx context.Context, workload, node string) []corev1.Pod {
	o.t.Helper()
	opts := metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=" + workload}
	if node != "" {
		opts.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", node).String()
	}
	list, err := o.l.Client.CoreV1().Pods(system).List(ctx, opts)
	if err != nil {
		o.t.Fatal(err)
	}
	return list.Items
}

// restartCCM scales the CCM to no replica and back, as a maintenance window would, and
// waits until a new pod leads.
func (o *onprem) restartCCM(ctx context.Context) {
	o.t.Helper()
	o.kubectl(ctx, "-n", system, "scale", "deployment/"+demo.CCM, "--replicas=0")
	o.kubectl(ctx, "-n", system, "wait", "--for=delete", "pod", "-l", "app.kubernetes.io/name="+demo.CCM, "--timeout=60s")
	o.kubectl(ctx, "-n", system, "scale", "deployment/"+demo.CCM, "--replicas=2")
	o.waitLeader(ctx, "")
}

// logs returns the log of pod's container (the current one, or the previous one).
func (o *onprem) logs(ctx context.Context, pod string, previous bool) string {
	o.t.Helper()
	args := []string{"-n", system, "logs", pod}
	if previous {
		args = append(args, "--previous")
	}
	return o.kubectl(ctx, args...)
}

// waitLogged waits until pod's log has want.
func (o *onprem) waitLogged(ctx context.Context, pod, want string) {
	o.t.Helper()
	var log string
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		out, err := o.l.Kubectl(ctx, "-n", system, "logs", pod)
		log = out
		return err == nil && strings.Contains(out, want), nil
	})
	if err != nil {
		o.t.Fatalf("pod %s never logged %q: %v\n%s", pod, want, err, lastLines(log, 20))
	}
}

// startSpeaker lets the DaemonSet run a speaker on node n, and waits until it runs and its
// log shows logged (e.g. "Membership converged").
func (o *onprem) startSpeaker(ctx context.Context, n *lab.Node, logged string) *corev1.Pod {
	o.t.Helper()
	o.kubectl(ctx, "label", "node", n.Name, speakerLabel+"=run", "--overwrite")
	var pod *corev1.Pod
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		pods := o.pods(ctx, demo.Speaker, n.Name)
		if len(pods) != 1 || pods[0].DeletionTimestamp != nil || pods[0].Status.Phase != corev1.PodRunning {
			return false, nil
		}
		pod = &pods[0]
		return true, nil
	})
	if err != nil {
		o.t.Fatalf("no speaker pod runs on %s: %v\n%s", n.Name, err, demo.Diagnose(ctx, o.l))
	}
	o.waitLogged(ctx, pod.Name, logged)
	return pod
}

// startSpeakers runs a speaker on every node, and waits until each has converged.
func (o *onprem) startSpeakers(ctx context.Context) {
	o.t.Helper()
	for _, n := range o.l.Nodes {
		o.startSpeaker(ctx, n, "Membership converged")
	}
}

// stopSpeaker takes node n's speaker off (the DaemonSet deletes its pod: SIGTERM, then the
// grace period) and waits until the pod is gone. It returns how the container ended.
func (o *onprem) stopSpeaker(ctx context.Context, n *lab.Node) *corev1.ContainerStateTerminated {
	o.t.Helper()
	pods := o.pods(ctx, demo.Speaker, n.Name)
	if len(pods) != 1 {
		o.t.Fatalf("%d speaker pods on %s, want 1", len(pods), n.Name)
	}
	w, err := o.l.Client.CoreV1().Pods(system).Watch(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("metadata.name", pods[0].Name).String(), ResourceVersion: pods[0].ResourceVersion,
	})
	if err != nil {
		o.t.Fatal(err)
	}
	defer w.Stop()
	o.kubectl(ctx, "label", "node", n.Name, speakerLabel+"-")
	var ended *corev1.ContainerStateTerminated
	timeout := time.After(time.Minute)
	for {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				o.t.Fatalf("watch of speaker pod %s ended", pods[0].Name)
			}
			p, isPod := ev.Object.(*corev1.Pod)
			if !isPod {
				continue
			}
			for _, s := range p.Status.ContainerStatuses {
				if s.State.Terminated != nil {
					ended = s.State.Terminated
				}
			}
			if ev.Type == "DELETED" {
				return ended
			}
		case <-timeout:
			o.t.Fatalf("speaker pod %s on %s not gone a minute after its node lost %s", pods[0].Name, n.Name, speakerLabel)
		}
	}
}

// speakerLog returns the log of node n's speaker.
func (o *onprem) speakerLog(ctx context.Context, n *lab.Node) string {
	o.t.Helper()
	pods := o.pods(ctx, demo.Speaker, n.Name)
	if len(pods) != 1 {
		o.t.Fatalf("%d speaker pods on %s, want 1", len(pods), n.Name)
	}
	return o.logs(ctx, pods[0].Name, false)
}

// cleanup runs `kubectl apply -k manifests/cleanup` (the README's uninstall step, through an
// overlay naming our images) on the given nodes only, waits until its pods have cleaned up,
// and deletes it again.
func (o *onprem) cleanup(ctx context.Context, nodes ...*lab.Node) {
	o.t.Helper()
	dir := o.t.TempDir()
	o.writeOverlay(dir, demo.WriteCleanupOverlay, cleanupExtra)
	for _, n := range nodes {
		o.kubectl(ctx, "label", "node", n.Name, cleanupLabel+"=run", "--overwrite")
	}
	o.kubectl(ctx, "apply", "-k", dir)
	o.kubectl(ctx, "-n", system, "rollout", "status", "daemonset/"+demo.Speaker+"-cleanup", "--timeout=2m")
	o.kubectl(ctx, "delete", "-k", dir, "--wait=true")
	for _, n := range nodes {
		o.kubectl(ctx, "label", "node", n.Name, cleanupLabel+"-")
	}
}

// killNode kills node n as a machine dies: everything it runs frozen, its cable pulled.
// reviveNode brings it back.
func killNode(ctx context.Context, t testing.TB, l *lab.Lab, n *lab.Node) {
	t.Helper()
	if err := l.FreezeNode(n); err != nil {
		t.Fatal(err)
	}
	if err := lab.Unplug(ctx, n.Host); err != nil {
		t.Fatal(err)
	}
}

func reviveNode(ctx context.Context, t testing.TB, l *lab.Lab, n *lab.Node) {
	t.Helper()
	if err := lab.Plug(ctx, n.Host); err != nil {
		t.Fatal(err)
	}
	if err := l.ThawNode(n); err != nil {
		t.Fatal(err)
	}
}

// addPod runs the backend image in pod ns/name on node, labelled app=app, and waits until it
// is Ready.
func addPod(ctx context.Context, t testing.TB, l *lab.Lab, ns, name, node, app string) *corev1.Pod {
	t.Helper()
	image, err := lab.ImageNamed(labtest.Images(t), "backend")
	if err != nil {
		t.Fatal(err)
	}
	p := demo.BackendPod(name, app, node, image)
	if _, err := l.Client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		p, err = l.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		return err == nil && lab.PodReady(p), nil
	})
	if err != nil {
		out, _ := l.Kubectl(ctx, "-n", ns, "describe", "pod", name)
		t.Fatalf("pod %s/%s not Ready: %v\n%s", ns, name, err, out)
	}
	return p
}

// deletePod deletes a pod, as kubectl delete --wait=false does: its endpoints end at once,
// its container shortly after.
func deletePod(ctx context.Context, t testing.TB, l *lab.Lab, p *corev1.Pod) {
	t.Helper()
	if err := l.Client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
}

// setReady makes backend pod p fail (or pass again) its readiness probe, and waits until the
// kubelet reports it.
func setReady(ctx context.Context, t testing.TB, l *lab.Lab, p *corev1.Pod, ready bool) {
	t.Helper()
	if err := l.SetBackendReady(ctx, p, ready); err != nil {
		t.Fatal(err)
	}
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		got, err := l.Client.CoreV1().Pods(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
		return err == nil && lab.PodReady(got) == ready, nil
	})
	if err != nil {
		t.Fatalf("pod %s/%s: Ready is not %v: %v", p.Namespace, p.Name, ready, err)
	}
}

// podKey is namespace/name, as backends name themselves in replies.
func podKey(p *corev1.Pod) string { return p.Namespace + "/" + p.Name }

// markNotReady sets pod p's Ready condition False, as the node lifecycle controller does for
// the pods of a node it lost; the kubelet, once back, reports the truth again.
func markNotReady(ctx context.Context, t testing.TB, l *lab.Lab, p *corev1.Pod) {
	t.Helper()
	patch := `{"status": {"conditions": [{"type": "Ready", "status": "False", "reason": "NodeLost"}]}}`
	if _, err := l.Client.CoreV1().Pods(p.Namespace).Patch(ctx, p.Name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}, "status"); err != nil {
		t.Fatal(err)
	}
}

// containerPID returns the PID of the (first) container's process of pod p, which runs on a
// lab node.
func containerPID(ctx context.Context, t testing.TB, l *lab.Lab, p *corev1.Pod) int {
	t.Helper()
	if len(p.Status.ContainerStatuses) == 0 {
		t.Fatalf("pod %s/%s has no container", p.Namespace, p.Name)
	}
	pid, err := l.ContainerPID(ctx, labtest.Node(t, l, p.Spec.NodeName), p.Status.ContainerStatuses[0].ContainerID)
	if err != nil {
		t.Fatal(err)
	}
	return pid
}
