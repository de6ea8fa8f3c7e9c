// Package membership tells each onprem-speaker which speakers are alive. It
// is the "live speakers" input of VIP ownership (see DESIGN.md,
// Ownership): every speaker computes the same owner for a VIP from the same
// member list, so the list must agree quickly across nodes, and a dead node
// must leave it quickly for its VIPs to move.
//
// It is a thin layer over github.com/hashicorp/memberlist (SWIM gossip with
// Lifeguard), with timers tuned for a LAN.
//
// What it promises:
//
//   - A member that dies without leaving (power loss, kill -9, cable
//     pulled) is declared dead by every other member in well under a second
//     on a LAN of a few to about 100 nodes with DefaultTiming (the
//     arithmetic is on DefaultTiming; BenchmarkFailureDetection measures
//     it). A member that calls Leave, or whose Run returns, is dropped by
//     the others at once, not after failure detection.
//   - Members is the live members, self included, sorted by name, each with
//     its address and the Meta it published. Changed is signalled after
//     every change, when Members already shows it.
//   - Converged is closed once a full state exchange with a peer completed
//     (this member's join reached it, or its join reached this member), or
//     there was no peer, or ConvergeTimeout passed; a speaker announces
//     nothing before.
//   - A suspect member (one missed probe, not yet declared dead) is still
//     a member: a single lost packet moves no VIP.
//   - Peers that are not members are joined again every RejoinInterval:
//     partitions heal and late nodes are found.
//   - With SecretKeys, gossip is encrypted and authenticated (AES-GCM,
//     memberlist's keyring: the first key encrypts, every key decrypts);
//     members that share no key, or another memberlist cluster on the same
//     port, are not heard. A rotation (add the new key second, then make
//     it first, then remove the old one, each step on every member) never
//     splits the members. Without keys the gossip is plain, and Run says
//     so once.
//   - Meta is fixed for the life of a Membership.
//   - New only validates (errors wrap ErrInvalidConfig) and starts nothing;
//     the goroutines belong to Run and stop when its ctx is done.
package membership
