// Package dataplane forwards the traffic of LoadBalancer VIPs with iptables,
// for the `dataplane: iptables` mode (ipMode: Proxy), where kube-proxy leaves
// LoadBalancer IPs alone and the speaker owning a VIP must forward it.
//
// The speaker's controller states what it wants with one declarative call,
// [Dataplane.Sync], listing every Service with its VIPs, ports and ready
// endpoints; [Dataplane.Run] resyncs periodically; [Cleanup] removes it all.
//
// What the package promises:
//   - For each VIP:port, new connections are DNATed to the ready endpoints,
//     spread evenly at random (kube-proxy's statistic rules).
//     externalTrafficPolicy Cluster: every endpoint, masqueraded (the node's
//     address as source). Local: only the endpoints marked Local, the
//     client's source address kept. sessionAffinity ClientIP: a client
//     sticks to its endpoint for the timeout (xt_recent, as kube-proxy).
//   - loadBalancerSourceRanges: new connections to a VIP:port from outside
//     the ranges are dropped (DROP, as kube-proxy). A Service with ranges of
//     one family only admits nobody over the other.
//   - A VIP:port without usable endpoints (for Local: without local ones),
//     and any other port or protocol of a VIP, is rejected with ICMP port
//     unreachable (kube-proxy's choice; TCP connects fail at once with
//     ECONNREFUSED), not forwarded to wherever the route points.
//   - Only chains named ONPREM-LB-* are written, plus one jump rule each in
//     nat PREROUTING, OUTPUT, POSTROUTING, filter INPUT, FORWARD, OUTPUT and
//     mangle POSTROUTING (inserted first, made with go-iptables, never
//     duplicated). Rules it did not write are never touched, by Sync, Run or
//     Cleanup.
//   - Bulk changes go through one iptables-restore --noflush per family per
//     sync, naming only the chains that changed or go away; unchanged chains
//     are not sent. With 10,000 Services a change to one rewrites a few
//     small chains: the dispatch chains are sharded by the last byte of the
//     VIP (ONPREM-LB-VIPS-xx, ONPREM-LB-FW-xx).
//   - A failed sync leaves nothing half-known: the next Sync or resync reads
//     the kernel (iptables-save) and rewrites every chain that differs from
//     what is wanted. A resync also repairs chains flushed, changed or
//     deleted by someone else, and missing jump rules.
//   - Goroutines run only in Run (and, for a Runner bound to another network
//     namespace, one short-lived goroutine per command, waited for).
//   - iptables or legacy/nft: the backend the node's kubelet and kube-proxy
//     use is detected as kube-proxy's iptables wrapper does, and logged once.
//
// Chain layout, nat: PREROUTING and OUTPUT → ONPREM-LB-SERVICES → (last byte
// of the destination) ONPREM-LB-VIPS-xx (Local Services first; around the
// Cluster ones the shard sets the masquerade mark and clears it again) →
// (VIP, protocol, port, source range) ONPREM-LB-SVC-<hash> (one per Service
// port: affinity, random choice, DNAT; no per-endpoint chains, see
// buildRulesCached for why). POSTROUTING → ONPREM-LB-POSTROUTING masquerades
// packets with the mark (bit 0x2000 unless configured). Above 1,000
// Services the per-VIP rules carry no comments.
// filter: INPUT, FORWARD and OUTPUT (new connections) → ONPREM-LB-FIREWALL →
// ONPREM-LB-FW-xx: what still goes to a VIP was not DNATed, so is dropped
// (source range) or rejected. mangle: POSTROUTING (new connections) →
// ONPREM-LB-GUARD → ONPREM-LB-GUARD-xx: the guard of ProxiedElsewhere VIPs.
//
//   - UDP: once a Sync has stopped forwarding a VIP:port to an endpoint, the
//     conntrack entries of that flow are deleted (conntrack -D --orig-dst VIP
//     --orig-port-dst PORT --reply-src ENDPOINT, as kube-proxy), so a client
//     that keeps sending reaches a current endpoint with its next datagram.
//   - The guard of a ProxiedElsewhere VIP drops, in mangle POSTROUTING, new
//     connections still going to the VIP: after every filter hook, so the
//     service proxy's own answer for a VIP it programmed (kube-proxy's REJECT
//     of a Service without endpoints, iptables or nftables mode) comes first,
//     and before conntrack confirms, so nothing of the dropped try remains.
//   - [CleanupNode] cleans both iptables backends.
//
// What it does not do: decide which node forwards a VIP (the controller
// syncs only the Services whose VIPs this node owns, or all of them: rules
// for a VIP this node does not receive traffic for are inert), filter
// endpoints by readiness, or serve health check node ports.
package dataplane
