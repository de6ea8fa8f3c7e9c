package speaker

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/record"
	"k8s.io/component-base/metrics"
	"k8s.io/klog/v2"

	"github.com/onprem-lb/onprem-lb/config"
	"github.com/onprem-lb/onprem-lb/speaker/bgp"
	"github.com/onprem-lb/onprem-lb/speaker/dataplane"
	"github.com/onprem-lb/onprem-lb/speaker/health"
	"github.com/onprem-lb/onprem-lb/speaker/l2"
	"github.com/onprem-lb/onprem-lb/speaker/membership"
)

// Config is how onprem-speaker runs on one node.
type Config struct {
	// NodeName is the name of this node's Node object. Required.
	NodeName string
	// PoolFile is the IP-pool YAML, the same file the cloud-controller-manager reads. Required.
	PoolFile string
	// Kubeconfig is a kubeconfig path; "" means in-cluster.
	Kubeconfig string
	// BindAddr is where membership gossip binds; the zero Addr means the node's first
	// InternalIP (IPv4 first).
	BindAddr netip.Addr
	// MemberlistPort is the gossip port (TCP and UDP); 0 means membership.DefaultPort.
	MemberlistPort int
	// SecretKeyFile holds the gossip keys (the memberlist Secret mounted as a file): one a
	// line, each the base64 of 16, 24 or 32 bytes, the first used to encrypt, all to decrypt;
	// "" means unencrypted gossip.
	SecretKeyFile string
	// MetricsAddr is where /metrics, /healthz and /announcements are served, without
	// authentication; "" means nowhere. DefaultMetricsAddr keeps them on the node itself.
	MetricsAddr string
	// Profiling adds Go's /debug/pprof handlers to the MetricsAddr server, with the same lack
	// of authentication.
	Profiling bool
	// HandoverDelay is how long a stopping speaker keeps answering after it left membership,
	// so that the new owners announce first; 0 means DefaultHandoverDelay.
	HandoverDelay time.Duration
	// BGPDrainDelay is how long a stopping speaker advertises its BGP routes with
	// GRACEFUL_SHUTDOWN before it withdraws them; 0 means DefaultBGPDrainDelay.
	BGPDrainDelay time.Duration
	// Timing are membership's timers; zero fields take membership.DefaultTiming's.
	Timing membership.Timing
}

// DefaultHandoverDelay is how long a stopping speaker keeps answering after leaving.
const DefaultHandoverDelay = time.Second

// DefaultMetricsAddr is where the speaker serves /metrics, /healthz and /announcements
// unless told otherwise: loopback only, since they are served without authentication.
const DefaultMetricsAddr = "127.0.0.1:7472"

// Run runs the speaker until ctx ends, then hands its VIPs over: it leaves membership (the
// other speakers take its VIPs at once and announce them), keeps answering for
// HandoverDelay, and only then stops answering and returns. A bad pool file, key or node
// name is an error before anything starts.
func Run(ctx context.Context, cfg Config) error {
	if cfg.NodeName == "" {
		return errors.New("speaker: a node name is required")
	}
	pools, err := config.Load(cfg.PoolFile)
	if err != nil {
		return err
	}
	logWarnings(cfg.PoolFile, pools)
	keys, err := readKeys(cfg.SecretKeyFile)
	if err != nil {
		return err
	}
	if cfg.HandoverDelay <= 0 {
		cfg.HandoverDelay = DefaultHandoverDelay
	}
	if cfg.BGPDrainDelay <= 0 {
		cfg.BGPDrainDelay = DefaultBGPDrainDelay
	}
	restConfig, err := clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig)
	if err != nil {
		return fmt.Errorf("speaker: kubeconfig: %w", err)
	}
	restConfig.UserAgent = "onprem-speaker/" + cfg.NodeName
	// Protobuf, as the Kubernetes components use: lists of 10,000 Services decode with a
	// fraction of JSON's garbage, which is what the speaker's peak memory is made of.
	restConfig.ContentType = runtime.ContentTypeProtobuf
	restConfig.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	client, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		return fmt.Errorf("speaker: %w", err)
	}

	registry := metrics.NewKubeRegistry()
	speakerMetrics, l2Metrics, configMetrics := NewMetrics(), l2.NewMetrics(), config.NewMetrics()
	healthMetrics, dataplaneMetrics, bgpMetrics := health.NewMetrics(), dataplane.NewMetrics(), bgp.NewMetrics()
	bgpMetrics.Register(registry.MustRegister)
	speakerMetrics.Register(registry.MustRegister)
	l2Metrics.Register(registry.MustRegister)
	configMetrics.Register(registry.MustRegister)
	healthMetrics.Register(registry.MustRegister)
	dataplaneMetrics.Register(registry.MustRegister)

	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	recorder := broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "onprem-speaker", Host: cfg.NodeName})

	ctrl := newController(cfg.NodeName, client, pools, nil, recorder, speakerMetrics)
	if err := ctrl.startInformers(ctx); err != nil {
		return err
	}
	self, err := waitNode(ctx, ctrl, cfg.NodeName)
	if err != nil {
		return err
	}
	if pools.Dataplane == config.DataplaneKubeProxy {
		if err := dataplane.DetectIPVS(ctx, dataplane.ProxyProbe{}); err != nil {
			return refuseProxy(ctx, cfg, err, self, recorder, registry, dataplaneMetrics)
		}
	}
	selfIPs := nodeIPs(self)
	bind := cfg.BindAddr
	if !bind.IsValid() {
		if len(selfIPs) == 0 {
			return fmt.Errorf("speaker: node %s has no InternalIP to bind membership to; set the bind address", cfg.NodeName)
		}
		bind = selfIPs[0]
	}
	meta, err := publishedMACs(pools, selfIPs)
	if err != nil {
		return err
	}
	members, err := membership.New(membership.Config{
		Name: cfg.NodeName, BindAddr: bind, Port: cfg.MemberlistPort, SecretKeys: keys,
		Meta: meta, Peers: func() []netip.Addr { return ctrl.peers(bind) }, Timing: cfg.Timing,
	})
	if err != nil {
		return fmt.Errorf("speaker: %w", err)
	}
	ann := l2.New(l2.Options{NodeIPs: selfIPs, IsPeerMAC: ctrl.isPeerMAC, Events: ctrl, Metrics: l2Metrics})
	prober := health.NewProber(health.Options{OnChange: ctrl.kick, Metrics: healthMetrics})
	dp := dataplane.New(dataplane.Options{Metrics: dataplaneMetrics})
	hcnp := health.NewHCNPServer(health.ServerOptions{ProxyHealthy: ctrl.forwardingHealthy.Load})
	defer hcnp.Close()
	bgpSpeaker := newBGPSpeaker(cfg.NodeName, bgpMetrics, cfg.BGPDrainDelay)
	ctrl.members, ctrl.announce, ctrl.prober, ctrl.forward, ctrl.hcnp, ctrl.bgp = members, ann, prober, dp, hcnp, bgpSpeaker

	return runParts(ctx, cfg, parts{
		members: members, announcer: ann, prober: prober, dataplane: dp, bgp: bgpSpeaker, ctrl: ctrl, registry: registry,
		watcher: config.NewWatcher(cfg.PoolFile, config.WithCurrent(pools), config.WithMetrics(configMetrics),
			config.OnChange(func(c *config.Config) {
				logWarnings(cfg.PoolFile, c)
				ctrl.setConfig(c)
			}),
			config.OnError(func(err error) {
				klog.ErrorS(err, "Pool file rejected; keeping the last good one", "file", cfg.PoolFile)
			})),
	})
}

type parts struct {
	members   *membership.Membership
	announcer *l2.Announcer
	prober    *health.Prober
	dataplane *dataplane.Dataplane
	bgp       *bgpSpeaker
	ctrl      *controller
	watcher   *config.Watcher
	registry  metrics.KubeRegistry
}

// runParts runs the parts until ctx ends or one fails, then stops them in handover order.
func runParts(ctx context.Context, cfg Config, p parts) error {
	var srv *server
	if cfg.MetricsAddr != "" {
		var err error
		if srv, err = metricsServer(cfg, p.registry, p.announcer.State, p.bgp.view); err != nil {
			return err
		}
	}
	failed := make(chan error, 4)
	var wg sync.WaitGroup
	annCtx, stopAnnouncing := context.WithCancel(context.Background())
	memCtx, stopMembership := context.WithCancel(context.Background())
	ctrlCtx, stopController := context.WithCancel(ctx)
	defer stopAnnouncing()
	defer stopMembership()
	defer stopController()
	fail := func(what string, err error) {
		if err != nil {
			failed <- fmt.Errorf("speaker: %s: %w", what, err)
		}
	}
	wg.Go(func() { fail("announcer", p.announcer.Run(annCtx)) })
	wg.Go(func() { fail("membership", p.members.Run(memCtx)) })
	wg.Go(func() { p.prober.Run(ctrlCtx) })
	wg.Go(func() { fail("dataplane", p.dataplane.Run(ctrlCtx)) })
	wg.Go(func() { p.watcher.Run(ctrlCtx) })
	// With BGP, a stop drains the routes (GRACEFUL_SHUTDOWN, the drain delay, withdraw)
	// while the L2 handover runs.
	wg.Go(func() { p.bgp.run(ctrlCtx) })
	if srv != nil {
		wg.Go(func() { fail("metrics server", ignoreClosed(srv.serve())) })
	}
	wg.Go(func() {
		select {
		case <-p.members.Converged():
			klog.InfoS("Membership converged; announcing", "node", cfg.NodeName, "members", len(p.members.Members()))
			p.ctrl.run(ctrlCtx, 4)
		case <-ctrlCtx.Done():
		}
	})

	var err error
	select {
	case <-ctx.Done():
	case err = <-failed:
		klog.ErrorS(err, "Stopping")
	}
	// Hand over: stop computing, stop answering the new owners' probes, leave (the others take
	// this node's VIPs and announce them), keep answering clients a little longer, then stop.
	stopController()
	p.announcer.HandOver()
	if leaveErr := p.members.Leave(time.Second); leaveErr != nil {
		klog.ErrorS(leaveErr, "Leave membership")
	} else {
		klog.InfoS("Left membership; handing over", "node", cfg.NodeName, "delay", cfg.HandoverDelay)
		time.Sleep(cfg.HandoverDelay)
	}
	stopAnnouncing()
	stopMembership()
	if srv != nil {
		srv.Close()
	}
	wg.Wait()
	return err
}

// logWarnings logs the warnings of the pool file at path (unknown fields, a class that
// takes effect at the next restart).
func logWarnings(path string, c *config.Config) {
	for _, w := range c.Warnings {
		klog.InfoS("Pool file warning", "file", path, "warning", w)
	}
}

// EventServiceProxyUnsupported is the Warning on a Node whose speaker refuses to serve
// because the node's service proxy runs in a mode it does not support (kube-proxy IPVS).
const EventServiceProxyUnsupported = "ServiceProxyUnsupported"

// refuseProxy is the speaker on a node whose service proxy it cannot work with (why wraps
// dataplane.ErrIPVS): it does not join membership, so the other speakers give this node no
// VIP, and it installs nothing; it says why (an error log, a Warning event on the Node, the
// metric) and serves /metrics and /healthz until ctx ends. A restart checks again.
func refuseProxy(ctx context.Context, cfg Config, why error, node *corev1.Node, recorder record.EventRecorder, registry metrics.KubeRegistry, m *dataplane.Metrics) error {
	const fix = "run kube-proxy in iptables or nftables mode, or set dataplane: iptables in the pool file, then restart the speaker"
	klog.ErrorS(why, "Not serving any LoadBalancer IP from this node; "+fix, "node", cfg.NodeName)
	recorder.Eventf(node, corev1.EventTypeWarning, EventServiceProxyUnsupported, "onprem-speaker serves no LoadBalancer IP from this node: %v; %s", why, fix)
	m.SetUnsupportedProxy("ipvs")
	if cfg.MetricsAddr != "" {
		srv, err := metricsServer(cfg, registry, func() map[netip.Addr]l2.Status { return nil }, nil)
		if err != nil {
			return err
		}
		defer srv.Close()
		go srv.serve()
	}
	<-ctx.Done()
	return nil
}

// Cleanup removes every iptables chain and rule the speaker ever made (the forwarding of
// dataplane iptables and the guard of dataplane kube-proxy), IPv4 and IPv6, nf_tables and
// legacy, and nothing else: for uninstalling, or for a node moving back to dataplane:
// kube-proxy. The speaker must not be running on the node.
func Cleanup(ctx context.Context) error {
	return dataplane.CleanupNode(ctx, dataplane.RunnerOptions{})
}

// readKeys reads the gossip keyring: one key a line, each the base64 of 16, 24 or 32 bytes;
// blank lines and lines starting with # are skipped. The first key encrypts, every key
// decrypts (see membership.Config.SecretKeys for a rotation). "" means no key.
func readKeys(path string) ([][]byte, error) {
	if path == "" {
		return nil, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("speaker: memberlist key: %w", err)
	}
	var keys [][]byte
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, err := base64.StdEncoding.DecodeString(line)
		if err != nil {
			return nil, fmt.Errorf("speaker: memberlist key %s line %d: not base64: %w", path, i+1, err)
		}
		if n := len(key); n != 16 && n != 24 && n != 32 {
			return nil, fmt.Errorf("speaker: memberlist key %s line %d: %d bytes, want 16, 24 or 32 (e.g. openssl rand -base64 32)", path, i+1, n)
		}
		keys = append(keys, key)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("speaker: memberlist key %s: no key in the file", path)
	}
	return keys, nil
}

// waitNode waits (30 s at most) for this node's Node object in the informer cache.
func waitNode(ctx context.Context, c *controller, name string) (*corev1.Node, error) {
	var node *corev1.Node
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		n, err := c.nodes.Get(name)
		node = n
		return err == nil, nil
	})
	if err != nil {
		return nil, fmt.Errorf("speaker: node %q not found (is --node-name right?): %w", name, err)
	}
	return node, nil
}

type server struct {
	*http.Server
	ln net.Listener
}

// metricsServer listens on cfg.MetricsAddr for /metrics (registry), /healthz,
// /announcements (what this node answers for: state), /announcements/bgp (its BGP sessions
// and routes: bgpState, nil for none) and with cfg.Profiling for /debug/pprof/.
func metricsServer(cfg Config, registry metrics.KubeRegistry, state func() map[netip.Addr]l2.Status, bgpState func() bgpView) (*server, error) {
	ln, err := net.Listen("tcp", cfg.MetricsAddr)
	if err != nil {
		return nil, fmt.Errorf("speaker: metrics: %w", err)
	}
	if ip, ok := netip.AddrFromSlice(ln.Addr().(*net.TCPAddr).IP); !ok || !ip.IsLoopback() {
		klog.InfoS("Serving /metrics and /announcements without authentication beyond this node", "address", ln.Addr())
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", metrics.HandlerFor(registry, metrics.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) })
	mux.Handle("/announcements", jsonHandler(func() []announcement { return announcements(state()) }))
	if bgpState == nil {
		bgpState = func() bgpView { return bgpAnnouncements(nil, nil, false) }
	}
	mux.Handle("/announcements/bgp", jsonHandler(bgpState))
	if cfg.Profiling {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return &server{Server: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}, ln: ln}, nil
}

func (s *server) serve() error { return s.Serve(s.ln) }

func ignoreClosed(err error) error {
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}
