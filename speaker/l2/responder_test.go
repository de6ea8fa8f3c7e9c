package l2

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
)

var testTime = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// arpSent decodes the ARP packets written to c.
func arpSent(t *testing.T, c *fakeFrameConn) []string {
	t.Helper()
	var out []string
	for _, b := range c.written() {
		var f ethernet.Frame
		var p arp.Packet
		if err := f.UnmarshalBinary(b); err != nil {
			t.Fatal(err)
		}
		if err := p.UnmarshalBinary(f.Payload); err != nil {
			t.Fatal(err)
		}
		out = append(out, strings.TrimPrefix(p.Operation.String(), "Operation")+" "+p.SenderIP.String()+"->"+p.TargetIP.String()+" to "+f.Destination.String())
	}
	return out
}

// TestARPProbeOutcome drives a responder's state machine with a fake clock
// (step(now)) and fake sockets through the probe outcomes.
func TestARPProbeOutcome(t *testing.T) {
	probe := "Request 0.0.0.0->198.18.64.10 to ff:ff:ff:ff:ff:ff"
	grat := []string{
		"Request 198.18.64.10->198.18.64.10 to ff:ff:ff:ff:ff:ff",
		"Reply 198.18.64.10->198.18.64.10 to ff:ff:ff:ff:ff:ff",
	}
	tests := []struct {
		name string
		// answer, if not nil, is the frame another host sends during the probe.
		answer     func(t *testing.T) []byte
		wantEvents []string
		wantSent   []string
		wantStatus Status
		wantAnswer bool
	}{
		{
			name:       "clean probe announces and sends gratuitous ARP",
			wantEvents: []string{"announcing 198.18.64.10 eth0"},
			wantSent:   append([]string{probe}, append(append(grat, grat...), grat...)...),
			wantStatus: Status{Announced: []string{"eth0"}},
			wantAnswer: true,
		},
		{
			name: "answer from another host is a conflict",
			answer: func(t *testing.T) []byte {
				return arpFrame(t, arpPacket(t, arp.OperationReply, otherMAC, vip4, ourMAC, netip.IPv4Unspecified()))
			},
			wantEvents: []string{"conflict 198.18.64.10 eth0 02:00:00:00:00:02"},
			wantSent:   []string{probe},
			wantStatus: Status{Conflicts: []Conflict{{Interface: "eth0", MAC: otherMAC}}},
		},
		{
			name: "request from a host using the VIP is a conflict",
			answer: func(t *testing.T) []byte {
				return arpFrame(t, arpPacket(t, arp.OperationRequest, otherMAC, vip4, zeroMAC, clientIP4))
			},
			wantEvents: []string{"conflict 198.18.64.10 eth0 02:00:00:00:00:02"},
			wantSent:   []string{probe},
			wantStatus: Status{Conflicts: []Conflict{{Interface: "eth0", MAC: otherMAC}}},
		},
		{
			name: "answer from a peer is a handover",
			answer: func(t *testing.T) []byte {
				return arpFrame(t, arpPacket(t, arp.OperationReply, peerMAC, vip4, ourMAC, netip.IPv4Unspecified()))
			},
			wantEvents: []string{"announcing 198.18.64.10 eth0"},
			wantSent:   append([]string{probe}, append(append(grat, grat...), grat...)...),
			wantStatus: Status{Announced: []string{"eth0"}},
			wantAnswer: true,
		},
		{
			name: "our own packets are not a conflict",
			answer: func(t *testing.T) []byte {
				return arpFrame(t, arpPacket(t, arp.OperationReply, ourMAC, vip4, otherMAC, clientIP4))
			},
			wantEvents: []string{"announcing 198.18.64.10 eth0"},
			wantSent:   append([]string{probe}, append(append(grat, grat...), grat...)...),
			wantStatus: Status{Announced: []string{"eth0"}},
			wantAnswer: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, arpc, _, ev := newTestResponder(t, protoARP)
			r.setDesired(set("198.18.64.10"))
			now := testTime
			next := r.step(now)
			if diff := cmp.Diff(now.Add(testProbeTimeout), next); diff != "" {
				t.Errorf("next step (-want +got):\n%s", diff)
			}
			if tt.answer != nil {
				r.handleARP(tt.answer(t))
			}
			// Not answered while probing.
			req := arpFrame(t, arpPacket(t, arp.OperationRequest, otherMAC, clientIP4, zeroMAC, vip4))
			if got := r.handleARP(req); got != dropNotAnnounced {
				t.Errorf("while probing: %v, want %v", got, dropNotAnnounced)
			}
			for range 5 {
				if next = r.step(next); next.IsZero() || next.After(now.Add(time.Second)) {
					break
				}
			}
			if diff := cmp.Diff(tt.wantEvents, ev.take()); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantSent, arpSent(t, arpc)); diff != "" {
				t.Errorf("sent (-want +got):\n%s", diff)
			}
			st := map[netip.Addr]Status{}
			r.snapshot(st)
			if diff := cmp.Diff(map[netip.Addr]Status{vip4: tt.wantStatus}, st, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("status (-want +got):\n%s", diff)
			}
			if got := r.handleARP(req) == dropNone; got != tt.wantAnswer {
				t.Errorf("answered after probe = %v, want %v", got, tt.wantAnswer)
			}
		})
	}
}

// TestConflictReprobe: a VIP in conflict is probed again every reprobe
// interval, reported once per MAC, and announced once the other host left.
func TestConflictReprobe(t *testing.T) {
	r, arpc, _, ev := newTestResponder(t, protoARP)
	r.setDesired(set("198.18.64.10"))
	conflicting := arpFrame(t, arpPacket(t, arp.OperationReply, otherMAC, vip4, ourMAC, netip.IPv4Unspecified()))

	now := testTime
	r.step(now)
	r.handleARP(conflicting)
	now = now.Add(testProbeTimeout)
	next := r.step(now)
	if diff := cmp.Diff(now.Add(testReprobe), next); diff != "" {
		t.Errorf("reprobe time (-want +got):\n%s", diff)
	}
	// Second probe, same host: no new event.
	now = next
	r.step(now)
	r.handleARP(conflicting)
	now = now.Add(testProbeTimeout)
	r.step(now)
	// Third probe: the host is gone.
	now = now.Add(testReprobe)
	r.step(now)
	now = now.Add(testProbeTimeout)
	r.step(now)
	want := []string{
		"conflict 198.18.64.10 eth0 02:00:00:00:00:02",
		"announcing 198.18.64.10 eth0",
	}
	if diff := cmp.Diff(want, ev.take()); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	if got, want := len(arpSent(t, arpc)), 3+2; got != want { // 3 probes, then the first gratuitous pair
		t.Errorf("sent %d packets, want %d", got, want)
	}
}

// TestProbeSendFailure: a probe that cannot be sent is sent again; the VIP is
// never announced without one.
func TestProbeSendFailure(t *testing.T) {
	r, arpc, _, ev := newTestResponder(t, protoARP)
	arpc.writeErr = net.ErrClosed
	r.setDesired(set("198.18.64.10"))
	now := testTime
	for range 3 {
		now = r.step(now)
	}
	if got := ev.take(); len(got) != 0 {
		t.Fatalf("events without a probe sent: %v", got)
	}
	arpc.mu.Lock()
	arpc.writeErr = nil
	arpc.mu.Unlock()
	now = r.step(now)
	r.step(now)
	if diff := cmp.Diff([]string{"announcing 198.18.64.10 eth0"}, ev.take()); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

// TestWithdraw: a VIP no longer desired is not answered at once, and
// Withdrawn is told for announced VIPs only.
func TestWithdraw(t *testing.T) {
	r, _, ndpc, ev := newTestResponder(t, protoNDP)
	r.setDesired(set("2001:db8:64::10", "2001:db8:64:1::10", "2001:db8:64::20"))
	now := testTime
	r.step(now)
	r.step(now.Add(testProbeTimeout))
	ev.take()
	vip := netip.MustParseAddr("2001:db8:64::10")
	if got := r.handleNDP(unicastNS(t, vip)); got != dropNone {
		t.Errorf("announced VIP: %v, want %v", got, dropNone)
	}
	r.setDesired(set("2001:db8:64:1::10"))
	want := []string{"withdrawn 2001:db8:64::10 eth0", "withdrawn 2001:db8:64::20 eth0"}
	if diff := cmp.Diff(want, ev.take()); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	sent := len(ndpc.written())
	for _, frame := range [][]byte{unicastNS(t, vip), multicastNS(t, vip)} {
		if got := r.handleNDP(frame); got != dropNotAnnounced {
			t.Errorf("withdrawn VIP: %v, want %v", got, dropNotAnnounced)
		}
	}
	if n := len(ndpc.written()) - sent; n != 0 {
		t.Errorf("sent %d frames for a withdrawn VIP", n)
	}
	r.setDesired(nil)
	if diff := cmp.Diff([]string{"withdrawn 2001:db8:64:1::10 eth0"}, ev.take()); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

// TestNDPProbeOutcome: the DAD-style probe, a conflict seen in an NA, and
// the unsolicited NAs after a clean probe.
func TestNDPProbeOutcome(t *testing.T) {
	vip := netip.MustParseAddr("2001:db8:64::10")
	na := func(mac net.HardwareAddr) []byte {
		m := &ndp.NeighborAdvertisement{Override: true, TargetAddress: vip}
		if mac != nil {
			m.Options = []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: mac}}
		}
		return frame6(t, otherMAC, vip, allNodes, m) // a host holding vip answers the DAD probe
	}
	tests := []struct {
		name       string
		answer     []byte
		wantEvents []string
		wantNAs    int
	}{
		{name: "clean", wantEvents: []string{"announcing 2001:db8:64::10 eth0"}, wantNAs: 3},
		{name: "NA from another host", answer: na(otherMAC), wantEvents: []string{"conflict 2001:db8:64::10 eth0 02:00:00:00:00:02"}},
		{name: "NA without link-layer address", answer: na(nil), wantEvents: []string{"conflict 2001:db8:64::10 eth0 "}},
		{name: "NA from a peer", answer: na(peerMAC), wantEvents: []string{"announcing 2001:db8:64::10 eth0"}, wantNAs: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _, ndpc, ev := newTestResponder(t, protoNDP)
			r.setDesired(set(vip.String()))
			next := r.step(testTime)
			if len(ndpc.written()) != 1 {
				t.Fatalf("%d probes sent, want 1", len(ndpc.written()))
			}
			if tt.answer != nil {
				if got := r.handleNDP(tt.answer); got != dropNotRequest {
					t.Errorf("NA: %v, want %v", got, dropNotRequest)
				}
			}
			for range 5 {
				if next = r.step(next); next.IsZero() || next.After(testTime.Add(time.Second)) {
					break
				}
			}
			if diff := cmp.Diff(tt.wantEvents, ev.take()); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
			var nas int
			for _, b := range ndpc.written()[1:] {
				f := decodeNDPFrame(t, b)
				want := ndpFrame{DstMAC: "33:33:00:00:00:01", Src: vip.String(), Dst: "ff02::1", HopLimit: 255,
					M: &ndp.NeighborAdvertisement{Override: true, TargetAddress: vip, Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: ourMAC}}}}
				if diff := cmp.Diff(want, f, addrCmp); diff != "" {
					t.Errorf("unsolicited NA (-want +got):\n%s", diff)
				}
				nas++
			}
			if nas != tt.wantNAs {
				t.Errorf("sent %d unsolicited NAs, want %d", nas, tt.wantNAs)
			}
		})
	}
}

// TestHandingOverIgnoresProbes: while this node hands its VIPs over, the new owner's conflict
// probe (ARP from 0.0.0.0, DAD NS from ::) gets no answer, so the new owner finds the VIP free
// and announces it; clients' ordinary requests are still answered until the handover ends.
func TestHandingOverIgnoresProbes(t *testing.T) {
	nsFrom := func(src netip.Addr) *ndpPacket {
		return &ndpPacket{srcMAC: otherMAC, src: src, dst: solicitedNode(vip6), hopLimit: 255, m: nsMessage(vip6, nil)}
	}
	tests := []struct {
		name        string
		handingOver bool
		decide      func(r *responder) (bool, dropReason)
		want        dropReason
	}{
		{name: "ARP probe", decide: func(r *responder) (bool, dropReason) {
			return r.decideARP(arpPacket(t, arp.OperationRequest, otherMAC, netip.IPv4Unspecified(), zeroMAC, vip4))
		}, want: dropNone},
		{name: "ARP probe while handing over", handingOver: true, decide: func(r *responder) (bool, dropReason) {
			return r.decideARP(arpPacket(t, arp.OperationRequest, otherMAC, netip.IPv4Unspecified(), zeroMAC, vip4))
		}, want: dropHandingOver},
		{name: "ARP request while handing over", handingOver: true, decide: func(r *responder) (bool, dropReason) {
			return r.decideARP(arpPacket(t, arp.OperationRequest, otherMAC, clientIP4, zeroMAC, vip4))
		}, want: dropNone},
		{name: "DAD NS", decide: func(r *responder) (bool, dropReason) {
			return r.decideNDP(nsFrom(netip.IPv6Unspecified()))
		}, want: dropNone},
		{name: "DAD NS while handing over", handingOver: true, decide: func(r *responder) (bool, dropReason) {
			return r.decideNDP(nsFrom(netip.IPv6Unspecified()))
		}, want: dropHandingOver},
		{name: "NS while handing over", handingOver: true, decide: func(r *responder) (bool, dropReason) {
			return r.decideNDP(nsFrom(clientLL))
		}, want: dropNone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _, _, _ := newTestResponder(t, protoARP)
			r.cfg.handingOver = func() bool { return tt.handingOver }
			forceAnnounced(r, vip4, vip6)
			reply, got := tt.decide(r)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("reason (-want +got):\n%s", diff)
			}
			if reply != (tt.want == dropNone) {
				t.Errorf("reply = %v with reason %v", reply, got)
			}
		})
	}
}

// TestAdvance: the state machine of one VIP, without I/O.
func TestAdvance(t *testing.T) {
	now := time.Unix(1000, 0)
	cfg := &responderConfig{probeTimeout: testProbeTimeout, reprobe: testReprobe, gratuitous: 3, gratInterval: testGratInterval}
	tests := []struct {
		name      string
		state     vipState
		want      vipAction
		wantState vipState
	}{
		{
			name:      "probe due: sent",
			state:     vipState{phase: phaseProbing},
			want:      vipAction{probe: true, next: now.Add(testProbeTimeout)},
			wantState: vipState{phase: phaseProbing, probeSent: true, due: now.Add(testProbeTimeout)},
		},
		{
			name:      "probe in flight: wait",
			state:     vipState{phase: phaseProbing, probeSent: true, due: now.Add(time.Millisecond)},
			want:      vipAction{next: now.Add(time.Millisecond)},
			wantState: vipState{phase: phaseProbing, probeSent: true, due: now.Add(time.Millisecond)},
		},
		{
			name:      "probe unanswered: announce, first gratuitous",
			state:     vipState{phase: phaseProbing, probeSent: true, due: now},
			want:      vipAction{announce: true, grat: true, next: now.Add(testGratInterval)},
			wantState: vipState{phase: phaseAnnounced, due: now, gratLeft: 2, gratDue: now.Add(testGratInterval)},
		},
		{
			name:      "probe answered: conflict told",
			state:     vipState{phase: phaseProbing, probeSent: true, due: now, seen: true, seenMAC: otherMAC},
			want:      vipAction{conflict: true, mac: otherMAC, next: now.Add(testReprobe)},
			wantState: vipState{phase: phaseConflict, due: now.Add(testReprobe), seen: true, seenMAC: otherMAC, conflictMAC: otherMAC},
		},
		{
			name:      "same conflict again: not told again",
			state:     vipState{phase: phaseProbing, probeSent: true, due: now, seen: true, seenMAC: otherMAC, conflictMAC: otherMAC},
			want:      vipAction{mac: otherMAC, next: now.Add(testReprobe)},
			wantState: vipState{phase: phaseConflict, due: now.Add(testReprobe), seen: true, seenMAC: otherMAC, conflictMAC: otherMAC},
		},
		{
			name:      "conflict due: probed again",
			state:     vipState{phase: phaseConflict, due: now, conflictMAC: otherMAC},
			want:      vipAction{probe: true, next: now.Add(testProbeTimeout)},
			wantState: vipState{phase: phaseProbing, probeSent: true, due: now.Add(testProbeTimeout), conflictMAC: otherMAC},
		},
		{
			name:      "announced, gratuitous done: nothing due",
			state:     vipState{phase: phaseAnnounced},
			wantState: vipState{phase: phaseAnnounced},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.state
			got := s.advance(now, cfg)
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(vipAction{})); diff != "" {
				t.Errorf("action (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantState, s, cmp.AllowUnexported(vipState{})); diff != "" {
				t.Errorf("state (-want +got):\n%s", diff)
			}
		})
	}
}

// TestHandingOverStopsOnceTakenOver: while this node hands over, it answers a
// VIP's clients only until another host announces the VIP (its gratuitous ARP
// or unsolicited NA); two responders would make clients flip between them.
func TestHandingOverStopsOnceTakenOver(t *testing.T) {
	request4 := func(r *responder) (bool, dropReason) {
		return r.decideARP(arpPacket(t, arp.OperationRequest, otherMAC, clientIP4, zeroMAC, vip4))
	}
	request6 := func(r *responder) (bool, dropReason) {
		return r.decideNDP(&ndpPacket{srcMAC: otherMAC, src: clientLL, dst: solicitedNode(vip6), hopLimit: 255, m: nsMessage(vip6, nil)})
	}
	tests := []struct {
		name        string
		handingOver bool
		vip         netip.Addr
		request     func(r *responder) (bool, dropReason)
		want        dropReason
	}{
		{name: "IPv4 announced by another host while handing over", handingOver: true, vip: vip4, request: request4, want: dropNotAnnounced},
		{name: "IPv6 announced by another host while handing over", handingOver: true, vip: vip6, request: request6, want: dropNotAnnounced},
		{name: "IPv4 announced by another host, not handing over", vip: vip4, request: request4, want: dropNone},
		{name: "IPv6 announced by another host, not handing over", vip: vip6, request: request6, want: dropNone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _, _, _ := newTestResponder(t, protoARP)
			r.cfg.handingOver = func() bool { return tt.handingOver }
			forceAnnounced(r, vip4, vip6)
			r.observe(tt.vip, otherMAC)
			reply, got := tt.request(r)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("reason (-want +got):\n%s", diff)
			}
			if reply != (tt.want == dropNone) {
				t.Errorf("reply = %v with reason %v", reply, got)
			}
		})
	}
}
