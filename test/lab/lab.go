package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Options configure a lab. The zero value is a usable default except for BinDir.
type Options struct {
	// Dir holds the lab's files (default DefaultDir). Start empties it.
	Dir string
	// BinDir holds etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy,
	// kubectl and kubelet, as built by test/tools/build.sh (default: $ONPREM_LB_TOOLS_BIN).
	BinDir string
	// Nodes is the number of node namespaces (default 3).
	Nodes int
	// Clients is the number of client namespaces on the segment (default 1).
	Clients int
	// NoKubeProxy runs the nodes without kube-proxy.
	NoKubeProxy bool
	// ProxyMode is kube-proxy's --proxy-mode: "iptables" (the default) or "nftables".
	ProxyMode string
	// Kubelets makes the nodes real: each node namespace runs containerd and a kubelet
	// (--cloud-provider=external) that register the node themselves, so the Node carries
	// the node.cloudprovider.kubernetes.io/uninitialized taint until a cloud provider
	// initializes it. Pods then run in containers, networked by the CNI bridge plugin with
	// addresses from the upper half of the node's pod CIDRs. Needs containerd, runc and the
	// CNI plugins (test/deps.sh) and cgroup v1. Without it the lab keeps Node objects Ready
	// itself and pods are bare namespaces (AddPod).
	Kubelets bool
	// Images are OCI archive tarballs, each image named in its index by the annotation
	// io.containerd.image.name, imported into every real node before its kubelet starts:
	// nothing is pulled, so pods use imagePullPolicy IfNotPresent (or Never). Exactly one
	// of them must be a "pause" image (e.g. example.org/lab/pause:v1): the pod sandbox.
	Images []string
	// KubeletSyncFrequency is how often a kubelet syncs each pod, which bounds how long an
	// edited ConfigMap takes to reach the pods' mounted files (default: the kubelet's, 1 min).
	KubeletSyncFrequency time.Duration
	// Router adds an upstream router (nil: none): the namespace olb-router between the LAN
	// and a second segment, the WAN, with clients of its own, running FRR's zebra, bgpd and
	// bfdd (Debian's frr, test/deps.sh), which accept a BGP session with BFD from any node
	// and install what the nodes advertise as ECMP routes (see Router).
	Router *RouterOptions
	// Helper is the program that runs pod backends; it must call RunHelper first thing in
	// main (default: this program).
	Helper string
	// Logf reports progress (default: discard).
	Logf func(format string, args ...any)
}

// Lab is a running lab. Its methods are safe for concurrent use.
type Lab struct {
	opts Options

	// Kubeconfig is the path of an admin (system:masters) kubeconfig.
	Kubeconfig string
	// Config and Client talk to the API server as admin.
	Config *rest.Config
	Client kubernetes.Interface
	// ControlPlane is the namespace that runs etcd, kube-apiserver and kube-controller-manager.
	ControlPlane *Host
	Nodes        []*Node
	Clients      []*Host
	// Router is the upstream router, nil without Options.Router.
	Router *Router

	lock         *lock
	pki          *pki
	sandboxImage string // the pause image, with Options.Kubelets
	logDir       string
	cancel       context.CancelFunc
	wg           sync.WaitGroup

	mu    sync.Mutex
	procs []*Process
	pods  map[string]*Pod // by namespace/name
	// proxyRuns counts the kube-proxies started, to name their logs apart.
	proxyRuns int
}

// EnvToolsBin names the environment variable that points at the control-plane binaries.
const EnvToolsBin = "ONPREM_LB_TOOLS_BIN"

// Start brings a lab up and returns once every part is ready: the API server answers, the
// controllers run, the nodes are Ready and kube-proxy has synced on each. The lab runs until
// Stop; ctx bounds only the start.
func Start(ctx context.Context, opts Options) (_ *Lab, err error) {
	if opts.Dir == "" {
		opts.Dir = DefaultDir
	}
	if opts.BinDir == "" {
		opts.BinDir = os.Getenv(EnvToolsBin)
	}
	if opts.Nodes == 0 {
		opts.Nodes = 3
	}
	if opts.Clients == 0 {
		opts.Clients = 1
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	if opts.Helper == "" {
		if opts.Helper, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("lab: find helper program: %w", err)
		}
	}
	if opts.Nodes < 1 || opts.Nodes > 50 || opts.Clients < 1 || opts.Clients > 50 {
		return nil, fmt.Errorf("lab: %d nodes and %d clients: each must be 1 to 50", opts.Nodes, opts.Clients)
	}
	if err := checkBinaries(opts.BinDir, opts.Kubelets); err != nil {
		return nil, err
	}
	var router *Router
	if opts.Router != nil {
		ro, err := opts.Router.withDefaults()
		if err != nil {
			return nil, err
		}
		router = newRouter(ro)
	}
	var sandbox string
	if opts.Kubelets {
		if sandbox, err = ImageNamed(opts.Images, "pause"); err != nil {
			return nil, fmt.Errorf("%w (the pod sandbox of the kubelets)", err)
		}
	}
	lk, err := acquireLock()
	if err != nil {
		return nil, err
	}
	l := &Lab{opts: opts, lock: lk, logDir: filepath.Join(opts.Dir, "logs"), pods: map[string]*Pod{}, ControlPlane: cpHost, sandboxImage: sandbox, Router: router}
	for i := 1; i <= opts.Nodes; i++ {
		l.Nodes = append(l.Nodes, &Node{Host: nodeHost(i), Index: i, PodCIDRs: podCIDRs(i)})
	}
	for i := 1; i <= opts.Clients; i++ {
		l.Clients = append(l.Clients, clientHost(i))
	}
	defer func() {
		if err != nil {
			l.Stop()
		}
	}()

	type step struct {
		name string
		fn   func(context.Context) error
	}
	steps := []step{
		{"remove what an earlier lab left", func(ctx context.Context) error { return cleanup(ctx, opts.Dir) }},
		{"create the L2 segment and hosts", l.createNetwork},
	}
	if router != nil {
		steps = append(steps, step{"start the router (FRR) and its WAN", l.startRouter})
	}
	steps = append(steps, []step{
		{"generate certificates and kubeconfigs", l.createPKI},
		{"start etcd", l.startEtcd},
		{"start kube-apiserver", l.startAPIServer},
		{"start kube-controller-manager", l.startControllerManager},
		{"start kube-scheduler", l.startScheduler},
		{"register Ready nodes", l.registerNodes},
	}...)
	if opts.Kubelets {
		steps[len(steps)-1] = step{"start real nodes (containerd, kubelet)", l.startRealNodes}
	}
	if !opts.NoKubeProxy {
		steps = append(steps, step{"start kube-proxy on every node", l.startKubeProxies})
	}
	for _, s := range steps {
		began := time.Now()
		if err := s.fn(ctx); err != nil {
			return nil, fmt.Errorf("lab: %s: %w", s.name, err)
		}
		opts.Logf("%-40s done in %v", s.name, time.Since(began).Round(10*time.Millisecond))
	}
	return l, nil
}

// checkBinaries says which lab binary is missing and how to build it.
func checkBinaries(dir string, kubelets bool) error {
	if dir == "" {
		return fmt.Errorf("lab: no control-plane binaries: set %s to the directory test/tools/build.sh prints", EnvToolsBin)
	}
	bins := []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy", "kubectl"}
	if kubelets {
		bins = append(bins, "kubelet")
	}
	for _, b := range bins {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			return fmt.Errorf("lab: control-plane binary missing (run test/tools/build.sh): %w", err)
		}
	}
	return nil
}

// Stop ends every process of the lab and removes its namespaces, links and files. It is safe
// to call more than once.
func (l *Lab) Stop() {
	if l.cancel != nil {
		l.cancel()
	}
	l.wg.Wait()
	l.mu.Lock()
	procs := l.procs
	l.procs = nil
	l.mu.Unlock()
	// The processes of a frozen node (FreezeNode) would not end.
	if _, err := thawLabCgroups(); err != nil {
		l.opts.Logf("lab: thaw: %v", err)
	}
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].Kill()
	}
	if l.lock != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := cleanup(ctx, l.opts.Dir); err != nil {
			l.opts.Logf("lab: cleanup: %v", err)
		}
		l.lock.release()
		l.lock = nil
	}
}

// Node returns the node named name, nil if there is none.
func (l *Lab) Node(name string) *Node {
	for _, n := range l.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// Dir returns the directory that holds the lab's files.
func (l *Lab) Dir() string { return l.opts.Dir }

// Bin returns the path of a control-plane binary (e.g. "kubectl").
func (l *Lab) Bin(name string) string { return filepath.Join(l.opts.BinDir, name) }

// StartProcess runs a program inside ns for the life of the lab, logging to the lab's log
// directory. Stop ends it with the rest of the lab.
func (l *Lab) StartProcess(ns, name string, env []string, bin string, args ...string) (*Process, error) {
	return l.track(startProcess(l.logDir, ns, name, env, bin, args...))
}

// track adds a started process to those Stop ends.
func (l *Lab) track(p *Process, err error) (*Process, error) {
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.procs = append(l.procs, p)
	l.mu.Unlock()
	return p, nil
}

// waitFor polls ready every interval until it reports true, fails, the process p (if any)
// exits, or timeout passes. The error says which.
func waitFor(ctx context.Context, p *Process, timeout time.Duration, what string, ready func(context.Context) (bool, error)) error {
	var last error
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		if p != nil {
			if ended, _ := p.Exited(); ended {
				return false, errors.New("process ended")
			}
		}
		ok, err := ready(ctx)
		last = err
		return ok, nil
	})
	if err == nil {
		return nil
	}
	if last != nil {
		err = fmt.Errorf("%w (last: %v)", err, last)
	}
	err = fmt.Errorf("waiting for %s: %w", what, err)
	if p != nil {
		return p.failure(err)
	}
	return err
}

func (l *Lab) createNetwork(ctx context.Context) error {
	// The lab's directory is traversable: FRR's daemons (Options.Router) run as the user frr.
	if err := os.MkdirAll(l.opts.Dir, 0o711); err != nil {
		return err
	}
	for _, dir := range []string{l.logDir, filepath.Join(l.opts.Dir, "pki")} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
	}
	if err := createSegment(ctx); err != nil {
		return err
	}
	if err := createHost(ctx, l.ControlPlane, bridge, false); err != nil {
		return err
	}
	if err := routePods(ctx, l.ControlPlane, 0, len(l.Nodes)); err != nil {
		return err
	}
	for _, n := range l.Nodes {
		if err := createHost(ctx, n.Host, bridge, true); err != nil {
			return err
		}
		if err := routeNode(ctx, n.Index, len(l.Nodes)); err != nil {
			return err
		}
	}
	for _, c := range l.Clients {
		if err := createHost(ctx, c, bridge, false); err != nil {
			return err
		}
	}
	return nil
}

// apiServer is the URL every lab component and test reaches the API server at.
func apiServer() string {
	return "https://" + net.JoinHostPort(cpHost.IPv4.String(), "6443")
}

func (l *Lab) createPKI(ctx context.Context) error {
	p, err := newPKI(filepath.Join(l.opts.Dir, "pki"))
	if err != nil {
		return err
	}
	l.pki = p
	ips := []net.IP{net.ParseIP("127.0.0.1"), cpHost.IPv4.AsSlice(), cpHost.IPv6.AsSlice()}
	for _, cidr := range ServiceCIDRs {
		ips = append(ips, cidr.Addr().Next().AsSlice()) // the "kubernetes" Service's ClusterIP
	}
	dns := []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}
	if err := p.writeServing("kube-apiserver", ips, dns); err != nil {
		return err
	}
	if err := p.writeServiceAccountKeys(); err != nil {
		return err
	}
	if l.Kubeconfig, err = p.writeKubeconfig("admin", apiServer(), "lab-admin", []string{"system:masters"}); err != nil {
		return err
	}
	for _, user := range []string{"kube-controller-manager", "kube-scheduler", "kube-proxy"} {
		if _, err := p.writeKubeconfig(user, apiServer(), "system:"+user, nil); err != nil {
			return err
		}
	}
	// kube-scheduler serves its health checks on loopback with a lab certificate.
	if err := p.writeServing("kube-scheduler", []net.IP{net.IPv4(127, 0, 0, 1)}, []string{"localhost"}); err != nil {
		return err
	}
	// The API server's identity towards kubelets (logs, exec, port-forward).
	if err := p.writeClient("kube-apiserver-kubelet-client", "kube-apiserver-kubelet-client", []string{"system:masters"}); err != nil {
		return err
	}
	if l.Config, err = clientcmd.BuildConfigFromFlags("", l.Kubeconfig); err != nil {
		return err
	}
	l.Config.QPS, l.Config.Burst = 500, 1000
	l.Client, err = kubernetes.NewForConfig(l.Config)
	return err
}

// SaveLogs copies the logs of every lab process into dir, for a look after Stop.
func (l *Lab) SaveLogs(dir string) error {
	entries, err := os.ReadDir(l.logDir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(l.logDir, e.Name()))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}
