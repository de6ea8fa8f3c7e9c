package main

import (
	"context"
	"os"
	"testing"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"
)

func TestLeaseRelease(t *testing.T) {
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		holder     string
		leads      bool
		wantHolder string
		wantLease  int32
	}{
		{name: "ours: released", holder: host + "_1234", leads: true, wantHolder: "", wantLease: 1},
		{name: "another replica's: kept", holder: "other-host_5678", leads: true, wantHolder: "other-host_5678", wantLease: 5},
		{name: "never led: nothing done", holder: host + "_1234", wantHolder: host + "_1234", wantLease: 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			client := fake.NewClientset(&coordinationv1.Lease{
				ObjectMeta: metav1.ObjectMeta{Namespace: "onprem-lb", Name: "cloud-controller-manager"},
				Spec:       coordinationv1.LeaseSpec{HolderIdentity: ptr.To(tt.holder), LeaseDurationSeconds: ptr.To[int32](5)},
			})
			r := &leaseReleaser{}
			if tt.leads {
				if err := r.leading(client, "onprem-lb", "cloud-controller-manager"); err != nil {
					t.Fatal(err)
				}
			}
			if err := r.release(ctx); err != nil {
				t.Fatal(err)
			}
			lease, err := client.CoordinationV1().Leases("onprem-lb").Get(ctx, "cloud-controller-manager", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if got, d := ptr.Deref(lease.Spec.HolderIdentity, ""), ptr.Deref(lease.Spec.LeaseDurationSeconds, 0); got != tt.wantHolder || d != tt.wantLease {
				t.Errorf("lease held by %q for %ds, want %q for %ds", got, d, tt.wantHolder, tt.wantLease)
			}
		})
	}
}
