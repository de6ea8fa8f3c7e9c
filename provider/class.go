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
)

// classWorkers is how many Services the class controller syncs at once.
const classWorkers = 10

// classController serves the Services of the configured loadBalancerClass, which the stock
// service controller leaves alone, the way the stock one serves the others: the same
// finalizer, the same allocation, events and status.
type classController struct {
	cloud *Cloud
	queue workqueue.TypedRateLimitingInterface[string]
}

// runClassController syncs Services of the configured class until ctx ends.
func (c *Cloud) runClassController(ctx context.Context, informer cache.SharedIndexInformer) {
	cc := &classController{
		cloud: c,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "onprem-lb-class"}),
	}
	enqueue := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			cc.queue.Add(key)
		}
	}
	if _, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
		DeleteFunc: enqueue,
	}); err != nil {
		klog.ErrorS(err, "Watch Services for the loadBalancerClass controller")
		return
	}
	klog.InfoS("Serving Services of loadBalancerClass", "class", c.cfg.Load().LoadBalancerClass)
	go func() {
		<-ctx.Done()
		cc.queue.ShutDown()
	}()
	for range classWorkers {
		go func() {
			for cc.next(ctx) {
			}
		}()
	}
}

func (cc *classController) next(ctx context.Context) bool {
	key, quit := cc.queue.Get()
	if quit {
		return false
	}
	defer cc.queue.Done(key)
	if err := cc.sync(ctx, key); err != nil {
		utilruntime.HandleErrorWithContext(ctx, err, "Sync Service of loadBalancerClass", "service", key)
		cc.queue.AddRateLimited(key)
		return true
	}
	cc.queue.Forget(key)
	return true
}

func (cc *classController) sync(ctx context.Context, key string) error {
	namespace, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return err
	}
	svc, err := cc.cloud.services.Services(namespace).Get(name)
	if apierrors.IsNotFound(err) {
		return nil // gone: its finalizer made sure the IPs were freed first
	}
	if err != nil {
		return err
	}
	core := cc.cloud.client.CoreV1()
	if svc.DeletionTimestamp != nil || !cc.cloud.serves(svc) {
		if !servicehelper.HasLBFinalizer(svc) {
			return nil
		}
		if err := cc.cloud.EnsureLoadBalancerDeleted(ctx, "", svc); err != nil {
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
	status, err := cc.cloud.EnsureLoadBalancer(ctx, "", svc, nil)
	if err != nil {
		return err
	}
	if servicehelper.LoadBalancerStatusEqual(&svc.Status.LoadBalancer, status) {
		return nil
	}
	updated := svc.DeepCopy()
	updated.Status.LoadBalancer = *status
	_, err = servicehelper.PatchService(core, svc, updated)
	return err
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
