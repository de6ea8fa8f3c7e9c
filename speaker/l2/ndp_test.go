package l2

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"
)

var (
	vip6      = netip.MustParseAddr("2001:db8:64::10")
	clientLL  = netip.MustParseAddr("fe80::2")
	addrCmp   = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })
	ndpOption = cmp.Comparer(func(a, b ndp.Option) bool { return cmp.Equal(a, b) })
)

func nsMessage(target netip.Addr, slla net.HardwareAddr) *ndp.NeighborSolicitation {
	ns := &ndp.NeighborSolicitation{TargetAddress: target}
	if slla != nil {
		ns.Options = []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: slla}}
	}
	return ns
}

func nsBytes(t testing.TB, target netip.Addr, slla net.HardwareAddr) []byte {
	t.Helper()
	b, err := ndp.MarshalMessage(nsMessage(target, slla))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecideNDP(t *testing.T) {
	tests := []struct {
		name     string
		m        ndp.Message
		src      netip.Addr
		hopLimit int
		want     dropReason
	}{
		{name: "NS for announced VIP", m: nsMessage(vip6, otherMAC), src: clientLL, hopLimit: 255, want: dropNone},
		{name: "NS from a global address", m: nsMessage(vip6, otherMAC), src: netip.MustParseAddr("2001:db8:64::2"), hopLimit: 255, want: dropNone},
		{name: "DAD NS from :: for announced VIP", m: nsMessage(vip6, nil), src: netip.IPv6Unspecified(), hopLimit: 255, want: dropNone},
		{name: "DAD NS from :: with source link-layer address", m: nsMessage(vip6, otherMAC), src: netip.IPv6Unspecified(), hopLimit: 255, want: dropBadSender},
		{name: "NS from a multicast source", m: nsMessage(vip6, otherMAC), src: netip.MustParseAddr("ff02::1"), hopLimit: 255, want: dropBadSender},
		{name: "NS for another address", m: nsMessage(netip.MustParseAddr("2001:db8:64::11"), otherMAC), src: clientLL, hopLimit: 255, want: dropNotAnnounced},
		{name: "NS for VIP still probing", m: nsMessage(netip.MustParseAddr("2001:db8:64::12"), otherMAC), src: clientLL, hopLimit: 255, want: dropNotAnnounced},
		{name: "NS for a multicast target", m: nsMessage(netip.MustParseAddr("ff02::1"), otherMAC), src: clientLL, hopLimit: 255, want: dropMalformed},
		{name: "NS routed from afar", m: nsMessage(vip6, otherMAC), src: clientLL, hopLimit: 254, want: dropBadHopLimit},
		{name: "own NS", m: nsMessage(vip6, ourMAC), src: clientLL, hopLimit: 255, want: dropOwnPacket},
		{name: "NA", m: &ndp.NeighborAdvertisement{TargetAddress: vip6}, src: clientLL, hopLimit: 255, want: dropNotRequest},
		{name: "router solicitation", m: &ndp.RouterSolicitation{}, src: clientLL, hopLimit: 255, want: dropUnsupported},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _, _, _, _ := newTestResponder(t, protoNDP)
			forceAnnounced(r, vip6)
			r.setDesired(set(vip6.String(), "2001:db8:64::12"))
			reply, got := r.decideNDP(tt.m, tt.src, tt.hopLimit)
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
	tests := []struct {
		name     string
		b        []byte
		src      netip.Addr
		want     dropReason
		wantOut  []ndpWrite // through the NDP socket
		wantRaw6 []ndpFrame // as whole frames
	}{
		{
			name: "NS answered to its source, from the VIP",
			b:    nsBytes(t, vip6, otherMAC), src: clientLL.WithZone("eth0"),
			wantRaw6: []ndpFrame{{DstMAC: otherMAC.String(), Src: vip6.String(), Dst: clientLL.String(), HopLimit: 255,
				M: &ndp.NeighborAdvertisement{Solicited: true, Override: true, TargetAddress: vip6, Options: tla}}},
		},
		{
			name: "DAD NS answered to all nodes, not solicited",
			b:    nsBytes(t, vip6, nil), src: netip.IPv6Unspecified(),
			wantRaw6: []ndpFrame{{DstMAC: "33:33:00:00:00:01", Src: vip6.String(), Dst: "ff02::1", HopLimit: 255,
				M: &ndp.NeighborAdvertisement{Override: true, TargetAddress: vip6, Options: tla}}},
		},
		{
			name: "unicast NS without link-layer address answered through the NDP socket",
			b:    nsBytes(t, vip6, nil), src: clientLL,
			wantOut: []ndpWrite{{&ndp.NeighborAdvertisement{Solicited: true, Override: true, TargetAddress: vip6, Options: tla}, clientLL}},
		},
		{name: "empty", b: nil, src: clientLL, want: dropMalformed},
		{name: "truncated NS", b: nsBytes(t, vip6, otherMAC)[:10], src: clientLL, want: dropMalformed},
		{name: "echo request", b: []byte{128, 0, 0, 0, 0, 1, 0, 1}, src: clientLL, want: dropMalformed},
		{name: "bad option length", b: append(nsBytes(t, vip6, nil), 1, 0, 0, 0, 0, 0, 0, 0), src: clientLL, want: dropMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _, ndpc, raw6, _ := newTestResponder(t, protoNDP)
			forceAnnounced(r, vip6)
			if diff := cmp.Diff(tt.want, r.handleNDP(tt.b, tt.src, 255)); diff != "" {
				t.Errorf("reason (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantOut, ndpc.written(), cmp.AllowUnexported(ndpWrite{}), addrCmp); diff != "" {
				t.Errorf("sent (-want +got):\n%s", diff)
			}
			var got []ndpFrame
			for _, b := range raw6.written() {
				got = append(got, decodeNDPFrame(t, b))
			}
			if diff := cmp.Diff(tt.wantRaw6, got, addrCmp); diff != "" {
				t.Errorf("frames (-want +got):\n%s", diff)
			}
		})
	}
}

// ndpFrame is an NDP frame as decoded by decodeNDPFrame.
type ndpFrame struct {
	DstMAC, Src, Dst string
	HopLimit         int
	M                ndp.Message
}

// decodeNDPFrame decodes a frame written on the raw6 socket, checking its
// ICMPv6 checksum.
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
	r, _, _, raw6, _ := newTestResponder(t, protoNDP)
	if err := r.sendDADProbe(vip6); err != nil {
		t.Fatal(err)
	}
	want := ndpFrame{DstMAC: "33:33:ff:00:00:10", Src: "::", Dst: "ff02::1:ff00:10", HopLimit: 255, M: &ndp.NeighborSolicitation{TargetAddress: vip6}}
	if diff := cmp.Diff(want, decodeNDPFrame(t, raw6.written()[0]), addrCmp); diff != "" {
		t.Errorf("probe (-want +got):\n%s", diff)
	}
}

// FuzzHandleNDP feeds raw ICMPv6 messages to the NDP handler of a responder
// that announces one VIP and probes another: it must never panic, and must
// answer only solicitations for the announced VIP.
func FuzzHandleNDP(f *testing.F) {
	f.Add(nsBytes(f, vip6, otherMAC), false)
	f.Add(nsBytes(f, vip6, nil), true)
	f.Add(nsBytes(f, netip.MustParseAddr("2001:db8:64::12"), otherMAC), false)
	na, _ := ndp.MarshalMessage(&ndp.NeighborAdvertisement{Override: true, TargetAddress: netip.MustParseAddr("2001:db8:64::12"),
		Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: otherMAC}}})
	f.Add(na, false)
	ra, _ := ndp.MarshalMessage(&ndp.RouterAdvertisement{Options: []ndp.Option{ndp.NewMTU(1500)}})
	f.Add(ra, false)
	f.Add([]byte{}, false)
	f.Fuzz(func(t *testing.T, b []byte, fromUnspecified bool) {
		r, _, ndpc, raw6, _ := newTestResponder(t, protoNDP)
		forceAnnounced(r, vip6)
		r.setDesired(set(vip6.String(), "2001:db8:64::12"))
		r.step(testTime) // sends the probe for ::12
		probes := len(raw6.written())
		src := clientLL
		if fromUnspecified {
			src = netip.IPv6Unspecified()
		}
		reason := r.handleNDP(b, src, 255)
		var out []ndp.Message
		for _, w := range ndpc.written() {
			out = append(out, w.m)
		}
		for _, b := range raw6.written()[probes:] {
			out = append(out, decodeNDPFrame(t, b).M)
		}
		if reason == dropNone && len(out) != 1 || reason != dropNone && len(out) != 0 {
			t.Fatalf("reason %v with %d answers", reason, len(out))
		}
		if reason == dropNone {
			na, ok := out[0].(*ndp.NeighborAdvertisement)
			if !ok || na.TargetAddress != vip6 {
				t.Fatalf("answered %#v", out[0])
			}
		}
	})
}
