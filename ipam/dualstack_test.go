package ipam_test

import (
	"testing"

	"github.com/onprem-lb/onprem-lb/ipam"
)

func TestDualStack(t *testing.T) {
	v4 := ipam.Pool{Name: "v4", AutoAssign: true, Addresses: ranges("198.18.1.0/31")}
	v6 := ipam.Pool{Name: "v6", AutoAssign: true, Addresses: ranges("2001:db8:6::/127")}
	both := []ipam.Family{ipam.IPv4, ipam.IPv6}
	sixFirst := []ipam.Family{ipam.IPv6, ipam.IPv4}
	runScenarios(t, []scenario{
		{
			name:  "RequireDualStack",
			pools: []ipam.Pool{lan},
			steps: []step{
				{name: "both families", req: ipam.Request{Service: key("a"), Policy: ipam.RequireDualStack, Families: both}, want: []string{"198.18.0.0", "2001:db8:18::"}},
				{name: "in spec.ipFamilies order", req: ipam.Request{Service: key("b"), Policy: ipam.RequireDualStack, Families: sixFirst}, want: []string{"2001:db8:18::1", "198.18.0.1"}},
				{name: "families default to both", req: ipam.Request{Service: key("c"), Policy: ipam.RequireDualStack}, want: []string{"198.18.0.2", "2001:db8:18::2"}},
				{name: "with one requested IP", req: ipam.Request{Service: key("d"), Policy: ipam.RequireDualStack, Families: both, IPs: addrs("2001:db8:18::3")}, want: []string{"198.18.0.3", "2001:db8:18::3"}},
				{name: "IPv4 exhausted: nothing, not even IPv6", req: ipam.Request{Service: key("e"), Policy: ipam.RequireDualStack, Families: both}, wantErr: ipam.ErrPoolExhausted},
				{name: "d goes single-stack IPv6: IPv4 released", req: ipam.Request{Service: key("d"), Families: []ipam.Family{ipam.IPv6}}, want: []string{"2001:db8:18::3"}},
				{name: "e: an IPv4 is free, but IPv6 is exhausted", req: ipam.Request{Service: key("e"), Policy: ipam.RequireDualStack, Families: both}, wantErr: ipam.ErrPoolExhausted},
				{name: "a releases both", op: release, svc: "a", want: []string{"198.18.0.0", "2001:db8:18::"}},
				{name: "e gets the lowest of each", req: ipam.Request{Service: key("e"), Policy: ipam.RequireDualStack, Families: both}, want: []string{"198.18.0.0", "2001:db8:18::"}},
			},
		},
		{
			name:  "RequireDualStack fails without an IPv6 pool and takes nothing",
			pools: []ipam.Pool{v4},
			steps: []step{
				{name: "no IPv6 pool", req: ipam.Request{Service: key("a"), Policy: ipam.RequireDualStack, Families: both}, wantErr: ipam.ErrNoMatchingPool},
				{name: "the IPv4 address is still free", req: ipam.Request{Service: key("b")}, want: []string{"198.18.1.0"}},
			},
		},
		{
			name:  "PreferDualStack gives what it can",
			pools: []ipam.Pool{v4, v6},
			steps: []step{
				{name: "both", req: ipam.Request{Service: key("a"), Policy: ipam.PreferDualStack, Families: both}, want: []string{"198.18.1.0", "2001:db8:6::"}},
				{name: "IPv6 only: takes the last IPv6", req: ipam.Request{Service: key("b"), Families: []ipam.Family{ipam.IPv6}}, want: []string{"2001:db8:6::1"}},
				{name: "IPv6 exhausted: IPv4 only, and why", req: ipam.Request{Service: key("c"), Policy: ipam.PreferDualStack, Families: sixFirst}, want: []string{"198.18.1.1"}, wantUnmet: ipam.ErrPoolExhausted},
				{name: "both exhausted: the first family's error", req: ipam.Request{Service: key("d"), Policy: ipam.PreferDualStack, Families: sixFirst}, wantErr: ipam.ErrPoolExhausted},
				{name: "b releases", op: release, svc: "b", want: []string{"2001:db8:6::1"}},
				{name: "c again: completes with IPv6, keeps its IPv4", req: ipam.Request{Service: key("c"), Policy: ipam.PreferDualStack, Families: sixFirst}, want: []string{"2001:db8:6::1", "198.18.1.1"}},
			},
		},
		{
			name:  "PreferDualStack with a single-family cluster or pool",
			pools: []ipam.Pool{v4},
			steps: []step{
				{name: "one family listed: one address", req: ipam.Request{Service: key("a"), Policy: ipam.PreferDualStack, Families: []ipam.Family{ipam.IPv4}}, want: []string{"198.18.1.0"}},
				{name: "both listed, no IPv6 pool", req: ipam.Request{Service: key("b"), Policy: ipam.PreferDualStack, Families: both}, want: []string{"198.18.1.1"}, wantUnmet: ipam.ErrNoMatchingPool},
				{name: "a requested IP that cannot be given fails the request", req: ipam.Request{Service: key("c"), Policy: ipam.PreferDualStack, Families: both, IPs: addrs("2001:db8::1")}, wantErr: ipam.ErrIPNotInPool},
			},
		},
		{
			name:  "SingleStack",
			pools: []ipam.Pool{lan},
			steps: []step{
				{name: "IPv6", req: ipam.Request{Service: key("a"), Policy: ipam.SingleStack, Families: []ipam.Family{ipam.IPv6}}, want: []string{"2001:db8:18::"}},
				{name: "IPv4 by default", req: ipam.Request{Service: key("b")}, want: []string{"198.18.0.0"}},
				{name: "a goes dual-stack: keeps IPv6, adds IPv4", req: ipam.Request{Service: key("a"), Policy: ipam.RequireDualStack, Families: sixFirst}, want: []string{"2001:db8:18::", "198.18.0.1"}},
			},
		},
	})
}
