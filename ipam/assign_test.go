package ipam_test

import (
	"testing"

	"github.com/onprem-lb/onprem-lb/ipam"
)

func TestAssign(t *testing.T) {
	manual := ipam.Pool{Name: "manual", Addresses: ranges("198.18.1.0/30")}
	both := []ipam.Family{ipam.IPv4, ipam.IPv6}
	runScenarios(t, []scenario{
		{
			name:  "rebuilding from Service status",
			pools: []ipam.Pool{lan, manual},
			steps: []step{
				{name: "a had .2", op: assign, req: ipam.Request{Service: key("a")}, ips: []string{"198.18.0.2"}, want: []string{"198.18.0.2"}},
				{name: "b had .2 too: refused", op: assign, req: ipam.Request{Service: key("b")}, ips: []string{"198.18.0.2"}, wantErr: ipam.ErrIPInUse},
				{name: "b is allocated anew", req: ipam.Request{Service: key("b")}, want: []string{"198.18.0.0"}},
				{name: "a allocates: keeps .2", req: ipam.Request{Service: key("a")}, want: []string{"198.18.0.2"}},
				{name: "c had an address outside every pool", op: assign, req: ipam.Request{Service: key("c")}, ips: []string{"203.0.113.1"}, wantErr: ipam.ErrIPNotInPool},
				{name: "c had an IP of manual and still asks for it", op: assign, req: ipam.Request{Service: key("c"), IPs: addrs("198.18.1.1")}, ips: []string{"198.18.1.1"}, want: []string{"198.18.1.1"}},
				{name: "d's status differs from its requested IP", op: assign, req: ipam.Request{Service: key("d"), IPs: addrs("198.18.0.3")}, ips: []string{"198.18.0.1"}, wantErr: ipam.ErrIPNotRequested},
				{name: "d's status is IPv6, it wants IPv4", op: assign, req: ipam.Request{Service: key("d")}, ips: []string{"2001:db8:18::1"}, wantErr: ipam.ErrWrongFamily},
				{name: "nothing to assign", op: assign, req: ipam.Request{Service: key("d")}, wantErr: ipam.ErrInvalidRequest},
				{name: "two IPv4 to assign", op: assign, req: ipam.Request{Service: key("d")}, ips: []string{"198.18.0.1", "198.18.0.3"}, wantErr: ipam.ErrInvalidRequest},
				{name: "a zoned IP to assign", op: assign, req: ipam.Request{Service: key("d")}, ips: []string{"fe80::1%eth0"}, wantErr: ipam.ErrInvalidRequest},
				{name: "d dual-stack had IPv6 only", op: assign, req: ipam.Request{Service: key("d"), Policy: ipam.RequireDualStack, Families: both}, ips: []string{"2001:db8:18::1"}, want: []string{"2001:db8:18::1"}},
				{name: "d allocates: keeps IPv6, adds IPv4", req: ipam.Request{Service: key("d"), Policy: ipam.RequireDualStack, Families: both}, want: []string{"198.18.0.1", "2001:db8:18::1"}},
				{name: "assign is given the family order", op: assign, req: ipam.Request{Service: key("d"), Policy: ipam.RequireDualStack, Families: both}, ips: []string{"2001:db8:18::1", "198.18.0.1"}, want: []string{"198.18.0.1", "2001:db8:18::1"}},
				{name: "assign replaces what the Service held", op: assign, req: ipam.Request{Service: key("d")}, ips: []string{"198.18.0.3"}, want: []string{"198.18.0.3"}},
				{name: "its old addresses are free", req: ipam.Request{Service: key("e"), Policy: ipam.RequireDualStack}, want: []string{"198.18.0.1", "2001:db8:18::"}},
			},
		},
		{
			name:  "rebuilding shared addresses",
			pools: []ipam.Pool{lan},
			steps: []step{
				{name: "a", op: assign, req: ipam.Request{Service: key("a"), SharingKey: "k", Ports: tcp(80)}, ips: []string{"198.18.0.3"}, want: []string{"198.18.0.3"}},
				{name: "b shares", op: assign, req: ipam.Request{Service: key("b"), SharingKey: "k", Ports: tcp(443)}, ips: []string{"198.18.0.3"}, want: []string{"198.18.0.3"}},
				{name: "c shares by allocation", req: ipam.Request{Service: key("c"), SharingKey: "k", Ports: tcp(8080)}, want: []string{"198.18.0.3"}},
				{name: "d collides", op: assign, req: ipam.Request{Service: key("d"), SharingKey: "k", Ports: tcp(443)}, ips: []string{"198.18.0.3"}, wantErr: ipam.ErrPortCollision},
			},
		},
	})
}

func TestReconfigure(t *testing.T) {
	lanMore := ipam.Pool{Name: "lan", AutoAssign: true, Addresses: ranges("198.18.0.0/29", "2001:db8:18::/126")}
	lanExcl := ipam.Pool{Name: "lan", AutoAssign: true, Addresses: ranges("198.18.0.0/30", "2001:db8:18::/126"), Exclude: ranges("198.18.0.1")}
	lanTeam := ipam.Pool{Name: "lan", AutoAssign: true, Namespaces: []string{"team"}, Addresses: ranges("198.18.0.0/30", "2001:db8:18::/126")}
	lanManual := ipam.Pool{Name: "lan", Addresses: ranges("198.18.0.0/30", "2001:db8:18::/126")}
	lanV4 := ipam.Pool{Name: "lan", AutoAssign: true, Addresses: ranges("198.18.0.0/30")}
	lanSel := ipam.Pool{Name: "lan", AutoAssign: true, Addresses: ranges("198.18.0.0/30", "2001:db8:18::/126"),
		ServiceSelector: ipam.SelectorFunc(func(l map[string]string) bool { return l["tier"] == "front" })}
	renamed := lan
	renamed.Name = "lan2"
	dmz := ipam.Pool{Name: "dmz", AutoAssign: true, Priority: 1, Addresses: ranges("198.18.1.0/30")}
	bad := ipam.Pool{Name: "bad", Addresses: ranges("198.18.0.2/31")}

	setup := []step{
		{name: "a", req: ipam.Request{Service: key("a")}, want: []string{"198.18.0.0"}},
		{name: "b dual-stack", req: ipam.Request{Service: key("b"), Policy: ipam.RequireDualStack, Labels: map[string]string{"tier": "front"}}, want: []string{"198.18.0.1", "2001:db8:18::"}},
		{name: "c asks for lan", req: ipam.Request{Service: nskey("team", "c"), Pool: "lan"}, want: []string{"198.18.0.2"}},
		{name: "d asks for .3", req: ipam.Request{Service: key("d"), IPs: addrs("198.18.0.3")}, want: []string{"198.18.0.3"}},
	}
	with := func(steps ...step) []step { return append(append([]step(nil), setup...), steps...) }
	runScenarios(t, []scenario{
		{
			name:  "a bigger pool keeps everyone",
			pools: []ipam.Pool{lan},
			steps: with(
				step{name: "grow", op: reconfigure, pools: []ipam.Pool{lanMore}},
				step{name: "e gets a new address", req: ipam.Request{Service: key("e")}, want: []string{"198.18.0.4"}},
				step{name: "a keeps", req: ipam.Request{Service: key("a")}, want: []string{"198.18.0.0"}},
			),
		},
		{
			name:  "an invalid config changes nothing",
			pools: []ipam.Pool{lan},
			steps: with(
				step{name: "overlap", op: reconfigure, pools: []ipam.Pool{lanMore, bad}, wantErr: ipam.ErrInvalidPool},
				step{name: "the old pools still apply", req: ipam.Request{Service: key("e")}, wantErr: ipam.ErrPoolExhausted},
			),
		},
		{
			name:  "a newly excluded address is taken back",
			pools: []ipam.Pool{lan},
			steps: with(
				step{name: "exclude .1", op: reconfigure, pools: []ipam.Pool{lanExcl}, wantEvict: []string{"default/b 198.18.0.1 IPExcluded"}},
				step{name: "b moves to the next free address: none", req: ipam.Request{Service: key("b"), Policy: ipam.RequireDualStack}, wantErr: ipam.ErrPoolExhausted},
				step{name: "b as PreferDualStack keeps its IPv6", req: ipam.Request{Service: key("b"), Policy: ipam.PreferDualStack}, want: []string{"2001:db8:18::"}, wantUnmet: ipam.ErrPoolExhausted},
			),
		},
		{
			name:  "a removed pool takes its addresses back",
			pools: []ipam.Pool{lan},
			steps: with(
				step{name: "only dmz", op: reconfigure, pools: []ipam.Pool{dmz}, wantEvict: []string{
					"default/a 198.18.0.0 IPNotInPool",
					"default/b 198.18.0.1 IPNotInPool",
					"default/b 2001:db8:18:: IPNotInPool",
					"default/d 198.18.0.3 IPNotInPool",
					"team/c 198.18.0.2 IPNotInPool",
				}},
				step{name: "a moves to dmz", req: ipam.Request{Service: key("a")}, want: []string{"198.18.1.0"}, wantPools: []string{"dmz"}},
				step{name: "the others hold nothing", op: release, svc: "b"},
			),
		},
		{
			name:  "a renamed pool: those who asked for it by name lose their address",
			pools: []ipam.Pool{lan},
			steps: with(
				step{name: "rename", op: reconfigure, pools: []ipam.Pool{renamed}, wantEvict: []string{"team/c 198.18.0.2 PoolNotFound"}},
				step{name: "a keeps its address, now of lan2", req: ipam.Request{Service: key("a")}, want: []string{"198.18.0.0"}, wantPools: []string{"lan2"}},
			),
		},
		{
			name:  "namespaces restricted",
			pools: []ipam.Pool{lan},
			steps: with(
				step{name: "only team", op: reconfigure, pools: []ipam.Pool{lanTeam}, wantEvict: []string{
					"default/a 198.18.0.0 NamespaceNotAllowed",
					"default/b 198.18.0.1 NamespaceNotAllowed",
					"default/b 2001:db8:18:: NamespaceNotAllowed",
					"default/d 198.18.0.3 NamespaceNotAllowed",
				}},
				step{name: "team's c keeps", req: ipam.Request{Service: nskey("team", "c"), Pool: "lan"}, want: []string{"198.18.0.2"}},
			),
		},
		{
			name:  "autoAssign turned off: those who asked keep",
			pools: []ipam.Pool{lan},
			steps: with(
				step{name: "manual", op: reconfigure, pools: []ipam.Pool{lanManual}, wantEvict: []string{
					"default/a 198.18.0.0 PoolNotAutoAssign",
					"default/b 198.18.0.1 PoolNotAutoAssign",
					"default/b 2001:db8:18:: PoolNotAutoAssign",
				}},
				step{name: "d keeps its requested IP", req: ipam.Request{Service: key("d"), IPs: addrs("198.18.0.3")}, want: []string{"198.18.0.3"}},
			),
		},
		{
			name:  "a selector added",
			pools: []ipam.Pool{lan},
			steps: with(
				step{name: "tier=front only", op: reconfigure, pools: []ipam.Pool{lanSel}, wantEvict: []string{
					"default/a 198.18.0.0 ServiceSelectorMismatch",
					"default/d 198.18.0.3 ServiceSelectorMismatch",
					"team/c 198.18.0.2 ServiceSelectorMismatch",
				}},
			),
		},
		{
			name:  "a family removed: dual-stack Services keep the other",
			pools: []ipam.Pool{lan},
			steps: with(
				step{name: "IPv4 only", op: reconfigure, pools: []ipam.Pool{lanV4}, wantEvict: []string{"default/b 2001:db8:18:: IPNotInPool"}},
				step{name: "b as PreferDualStack keeps its IPv4", req: ipam.Request{Service: key("b"), Policy: ipam.PreferDualStack}, want: []string{"198.18.0.1"}, wantUnmet: ipam.ErrNoMatchingPool},
			),
		},
		{
			name:  "a better pool added: nobody moves",
			pools: []ipam.Pool{lan},
			steps: with(
				step{name: "add dmz with priority", op: reconfigure, pools: []ipam.Pool{lan, dmz}},
				step{name: "a keeps lan", req: ipam.Request{Service: key("a")}, want: []string{"198.18.0.0"}, wantPools: []string{"lan"}},
				step{name: "e gets dmz", req: ipam.Request{Service: key("e")}, want: []string{"198.18.1.0"}, wantPools: []string{"dmz"}},
			),
		},
		{
			name:  "sharing Services are evicted together or not at all",
			pools: []ipam.Pool{lan},
			steps: []step{
				{name: "x", req: ipam.Request{Service: key("x"), SharingKey: "k", Ports: tcp(80)}, want: []string{"198.18.0.0"}},
				{name: "y in team", req: ipam.Request{Service: nskey("team", "y"), SharingKey: "k", Ports: tcp(80)}, want: []string{"198.18.0.1"}},
				{name: "z in team shares y's", req: ipam.Request{Service: nskey("team", "z"), SharingKey: "k", Ports: tcp(443)}, want: []string{"198.18.0.1"}},
				{name: "only team", op: reconfigure, pools: []ipam.Pool{lanTeam}, wantEvict: []string{"default/x 198.18.0.0 NamespaceNotAllowed"}},
				{name: "w in team shares y's", req: ipam.Request{Service: nskey("team", "w"), SharingKey: "k", Ports: tcp(8080)}, want: []string{"198.18.0.1"}},
				{name: "back to lan: x's old address is free", op: reconfigure, pools: []ipam.Pool{lan}},
				{name: "v gets it", req: ipam.Request{Service: key("v")}, want: []string{"198.18.0.0"}},
			},
		},
	})
}
