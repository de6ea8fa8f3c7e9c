// Package install proves that onprem-lb installs the way a user installs it: the images
// `make images` built, imported into every node's containerd, run by real kubelets from
// `kubectl apply -k` of the repository's manifests (through an overlay naming the built tag,
// as a user's overlay would name theirs).
package install

import (
	"context"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"

	"github.com/onprem-lb/onprem-lb/test/demo"
	"github.com/onprem-lb/onprem-lb/test/lab"
	"github.com/onprem-lb/onprem-lb/test/lab/labtest"
)

const (
	system       = "onprem-lb" // the namespace of manifests/
	ccm          = demo.CCM
	speaker      = demo.Speaker
	appNamespace = "shop"
	leaseName    = "cloud-controller-manager" // manifests/ccm-deployment.yaml
	envHelm      = "ONPREM_LB_HELM"
)

var webLabels = map[string]string{"app": "web"}

func TestInstallWithKustomize(t *testing.T) {
	archives := labtest.Images(t)
	ctx, l := startLab(t, archives)
	overlay := t.TempDir()
	if err := demo.WriteOverlay(overlay, labtest.RepoPath(), archives); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	kubectl(ctx, t, l, "apply", "-k", overlay)
	kubectl(ctx, t, l, "-n", system, "create", "secret", "generic", "onprem-speaker-memberlist",
		"--from-literal=key=MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")
	waitRollouts(ctx, t, l)
	t.Logf("figure: kubectl apply -k to every onprem-lb pod Ready: %v", time.Since(began).Round(100*time.Millisecond))
	ip := checkInstalled(ctx, t, l, archives)

	t.Run("deleting the leading CCM pod moves leadership and changes no IP", func(t *testing.T) {
		leader := leaderPod(ctx, t, l)
		deleted := time.Now()
		kubectl(ctx, t, l, "-n", system, "delete", "pod", leader, "--wait=false")
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			lease, err := l.Client.CoordinationV1().Leases(system).Get(ctx, leaseName, metav1.GetOptions{})
			return err == nil && lease.Spec.HolderIdentity != nil && !strings.HasPrefix(*lease.Spec.HolderIdentity, leader+"_"), nil
		})
		if err != nil {
			t.Fatalf("no new CCM leader after deleting %s: %v", leader, err)
		}
		t.Logf("figure: a new CCM leader %v after the leading pod's deletion", time.Since(deleted).Round(100*time.Millisecond))
		if second := createLoadBalancer(ctx, t, l, "second", nil); second == ip {
			t.Errorf("the new leader gave %s, web's IP, to a second Service", second)
		}
		if got := serviceIP(ctx, t, l, "web"); got != ip {
			t.Errorf("web's IP changed from %s to %s with the new leader", ip, got)
		}
	})

	t.Run("a rolling update of the speakers to a new tag loses no request", func(t *testing.T) {
		current := imageRef(t, archives, speaker)
		next := current + "-next"
		if err := l.TagImage(ctx, current, next); err != nil {
			t.Fatal(err)
		}
		url := "http://" + ip + "/"
		failures, total := lab.RequestsDuring(ctx, l.Clients[0].NS, url, nil, func() {
			kubectl(ctx, t, l, "-n", system, "set", "image", "daemonset/"+speaker, speaker+"="+next)
			kubectl(ctx, t, l, "-n", system, "rollout", "status", "daemonset/"+speaker, "--timeout=3m")
		})
		// Known gap (DESIGN wants no failed request): a connection in flight at the instant
		// the new owner's gratuitous ARP moves the VIP reaches a node with no conntrack entry
		// for it, which resets it. What holds today: no request is refused or times out (no
		// outage), and at most one in-flight request per handover (one per node) is reset.
		for _, f := range failures {
			if !strings.Contains(f, "connection reset by peer") {
				t.Errorf("request during the rolling update failed %s", f)
			}
		}
		if len(failures) > len(l.Nodes) {
			t.Errorf("%d requests reset during the rolling update, more than one per handover: %v", len(failures), failures)
		}
		t.Logf("figure: %d requests during the rolling update, %d reset in flight", total, len(failures))
		if n := runningPodsOf(ctx, t, l)[next]; n != len(l.Nodes) {
			t.Errorf("%d speaker pods run %s after the update, want %d", n, next, len(l.Nodes))
		}
	})

	t.Run("a pool ConfigMap edit reaches the pods and takes effect", func(t *testing.T) {
		good := poolFile(ctx, t, l)
		const extra = "  - name: extra\n    addresses: [198.18.0.240-198.18.0.247]\n    autoAssign: false\n"
		key := regexp.MustCompile(`(?m)^pools:\n`)
		if !key.MatchString(good) {
			t.Fatalf("the pool file has no line \"pools:\": %q", good)
		}
		began := time.Now()
		setPoolFile(ctx, t, l, key.ReplaceAllLiteralString(good, "pools:\n"+extra))
		got := createLoadBalancer(ctx, t, l, "extra", map[string]string{"onprem-lb.io/pool": "extra"})
		t.Logf("figure: pool ConfigMap edited to a Service getting an IP of the new pool: %v (the kubelet updating the mounted file)", time.Since(began).Round(100*time.Millisecond))
		if !strings.HasPrefix(got, "198.18.0.24") {
			t.Errorf("Service extra got %s, want an IP of the new pool 198.18.0.240-198.18.0.247", got)
		}
		waitServes(ctx, t, l, got)
		t.Logf("figure: pool ConfigMap edited to the new pool's IP answering: %v", time.Since(began).Round(100*time.Millisecond))
	})

	t.Run("a bad pool file stops only the speaker that restarts with it, and says why", func(t *testing.T) {
		good := poolFile(ctx, t, l)
		owner := announcer(ctx, t, l, "web", ip)
		var victim *corev1.Pod
		failures, _ := lab.RequestsDuring(ctx, l.Clients[0].NS, "http://"+ip+"/", nil, func() {
			setPoolFile(ctx, t, l, "pools:\n  - name: lan\n    addresses: [not-an-address]\n")
			waitLogged(ctx, t, l, "Pool file rejected; keeping the last good one")
			for _, p := range speakerPods(ctx, t, l) {
				if p.Spec.NodeName != owner {
					victim = &p
				}
			}
			kubectl(ctx, t, l, "-n", system, "delete", "pod", victim.Name)
			msg := crashMessage(ctx, t, l, victim.Spec.NodeName)
			if !strings.Contains(msg, "not-an-address") {
				t.Errorf("the restarted speaker on %s says %q, want the bad address named", victim.Spec.NodeName, msg)
			}
		})
		for _, f := range failures {
			t.Errorf("request while a speaker could not start failed %s", f)
		}
		if got := serviceIP(ctx, t, l, "web"); got != ip {
			t.Errorf("web's IP changed from %s to %s", ip, got)
		}
		setPoolFile(ctx, t, l, good)
		kubectl(ctx, t, l, "-n", system, "delete", "pod", "-l", "app.kubernetes.io/name="+speaker, "--field-selector", "spec.nodeName="+victim.Spec.NodeName)
		kubectl(ctx, t, l, "-n", system, "rollout", "status", "daemonset/"+speaker, "--timeout=3m")
	})
}

func TestInstallWithHelm(t *testing.T) {
	archives := labtest.Images(t)
	helm := os.Getenv(envHelm)
	if helm == "" {
		t.Fatalf("%s is not set: run these tests through `make lab-test`", envHelm)
	}
	ctx, l := startLab(t, archives)
	helmRun := func(args ...string) {
		t.Helper()
		cmd := exec.CommandContext(ctx, helm, append(args, "--kubeconfig", l.Kubeconfig)...)
		cmd.Dir = labtest.RepoPath()
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	_, tag := lab.SplitImageRef(imageRef(t, archives, speaker))
	// --set-string, as the README says: a tag of digits only (a commit like 6165435) would
	// be a number, which the chart's schema refuses.
	helmRun("install", "onprem-lb", "charts/onprem-lb", "--set-string", "image.tag="+tag)
	waitRollouts(ctx, t, l)
	checkInstalled(ctx, t, l, archives)

	t.Run("helm upgrade keeps the gossip key", func(t *testing.T) {
		key := func() []byte {
			s, err := l.Client.CoreV1().Secrets(system).Get(ctx, "onprem-speaker-memberlist", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			return s.Data["key"]
		}
		before := key()
		helmRun("upgrade", "onprem-lb", "charts/onprem-lb", "--reuse-values", "--set", "ccm.replicas=2")
		if after := key(); len(before) == 0 || string(after) != string(before) {
			t.Errorf("gossip key %q before the upgrade, %q after: every speaker would have to restart at once", before, after)
		}
	})
}

// startLab starts a lab of real nodes holding the images, and dumps what a user would look
// at if the test fails.
func startLab(t *testing.T, archives []string) (context.Context, *lab.Lab) {
	l := labtest.Start(t, lab.Options{Kubelets: true, Images: archives})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	t.Cleanup(func() {
		if t.Failed() {
			dump(t, l)
		}
	})
	return ctx, l
}

func waitRollouts(ctx context.Context, t *testing.T, l *lab.Lab) {
	t.Helper()
	kubectl(ctx, t, l, "-n", system, "rollout", "status", "deployment/"+ccm, "--timeout=3m")
	kubectl(ctx, t, l, "-n", system, "rollout", "status", "daemonset/"+speaker, "--timeout=3m")
}

// checkInstalled checks what a user checks after installing, and returns the IPv4 of a
// LoadBalancer Service it made, shop/web, which serves 3 backend pods.
func checkInstalled(ctx context.Context, t *testing.T, l *lab.Lab, archives []string) string {
	t.Helper()
	t.Run("2 CCM and 3 speaker pods run our images", func(t *testing.T) {
		running := runningPodsOf(ctx, t, l)
		want := map[string]int{imageRef(t, archives, ccm): 2, imageRef(t, archives, speaker): 3}
		for image, n := range want {
			if running[image] != n {
				t.Errorf("%d Running pods of %s, want %d (all: %v)", running[image], image, n, running)
			}
		}
	})

	t.Run("our CCM initialized every node", func(t *testing.T) {
		err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			nodes, err := l.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
			if err != nil {
				return false, nil
			}
			return len(nodes.Items) == len(l.Nodes) && !slices.ContainsFunc(nodes.Items, func(n corev1.Node) bool { return !demo.Initialized(&n) }), nil
		})
		if err != nil {
			out, _ := l.Kubectl(ctx, "get", "nodes", "-o", "custom-columns=NAME:.metadata.name,PROVIDER:.spec.providerID,TAINTS:.spec.taints")
			t.Fatalf("nodes not initialized (uninitialized taint gone, providerID onprem://<node>): %v\n%s", err, out)
		}
	})

	var ip string
	t.Run("a LoadBalancer Service gets an IP that serves its pods", func(t *testing.T) {
		deployWeb(ctx, t, l, imageRef(t, archives, "backend"))
		ip = createLoadBalancer(ctx, t, l, "web", nil)
		waitServes(ctx, t, l, ip)
	})
	if ip == "" {
		t.FailNow()
	}
	return ip
}

// waitServes waits until a GET of ip:80 from the client reaches a web pod.
func waitServes(ctx context.Context, t *testing.T, l *lab.Lab, ip string) {
	t.Helper()
	url := "http://" + ip + "/"
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		r, err := lab.GetHTTP(ctx, l.Clients[0].NS, url)
		return err == nil && strings.HasPrefix(r.Pod, appNamespace+"/web-"), nil
	})
	if err != nil {
		t.Fatalf("GET %s from the client never reached a web pod: %v", url, err)
	}
}

const poolsConfigMap, poolsKey = "onprem-lb-pools", "pools.yaml" // manifests/kustomization.yaml

func poolFile(ctx context.Context, t *testing.T, l *lab.Lab) string {
	t.Helper()
	cm, err := l.Client.CoreV1().ConfigMaps(system).Get(ctx, poolsConfigMap, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return cm.Data[poolsKey]
}

func setPoolFile(ctx context.Context, t *testing.T, l *lab.Lab, content string) {
	t.Helper()
	cm, err := l.Client.CoreV1().ConfigMaps(system).Get(ctx, poolsConfigMap, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data[poolsKey] = content
	if _, err := l.Client.CoreV1().ConfigMaps(system).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func speakerPods(ctx context.Context, t *testing.T, l *lab.Lab) []corev1.Pod {
	t.Helper()
	pods, err := l.Client.CoreV1().Pods(system).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=" + speaker})
	if err != nil {
		t.Fatal(err)
	}
	return pods.Items
}

// announcer returns the node that announces Service name's IP ip, from its condition.
func announcer(ctx context.Context, t *testing.T, l *lab.Lab, name, ip string) string {
	t.Helper()
	var node string
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		svc, err := l.Client.CoreV1().Services(appNamespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		var ok bool
		node, ok = demo.AnnouncedBy(svc, ip)
		return ok, nil
	})
	if err != nil {
		t.Fatalf("Service %s: no node announces %s: %v", name, ip, err)
	}
	return node
}

// waitLogged waits until every speaker pod has logged line.
func waitLogged(ctx context.Context, t *testing.T, l *lab.Lab, line string) {
	t.Helper()
	began := time.Now()
	err := wait.PollUntilContextTimeout(ctx, time.Second, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		for _, p := range speakerPods(ctx, t, l) {
			out, err := l.Kubectl(ctx, "-n", system, "logs", p.Name)
			if err != nil || !strings.Contains(out, line) {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("not every speaker logged %q: %v", line, err)
	}
	t.Logf("figure: pool ConfigMap edited to every speaker having read the file: %v", time.Since(began).Round(100*time.Millisecond))
}

// crashMessage waits until the speaker pod on node has exited with an error and returns what
// kubectl describe pod shows of it (its termination message: the last lines of its log).
func crashMessage(ctx context.Context, t *testing.T, l *lab.Lab, node string) string {
	t.Helper()
	msg, err := demo.CrashMessage(ctx, l, speaker, node)
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

// runningPodsOf counts the Running pods of onprem-lb by image.
func runningPodsOf(ctx context.Context, t *testing.T, l *lab.Lab) map[string]int {
	t.Helper()
	pods, err := l.Client.CoreV1().Pods(system).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, p := range pods.Items {
		if p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil {
			continue
		}
		for _, c := range p.Spec.Containers {
			count[c.Image]++
		}
	}
	return count
}

// leaderPod returns the name of the CCM pod holding the leader lease.
func leaderPod(ctx context.Context, t *testing.T, l *lab.Lab) string {
	t.Helper()
	lease, err := l.Client.CoordinationV1().Leases(system).Get(ctx, leaseName, metav1.GetOptions{})
	if err != nil || lease.Spec.HolderIdentity == nil {
		t.Fatalf("CCM leader lease %s/%s: %v", system, leaseName, err)
	}
	pod, _, _ := strings.Cut(*lease.Spec.HolderIdentity, "_")
	return pod
}

func imageRef(t *testing.T, archives []string, name string) string {
	t.Helper()
	ref, err := lab.ImageNamed(archives, name)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

// deployWeb runs 3 replicas of the backend, app=web, in appNamespace.
func deployWeb(ctx context.Context, t *testing.T, l *lab.Lab, image string) {
	t.Helper()
	if _, err := l.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: appNamespace}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	deploy := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](3),
			Selector: &metav1.LabelSelector{MatchLabels: webLabels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: webLabels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{lab.BackendContainer(image)}},
			},
		},
	}
	if _, err := l.Client.AppsV1().Deployments(appNamespace).Create(ctx, deploy, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// createLoadBalancer creates a LoadBalancer Service name for the web pods, port 80, and
// returns its IPv4 once it has one.
func createLoadBalancer(ctx context.Context, t *testing.T, l *lab.Lab, name string, annotations map[string]string) string {
	t.Helper()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeLoadBalancer,
			Selector: webLabels,
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(lab.HTTPPort)}},
		},
	}
	if _, err := l.Client.CoreV1().Services(appNamespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var ip string
	// Minutes: after a pool ConfigMap edit, the kubelet takes about one to update the file.
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		ip = serviceIP(ctx, t, l, name)
		return ip != "", nil
	})
	if err != nil {
		t.Fatalf("Service %s/%s got no EXTERNAL-IP: %v", appNamespace, name, err)
	}
	return ip
}

// serviceIP returns the first ingress IP of Service name in appNamespace, "" if none yet.
func serviceIP(ctx context.Context, t *testing.T, l *lab.Lab, name string) string {
	t.Helper()
	s, err := l.Client.CoreV1().Services(appNamespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil || len(s.Status.LoadBalancer.Ingress) == 0 {
		return ""
	}
	return s.Status.LoadBalancer.Ingress[0].IP
}

func kubectl(ctx context.Context, t *testing.T, l *lab.Lab, args ...string) string {
	t.Helper()
	out, err := l.Kubectl(ctx, args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// dump logs what a user would look at when an install goes wrong.
func dump(t *testing.T, l *lab.Lab) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, args := range [][]string{
		{"get", "pods", "-A", "-o", "wide"},
		{"-n", system, "describe", "pods"},
		{"-n", system, "logs", "-l", "app.kubernetes.io/name=" + ccm, "--tail=30", "--all-containers", "--prefix"},
		{"-n", system, "logs", "-l", "app.kubernetes.io/name=" + speaker, "--tail=30", "--all-containers", "--prefix"},
		{"get", "events", "-A", "--sort-by=.lastTimestamp"},
	} {
		out, err := l.Kubectl(ctx, args...)
		t.Logf("kubectl %s (%v):\n%s", strings.Join(args, " "), err, out)
	}
}
