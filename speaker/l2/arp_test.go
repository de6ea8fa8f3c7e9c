package l2

import (
	"net"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
)

var (
	vip4      = netip.MustParseAddr("198.18.64.10")
	clientIP4 = netip.MustParseAddr("198.18.64.2")
)

func arpPacket(t testing.TB, op arp.Operation, srcMAC net.HardwareAddr, src netip.Addr, dstMAC net.HardwareAddr, dst netip.Addr) *arp.Packet {
	t.Helper()
	p, err := arp.NewPacket(op, srcMAC, src, dstMAC, dst)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func arpFrame(t testing.TB, p *arp.Packet) []byte {
	t.Helper()
	pb, err := p.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	f := ethernet.Frame{Destination: ethernet.Broadcast, Source: p.SenderHardwareAddr, EtherType: ethernet.EtherTypeARP, Payload: pb}
	fb, err := f.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return fb
}

func TestDecideARP(t *testing.T) {
	request := func() *arp.Packet {
		return arpPacket(t, arp.OperationRequest, otherMAC, clientIP4, zeroMAC, vip4)
	}
	tests := []struct {
		name   string
		packet func() *arp.Packet
		want   dropReason
	}{
		{name: "request for announced VIP", packet: request, want: dropNone},
		{name: "probe from 0.0.0.0 for announced VIP", packet: func() *arp.Packet {
			return arpPacket(t, arp.OperationRequest, otherMAC, netip.IPv4Unspecified(), zeroMAC, vip4)
		}, want: dropNone},
		{name: "request for another address", packet: func() *arp.Packet {
			return arpPacket(t, arp.OperationRequest, otherMAC, clientIP4, zeroMAC, netip.MustParseAddr("198.18.64.11"))
		}, want: dropNotAnnounced},
		{name: "request for VIP still probing", packet: func() *arp.Packet {
			return arpPacket(t, arp.OperationRequest, otherMAC, clientIP4, zeroMAC, netip.MustParseAddr("198.18.64.12"))
		}, want: dropNotAnnounced},
		{name: "reply", packet: func() *arp.Packet {
			return arpPacket(t, arp.OperationReply, otherMAC, vip4, ourMAC, clientIP4)
		}, want: dropNotRequest},
		{name: "own request", packet: func() *arp.Packet {
			return arpPacket(t, arp.OperationRequest, ourMAC, clientIP4, zeroMAC, vip4)
		}, want: dropOwnPacket},
		{name: "gratuitous from another host", packet: func() *arp.Packet {
			return arpPacket(t, arp.OperationRequest, otherMAC, vip4, zeroMAC, vip4)
		}, want: dropGratuitous},
		{name: "multicast sender MAC", packet: func() *arp.Packet {
			p := request()
			p.SenderHardwareAddr = net.HardwareAddr{0x01, 0, 0x5e, 0, 0, 1}
			return p
		}, want: dropBadSender},
		{name: "zero sender MAC", packet: func() *arp.Packet {
			p := request()
			p.SenderHardwareAddr = zeroMAC
			return p
		}, want: dropBadSender},
		{name: "broadcast sender IP", packet: func() *arp.Packet {
			p := request()
			p.SenderIP = limitedBroadcast
			return p
		}, want: dropBadSender},
		{name: "not Ethernet", packet: func() *arp.Packet {
			p := request()
			p.HardwareType = 6
			return p
		}, want: dropUnsupported},
		{name: "not IPv4", packet: func() *arp.Packet {
			p := request()
			p.ProtocolType = 0x86dd
			return p
		}, want: dropUnsupported},
		{name: "odd hardware address length", packet: func() *arp.Packet {
			p := request()
			p.HardwareAddrLength = 8
			p.SenderHardwareAddr = append(p.SenderHardwareAddr, 0, 0)
			return p
		}, want: dropUnsupported},
		{name: "IPv6 addresses in ARP", packet: func() *arp.Packet {
			p := request()
			p.IPLength = 16
			p.TargetIP = netip.MustParseAddr("2001:db8:64::10")
			return p
		}, want: dropUnsupported},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _, _, _ := newTestResponder(t, protoARP)
			forceAnnounced(r, vip4)
			r.setDesired(set("198.18.64.10", "198.18.64.12")) // .12 is new: probing
			reply, got := r.decideARP(tt.packet())
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("reason (-want +got):\n%s", diff)
			}
			if reply != (tt.want == dropNone) {
				t.Errorf("reply = %v with reason %v", reply, got)
			}
		})
	}
}

func TestHandleARPReplies(t *testing.T) {
	r, arpc, _, _ := newTestResponder(t, protoARP)
	forceAnnounced(r, vip4)
	tests := []struct {
		name  string
		frame []byte
		want  dropReason
		// wantReply is the reply expected on the wire, if any.
		wantReply *arp.Packet
	}{
		{
			name:      "request is answered to the requester",
			frame:     arpFrame(t, arpPacket(t, arp.OperationRequest, otherMAC, clientIP4, zeroMAC, vip4)),
			wantReply: arpPacket(t, arp.OperationReply, ourMAC, vip4, otherMAC, clientIP4),
		},
		{
			name:      "probe is answered to 0.0.0.0",
			frame:     arpFrame(t, arpPacket(t, arp.OperationRequest, otherMAC, netip.IPv4Unspecified(), zeroMAC, vip4)),
			wantReply: arpPacket(t, arp.OperationReply, ourMAC, vip4, otherMAC, netip.IPv4Unspecified()),
		},
		{name: "empty", frame: nil, want: dropMalformed},
		{name: "short Ethernet", frame: []byte{1, 2, 3}, want: dropMalformed},
		{name: "truncated ARP", frame: arpFrame(t, arpPacket(t, arp.OperationRequest, otherMAC, clientIP4, zeroMAC, vip4))[:20], want: dropMalformed},
		{name: "IPv4 frame", frame: func() []byte {
			f := ethernet.Frame{Destination: ourMAC, Source: otherMAC, EtherType: ethernet.EtherTypeIPv4, Payload: make([]byte, 46)}
			b, _ := f.MarshalBinary()
			return b
		}(), want: dropUnsupported},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(arpc.written())
			if diff := cmp.Diff(tt.want, r.handleARP(tt.frame)); diff != "" {
				t.Errorf("reason (-want +got):\n%s", diff)
			}
			sent := arpc.written()[before:]
			if tt.wantReply == nil {
				if len(sent) != 0 {
					t.Errorf("sent %d frames, want none", len(sent))
				}
				return
			}
			if len(sent) != 1 {
				t.Fatalf("sent %d frames, want 1", len(sent))
			}
			var f ethernet.Frame
			if err := f.UnmarshalBinary(sent[0]); err != nil {
				t.Fatal(err)
			}
			var got arp.Packet
			if err := got.UnmarshalBinary(f.Payload); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.wantReply, &got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("reply (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantReply.TargetHardwareAddr, f.Destination); diff != "" {
				t.Errorf("Ethernet destination (-want +got):\n%s", diff)
			}
		})
	}
}

// FuzzHandleARP feeds raw frames to the ARP handler of a responder that
// announces one VIP and probes another: it must never panic, and must answer
// only requests for the announced VIP.
func FuzzHandleARP(f *testing.F) {
	seed := func(p *arp.Packet) { f.Add(arpFrame(f, p)) }
	seed(arpPacket(f, arp.OperationRequest, otherMAC, clientIP4, zeroMAC, vip4))
	seed(arpPacket(f, arp.OperationRequest, otherMAC, netip.IPv4Unspecified(), zeroMAC, vip4))
	seed(arpPacket(f, arp.OperationReply, otherMAC, netip.MustParseAddr("198.18.64.12"), ourMAC, clientIP4))
	seed(arpPacket(f, arp.OperationRequest, otherMAC, vip4, zeroMAC, vip4))
	f.Add([]byte{})
	f.Add(make([]byte, 60))
	f.Fuzz(func(t *testing.T, frame []byte) {
		r, arpc, _, _ := newTestResponder(t, protoARP)
		forceAnnounced(r, vip4)
		r.setDesired(set("198.18.64.10", "198.18.64.12"))
		r.step(testTime)
		reason := r.handleARP(frame)
		answers := len(arpc.written()) - 1 // the probe for .12
		if reason == dropNone && answers != 1 || reason != dropNone && answers != 0 {
			t.Fatalf("reason %v with %d answers", reason, answers)
		}
		if reason == dropNone {
			var fr ethernet.Frame
			var p arp.Packet
			if err := fr.UnmarshalBinary(arpc.written()[1]); err != nil {
				t.Fatal(err)
			}
			if err := p.UnmarshalBinary(fr.Payload); err != nil {
				t.Fatal(err)
			}
			if p.SenderIP != vip4 || p.Operation != arp.OperationReply {
				t.Fatalf("answered %v for %v", p.Operation, p.SenderIP)
			}
		}
	})
}

// BenchmarkDecideARP10k is the decision for one request among 10,000
// announced VIPs (the budget is 1 ms for a whole answer).
func BenchmarkDecideARP10k(b *testing.B) {
	r, _, _, _ := newTestResponder(b, protoARP)
	var ips []netip.Addr
	ip := netip.MustParseAddr("198.18.100.0")
	for range 10000 {
		ips = append(ips, ip)
		ip = ip.Next()
	}
	forceAnnounced(r, ips...)
	reqs := make([]*arp.Packet, 256)
	for i := range reqs {
		reqs[i] = arpPacket(b, arp.OperationRequest, otherMAC, clientIP4, zeroMAC, ips[i*39])
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if ok, reason := r.decideARP(reqs[i%len(reqs)]); !ok {
			b.Fatal(reason)
		}
	}
}

// BenchmarkHandleARP10k is a whole answer (parse, decide, build, send to a
// fake socket) among 10,000 announced VIPs.
func BenchmarkHandleARP10k(b *testing.B) {
	r, _, _, _ := newTestResponder(b, protoARP)
	ip := netip.MustParseAddr("198.18.100.0")
	var ips []netip.Addr
	for range 10000 {
		ips = append(ips, ip)
		ip = ip.Next()
	}
	forceAnnounced(r, ips...)
	frame := arpFrame(b, arpPacket(b, arp.OperationRequest, otherMAC, clientIP4, zeroMAC, ips[5000]))
	r.arp = discardConn{}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if reason := r.handleARP(frame); reason != dropNone {
			b.Fatal(reason)
		}
	}
}

type discardConn struct{}

func (discardConn) ReadFrom([]byte) (int, net.Addr, error)    { return 0, nil, net.ErrClosed }
func (discardConn) WriteTo(b []byte, _ net.Addr) (int, error) { return len(b), nil }
func (discardConn) Close() error                              { return nil }
