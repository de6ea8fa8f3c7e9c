package provider

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
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
// are moved to an allowed IP (or left pending) with a Warning event saying why. It waits
// for the status writes in flight and rewrites the moved Services before any other
// allocation, so that no IP is in two Services' status (see serviceController).
func (c *Cloud) reload(ctx context.Context, cfg *config.Config) {
	c.statusMu.Lock()
	defer c.statusMu.Unlock()
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
	var moved []*corev1.Service
	for _, svc := range all {
		reasons, evicted := why[keyOf(svc)]
		if !evicted && !(modeChanged && c.serves(svc) && len(statusIPs(svc)) > 0) {
			continue
		}
		if evicted {
			c.recorder.Eventf(svc, corev1.EventTypeWarning, EventIPMoved, "The pool file no longer allows %s", strings.Join(reasons, "; "))
			// First out of every status, then allocated anew: the IP one Service gives up
			// may be the next of another.
			if err := c.withdraw(ctx, svc); err != nil {
				klog.ErrorS(err, "Remove evicted IPs from a Service's status", "service", klog.KObj(svc))
			}
		}
		moved = append(moved, svc)
	}
	for _, svc := range moved {
		key := keyOf(svc).String()
		if err := c.ctrl.sync(ctx, key); err != nil {
			klog.ErrorS(err, "Update Service after a pool file change; retrying", "service", klog.KObj(svc))
			c.ctrl.queue.AddRateLimited(key)
		}
	}
}

// withdraw writes the status of svc with only the IPs it still holds. It writes whatever
// the informer's copy of svc says, which may be older than the status a sync just wrote.
func (c *Cloud) withdraw(ctx context.Context, svc *corev1.Service) error {
	held, _ := c.alloc.Lookup(keyOf(svc))
	// A JSON merge patch replaces the list, and removes it when it is null.
	ingress := c.status(held).Ingress
	patch, err := json.Marshal(map[string]any{"status": map[string]any{"loadBalancer": map[string]any{"ingress": ingress}}})
	if err != nil {
		return err
	}
	_, err = c.client.CoreV1().Services(svc.Namespace).Patch(ctx, svc.Name, types.MergePatchType, patch, metav1.PatchOptions{}, "status")
	return ignoreNotFound(err)
}
