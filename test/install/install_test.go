// Package install proves that onprem-lb installs the way a user installs it: the images
// `make images` built, imported into every node's containerd, run by real kubelets from
// `kubectl apply -k` of the repository's manifests (through an overlay naming the built tag,
// as a user's overlay would name theirs).
package install

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
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
	uninitTaint  = "node.cloudprovider.kubernetes.io/uninitialized"
	appNamespace = "shop"
	leaseName    = "cloud-controller-manager" // manifests/ccm-deployment.yaml
	envHelm      = "ONPREM_LB_HELM"
)

var webLabels = map[string]string{"app": "web"}

func TestInstallWithKustomize(t *testing.T) {
	archives := labtest.Images(t)
	ctx, l := startLab(t, archives)
	overlay := t.TempDir()
	if err := demo.WriteOverlay(overlay, repoRoot(), archives); err != nil {
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
		if second := createLoadBalancer(ctx, t, l, "second"); second == ip {
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
		for _, f := range failures {
			t.Errorf("request during the rolling update failed %s", f)
		}
		t.Logf("%d requests during the rolling update, %d failed", total, len(failures))
		if n := runningPodsOf(ctx, t, l)[next]; n != len(l.Nodes) {
			t.Errorf("%d speaker pods run %s after the update, want %d", n, next, len(l.Nodes))
		}
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
		cmd.Dir = repoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	speakerRef := imageRef(t, archives, speaker)
	helmRun("install", "onprem-lb", "charts/onprem-lb", "--set", "image.tag="+speakerRef[strings.LastIndex(speakerRef, ":")+1:])
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
			for _, n := range nodes.Items {
				tainted := slices.ContainsFunc(n.Spec.Taints, func(tt corev1.Taint) bool { return tt.Key == uninitTaint })
				if tainted || n.Spec.ProviderID != "onprem://"+n.Name {
					return false, nil
				}
			}
			return len(nodes.Items) == len(l.Nodes), nil
		})
		if err != nil {
			out, _ := l.Kubectl(ctx, "get", "nodes", "-o", "custom-columns=NAME:.metadata.name,PROVIDER:.spec.providerID,TAINTS:.spec.taints")
			t.Fatalf("nodes not initialized (uninitialized taint gone, providerID onprem://<node>): %v\n%s", err, out)
		}
	})

	var ip string
	t.Run("a LoadBalancer Service gets an IP that serves its pods", func(t *testing.T) {
		deployWeb(ctx, t, l, imageRef(t, archives, "backend"))
		ip = createLoadBalancer(ctx, t, l, "web")
		url := "http://" + ip + "/"
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			r, err := lab.GetHTTP(ctx, l.Clients[0].NS, url)
			return err == nil && strings.HasPrefix(r.Pod, appNamespace+"/web-"), nil
		})
		if err != nil {
			t.Fatalf("GET %s from the client never reached a web pod: %v", url, err)
		}
	})
	if ip == "" {
		t.FailNow()
	}
	return ip
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

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
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
func createLoadBalancer(ctx context.Context, t *testing.T, l *lab.Lab, name string) string {
	t.Helper()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name},
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
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
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
