package provider

import (
	"context"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	servicehelper "k8s.io/cloud-provider/service/helpers"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
)

// serviceController serves the Services of the configured loadBalancerClass (for "", the
// Services without a class) the way the stock service controller would: the same
// finalizer, allocation, events and status. It replaces the stock one (see
// RunServiceController) so that it is the only writer of their status, and writes are
// serialized per Service: the queue never syncs one Service twice at once, and a reload
// of the pool file (reload) waits for the syncs in flight, then rewrites the Services it
// moved before any other sync runs. So an IP taken from one Service reaches another
// Service's status only after it has left the first one's.
type serviceController struct {
	cloud *Cloud
	queue workqueue.TypedRateLimitingInterface[string]
}

// newServiceController returns a controller fed by informer; nothing runs until run.
func newServiceController(c *Cloud, informer cache.SharedIndexInformer) (*serviceController, error) {
	sc := &serviceController{
		cloud: c,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "onprem-lb-service"}),
	}
	enqueue := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			sc.queue.Add(key)
		}
	}
	if _, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
		DeleteFunc: enqueue,
	}); err != nil {
		return nil, fmt.Errorf("watch Services: %w", err)
	}
	return sc, nil
}

// run syncs Services with workers goroutines until ctx ends.
func (sc *serviceController) run(ctx context.Context, workers int) {
	klog.InfoS("Serving Services of loadBalancerClass", "class", sc.cloud.cfg.Load().LoadBalancerClass, "workers", workers)
	go func() {
		<-ctx.Done()
		sc.queue.ShutDown()
	}()
	for range max(workers, 1) {
		go func() {
			for sc.next(ctx) {
			}
		}()
	}
}

func (sc *serviceController) next(ctx context.Context) bool {
	key, quit := sc.queue.Get()
	if quit {
		return false
	}
	defer sc.queue.Done(key)
	sc.cloud.statusMu.RLock()
	err := sc.sync(ctx, key)
	sc.cloud.statusMu.RUnlock()
	if err != nil {
		utilruntime.HandleErrorWithContext(ctx, err, "Sync Service", "service", key)
		sc.queue.AddRateLimited(key)
		return true
	}
	sc.queue.Forget(key)
	return true
}

// sync brings one Service's IPs, finalizer and status in line with the allocator. The
// caller holds statusMu.
func (sc *serviceController) sync(ctx context.Context, key string) error {
	namespace, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return err
	}
	svc, err := sc.cloud.services.Services(namespace).Get(name)
	if apierrors.IsNotFound(err) {
		return nil // gone: its finalizer made sure the IPs were freed first
	}
	if err != nil {
		return err
	}
	core := sc.cloud.client.CoreV1()
	if svc.DeletionTimestamp != nil || !sc.cloud.serves(svc) {
		if !servicehelper.HasLBFinalizer(svc) || !sc.mayRelease(svc) {
			return nil
		}
		if err := sc.cloud.EnsureLoadBalancerDeleted(ctx, "", svc); err != nil {
			return err
		}
		updated := svc.DeepCopy()
		updated.Status.LoadBalancer = corev1.LoadBalancerStatus{}
		updated.Finalizers = removeString(updated.Finalizers, servicehelper.LoadBalancerCleanupFinalizer)
		_, err := servicehelper.PatchService(core, svc, updated)
		return ignoreNotFound(err)
	}
	if !servicehelper.HasLBFinalizer(svc) {
		updated := svc.DeepCopy()
		updated.Finalizers = append(updated.Finalizers, servicehelper.LoadBalancerCleanupFinalizer)
		if svc, err = servicehelper.PatchService(core, svc, updated); err != nil {
			return fmt.Errorf("add finalizer: %w", err)
		}
	}
	status, ensureErr := sc.cloud.EnsureLoadBalancer(ctx, "", svc, nil)
	if ensureErr != nil {
		if ctx.Err() != nil {
			return ensureErr
		}
		// Pending: the status must not keep an IP the Service no longer holds, which
		// another Service may get.
		held, _ := sc.cloud.alloc.Lookup(keyOf(svc))
		status = sc.cloud.status(held)
	}
	if !servicehelper.LoadBalancerStatusEqual(&svc.Status.LoadBalancer, status) {
		updated := svc.DeepCopy()
		updated.Status.LoadBalancer = *status
		if _, err := servicehelper.PatchService(core, svc, updated); err != nil {
			return err
		}
	}
	return ensureErr
}

// mayRelease reports whether the finalizer of a Service this provider does not serve (or
// no longer, or that is being deleted) is this provider's to remove: the Service is of the
// configured class, or holds IPs here (its type changed, which clears its class). The
// finalizer of another class's Service belongs to that class's controller.
func (sc *serviceController) mayRelease(svc *corev1.Service) bool {
	if ptr.Deref(svc.Spec.LoadBalancerClass, "") == sc.cloud.cfg.Load().LoadBalancerClass {
		return true
	}
	_, held := sc.cloud.alloc.Lookup(keyOf(svc))
	return held
}

func removeString(list []string, s string) []string {
	return slices.DeleteFunc(slices.Clone(list), func(v string) bool { return v == s })
}

func ignoreNotFound(err error) error {
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}
