package provider

import (
	"context"
	"strings"

	corev1 "k8s.io/api/core/v1"
	cloudprovider "k8s.io/cloud-provider"
	cloudproviderapi "k8s.io/cloud-provider/api"
)

var _ cloudprovider.InstancesV2 = instances{}

// instances is the minimal InstancesV2 that lets kubelets started with
// --cloud-provider=external lose their uninitialized taint: every node exists, none is shut
// down, and its addresses are the ones it reports.
type instances struct{}

// InstanceExists is always true: an on-prem cluster's nodes are deleted by their admins.
func (instances) InstanceExists(context.Context, *corev1.Node) (bool, error) { return true, nil }

// InstanceShutdown is always false: the provider has no power controller to ask.
func (instances) InstanceShutdown(context.Context, *corev1.Node) (bool, error) { return false, nil }

// InstanceMetadata returns providerID onprem://<node> and the node's own addresses; a node
// that reports no InternalIP yet gets those of the kubelet's --node-ip annotation.
func (instances) InstanceMetadata(_ context.Context, node *corev1.Node) (*cloudprovider.InstanceMetadata, error) {
	addrs := append([]corev1.NodeAddress(nil), node.Status.Addresses...)
	hasInternal := false
	for _, a := range addrs {
		hasInternal = hasInternal || a.Type == corev1.NodeInternalIP
	}
	if provided := node.Annotations[cloudproviderapi.AnnotationAlphaProvidedIPAddr]; !hasInternal && provided != "" {
		for _, ip := range strings.Split(provided, ",") {
			addrs = append(addrs, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: strings.TrimSpace(ip)})
		}
	}
	return &cloudprovider.InstanceMetadata{ProviderID: ProviderName + "://" + node.Name, NodeAddresses: addrs}, nil
}
