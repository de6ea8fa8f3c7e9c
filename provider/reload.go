package provider

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	servicehelper "k8s.io/cloud-provider/service/helpers"
	"k8s.io/klog/v2"

	"github.com/onprem-lb/onprem-lb/config"
	"github.com/onprem-lb/onprem-lb/ipam"
)

// watchConfig follows the pool file until ctx ends, applying each new valid version. A bad
// version is logged and counted, and changes nothing.
func (c *Cloud) watchConfig(ctx context.Context) {
	w := config.NewWatcher(c.path,
		config.WithCurrent(c.cfg.Load()),
		config.WithMetrics(c.configMetrics),
		config.OnChange(func(cfg *config.Config) { c.reload(ctx, cfg) }),
		config.OnError(func(err error) {
			klog.ErrorS(err, "Pool file rejected; keeping the last good one", "file", c.path)
		}))
	w.Run(ctx)
}

// reload swaps in a new pool file: Services keep every IP it still allows them; the others
// are moved to an allowed IP (or left pending) with a Warning event saying why.
func (c *Cloud) reload(ctx context.Context, cfg *config.Config) {
	evictions, err := c.alloc.Reconfigure(cfg.IPAMPools())
	if err != nil {
		klog.ErrorS(err, "Pool file rejected by the allocator; keeping the last good one", "file", c.path)
		return
	}
	old := c.cfg.Swap(cfg)
	for _, w := range cfg.Warnings {
		klog.InfoS("Pool file warning", "file", c.path, "warning", w)
	}
	klog.InfoS("Pool file reloaded", "file", c.path, "pools", len(cfg.Pools), "evicted", len(evictions))
	if old.LoadBalancerClass != cfg.LoadBalancerClass {
		klog.ErrorS(nil, "A new loadBalancerClass takes effect at the next restart", "running", old.LoadBalancerClass, "configured", cfg.LoadBalancerClass)
	}
	c.metrics.setStats(c.alloc.Stats())

	why := map[ipam.ServiceKey][]string{}
	for _, e := range evictions {
		why[e.Service] = append(why[e.Service], fmt.Sprintf("%s: %v", e.IP, e.Err))
	}
	modeChanged := old.Dataplane != cfg.Dataplane
	all, err := c.services.List(labels.Everything())
	if err != nil {
		klog.ErrorS(err, "List Services after a pool file change")
		return
	}
	for _, svc := range all {
		reasons, evicted := why[keyOf(svc)]
		if !evicted && !(modeChanged && c.serves(svc) && len(statusIPs(svc)) > 0) {
			continue
		}
		if evicted {
			c.recorder.Eventf(svc, corev1.EventTypeWarning, EventIPMoved, "The pool file no longer allows %s", strings.Join(reasons, "; "))
		}
		if err := c.resync(ctx, svc); err != nil {
			klog.ErrorS(err, "Update Service after a pool file change", "service", klog.KObj(svc))
		}
	}
}

// resync allocates for svc again and writes the result to its status, as the service
// controller would on its next sync; a Service that cannot be served is left pending.
func (c *Cloud) resync(ctx context.Context, svc *corev1.Service) error {
	var status corev1.LoadBalancerStatus
	if held, err := c.ensure(svc); err == nil {
		status = *c.status(held)
	}
	if servicehelper.LoadBalancerStatusEqual(&svc.Status.LoadBalancer, &status) {
		return nil
	}
	updated := svc.DeepCopy()
	updated.Status.LoadBalancer = status
	_, err := servicehelper.PatchService(c.client.CoreV1(), svc, updated)
	return err
}
