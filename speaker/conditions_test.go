package speaker

import (
	"net"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestConditionsFor(t *testing.T) {
	v4, v6 := netip.MustParseAddr("198.18.0.200"), netip.MustParseAddr("2001:db8:18::200")
	svc := svcWith("web", false, "198.18.0.200", "2001:db8:18::200")
	svc.Generation = 3
	mac, _ := net.ParseMAC("02:00:00:00:00:99")
	tests := []struct {
		name        string
		coordinator bool
		current     map[netip.Addr]*Assignment
		announced   map[netip.Addr]announceState
		want        []metav1.Condition
	}{{
		name:      "owner announcing both families",
		current:   map[netip.Addr]*Assignment{v4: {IP: v4, Owner: "node-1"}, v6: {IP: v6, Owner: "node-1"}},
		announced: map[netip.Addr]announceState{v4: {iface: "eth0"}, v6: {iface: "eth1"}},
		want: []metav1.Condition{
			{Type: ConditionAnnouncedIPv4, Status: metav1.ConditionTrue, Reason: ReasonAnnounced, ObservedGeneration: 3, Message: "198.18.0.200 is announced by node node-1 on eth0"},
			{Type: ConditionAnnouncedIPv6, Status: metav1.ConditionTrue, Reason: ReasonAnnounced, ObservedGeneration: 3, Message: "2001:db8:18::200 is announced by node node-1 on eth1"},
		},
	}, {
		name:      "owner still probing: no condition yet; the other family is another node's",
		current:   map[netip.Addr]*Assignment{v4: {IP: v4, Owner: "node-1"}, v6: {IP: v6, Owner: "node-2"}},
		announced: map[netip.Addr]announceState{},
	}, {
		name:      "conflict",
		current:   map[netip.Addr]*Assignment{v4: {IP: v4, Owner: "node-1"}},
		announced: map[netip.Addr]announceState{v4: {iface: "eth0", conflict: mac}},
		want: []metav1.Condition{{Type: ConditionAnnouncedIPv4, Status: metav1.ConditionFalse, Reason: ReasonIPConflict, ObservedGeneration: 3,
			Message: "198.18.0.200 is already in use on the LAN by 02:00:00:00:00:99; node node-1 does not announce it"}},
	}, {
		name:        "nobody may announce: the coordinator says why",
		coordinator: true,
		current:     map[netip.Addr]*Assignment{v4: {IP: v4, Reason: "no live speaker"}},
		want: []metav1.Condition{{Type: ConditionAnnouncedIPv4, Status: metav1.ConditionFalse, Reason: ReasonNoEligibleNode, ObservedGeneration: 3,
			Message: "198.18.0.200 is not announced: no live speaker"}},
	}, {
		name:    "nobody may announce: the others stay silent",
		current: map[netip.Addr]*Assignment{v4: {IP: v4, Reason: "no live speaker"}},
	}, {
		name:      "an IP not assigned (outside the pools) gets nothing",
		current:   map[netip.Addr]*Assignment{},
		announced: map[netip.Addr]announceState{v4: {iface: "eth0"}},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := conditionsFor("node-1", tt.coordinator, svc, tt.current, tt.announced)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("conditions (-want +got):\n%s", diff)
			}
		})
	}
}
