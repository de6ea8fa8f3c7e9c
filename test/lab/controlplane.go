package lab

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// kcmControllers are the kube-controller-manager controllers a Service-only cluster needs.
var kcmControllers = []string{
	"endpointslice-controller",
	"endpointslice-mirroring-controller",
	"serviceaccount-controller",
	"serviceaccount-token-controller",
	"root-ca-certificate-publisher-controller",
	"namespace-controller",
	"garbage-collector-controller",
}

// kubeletControllers are the ones real nodes need on top: workloads (the install's Deployment
// and DaemonSet) and the node lifecycle: real nodes register with the not-ready taint
// (admission plugin TaintNodesByCondition), which it lifts once the kubelet reports Ready and
// puts back if it stops.
var kubeletControllers = []string{
	"deployment-controller",
	"replicaset-controller",
	"daemonset-controller",
	"pod-garbage-collector-controller",
	"node-lifecycle-controller",
	"ttl-after-finished-controller",
}

func cidrList(prefixes []netip.Prefix) string {
	s := make([]string, len(prefixes))
	for i, p := range prefixes {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

func (l *Lab) startEtcd(ctx context.Context) error {
	const client, peer = "http://127.0.0.1:2379", "http://127.0.0.1:2380"
	p, err := l.StartProcess(cpNS, "etcd", nil, l.Bin("etcd"),
		"--name=lab", "--data-dir="+filepath.Join(l.opts.Dir, "etcd"),
		"--listen-client-urls="+client, "--advertise-client-urls="+client,
		"--listen-peer-urls="+peer, "--initial-advertise-peer-urls="+peer,
		"--initial-cluster=lab="+peer, "--unsafe-no-fsync", "--log-level=warn",
		"--quota-backend-bytes=8589934592")
	if err != nil {
		return err
	}
	hc := HTTPClient(cpNS, time.Second)
	return waitFor(ctx, p, 30*time.Second, "etcd /health", func(ctx context.Context) (bool, error) {
		resp, err := hc.Get(client + "/health")
		if err != nil {
			return false, err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == http.StatusOK && strings.Contains(string(body), `"health":"true"`), nil
	})
}

func (l *Lab) startAPIServer(ctx context.Context) error {
	pki := l.pki.path
	p, err := l.StartProcess(cpNS, "kube-apiserver", nil, l.Bin("kube-apiserver"),
		"--etcd-servers=http://127.0.0.1:2379",
		"--bind-address=0.0.0.0", "--secure-port=6443",
		"--advertise-address="+cpHost.IPv4.String(),
		"--tls-cert-file="+pki("kube-apiserver.crt"), "--tls-private-key-file="+pki("kube-apiserver.key"),
		"--client-ca-file="+pki("ca.crt"),
		// Aggregation headers: no front proxy runs, but delegating components expect them.
		"--requestheader-client-ca-file="+pki("ca.crt"), "--requestheader-allowed-names=front-proxy-client",
		"--requestheader-username-headers=X-Remote-User", "--requestheader-group-headers=X-Remote-Group",
		"--requestheader-extra-headers-prefix=X-Remote-Extra-",
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file="+pki("sa.pub"), "--service-account-signing-key-file="+pki("sa.key"),
		"--service-cluster-ip-range="+cidrList(ServiceCIDRs),
		"--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction",
		"--allow-privileged=true",
		"--kubelet-client-certificate="+pki("kube-apiserver-kubelet-client.crt"),
		"--kubelet-client-key="+pki("kube-apiserver-kubelet-client.key"),
		"--kubelet-certificate-authority="+pki("ca.crt"),
		// Reach kubelets at the node's lab address, never at a name nothing resolves.
		"--kubelet-preferred-address-types=InternalIP",
		"--max-requests-inflight=2000", "--max-mutating-requests-inflight=1000",
		"--profiling=false", "--v=1")
	if err != nil {
		return err
	}
	return waitFor(ctx, p, 60*time.Second, "kube-apiserver /readyz", func(ctx context.Context) (bool, error) {
		body, err := l.Client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err == nil && string(body) == "ok", err
	})
}

func (l *Lab) startControllerManager(ctx context.Context) error {
	pki := l.pki.path
	kubeconfig := pki("kube-controller-manager.kubeconfig")
	controllers := kcmControllers
	if l.opts.Kubelets {
		controllers = append(slices.Clip(controllers), kubeletControllers...)
	}
	p, err := l.StartProcess(cpNS, "kube-controller-manager", nil, l.Bin("kube-controller-manager"),
		"--kubeconfig="+kubeconfig,
		"--authentication-kubeconfig="+kubeconfig, "--authorization-kubeconfig="+kubeconfig,
		"--controllers="+strings.Join(controllers, ","),
		"--service-account-private-key-file="+pki("sa.key"), "--root-ca-file="+pki("ca.crt"),
		"--use-service-account-credentials=true", "--leader-elect=false",
		"--bind-address=127.0.0.1", "--secure-port=10257", "--cert-dir="+filepath.Join(l.opts.Dir, "kcm"),
		"--concurrent-service-endpoint-syncs=10", "--v=1")
	if err != nil {
		return err
	}
	// The ServiceAccount controller creating "default" proves the controllers run.
	return waitFor(ctx, p, 60*time.Second, "the default ServiceAccount", func(ctx context.Context) (bool, error) {
		_, err := l.Client.CoreV1().ServiceAccounts(metav1.NamespaceDefault).Get(ctx, "default", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return err == nil, err
	})
}

func (l *Lab) startScheduler(ctx context.Context) error {
	pki := l.pki.path
	kubeconfig := pki("kube-scheduler.kubeconfig")
	p, err := l.StartProcess(cpNS, "kube-scheduler", nil, l.Bin("kube-scheduler"),
		"--kubeconfig="+kubeconfig,
		"--authentication-kubeconfig="+kubeconfig, "--authorization-kubeconfig="+kubeconfig,
		"--leader-elect=false", "--bind-address=127.0.0.1", "--secure-port=10259",
		"--tls-cert-file="+pki("kube-scheduler.crt"), "--tls-private-key-file="+pki("kube-scheduler.key"),
		"--v=1")
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(l.pki.caPEM)
	hc := HTTPClient(cpNS, time.Second)
	hc.Transport.(*http.Transport).TLSClientConfig = &tls.Config{RootCAs: roots}
	const url = "https://127.0.0.1:10259/readyz"
	return waitFor(ctx, p, 60*time.Second, "kube-scheduler "+url, func(ctx context.Context) (bool, error) {
		resp, err := hc.Get(url)
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, fmt.Errorf("status %s", resp.Status)
	})
}

// startKubeProxies starts kube-proxy on every node at once.
func (l *Lab) startKubeProxies(ctx context.Context) error {
	errs := make([]error, len(l.Nodes))
	var wg sync.WaitGroup
	for i, n := range l.Nodes {
		wg.Go(func() { errs[i] = l.StartKubeProxy(ctx, n) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// StartKubeProxy starts kube-proxy (in Options.ProxyMode) on node n and waits until its /healthz on
// port 10256 answers 200. Kill n.KubeProxy to stop it.
func (l *Lab) StartKubeProxy(ctx context.Context, n *Node) error {
	l.mu.Lock()
	l.proxyRuns++
	name := "kube-proxy-" + n.Name
	if l.proxyRuns > len(l.Nodes) {
		name = fmt.Sprintf("%s-%d", name, l.proxyRuns)
	}
	l.mu.Unlock()
	p, err := l.StartProcess(n.NS, name, nil, l.Bin("kube-proxy"),
		"--kubeconfig="+l.pki.path("kube-proxy.kubeconfig"),
		"--hostname-override="+n.Name, "--proxy-mode="+cmp.Or(l.opts.ProxyMode, "iptables"),
		"--cluster-cidr="+cidrList(ClusterCIDRs),
		"--conntrack-max-per-core=0",
		"--healthz-bind-address=0.0.0.0:10256", "--metrics-bind-address=127.0.0.1:10249",
		"--v=1")
	if err != nil {
		return err
	}
	n.KubeProxy = p
	hc := &http.Client{Timeout: time.Second}
	url := fmt.Sprintf("http://%s:10256/healthz", n.IPv4)
	return waitFor(ctx, p, 60*time.Second, "kube-proxy "+url, func(ctx context.Context) (bool, error) {
		resp, err := hc.Get(url)
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, fmt.Errorf("status %s", resp.Status)
	})
}
