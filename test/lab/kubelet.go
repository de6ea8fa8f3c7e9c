package lab

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	kubeletv1beta1 "k8s.io/kubelet/config/v1beta1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"
)

// A real node (Options.Kubelets) is a node namespace running containerd and a kubelet, both
// inside one private mount namespace of the node's own, kept by a holder process:
//
//   - a tmpfs of its own on /run, /var/lib and /var/log, so that every path they hard-code
//     (/run/containerd, /var/lib/kubelet, /var/lib/cni, /var/log/pods, /run/netns ...) is the
//     node's alone and vanishes with it; the lab directory is mounted back at its place;
//   - the kernel settings the kubelet would otherwise write machine-wide (kubeletSysctls)
//     shown to it as files that already hold the values it wants.
//
// All of them run in the node's cgroup (see cgroups.go), which is how teardown finds them.

// Paths inside a node's mount namespace: the defaults, which the mount namespace makes private.
const (
	containerdSocket = "/run/containerd/containerd.sock"
	cniBinDir        = "/usr/lib/cni"
)

// kubeletSysctls are the kernel settings the kubelet insists on (setupKernelTunables) and
// would write for the whole machine if they differed.
var kubeletSysctls = map[string]string{
	"vm/overcommit_memory": "1", "vm/panic_on_oom": "0", "kernel/panic": "10", "kernel/panic_on_oops": "1",
	"kernel/keys/root_maxkeys": "1000000", "kernel/keys/root_maxbytes": "25000000",
}

// cniFirstHost is the first host part the CNI hands out in a node's pod CIDRs: below it are
// the addresses AddPod gives its bare pods.
const cniFirstHost = 128

// imageNameAnnotation names an image in an OCI archive's index, as `ctr images import` reads it.
const imageNameAnnotation = "io.containerd.image.name"

// nodeCgroup is the cgroup, in every hierarchy, that node n runs in.
func nodeCgroup(n *Node) string { return "/" + n.NS }

// nodeDir holds node n's configuration files.
func (l *Lab) nodeDir(n *Node) string { return filepath.Join(l.opts.Dir, "nodes", n.Name) }

// inNode returns the path at which this process sees p of node n's mount namespace.
func (n *Node) inNode(p string) string { return fmt.Sprintf("/proc/%d/root%s", n.mounts.PID(), p) }

// startRealNodes starts containerd and a kubelet on every node at once and waits until each
// node has registered itself and is Ready.
func (l *Lab) startRealNodes(ctx context.Context) error {
	mounts, v1, err := cgroupMounts()
	if err != nil {
		return err
	}
	if !v1 {
		return errors.New("no cgroup v1 hierarchy on this machine: the lab's kubelets are set up for cgroup v1")
	}
	errs := make([]error, len(l.Nodes))
	var wg sync.WaitGroup
	for i, n := range l.Nodes {
		wg.Go(func() {
			if err := l.startRealNode(ctx, n, mounts); err != nil {
				errs[i] = fmt.Errorf("%s: %w", n.Name, err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (l *Lab) startRealNode(ctx context.Context, n *Node, mounts []string) error {
	steps := []struct {
		name string
		fn   func(context.Context) error
	}{
		{"write configuration", func(context.Context) error { return l.writeNodeConfig(n) }},
		{"create cgroup " + nodeCgroup(n), func(context.Context) error { return createCgroup(mounts, nodeCgroup(n)) }},
		// Pods on one bridge answer each other through kube-proxy's NAT only if bridged
		// frames pass iptables (module br_netfilter).
		{"pass bridged traffic through iptables", func(ctx context.Context) error {
			return sysctl(ctx, n.NS, "net.bridge.bridge-nf-call-iptables=1", "net.bridge.bridge-nf-call-ip6tables=1")
		}},
		{"make the mount namespace", func(ctx context.Context) error { return l.startNodeMounts(ctx, n, mounts) }},
		{"start containerd", func(ctx context.Context) error { return l.startContainerd(ctx, n, mounts) }},
		{"import images", func(ctx context.Context) error { return l.importImages(ctx, n) }},
		{"start kubelet", func(ctx context.Context) error { return l.startKubelet(ctx, n, mounts) }},
	}
	for _, s := range steps {
		if err := s.fn(ctx); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
	}
	return nil
}

// writeNodeConfig writes node n's certificates, kubeconfig, kubelet and containerd
// configuration, CNI network and the files that stand in for kernel settings.
func (l *Lab) writeNodeConfig(n *Node) error {
	dir := l.nodeDir(n)
	for _, d := range []string{filepath.Join(dir, "cni"), filepath.Join(dir, "sysctl")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	user := "kubelet-" + n.Name
	if err := l.pki.writeServing(user, []net.IP{n.IPv4.AsSlice(), n.IPv6.AsSlice()}, []string{n.Name}); err != nil {
		return err
	}
	if _, err := l.pki.writeKubeconfig(user, apiServer(), "system:node:"+n.Name, []string{"system:nodes"}); err != nil {
		return err
	}
	kubelet, err := yaml.Marshal(kubeletConfig(n, l.pki.path, l.opts.KubeletSyncFrequency))
	if err != nil {
		return err
	}
	cni, err := cniConfig(n)
	if err != nil {
		return err
	}
	files := map[string][]byte{
		"kubelet.yaml":        kubelet,
		"containerd.toml":     []byte(containerdConfig(l.sandboxImage, filepath.Join(dir, "cni"))),
		"cni/10-lab.conflist": cni,
	}
	for name, v := range kubeletSysctls {
		files[filepath.Join("sysctl", strings.ReplaceAll(name, "/", "."))] = []byte(v + "\n")
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// kubeletConfig is node n's KubeletConfiguration; pki gives the path of a lab PKI file; a
// syncFrequency of 0 keeps the kubelet's default.
func kubeletConfig(n *Node, pki func(string) string, syncFrequency time.Duration) *kubeletv1beta1.KubeletConfiguration {
	// "0%" turns a threshold off: nothing is evicted because the machine is busy.
	noEviction := map[string]string{}
	for _, signal := range []string{"memory.available", "nodefs.available", "nodefs.inodesFree", "imagefs.available", "imagefs.inodesFree"} {
		noEviction[signal] = "0%"
	}
	return &kubeletv1beta1.KubeletConfiguration{
		TypeMeta: metav1.TypeMeta{Kind: "KubeletConfiguration", APIVersion: kubeletv1beta1.SchemeGroupVersion.String()},
		// This machine type is cgroup v1; the kubelet supports it only when told to.
		FailCgroupV1: ptr.To(false),
		CgroupDriver: "cgroupfs",
		CgroupRoot:   nodeCgroup(n),

		ContainerRuntimeEndpoint: "unix://" + containerdSocket,
		Authentication: kubeletv1beta1.KubeletAuthentication{
			X509:      kubeletv1beta1.KubeletX509Authentication{ClientCAFile: pki("ca.crt")},
			Webhook:   kubeletv1beta1.KubeletWebhookAuthentication{Enabled: ptr.To(false)},
			Anonymous: kubeletv1beta1.KubeletAnonymousAuthentication{Enabled: ptr.To(false)},
		},
		// Only holders of a lab certificate get past authentication.
		Authorization:      kubeletv1beta1.KubeletAuthorization{Mode: kubeletv1beta1.KubeletAuthorizationModeAlwaysAllow},
		TLSCertFile:        pki("kubelet-" + n.Name + ".crt"),
		TLSPrivateKeyFile:  pki("kubelet-" + n.Name + ".key"),
		ReadOnlyPort:       0,
		HealthzBindAddress: "127.0.0.1",
		ClusterDomain:      "cluster.local",
		ResolverConfig:     ptr.To(""), // pods get no DNS server rather than the machine's
		FailSwapOn:         ptr.To(false),

		// Image GC off: the images cannot be pulled back.
		ImageGCHighThresholdPercent: ptr.To[int32](100),
		ImageGCLowThresholdPercent:  ptr.To[int32](99),
		EvictionHard:                noEviction,

		SyncFrequency: metav1.Duration{Duration: syncFrequency},
	}
}

// containerdConfig is a node's containerd configuration (version 2, containerd 1.6 and later).
func containerdConfig(sandboxImage, cniConfDir string) string {
	return fmt.Sprintf(`version = 2
root = "/var/lib/containerd"
state = "/run/containerd"

[grpc]
  address = %q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  # Root lacks CAP_SYS_RESOURCE here: without this, runc fails to lower a container's
  # oom_score_adj below containerd's ("can't get final child's PID from pipe").
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %q
    conf_dir = %q
    max_conf_num = 1
`, containerdSocket, sandboxImage, cniBinDir, cniConfDir)
}

// cniConfig is node n's CNI network: a bridge (cni0, the pods' gateway) with host-local
// addresses from the upper half of each pod CIDR, routes to the lab only, and port mappings.
func cniConfig(n *Node) ([]byte, error) {
	var ranges [][]map[string]string
	var routes []map[string]string
	for i, cidr := range n.PodCIDRs {
		ranges = append(ranges, []map[string]string{{
			"subnet":     cidr.String(),
			"rangeStart": addrAt(cidr, cniFirstHost).String(),
			"rangeEnd":   addrAt(cidr, 254).String(),
		}})
		routes = append(routes, map[string]string{"dst": labRoutes[i].String()})
	}
	return json.MarshalIndent(map[string]any{
		"cniVersion": "0.4.0",
		"name":       "lab",
		"plugins": []map[string]any{
			{
				"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
				"ipam": map[string]any{"type": "host-local", "ranges": ranges, "routes": routes},
			},
			{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}},
		},
	}, "", "  ")
}

// mountScript makes a node's private mounts inside a fresh mount namespace, then marks them
// done and holds the namespace until it is killed. $1 is the lab directory, $2 the node's.
// The lab directory is parked on /var/lib while /run gets its own tmpfs, then moved back.
func mountScript() string {
	var b strings.Builder
	b.WriteString(`set -e
mount --bind "$1" /var/lib
mount -t tmpfs -o mode=755 olb-node /run
mkdir -p "$1"
mount --move /var/lib "$1"
mount -t tmpfs -o mode=755 olb-node /var/lib
mount -t tmpfs -o mode=755 olb-node /var/log
`)
	for name := range kubeletSysctls {
		fmt.Fprintf(&b, "mount --bind \"$2/sysctl/%s\" /proc/sys/%s\n", strings.ReplaceAll(name, "/", "."), name)
	}
	b.WriteString(`touch "$2/mounted"` + "\nexec sleep infinity\n")
	return b.String()
}

// startNodeMounts starts the process that holds node n's mount namespace, in the node's
// network namespace and cgroup, and waits until the namespace is ready.
func (l *Lab) startNodeMounts(ctx context.Context, n *Node, mounts []string) error {
	for _, private := range []string{"/var/lib/", "/var/log/"} {
		if strings.HasPrefix(l.opts.Dir, private) {
			return fmt.Errorf("lab directory %s: real nodes hide %s", l.opts.Dir, private)
		}
	}
	argv := joinCgroups(mounts, nodeCgroup(n),
		"nsenter", "--net="+filepath.Join(netnsDir, n.NS), "--",
		"unshare", "--mount", "--propagation", "private", "sh", "-c", mountScript(), "sh", l.opts.Dir, l.nodeDir(n))
	p, err := l.track(startCommand(l.logDir, n.NS, "mounts-"+n.Name, nil, argv))
	if err != nil {
		return err
	}
	n.mounts = p
	marker := filepath.Join(l.nodeDir(n), "mounted")
	return waitFor(ctx, p, 10*time.Second, "the mounts of "+n.Name, func(context.Context) (bool, error) {
		_, err := os.Stat(marker)
		return err == nil, err
	})
}

// startInNode runs bin in node n's network and mount namespaces and cgroup.
func (l *Lab) startInNode(n *Node, mounts []string, name, bin string, args ...string) (*Process, error) {
	argv := joinCgroups(mounts, nodeCgroup(n),
		append([]string{"nsenter", "--target", strconv.Itoa(n.mounts.PID()), "--mount", "--net", "--", bin}, args...)...)
	return l.track(startCommand(l.logDir, n.NS, name+"-"+n.Name, nil, argv))
}

func (l *Lab) startContainerd(ctx context.Context, n *Node, mounts []string) error {
	p, err := l.startInNode(n, mounts, "containerd", "containerd", "--config", filepath.Join(l.nodeDir(n), "containerd.toml"))
	if err != nil {
		return err
	}
	n.Containerd = p
	return waitFor(ctx, p, 30*time.Second, "containerd to answer", func(ctx context.Context) (bool, error) {
		_, err := n.ctr(ctx, "version")
		return err == nil, err
	})
}

// ctr runs ctr against the node's containerd, in its Kubernetes namespace.
func (n *Node) ctr(ctx context.Context, args ...string) (string, error) {
	return run(ctx, "ctr", append([]string{"--address", n.inNode(containerdSocket), "--namespace", "k8s.io"}, args...)...)
}

// TagImage gives the image named from a second name, to, in every real node's containerd, as
// if a new version had been pushed (with Options.Kubelets).
func (l *Lab) TagImage(ctx context.Context, from, to string) error {
	for _, n := range l.Nodes {
		if out, err := n.ctr(ctx, "images", "tag", "--force", from, to); err != nil {
			return fmt.Errorf("lab: %s: tag %s as %s: %w: %s", n.Name, from, to, err, out)
		}
	}
	return nil
}

func (l *Lab) importImages(ctx context.Context, n *Node) error {
	for _, img := range l.opts.Images {
		if _, err := n.ctr(ctx, "images", "import", img); err != nil {
			return err
		}
	}
	return nil
}

func (l *Lab) startKubelet(ctx context.Context, n *Node, mounts []string) error {
	p, err := l.startInNode(n, mounts, "kubelet", l.Bin("kubelet"),
		"--config="+filepath.Join(l.nodeDir(n), "kubelet.yaml"),
		"--kubeconfig="+l.pki.path("kubelet-"+n.Name+".kubeconfig"),
		"--hostname-override="+n.Name,
		"--node-ip="+n.IPv4.String()+","+n.IPv6.String(),
		"--cloud-provider=external",
		"--v=1")
	if err != nil {
		return err
	}
	n.Kubelet = p
	if err := waitFor(ctx, p, 90*time.Second, "Node "+n.Name+" to be Ready", func(ctx context.Context) (bool, error) {
		node, err := l.Client.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, errors.New("not registered")
		}
		return err == nil && nodeReady(node), err
	}); err != nil {
		return err
	}
	return l.setPodCIDRs(ctx, n)
}

// nodeReady reports whether node's Ready condition is True.
func nodeReady(node *corev1.Node) bool {
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// setPodCIDRs records n's pod CIDRs in its Node, as the node IPAM controller would.
func (l *Lab) setPodCIDRs(ctx context.Context, n *Node) error {
	cidrs := make([]string, len(n.PodCIDRs))
	for i, c := range n.PodCIDRs {
		cidrs[i] = c.String()
	}
	patch, err := json.Marshal(map[string]any{"spec": map[string]any{"podCIDR": cidrs[0], "podCIDRs": cidrs}})
	if err != nil {
		return err
	}
	_, err = l.Client.CoreV1().Nodes().Patch(ctx, n.Name, types.MergePatchType, patch, metav1.PatchOptions{})
	return err
}

// pickImage returns the one image among names whose repository's last path element is base.
// SplitImageRef splits an image reference into its repository and its tag ("" without one),
// dropping a digest; a registry's port is not a tag.
func SplitImageRef(ref string) (repo, tag string) {
	repo, _, _ = strings.Cut(ref, "@")
	if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
		return repo[:i], repo[i+1:]
	}
	return repo, ""
}

func pickImage(names []string, base string) (string, error) {
	var found []string
	for _, name := range names {
		if repo, _ := SplitImageRef(name); path.Base(repo) == base {
			found = append(found, name)
		}
	}
	if len(found) != 1 {
		return "", fmt.Errorf("want one %s image among %v, found %d", base, names, len(found))
	}
	return found[0], nil
}

// archiveImageNames returns the image names an OCI archive's index carries.
func archiveImageNames(archive string) ([]string, error) {
	f, err := os.Open(archive)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil, fmt.Errorf("%s: no index.json: not an OCI archive", archive)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", archive, err)
		}
		if path.Clean(h.Name) != "index.json" {
			continue
		}
		var index struct {
			Manifests []struct {
				Annotations map[string]string `json:"annotations"`
			} `json:"manifests"`
		}
		if err := json.NewDecoder(tr).Decode(&index); err != nil {
			return nil, fmt.Errorf("%s: index.json: %w", archive, err)
		}
		var names []string
		for _, m := range index.Manifests {
			if name := m.Annotations[imageNameAnnotation]; name != "" {
				names = append(names, name)
			}
		}
		if len(names) == 0 {
			return nil, fmt.Errorf("%s: no image carries the annotation %s", archive, imageNameAnnotation)
		}
		return names, nil
	}
}

// ImageNamed returns the name of the one image, among those the OCI archives carry, whose
// repository's last path element is base: "pause" finds example.org/lab/pause:v1.
func ImageNamed(archives []string, base string) (string, error) {
	var names []string
	for _, a := range archives {
		n, err := archiveImageNames(a)
		if err != nil {
			return "", fmt.Errorf("lab: %w", err)
		}
		names = append(names, n...)
	}
	name, err := pickImage(names, base)
	if err != nil {
		return "", fmt.Errorf("lab: %w", err)
	}
	return name, nil
}

// NodeMemory returns the resident memory of node n's own processes: containerd, the
// kubelet, the containerd shims and the holder of its mount namespace, not its containers.
func (l *Lab) NodeMemory(n *Node) (int64, error) {
	mounts, _, err := cgroupMounts()
	if err != nil || len(mounts) == 0 {
		return 0, fmt.Errorf("lab: memory of %s: no cgroup hierarchy (%v)", n.Name, err)
	}
	var total int64
	for _, pid := range cgroupProcs([]string{filepath.Join(mounts[0], nodeCgroup(n))}) {
		rss, err := ProcessRSS(pid)
		if err != nil {
			return 0, fmt.Errorf("lab: memory of %s: %w", n.Name, err)
		}
		total += rss
	}
	return total, nil
}

// ProcessRSS returns a process's resident memory in bytes (VmRSS of /proc/<pid>/status).
func ProcessRSS(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("pid %d: no VmRSS", pid)
}

// FreezeNode stops real node n (Options.Kubelets) dead, as a hung or powered-off machine
// stops: its cgroup is frozen (containerd, kubelet, every container) and its kube-proxy is
// stopped (SIGSTOP). Nothing of it runs until ThawNode; with Unplug it is a dead node.
func (l *Lab) FreezeNode(n *Node) error { return l.freeze(n, frozen, syscall.SIGSTOP) }

// ThawNode lets a node FreezeNode froze go on where it stopped.
func (l *Lab) ThawNode(n *Node) error { return l.freeze(n, thawed, syscall.SIGCONT) }

func (l *Lab) freeze(n *Node, state string, kubeProxy syscall.Signal) error {
	if n.Kubelet == nil {
		return fmt.Errorf("lab: freeze %s: not a real node (Options.Kubelets)", n.Name)
	}
	mounts, _, err := cgroupMounts()
	if err != nil {
		return err
	}
	i := slices.IndexFunc(mounts, func(m string) bool {
		_, err := os.Stat(filepath.Join(m, nodeCgroup(n), "freezer.state"))
		return err == nil
	})
	if i < 0 {
		return fmt.Errorf("lab: freeze %s: no freezer cgroup", n.Name)
	}
	if err := setFreezerState(filepath.Join(mounts[i], nodeCgroup(n)), state); err != nil {
		return fmt.Errorf("lab: freeze %s: %w", n.Name, err)
	}
	if n.KubeProxy != nil {
		return n.KubeProxy.Signal(kubeProxy)
	}
	return nil
}

// ContainerPID returns the PID, in the machine's PID namespace, of the first process of the
// container containerID (as a Pod's status names it, containerd://...) on node n.
func (l *Lab) ContainerPID(ctx context.Context, n *Node, containerID string) (int, error) {
	id, ok := strings.CutPrefix(containerID, "containerd://")
	if !ok {
		return 0, fmt.Errorf("lab: container %q: not a containerd ID", containerID)
	}
	out, err := n.ctr(ctx, "tasks", "ls")
	if err != nil {
		return 0, fmt.Errorf("lab: container %s: %w", id, err)
	}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == id {
			return strconv.Atoi(f[1])
		}
	}
	return 0, fmt.Errorf("lab: container %s: no task on %s", id, n.Name)
}

// ContainerNetns returns the network namespace (a path for InNetns, DialContext) of a
// container that runs on node n, given its ID as the Pod's status shows it
// ("containerd://<id>"): a test dials from there as the pod's own process would.
func (l *Lab) ContainerNetns(ctx context.Context, n *Node, containerID string) (string, error) {
	pid, err := l.ContainerPID(ctx, n, containerID)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("/proc/%d/ns/net", pid), nil
}
