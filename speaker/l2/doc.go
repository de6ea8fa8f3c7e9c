// Package l2 is the per-node layer-2 announcer of the onprem-speaker: it
// answers ARP requests (IPv4) and NDP neighbor solicitations (IPv6) for the
// virtual IPs (VIPs) this node currently owns, so that LAN clients send the
// VIPs' traffic to this node.
//
// The caller states what it wants with one declarative call,
// [Announcer.Sync], and the [Announcer] converges on it from [Announcer.Run]:
// it chooses the interfaces (or uses the configured ones), opens one ARP
// socket and one NDP socket per interface, follows interfaces that appear,
// disappear or flap, and closes everything when Run's context is done.
//
// Both are AF_PACKET sockets reading whole Ethernet frames below the IP
// stack. The NDP socket therefore also sees the unicast neighbor
// solicitations that neighbors send to a VIP to check it is still reachable
// (the kernel would drop them: a VIP is not one of its addresses). Instead of
// joining one solicited-node multicast group per VIP, which the kernel caps
// per socket (net.core.optmem_max: a few thousand), it puts the interface in
// all-multicast mode for as long as it is open; a BPF filter lets only
// neighbor solicitations and advertisements to all nodes reach it, so the
// number of IPv6 VIPs per interface is not limited by the kernel.
//
// What the package promises:
//   - It answers only for VIPs in the last desired set, only on the interfaces
//     chosen for them, and stops answering for a VIP as soon as Sync no longer
//     lists it.
//   - Before it answers for a VIP on an interface it probes for a conflict
//     (an ARP probe, or an IPv6 DAD-style neighbor solicitation). If a host
//     that is neither this node nor a cluster peer ([Options.IsPeerMAC])
//     answers, the VIP is not announced there: it is reported as a conflict
//     and probed again until the address is free.
//   - After [Announcer.HandOver] it no longer answers conflict probes nor sends
//     gratuitous packets, so the nodes taking its VIPs over find them free; it
//     still answers clients for a VIP until another host announces it.
//   - When it starts answering (takeover, or an interface coming back) it sends
//     gratuitous ARPs or unsolicited neighbor advertisements so that neighbors
//     update their caches at once.
//   - Malformed or hostile packets are dropped and counted by reason; they
//     never make it panic.
//
// What it does not do: decide which node owns a VIP. Exactly one responder
// per VIP on the LAN relies on the speaker's controller giving each VIP to one
// node; this package only guarantees it answers for the VIPs it is given and
// for no other address.
package l2
