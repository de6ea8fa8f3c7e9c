// Package demo installs onprem-lb into a lab of real nodes the way a user would, and shows what
// a user checks first: the pods, the EXTERNAL-IPs, traffic through them, and a node dying. It
// is what `make demo` runs, inside the process that keeps the lab up.
//
// The images are the ones `make images` built, imported into every node; `kubectl apply -k`
// installs manifests/ through an overlay that names them, as a user's overlay names the tag
// they pushed; the kubelets run the CCM Deployment and the speaker DaemonSet with the pool
// ConfigMap and the gossip Secret mounted; the Services are the files of examples/.
package demo

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	cloudproviderapi "k8s.io/cloud-provider/api"
	"sigs.k8s.io/yaml"

	"github.com/onprem-lb/onprem-lb/speaker"
	"github.com/onprem-lb/onprem-lb/test/lab"
)

// Namespace is where onprem-lb runs (manifests/namespace.yaml); the example Services go to
// "default".
const Namespace = "onprem-lb"

// Options say where the demo finds things.
type Options struct {
	// Repo is the repository root: manifests/ and examples/ are read from it.
	Repo string
	// Images are the OCI archives the lab imported (lab.Options.Images): the onprem-lb images
	// and the lab's backend image are found among them by name.
	Images []string
	// Report prints one step's progress.
	Report func(format string, args ...any)
}

// examples are the example Services the demo applies, in order.
var examples = []string{"service-cluster.yaml", "service-local.yaml", "service-dual-stack.yaml", "service-pinned-ip.yaml", "service-shared-ip.yaml"}

// Run deploys onprem-lb into l, creates the example Services and their pods, and shows them
// working, step by step; an error names the step that failed. It leaves everything running.
func Run(ctx context.Context, l *lab.Lab, o Options) error {
	d := &demo{l: l, o: o, dir: filepath.Join(l.Dir(), "demo")}
	steps := []struct {
		name string
		fn   func(context.Context) error
	}{
		{"kubectl apply -k manifests/ (an overlay naming this build's images), and the gossip key Secret", d.install},
		{"wait for the CCM and speaker pods, and for our CCM to initialize every node", d.waitInstalled},
		{"kubectl get pods -n onprem-lb -o wide; kubectl get nodes", d.getPods},
		{"start pods (app=web on every node, app=dns)", d.startPods},
		{"kubectl apply the example Services", d.applyExamples},
		{"wait for every EXTERNAL-IP and its announcement", d.waitAnnounced},
		{"kubectl get svc -o wide", d.getServices},
		{"reach each VIP from the client", d.curl},
		{"kill the node announcing web's VIP and measure the outage", d.killOwner},
	}
	for i, s := range steps {
		o.Report("[%d/%d] %s", i+1, len(steps), s.name)
		if err := s.fn(ctx); err != nil {
			return stepError(ctx, i+1, s.name, err)
		}
	}
	return nil
}

// stepError says which step failed and, when ctx ended, what ended it (context.Cause: a
// signal, a timeout, the lab stopping), which err alone may not say ("context canceled").
func stepError(ctx context.Context, step int, name string, err error) error {
	if cause := context.Cause(ctx); cause != nil && !errors.Is(err, cause) {
		return fmt.Errorf("demo step %d (%s): %w (stopped because: %w)", step, name, err, cause)
	}
	return fmt.Errorf("demo step %d (%s): %w", step, name, err)
}

type demo struct {
	l   *lab.Lab
	o   Options
	dir string
}

func (d *demo) kubectl(ctx context.Context, args ...string) (string, error) {
	out, err := d.l.Kubectl(ctx, args...)
	if err != nil {
		return "", fmt.Errorf("kubectl %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return out, nil
}

func (d *demo) install(ctx context.Context) error {
	overlay := filepath.Join(d.dir, "overlay")
	if err := WriteOverlay(overlay, d.o.Repo, d.o.Images); err != nil {
		return err
	}
	out, err := d.kubectl(ctx, "apply", "-k", overlay)
	if err != nil {
		return err
	}
	d.o.Report("    %s", strings.ReplaceAll(strings.TrimSpace(out), "\n", "\n    "))
	raw := make([]byte, 32)
	rand.Read(raw)
	key := base64.StdEncoding.EncodeToString(raw)
	_, err = d.kubectl(ctx, "-n", Namespace, "create", "secret", "generic", "onprem-speaker-memberlist", "--from-literal=key="+key)
	return err
}

// onprem-lb's two workloads (manifests/) and their images' repositories.
const (
	CCM     = "onprem-cloud-controller-manager"
	Speaker = "onprem-speaker"
)

// WriteOverlay writes into dir a kustomization that installs manifests/ of repo with the
// onprem-lb images found among archives (lab.ImageNamed), as a user's overlay names the
// images they pushed.
func WriteOverlay(dir, repo string, archives []string) error {
	return writeOverlay(dir, filepath.Join(repo, "manifests"), archives, map[string]string{
		"ghcr.io/onprem-lb/" + CCM: CCM, "ghcr.io/onprem-lb/" + Speaker: Speaker,
	})
}

// WriteCleanupOverlay writes into dir a kustomization of manifests/cleanup of repo (the
// README's uninstall step) with the speaker and pause images found among archives, as a user
// whose nodes pull from a mirror names them.
func WriteCleanupOverlay(dir, repo string, archives []string) error {
	return writeOverlay(dir, filepath.Join(repo, "manifests", "cleanup"), archives, map[string]string{
		"ghcr.io/onprem-lb/" + Speaker: Speaker, "registry.k8s.io/pause": "pause",
	})
}

// writeOverlay writes into dir a kustomization of base that replaces each image named in
// images by the image among archives whose repository ends in the name it maps to.
func writeOverlay(dir, base string, archives []string, images map[string]string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	rel, err := filepath.Rel(dir, base)
	if err != nil {
		return err
	}
	refs := map[string]string{}
	for from, name := range images {
		if refs[from], err = lab.ImageNamed(archives, name); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(overlay(rel, refs)), 0o644)
}

// overlay is a kustomization of base that replaces each image of refs by its reference
// there (repository:tag).
func overlay(base string, refs map[string]string) string {
	k := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - " + base + "\nimages:\n"
	for _, from := range slices.Sorted(maps.Keys(refs)) {
		repo, tag := lab.SplitImageRef(refs[from])
		// Quoted: a tag of digits only (a commit like 6165435) is a number in YAML.
		k += fmt.Sprintf("  - name: %s\n    newName: %s\n    newTag: %q\n", from, repo, tag)
	}
	return k
}

// waitInstalled waits until the rollouts are done and every node is initialized; on failure
// it says what a user would look at: the pods' events and logs.
func (d *demo) waitInstalled(ctx context.Context) error {
	began := time.Now()
	for _, w := range []string{"deployment/" + CCM, "daemonset/" + Speaker} {
		if _, err := d.kubectl(ctx, "-n", Namespace, "rollout", "status", w, "--timeout=3m"); err != nil {
			return fmt.Errorf("%w\n%s", err, Diagnose(ctx, d.l))
		}
	}
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		nodes, err := d.l.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		return len(nodes.Items) > 0 && !slices.ContainsFunc(nodes.Items, func(n corev1.Node) bool { return !Initialized(&n) }), nil
	})
	if err != nil {
		return fmt.Errorf("nodes not initialized by our CCM: %w\n%s", err, Diagnose(ctx, d.l))
	}
	d.o.Report("    onprem-lb Ready and every node initialized %v after kubectl apply", time.Since(began).Round(10*time.Millisecond))
	return nil
}

// Initialized says whether our CCM has initialized node n: providerID onprem://<name>, and
// no uninitialized taint left from a kubelet started with --cloud-provider=external.
func Initialized(n *corev1.Node) bool {
	return n.Spec.ProviderID == "onprem://"+n.Name &&
		!slices.ContainsFunc(n.Spec.Taints, func(t corev1.Taint) bool { return t.Key == cloudproviderapi.TaintExternalCloudProvider })
}

// CrashMessage waits until a container of workload's pods (CCM or Speaker) on node ("": on
// any node) has exited with an error, and returns what kubectl describe pod shows of it: its
// termination message, the last lines of its log (terminationMessagePolicy
// FallbackToLogsOnError).
func CrashMessage(ctx context.Context, l *lab.Lab, workload, node string) (string, error) {
	opts := metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=" + workload}
	if node != "" {
		opts.FieldSelector = "spec.nodeName=" + node
	}
	var msg string
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		pods, err := l.Client.CoreV1().Pods(Namespace).List(ctx, opts)
		if err != nil {
			return false, nil
		}
		for _, p := range pods.Items {
			if p.DeletionTimestamp != nil || len(p.Status.ContainerStatuses) == 0 {
				continue
			}
			cs := p.Status.ContainerStatuses[0]
			for _, st := range []corev1.ContainerState{cs.State, cs.LastTerminationState} {
				if st.Terminated != nil && st.Terminated.ExitCode != 0 {
					msg = st.Terminated.Message
					return true, nil
				}
			}
		}
		return false, nil
	})
	if err != nil {
		return "", fmt.Errorf("no %s pod on %q exited with an error: %w", workload, node, err)
	}
	return msg, nil
}

// Diagnose returns the onprem-lb pods' state, events and last log lines: what a user looks
// at when something does not work.
func Diagnose(ctx context.Context, l *lab.Lab) string {
	var b strings.Builder
	for _, args := range [][]string{
		{"-n", Namespace, "get", "pods", "-o", "wide"},
		{"-n", Namespace, "describe", "pods"},
		{"-n", Namespace, "logs", "-l", "app.kubernetes.io/name=" + CCM, "--tail=20", "--prefix"},
		{"-n", Namespace, "logs", "-l", "app.kubernetes.io/name=" + Speaker, "--tail=20", "--prefix"},
	} {
		out, _ := l.Kubectl(ctx, args...)
		fmt.Fprintf(&b, "$ kubectl %s\n%s\n", strings.Join(args, " "), out)
	}
	return b.String()
}

func (d *demo) getPods(ctx context.Context) error {
	for _, args := range [][]string{{"get", "pods", "-n", Namespace, "-o", "wide"}, {"get", "nodes", "-o", "wide"}} {
		out, err := d.kubectl(ctx, args...)
		if err != nil {
			return err
		}
		d.o.Report("    %s", strings.ReplaceAll(strings.TrimSpace(out), "\n", "\n    "))
	}
	return nil
}

// startPods runs the backend image in pods app=web, one on every node, and app=dns, and waits
// until the kubelets report them Ready.
func (d *demo) startPods(ctx context.Context) error {
	image, err := lab.ImageNamed(d.o.Images, "backend")
	if err != nil {
		return err
	}
	pods := map[string]*corev1.Pod{}
	for _, n := range d.l.Nodes {
		pods["web-"+n.Name] = BackendPod("web-"+n.Name, "web", n.Name, image)
	}
	pods["dns-1"] = BackendPod("dns-1", "dns", d.l.Nodes[0].Name, image)
	for _, p := range pods {
		if _, err := d.l.Client.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	return wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		for name := range pods {
			p, err := d.l.Client.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
			if err != nil || !lab.PodReady(p) {
				return false, nil
			}
		}
		return true, nil
	})
}

// BackendPod is pod name, labelled app=app, that runs the backend image on node.
func BackendPod(name, app, node, image string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": app}},
		Spec: corev1.PodSpec{
			NodeSelector: map[string]string{corev1.LabelHostname: node},
			Containers:   []corev1.Container{lab.BackendContainer(image)},
		},
	}
}

func (d *demo) applyExamples(ctx context.Context) error {
	for _, f := range examples {
		out, err := d.kubectl(ctx, "apply", "-n", "default", "-f", filepath.Join(d.o.Repo, "examples", f))
		if err != nil {
			return err
		}
		d.o.Report("    %s", strings.ReplaceAll(strings.TrimSpace(out), "\n", "\n    "))
	}
	return nil
}

// services returns the example Services (every LoadBalancer Service in default).
func (d *demo) services(ctx context.Context) ([]corev1.Service, error) {
	list, err := d.l.Client.CoreV1().Services("default").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	var out []corev1.Service
	for _, s := range list.Items {
		if s.Spec.Type == corev1.ServiceTypeLoadBalancer {
			out = append(out, s)
		}
	}
	return out, nil
}

func (d *demo) waitAnnounced(ctx context.Context) error {
	began := time.Now()
	var pending []string
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		svcs, err := d.services(ctx)
		if err != nil {
			return false, nil
		}
		pending = nil
		for _, s := range svcs {
			want := len(s.Spec.IPFamilies)
			if len(s.Status.LoadBalancer.Ingress) != want {
				pending = append(pending, s.Name+" (no EXTERNAL-IP yet)")
				continue
			}
			for _, in := range s.Status.LoadBalancer.Ingress {
				if _, ok := AnnouncedBy(&s, in.IP); !ok {
					pending = append(pending, s.Name+" ("+in.IP+" not announced yet)")
				}
			}
		}
		return len(pending) == 0 && len(svcs) > 0, nil
	})
	if err != nil {
		return fmt.Errorf("%w: still waiting for %s", err, strings.Join(pending, ", "))
	}
	d.o.Report("    every IP assigned and announced in %v", time.Since(began).Round(10*time.Millisecond))
	return nil
}

// AnnouncedBy returns the node that announces ip, as the Service's condition says.
func AnnouncedBy(svc *corev1.Service, ip string) (string, bool) {
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return "", false
	}
	return speaker.AnnouncedBy(svc, addr)
}

func (d *demo) getServices(ctx context.Context) error {
	out, err := d.kubectl(ctx, "get", "svc", "-n", "default", "-o", "wide")
	if err != nil {
		return err
	}
	d.o.Report("    %s", strings.ReplaceAll(out, "\n", "\n    "))
	return nil
}

func (d *demo) curl(ctx context.Context) error {
	svcs, err := d.services(ctx)
	if err != nil {
		return err
	}
	client := d.l.Clients[0]
	for _, s := range svcs {
		if s.Spec.Selector["app"] != "web" {
			d.o.Report("    %-11s %v: port 53, no DNS server in the lab's pods (IP shown above)", s.Name, ips(&s))
			continue
		}
		for _, in := range s.Status.LoadBalancer.Ingress {
			node, _ := AnnouncedBy(&s, in.IP)
			url := "http://" + net.JoinHostPort(in.IP, "80") + "/"
			r, err := getRetrying(ctx, client.NS, url)
			if err != nil {
				return fmt.Errorf("%s: %w", url, err)
			}
			d.o.Report("    %-11s %-28s announced by %s -> pod %s saw client %s", s.Name, url, node, r.Pod, r.ClientIP())
		}
	}
	return nil
}

func ips(s *corev1.Service) []string {
	var out []string
	for _, in := range s.Status.LoadBalancer.Ingress {
		out = append(out, in.IP)
	}
	return out
}

// getRetrying requests url from ns until a backend answers (kube-proxy may still be syncing
// a new Service), for at most 15 s.
func getRetrying(ctx context.Context, ns, url string) (lab.Reply, error) {
	var r lab.Reply
	var last error
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 15*time.Second, true, func(ctx context.Context) (bool, error) {
		r, last = lab.GetHTTP(ctx, ns, url)
		return last == nil, nil
	})
	if err != nil {
		return r, fmt.Errorf("%w (last: %v)", err, last)
	}
	return r, nil
}

func (d *demo) killOwner(ctx context.Context) error {
	svc, err := d.l.Client.CoreV1().Services("default").Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		return err
	}
	vip := svc.Status.LoadBalancer.Ingress[0].IP
	owner, ok := AnnouncedBy(svc, vip)
	if !ok {
		return fmt.Errorf("web's %s is not announced", vip)
	}
	node := d.l.Node(owner)
	pid, err := d.speakerPID(ctx, owner)
	if err != nil {
		return err
	}
	d.o.Report("    %s announces %s: killing its speaker container's process (pid %d, SIGKILL) and pulling its cable", owner, vip, pid)
	client := d.l.Clients[0]
	outage, err := Outage(ctx, client.NS, vip, func() error {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			return err
		}
		return lab.Unplug(ctx, node.Host)
	})
	if err != nil {
		return err
	}
	svc, err = d.l.Client.CoreV1().Services("default").Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		return err
	}
	next, _ := AnnouncedBy(svc, vip)
	d.o.Report("    the client got answers again %v after the kill; %s now announces %s", outage.Round(time.Millisecond), next, vip)
	d.o.Report("    bringing %s back (cable in; the kubelet restarts the speaker)", owner)
	if err := lab.Plug(ctx, node.Host); err != nil {
		return err
	}
	_, err = d.kubectl(ctx, "-n", Namespace, "rollout", "status", "daemonset/"+Speaker, "--timeout=3m")
	return err
}

// speakerPID returns the PID of the speaker container's process on node.
func (d *demo) speakerPID(ctx context.Context, node string) (int, error) {
	pods, err := d.l.Client.CoreV1().Pods(Namespace).List(ctx, metav1.ListOptions{
		LabelSelector: "app.kubernetes.io/name=" + Speaker, FieldSelector: "spec.nodeName=" + node,
	})
	if err != nil {
		return 0, err
	}
	if len(pods.Items) != 1 || len(pods.Items[0].Status.ContainerStatuses) != 1 {
		return 0, fmt.Errorf("want one speaker pod with one container on %s, have %d pods", node, len(pods.Items))
	}
	return d.l.ContainerPID(ctx, d.l.Node(node), pods.Items[0].Status.ContainerStatuses[0].ContainerID)
}

// Outage runs kill while it requests http://vip:80/ from namespace ns every 10 ms (each with a
// 100 ms timeout), and returns the time from kill to the first answer after it (at most 30 s).
func Outage(ctx context.Context, ns, vip string, kill func() error) (time.Duration, error) {
	hc := lab.HTTPClient(ns, 100*time.Millisecond)
	url := "http://" + net.JoinHostPort(vip, "80") + "/"
	began := time.Now()
	if err := kill(); err != nil {
		return 0, err
	}
	for time.Since(began) < 30*time.Second && ctx.Err() == nil {
		resp, err := hc.Get(url)
		if err == nil {
			resp.Body.Close()
			return time.Since(began), nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return 0, fmt.Errorf("%s unreachable for 30 s after its owner died", vip)
}

// ShippedLeaderElection returns the leader-election timing flags that
// manifests/ccm-deployment.yaml under repo gives the CCM, so that the demo and
// the lab run the CCM with the timings users get.
func ShippedLeaderElection(repo string) ([]string, error) {
	path := filepath.Join(repo, "manifests", "ccm-deployment.yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var d appsv1.Deployment
	if err := yaml.UnmarshalStrict(data, &d); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var flags []string
	for _, c := range d.Spec.Template.Spec.Containers {
		for _, a := range c.Args {
			for _, f := range []string{"--leader-elect-lease-duration=", "--leader-elect-renew-deadline=", "--leader-elect-retry-period="} {
				if strings.HasPrefix(a, f) {
					flags = append(flags, a)
				}
			}
		}
	}
	if len(flags) != 3 {
		return nil, fmt.Errorf("%s sets the leader-election timings %v, want all three", path, flags)
	}
	return flags, nil
}
