package provider

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	cloudprovider "k8s.io/cloud-provider"
)

func TestInstanceMetadata(t *testing.T) {
	reported := []corev1.NodeAddress{
		{Type: corev1.NodeInternalIP, Address: "198.18.0.11"},
		{Type: corev1.NodeHostName, Address: "node-1"},
	}
	tests := []struct {
		name string
		node *corev1.Node
		want []corev1.NodeAddress
	}{
		{
			name: "keeps the addresses the node reports",
			node: &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1"}, Status: corev1.NodeStatus{Addresses: reported}},
			want: reported,
		},
		{
			name: "a new external node: the kubelet's --node-ip annotation, both families",
			node: &corev1.Node{
				ObjectMeta: metav1.ObjectMeta{Name: "node-1", Annotations: map[string]string{"alpha.kubernetes.io/provided-node-ip": "198.18.0.11,2001:db8:18::11"}},
				Status:     corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: "node-1"}}},
			},
			want: []corev1.NodeAddress{
				{Type: corev1.NodeHostName, Address: "node-1"},
				{Type: corev1.NodeInternalIP, Address: "198.18.0.11"},
				{Type: corev1.NodeInternalIP, Address: "2001:db8:18::11"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			orig := tt.node.DeepCopy()
			got, err := instances{}.InstanceMetadata(context.Background(), tt.node)
			if err != nil {
				t.Fatal(err)
			}
			want := &cloudprovider.InstanceMetadata{ProviderID: "onprem://node-1", NodeAddresses: tt.want}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("metadata (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(orig, tt.node); diff != "" {
				t.Errorf("node modified (-before +after):\n%s", diff)
			}
		})
	}
	exists, _ := instances{}.InstanceExists(context.Background(), &corev1.Node{})
	shutdown, _ := instances{}.InstanceShutdown(context.Background(), &corev1.Node{})
	if !exists || shutdown {
		t.Errorf("InstanceExists %v, InstanceShutdown %v: want true, false (nodes are never deleted)", exists, shutdown)
	}
}
