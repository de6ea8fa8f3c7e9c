package provider

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/record"
	cloudprovider "k8s.io/cloud-provider"
	"k8s.io/klog/v2"

	"github.com/onprem-lb/onprem-lb/config"
	"github.com/onprem-lb/onprem-lb/ipam"
	"github.com/onprem-lb/onprem-lb/lbsvc"
)

// ProviderName is the name given to --cloud-provider.
const ProviderName = "onprem"

// Cloud is the onprem cloud provider.
type Cloud struct {
	path    string
	cfg     atomic.Pointer[config.Config]
	alloc   *ipam.Allocator
	metrics *providerMetrics
	// configMetrics count pool file reloads.
	configMetrics *config.Metrics

	// Set by Initialize.
	client   kubernetes.Interface
	services corelisters.ServiceLister
	recorder record.EventRecorder
	ctrl     *serviceController
	// started is closed once Initialize has set the fields above.
	started chan struct{}
	// rebuilt is closed once the allocations are rebuilt from every Service's status;
	// no request is answered before.
	rebuilt chan struct{}
	// statusMu serializes status writes with reloads: a sync holds it for reading from
	// its read of the allocator to its status write, a reload for writing.
	statusMu sync.RWMutex
}

var _ cloudprovider.Interface = &Cloud{}

// New loads the pool file at path and returns a provider holding no allocations yet. A bad
// file is an error naming the file, field and reason. register (may be nil) receives the
// provider's metrics.
func New(path string, register RegisterFunc) (*Cloud, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	alloc, err := ipam.New(cfg.IPAMPools())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for _, w := range cfg.Warnings {
		klog.InfoS("Pool file warning", "file", path, "warning", w)
	}
	c := &Cloud{path: path, alloc: alloc, metrics: newMetrics(register), configMetrics: config.NewMetrics(), started: make(chan struct{}), rebuilt: make(chan struct{})}
	if register != nil {
		c.configMetrics.Register(register)
	}
	c.cfg.Store(cfg)
	c.metrics.setStats(alloc.Stats())
	return c, nil
}

// Initialize starts the provider: a Service informer, the rebuild of allocations from
// Service status, and the watch of the pool file. It runs until stop is closed. The
// Services are served once RunServiceController runs.
func (c *Cloud) Initialize(clientBuilder cloudprovider.ControllerClientBuilder, stop <-chan struct{}) {
	client := clientBuilder.ClientOrDie("onprem-cloud-provider")
	ctx := stopContext(stop)
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	recorder := broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "onprem-cloud-controller-manager"})
	if err := c.start(ctx, client, recorder); err != nil {
		klog.ErrorS(err, "Start the onprem provider; no Service will get an IP")
	}
}

// start is Initialize with its client and event recorder given.
func (c *Cloud) start(ctx context.Context, client kubernetes.Interface, recorder record.EventRecorder) error {
	c.client, c.recorder = client, recorder
	factory := informers.NewSharedInformerFactory(client, 0)
	c.services = factory.Core().V1().Services().Lister()
	ctrl, err := newServiceController(c, factory.Core().V1().Services().Informer())
	if err != nil {
		return err
	}
	c.ctrl = ctrl
	close(c.started)
	factory.Start(ctx.Done())
	go c.run(ctx, factory)
	return nil
}

// RunServiceController serves the Services of the configured class with workers
// goroutines until ctx ends. It returns at once; it waits for Initialize first. The
// cloud-controller-manager runs it in place of the stock service controller.
func (c *Cloud) RunServiceController(ctx context.Context, workers int) {
	go func() {
		select {
		case <-c.started:
			c.ctrl.run(ctx, workers)
		case <-ctx.Done():
		}
	}()
}

// stopContext turns a stop channel into a context.
func stopContext(stop <-chan struct{}) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-stop
		cancel()
	}()
	return ctx
}

func (c *Cloud) run(ctx context.Context, factory informers.SharedInformerFactory) {
	for typ, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			klog.ErrorS(nil, "Informer cache never synced; no Service will get an IP", "type", typ)
			return
		}
	}
	c.rebuild()
	close(c.rebuilt)
	c.watchConfig(ctx)
}

// rebuild makes the allocator hold, for every Service this provider serves, the IPs in its
// status, oldest Service first so that the first holder of a disputed IP keeps it.
func (c *Cloud) rebuild() {
	began := time.Now()
	all, err := c.services.List(labels.Everything())
	if err != nil {
		klog.ErrorS(err, "List Services for the rebuild")
		return
	}
	slices.SortFunc(all, func(a, b *corev1.Service) int {
		if d := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); d != 0 {
			return d
		}
		return strings.Compare(keyOf(a).String(), keyOf(b).String())
	})
	restored, failed := 0, 0
	for _, svc := range all {
		ips := statusIPs(svc)
		if !c.serves(svc) || len(ips) == 0 {
			continue
		}
		req, err := requestFor(svc)
		if err == nil {
			_, err = c.alloc.Assign(req, ips)
		}
		if err != nil {
			failed++
			klog.ErrorS(err, "Could not restore the IPs of a Service from its status", "service", klog.KObj(svc), "ips", ips)
			c.recorder.Eventf(svc, corev1.EventTypeWarning, "IPNotRestored", "Could not keep %v after a restart: %v", ips, err)
			continue
		}
		restored++
	}
	c.metrics.setStats(c.alloc.Stats())
	klog.InfoS("Rebuilt allocations from Service status", "restored", restored, "failed", failed, "duration", time.Since(began))
}

// serves reports whether svc is a LoadBalancer Service of the class the provider started
// with.
func (c *Cloud) serves(svc *corev1.Service) bool {
	return lbsvc.Serves(c.cfg.Load().LoadBalancerClass, svc)
}

// statusIPs returns the valid IPs of svc's LoadBalancer ingress.
func statusIPs(svc *corev1.Service) []netip.Addr {
	ips, _ := lbsvc.IngressIPs(svc)
	return ips
}

// waitRebuilt blocks until the allocations are rebuilt or ctx ends.
func (c *Cloud) waitRebuilt(ctx context.Context) error {
	select {
	case <-c.rebuilt:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for allocations to be rebuilt from Service status: %w", ctx.Err())
	}
}

// LoadBalancer returns the provider's load balancer implementation. The
// cloud-controller-manager serves Services with RunServiceController rather than with the
// stock service controller.
func (c *Cloud) LoadBalancer() (cloudprovider.LoadBalancer, bool) { return c, true }

// InstancesV2 returns the minimal node implementation.
func (c *Cloud) InstancesV2() (cloudprovider.InstancesV2, bool) { return instances{}, true }

// Instances is not supported: InstancesV2 replaces it.
func (c *Cloud) Instances() (cloudprovider.Instances, bool) { return nil, false }

// Zones is not supported.
func (c *Cloud) Zones() (cloudprovider.Zones, bool) { return nil, false }

// Clusters is not supported.
func (c *Cloud) Clusters() (cloudprovider.Clusters, bool) { return nil, false }

// Routes is not supported: pod networking is the CNI's business.
func (c *Cloud) Routes() (cloudprovider.Routes, bool) { return nil, false }

// ProviderName returns "onprem".
func (c *Cloud) ProviderName() string { return ProviderName }

// HasClusterID is true: an on-prem cluster owns its pools and needs no cloud tags.
func (c *Cloud) HasClusterID() bool { return true }
