package l2

import (
	"encoding/binary"
	"net"
	"net/netip"

	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

const (
	etherTypeIPv6 = 0x86dd
	ethHeaderLen  = 14
	ipv6HeaderLen = 40
	protoICMPv6   = 58
	icmpTypeNS    = 135
	icmpTypeNA    = 136
)

var (
	allNodes    = netip.MustParseAddr("ff02::1")
	allNodesMAC = net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}
)

// openNDP opens the packet socket of ifi that reads neighbor solicitations
// and advertisements as whole Ethernet frames and writes whole frames:
// answers and unsolicited advertisements (their source is the VIP) and
// DAD-style probes (their source is ::).
//
// It reads below the IPv6 stack, so it sees what an ICMPv6 socket never
// gets: unicast solicitations addressed to a VIP (neighbor unreachability
// detection), which the kernel drops as not local. The socket keeps ifi in
// all-multicast mode (PACKET_MR_ALLMULTI) while it is open, so the
// solicitations sent to the VIPs' solicited-node groups reach it without
// joining one group per VIP; the kernel counts the membership per socket
// and drops it when the socket closes. ndpFilter keeps everything else out.
func openNDP(ifi *net.Interface) (frameConn, error) {
	filter, err := bpf.Assemble(ndpFilter())
	if err != nil {
		return nil, wrapf(err, "assembling NDP filter")
	}
	// The filter is attached before the socket is bound: nothing else is
	// ever queued on it.
	c, err := packet.Listen(ifi, packet.Raw, etherTypeIPv6, &packet.Config{Filter: filter})
	if err != nil {
		return nil, wrapf(err, "opening NDP socket on %s", ifi.Name)
	}
	if err := setAllMulticast(c, ifi.Index); err != nil {
		_ = c.Close()
		return nil, wrapf(err, "enabling all-multicast reception on %s", ifi.Name)
	}
	return c, nil
}

// setAllMulticast adds the PACKET_MR_ALLMULTI membership of interface index
// to c (packet.Conn exposes only the promiscuous one).
func setAllMulticast(c *packet.Conn, index int) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptPacketMreq(int(fd), unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP,
			&unix.PacketMreq{Ifindex: int32(index), Type: unix.PACKET_MR_ALLMULTI})
	}); err != nil {
		return err
	}
	return serr
}

// ndpFilter is the classic BPF program of the NDP socket: it passes frames
// received for this host (unicast to its MAC, broadcast or multicast; not
// sent by it, not to other hosts when the interface is promiscuous) that are
// IPv6 without extension headers carrying ICMPv6 neighbor solicitations, or
// neighbor advertisements to all nodes (what a host holding an address
// answers a DAD-style probe with, and unsolicited ones). The first two
// instructions read the packet type, which only the kernel knows; the rest
// reads the frame.
func ndpFilter() []bpf.Instruction {
	const (
		accept = 0x40000 // whole frame
		drop   = 0
	)
	return []bpf.Instruction{
		/* 0 */ bpf.LoadExtension{Num: bpf.ExtType},
		/* 1 */ bpf.JumpIf{Cond: bpf.JumpGreaterThan, Val: unix.PACKET_MULTICAST, SkipTrue: 15}, // OTHERHOST, OUTGOING, ...
		/* 2 */ bpf.LoadAbsolute{Off: 12, Size: 2},
		/* 3 */ bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: etherTypeIPv6, SkipTrue: 13},
		/* 4 */ bpf.LoadAbsolute{Off: ethHeaderLen + 6, Size: 1}, // next header
		/* 5 */ bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: protoICMPv6, SkipTrue: 11},
		/* 6 */ bpf.LoadAbsolute{Off: ethHeaderLen + ipv6HeaderLen, Size: 1}, // ICMPv6 type
		/* 7 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: icmpTypeNS, SkipTrue: 10},
		/* 8 */ bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: icmpTypeNA, SkipTrue: 8},
		/* 9 */ bpf.LoadAbsolute{Off: ethHeaderLen + 24, Size: 4}, // destination: ff02::1
		/* 10 */ bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: 0xff020000, SkipTrue: 6},
		/* 11 */ bpf.LoadAbsolute{Off: ethHeaderLen + 28, Size: 4},
		/* 12 */ bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: 0, SkipTrue: 4},
		/* 13 */ bpf.LoadAbsolute{Off: ethHeaderLen + 32, Size: 4},
		/* 14 */ bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: 0, SkipTrue: 2},
		/* 15 */ bpf.LoadAbsolute{Off: ethHeaderLen + 36, Size: 4},
		/* 16 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: 1, SkipTrue: 1}, // falls to drop
		/* 17 */ bpf.RetConstant{Val: drop},
		/* 18 */ bpf.RetConstant{Val: accept},
	}
}

func (r *responder) readNDP() {
	buf := make([]byte, 2048) // an NS is under 100 bytes; longer frames are truncated, then rejected
	r.readLoop(func() error {
		n, _, err := r.ndp.ReadFrom(buf)
		if err != nil {
			return err
		}
		r.handleNDP(buf[:n])
		return nil
	})
}

// ndpPacket is one NDP message read from the wire with what its headers say.
type ndpPacket struct {
	srcMAC   net.HardwareAddr // Ethernet source
	src, dst netip.Addr       // IPv6 source and destination
	hopLimit int
	m        ndp.Message
}

// handleNDP handles one Ethernet frame read from the NDP socket: it answers
// a neighbor solicitation for an announced VIP, feeds advertisements to
// running probes, and counts everything else as dropped by reason. It never
// panics on any input.
func (r *responder) handleNDP(frame []byte) dropReason {
	return r.count(protoNDP, r.handleNDPFrame(frame))
}

func (r *responder) handleNDPFrame(frame []byte) dropReason {
	p, reason := parseNDPFrame(frame)
	if reason != dropNone {
		return reason
	}
	if na, ok := p.m.(*ndp.NeighborAdvertisement); ok && p.hopLimit == ndp.HopLimit {
		r.observe(na.TargetAddress, linkLayerAddr(na.Options, ndp.Target))
	}
	reply, reason := r.decideNDP(&p)
	if !reply {
		return reason
	}
	ns := p.m.(*ndp.NeighborSolicitation)
	dstMAC := linkLayerAddr(ns.Options, ndp.Source)
	if !isUnicastMAC(dstMAC) {
		dstMAC = p.srcMAC
	}
	if err := r.sendNA(ns.TargetAddress.WithZone(""), p.src, dstMAC); err != nil {
		r.cfg.logger.V(2).Info("Cannot send neighbor advertisement", "interface", r.cfg.link.Name, "vip", ns.TargetAddress, "err", err)
		return dropSendFailed
	}
	return dropNone
}

// parseNDPFrame parses an Ethernet frame holding an IPv6 packet without
// extension headers that carries an NDP message with a valid checksum.
// Bytes past the IPv6 payload (Ethernet padding) are ignored.
func parseNDPFrame(frame []byte) (ndpPacket, dropReason) {
	switch {
	case len(frame) < ethHeaderLen:
		return ndpPacket{}, dropMalformed
	case binary.BigEndian.Uint16(frame[12:14]) != etherTypeIPv6:
		return ndpPacket{}, dropUnsupported
	case len(frame) < ethHeaderLen+ipv6HeaderLen:
		return ndpPacket{}, dropMalformed
	}
	ip := frame[ethHeaderLen:]
	plen := int(binary.BigEndian.Uint16(ip[4:6]))
	switch {
	case ip[0]>>4 != 6 || len(ip) < ipv6HeaderLen+plen:
		return ndpPacket{}, dropMalformed
	case ip[6] != protoICMPv6:
		return ndpPacket{}, dropUnsupported
	}
	p := ndpPacket{
		srcMAC:   net.HardwareAddr(frame[6:12]),
		src:      netip.AddrFrom16([16]byte(ip[8:24])),
		dst:      netip.AddrFrom16([16]byte(ip[24:40])),
		hopLimit: int(ip[7]),
	}
	body := ip[ipv6HeaderLen : ipv6HeaderLen+plen]
	if icmpv6Checksum(p.src, p.dst, body) != 0 {
		return ndpPacket{}, dropMalformed
	}
	m, err := ndp.ParseMessage(body)
	if err != nil {
		return ndpPacket{}, dropMalformed
	}
	p.m = m
	return p, dropNone
}

// icmpv6Checksum is the Internet checksum of the ICMPv6 message b from src
// to dst (RFC 4443 2.3): 0 if b holds a valid checksum, else the checksum b
// should hold if its checksum field were zero.
func icmpv6Checksum(src, dst netip.Addr, b []byte) uint16 {
	var sum uint32
	add := func(p []byte) {
		for len(p) >= 2 {
			sum += uint32(p[0])<<8 | uint32(p[1])
			p = p[2:]
		}
		if len(p) == 1 {
			sum += uint32(p[0]) << 8
		}
	}
	s, d := src.As16(), dst.As16()
	add(s[:])
	add(d[:])
	sum += uint32(len(b)>>16) + uint32(len(b)&0xffff) + protoICMPv6
	add(b)
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// decideNDP is the pure answer decision for one parsed NDP packet: reply is
// true only for a valid neighbor solicitation (RFC 4861 7.1.1) from another
// host for a VIP announced on this interface, sent to the VIP itself
// (neighbor unreachability detection), to its solicited-node group, or to
// another address of this host. It costs one map lookup under a read lock.
func (r *responder) decideNDP(p *ndpPacket) (reply bool, reason dropReason) {
	var ns *ndp.NeighborSolicitation
	switch m := p.m.(type) {
	case *ndp.NeighborSolicitation:
		ns = m
	case *ndp.NeighborAdvertisement:
		return false, dropNotRequest
	default:
		return false, dropUnsupported
	}
	target := ns.TargetAddress.WithZone("")
	slla := linkLayerAddr(ns.Options, ndp.Source)
	switch {
	case p.hopLimit != ndp.HopLimit:
		return false, dropBadHopLimit
	case !target.Is6() || target.Is4In6() || target.IsMulticast():
		return false, dropMalformed
	case r.cfg.isOwnMAC(p.srcMAC) || slla != nil && r.cfg.isOwnMAC(slla):
		return false, dropOwnPacket
	case !isUnicastMAC(p.srcMAC),
		p.src.IsUnspecified() && slla != nil, p.src.IsMulticast(), p.src.Is4In6():
		return false, dropBadSender
	case p.dst.IsMulticast() && p.dst != solicitedNode(target),
		p.src.IsUnspecified() && !p.dst.IsMulticast():
		return false, dropBadDestination
	case !r.announced(target):
		return false, dropNotAnnounced
	case p.src.IsUnspecified() && r.cfg.handingOver():
		return false, dropHandingOver
	}
	return true, dropNone
}

// solicitedNode is the solicited-node multicast group of ip (RFC 4291 2.7.1).
func solicitedNode(ip netip.Addr) netip.Addr {
	a := ip.As16()
	return netip.AddrFrom16([16]byte{0xff, 0x02, 10: 0, 11: 1, 12: 0xff, 13: a[13], 14: a[14], 15: a[15]})
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

// sendNA answers a solicitation from src, whose sender is at dstMAC, for
// target: Solicited and Override set, target link-layer address option, sent
// to src, or to all nodes with Solicited clear when src is :: (a DAD probe;
// RFC 4861 7.2.4).
//
// Like the kernel for its own addresses, the answer's IPv6 source is the
// target itself, written as a whole frame on the packet socket (an ICMPv6
// socket can only send from an address the host holds; some resolvers, e.g.
// ndisc6, ignore an answer for a global target from a link-local source).
func (r *responder) sendNA(target, src netip.Addr, dstMAC net.HardwareAddr) error {
	na := &ndp.NeighborAdvertisement{
		Solicited:     true,
		Override:      true,
		TargetAddress: target,
		Options:       []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: r.mac}},
	}
	dst := src.WithZone("")
	if src.IsUnspecified() {
		na.Solicited, dst, dstMAC = false, allNodes, allNodesMAC
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
	if _, err := r.ndp.WriteTo(frame, &packet.Addr{HardwareAddr: dstMAC}); err != nil {
		return wrapf(err, "sending %v on %s", m.Type(), r.cfg.link.Name)
	}
	return nil
}

// sendDADProbe sends a DAD-style neighbor solicitation for ip: from ::, to
// the solicited-node multicast group of ip, without a source link-layer
// address option. A host holding ip answers to all nodes.
func (r *responder) sendDADProbe(ip netip.Addr) error {
	group := solicitedNode(ip)
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
	hdr := make([]byte, ipv6HeaderLen, ipv6HeaderLen+len(icmp))
	hdr[0] = 6 << 4
	binary.BigEndian.PutUint16(hdr[4:6], uint16(len(icmp)))
	hdr[6] = protoICMPv6
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
