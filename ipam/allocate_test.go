package ipam_test

import (
	"testing"

	"github.com/onprem-lb/onprem-lb/ipam"
)

// lan has four IPv4 and four IPv6 addresses.
var lan = ipam.Pool{Name: "lan", AutoAssign: true, Addresses: ranges("198.18.0.0/30", "2001:db8:18::/126")}

func TestAllocateBasics(t *testing.T) {
	small := ipam.Pool{Name: "small", AutoAssign: true, Addresses: ranges("198.18.0.10-198.18.0.11")}
	runScenarios(t, []scenario{
		{
			name:  "lowest free address, in order",
			pools: []ipam.Pool{lan},
			steps: []step{
				{name: "s1 gets the first", req: ipam.Request{Service: key("s1")}, want: []string{"198.18.0.0"}, wantPools: []string{"lan"}},
				{name: "s2 gets the next", req: ipam.Request{Service: key("s2")}, want: []string{"198.18.0.1"}},
				{name: "s3", req: ipam.Request{Service: key("s3")}, want: []string{"198.18.0.2"}},
				{name: "s2 releases", op: release, svc: "s2", want: []string{"198.18.0.1"}},
				{name: "s4 gets the hole s2 left", req: ipam.Request{Service: key("s4")}, want: []string{"198.18.0.1"}},
				{name: "release of an unknown service", op: release, svc: "nobody"},
			},
		},
		{
			name:  "exhaustion, then release, then success",
			pools: []ipam.Pool{small},
			steps: []step{
				{name: "s1", req: ipam.Request{Service: key("s1")}, want: []string{"198.18.0.10"}},
				{name: "s2", req: ipam.Request{Service: key("s2")}, want: []string{"198.18.0.11"}},
				{name: "s3 finds the pool exhausted", req: ipam.Request{Service: key("s3")}, wantErr: ipam.ErrPoolExhausted},
				{name: "s1 releases", op: release, svc: "s1", want: []string{"198.18.0.10"}},
				{name: "s3 now succeeds", req: ipam.Request{Service: key("s3")}, want: []string{"198.18.0.10"}},
			},
		},
		{
			name:  "idempotent, and keeps its address when the request changes compatibly",
			pools: []ipam.Pool{lan},
			steps: []step{
				{name: "s1", req: ipam.Request{Service: key("s1"), Ports: tcp(80)}, want: []string{"198.18.0.0"}},
				{name: "s2", req: ipam.Request{Service: key("s2")}, want: []string{"198.18.0.1"}},
				{name: "s1 again: same", req: ipam.Request{Service: key("s1"), Ports: tcp(80)}, want: []string{"198.18.0.0"}},
				{name: "s2 released", op: release, svc: "s2", want: []string{"198.18.0.1"}},
				{name: "s1 with other ports and labels: same", req: ipam.Request{Service: key("s1"), Ports: tcp(8080), Labels: map[string]string{"a": "b"}}, want: []string{"198.18.0.0"}},
				{name: "s1 asks for a specific IP: moves", req: ipam.Request{Service: key("s1"), IPs: addrs("198.18.0.3")}, want: []string{"198.18.0.3"}},
				{name: "its old IP is free again", req: ipam.Request{Service: key("s3")}, want: []string{"198.18.0.0"}},
			},
		},
		{
			name:  "malformed requests",
			pools: []ipam.Pool{lan},
			steps: []step{
				{name: "no name", req: ipam.Request{Service: ipam.ServiceKey{Namespace: "default"}}, wantErr: ipam.ErrInvalidRequest},
				{name: "no namespace", req: ipam.Request{Service: ipam.ServiceKey{Name: "s1"}}, wantErr: ipam.ErrInvalidRequest},
				{name: "unknown policy", req: ipam.Request{Service: key("s1"), Policy: "Sometimes"}, wantErr: ipam.ErrInvalidRequest},
				{name: "unknown family", req: ipam.Request{Service: key("s1"), Families: []ipam.Family{"IPv5"}}, wantErr: ipam.ErrInvalidRequest},
				{name: "family twice", req: ipam.Request{Service: key("s1"), Policy: ipam.PreferDualStack, Families: []ipam.Family{ipam.IPv4, ipam.IPv4}}, wantErr: ipam.ErrInvalidRequest},
				{name: "SingleStack with two families", req: ipam.Request{Service: key("s1"), Families: []ipam.Family{ipam.IPv4, ipam.IPv6}}, wantErr: ipam.ErrInvalidRequest},
				{name: "RequireDualStack with one family", req: ipam.Request{Service: key("s1"), Policy: ipam.RequireDualStack, Families: []ipam.Family{ipam.IPv6}}, wantErr: ipam.ErrInvalidRequest},
				{name: "two IPv4 addresses", req: ipam.Request{Service: key("s1"), IPs: addrs("198.18.0.1", "198.18.0.2")}, wantErr: ipam.ErrInvalidRequest},
				{name: "zoned address", req: ipam.Request{Service: key("s1"), IPs: addrs("fe80::1%eth0")}, wantErr: ipam.ErrInvalidRequest},
				{name: "unknown protocol", req: ipam.Request{Service: key("s1"), Ports: []ipam.Port{{Protocol: "ICMP", Port: 1}}}, wantErr: ipam.ErrInvalidRequest},
				{name: "port 0", req: ipam.Request{Service: key("s1"), Ports: tcp(0)}, wantErr: ipam.ErrInvalidRequest},
			},
		},
		{
			name: "no pools at all",
			steps: []step{
				{name: "nothing matches", req: ipam.Request{Service: key("s1")}, wantErr: ipam.ErrNoMatchingPool},
			},
		},
	})
}

func TestExclude(t *testing.T) {
	pool := ipam.Pool{Name: "lan", AutoAssign: true, Addresses: ranges("198.18.0.0/29", "2001:db8::/126"),
		Exclude: ranges("198.18.0.0-198.18.0.1", "198.18.0.3", "2001:db8::")}
	runScenarios(t, []scenario{{
		name:  "excluded addresses are never handed out",
		pools: []ipam.Pool{pool},
		steps: []step{
			{name: "s1 skips .0 and .1", req: ipam.Request{Service: key("s1")}, want: []string{"198.18.0.2"}},
			{name: "s2 skips .3", req: ipam.Request{Service: key("s2")}, want: []string{"198.18.0.4"}},
			{name: "s3 IPv6 skips ::", req: ipam.Request{Service: key("s3"), Families: []ipam.Family{ipam.IPv6}}, want: []string{"2001:db8::1"}},
			{name: "asking for an excluded IP", req: ipam.Request{Service: key("s4"), IPs: addrs("198.18.0.3")}, wantErr: ipam.ErrIPExcluded},
			{name: "assigning an excluded IP", op: assign, req: ipam.Request{Service: key("s4")}, ips: []string{"198.18.0.1"}, wantErr: ipam.ErrIPExcluded},
		},
	}})
}

func TestAvoidBuggyIPs(t *testing.T) {
	buggy := ipam.Pool{Name: "buggy", AutoAssign: true, AvoidBuggyIPs: true, Addresses: ranges("198.18.0.254-198.18.2.1", "2001:db8::ff-2001:db8::100")}
	plain := ipam.Pool{Name: "plain", AutoAssign: true, Addresses: ranges("198.18.0.254-198.18.1.1")}
	runScenarios(t, []scenario{
		{
			name:  "skips .255 and .0",
			pools: []ipam.Pool{buggy},
			steps: []step{
				{name: "s1", req: ipam.Request{Service: key("s1")}, want: []string{"198.18.0.254"}},
				{name: "s2 skips .255 and .0", req: ipam.Request{Service: key("s2")}, want: []string{"198.18.1.1"}},
				{name: "s3 asks for .255", req: ipam.Request{Service: key("s3"), IPs: addrs("198.18.1.255")}, wantErr: ipam.ErrIPExcluded},
				{name: "s3 asks for .0", req: ipam.Request{Service: key("s3"), IPs: addrs("198.18.2.0")}, wantErr: ipam.ErrIPExcluded},
				{name: "s3 asks for .1 of the last block", req: ipam.Request{Service: key("s3"), IPs: addrs("198.18.2.1")}, want: []string{"198.18.2.1"}},
				{name: "IPv6 ::ff and ::100 are fine", req: ipam.Request{Service: key("s4"), Families: []ipam.Family{ipam.IPv6}}, want: []string{"2001:db8::ff"}},
				{name: "IPv6 ::100", req: ipam.Request{Service: key("s5"), Families: []ipam.Family{ipam.IPv6}}, want: []string{"2001:db8::100"}},
				{name: "s1 releases", op: release, svc: "s1", want: []string{"198.18.0.254"}},
				{name: "s6 reuses it", req: ipam.Request{Service: key("s6")}, want: []string{"198.18.0.254"}},
			},
		},
		{
			name:  "without avoidBuggyIPs .255 and .0 are handed out",
			pools: []ipam.Pool{plain},
			steps: []step{
				{name: "s1", req: ipam.Request{Service: key("s1")}, want: []string{"198.18.0.254"}},
				{name: "s2", req: ipam.Request{Service: key("s2")}, want: []string{"198.18.0.255"}},
				{name: "s3", req: ipam.Request{Service: key("s3")}, want: []string{"198.18.1.0"}},
			},
		},
	})
}

func TestAutoAssign(t *testing.T) {
	manual := ipam.Pool{Name: "manual", Priority: 10, Addresses: ranges("198.18.1.0/30", "2001:db8:1::/126")}
	runScenarios(t, []scenario{
		{
			name:  "a pool without autoAssign serves only those who ask for it",
			pools: []ipam.Pool{lan, manual},
			steps: []step{
				{name: "s1 gets lan despite manual's priority", req: ipam.Request{Service: key("s1")}, want: []string{"198.18.0.0"}, wantPools: []string{"lan"}},
				{name: "s2 asks for manual by name", req: ipam.Request{Service: key("s2"), Pool: "manual"}, want: []string{"198.18.1.0"}, wantPools: []string{"manual"}},
				{name: "s3 asks for an IP of manual", req: ipam.Request{Service: key("s3"), IPs: addrs("198.18.1.2")}, want: []string{"198.18.1.2"}},
				{
					name: "s4 asks for an IP of manual, and gets manual's IPv6 too",
					req:  ipam.Request{Service: key("s4"), Policy: ipam.RequireDualStack, IPs: addrs("198.18.1.3")},
					want: []string{"198.18.1.3", "2001:db8:1::"}, wantPools: []string{"manual", "manual"},
				},
				{name: "assigning manual's IP without asking", op: assign, req: ipam.Request{Service: key("s5")}, ips: []string{"198.18.1.1"}, wantErr: ipam.ErrPoolNotAutoAssign},
			},
		},
		{
			name:  "only pools without autoAssign",
			pools: []ipam.Pool{manual},
			steps: []step{
				{name: "no pool matches", req: ipam.Request{Service: key("s1")}, wantErr: ipam.ErrNoMatchingPool},
			},
		},
	})
}

func TestNamespaces(t *testing.T) {
	teamA := ipam.Pool{Name: "team-a", AutoAssign: true, Priority: 1, Namespaces: []string{"team-a", "shared"}, Addresses: ranges("198.18.1.0/30")}
	runScenarios(t, []scenario{
		{
			name:  "a pool with namespaces serves only them",
			pools: []ipam.Pool{lan, teamA},
			steps: []step{
				{name: "team-a gets its pool", req: ipam.Request{Service: nskey("team-a", "s1")}, want: []string{"198.18.1.0"}, wantPools: []string{"team-a"}},
				{name: "shared gets it too", req: ipam.Request{Service: nskey("shared", "s1")}, want: []string{"198.18.1.1"}},
				{name: "team-b falls back to lan", req: ipam.Request{Service: nskey("team-b", "s1")}, want: []string{"198.18.0.0"}, wantPools: []string{"lan"}},
				{name: "team-b asks for team-a by name", req: ipam.Request{Service: nskey("team-b", "s2"), Pool: "team-a"}, wantErr: ipam.ErrNamespaceNotAllowed},
				{name: "team-b asks for an IP of team-a", req: ipam.Request{Service: nskey("team-b", "s2"), IPs: addrs("198.18.1.3")}, wantErr: ipam.ErrNamespaceNotAllowed},
				{name: "team-b assigns an IP of team-a", op: assign, req: ipam.Request{Service: nskey("team-b", "s2")}, ips: []string{"198.18.1.3"}, wantErr: ipam.ErrNamespaceNotAllowed},
			},
		},
		{
			name:  "no other pool",
			pools: []ipam.Pool{teamA},
			steps: []step{
				{name: "team-b matches no pool", req: ipam.Request{Service: nskey("team-b", "s1")}, wantErr: ipam.ErrNoMatchingPool},
			},
		},
	})
}

func TestServiceSelector(t *testing.T) {
	prod := ipam.Pool{Name: "prod", AutoAssign: true, Priority: 1, Addresses: ranges("198.18.1.0/30"),
		ServiceSelector: ipam.SelectorFunc(func(l map[string]string) bool { return l["env"] == "prod" })}
	runScenarios(t, []scenario{
		{
			name:  "a pool with a selector serves only matching Services",
			pools: []ipam.Pool{lan, prod},
			steps: []step{
				{name: "prod gets its pool", req: ipam.Request{Service: key("s1"), Labels: map[string]string{"env": "prod"}}, want: []string{"198.18.1.0"}, wantPools: []string{"prod"}},
				{name: "dev falls back to lan", req: ipam.Request{Service: key("s2"), Labels: map[string]string{"env": "dev"}}, want: []string{"198.18.0.0"}, wantPools: []string{"lan"}},
				{name: "no labels falls back to lan", req: ipam.Request{Service: key("s3")}, want: []string{"198.18.0.1"}},
				{name: "dev asks for prod", req: ipam.Request{Service: key("s4"), Pool: "prod"}, wantErr: ipam.ErrServiceSelectorMismatch},
				{name: "dev asks for an IP of prod", req: ipam.Request{Service: key("s4"), IPs: addrs("198.18.1.2")}, wantErr: ipam.ErrServiceSelectorMismatch},
				{name: "s1 loses its label: moves to lan", req: ipam.Request{Service: key("s1")}, want: []string{"198.18.0.2"}},
			},
		},
	})
}

func TestPriority(t *testing.T) {
	high := ipam.Pool{Name: "high", AutoAssign: true, Priority: 5, Addresses: ranges("198.18.2.0/31")}
	alpha := ipam.Pool{Name: "alpha", AutoAssign: true, Addresses: ranges("198.18.9.0/31")}
	runScenarios(t, []scenario{
		{
			name:  "higher priority first, then name, then the next pool when exhausted",
			pools: []ipam.Pool{lan, high, alpha},
			steps: []step{
				{name: "s1 from high", req: ipam.Request{Service: key("s1")}, want: []string{"198.18.2.0"}, wantPools: []string{"high"}},
				{name: "s2 from high", req: ipam.Request{Service: key("s2")}, want: []string{"198.18.2.1"}},
				{name: "s3: high exhausted, alpha before lan", req: ipam.Request{Service: key("s3")}, want: []string{"198.18.9.0"}, wantPools: []string{"alpha"}},
				{name: "s4 from alpha", req: ipam.Request{Service: key("s4")}, want: []string{"198.18.9.1"}},
				{name: "s5 from lan", req: ipam.Request{Service: key("s5")}, want: []string{"198.18.0.0"}, wantPools: []string{"lan"}},
				{name: "s1 released: s6 from high again", op: release, svc: "s1", want: []string{"198.18.2.0"}},
				{name: "s6", req: ipam.Request{Service: key("s6")}, want: []string{"198.18.2.0"}},
				{name: "s3 released: alpha has room", op: release, svc: "s3", want: []string{"198.18.9.0"}},
				{name: "s5 keeps its lan address: no needless move", req: ipam.Request{Service: key("s5")}, want: []string{"198.18.0.0"}},
			},
		},
	})
}

func TestExplicitIPs(t *testing.T) {
	dmz := ipam.Pool{Name: "dmz", AutoAssign: true, Addresses: ranges("198.18.1.0/30")}
	runScenarios(t, []scenario{
		{
			name:  "requested IPs",
			pools: []ipam.Pool{lan, dmz},
			steps: []step{
				{name: "s1 gets what it asks", req: ipam.Request{Service: key("s1"), IPs: addrs("198.18.0.2")}, want: []string{"198.18.0.2"}, wantPools: []string{"lan"}},
				{name: "s2 can't grab s1's IP", req: ipam.Request{Service: key("s2"), IPs: addrs("198.18.0.2")}, wantErr: ipam.ErrIPInUse},
				{name: "s2 asks for an IP outside every pool", req: ipam.Request{Service: key("s2"), IPs: addrs("198.18.5.5")}, wantErr: ipam.ErrIPNotInPool},
				{name: "s2 asks for IPv6 being SingleStack IPv4", req: ipam.Request{Service: key("s2"), Families: []ipam.Family{ipam.IPv4}, IPs: addrs("2001:db8:18::1")}, wantErr: ipam.ErrWrongFamily},
				{name: "s2 asks for an IP of dmz and pool lan", req: ipam.Request{Service: key("s2"), Pool: "lan", IPs: addrs("198.18.1.1")}, wantErr: ipam.ErrIPNotInPool},
				{name: "s2 asks for an IP of a missing pool", req: ipam.Request{Service: key("s2"), Pool: "gone", IPs: addrs("198.18.1.1")}, wantErr: ipam.ErrPoolNotFound},
				{name: "s2 asks for an IP of dmz and pool dmz", req: ipam.Request{Service: key("s2"), Pool: "dmz", IPs: addrs("198.18.1.1")}, want: []string{"198.18.1.1"}},
				{name: "IPv6 only, family from the IP", req: ipam.Request{Service: key("s3"), IPs: addrs("2001:db8:18::3")}, want: []string{"2001:db8:18::3"}},
				{name: "s4 from dmz (name before lan)", req: ipam.Request{Service: key("s4")}, want: []string{"198.18.1.0"}},
				{name: "s5: lowest free skips s2's requested IP", req: ipam.Request{Service: key("s5")}, want: []string{"198.18.1.2"}},
			},
		},
	})
}

func TestPoolRequest(t *testing.T) {
	v4only := ipam.Pool{Name: "v4only", AutoAssign: true, Addresses: ranges("198.18.1.0/31")}
	runScenarios(t, []scenario{
		{
			name:  "a requested pool is the only one used",
			pools: []ipam.Pool{lan, v4only},
			steps: []step{
				{name: "s1 asks for v4only", req: ipam.Request{Service: key("s1"), Pool: "v4only"}, want: []string{"198.18.1.0"}, wantPools: []string{"v4only"}},
				{name: "s2 asks for v4only", req: ipam.Request{Service: key("s2"), Pool: "v4only"}, want: []string{"198.18.1.1"}},
				{name: "s3: v4only exhausted, lan not used", req: ipam.Request{Service: key("s3"), Pool: "v4only"}, wantErr: ipam.ErrPoolExhausted},
				{name: "s3 asks for a missing pool", req: ipam.Request{Service: key("s3"), Pool: "nope"}, wantErr: ipam.ErrPoolNotFound},
				{name: "s3 asks v4only for IPv6", req: ipam.Request{Service: key("s3"), Pool: "v4only", Families: []ipam.Family{ipam.IPv6}}, wantErr: ipam.ErrWrongFamily},
				{name: "s3 asks v4only for dual-stack", req: ipam.Request{Service: key("s3"), Pool: "v4only", Policy: ipam.RequireDualStack}, wantErr: ipam.ErrPoolExhausted},
				{name: "s1 switches to lan", req: ipam.Request{Service: key("s1"), Pool: "lan"}, want: []string{"198.18.0.0"}, wantPools: []string{"lan"}},
				{name: "s3 gets the address s1 left", req: ipam.Request{Service: key("s3"), Pool: "v4only"}, want: []string{"198.18.1.0"}},
			},
		},
	})
}
