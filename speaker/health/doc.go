// Package health tells the onprem-speaker which nodes can actually serve a
// LoadBalancer VIP, and serves the health checks that make other speakers
// (and any external load balancer) able to tell.
//
// The speaker gives each VIP to one node, identically on every node, from
// the eligible nodes. A node is eligible for a Cluster Service only while its
// service proxy is healthy, and for a Local Service only while that
// Service's healthCheckNodePort on the node reports local endpoints. Two
// independent pieces serve that:
//
//   - [Prober] probes, from every speaker, the same targets: each node's
//     service proxy health endpoint (kube-proxy's :10256/healthz) and each
//     Local Service's healthCheckNodePort on the nodes the EndpointSlices
//     say have a ready local endpoint. It turns the results into verdicts
//     ([Prober.ProxyHealthy], [Prober.LocalHealthy]) with the hysteresis and
//     fallbacks documented on [Prober], and calls back when a verdict
//     changes.
//   - [HCNPServer] serves the healthCheckNodePorts of this node for the
//     iptables dataplane, where no kube-proxy serves them, with kube-proxy's
//     exact response, and leaves alone any port another process serves.
//
// What the package promises:
//   - A target not probed yet is healthy: probes never delay a fresh VIP.
//   - With the defaults, a target that starts failing is judged unhealthy
//     within 1 s (2 failed probes; the arithmetic is on [DefaultInterval]),
//     and healthy again after one successful probe.
//   - The prober's goroutines are a fixed pool of [Options.Workers], started
//     by [Prober.Run] and stopped before it returns; never one per Service.
//     The server's goroutines, one per open port, stop when the port is
//     dropped and on [HCNPServer.Close]. Constructors start none.
//   - Verdicts are only about probes. The caller combines them with
//     membership, EndpointSlices and node exclusions; this package does not
//     know about VIPs or owners.
//
// Identical verdicts on every speaker depend on identical targets and on
// targets answering every speaker alike; speakers probe at their own times,
// so they may disagree for up to about one Interval around a change.
package health
