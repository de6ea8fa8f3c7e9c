package l2

import (
	"bytes"
	"net"
	"net/netip"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/packet"
)

// etherTypeARP is the EtherType the ARP socket is bound to.
const etherTypeARP = 0x0806

var (
	zeroMAC          = net.HardwareAddr{0, 0, 0, 0, 0, 0}
	limitedBroadcast = netip.AddrFrom4([4]byte{255, 255, 255, 255})
)

// openARP opens the raw socket that reads every ARP frame on ifi and sends
// answers, probes and gratuitous ARPs.
//
// The socket is a github.com/mdlayher/packet conn and packets are
// github.com/mdlayher/arp packets, but not an arp.Client: arp.Dial refuses an
// interface without an IPv4 address (a configured VIP-only interface is
// valid), and Client.Read hides malformed frames, which are counted here.
func openARP(ifi *net.Interface) (frameConn, error) {
	c, err := packet.Listen(ifi, packet.Raw, etherTypeARP, nil)
	if err != nil {
		return nil, wrapf(err, "opening ARP socket on %s", ifi.Name)
	}
	return c, nil
}

func (r *responder) readARP() {
	buf := make([]byte, 256) // an ARP frame is 42 bytes; longer frames are truncated, then rejected or parsed
	r.readLoop(func() error {
		n, _, err := r.arp.ReadFrom(buf)
		if err != nil {
			return err
		}
		r.handleARP(buf[:n])
		return nil
	})
}

// handleARP handles one Ethernet frame read from the ARP socket: it answers
// a request for an announced VIP, feeds claims to running probes, and counts
// everything else as dropped by reason. It never panics on any input.
func (r *responder) handleARP(frame []byte) dropReason {
	return r.count(protoARP, r.handleARPFrame(frame))
}

func (r *responder) handleARPFrame(frame []byte) dropReason {
	var f ethernet.Frame
	if err := f.UnmarshalBinary(frame); err != nil {
		return dropMalformed
	}
	if f.EtherType != ethernet.EtherTypeARP {
		return dropUnsupported
	}
	var p arp.Packet
	if err := p.UnmarshalBinary(f.Payload); err != nil {
		return dropMalformed
	}
	if isEthernetIPv4(&p) && p.SenderIP.IsValid() && !p.SenderIP.IsUnspecified() && isUnicastMAC(p.SenderHardwareAddr) {
		// A host using SenderIP: a reply to our probe, or its own
		// announcement or request. Only matters while we probe.
		r.observe(p.SenderIP, p.SenderHardwareAddr)
	}
	reply, reason := r.decideARP(&p)
	if !reply {
		return reason
	}
	if err := r.sendARPReply(&p); err != nil {
		r.cfg.logger.V(2).Info("Cannot send ARP reply", "interface", r.cfg.link.Name, "vip", p.TargetIP, "err", err)
		return dropSendFailed
	}
	return dropNone
}

// decideARP is the pure answer decision for one parsed ARP packet: reply is
// true only for a request from another host, with a unicast sender, for a
// VIP announced on this interface. It costs one map lookup under a read lock.
func (r *responder) decideARP(p *arp.Packet) (reply bool, reason dropReason) {
	switch {
	case !isEthernetIPv4(p):
		return false, dropUnsupported
	case r.cfg.isOwnMAC(p.SenderHardwareAddr):
		return false, dropOwnPacket
	case p.Operation != arp.OperationRequest:
		return false, dropNotRequest
	case !isUnicastMAC(p.SenderHardwareAddr) || p.SenderIP.IsMulticast() || p.SenderIP == limitedBroadcast:
		return false, dropBadSender
	case p.SenderIP == p.TargetIP:
		return false, dropGratuitous
	case !r.announced(p.TargetIP):
		return false, dropNotAnnounced
	case p.SenderIP.IsUnspecified() && r.cfg.handingOver():
		return false, dropHandingOver
	}
	return true, dropNone
}

// isEthernetIPv4 reports whether p is ARP for IPv4 over Ethernet with the
// address lengths that go with it.
func isEthernetIPv4(p *arp.Packet) bool {
	return p.HardwareType == 1 && p.ProtocolType == uint16(ethernet.EtherTypeIPv4) &&
		p.HardwareAddrLength == 6 && p.IPLength == 4 &&
		len(p.SenderHardwareAddr) == 6 && len(p.TargetHardwareAddr) == 6 &&
		p.SenderIP.Is4() && p.TargetIP.Is4()
}

// isUnicastMAC reports whether mac is a 6-byte unicast address other than zero.
func isUnicastMAC(mac net.HardwareAddr) bool {
	return len(mac) == 6 && mac[0]&1 == 0 && !bytes.Equal(mac, zeroMAC)
}

// sendARPReply answers req for its target from this interface's MAC, to the
// requester (a probe from 0.0.0.0 gets its answer at 0.0.0.0, RFC 5227).
func (r *responder) sendARPReply(req *arp.Packet) error {
	p, err := arp.NewPacket(arp.OperationReply, r.mac, req.TargetIP, req.SenderHardwareAddr, req.SenderIP)
	if err != nil {
		return wrapf(err, "building ARP reply")
	}
	return r.writeARP(p, req.SenderHardwareAddr)
}

// sendARPProbe sends an RFC 5227 probe for ip: a broadcast request from
// sender IP 0.0.0.0, target hardware address zero.
func (r *responder) sendARPProbe(ip netip.Addr) error {
	p, err := arp.NewPacket(arp.OperationRequest, r.mac, netip.IPv4Unspecified(), zeroMAC, ip)
	if err != nil {
		return wrapf(err, "building ARP probe")
	}
	return r.writeARP(p, ethernet.Broadcast)
}

// sendARPGratuitous broadcasts a gratuitous ARP request and reply for ip
// (sender IP = target IP = ip) and returns how many were sent.
func (r *responder) sendARPGratuitous(ip netip.Addr) (int, error) {
	n := 0
	for _, op := range []arp.Operation{arp.OperationRequest, arp.OperationReply} {
		target := zeroMAC
		if op == arp.OperationReply {
			target = ethernet.Broadcast
		}
		p, err := arp.NewPacket(op, r.mac, ip, target, ip)
		if err != nil {
			return n, wrapf(err, "building gratuitous ARP")
		}
		if err := r.writeARP(p, ethernet.Broadcast); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

func (r *responder) writeARP(p *arp.Packet, dst net.HardwareAddr) error {
	pb, err := p.MarshalBinary()
	if err != nil {
		return wrapf(err, "marshaling ARP packet")
	}
	f := ethernet.Frame{Destination: dst, Source: r.mac, EtherType: ethernet.EtherTypeARP, Payload: pb}
	fb, err := f.MarshalBinary()
	if err != nil {
		return wrapf(err, "marshaling Ethernet frame")
	}
	if _, err := r.arp.WriteTo(fb, &packet.Addr{HardwareAddr: dst}); err != nil {
		return wrapf(err, "sending ARP on %s", r.cfg.link.Name)
	}
	return nil
}
