// Package lab runs a real Kubernetes control plane and a real L2 network on one machine,
// without containers, for onprem-lb's end-to-end tests, benchmarks and demo.
//
// A lab is made of Linux network namespaces that the lab creates and removes itself:
//
//   - olb-net: holds the bridge br0, the one L2 segment every other namespace is plugged into.
//   - olb-cp: etcd, kube-apiserver, kube-controller-manager and kube-scheduler (198.18.0.2,
//     2001:db8:18::2).
//   - olb-node-N: one per node (198.18.0.1N, 2001:db8:18::1N), with kube-proxy in iptables mode
//     (or nftables mode: Options.ProxyMode). With Options.Kubelets it is a real node: containerd
//     and a kubelet in a private mount namespace and cgroup of the node's own (kubelet.go),
//     pods in containers on the CNI bridge cni0.
//   - olb-client: a host on the LAN (198.18.0.100, 2001:db8:18::100) that only knows the segment.
//   - olb-pN-K: one per Pod made by AddPod, routed through its node (pod CIDRs 198.19.N.0/24,
//     2001:db8:19:N::/64; real nodes' containers get the upper half of them).
//   - olb-router, with Options.Router: the upstream router (router.go), on the LAN at
//     198.18.0.254 and 2001:db8:18::fe and on a second segment, the WAN (bridge br1 of
//     olb-net, 198.18.2.0/24 and 2001:db8:1b::/64), at 198.18.2.1 and 2001:db8:1b::1. It runs
//     FRR's zebra, bfdd and bgpd (frr.go) and accepts BGP from any LAN address as a member of
//     the peer group NODES: eBGP (router 64513, nodes 64512 by default), BFD at 100 ms x 3 by
//     default, IPv4 and IPv6, maximum-paths 16; zebra installs what the nodes advertise into
//     its kernel table, an ECMP route over the nodes (hashed per flow), which Host.NextHops
//     reads. Every node routes the WAN through it.
//   - olb-wan-client, olb-wan-client-2, ...: hosts on the WAN (198.18.2.100,
//     2001:db8:1b::64, ...) that route the lab's prefixes through the router, nothing else.
//
// The machine itself gets one veth (olb-host, 198.18.0.1) on the segment so that tests and
// kubectl reach the API server; no namespace has a default route, and every address is in
// 198.18.0.0/15 or 2001:db8::/32, so nothing the lab sends leaves it.
//
// FRR instances (StartFRR: the router's, or test peers in node namespaces) keep their
// configuration, sockets and pid files in <Dir>/frr/<name>, run as the user frr, and are
// driven with FRR.Vtysh and FRR.BFDPeers. RunFRR runs one without a lab, in a namespace of
// the caller's (speaker/bgp's TestFRR does), with RouterBGPConfig and BFDProfile for the
// router's configuration.
//
// Promises: one lab per machine at a time (a lock says so instead of breaking the running one);
// Start cleans up whatever an earlier lab left behind, also after a crash; Stop removes every
// process, container, cgroup, mount, namespace, link and file the lab made, and the machine's
// kernel settings stay as they were. A step that fails is named in the error, and
// a Start that fails leaves nothing behind.
package lab
