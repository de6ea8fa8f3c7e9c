package config

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/onprem-lb/onprem-lb/ipam"
)

// FuzzParse checks that Parse never panics, returns a config or an *Error
// naming the source, and that every config it accepts is valid: ipam.New
// takes its pools, and written back as YAML it parses to the same config.
//
// Run it with a short -fuzzminimizetime (e.g. 2s): the seeds are whole
// commented documents, and minimizing each new input for the default 60 s
// stalls the fuzzer (0 execs/s for minutes) on a busy machine.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		designExample(f),
		designBlock(f, "**BGP mode**"),
		fullBGP,
		bgpDoc([]string{"bfd: {}", "holdTime: 10s"}, "announce: both", "bgpAdvertisement: {communities: [no-export]}"),
		bgpDoc(nil, "bgpAdvertisement: {largeCommunities: ['1:2:3'], peers: ['198.18.0.254']}"),
		"bgp: {asn: 1, peers: [{address: '2001:db8::1', asn: 2, keepaliveTime: 1s, bfd: {transmitInterval: 1m}}]}\n" + onePool("announce: bgp"),
		onePool("announce: bgp"),
		onePool(),
		onePool("autoAssign: false", "avoidBuggyIPs: true", "namespaces: [a, b]", "priority: 7", "interfaces: [eth0]",
			"exclude: [198.18.0.0-198.18.0.3]",
			"serviceSelector: {matchLabels: {app.kubernetes.io/name: web, e: ''}, matchExpressions: [{key: t, operator: NotIn, values: [x, y]}]}",
			"nodeSelector: {matchExpressions: [{key: a, operator: Exists}, {key: b, operator: DoesNotExist}, {key: c, operator: In, values: [z]}]}"),
		onePool() + "dataplane: iptables\nloadBalancerClass: example.com/lan\n",
		"pools:\n- name: a\n  addresses: [198.18.0.0/24]\n- name: b\n  addresses: [198.18.0.255-198.18.1.0, 2001:db8::/64]\n",
		"pools:\n- name: v6\n  addresses: ['::/0']\n",
		"pools:\n- name: v4\n  addresses: [0.0.0.0/0]\n  exclude: [255.255.255.255]\n",
		"", "pools:", "pools: [", "pools: []", "- a", "{", "\t", "pools: [~]", "~", "[]", "'", "\xff\xfe",
		"pools:\n- &p {name: a, addresses: [198.18.0.0/24]}\n- *p\n",
		"a: &a [*a]",
		"pools: [{name: a, addresses: [198.18.0.0/24], priority: 1e30}]",
		"pools: [{name: a, addresses: [198.18.0.0/24], priority: .nan}]",
		"pools: [{name: a, addresses: [198.18.0.0/24], serviceSelector: {matchLabels: {a: yes}}}]",
		"pools: [{name: a, addresses: [198.18.0.0/24], extra: {deep: [1, 2, {x: y}]}}]\n---\npools: []\n",
		"pools: [{name: a, addresses: [198.18.0.0/24]}]\n? [complex, key]\n: value\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("fuzz.yaml", data)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Source != "fuzz.yaml" || e.Reason == "" {
				t.Fatalf("Parse error %v (%T) is not an *Error naming the source and a reason", err, err)
			}
			if cfg != nil {
				t.Fatalf("Parse returned both a config and %v", err)
			}
			return
		}
		checkValid(t, cfg)
	})
}

// FuzzParseCommunity checks that ParseCommunity and ParseLargeCommunity never
// panic, fail only with ErrInvalidCommunity, and that what they accept
// survives String: parsed again, it is the same community.
func FuzzParseCommunity(f *testing.F) {
	for _, seed := range []string{"0:0", "65535:65535", "65000:100", "no-export", "graceful-shutdown",
		"64512:1:2", "4294967295:0:4294967295", "007:08", "65536:0", "1::2", ":", "", "-1:0", "+1:2", "1_0:2", "1:2:3:4"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if c, err := ParseCommunity(s); err != nil {
			if !errors.Is(err, ErrInvalidCommunity) {
				t.Fatalf("ParseCommunity(%q) error %v does not wrap ErrInvalidCommunity", s, err)
			}
		} else if again, err := ParseCommunity(c.String()); err != nil || again != c {
			t.Fatalf("ParseCommunity(%q) = %s, then ParseCommunity(%q) = %s, %v", s, c, c.String(), again, err)
		}
		if c, err := ParseLargeCommunity(s); err != nil {
			if !errors.Is(err, ErrInvalidCommunity) {
				t.Fatalf("ParseLargeCommunity(%q) error %v does not wrap ErrInvalidCommunity", s, err)
			}
		} else if again, err := ParseLargeCommunity(c.String()); err != nil || again != c {
			t.Fatalf("ParseLargeCommunity(%q) = %s, then ParseLargeCommunity(%q) = %s, %v", s, c, c.String(), again, err)
		}
	})
}

// checkValid checks that cfg, which Parse accepted, is valid and survives a
// round trip through YAML.
func checkValid(t *testing.T, cfg *Config) {
	t.Helper()
	if len(cfg.Pools) == 0 {
		t.Fatal("a config without pools")
	}
	if cfg.Dataplane != DataplaneKubeProxy && cfg.Dataplane != DataplaneIPTables {
		t.Fatalf("dataplane %q", cfg.Dataplane)
	}
	for i, p := range cfg.Pools {
		if p.NodeSelector == nil {
			t.Fatalf("pools[%d].NodeSelector is nil", i)
		}
		if p.Priority < 0 || p.Priority > MaxPriority {
			t.Fatalf("pools[%d].priority %d", i, p.Priority)
		}
		if p.Announce != AnnounceL2 && p.Announce != AnnounceBGP && p.Announce != AnnounceBoth {
			t.Fatalf("pools[%d].announce %q", i, p.Announce)
		}
		if p.Announce.BGP() && cfg.BGP == nil {
			t.Fatalf("pools[%d] announces over BGP without a bgp section", i)
		}
	}
	if b := cfg.BGP; b != nil {
		if len(b.Peers) == 0 || b.ASN == 0 || b.ASN == asTrans || b.ASN > maxASN {
			t.Fatalf("bgp section %+v", b)
		}
		for i, p := range b.Peers {
			if p.Name == "" || p.NodeSelector == nil || p.Port == 0 || p.HoldTime < minHoldTime ||
				p.KeepaliveTime < time.Second || p.KeepaliveTime > p.HoldTime {
				t.Fatalf("bgp.peers[%d] %+v", i, p)
			}
		}
	}
	if _, err := ipam.New(cfg.IPAMPools()); err != nil {
		t.Fatalf("ipam.New rejects the pools of an accepted config: %v", err)
	}
	doc := render(t, cfg)
	again, err := Parse("rendered.yaml", doc)
	if err != nil {
		t.Fatalf("the accepted config written back does not parse: %v\n%s", err, doc)
	}
	want := *cfg
	want.Warnings = nil // the rendered document has no unknown fields
	if !want.Equal(again) {
		t.Fatalf("round trip through YAML changed the config (-want +got):\n%s\n%s", cmp.Diff(&want, again, configCmp), doc)
	}
}

// stringsOf returns the String of each element of vs.
func stringsOf[T fmt.Stringer](vs []T) []string {
	var ss []string
	for _, v := range vs {
		ss = append(ss, v.String())
	}
	return ss
}

// render writes cfg as a pool file.
func render(t *testing.T, cfg *Config) []byte {
	t.Helper()
	sel := func(s labels.Selector) *metav1.LabelSelector {
		ls, err := metav1.ParseToLabelSelector(s.String())
		if err != nil {
			t.Fatalf("selector %q: %v", s, err)
		}
		return ls
	}
	var pools []map[string]any
	for _, p := range cfg.Pools {
		m := map[string]any{
			"name": p.Name, "addresses": stringsOf(p.Addresses), "exclude": stringsOf(p.Exclude),
			"autoAssign": p.AutoAssign, "avoidBuggyIPs": p.AvoidBuggyIPs, "namespaces": p.Namespaces,
			"priority": p.Priority, "interfaces": p.Interfaces, "nodeSelector": sel(p.NodeSelector),
		}
		if s, ok := p.ServiceSelector.(serviceSelector); ok {
			m["serviceSelector"] = sel(s.sel)
		}
		m["announce"] = p.Announce
		if a := p.BGPAdvertisement; p.Announce.BGP() {
			m["bgpAdvertisement"] = map[string]any{
				"communities": stringsOf(a.Communities), "largeCommunities": stringsOf(a.LargeCommunities),
				"localPreference": a.LocalPreference, "aggregationLength": a.AggregationLength,
				"aggregationLengthV6": a.AggregationLengthV6, "peers": a.Peers,
			}
		}
		pools = append(pools, m)
	}
	file := map[string]any{"pools": pools, "dataplane": cfg.Dataplane, "loadBalancerClass": cfg.LoadBalancerClass}
	if b := cfg.BGP; b != nil {
		var peers []map[string]any
		for _, p := range b.Peers {
			m := map[string]any{
				"name": p.Name, "address": p.Address.String(), "asn": p.ASN, "port": p.Port,
				"holdTime": p.HoldTime.String(), "keepaliveTime": p.KeepaliveTime.String(),
				"passwordFile": p.PasswordFile, "ebgpMultihop": p.EBGPMultihop, "nodeSelector": sel(p.NodeSelector),
			}
			if p.BFD.Enabled() {
				m["bfd"] = map[string]any{"transmitInterval": p.BFD.TransmitInterval.String(),
					"receiveInterval": p.BFD.ReceiveInterval.String(), "multiplier": p.BFD.Multiplier}
			}
			peers = append(peers, m)
		}
		file["bgp"] = map[string]any{"asn": b.ASN, "peers": peers}
		if b.RouterID.IsValid() {
			file["bgp"].(map[string]any)["routerID"] = b.RouterID.String()
		}
	}
	doc, err := yaml.Marshal(file)
	if err != nil {
		t.Fatal(err)
	}
	return doc
}
