// Package speaker is onprem-speaker, the agent that runs on every node (hostNetwork) and
// makes the LoadBalancer IPs in Service status reachable on the LAN.
//
// What it promises:
//
//   - Every speaker computes the same owner for a VIP from the same inputs (Assign): the
//     live speakers (gossip, package membership), the Nodes (exclusion label, the pool's
//     nodeSelector), and, for externalTrafficPolicy Local, the nodes with a ready local
//     endpoint. The owner is chosen by rendezvous hashing (Owner), so a node that leaves
//     moves only its own VIPs. Services that share an IP share its owner.
//   - Only the owner answers ARP/NDP for a VIP (package l2), and only for VIPs inside the
//     pools of the pool file; a VIP another host already uses is not announced and is
//     reported (event IPConflict, condition False).
//   - Nothing is announced before membership has converged, so a starting speaker does not
//     take VIPs from the others before it knows them.
//   - On SIGTERM it stops answering conflict probes, then leaves membership (the others take
//     its VIPs at once and, finding them free, announce them), keeps answering clients for
//     the handover delay, and only then stops answering.
//   - It publishes to its peers, in its membership metadata, the MACs it may answer from
//     (at most MaxMACs, always within memberlist's 512 bytes): a probe answered from one
//     of them is a handover, not a conflict.
//   - It reports on the Service: a Normal Announcing event naming node and interface, and
//     the conditions onprem-lb.io/AnnouncedIPv4 and AnnouncedIPv6 saying who announces it,
//     or why nobody does. Exactly one speaker writes each condition (the owner; the live
//     member with the lowest name when nobody may announce, and to remove the condition of
//     an IP the Service no longer has), only when it differs from what that speaker sees,
//     and ever more rarely while another speaker keeps overwriting it.
//   - /metrics, /healthz and /announcements are served without authentication, on
//     loopback unless told otherwise (DefaultMetricsAddr).
//
// The Speaker's goroutines all start in Run and stop when its context ends.
package speaker
