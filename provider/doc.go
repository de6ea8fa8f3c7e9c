// Package provider is the "onprem" cloud provider for k8s.io/cloud-provider.
//
// The stock service controller of the cloud-controller-manager calls it for every
// type=LoadBalancer Service; it turns the Service into an ipam request, holds the resulting
// addresses, and reports them as LoadBalancer ingress with the ipMode of the configured
// dataplane. Promises:
//   - The Service status is the only persistent state: before the first allocation, the
//     provider rebuilds its allocations from the status of every Service, so that a restart,
//     a leader change or a config reload changes no IP that is still allowed.
//   - A request that cannot be met returns a typed error that says why (the service
//     controller turns it into a Warning event) and never takes an IP from another Service.
//   - InstancesV2 is minimal: providerID onprem://<node>, the addresses the node reports,
//     nodes are never deleted. Routes, Zones, Clusters and Instances are not supported.
package provider
