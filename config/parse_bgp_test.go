package config

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/labels"
)

// fullBGP is a document with every field of the bgp: section and of a pool's
// BGP part.
const fullBGP = `bgp:
  asn: 64512
  routerID: 198.18.0.1
  peers:
  - name: tor-a
    address: 198.18.0.254
    asn: 64513
    port: 1179
    holdTime: 9s
    keepaliveTime: 2s
    passwordFile: /etc/onprem-lb/bgp/tor-a
    ebgpMultihop: 2
    nodeSelector: {matchLabels: {rack: a}}
    bfd:
      transmitInterval: 100ms
      receiveInterval: 200ms
      multiplier: 5
  - address: 2001:db8:ff::1
    asn: 4294967294
pools:
- name: p
  addresses: [198.18.0.0/24]
  announce: both
  bgpAdvertisement:
    communities: ["65000:100", "65535:0", no-export, no-advertise, no-export-subconfed, graceful-shutdown, "0:0", "65535:65535"]
    largeCommunities: ["64512:1:2", "4294967295:0:4294967295"]
    localPreference: 4294967295
    aggregationLength: 24
    aggregationLengthV6: 0
    peers: [tor-a]
`

// bgpDoc is a document of a bgp: section with one peer, its fields given by
// peerLines, and one pool "p" with the given lines.
func bgpDoc(peerLines []string, poolLines ...string) string {
	doc := "bgp:\n  asn: 64512\n  peers:\n  - address: 198.18.0.254\n    asn: 64513\n"
	for _, l := range peerLines {
		doc += "    " + l + "\n"
	}
	return doc + onePool(poolLines...)
}

// bgpSection is a document of the bgp: section bgp, in flow style, and
// onePool's pool.
func bgpSection(bgp string) string { return "bgp: " + bgp + "\n" + onePool() }

// onePeer is the bgp: section of bgpDoc without peerLines, changed by f.
func onePeer(f func(p *BGPPeer)) *BGP {
	p := BGPPeer{
		Name: "198.18.0.254",
		Session: Session{Address: netip.MustParseAddr("198.18.0.254"), ASN: 64513, Port: 179,
			HoldTime: 90 * time.Second, KeepaliveTime: 30 * time.Second},
		NodeSelector: labels.Everything(),
	}
	f(&p)
	return &BGP{ASN: 64512, Peers: []BGPPeer{p}}
}

func TestParseBGP(t *testing.T) {
	full := pool("p", "198.18.0.0/24")
	full.Announce = AnnounceBoth
	full.BGPAdvertisement = BGPAdvertisement{
		Communities:         []Community{65000<<16 | 100, GracefulShutdown, 0xffffff01, 0xffffff02, 0xffffff03, 0xffff0000, 0, 0xffffffff},
		LargeCommunities:    []LargeCommunity{{64512, 1, 2}, {4294967295, 0, 4294967295}},
		LocalPreference:     4294967295,
		AggregationLength:   24,
		AggregationLengthV6: 0,
		Peers:               []string{"tor-a"},
	}
	// withBGP returns a config of bgpDoc's pool p, changed by f, and the bgp: section b.
	withBGP := func(b *BGP, f func(p *Pool)) *Config {
		p := pool("p", "198.18.0.0/24")
		f(&p)
		return &Config{Pools: []Pool{p}, Dataplane: DataplaneKubeProxy, BGP: b}
	}
	noChange := func(*BGPPeer) {}
	tests := []struct {
		name string
		doc  string
		want *Config
	}{
		{
			name: "every field",
			doc:  fullBGP,
			want: &Config{Pools: []Pool{full}, Dataplane: DataplaneKubeProxy, BGP: &BGP{
				ASN:      64512,
				RouterID: netip.MustParseAddr("198.18.0.1"),
				Peers: []BGPPeer{{
					Name: "tor-a",
					Session: Session{
						Address: netip.MustParseAddr("198.18.0.254"), ASN: 64513, Port: 1179,
						HoldTime: 9 * time.Second, KeepaliveTime: 2 * time.Second, EBGPMultihop: 2,
						BFD: BFD{TransmitInterval: 100 * time.Millisecond, ReceiveInterval: 200 * time.Millisecond, Multiplier: 5},
					},
					PasswordFile: "/etc/onprem-lb/bgp/tor-a",
					NodeSelector: selector(t, "rack=a"),
				}, {
					Name: "2001:db8:ff::1",
					Session: Session{Address: netip.MustParseAddr("2001:db8:ff::1"), ASN: 4294967294, Port: 179,
						HoldTime: 90 * time.Second, KeepaliveTime: 30 * time.Second},
					NodeSelector: labels.Everything(),
				}},
			}},
		},
		{name: "defaults", doc: bgpDoc(nil), want: withBGP(onePeer(noChange), func(*Pool) {})},
		{name: "announce bgp, no bgpAdvertisement", doc: bgpDoc(nil, "announce: bgp"),
			want: withBGP(onePeer(noChange), func(p *Pool) { p.Announce = AnnounceBGP })},
		{name: "announce l2", doc: bgpDoc(nil, "announce: l2"), want: withBGP(onePeer(noChange), func(*Pool) {})},
		{name: "announce empty is l2", doc: onePool("announce: ''"), want: withBGP(nil, func(*Pool) {})},
		{name: "keepaliveTime default is a third of holdTime, in whole seconds", doc: bgpDoc([]string{"holdTime: 10s"}),
			want: withBGP(onePeer(func(p *BGPPeer) { p.HoldTime, p.KeepaliveTime = 10*time.Second, 3*time.Second }), func(*Pool) {})},
		{name: "holdTime minimum", doc: bgpDoc([]string{"holdTime: 3s"}),
			want: withBGP(onePeer(func(p *BGPPeer) { p.HoldTime, p.KeepaliveTime = 3*time.Second, time.Second }), func(*Pool) {})},
		{name: "holdTime maximum, in minutes", doc: bgpDoc([]string{"holdTime: 1092m15s", "keepaliveTime: 1092m15s"}),
			want: withBGP(onePeer(func(p *BGPPeer) { p.HoldTime, p.KeepaliveTime = 65535*time.Second, 65535*time.Second }), func(*Pool) {})},
		{name: "bfd defaults", doc: bgpDoc([]string{"bfd: {}"}),
			want: withBGP(onePeer(func(p *BGPPeer) {
				p.BFD = BFD{TransmitInterval: 300 * time.Millisecond, ReceiveInterval: 300 * time.Millisecond, Multiplier: 3}
			}), func(*Pool) {})},
		{name: "bfd limits", doc: bgpDoc([]string{"bfd: {transmitInterval: 10ms, receiveInterval: 1m, multiplier: 255}"}),
			want: withBGP(onePeer(func(p *BGPPeer) {
				p.BFD = BFD{TransmitInterval: 10 * time.Millisecond, ReceiveInterval: time.Minute, Multiplier: 255}
			}), func(*Pool) {})},
		{name: "limits", doc: bgpDoc([]string{"port: 65535", "ebgpMultihop: 255"}),
			want: withBGP(onePeer(func(p *BGPPeer) { p.Port, p.EBGPMultihop = 65535, 255 }), func(*Pool) {})},
		{name: "ebgpMultihop 0 is directly connected", doc: bgpDoc([]string{"ebgpMultihop: 0"}), want: withBGP(onePeer(noChange), func(*Pool) {})},
		{name: "IPv6 peer address is the name", doc: bgpSection("{asn: 64512, peers: [{address: '2001:db8::1', asn: 64513}]}"),
			want: withBGP(onePeer(func(p *BGPPeer) { p.Name, p.Address = "2001:db8::1", netip.MustParseAddr("2001:db8::1") }), func(*Pool) {})},
		{name: "same address, other port", doc: bgpSection("{asn: 1, peers: [{address: 198.18.0.254, asn: 2}, {name: b, address: 198.18.0.254, asn: 2, port: 1179}]}"),
			want: withBGP(&BGP{ASN: 1, Peers: []BGPPeer{
				onePeer(func(p *BGPPeer) { p.ASN = 2 }).Peers[0],
				onePeer(func(p *BGPPeer) { p.Name, p.ASN, p.Port = "b", 2, 1179 }).Peers[0],
			}}, func(*Pool) {})},
		{name: "bgp null is no bgp section", doc: "bgp:\n" + onePool(), want: withBGP(nil, func(*Pool) {})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkParse(t, tt.doc, tt.want) })
	}
}

func TestParseBGPWarnings(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want []string
	}{
		{name: "bgpAdvertisement with announce l2", doc: bgpDoc(nil, "bgpAdvertisement: {communities: ['1:2']}"),
			want: []string{"pools[0].bgpAdvertisement: ignored: announce is l2"}},
		{name: "unknown fields", doc: "bgp: {asn: 1, peers: [{address: 198.18.0.1, asn: 2, hold: 3s, bfd: {minTx: 1ms}}], routerId: 1.2.3.4}\n" +
			onePool("announce: bgp", "bgpAdvertisement: {localPref: 100}"),
			want: []string{"pools[0].bgpAdvertisement.localPref: unknown field", "bgp.routerId: unknown field",
				"bgp.peers[0].hold: unknown field", "bgp.peers[0].bfd.minTx: unknown field"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse("pools.yaml", []byte(tt.doc))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if diff := cmp.Diff(tt.want, got.Warnings); diff != "" {
				t.Errorf("Warnings (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("an ignored bgpAdvertisement is the default", func(t *testing.T) {
		got, err := Parse("pools.yaml", []byte(bgpDoc(nil, "announce: l2", "bgpAdvertisement: {communities: ['1:2'], peers: ['198.18.0.254'], aggregationLength: 24}")))
		if err != nil {
			t.Fatal(err)
		}
		want := pool("p", "198.18.0.0/24").BGPAdvertisement
		if diff := cmp.Diff(want, got.Pools[0].BGPAdvertisement, configCmp); diff != "" {
			t.Errorf("BGPAdvertisement (-want +got):\n%s", diff)
		}
	})
}

func TestParseBGPErrors(t *testing.T) {
	peer := func(lines ...string) string { return bgpDoc(lines) }
	pool := func(lines ...string) string { return bgpDoc(nil, lines...) }
	tests := []struct {
		name   string
		doc    string
		field  string // want Error.Field
		reason string // want in Error.Reason
		is     error  // want errors.Is, if set
	}{
		// bgp
		{name: "bgp a list", doc: bgpSection("[1]"), field: "bgp", reason: "must be a map, not a list"},
		{name: "asn missing", doc: bgpSection("{peers: [{address: 198.18.0.1, asn: 1}]}"), field: "bgp.asn", reason: "is required"},
		{name: "asn 0", doc: bgpSection("{asn: 0, peers: [{address: 198.18.0.1, asn: 1}]}"), field: "bgp.asn", reason: "0 is less than the minimum, 1"},
		{name: "asn 4294967295", doc: bgpSection("{asn: 4294967295, peers: [{address: 198.18.0.1, asn: 1}]}"), field: "bgp.asn", reason: "4294967295 is more than the maximum, 4294967294"},
		{name: "asn AS_TRANS", doc: bgpSection("{asn: 23456, peers: [{address: 198.18.0.1, asn: 1}]}"), field: "bgp.asn", reason: "AS_TRANS"},
		{name: "asn a string", doc: bgpSection("{asn: '64512', peers: [{address: 198.18.0.1, asn: 1}]}"), field: "bgp.asn", reason: "must be an integer, not a string"},
		{name: "asn dotted", doc: bgpSection("{asn: 1.10, peers: [{address: 198.18.0.1, asn: 1}]}"), field: "bgp.asn", reason: "must be an integer, not 1.1"},
		{name: "routerID IPv6", doc: bgpSection("{asn: 1, routerID: '2001:db8::1', peers: [{address: 198.18.0.1, asn: 2}]}"), field: "bgp.routerID", reason: "not an IPv4 address"},
		{name: "routerID garbage", doc: bgpSection("{asn: 1, routerID: tor, peers: [{address: 198.18.0.1, asn: 2}]}"), field: "bgp.routerID", reason: `"tor"`},
		{name: "routerID 0.0.0.0", doc: bgpSection("{asn: 1, routerID: 0.0.0.0, peers: [{address: 198.18.0.1, asn: 2}]}"), field: "bgp.routerID", reason: "not a unicast address"},
		{name: "peers missing", doc: bgpSection("{asn: 1}"), field: "bgp.peers", reason: "at least one peer is required"},
		{name: "peers empty", doc: bgpSection("{asn: 1, peers: []}"), field: "bgp.peers", reason: "at least one peer is required"},
		{name: "peer a string", doc: bgpSection("{asn: 1, peers: [tor]}"), field: "bgp.peers[0]", reason: "must be a map, not a string"},
		// peers
		{name: "address missing", doc: bgpSection("{asn: 1, peers: [{asn: 2}]}"), field: "bgp.peers[0].address", reason: "is required"},
		{name: "address garbage", doc: bgpSection("{asn: 1, peers: [{address: tor-a, asn: 2}]}"), field: "bgp.peers[0].address", reason: `"tor-a"`},
		{name: "address with zone", doc: bgpSection("{asn: 1, peers: [{address: 'fe80::1%eth0', asn: 2}]}"), field: "bgp.peers[0].address", reason: "has a zone"},
		{name: "address unspecified", doc: bgpSection("{asn: 1, peers: [{address: '::', asn: 2}]}"), field: "bgp.peers[0].address", reason: "not a unicast address"},
		{name: "address multicast", doc: bgpSection("{asn: 1, peers: [{address: 224.0.0.5, asn: 2}]}"), field: "bgp.peers[0].address", reason: "not a unicast address"},
		{name: "address IPv4-mapped", doc: bgpSection("{asn: 1, peers: [{address: '::ffff:198.18.0.1', asn: 2}]}"), field: "bgp.peers[0].address", reason: "write it as 198.18.0.1"},
		{name: "address a prefix", doc: bgpSection("{asn: 1, peers: [{address: 198.18.0.0/24, asn: 2}]}"), field: "bgp.peers[0].address", reason: `"198.18.0.0/24"`},
		{name: "peer asn missing", doc: bgpSection("{asn: 1, peers: [{address: 198.18.0.1}]}"), field: "bgp.peers[0].asn", reason: "is required"},
		{name: "peer asn AS_TRANS", doc: bgpSection("{asn: 1, peers: [{address: 198.18.0.1, asn: 23456}]}"), field: "bgp.peers[0].asn", reason: "23456 is AS_TRANS"},
		{name: "peer asn too big", doc: bgpSection("{asn: 1, peers: [{address: 198.18.0.1, asn: 4294967296}]}"), field: "bgp.peers[0].asn", reason: "more than the maximum, 4294967294"},
		{name: "peer asn negative", doc: bgpSection("{asn: 1, peers: [{address: 198.18.0.1, asn: -1}]}"), field: "bgp.peers[0].asn", reason: "less than the minimum, 1"},
		{name: "port 0", doc: peer("port: 0"), field: "bgp.peers[0].port", reason: "0 is less than the minimum, 1"},
		{name: "port too big", doc: peer("port: 65536"), field: "bgp.peers[0].port", reason: "65536 is more than the maximum, 65535"},
		{name: "port a string", doc: peer("port: bgp"), field: "bgp.peers[0].port", reason: "must be an integer"},
		{name: "holdTime 0s", doc: peer("holdTime: 0s"), field: "bgp.peers[0].holdTime", reason: "0s is refused (it would disable keepalives and the hold timer): the minimum is 3s"},
		{name: "holdTime 2s", doc: peer("holdTime: 2s"), field: "bgp.peers[0].holdTime", reason: "2s is less than the minimum, 3s"},
		{name: "holdTime too long", doc: peer("holdTime: 65536s"), field: "bgp.peers[0].holdTime", reason: "65536s is more than the maximum, 65535s"},
		{name: "holdTime fractional", doc: peer("holdTime: 4.5s"), field: "bgp.peers[0].holdTime", reason: "4.5s is not a whole number of s"},
		{name: "holdTime 0 without unit", doc: peer("holdTime: 0"), field: "bgp.peers[0].holdTime", reason: "0 has no unit: add one, e.g. 0s"},
		{name: "holdTime without unit", doc: peer("holdTime: 90"), field: "bgp.peers[0].holdTime", reason: "90 has no unit: add one, e.g. 90s"},
		{name: "holdTime quoted without unit", doc: peer("holdTime: '90'"), field: "bgp.peers[0].holdTime", reason: "90 has no unit: add one, e.g. 90s"},
		{name: "holdTime garbage", doc: peer("holdTime: long"), field: "bgp.peers[0].holdTime", reason: `"long" is not a duration`},
		{name: "holdTime negative", doc: peer("holdTime: -9s"), field: "bgp.peers[0].holdTime", reason: "-9s is less than the minimum, 3s"},
		{name: "holdTime a list", doc: peer("holdTime: [9s]"), field: "bgp.peers[0].holdTime", reason: "must be a string, not a list"},
		{name: "keepaliveTime more than holdTime", doc: peer("holdTime: 9s", "keepaliveTime: 10s"), field: "bgp.peers[0].keepaliveTime", reason: "10s is more than the maximum, 9s"},
		{name: "keepaliveTime more than the default holdTime", doc: peer("keepaliveTime: 91s"), field: "bgp.peers[0].keepaliveTime", reason: "91s is more than the maximum, 90s"},
		{name: "keepaliveTime 0s", doc: peer("keepaliveTime: 0s"), field: "bgp.peers[0].keepaliveTime", reason: "0s is less than the minimum, 1s"},
		{name: "keepaliveTime in ms", doc: peer("keepaliveTime: 1500ms"), field: "bgp.peers[0].keepaliveTime", reason: "not a whole number of s"},
		{name: "passwordFile relative", doc: peer("passwordFile: bgp/tor-a"), field: "bgp.peers[0].passwordFile", reason: `"bgp/tor-a" is not an absolute path`},
		{name: "passwordFile a number", doc: peer("passwordFile: 1"), field: "bgp.peers[0].passwordFile", reason: "must be a string"},
		{name: "ebgpMultihop too big", doc: peer("ebgpMultihop: 256"), field: "bgp.peers[0].ebgpMultihop", reason: "256 is more than the maximum, 255"},
		{name: "ebgpMultihop negative", doc: peer("ebgpMultihop: -1"), field: "bgp.peers[0].ebgpMultihop", reason: "-1 is negative"},
		{name: "nodeSelector bad", doc: peer("nodeSelector: {matchLabels: {rack: 'a b'}}"), field: "bgp.peers[0].nodeSelector.matchLabels[rack]", reason: "label value"},
		{name: "name a number", doc: peer("name: 1"), field: "bgp.peers[0].name", reason: "must be a string, not a number"},
		{name: "duplicate names", doc: bgpSection("{asn: 1, peers: [{name: tor, address: 198.18.0.1, asn: 2}, {address: 198.18.0.2, asn: 2}, {name: tor, address: 198.18.0.3, asn: 2}]}"),
			field: "bgp.peers[2].name", reason: `duplicate name "tor", also used by bgp.peers[0]`},
		{name: "duplicate default names", doc: bgpSection("{asn: 1, peers: [{address: 198.18.0.1, asn: 2}, {address: 198.18.0.1, asn: 2, port: 1179}]}"),
			field: "bgp.peers[1].name", reason: `duplicate name "198.18.0.1", also used by bgp.peers[0]`},
		{name: "duplicate address and port", doc: bgpSection("{asn: 1, peers: [{name: a, address: 198.18.0.1, asn: 2}, {name: b, address: 198.18.0.1, asn: 3, port: 179}]}"),
			field: "bgp.peers[1].address", reason: "198.18.0.1 port 179 is also the peer bgp.peers[0]"},
		// bfd
		{name: "bfd a boolean", doc: peer("bfd: true"), field: "bgp.peers[0].bfd", reason: "must be a map, not a boolean"},
		{name: "bfd transmitInterval too short", doc: peer("bfd: {transmitInterval: 9ms}"), field: "bgp.peers[0].bfd.transmitInterval", reason: "9ms is less than the minimum, 10ms"},
		{name: "bfd transmitInterval too long", doc: peer("bfd: {transmitInterval: 61s}"), field: "bgp.peers[0].bfd.transmitInterval", reason: "61000ms is more than the maximum, 60000ms"},
		{name: "bfd receiveInterval sub-millisecond", doc: peer("bfd: {receiveInterval: 300500us}"), field: "bgp.peers[0].bfd.receiveInterval", reason: "not a whole number of ms"},
		{name: "bfd receiveInterval without unit", doc: peer("bfd: {receiveInterval: 300}"), field: "bgp.peers[0].bfd.receiveInterval", reason: "300 has no unit: add one, e.g. 300ms"},
		{name: "bfd multiplier 0", doc: peer("bfd: {multiplier: 0}"), field: "bgp.peers[0].bfd.multiplier", reason: "0 is less than the minimum, 1"},
		{name: "bfd multiplier too big", doc: peer("bfd: {multiplier: 256}"), field: "bgp.peers[0].bfd.multiplier", reason: "256 is more than the maximum, 255"},
		// announce
		{name: "announce unknown", doc: pool("announce: ospf"), field: "pools[0].announce", reason: `unknown announce "ospf", want "l2", "bgp" or "both"`},
		{name: "announce a list", doc: pool("announce: [l2]"), field: "pools[0].announce", reason: "must be a string, not a list"},
		{name: "announce wrong case", doc: pool("announce: BGP"), field: "pools[0].announce", reason: `unknown announce "BGP"`},
		{name: "announce bgp without bgp section", doc: onePool("announce: bgp"), field: "pools[0].announce", reason: "announce bgp needs a bgp section"},
		{name: "announce both without bgp section", doc: "pools:\n- name: a\n  addresses: [198.18.0.0/24]\n- name: b\n  addresses: [198.18.1.0/24]\n  announce: both\n",
			field: "pools[1].announce", reason: "announce both needs a bgp section"},
		// bgpAdvertisement
		{name: "bgpAdvertisement a list", doc: pool("announce: bgp", "bgpAdvertisement: []"), field: "pools[0].bgpAdvertisement", reason: "must be a map, not a list"},
		{name: "community garbage", doc: pool("announce: bgp", "bgpAdvertisement: {communities: ['1:2', no-peer]}"), field: "pools[0].bgpAdvertisement.communities[1]", reason: `invalid community "no-peer"`, is: ErrInvalidCommunity},
		{name: "community too big", doc: pool("announce: bgp", "bgpAdvertisement: {communities: ['65536:0']}"), field: "pools[0].bgpAdvertisement.communities[0]", reason: "more than 65535", is: ErrInvalidCommunity},
		{name: "community a number", doc: pool("announce: bgp", "bgpAdvertisement: {communities: [100]}"), field: "pools[0].bgpAdvertisement.communities[0]", reason: "must be a string, not a number"},
		{name: "community in an l2 pool", doc: pool("bgpAdvertisement: {communities: ['1']}"), field: "pools[0].bgpAdvertisement.communities[0]", reason: "invalid community", is: ErrInvalidCommunity},
		{name: "large community garbage", doc: pool("announce: bgp", "bgpAdvertisement: {largeCommunities: ['1:2']}"), field: "pools[0].bgpAdvertisement.largeCommunities[0]", reason: `invalid community "1:2": want A:B:C`, is: ErrInvalidCommunity},
		{name: "large community too big", doc: pool("announce: bgp", "bgpAdvertisement: {largeCommunities: ['4294967296:0:0']}"), field: "pools[0].bgpAdvertisement.largeCommunities[0]", reason: "more than 4294967295", is: ErrInvalidCommunity},
		{name: "localPreference negative", doc: pool("announce: bgp", "bgpAdvertisement: {localPreference: -1}"), field: "pools[0].bgpAdvertisement.localPreference", reason: "-1 is negative"},
		{name: "localPreference too big", doc: pool("announce: bgp", "bgpAdvertisement: {localPreference: 4294967296}"), field: "pools[0].bgpAdvertisement.localPreference", reason: "more than the maximum, 4294967295"},
		{name: "aggregationLength shorter than the pool's prefix", doc: pool("announce: bgp", "bgpAdvertisement: {aggregationLength: 23}"), field: "pools[0].bgpAdvertisement.aggregationLength",
			reason: "23 would advertise addresses outside the pool: addresses[0] (198.18.0.0/24) is not made of whole /23 prefixes; use 24 or more"},
		{name: "aggregationLength 0 would advertise a default route", doc: pool("announce: bgp", "bgpAdvertisement: {aggregationLength: 0}"), field: "pools[0].bgpAdvertisement.aggregationLength",
			reason: "use 24 or more"},
		{name: "aggregationLength over a range that is not whole prefixes", doc: strings.Replace(pool("announce: both", "bgpAdvertisement: {aggregationLength: 28}"), "198.18.0.0/24", "198.18.0.200-198.18.0.239", 1),
			field: "pools[0].bgpAdvertisement.aggregationLength", reason: "addresses[0] (198.18.0.200-198.18.0.239) is not made of whole /28 prefixes; use 29 or more"},
		{name: "aggregationLengthV6 shorter than the pool's prefix", doc: strings.Replace(pool("announce: bgp", "bgpAdvertisement: {aggregationLengthV6: 56}"), "198.18.0.0/24", "2001:db8:40::/64", 1),
			field: "pools[0].bgpAdvertisement.aggregationLengthV6", reason: "use 64 or more"},
		{name: "aggregationLength too long", doc: pool("announce: bgp", "bgpAdvertisement: {aggregationLength: 33}"), field: "pools[0].bgpAdvertisement.aggregationLength", reason: "33 is more than the maximum, 32"},
		{name: "aggregationLength negative", doc: pool("announce: bgp", "bgpAdvertisement: {aggregationLength: -1}"), field: "pools[0].bgpAdvertisement.aggregationLength", reason: "-1 is negative"},
		{name: "aggregationLengthV6 too long", doc: pool("announce: bgp", "bgpAdvertisement: {aggregationLengthV6: 129}"), field: "pools[0].bgpAdvertisement.aggregationLengthV6", reason: "129 is more than the maximum, 128"},
		{name: "unknown peer", doc: pool("announce: bgp", "bgpAdvertisement: {peers: ['198.18.0.254', tor-b]}"), field: "pools[0].bgpAdvertisement.peers[1]", reason: `unknown peer "tor-b"`},
		{name: "unknown peer in an l2 pool", doc: pool("bgpAdvertisement: {peers: [tor-b]}"), field: "pools[0].bgpAdvertisement.peers[0]", reason: `unknown peer "tor-b"`},
		{name: "peers a string", doc: pool("announce: bgp", "bgpAdvertisement: {peers: tor-a}"), field: "pools[0].bgpAdvertisement.peers", reason: "must be a list, not a string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkParseError(t, tt.doc, tt.field, tt.reason, tt.is) })
	}
}

func TestParseCommunity(t *testing.T) {
	testCommunityParser(t, ParseCommunity, map[string]Community{
		"0:0":                 0,
		"65000:100":           65000<<16 | 100,
		"65535:65535":         0xffffffff,
		"007:08":              7<<16 | 8,
		"no-export":           0xffffff01,
		"no-advertise":        0xffffff02,
		"no-export-subconfed": 0xffffff03,
		"graceful-shutdown":   0xffff0000,
	}, "", "1", "1:2:3", ":1", "1:", "65536:0", "0:65536", "-1:0", "+1:0", "1 :2", "0x10:0", "No-Export", "no_export", "１:2")
}

func TestParseLargeCommunity(t *testing.T) {
	testCommunityParser(t, ParseLargeCommunity, map[string]LargeCommunity{
		"0:0:0":                            {},
		"64512:1:2":                        {64512, 1, 2},
		"4294967295:4294967295:4294967295": {1<<32 - 1, 1<<32 - 1, 1<<32 - 1},
	}, "", "1:2", "1:2:3:4", "1::3", "4294967296:0:0", "-1:0:0", "a:b:c", "graceful-shutdown")
}

// testCommunityParser checks that parse returns good[s] for each key s, and
// an error wrapping ErrInvalidCommunity for each of bad.
func testCommunityParser[C comparable](t *testing.T, parse func(string) (C, error), good map[string]C, bad ...string) {
	for in, want := range good {
		t.Run(in, func(t *testing.T) {
			got, err := parse(in)
			if err != nil || got != want {
				t.Errorf("parse(%q) = %v, %v, want %v", in, got, err, want)
			}
		})
	}
	for _, in := range bad {
		t.Run("bad "+in, func(t *testing.T) {
			if c, err := parse(in); !errors.Is(err, ErrInvalidCommunity) {
				t.Errorf("parse(%q) = %v, %v, want an error wrapping ErrInvalidCommunity", in, c, err)
			}
		})
	}
}

func TestEqualBGP(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want bool
	}{
		{name: "same", doc: fullBGP, want: true},
		{name: "defaults written out", doc: strings.Replace(fullBGP, "asn: 4294967294\n", "asn: 4294967294\n    port: 179\n    holdTime: 1m30s\n    keepaliveTime: 30s\n    nodeSelector: {}\n", 1), want: true},
		{name: "no bgp section", doc: onePool()},
		{name: "asn", doc: strings.Replace(fullBGP, "asn: 64512", "asn: 64514", 1)},
		{name: "routerID", doc: strings.Replace(fullBGP, "routerID: 198.18.0.1", "routerID: 198.18.0.2", 1)},
		{name: "peer name", doc: strings.Replace(fullBGP, "  - address: 2001:db8:ff::1", "  - name: tor-b\n    address: 2001:db8:ff::1", 1)},
		{name: "peer address", doc: strings.Replace(fullBGP, "2001:db8:ff::1", "2001:db8:ff::2", 1)},
		{name: "peer port", doc: strings.Replace(fullBGP, "port: 1179", "port: 1180", 1)},
		{name: "holdTime", doc: strings.Replace(fullBGP, "holdTime: 9s", "holdTime: 10s", 1)},
		{name: "passwordFile", doc: strings.Replace(fullBGP, "bgp/tor-a", "bgp/tor-b", 1)},
		{name: "peer nodeSelector", doc: strings.Replace(fullBGP, "rack: a", "rack: b", 1)},
		{name: "bfd", doc: strings.Replace(fullBGP, "multiplier: 5", "multiplier: 4", 1)},
		{name: "another peer", doc: strings.Replace(fullBGP, "pools:", "  - {address: 198.18.0.253, asn: 1}\npools:", 1)},
		{name: "announce", doc: strings.Replace(fullBGP, "announce: both", "announce: bgp", 1)},
		{name: "community", doc: strings.Replace(fullBGP, "65000:100", "65000:101", 1)},
		{name: "large community", doc: strings.Replace(fullBGP, "64512:1:2", "64512:1:3", 1)},
		{name: "localPreference", doc: strings.Replace(fullBGP, "localPreference: 4294967295", "localPreference: 1", 1)},
		{name: "aggregationLength", doc: strings.Replace(fullBGP, "aggregationLength: 24", "aggregationLength: 25", 1)},
		{name: "aggregationLengthV6", doc: strings.Replace(fullBGP, "aggregationLengthV6: 0", "aggregationLengthV6: 64", 1)},
		{name: "advertisement peers", doc: strings.Replace(fullBGP, "peers: [tor-a]", "peers: [tor-a, '2001:db8:ff::1']", 1)},
	}
	a, err := Parse("a.yaml", []byte(fullBGP))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkEqual(t, a, tt.doc, tt.want) })
	}
}

// TestDesignBGPExample parses the BGP mode example of docs/DESIGN.md.
func TestDesignBGPExample(t *testing.T) {
	lan := pool("lan", "198.18.0.200-198.18.0.239")
	lan.Announce = AnnounceBGP
	lan.BGPAdvertisement = BGPAdvertisement{
		Communities:      []Community{65000<<16 | 100, NoExport},
		LargeCommunities: []LargeCommunity{{64512, 1, 2}},
		LocalPreference:  200, AggregationLength: 32, AggregationLengthV6: 128,
		Peers: []string{"tor-a"},
	}
	want := &Config{Pools: []Pool{lan}, Dataplane: DataplaneKubeProxy, BGP: &BGP{
		ASN:      64512,
		RouterID: netip.MustParseAddr("198.18.0.1"),
		Peers: []BGPPeer{{
			Name: "tor-a",
			Session: Session{
				Address: netip.MustParseAddr("198.18.0.254"), ASN: 64513, Port: 179,
				HoldTime: 9 * time.Second, KeepaliveTime: 3 * time.Second, EBGPMultihop: 2,
				BFD: BFD{TransmitInterval: 300 * time.Millisecond, ReceiveInterval: 300 * time.Millisecond, Multiplier: 3},
			},
			PasswordFile: "/etc/onprem-lb/bgp/tor-a",
			NodeSelector: labels.Everything(),
		}},
	}}
	got, err := Parse("DESIGN.md", []byte(designBlock(t, "**BGP mode**")))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got, configCmp); diff != "" {
		t.Errorf("Parse (-want +got):\n%s", diff)
	}
}
