// Package provider is the "onprem" cloud provider for k8s.io/cloud-provider.
//
// Its own service controller (RunServiceController, which the cloud-controller-manager runs
// in place of the stock one, with --concurrent-service-syncs workers) serves every
// type=LoadBalancer Service of the loadBalancerClass the process started with ("" for
// Services without a class): it turns the Service into an ipam request, holds the resulting
// addresses, and reports them as LoadBalancer ingress with the ipMode of the configured
// dataplane. Promises:
//   - The Service status is the only persistent state: before the first allocation, the
//     provider rebuilds its allocations from the status of every Service, so that a restart,
//     a leader change or a config reload changes no IP that is still allowed.
//   - One writer per Service status: syncs of one Service never overlap, and a pool file
//     reload waits for the syncs in flight, takes the IPs it evicts out of every status, and
//     only then allocates anew; no IP is ever in the status of two Services that do not
//     share it.
//   - A request that cannot be met leaves the Service pending with a Warning event that says
//     why, and never takes an IP from another Service. A Service with a sharing key that
//     cannot share its key's IP gets its own with a Warning IPNotShared saying why.
//   - A new loadBalancerClass in the pool file waits for a restart (config.Watcher).
//   - InstancesV2 is minimal: providerID onprem://<node>, the addresses the node reports,
//     nodes are never deleted. Routes, Zones, Clusters and Instances are not supported.
package provider
