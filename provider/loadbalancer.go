package provider

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	cloudprovider "k8s.io/cloud-provider"
	"k8s.io/klog/v2"

	"github.com/onprem-lb/onprem-lb/ipam"
)

var _ cloudprovider.LoadBalancer = &Cloud{}

// Event reasons the provider records on Services.
const (
	EventIPAllocated = "IPAllocated" // Normal: the Service got or changed its IPs
	EventIPReleased  = "IPReleased"  // Normal: the Service's IPs were freed
	EventIPMoved     = "IPMoved"     // Warning: an IP was taken back (pool file changed) and replaced
	EventDualStack   = "DualStackPartial"
	// Warning: the Service has a sharing key but could not share its key's IP (ports
	// collide, pod selectors differ) and got its own.
	EventIPNotShared = "IPNotShared"
)

// GetLoadBalancerName returns the name the service controller logs for svc.
func (c *Cloud) GetLoadBalancerName(_ context.Context, _ string, svc *corev1.Service) string {
	return cloudprovider.DefaultLoadBalancerName(svc)
}

// GetLoadBalancer reports the IPs svc holds. exists stays true while it holds any, so that
// the service controller's finalizer cleanup frees them.
func (c *Cloud) GetLoadBalancer(ctx context.Context, _ string, svc *corev1.Service) (*corev1.LoadBalancerStatus, bool, error) {
	if err := c.waitRebuilt(ctx); err != nil {
		return nil, false, err
	}
	held, ok := c.alloc.Lookup(keyOf(svc))
	if !ok {
		return nil, false, nil
	}
	return c.status(held), true, nil
}

// EnsureLoadBalancer gives svc its IPs and returns them as ingress. It is idempotent: a
// Service keeps the IPs it holds, or has in its status, while they are still allowed.
func (c *Cloud) EnsureLoadBalancer(ctx context.Context, _ string, svc *corev1.Service, _ []*corev1.Node) (*corev1.LoadBalancerStatus, error) {
	if err := c.waitRebuilt(ctx); err != nil {
		return nil, err
	}
	held, err := c.ensure(svc)
	if err != nil {
		return nil, err
	}
	return c.status(held), nil
}

// ensure allocates for svc, recording events and metrics, and returns what it holds.
func (c *Cloud) ensure(svc *corev1.Service) ([]ipam.Address, error) {
	req, err := requestFor(svc)
	if err != nil {
		c.fail(svc, "InvalidService", err)
		return nil, err
	}
	before, _ := c.alloc.Lookup(req.Service)
	if len(before) == 0 {
		// Not held, e.g. the rebuild could not restore it: keep the status IPs if allowed.
		if ips := statusIPs(svc); len(ips) > 0 {
			if _, err := c.alloc.Assign(req, ips); err != nil {
				klog.V(2).InfoS("Status IPs not kept", "service", klog.KObj(svc), "ips", ips, "err", err)
			}
		}
	}
	got, err := c.alloc.Allocate(req)
	if err != nil {
		c.fail(svc, ipam.ReasonOf(err), err)
		return nil, err
	}
	if !slices.Equal(addrsOf(before), got.IPs()) {
		for _, a := range got.Addresses {
			if !slices.Contains(addrsOf(before), a.IP) {
				c.metrics.allocations.WithLabelValues(a.Pool).Inc()
			}
		}
		c.metrics.setStats(c.alloc.Stats())
		c.recorder.Eventf(svc, corev1.EventTypeNormal, EventIPAllocated, "Allocated %s", describe(got.Addresses))
		klog.InfoS("Allocated", "service", klog.KObj(svc), "ips", describe(got.Addresses))
		if got.NotShared != nil {
			c.recorder.Eventf(svc, corev1.EventTypeWarning, EventIPNotShared, "Sharing key %q: %v; got %s instead",
				req.SharingKey, got.NotShared, describe(got.Addresses))
		}
	}
	if got.Unmet != nil {
		c.recorder.Eventf(svc, corev1.EventTypeWarning, EventDualStack, "Only %s: %v", describe(got.Addresses), got.Unmet)
	}
	return got.Addresses, nil
}

// fail counts a failed request and records why on the Service.
func (c *Cloud) fail(svc *corev1.Service, reason string, err error) {
	c.metrics.failures.WithLabelValues(reason).Inc()
	c.recorder.Event(svc, corev1.EventTypeWarning, reason, err.Error())
}

// UpdateLoadBalancer does nothing: which nodes exist does not change a Service's IPs.
func (c *Cloud) UpdateLoadBalancer(context.Context, string, *corev1.Service, []*corev1.Node) error {
	return nil
}

// EnsureLoadBalancerDeleted frees the IPs svc holds (shared IPs once their last user goes).
func (c *Cloud) EnsureLoadBalancerDeleted(ctx context.Context, _ string, svc *corev1.Service) error {
	if err := c.waitRebuilt(ctx); err != nil {
		return err
	}
	if released := c.alloc.Release(keyOf(svc)); len(released) > 0 {
		c.metrics.releases.Inc()
		c.metrics.setStats(c.alloc.Stats())
		c.recorder.Eventf(svc, corev1.EventTypeNormal, EventIPReleased, "Released %v", released)
		klog.InfoS("Released", "service", klog.KObj(svc), "ips", released)
	}
	return nil
}

// status is the LoadBalancer status for held addresses, with the dataplane's ipMode.
func (c *Cloud) status(held []ipam.Address) *corev1.LoadBalancerStatus {
	mode := c.cfg.Load().Dataplane.IPMode()
	st := &corev1.LoadBalancerStatus{}
	for _, a := range held {
		st.Ingress = append(st.Ingress, corev1.LoadBalancerIngress{IP: a.IP.String(), IPMode: &mode})
	}
	return st
}

func addrsOf(held []ipam.Address) []netip.Addr {
	ips := make([]netip.Addr, len(held))
	for i, a := range held {
		ips[i] = a.IP
	}
	return ips
}

// describe renders addresses with their pools: "198.18.0.200 (pool lan), ...".
func describe(held []ipam.Address) string {
	parts := make([]string, len(held))
	for i, a := range held {
		parts[i] = fmt.Sprintf("%s (pool %s)", a.IP, a.Pool)
	}
	return strings.Join(parts, ", ")
}
