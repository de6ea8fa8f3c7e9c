package l2

// protocol is the resolution protocol of a responder: ARP for IPv4, NDP for IPv6.
type protocol uint8

const (
	protoARP protocol = iota
	protoNDP
)

func (p protocol) String() string {
	if p == protoNDP {
		return "ndp"
	}
	return "arp"
}

func protocolOf(ip interface{ Is4() bool }) protocol {
	if ip.Is4() {
		return protoARP
	}
	return protoNDP
}

// dropReason says why a packet read was not answered; dropNone means it is
// answered. Tests assert on it and the packets_dropped_total metric is
// labelled with its String.
type dropReason uint8

const (
	dropNone dropReason = iota
	// dropMalformed: the frame or message cannot be parsed (for NDP: or its
	// ICMPv6 checksum is wrong).
	dropMalformed
	// dropUnsupported: parsed, but not Ethernet/IPv4 ARP, not ICMPv6 in
	// IPv6 without extension headers, or an ICMPv6 message other than NS/NA.
	dropUnsupported
	// dropNotRequest: an ARP reply or an NDP neighbor advertisement: never
	// answered (it may still reveal a conflict during a probe).
	dropNotRequest
	// dropOwnPacket: sent by this host (its own MAC).
	dropOwnPacket
	// dropGratuitous: a gratuitous ARP (sender IP = target IP) from another host.
	dropGratuitous
	// dropBadSender: the sender hardware address (ARP) or Ethernet source
	// (NDP) is not a unicast Ethernet address, or an NS from :: carries a
	// source link-layer address (RFC 4861 7.1.1).
	dropBadSender
	// dropBadHopLimit: an NS whose hop limit is not 255 (RFC 4861 7.1.1).
	dropBadHopLimit
	// dropBadDestination: an NS sent to a multicast group other than its
	// target's solicited-node group, or a DAD probe (from ::) not sent to
	// that group (RFC 4861 7.1.1).
	dropBadDestination
	// dropNotAnnounced: the target is not a VIP announced on this interface
	// (not desired, or still probing, or in conflict).
	dropNotAnnounced
	// dropSendFailed: the answer could not be sent.
	dropSendFailed
	// dropHandingOver: a conflict probe (ARP from 0.0.0.0, DAD NS from ::)
	// while this node hands its VIPs over (Announcer.HandOver): the prober
	// is the new owner, and must find the VIP free.
	dropHandingOver
)

func (r dropReason) String() string {
	switch r {
	case dropNone:
		return "none"
	case dropMalformed:
		return "malformed"
	case dropUnsupported:
		return "unsupported"
	case dropNotRequest:
		return "not_request"
	case dropOwnPacket:
		return "own_packet"
	case dropGratuitous:
		return "gratuitous"
	case dropBadSender:
		return "bad_sender"
	case dropBadHopLimit:
		return "bad_hop_limit"
	case dropBadDestination:
		return "bad_destination"
	case dropNotAnnounced:
		return "not_announced"
	case dropSendFailed:
		return "send_failed"
	case dropHandingOver:
		return "handing_over"
	}
	return "unknown"
}

// count records the outcome of one packet of protocol p: an answer, or a drop by reason
// (logged at V(5)). It returns reason.
func (r *responder) count(p protocol, reason dropReason) dropReason {
	if reason == dropNone {
		r.cfg.metrics.answer(p)
	} else {
		r.cfg.metrics.drop(reason)
		r.cfg.logger.V(5).Info("Dropped packet", "protocol", p, "reason", reason)
	}
	return reason
}
