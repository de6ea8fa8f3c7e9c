package l2

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"golang.org/x/net/bpf"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"
)

var (
	vip6      = netip.MustParseAddr("2001:db8:64::10")
	vip6Group = netip.MustParseAddr("ff02::1:ff00:10")
	clientLL  = netip.MustParseAddr("fe80::2")
	clientGUA = netip.MustParseAddr("2001:db8:64::2")
	routerMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x04}
	addrCmp   = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })
)

func nsMessage(target netip.Addr, slla net.HardwareAddr) *ndp.NeighborSolicitation {
	ns := &ndp.NeighborSolicitation{TargetAddress: target}
	if slla != nil {
		ns.Options = []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: slla}}
	}
	return ns
}

// frame6 is the Ethernet frame of m from srcMAC, src to dst (its MAC: the
// group's if dst is multicast, else ourMAC), hop limit 255.
func frame6(t testing.TB, srcMAC net.HardwareAddr, src, dst netip.Addr, m ndp.Message) []byte {
	t.Helper()
	dstMAC := ourMAC
	if dst.IsMulticast() {
		dstMAC = multicastMAC(dst)
	}
	b, err := ipv6Frame(srcMAC, dstMAC, src, dst, m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// multicastNS is a neighbor solicitation for target from the client, to the
// target's solicited-node group, with the client's MAC as source link-layer
// address.
func multicastNS(t testing.TB, target netip.Addr) []byte {
	return frame6(t, otherMAC, clientLL, solicitedNode(target), nsMessage(target, otherMAC))
}

// unicastNS is a neighbor unreachability detection probe for target from
// the client: to target itself, at ourMAC, with no source link-layer address.
func unicastNS(t testing.TB, target netip.Addr) []byte {
	return frame6(t, otherMAC, clientGUA, target, nsMessage(target, nil))
}

func TestDecideNDP(t *testing.T) {
	ns := func(target string, slla net.HardwareAddr, f func(p *ndpPacket)) *ndpPacket {
		ip := netip.MustParseAddr(target)
		p := &ndpPacket{srcMAC: otherMAC, src: clientLL, dst: solicitedNode(ip), hopLimit: 255, m: nsMessage(ip, slla)}
		if f != nil {
			f(p)
		}
		return p
	}
	vip := vip6.String()
	tests := []struct {
		name string
		p    *ndpPacket
		want dropReason
	}{
		{name: "multicast NS for announced VIP", p: ns(vip, otherMAC, nil), want: dropNone},
		{name: "unicast NS to the VIP (NUD)", p: ns(vip, nil, func(p *ndpPacket) { p.src, p.dst = clientGUA, vip6 }), want: dropNone},
		{name: "unicast NS to an address of this host", p: ns(vip, otherMAC, func(p *ndpPacket) { p.dst = netip.MustParseAddr("2001:db8:64::1") }), want: dropNone},
		{name: "NS from a global address", p: ns(vip, otherMAC, func(p *ndpPacket) { p.src = clientGUA }), want: dropNone},
		{name: "NS relayed by another MAC", p: ns(vip, otherMAC, func(p *ndpPacket) { p.srcMAC = routerMAC }), want: dropNone},
		{name: "DAD NS from :: for announced VIP", p: ns(vip, nil, func(p *ndpPacket) { p.src = netip.IPv6Unspecified() }), want: dropNone},
		{name: "DAD NS from :: with source link-layer address", p: ns(vip, otherMAC, func(p *ndpPacket) { p.src = netip.IPv6Unspecified() }), want: dropBadSender},
		{name: "DAD NS from :: to the VIP", p: ns(vip, nil, func(p *ndpPacket) { p.src, p.dst = netip.IPv6Unspecified(), vip6 }), want: dropBadDestination},
		{name: "NS to all nodes", p: ns(vip, otherMAC, func(p *ndpPacket) { p.dst = allNodes }), want: dropBadDestination},
		{name: "NS to another solicited-node group", p: ns(vip, otherMAC, func(p *ndpPacket) { p.dst = netip.MustParseAddr("ff02::1:ff00:11") }), want: dropBadDestination},
		{name: "NS from a multicast source", p: ns(vip, otherMAC, func(p *ndpPacket) { p.src = allNodes }), want: dropBadSender},
		{name: "NS from a multicast Ethernet source", p: ns(vip, otherMAC, func(p *ndpPacket) { p.srcMAC = allNodesMAC }), want: dropBadSender},
		{name: "NS for another address", p: ns("2001:db8:64::11", otherMAC, nil), want: dropNotAnnounced},
		{name: "NS for VIP still probing", p: ns("2001:db8:64::12", otherMAC, nil), want: dropNotAnnounced},
		{name: "NS for a multicast target", p: ns("ff02::1", otherMAC, nil), want: dropMalformed},
		{name: "NS routed from afar", p: ns(vip, otherMAC, func(p *ndpPacket) { p.hopLimit = 254 }), want: dropBadHopLimit},
		{name: "own NS", p: ns(vip, ourMAC, func(p *ndpPacket) { p.srcMAC = ourMAC }), want: dropOwnPacket},
		{name: "own NS without source link-layer address", p: ns(vip, nil, func(p *ndpPacket) { p.srcMAC = ourMAC }), want: dropOwnPacket},
		{name: "NA", p: &ndpPacket{srcMAC: otherMAC, src: clientLL, dst: allNodes, hopLimit: 255, m: &ndp.NeighborAdvertisement{TargetAddress: vip6}}, want: dropNotRequest},
		{name: "router solicitation", p: &ndpPacket{srcMAC: otherMAC, src: clientLL, dst: allNodes, hopLimit: 255, m: &ndp.RouterSolicitation{}}, want: dropUnsupported},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _, _, _ := newTestResponder(t, protoNDP)
			forceAnnounced(r, vip6)
			r.setDesired(set(vip6.String(), "2001:db8:64::12"))
			reply, got := r.decideNDP(tt.p)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("reason (-want +got):\n%s", diff)
			}
			if reply != (tt.want == dropNone) {
				t.Errorf("reply = %v with reason %v", reply, got)
			}
		})
	}
}

func TestHandleNDPReplies(t *testing.T) {
	tla := []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: ourMAC}}
	solicitedNA := &ndp.NeighborAdvertisement{Solicited: true, Override: true, TargetAddress: vip6, Options: tla}
	withHopLimit := func(b []byte, h byte) []byte { b[ethHeaderLen+7] = h; return b }
	corrupt := func(b []byte) []byte { b[len(b)-1] ^= 0xff; return b }
	tests := []struct {
		name  string
		frame []byte
		want  dropReason
		sent  []ndpFrame
	}{
		{
			name:  "multicast NS answered to its source link-layer address, from the VIP",
			frame: multicastNS(t, vip6),
			sent:  []ndpFrame{{DstMAC: otherMAC.String(), Src: vip6.String(), Dst: clientLL.String(), HopLimit: 255, M: solicitedNA}},
		},
		{
			name:  "unicast NS to the VIP without source link-layer address answered to the Ethernet source",
			frame: unicastNS(t, vip6),
			sent:  []ndpFrame{{DstMAC: otherMAC.String(), Src: vip6.String(), Dst: clientGUA.String(), HopLimit: 255, M: solicitedNA}},
		},
		{
			name:  "source link-layer address preferred to the Ethernet source",
			frame: frame6(t, routerMAC, clientLL, vip6Group, nsMessage(vip6, otherMAC)),
			sent:  []ndpFrame{{DstMAC: otherMAC.String(), Src: vip6.String(), Dst: clientLL.String(), HopLimit: 255, M: solicitedNA}},
		},
		{
			name:  "DAD NS answered to all nodes, not solicited",
			frame: frame6(t, otherMAC, netip.IPv6Unspecified(), vip6Group, nsMessage(vip6, nil)),
			sent: []ndpFrame{{DstMAC: "33:33:00:00:00:01", Src: vip6.String(), Dst: "ff02::1", HopLimit: 255,
				M: &ndp.NeighborAdvertisement{Override: true, TargetAddress: vip6, Options: tla}}},
		},
		{
			name:  "Ethernet padding ignored",
			frame: append(multicastNS(t, vip6), 0, 0, 0, 0, 0, 0),
			sent:  []ndpFrame{{DstMAC: otherMAC.String(), Src: vip6.String(), Dst: clientLL.String(), HopLimit: 255, M: solicitedNA}},
		},
		{name: "unicast NS for another address", frame: unicastNS(t, netip.MustParseAddr("2001:db8:64::11")), want: dropNotAnnounced},
		{name: "hop limit 254", frame: withHopLimit(unicastNS(t, vip6), 254), want: dropBadHopLimit},
		{name: "bad checksum", frame: corrupt(multicastNS(t, vip6)), want: dropMalformed},
		{name: "empty", want: dropMalformed},
		{name: "truncated NS", frame: multicastNS(t, vip6)[:ethHeaderLen+ipv6HeaderLen+10], want: dropMalformed},
		{name: "not IPv6", frame: append(multicastNS(t, vip6)[:12], 0x08, 0x06, 0, 0), want: dropUnsupported},
		{name: "IPv4 in an IPv6 frame", frame: func() []byte { b := multicastNS(t, vip6); b[ethHeaderLen] = 0x45; return b }(), want: dropMalformed},
		{name: "hop-by-hop header", frame: func() []byte { b := multicastNS(t, vip6); b[ethHeaderLen+6] = 0; return b }(), want: dropUnsupported},
		{name: "echo request", frame: echoFrame(t), want: dropMalformed},
		{name: "bad option length", frame: withPayload(t, multicastNS(t, vip6), 1, 0, 0, 0, 0, 0, 0, 0), want: dropMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _, ndpc, _ := newTestResponder(t, protoNDP)
			forceAnnounced(r, vip6)
			if diff := cmp.Diff(tt.want, r.handleNDP(tt.frame)); diff != "" {
				t.Errorf("reason (-want +got):\n%s", diff)
			}
			var got []ndpFrame
			for _, b := range ndpc.written() {
				got = append(got, decodeNDPFrame(t, b))
			}
			if diff := cmp.Diff(tt.sent, got, addrCmp); diff != "" {
				t.Errorf("frames (-want +got):\n%s", diff)
			}
		})
	}
}

// echoFrame is an ICMPv6 echo request from the client to vip6, with a valid
// checksum.
func echoFrame(t testing.TB) []byte {
	t.Helper()
	b := unicastNS(t, vip6)[:ethHeaderLen+ipv6HeaderLen]
	return withPayload(t, b, byte(ipv6.ICMPTypeEchoRequest), 0, 0, 0, 0, 1, 0, 1)
}

// withPayload appends extra to the ICMPv6 message of frame, fixing the IPv6
// payload length and the checksum.
func withPayload(t testing.TB, frame []byte, extra ...byte) []byte {
	t.Helper()
	b := append(frame, extra...)
	ip := b[ethHeaderLen:]
	binary.BigEndian.PutUint16(ip[4:6], uint16(len(ip)-ipv6HeaderLen))
	fixChecksum(b)
	return b
}

// fixChecksum writes the right ICMPv6 checksum into an IPv6 frame, if it is
// long enough to hold one.
func fixChecksum(frame []byte) {
	if len(frame) < ethHeaderLen+ipv6HeaderLen+4 {
		return
	}
	ip := frame[ethHeaderLen:]
	plen := int(binary.BigEndian.Uint16(ip[4:6]))
	if plen < 4 || len(ip) < ipv6HeaderLen+plen {
		return
	}
	body := ip[ipv6HeaderLen : ipv6HeaderLen+plen]
	body[2], body[3] = 0, 0
	src, dst := netip.AddrFrom16([16]byte(ip[8:24])), netip.AddrFrom16([16]byte(ip[24:40]))
	binary.BigEndian.PutUint16(body[2:4], icmpv6Checksum(src, dst, body))
}

// ndpFrame is an NDP frame as decoded by decodeNDPFrame.
type ndpFrame struct {
	DstMAC, Src, Dst string
	HopLimit         int
	M                ndp.Message
}

// decodeNDPFrame decodes a frame written on the NDP socket, checking its
// ICMPv6 checksum independently of icmpv6Checksum.
func decodeNDPFrame(t *testing.T, b []byte) ndpFrame {
	t.Helper()
	var f ethernet.Frame
	if err := f.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if f.EtherType != ethernet.EtherTypeIPv6 || !cmp.Equal(f.Source, ourMAC) {
		t.Fatalf("EtherType %v from %v", f.EtherType, f.Source)
	}
	h, err := ipv6.ParseHeader(f.Payload)
	if err != nil {
		t.Fatal(err)
	}
	if h.Version != 6 || h.NextHeader != 58 {
		t.Fatalf("IPv6 header %+v", h)
	}
	body := f.Payload[ipv6.HeaderLen : ipv6.HeaderLen+h.PayloadLen]
	psh := icmp.IPv6PseudoHeader(h.Src, h.Dst)
	binary.BigEndian.PutUint32(psh[32:36], uint32(len(body)))
	psh[39] = 58
	var sum uint32
	all := append(psh, body...)
	for i := 0; i+1 < len(all); i += 2 {
		sum += uint32(all[i])<<8 | uint32(all[i+1])
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	if sum != 0xffff {
		t.Errorf("checksum does not verify: %#x", sum)
	}
	m, err := ndp.ParseMessage(body)
	if err != nil {
		t.Fatal(err)
	}
	return ndpFrame{DstMAC: f.Destination.String(), Src: h.Src.String(), Dst: h.Dst.String(), HopLimit: h.HopLimit, M: m}
}

// TestDADFrame: the probe goes to the group's MAC, from :: to the
// solicited-node group with hop limit 255, a valid checksum, an NS for the
// VIP without options.
func TestDADFrame(t *testing.T) {
	r, _, ndpc, _ := newTestResponder(t, protoNDP)
	if err := r.sendDADProbe(vip6); err != nil {
		t.Fatal(err)
	}
	want := ndpFrame{DstMAC: "33:33:ff:00:00:10", Src: "::", Dst: "ff02::1:ff00:10", HopLimit: 255, M: &ndp.NeighborSolicitation{TargetAddress: vip6}}
	if diff := cmp.Diff(want, decodeNDPFrame(t, ndpc.written()[0]), addrCmp); diff != "" {
		t.Errorf("probe (-want +got):\n%s", diff)
	}
}

func TestSolicitedNode(t *testing.T) {
	for _, s := range []string{"2001:db8:64::10", "fe80::1:2:3:4", "2001:db8::ab:cdef", "::1"} {
		ip := netip.MustParseAddr(s)
		want, err := ndp.SolicitedNodeMulticast(ip)
		if err != nil {
			t.Fatal(err)
		}
		if got := solicitedNode(ip); got != want {
			t.Errorf("solicitedNode(%s) = %s, want %s", ip, got, want)
		}
	}
}

// TestNDPFilter runs the socket's BPF program, but for its first two
// instructions (the packet type, which the VM cannot load; the real-kernel
// test covers them), on frames that must pass or not.
func TestNDPFilter(t *testing.T) {
	if _, err := bpf.Assemble(ndpFilter()); err != nil {
		t.Fatalf("assembling the whole filter: %v", err)
	}
	if _, ok := ndpFilter()[0].(bpf.LoadExtension); !ok {
		t.Fatal("the filter does not start with the packet type")
	}
	vm, err := bpf.NewVM(ndpFilter()[2:])
	if err != nil {
		t.Fatal(err)
	}
	withNextHeader := func(b []byte, nh byte) []byte { b[ethHeaderLen+6] = nh; return b }
	tests := []struct {
		name  string
		frame []byte
		pass  bool
	}{
		{name: "multicast NS", frame: multicastNS(t, vip6), pass: true},
		{name: "unicast NS", frame: unicastNS(t, vip6), pass: true},
		{name: "DAD NS", frame: frame6(t, otherMAC, netip.IPv6Unspecified(), vip6Group, nsMessage(vip6, nil)), pass: true},
		{name: "NA to all nodes", frame: frame6(t, otherMAC, vip6, allNodes, &ndp.NeighborAdvertisement{TargetAddress: vip6}), pass: true},
		{name: "unicast NA", frame: frame6(t, otherMAC, vip6, clientLL, &ndp.NeighborAdvertisement{TargetAddress: vip6}), pass: false},
		{name: "NA to all routers", frame: frame6(t, otherMAC, vip6, netip.MustParseAddr("ff02::2"), &ndp.NeighborAdvertisement{TargetAddress: vip6}), pass: false},
		{name: "NA to ff02::1 in another scope", frame: frame6(t, otherMAC, vip6, netip.MustParseAddr("ff05::1"), &ndp.NeighborAdvertisement{TargetAddress: vip6}), pass: false},
		{name: "router solicitation", frame: frame6(t, otherMAC, clientLL, netip.MustParseAddr("ff02::2"), &ndp.RouterSolicitation{}), pass: false},
		{name: "echo request", frame: echoFrame(t), pass: false},
		{name: "NS behind a hop-by-hop header", frame: withNextHeader(multicastNS(t, vip6), 0), pass: false},
		{name: "UDP", frame: withNextHeader(multicastNS(t, vip6), 17), pass: false},
		{name: "ARP", frame: append(multicastNS(t, vip6)[:12], 0x08, 0x06), pass: false},
		{name: "runt", frame: multicastNS(t, vip6)[:ethHeaderLen+ipv6HeaderLen], pass: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := vm.Run(tt.frame)
			if err != nil {
				t.Fatal(err)
			}
			if pass := n >= len(tt.frame); pass != tt.pass || n != 0 && !pass {
				t.Errorf("filter kept %d of %d bytes, want pass = %v", n, len(tt.frame), tt.pass)
			}
		})
	}
}

// FuzzHandleNDP feeds whole frames to the NDP handler of a responder that
// announces one VIP and probes another: it must never panic, and must answer
// only solicitations for the announced VIP, with one advertisement from the
// VIP to a unicast MAC or to all nodes. With fixSum the harness writes the
// right ICMPv6 checksum into the frame, so that mutations reach the parser.
func FuzzHandleNDP(f *testing.F) {
	probing := netip.MustParseAddr("2001:db8:64::12")
	f.Add(multicastNS(f, vip6), false)
	f.Add(unicastNS(f, vip6), false)
	f.Add(frame6(f, otherMAC, netip.IPv6Unspecified(), vip6Group, nsMessage(vip6, nil)), false)
	f.Add(multicastNS(f, probing), false)
	f.Add(frame6(f, otherMAC, probing, allNodes, &ndp.NeighborAdvertisement{Override: true, TargetAddress: probing,
		Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: otherMAC}}}), false)
	f.Add(frame6(f, otherMAC, clientLL, allNodes, &ndp.RouterAdvertisement{Options: []ndp.Option{ndp.NewMTU(1500)}}), false)
	f.Add(withPayload(f, multicastNS(f, vip6), 1, 0, 0, 0, 0, 0, 0, 0), true)
	f.Add([]byte{}, false)
	f.Fuzz(func(t *testing.T, frame []byte, fixSum bool) {
		r, _, ndpc, _ := newTestResponder(t, protoNDP)
		forceAnnounced(r, vip6)
		r.setDesired(set(vip6.String(), probing.String()))
		r.step(testTime) // sends the probe for ::12
		probes := len(ndpc.written())
		if fixSum {
			fixChecksum(frame)
		}
		reason := r.handleNDP(frame)
		out := ndpc.written()[probes:]
		if reason == dropNone && len(out) != 1 || reason != dropNone && len(out) != 0 {
			t.Fatalf("reason %v with %d answers", reason, len(out))
		}
		if reason != dropNone {
			return
		}
		got := decodeNDPFrame(t, out[0])
		na, ok := got.M.(*ndp.NeighborAdvertisement)
		if !ok || na.TargetAddress != vip6 || got.Src != vip6.String() {
			t.Fatalf("answered %+v", got)
		}
		if mac, _ := net.ParseMAC(got.DstMAC); !isUnicastMAC(mac) && got.DstMAC != allNodesMAC.String() {
			t.Fatalf("answered to %s", got.DstMAC)
		}
	})
}

// BenchmarkDecideNDP10k is the decision for one solicitation among 10,000
// announced VIPs.
func BenchmarkDecideNDP10k(b *testing.B) {
	r, _, _, _ := newTestResponder(b, protoNDP)
	ips := manyIPv6(10000)
	forceAnnounced(r, ips...)
	pkts := make([]*ndpPacket, 256)
	for i := range pkts {
		p, reason := parseNDPFrame(unicastNS(b, ips[i*39]))
		if reason != dropNone {
			b.Fatal(reason)
		}
		pkts[i] = &p
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if ok, reason := r.decideNDP(pkts[i%len(pkts)]); !ok {
			b.Fatal(reason)
		}
	}
}

// BenchmarkHandleNDP10k is a whole answer (parse and check the frame,
// decide, build, send to a fake socket) among 10,000 announced VIPs, for a
// multicast and a unicast solicitation.
func BenchmarkHandleNDP10k(b *testing.B) {
	for _, bc := range []struct {
		name  string
		frame func(testing.TB, netip.Addr) []byte
	}{{"multicast", multicastNS}, {"unicast", unicastNS}} {
		b.Run(bc.name, func(b *testing.B) {
			r, _, _, _ := newTestResponder(b, protoNDP)
			ips := manyIPv6(10000)
			forceAnnounced(r, ips...)
			frame := bc.frame(b, ips[5000])
			r.ndp = discardConn{}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if reason := r.handleNDP(frame); reason != dropNone {
					b.Fatal(reason)
				}
			}
		})
	}
}

func manyIPv6(n int) []netip.Addr {
	ips := make([]netip.Addr, 0, n)
	ip := netip.MustParseAddr("2001:db8:64::1:0")
	for range n {
		ips = append(ips, ip)
		ip = ip.Next()
	}
	return ips
}
