package lab

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/onprem-lb/onprem-lb/test/backend"
)

// Backend ports every lab pod serves (see package backend).
const (
	HTTPPort = backend.HTTPPort
	TCPPort  = backend.TCPPort
	UDPPort  = backend.UDPPort
)

// BackendContainer is the container of a real pod (Options.Kubelets) that runs the backend
// image: it names its replies after its pod (downward API) and is ready while its
// backend.ReadyPath says so (SetBackendReady).
func BackendContainer(image string) corev1.Container {
	field := func(path string) *corev1.EnvVarSource {
		return &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}
	}
	return corev1.Container{
		Name: "backend", Image: image, ImagePullPolicy: corev1.PullIfNotPresent,
		Env: []corev1.EnvVar{{Name: "POD_NAMESPACE", ValueFrom: field("metadata.namespace")}, {Name: "POD_NAME", ValueFrom: field("metadata.name")}},
		Ports: []corev1.ContainerPort{
			{Name: "http", ContainerPort: HTTPPort, Protocol: corev1.ProtocolTCP},
			{Name: "tcp", ContainerPort: TCPPort, Protocol: corev1.ProtocolTCP},
			{Name: "udp", ContainerPort: UDPPort, Protocol: corev1.ProtocolUDP},
		},
		ReadinessProbe: &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: backend.ReadyPath, Port: intstr.FromString("http")}},
			PeriodSeconds: 1,
		},
	}
}

// SetBackendReady makes a real pod that runs BackendContainer pass (ready) or fail its
// readiness probe from now on; its kubelet then reports it, within a probe period.
func (l *Lab) SetBackendReady(ctx context.Context, p *corev1.Pod, ready bool) error {
	if p.Status.PodIP == "" {
		return fmt.Errorf("lab: pod %s/%s has no IP", p.Namespace, p.Name)
	}
	url := "http://" + net.JoinHostPort(p.Status.PodIP, strconv.Itoa(HTTPPort)) + backend.ReadyPath
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, url, strings.NewReader(strconv.FormatBool(ready)))
	if err != nil {
		return err
	}
	resp, err := HTTPClient(l.ControlPlane.NS, 5*time.Second).Do(req)
	if err != nil {
		return fmt.Errorf("lab: pod %s/%s: %w", p.Namespace, p.Name, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("lab: pod %s/%s: PUT %s: %s", p.Namespace, p.Name, url, resp.Status)
	}
	return nil
}

// PodReady says whether the pod's Ready condition is True.
func PodReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// PodOptions describe a pod to run.
type PodOptions struct {
	Namespace, Name string
	Node            string // node name, e.g. "node-1"
	Labels          map[string]string
	// NotReady creates the pod with its Ready condition False.
	NotReady bool
}

// Pod is a network namespace routed through its node, running a backend, with a Pod object
// whose status the lab keeps as a kubelet would.
type Pod struct {
	Namespace, Name string
	Node            *Node
	NS              string       // network namespace
	IPs             []netip.Addr // IPv4, IPv6
	Backend         *Process

	link string // the veth's name in the node namespace
}

// Key returns "namespace/name".
func (p *Pod) Key() string { return p.Namespace + "/" + p.Name }

// AddPod creates a pod on a node and returns once its backend answers and its Pod object is
// Running (and Ready, unless NotReady is set).
func (l *Lab) AddPod(ctx context.Context, o PodOptions) (*Pod, error) {
	node := l.Node(o.Node)
	if node == nil {
		return nil, fmt.Errorf("lab: add pod %s/%s: no node %q", o.Namespace, o.Name, o.Node)
	}
	l.mu.Lock()
	if _, dup := l.pods[o.Namespace+"/"+o.Name]; dup {
		l.mu.Unlock()
		return nil, fmt.Errorf("lab: add pod %s/%s: exists", o.Namespace, o.Name)
	}
	node.pods++
	k := node.pods + 1 // .1 is the node's gateway address on every pod link
	l.mu.Unlock()
	if k > 254 || (l.opts.Kubelets && k >= cniFirstHost) { // the CNI hands out the rest
		return nil, fmt.Errorf("lab: add pod %s/%s: node %s has no pod addresses left", o.Namespace, o.Name, node.Name)
	}
	p := &Pod{
		Namespace: o.Namespace, Name: o.Name, Node: node,
		NS:   fmt.Sprintf("%sp%d-%d", nsPrefix, node.Index, k),
		link: "pod" + strconv.Itoa(k),
	}
	for _, cidr := range node.PodCIDRs {
		p.IPs = append(p.IPs, addrAt(cidr, k))
	}
	if err := l.addPod(ctx, p, o); err != nil {
		if p.Backend != nil {
			p.Backend.Kill()
		}
		l.removePodNetwork(p)
		return nil, fmt.Errorf("lab: add pod %s: %w", p.Key(), err)
	}
	l.mu.Lock()
	l.pods[p.Key()] = p
	l.mu.Unlock()
	return p, nil
}

// addrAt returns the address k places into prefix (k < 256).
func addrAt(prefix netip.Prefix, k int) netip.Addr {
	b := prefix.Addr().AsSlice()
	b[len(b)-1] = byte(k)
	a, _ := netip.AddrFromSlice(b)
	return a
}

func (l *Lab) addPod(ctx context.Context, p *Pod, o PodOptions) error {
	node := p.Node
	if err := ip(ctx, "netns", "add", p.NS); err != nil {
		return err
	}
	if err := sysctl(ctx, p.NS, "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"); err != nil {
		return err
	}
	steps := [][]string{
		{"-n", p.NS, "link", "set", "lo", "up"},
		{"link", "add", p.link, "netns", node.NS, "type", "veth", "peer", "name", "eth0", "netns", p.NS},
		{"-n", node.NS, "link", "set", p.link, "up"},
		{"-n", p.NS, "link", "set", "eth0", "up"},
	}
	for i, cidr := range node.PodCIDRs {
		gw, bits := addrAt(cidr, 1).String(), strconv.Itoa(p.IPs[i].BitLen())
		pod := p.IPs[i].String()
		steps = append(steps,
			[]string{"-n", node.NS, "addr", "add", gw + "/" + bits, "dev", p.link, "nodad"},
			[]string{"-n", node.NS, "route", "add", pod + "/" + bits, "dev", p.link},
			[]string{"-n", p.NS, "addr", "add", pod + "/" + bits, "dev", "eth0", "nodad"},
			[]string{"-n", p.NS, "route", "add", gw + "/" + bits, "dev", "eth0"},
			[]string{"-n", p.NS, "route", "add", labRoutes[i].String(), "via", gw},
		)
	}
	for _, s := range steps {
		if err := ip(ctx, s...); err != nil {
			return err
		}
	}
	backend, err := l.startBackend(ctx, p.NS, "backend-"+p.Namespace+"-"+p.Name, p.Key(), node.NS, p.IPs[0])
	p.Backend = backend
	if err != nil {
		return err
	}
	obj := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, Labels: o.Labels},
		Spec: corev1.PodSpec{
			NodeName:                      node.Name,
			AutomountServiceAccountToken:  ptr.To(false),
			TerminationGracePeriodSeconds: ptr.To[int64](0),
			Containers: []corev1.Container{{
				Name:  "backend",
				Image: "onprem-lb.io/lab-backend",
				Ports: []corev1.ContainerPort{
					{Name: "http", ContainerPort: HTTPPort, Protocol: corev1.ProtocolTCP},
					{Name: "tcp", ContainerPort: TCPPort, Protocol: corev1.ProtocolTCP},
				},
			}},
		},
	}
	created, err := l.Client.CoreV1().Pods(p.Namespace).Create(ctx, obj, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	now := metav1.Now()
	created.Status = corev1.PodStatus{
		Phase:     corev1.PodRunning,
		HostIP:    node.IPv4.String(),
		HostIPs:   []corev1.HostIP{{IP: node.IPv4.String()}, {IP: node.IPv6.String()}},
		PodIP:     p.IPs[0].String(),
		PodIPs:    []corev1.PodIP{{IP: p.IPs[0].String()}, {IP: p.IPs[1].String()}},
		StartTime: &now,
		ContainerStatuses: []corev1.ContainerStatus{{
			Name: "backend", Image: obj.Spec.Containers[0].Image, ImageID: obj.Spec.Containers[0].Image,
			ContainerID: fmt.Sprintf("lab://%d", backend.PID()), Started: ptr.To(true),
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		}},
	}
	setPodReady(&created.Status, !o.NotReady, now)
	_, err = l.Client.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, created, metav1.UpdateOptions{})
	return err
}

// setPodReady sets the conditions and container readiness a kubelet reports.
func setPodReady(status *corev1.PodStatus, ready bool, now metav1.Time) {
	readyStatus := corev1.ConditionFalse
	if ready {
		readyStatus = corev1.ConditionTrue
	}
	for i := range status.ContainerStatuses {
		status.ContainerStatuses[i].Ready = ready
	}
	want := map[corev1.PodConditionType]corev1.ConditionStatus{
		corev1.PodScheduled: corev1.ConditionTrue, corev1.PodInitialized: corev1.ConditionTrue,
		corev1.ContainersReady: readyStatus, corev1.PodReady: readyStatus,
	}
	for i, c := range status.Conditions {
		if s, ok := want[c.Type]; ok {
			if c.Status != s {
				status.Conditions[i].Status, status.Conditions[i].LastTransitionTime = s, now
			}
			delete(want, c.Type)
		}
	}
	for _, typ := range []corev1.PodConditionType{corev1.PodScheduled, corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady} {
		if s, ok := want[typ]; ok {
			status.Conditions = append(status.Conditions, corev1.PodCondition{Type: typ, Status: s, LastTransitionTime: now})
		}
	}
}

// SetPodReady changes the pod's readiness as a kubelet would when its readiness probe changes.
func (l *Lab) SetPodReady(ctx context.Context, p *Pod, ready bool) error {
	pods := l.Client.CoreV1().Pods(p.Namespace)
	obj, err := pods.Get(ctx, p.Name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("lab: set pod %s ready=%v: %w", p.Key(), ready, err)
	}
	setPodReady(&obj.Status, ready, metav1.Now())
	if _, err := pods.UpdateStatus(ctx, obj, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("lab: set pod %s ready=%v: %w", p.Key(), ready, err)
	}
	return nil
}

// DeletePod stops the pod's backend, deletes its Pod object and removes its namespace.
func (l *Lab) DeletePod(ctx context.Context, p *Pod) error {
	l.mu.Lock()
	delete(l.pods, p.Key())
	l.mu.Unlock()
	if p.Backend != nil {
		p.Backend.Kill()
	}
	err := l.Client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
	l.removePodNetwork(p)
	if err != nil {
		return fmt.Errorf("lab: delete pod %s: %w", p.Key(), err)
	}
	return nil
}

// removePodNetwork deletes the pod's namespace; its veth and the node's routes go with it.
func (l *Lab) removePodNetwork(p *Pod) {
	ip(context.Background(), "netns", "del", p.NS)
}

// StartBackend runs a backend in h's namespace for the life of the lab, answering as h.Name
// on every address h has or gets (e.g. a VIP added to its lo), and returns once it answers.
func (l *Lab) StartBackend(ctx context.Context, h *Host) (*Process, error) {
	p, err := l.startBackend(ctx, h.NS, "backend-"+h.Name, h.Name, h.NS, h.IPv4)
	if err != nil {
		return nil, fmt.Errorf("lab: start a backend on %s: %w", h.Name, err)
	}
	return p, nil
}

// startBackend runs a backend in ns that answers as pod, logging as name, and waits until it
// answers at addr from the namespace from. The process it returns, if not nil, runs even when
// the backend never answered.
func (l *Lab) startBackend(ctx context.Context, ns, name, pod, from string, addr netip.Addr) (*Process, error) {
	p, err := l.StartProcess(ns, name, []string{helperEnv + "=" + helperBackend, podEnv + "=" + pod}, l.opts.Helper)
	if err != nil {
		return nil, err
	}
	hostPort := net.JoinHostPort(addr.String(), strconv.Itoa(TCPPort))
	return p, waitFor(ctx, p, 10*time.Second, "backend at "+hostPort, func(ctx context.Context) (bool, error) {
		r, err := GetTCP(ctx, from, hostPort)
		return err == nil && r.Pod == pod, err
	})
}
