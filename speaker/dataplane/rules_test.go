package dataplane

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func addr(s string) netip.Addr     { return netip.MustParseAddr(s) }
func prefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func svcName(ns, name, proto string, port int) string {
	return svcChainPrefix + hashName(ns+"/"+name+":"+proto+"/"+itoa(port))
}

func sepList(svc, proto, dest string) string {
	return sepPrefix + hashName(svc+">"+proto+"/"+dest)
}

func itoa(i int) string {
	return netip.AddrPortFrom(netip.IPv4Unspecified(), uint16(i)).String()[len("0.0.0.0:"):]
}

// marked are the lines of a nat shard's Cluster Services: between marking
// for masquerade and taking the mark off again.
func marked(shard string, lines ...string) []string {
	return append(append([]string{"-A " + shard + " -j MARK --or-mark 0x2000"}, lines...), "-A "+shard+" -j MARK --set-mark 0x0/0x2000")
}

// rules joins lines into a chain content.
func rules(lines ...string) string {
	if len(lines) == 0 {
		return ""
	}
	return strings.Join(lines, "\n") + "\n"
}

func TestBuildRules(t *testing.T) {
	eps := []Endpoint{{IP: addr("10.0.0.1"), Port: 8080, Local: true}, {IP: addr("10.0.0.2"), Port: 8080}}
	eps6 := []Endpoint{{IP: addr("fd00::1"), Port: 8080, Local: true}, {IP: addr("fd00::2"), Port: 8080}}
	web := svcName("ns", "web", "tcp", 80)
	dns := svcName("ns", "dns", "udp", 53)
	const reject = " -j REJECT --reject-with icmp-port-unreachable"
	const reject6 = " -j REJECT --reject-with icmp6-port-unreachable"
	fw10 := rules("-A ONPREM-LB-FIREWALL -d 0.0.0.10/0.0.0.255 -j ONPREM-LB-FW-0A")
	tests := []struct {
		name     string
		family   Family
		services []Service
		want     ruleset // without ONPREM-LB-MARK-MASQ and ONPREM-LB-POSTROUTING
	}{{
		name:   "no services",
		family: IPv4,
		want:   ruleset{{tableNAT, servicesChain}: "", {tableFilter, firewallChain}: ""},
	}, {
		name:   "cluster: every endpoint, marked for masquerade, spread evenly",
		family: IPv4,
		services: []Service{{Namespace: "ns", Name: "web", VIPs: []netip.Addr{addr("198.18.0.10")},
			Ports: []Port{{Protocol: TCP, Port: 80, Endpoints: eps}}}},
		want: ruleset{
			{tableNAT, servicesChain}: rules("-A ONPREM-LB-SERVICES -d 0.0.0.10/0.0.0.255 -j ONPREM-LB-VIPS-0A"),
			{tableNAT, "ONPREM-LB-VIPS-0A"}: rules(marked("ONPREM-LB-VIPS-0A",
				`-A ONPREM-LB-VIPS-0A -d 198.18.0.10/32 -p tcp -m tcp --dport 80 -m comment --comment "ns/web:tcp/80" -j `+web)...),
			{tableNAT, web}: rules(
				"-A "+web+" -p tcp -m statistic --mode random --probability 0.5000000000 -j DNAT --to-destination 10.0.0.1:8080",
				"-A "+web+" -p tcp -j DNAT --to-destination 10.0.0.2:8080"),
			{tableFilter, firewallChain}: rules("-A ONPREM-LB-FIREWALL -d 0.0.0.10/0.0.0.255 -j ONPREM-LB-FW-0A"),
			{tableFilter, "ONPREM-LB-FW-0A"}: rules(
				`-A ONPREM-LB-FW-0A -d 198.18.0.10/32 -m comment --comment "port not served"` + reject),
		},
	}, {
		name:   "proxied elsewhere: no nat or filter; in mangle POSTROUTING what the other proxy left alone is dropped",
		family: IPv4,
		services: []Service{{Namespace: "ns", Name: "web", VIPs: []netip.Addr{addr("198.18.0.10"), addr("2001:db8::10")}, ProxiedElsewhere: true,
			Ports: []Port{{Protocol: TCP, Port: 80, Endpoints: eps}}}},
		want: ruleset{
			{tableNAT, servicesChain}:    "",
			{tableFilter, firewallChain}: "",
			{tableMangle, guardChain}:    rules("-A ONPREM-LB-GUARD -d 0.0.0.10/0.0.0.255 -j ONPREM-LB-GUARD-0A"),
			{tableMangle, "ONPREM-LB-GUARD-0A"}: rules(
				`-A ONPREM-LB-GUARD-0A -d 198.18.0.10/32 -m comment --comment "not forwarded by the service proxy" -j DROP`),
		},
	}, {
		name:   "local: only local endpoints, no masquerade but hairpin",
		family: IPv4,
		services: []Service{{Namespace: "ns", Name: "web", VIPs: []netip.Addr{addr("198.18.0.10")}, Local: true,
			Ports: []Port{{Protocol: TCP, Port: 80, Endpoints: eps}}}},
		want: ruleset{
			{tableNAT, servicesChain}: rules("-A ONPREM-LB-SERVICES -d 0.0.0.10/0.0.0.255 -j ONPREM-LB-VIPS-0A"),
			{tableNAT, "ONPREM-LB-VIPS-0A"}: rules(
				`-A ONPREM-LB-VIPS-0A -d 198.18.0.10/32 -p tcp -m tcp --dport 80 -m comment --comment "ns/web:tcp/80" -j ` + web),
			{tableNAT, web}: rules(
				"-A "+web+" -s 10.0.0.1/32 -j ONPREM-LB-MARK-MASQ",
				"-A "+web+" -p tcp -j DNAT --to-destination 10.0.0.1:8080"),
			{tableFilter, firewallChain}: rules("-A ONPREM-LB-FIREWALL -d 0.0.0.10/0.0.0.255 -j ONPREM-LB-FW-0A"),
			{tableFilter, "ONPREM-LB-FW-0A"}: rules(
				`-A ONPREM-LB-FW-0A -d 198.18.0.10/32 -m comment --comment "port not served"` + reject),
		},
	}, {
		name:   "local and cluster in one shard: the local rules first, unmarked",
		family: IPv4,
		services: []Service{
			{Namespace: "ns", Name: "web", VIPs: []netip.Addr{addr("198.18.1.10")}, Ports: []Port{{Protocol: TCP, Port: 80, Endpoints: eps[1:]}}},
			{Namespace: "ns", Name: "dns", VIPs: []netip.Addr{addr("198.18.0.10")}, Local: true, Ports: []Port{{Protocol: UDP, Port: 53, Endpoints: eps[:1]}}},
		},
		want: ruleset{
			{tableNAT, servicesChain}: rules("-A ONPREM-LB-SERVICES -d 0.0.0.10/0.0.0.255 -j ONPREM-LB-VIPS-0A"),
			{tableNAT, "ONPREM-LB-VIPS-0A"}: rules(append([]string{
				`-A ONPREM-LB-VIPS-0A -d 198.18.0.10/32 -p udp -m udp --dport 53 -m comment --comment "ns/dns:udp/53" -j ` + dns},
				marked("ONPREM-LB-VIPS-0A", `-A ONPREM-LB-VIPS-0A -d 198.18.1.10/32 -p tcp -m tcp --dport 80 -m comment --comment "ns/web:tcp/80" -j `+web)...)...),
			{tableNAT, web}: rules("-A " + web + " -p tcp -j DNAT --to-destination 10.0.0.2:8080"),
			{tableNAT, dns}: rules(
				"-A "+dns+" -s 10.0.0.1/32 -j ONPREM-LB-MARK-MASQ",
				"-A "+dns+" -p udp -j DNAT --to-destination 10.0.0.1:8080"),
			{tableFilter, firewallChain}: fw10,
			{tableFilter, "ONPREM-LB-FW-0A"}: rules(
				`-A ONPREM-LB-FW-0A -d 198.18.0.10/32 -m comment --comment "port not served"`+reject,
				`-A ONPREM-LB-FW-0A -d 198.18.1.10/32 -m comment --comment "port not served"`+reject),
		},
	}, {
		name:   "local without local endpoints: rejected",
		family: IPv4,
		services: []Service{{Namespace: "ns", Name: "web", VIPs: []netip.Addr{addr("198.18.0.10")}, Local: true,
			Ports: []Port{{Protocol: TCP, Port: 80, Endpoints: eps[1:]}}}},
		want: ruleset{
			{tableNAT, servicesChain}:       rules("-A ONPREM-LB-SERVICES -d 0.0.0.10/0.0.0.255 -j ONPREM-LB-VIPS-0A"),
			{tableNAT, "ONPREM-LB-VIPS-0A"}: "",
			{tableFilter, firewallChain}:    fw10,
			{tableFilter, "ONPREM-LB-FW-0A"}: rules(
				`-A ONPREM-LB-FW-0A -d 198.18.0.10/32 -p tcp -m tcp --dport 80 -m comment --comment "ns/web:tcp/80 has no endpoints"`+reject,
				`-A ONPREM-LB-FW-0A -d 198.18.0.10/32 -m comment --comment "port not served"`+reject),
		},
	}, {
		name:   "session affinity: xt_recent per endpoint",
		family: IPv4,
		services: []Service{{Namespace: "ns", Name: "web", VIPs: []netip.Addr{addr("198.18.0.10")}, AffinityTimeout: 1500 * time.Millisecond,
			Ports: []Port{{Protocol: TCP, Port: 80, Endpoints: eps}}}},
		want: ruleset{
			{tableNAT, servicesChain}: rules("-A ONPREM-LB-SERVICES -d 0.0.0.10/0.0.0.255 -j ONPREM-LB-VIPS-0A"),
			{tableNAT, "ONPREM-LB-VIPS-0A"}: rules(marked("ONPREM-LB-VIPS-0A",
				`-A ONPREM-LB-VIPS-0A -d 198.18.0.10/32 -p tcp -m tcp --dport 80 -m comment --comment "ns/web:tcp/80" -j `+web)...),
			{tableNAT, web}: rules(
				"-A "+web+" -p tcp -m recent --name "+sepList(web, "tcp", "10.0.0.1:8080")+" --mask 255.255.255.255 --rsource --update --seconds 2 --reap -j DNAT --to-destination 10.0.0.1:8080",
				"-A "+web+" -p tcp -m recent --name "+sepList(web, "tcp", "10.0.0.2:8080")+" --mask 255.255.255.255 --rsource --update --seconds 2 --reap -j DNAT --to-destination 10.0.0.2:8080",
				"-A "+web+" -p tcp -m statistic --mode random --probability 0.5000000000 -m recent --name "+sepList(web, "tcp", "10.0.0.1:8080")+" --mask 255.255.255.255 --rsource --set -j DNAT --to-destination 10.0.0.1:8080",
				"-A "+web+" -p tcp -m recent --name "+sepList(web, "tcp", "10.0.0.2:8080")+" --mask 255.255.255.255 --rsource --set -j DNAT --to-destination 10.0.0.2:8080"),
			{tableFilter, firewallChain}: fw10,
			{tableFilter, "ONPREM-LB-FW-0A"}: rules(
				`-A ONPREM-LB-FW-0A -d 198.18.0.10/32 -m comment --comment "port not served"` + reject),
		},
	}, {
		name:   "source ranges: DNAT from inside, drop the rest; ranges of the other family ignored",
		family: IPv4,
		services: []Service{{Namespace: "ns", Name: "web", VIPs: []netip.Addr{addr("198.18.0.10")},
			SourceRanges: []netip.Prefix{prefix("192.0.2.0/24"), prefix("2001:db8::/32"), prefix("203.0.113.7/32")},
			Ports:        []Port{{Protocol: TCP, Port: 80, Endpoints: eps[:1]}}}},
		want: ruleset{
			{tableNAT, servicesChain}: rules("-A ONPREM-LB-SERVICES -d 0.0.0.10/0.0.0.255 -j ONPREM-LB-VIPS-0A"),
			{tableNAT, "ONPREM-LB-VIPS-0A"}: rules(marked("ONPREM-LB-VIPS-0A",
				`-A ONPREM-LB-VIPS-0A -s 192.0.2.0/24 -d 198.18.0.10/32 -p tcp -m tcp --dport 80 -m comment --comment "ns/web:tcp/80" -j `+web,
				`-A ONPREM-LB-VIPS-0A -s 203.0.113.7/32 -d 198.18.0.10/32 -p tcp -m tcp --dport 80 -m comment --comment "ns/web:tcp/80" -j `+web)...),
			{tableNAT, web}: rules(
				"-A " + web + " -p tcp -j DNAT --to-destination 10.0.0.1:8080"),
			{tableFilter, firewallChain}: fw10,
			{tableFilter, "ONPREM-LB-FW-0A"}: rules(
				`-A ONPREM-LB-FW-0A -d 198.18.0.10/32 -p tcp -m tcp --dport 80 -m comment --comment "ns/web:tcp/80 not in loadBalancerSourceRanges" -j DROP`,
				`-A ONPREM-LB-FW-0A -d 198.18.0.10/32 -m comment --comment "port not served"`+reject),
		},
	}, {
		name:   "no endpoints: rejected, no SVC chain",
		family: IPv4,
		services: []Service{{Namespace: "ns", Name: "web", VIPs: []netip.Addr{addr("198.18.0.10")},
			Ports: []Port{{Protocol: TCP, Port: 80}}}},
		want: ruleset{
			{tableNAT, servicesChain}:       rules("-A ONPREM-LB-SERVICES -d 0.0.0.10/0.0.0.255 -j ONPREM-LB-VIPS-0A"),
			{tableNAT, "ONPREM-LB-VIPS-0A"}: "",
			{tableFilter, firewallChain}:    fw10,
			{tableFilter, "ONPREM-LB-FW-0A"}: rules(
				`-A ONPREM-LB-FW-0A -d 198.18.0.10/32 -p tcp -m tcp --dport 80 -m comment --comment "ns/web:tcp/80 has no endpoints"`+reject,
				`-A ONPREM-LB-FW-0A -d 198.18.0.10/32 -m comment --comment "port not served"`+reject),
		},
	}, {
		name:   "IPv6: only IPv6 VIPs and endpoints",
		family: IPv6,
		services: []Service{{Namespace: "ns", Name: "web", VIPs: []netip.Addr{addr("198.18.0.10"), addr("2001:db8::10")},
			Ports: []Port{{Protocol: TCP, Port: 80, Endpoints: append(eps6, eps...)}}}},
		want: ruleset{
			{tableNAT, servicesChain}: rules("-A ONPREM-LB-SERVICES -d ::10/::ff -j ONPREM-LB-VIPS-10"),
			{tableNAT, "ONPREM-LB-VIPS-10"}: rules(marked("ONPREM-LB-VIPS-10",
				`-A ONPREM-LB-VIPS-10 -d 2001:db8::10/128 -p tcp -m tcp --dport 80 -m comment --comment "ns/web:tcp/80" -j `+web)...),
			{tableNAT, web}: rules(
				"-A "+web+" -p tcp -m statistic --mode random --probability 0.5000000000 -j DNAT --to-destination [fd00::1]:8080",
				"-A "+web+" -p tcp -j DNAT --to-destination [fd00::2]:8080"),
			{tableFilter, firewallChain}: rules("-A ONPREM-LB-FIREWALL -d ::10/::ff -j ONPREM-LB-FW-10"),
			{tableFilter, "ONPREM-LB-FW-10"}: rules(
				`-A ONPREM-LB-FW-10 -d 2001:db8::10/128 -m comment --comment "port not served"` + reject6),
		},
	}, {
		name:   "multiple ports and services, shards by last byte, one port without endpoints",
		family: IPv4,
		services: []Service{
			{Namespace: "ns", Name: "web", VIPs: []netip.Addr{addr("198.18.0.10")},
				Ports: []Port{{Protocol: TCP, Port: 80, Endpoints: eps[:1]}, {Protocol: TCP, Port: 443}}},
			{Namespace: "ns", Name: "dns", VIPs: []netip.Addr{addr("198.18.1.10"), addr("198.18.0.11")},
				Ports: []Port{{Protocol: UDP, Port: 53, Endpoints: []Endpoint{{IP: addr("10.0.0.3"), Port: 53}, {IP: addr("10.0.0.3"), Port: 53}}}}},
		},
		want: ruleset{
			{tableNAT, servicesChain}: rules(
				"-A ONPREM-LB-SERVICES -d 0.0.0.10/0.0.0.255 -j ONPREM-LB-VIPS-0A",
				"-A ONPREM-LB-SERVICES -d 0.0.0.11/0.0.0.255 -j ONPREM-LB-VIPS-0B"),
			{tableNAT, "ONPREM-LB-VIPS-0A"}: rules(marked("ONPREM-LB-VIPS-0A",
				`-A ONPREM-LB-VIPS-0A -d 198.18.0.10/32 -p tcp -m tcp --dport 80 -m comment --comment "ns/web:tcp/80" -j `+web,
				`-A ONPREM-LB-VIPS-0A -d 198.18.1.10/32 -p udp -m udp --dport 53 -m comment --comment "ns/dns:udp/53" -j `+dns)...),
			{tableNAT, "ONPREM-LB-VIPS-0B"}: rules(marked("ONPREM-LB-VIPS-0B",
				`-A ONPREM-LB-VIPS-0B -d 198.18.0.11/32 -p udp -m udp --dport 53 -m comment --comment "ns/dns:udp/53" -j `+dns)...),
			{tableNAT, web}: rules(
				"-A " + web + " -p tcp -j DNAT --to-destination 10.0.0.1:8080"),
			{tableNAT, dns}: rules(
				"-A " + dns + " -p udp -j DNAT --to-destination 10.0.0.3:53"),
			{tableFilter, firewallChain}: rules(
				"-A ONPREM-LB-FIREWALL -d 0.0.0.10/0.0.0.255 -j ONPREM-LB-FW-0A",
				"-A ONPREM-LB-FIREWALL -d 0.0.0.11/0.0.0.255 -j ONPREM-LB-FW-0B"),
			{tableFilter, "ONPREM-LB-FW-0A"}: rules(
				`-A ONPREM-LB-FW-0A -d 198.18.0.10/32 -p tcp -m tcp --dport 443 -m comment --comment "ns/web:tcp/443 has no endpoints"`+reject,
				`-A ONPREM-LB-FW-0A -d 198.18.0.10/32 -m comment --comment "port not served"`+reject,
				`-A ONPREM-LB-FW-0A -d 198.18.1.10/32 -m comment --comment "port not served"`+reject),
			{tableFilter, "ONPREM-LB-FW-0B"}: rules(
				`-A ONPREM-LB-FW-0B -d 198.18.0.11/32 -m comment --comment "port not served"` + reject),
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := buildRules(tt.services, tt.family, genConfig{mark: 0x2000})
			delete(got, chainKey{tableNAT, markMasqChain})
			delete(got, chainKey{tableNAT, postroutingChain})
			for _, k := range []chainKey{{tableMangle, guardChain}, {tableMangle, handoverChain}} {
				if got[k] == "" {
					delete(got, k)
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("buildRules (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBuildRulesBase(t *testing.T) {
	for _, tt := range []struct {
		name        string
		cfg         genConfig
		wantMasq    string
		wantPostrtg string
	}{
		{"default mark", genConfig{mark: 0x2000},
			rules("-A ONPREM-LB-MARK-MASQ -j MARK --or-mark 0x2000"),
			rules("-A ONPREM-LB-POSTROUTING -m mark ! --mark 0x2000/0x2000 -j RETURN",
				"-A ONPREM-LB-POSTROUTING -j MARK --xor-mark 0x2000",
				"-A ONPREM-LB-POSTROUTING -j MASQUERADE")},
		{"random-fully, other mark", genConfig{mark: 0x10000, randomFully: true},
			rules("-A ONPREM-LB-MARK-MASQ -j MARK --or-mark 0x10000"),
			rules("-A ONPREM-LB-POSTROUTING -m mark ! --mark 0x10000/0x10000 -j RETURN",
				"-A ONPREM-LB-POSTROUTING -j MARK --xor-mark 0x10000",
				"-A ONPREM-LB-POSTROUTING -j MASQUERADE --random-fully")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := buildRules(nil, IPv4, tt.cfg)
			if diff := cmp.Diff(tt.wantMasq, got[chainKey{tableNAT, markMasqChain}]); diff != "" {
				t.Errorf("MARK-MASQ (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantPostrtg, got[chainKey{tableNAT, postroutingChain}]); diff != "" {
				t.Errorf("POSTROUTING (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBuildRulesDoesNotMutate(t *testing.T) {
	in := []Service{
		{Namespace: "b", Name: "x", VIPs: []netip.Addr{addr("198.18.0.1")}, Ports: []Port{{Protocol: TCP, Port: 1, Endpoints: []Endpoint{{IP: addr("10.0.0.2"), Port: 1}, {IP: addr("10.0.0.1"), Port: 1}}}}},
		{Namespace: "a", Name: "x", VIPs: []netip.Addr{addr("198.18.0.2")}},
	}
	before := cmp.Diff(nil, in)
	buildRules(in, IPv4, genConfig{mark: 0x2000})
	if after := cmp.Diff(nil, in); after != before {
		t.Errorf("buildRules changed its input")
	}
}

func TestChainNamesFit(t *testing.T) {
	got := buildRules(manyServices(300), IPv4, genConfig{mark: 0x2000})
	for k := range got {
		if len(k.name) > 28 {
			t.Errorf("chain name %q has %d characters, iptables allows 28", k.name, len(k.name))
		}
	}
}

func TestDiffRules(t *testing.T) {
	a := chainKey{tableNAT, "ONPREM-LB-A"}
	b := chainKey{tableNAT, "ONPREM-LB-B"}
	c := chainKey{tableFilter, "ONPREM-LB-C"}
	for _, tt := range []struct {
		name          string
		applied, want ruleset
		wantDelta     delta
		wantInput     string
	}{{
		name:    "nothing changed: nothing sent",
		applied: ruleset{a: "-A ONPREM-LB-A -j X\n", c: ""},
		want:    ruleset{a: "-A ONPREM-LB-A -j X\n", c: ""},
	}, {
		name:      "one chain changed: only it is sent",
		applied:   ruleset{a: "-A ONPREM-LB-A -j X\n", b: "-A ONPREM-LB-B -j X\n", c: ""},
		want:      ruleset{a: "-A ONPREM-LB-A -j X\n", b: "-A ONPREM-LB-B -j Y\n", c: ""},
		wantDelta: delta{write: []chainKey{b}},
		wantInput: "*nat\n:ONPREM-LB-B - [0:0]\n-A ONPREM-LB-B -j Y\nCOMMIT\n",
	}, {
		name:      "new and removed chains, both tables",
		applied:   ruleset{a: "-A ONPREM-LB-A -j X\n", b: "-A ONPREM-LB-B -j X\n"},
		want:      ruleset{a: "-A ONPREM-LB-A -j X\n", c: "-A ONPREM-LB-C -j DROP\n"},
		wantDelta: delta{write: []chainKey{c}, delete: []chainKey{b}},
		wantInput: "*nat\n:ONPREM-LB-B - [0:0]\n-X ONPREM-LB-B\nCOMMIT\n*filter\n:ONPREM-LB-C - [0:0]\n-A ONPREM-LB-C -j DROP\nCOMMIT\n",
	}, {
		name:      "unknown content is rewritten",
		applied:   ruleset{a: unknownContent},
		want:      ruleset{a: ""},
		wantDelta: delta{write: []chainKey{a}},
		wantInput: "*nat\n:ONPREM-LB-A - [0:0]\nCOMMIT\n",
	}} {
		t.Run(tt.name, func(t *testing.T) {
			got := diffRules(tt.applied, tt.want, false)
			if diff := cmp.Diff(tt.wantDelta, got, cmp.AllowUnexported(delta{}, chainKey{})); diff != "" {
				t.Errorf("diffRules (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantInput, string(restoreInput(got, tt.want))); diff != "" {
				t.Errorf("restoreInput (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSplitRule(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want []string
	}{
		{`-m comment --comment "onprem-lb VIPs" -j ONPREM-LB-SERVICES`, []string{"-m", "comment", "--comment", "onprem-lb VIPs", "-j", "ONPREM-LB-SERVICES"}},
		{`-m comment --comment "a \"q\"" -j X`, []string{"-m", "comment", "--comment", `a "q"`, "-j", "X"}},
		{`-j X`, []string{"-j", "X"}},
	} {
		got, err := splitRule(tt.in)
		if err != nil {
			t.Fatalf("splitRule(%q): %v", tt.in, err)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("splitRule(%q) (-want +got):\n%s", tt.in, diff)
		}
	}
	if _, err := splitRule(`-m comment --comment "open`); err == nil {
		t.Errorf("splitRule of an open quote: no error")
	}
}

// The cache changes nothing but speed: a sequence of changes built with and
// without it gives the same rules.
func TestBuildRulesCache(t *testing.T) {
	cache := newRuleCache()
	svcs := manyServices(50)
	steps := []func(){
		func() {},
		func() { svcs[3].Ports[0].Endpoints = svcs[3].Ports[0].Endpoints[:1] },
		func() { svcs[4].Local = true },
		func() { svcs[5].SourceRanges = []netip.Prefix{prefix("192.0.2.0/24")} },
		func() { svcs[6].VIPs = append(svcs[6].VIPs, addr("198.18.0.6")) },
		func() { svcs = append(svcs[:7], svcs[8:]...) },
		func() { svcs[9].AffinityTimeout = time.Minute },
		func() { svcs[10].Ports[0].Endpoints[0].Local = false },
	}
	for i, step := range steps {
		step()
		cfg := genConfig{mark: 0x2000}
		if diff := cmp.Diff(buildRules(svcs, IPv4, cfg), buildRulesCached(svcs, IPv4, cfg, cache)); diff != "" {
			t.Errorf("step %d: cached build differs (-uncached +cached):\n%s", i, diff)
		}
	}
	if n := len(cache.entries); n != len(svcs) {
		t.Errorf("cache holds %d Services, want %d", n, len(svcs))
	}
}

// Up to commentLimit Services every per-VIP rule names its Service in a
// comment; above it none carries a comment, with or without the cache, and
// back below it the comments return.
func TestBuildRulesCommentsOnlyUpToLimit(t *testing.T) {
	cache := newRuleCache()
	cfg := genConfig{mark: 0x2000}
	for _, n := range []int{commentLimit, commentLimit + 1, commentLimit} {
		svcs := manyServices(n)
		svcs[0].Ports[0].Endpoints = nil // a "has no endpoints" reject
		rs := buildRulesCached(svcs, IPv4, cfg, cache)
		if diff := cmp.Diff(buildRules(svcs, IPv4, cfg), rs); diff != "" {
			t.Fatalf("%d Services: cached build differs (-uncached +cached):\n%s", n, diff)
		}
		var vipRules, commented int
		for k, content := range rs {
			if !strings.HasPrefix(k.name, vipsShardPrefix) && !strings.HasPrefix(k.name, fwShardPrefix) {
				continue
			}
			vipRules += strings.Count(content, " -d ")
			commented += strings.Count(content, " -m comment ")
		}
		want := vipRules
		if n > commentLimit {
			want = 0
		}
		if commented != want {
			t.Errorf("%d Services: %d of %d per-VIP rules carry a comment, want %d", n, commented, vipRules, want)
		}
		if n <= commentLimit && !strings.Contains(rs[chainKey{tableFilter, "ONPREM-LB-FW-00"}], `--comment "ns0/svc0:tcp/80 has no endpoints"`) {
			t.Errorf("%d Services: the reject of svc0 does not name it:\n%s", n, rs[chainKey{tableFilter, "ONPREM-LB-FW-00"}])
		}
	}
}

// buildRules builds the rules without a cache.
func buildRules(services []Service, f Family, cfg genConfig) ruleset {
	return buildRulesCached(services, f, cfg, nil)
}

func TestBuildRulesHandover(t *testing.T) {
	peerA, _ := net.ParseMAC("02:00:00:00:00:0b")
	peerB, _ := net.ParseMAC("02:00:00:00:00:0a")
	h := Handovers{
		VIPs: []Handover{
			{VIP: addr("198.18.0.20"), To: addr("198.18.0.12")},
			{VIP: addr("198.18.0.10"), To: addr("198.18.0.11")},
			{VIP: addr("2001:db8::10"), To: addr("2001:db8::11")},
			{VIP: addr("198.18.0.30"), To: addr("2001:db8::11")}, // no address of its family: not forwarded
		},
		Peers: []net.HardwareAddr{peerA, peerB, peerA},
	}
	for _, tt := range []struct {
		family Family
		want   string
	}{
		{IPv4, rules(
			"-A ONPREM-LB-HANDOVER -m mac --mac-source 02:00:00:00:00:0a -j RETURN",
			"-A ONPREM-LB-HANDOVER -m mac --mac-source 02:00:00:00:00:0b -j RETURN",
			`-A ONPREM-LB-HANDOVER -d 198.18.0.10/32 -m comment --comment "to the previous owner" -j TEE --gateway 198.18.0.11`,
			"-A ONPREM-LB-HANDOVER -d 198.18.0.10/32 -j DROP",
			`-A ONPREM-LB-HANDOVER -d 198.18.0.20/32 -m comment --comment "to the previous owner" -j TEE --gateway 198.18.0.12`,
			"-A ONPREM-LB-HANDOVER -d 198.18.0.20/32 -j DROP")},
		{IPv6, rules(
			"-A ONPREM-LB-HANDOVER -m mac --mac-source 02:00:00:00:00:0a -j RETURN",
			"-A ONPREM-LB-HANDOVER -m mac --mac-source 02:00:00:00:00:0b -j RETURN",
			`-A ONPREM-LB-HANDOVER -d 2001:db8::10/128 -m comment --comment "to the previous owner" -j TEE --gateway 2001:db8::11`,
			"-A ONPREM-LB-HANDOVER -d 2001:db8::10/128 -j DROP")},
	} {
		got := buildRules(nil, tt.family, genConfig{mark: 0x2000, handovers: h})[chainKey{tableMangle, handoverChain}]
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%s: ONPREM-LB-HANDOVER (-want +got):\n%s", tt.family, diff)
		}
	}
	if got := buildRules(nil, IPv4, genConfig{mark: 0x2000, handovers: Handovers{Peers: h.Peers}})[chainKey{tableMangle, handoverChain}]; got != "" {
		t.Errorf("without handovers, ONPREM-LB-HANDOVER has rules:\n%s", got)
	}
}
