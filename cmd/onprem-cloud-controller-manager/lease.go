package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// leaseReleaser gives up the leader lease when the process stops gracefully, which the
// cloud-provider app (v0.37.2) does not do: a replica started after a graceful stop (a
// rollout, a restart) then leads at once instead of waiting out the old lease.
type leaseReleaser struct {
	mu                     sync.Mutex
	client                 kubernetes.Interface // nil until this process leads
	namespace, name, owner string               // owner: the holder identity's prefix, "<hostname>_"
}

// leading records that this process leads, holding the lease namespace/name.
func (r *leaseReleaser) leading(client kubernetes.Interface, namespace, name string) error {
	host, err := os.Hostname()
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	// The app names the holder "<hostname>_<uuid>".
	r.client, r.namespace, r.name, r.owner = client, namespace, name, host+"_"
	return nil
}

// release ends the lease this process holds, as client-go's ReleaseOnCancel does: no
// holder, a lease of one second. It does nothing if this process never led or no longer
// holds the lease, and writes nothing if the lease changed since it was read.
func (r *leaseReleaser) release(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.client == nil {
		return nil
	}
	leases := r.client.CoordinationV1().Leases(r.namespace)
	lease, err := leases.Get(ctx, r.name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("release the leader lease %s/%s: %w", r.namespace, r.name, err)
	}
	if !strings.HasPrefix(ptr.Deref(lease.Spec.HolderIdentity, ""), r.owner) {
		return nil
	}
	now := metav1.NewMicroTime(time.Now())
	lease.Spec.HolderIdentity = ptr.To("")
	lease.Spec.LeaseDurationSeconds = ptr.To[int32](1)
	lease.Spec.AcquireTime, lease.Spec.RenewTime = &now, &now
	if _, err := leases.Update(ctx, lease, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("release the leader lease %s/%s: %w", r.namespace, r.name, err)
	}
	return nil
}
