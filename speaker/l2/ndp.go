package l2

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"

	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"
	"golang.org/x/net/ipv6"
)

var (
	allNodes    = netip.MustParseAddr("ff02::1")
	allNodesMAC = net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}
)

// openNDP opens the NDP socket of ifi (bound to its link-local address, hop
// limit 255, reading only neighbor solicitations and advertisements, with
// the hop limit of each) and the packet socket that sends whole IPv6 frames: DAD-style probes
// (their source is ::) and advertisements (their source is the VIP), which
// an ICMPv6 socket bound to an address of the host cannot send.
func openNDP(ifi *net.Interface) (ndpConn, frameConn, error) {
	c, _, err := ndp.Listen(ifi, ndp.LinkLocal)
	if err != nil {
		return nil, nil, wrapf(err, "opening NDP socket on %s", ifi.Name)
	}
	var f ipv6.ICMPFilter
	f.SetAll(true)
	f.Accept(ipv6.ICMPTypeNeighborSolicitation)
	f.Accept(ipv6.ICMPTypeNeighborAdvertisement) // answers to our probes
	if err := c.SetICMPFilter(&f); err != nil {
		_ = c.Close()
		return nil, nil, wrapf(err, "setting ICMPv6 filter on %s", ifi.Name)
	}
	if err := c.SetControlMessage(ipv6.FlagHopLimit, true); err != nil {
		_ = c.Close()
		return nil, nil, wrapf(err, "asking for hop limits on %s", ifi.Name)
	}
	// Protocol 0: this socket sends only, it receives nothing.
	dad, err := packet.Listen(ifi, packet.Raw, 0, nil)
	if err != nil {
		_ = c.Close()
		return nil, nil, wrapf(err, "opening probe socket on %s", ifi.Name)
	}
	return c, dad, nil
}

func (r *responder) readNDP() {
	buf := make([]byte, 1500)
	r.readLoop(func() error {
		n, cm, src, err := r.ndp.ReadRaw(buf)
		if err != nil {
			return err
		}
		hopLimit := ndp.HopLimit // unknown: trust the filter
		if cm != nil {
			hopLimit = cm.HopLimit
		}
		r.handleNDP(buf[:n], src, hopLimit)
		return nil
	})
}

// handleNDP handles one ICMPv6 message read from the NDP socket (from src,
// with hopLimit): it answers a neighbor solicitation for an announced VIP,
// feeds advertisements to running probes, and counts everything else as
// dropped by reason. It never panics on any input.
func (r *responder) handleNDP(b []byte, src netip.Addr, hopLimit int) dropReason {
	reason := r.handleNDPMessage(b, src, hopLimit)
	if reason == dropNone {
		r.cfg.metrics.answer(protoNDP)
	} else {
		r.cfg.metrics.drop(reason)
		r.cfg.logger.V(5).Info("Dropped NDP packet", "reason", reason)
	}
	return reason
}

func (r *responder) handleNDPMessage(b []byte, src netip.Addr, hopLimit int) dropReason {
	m, err := ndp.ParseMessage(b)
	if err != nil {
		return dropMalformed
	}
	if na, ok := m.(*ndp.NeighborAdvertisement); ok && hopLimit == ndp.HopLimit {
		r.observe(na.TargetAddress, linkLayerAddr(na.Options, ndp.Target))
	}
	reply, reason := r.decideNDP(m, src, hopLimit)
	if !reply {
		return reason
	}
	ns := m.(*ndp.NeighborSolicitation)
	if err := r.sendNA(ns.TargetAddress, src, linkLayerAddr(ns.Options, ndp.Source)); err != nil {
		r.cfg.logger.V(2).Info("Cannot send neighbor advertisement", "interface", r.cfg.link.Name, "vip", ns.TargetAddress, "err", err)
		return dropSendFailed
	}
	return dropNone
}

// decideNDP is the pure answer decision for one parsed NDP message from src
// received with hopLimit: reply is true only for a valid neighbor
// solicitation (RFC 4861 7.1.1) from another host for a VIP announced on this
// interface. It costs one map lookup under a read lock.
func (r *responder) decideNDP(m ndp.Message, src netip.Addr, hopLimit int) (reply bool, reason dropReason) {
	var ns *ndp.NeighborSolicitation
	switch m := m.(type) {
	case *ndp.NeighborSolicitation:
		ns = m
	case *ndp.NeighborAdvertisement:
		return false, dropNotRequest
	default:
		return false, dropUnsupported
	}
	slla := linkLayerAddr(ns.Options, ndp.Source)
	switch {
	case hopLimit != ndp.HopLimit:
		return false, dropBadHopLimit
	case !ns.TargetAddress.Is6() || ns.TargetAddress.Is4In6() || ns.TargetAddress.IsMulticast():
		return false, dropMalformed
	case slla != nil && r.cfg.isOwnMAC(slla):
		return false, dropOwnPacket
	case src.IsUnspecified() && slla != nil, src.IsMulticast(), src.IsValid() && !src.Is6():
		return false, dropBadSender
	case !r.announced(ns.TargetAddress.WithZone("")):
		return false, dropNotAnnounced
	}
	return true, dropNone
}

// linkLayerAddr returns the first link-layer address option of direction d
// in opts, or nil.
func linkLayerAddr(opts []ndp.Option, d ndp.Direction) net.HardwareAddr {
	for _, o := range opts {
		if lla, ok := o.(*ndp.LinkLayerAddress); ok && lla.Direction == d {
			return lla.Addr
		}
	}
	return nil
}

// sendNA answers a solicitation from src (with source link-layer address
// slla, nil if none) for target: Solicited and Override set, target
// link-layer address option, sent to src, or to all nodes with Solicited
// clear when src is :: (a DAD probe; RFC 4861 7.2.4).
//
// Like the kernel for its own addresses, the answer's IPv6 source is the
// target itself, written as a whole frame on the packet socket (an ICMPv6
// socket can only send from an address the host holds; some resolvers, e.g.
// ndisc6, ignore an answer for a global target from a link-local source).
// Only a unicast solicitation without a source link-layer address, whose
// sender's MAC is unknown, is answered through the NDP socket instead.
func (r *responder) sendNA(target, src netip.Addr, slla net.HardwareAddr) error {
	na := &ndp.NeighborAdvertisement{
		Solicited:     true,
		Override:      true,
		TargetAddress: target,
		Options:       []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: r.mac}},
	}
	dst, dstMAC := src.WithZone(""), slla
	if !src.IsValid() || src.IsUnspecified() {
		na.Solicited, dst, dstMAC = false, allNodes, allNodesMAC
	}
	if !isUnicastMAC(dstMAC) && !bytes.Equal(dstMAC, allNodesMAC) {
		if err := r.ndp.WriteTo(na, nil, src); err != nil {
			return wrapf(err, "sending neighbor advertisement on %s", r.cfg.link.Name)
		}
		return nil
	}
	return r.writeIPv6(dstMAC, target, dst, na)
}

// sendUnsolicitedNA sends one unsolicited neighbor advertisement for ip, from
// ip, to all nodes (Override, target link-layer address option).
func (r *responder) sendUnsolicitedNA(ip netip.Addr) (int, error) {
	na := &ndp.NeighborAdvertisement{
		Override:      true,
		TargetAddress: ip,
		Options:       []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: r.mac}},
	}
	if err := r.writeIPv6(allNodesMAC, ip, allNodes, na); err != nil {
		return 0, err
	}
	return 1, nil
}

// writeIPv6 writes m from src to dst (at dstMAC) as a whole frame on the
// packet socket.
func (r *responder) writeIPv6(dstMAC net.HardwareAddr, src, dst netip.Addr, m ndp.Message) error {
	frame, err := ipv6Frame(r.mac, dstMAC, src, dst, m)
	if err != nil {
		return err
	}
	if _, err := r.raw6.WriteTo(frame, &packet.Addr{HardwareAddr: dstMAC}); err != nil {
		return wrapf(err, "sending %v on %s", m.Type(), r.cfg.link.Name)
	}
	return nil
}

// sendDADProbe sends a DAD-style neighbor solicitation for ip: from ::, to
// the solicited-node multicast group of ip, without a source link-layer
// address option. A host holding ip answers to all nodes.
func (r *responder) sendDADProbe(ip netip.Addr) error {
	group, err := ndp.SolicitedNodeMulticast(ip)
	if err != nil {
		return wrapf(err, "solicited-node group of %s", ip)
	}
	return r.writeIPv6(multicastMAC(group), netip.IPv6Unspecified(), group, &ndp.NeighborSolicitation{TargetAddress: ip})
}

// multicastMAC is the Ethernet address of an IPv6 multicast group (RFC 2464).
func multicastMAC(group netip.Addr) net.HardwareAddr {
	g := group.As16()
	return net.HardwareAddr{0x33, 0x33, g[12], g[13], g[14], g[15]}
}

// ipv6Frame builds the Ethernet frame of the NDP message m from src to dst:
// hop limit 255, ICMPv6 checksum computed.
func ipv6Frame(srcMAC, dstMAC net.HardwareAddr, src, dst netip.Addr, m ndp.Message) ([]byte, error) {
	icmp, err := ndp.MarshalMessageChecksum(m, src, dst)
	if err != nil {
		return nil, wrapf(err, "marshaling %v", m.Type())
	}
	hdr := make([]byte, ipv6.HeaderLen, ipv6.HeaderLen+len(icmp))
	hdr[0] = 6 << 4
	binary.BigEndian.PutUint16(hdr[4:6], uint16(len(icmp)))
	hdr[6] = 58 // ICMPv6
	hdr[7] = ndp.HopLimit
	s, d := src.As16(), dst.As16()
	copy(hdr[8:24], s[:])
	copy(hdr[24:40], d[:])
	f := ethernet.Frame{Destination: dstMAC, Source: srcMAC, EtherType: ethernet.EtherTypeIPv6, Payload: append(hdr, icmp...)}
	b, err := f.MarshalBinary()
	if err != nil {
		return nil, wrapf(err, "marshaling Ethernet frame")
	}
	return b, nil
}
