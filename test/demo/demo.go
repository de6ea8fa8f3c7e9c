// Package demo deploys onprem-lb into a running lab the way a user would, and shows what a
// user checks first: the EXTERNAL-IPs, traffic through them, and a node dying. It is what
// `make demo` runs, inside the process that keeps the lab up.
//
// Our binaries run as the ServiceAccounts of manifests/ with the RBAC of manifests/, never as
// admin; the pool file is the ConfigMap of manifests/ (examples/pools-basic.yaml), written to
// a file as the kubelet would mount it; the Services are the files of examples/.
package demo

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
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
	// BinDir holds onprem-cloud-controller-manager and onprem-speaker.
	BinDir string
	// Report prints one step's progress.
	Report func(format string, args ...any)
}

// examples are the example Services the demo applies, in order.
var examples = []string{"service-cluster.yaml", "service-local.yaml", "service-dual-stack.yaml", "service-pinned-ip.yaml", "service-shared-ip.yaml"}

// Run deploys onprem-lb into l, creates the example Services and their pods, and shows them
// working, step by step; an error names the step that failed. It leaves everything running.
func Run(ctx context.Context, l *lab.Lab, o Options) error {
	d := &demo{l: l, o: o, dir: filepath.Join(l.Dir(), "demo"), speakers: map[string]*lab.Process{}}
	steps := []struct {
		name string
		fn   func(context.Context) error
	}{
		{"kubectl apply -k manifests/, and the gossip key Secret", d.install},
		{"start onprem-cloud-controller-manager with its ServiceAccount", d.startCCM},
		{"start onprem-speaker on every node with its ServiceAccount", d.startSpeakers},
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
	l          *lab.Lab
	o          Options
	dir        string
	pools, key string
	speakers   map[string]*lab.Process
}

func (d *demo) kubectl(ctx context.Context, args ...string) (string, error) {
	out, err := d.l.Kubectl(ctx, args...)
	if err != nil {
		return "", fmt.Errorf("kubectl %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return out, nil
}

func (d *demo) install(ctx context.Context) error {
	if err := os.MkdirAll(d.dir, 0o700); err != nil {
		return err
	}
	// What a user runs. The lab has no kubelet or scheduler: the Deployment and DaemonSet
	// stay without pods, and the next steps run our binaries as their pods would.
	out, err := d.kubectl(ctx, "apply", "-k", filepath.Join(d.o.Repo, "manifests"))
	if err != nil {
		return err
	}
	d.o.Report("    %s", strings.ReplaceAll(strings.TrimSpace(out), "\n", "\n    "))
	raw := make([]byte, 32)
	rand.Read(raw)
	key := base64.StdEncoding.EncodeToString(raw)
	if _, err := d.kubectl(ctx, "-n", Namespace, "create", "secret", "generic", "onprem-speaker-memberlist", "--from-literal=key="+key); err != nil {
		return err
	}
	// The files the kubelet would mount from the ConfigMap and the Secret.
	cm, err := d.l.Client.CoreV1().ConfigMaps(Namespace).Get(ctx, "onprem-lb-pools", metav1.GetOptions{})
	if err != nil {
		return err
	}
	d.pools, d.key = filepath.Join(d.dir, "pools.yaml"), filepath.Join(d.dir, "memberlist-key")
	if err := os.WriteFile(d.pools, []byte(cm.Data["pools.yaml"]), 0o644); err != nil {
		return err
	}
	return os.WriteFile(d.key, []byte(key), 0o600)
}

func (d *demo) startCCM(ctx context.Context) error {
	kubeconfig, err := d.l.ServiceAccountKubeconfig(ctx, Namespace, "onprem-cloud-controller-manager")
	if err != nil {
		return err
	}
	timings, err := ShippedLeaderElection(d.o.Repo)
	if err != nil {
		return err
	}
	p, err := d.l.StartProcess(d.l.ControlPlane.NS, "onprem-cloud-controller-manager", nil, filepath.Join(d.o.BinDir, "onprem-cloud-controller-manager"),
		append([]string{"--cloud-provider=onprem", "--cloud-config=" + d.pools, "--kubeconfig=" + kubeconfig,
			"--authentication-kubeconfig=" + kubeconfig, "--authorization-kubeconfig=" + kubeconfig,
			"--leader-elect=true", "--leader-elect-resource-namespace=" + Namespace, "--leader-elect-resource-name=cloud-controller-manager",
			"--use-service-account-credentials=false", "--concurrent-service-syncs=10",
			"--secure-port=10258", "--bind-address=127.0.0.1"}, timings...)...)
	if err != nil {
		return err
	}
	return waitLog(ctx, p, "Successfully acquired lease")
}

func (d *demo) startSpeakers(ctx context.Context) error {
	kubeconfig, err := d.l.ServiceAccountKubeconfig(ctx, Namespace, "onprem-speaker")
	if err != nil {
		return err
	}
	for _, n := range d.l.Nodes {
		if err := d.startSpeaker(ctx, n, kubeconfig); err != nil {
			return err
		}
	}
	return nil
}

func (d *demo) startSpeaker(ctx context.Context, n *lab.Node, kubeconfig string) error {
	name := "onprem-speaker-" + n.Name
	if _, restart := d.speakers[n.Name]; restart {
		name += "-restarted"
	}
	p, err := d.l.StartProcess(n.NS, name, nil, filepath.Join(d.o.BinDir, "onprem-speaker"),
		"--config="+d.pools, "--node-name="+n.Name, "--kubeconfig="+kubeconfig,
		"--memberlist-key-file="+d.key, "--metrics-bind-address="+n.IPv4.String()+":7472")
	if err != nil {
		return err
	}
	d.speakers[n.Name] = p
	return waitLog(ctx, p, "Membership converged")
}

func (d *demo) startPods(ctx context.Context) error {
	for _, n := range d.l.Nodes {
		if _, err := d.l.AddPod(ctx, lab.PodOptions{Namespace: "default", Name: "web-" + n.Name, Node: n.Name, Labels: map[string]string{"app": "web"}}); err != nil {
			return err
		}
	}
	_, err := d.l.AddPod(ctx, lab.PodOptions{Namespace: "default", Name: "dns-1", Node: d.l.Nodes[0].Name, Labels: map[string]string{"app": "dns"}})
	return err
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
	c := meta.FindStatusCondition(svc.Status.Conditions, speaker.ConditionType(addr))
	if c == nil || c.Status != metav1.ConditionTrue || c.Reason != speaker.ReasonAnnounced || !strings.Contains(c.Message, ip+" ") {
		return "", false
	}
	_, after, _ := strings.Cut(c.Message, "by node ")
	node, _, _ := strings.Cut(after, " ")
	return node, node != ""
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
	var node *lab.Node
	for _, n := range d.l.Nodes {
		if n.Name == owner {
			node = n
		}
	}
	d.o.Report("    %s announces %s: killing its speaker (SIGKILL) and pulling its cable", owner, vip)
	client := d.l.Clients[0]
	outage, err := Outage(ctx, client.NS, vip, func() error {
		d.speakers[owner].Kill()
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
	d.o.Report("    bringing %s back (cable in, speaker restarted)", owner)
	if err := lab.Plug(ctx, node.Host); err != nil {
		return err
	}
	kubeconfig, err := d.l.ServiceAccountKubeconfig(ctx, Namespace, "onprem-speaker")
	if err != nil {
		return err
	}
	return d.startSpeaker(ctx, node, kubeconfig)
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

// waitLog waits (30 s at most) until p's log contains want.
func waitLog(ctx context.Context, p *lab.Process, want string) error {
	ctx, cancel := context.WithTimeoutCause(ctx, 30*time.Second, fmt.Errorf("%s did not log %q within 30s", p.Name, want))
	defer cancel()
	err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(context.Context) (bool, error) {
		if ended, err := p.Exited(); ended {
			return false, fmt.Errorf("%s ended: %v", p.Name, err)
		}
		return strings.Contains(p.Tail(500), want), nil
	})
	if err != nil {
		if cause := context.Cause(ctx); cause != nil {
			err = cause
		}
		return fmt.Errorf("%s: waiting for %q: %w\n%s", p.Name, want, err, p.Tail(15))
	}
	return nil
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
