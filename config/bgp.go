package config

import (
	"fmt"
	"net/netip"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/labels"
)

// BGP is the file's bgp: section: how the speakers speak BGP to the upstream
// routers.
type BGP struct {
	// ASN is the speakers' own autonomous system number, 1 to 4294967294.
	ASN uint32
	// RouterID is the BGP identifier, an IPv4 address; invalid (the zero
	// Addr) when the file gives none: each speaker then uses its node's
	// IPv4 address.
	RouterID netip.Addr
	// Peers are the routers to peer with, in file order, with unique names.
	Peers []BGPPeer
}

// BGPPeer is one router the speakers peer with.
type BGPPeer struct {
	// Name names the peer in pools' bgpAdvertisement.peers, in metrics and
	// in events; the file's name, else the address as text.
	Name string
	Session
	// PasswordFile is the file holding the TCP MD5 password, "" for none.
	// The speaker reads it (it is usually a mounted Secret).
	PasswordFile string
	// NodeSelector selects the nodes whose speakers peer with this router;
	// labels.Everything() when the file gives none. Never nil.
	NodeSelector labels.Selector
}

// Session is what a BGP session is made of: two Sessions that are == need
// no reset of the session between them. All durations are whole seconds
// except BFD's.
type Session struct {
	// Address is the router's address, IPv4 or IPv6.
	Address netip.Addr
	// ASN is the router's autonomous system number.
	ASN uint32
	// Port is the router's TCP port; 179 when the file gives none.
	Port uint16
	// HoldTime is the proposed hold time, 3 s to 65535 s; 90 s when the
	// file gives none. Never 0.
	HoldTime time.Duration
	// KeepaliveTime is the keepalive interval, 1 s to the hold time; a
	// third of the hold time (in whole seconds) when the file gives none.
	KeepaliveTime time.Duration
	// EBGPMultihop is the TTL of packets to an eBGP peer that is not
	// directly connected, 0 (the default) for a connected peer.
	EBGPMultihop uint8
	// BFD is the BFD session's settings; the zero BFD means no BFD.
	BFD BFD
}

// BFD is the settings of a BFD session with a peer (RFC 5880).
type BFD struct {
	// TransmitInterval is the desired minimum transmit interval and
	// ReceiveInterval the required minimum receive interval: whole
	// milliseconds, 10 ms to 60 s; 300 ms when the file gives none.
	TransmitInterval, ReceiveInterval time.Duration
	// Multiplier is the detection multiplier, 1 to 255; 0 only in the zero
	// BFD (no BFD).
	Multiplier uint8
}

// equal reports whether b and o are the same section; nil is equal only to
// nil.
func (b *BGP) equal(o *BGP) bool {
	if b == nil || o == nil {
		return b == o
	}
	return b.ASN == o.ASN && b.RouterID == o.RouterID && slices.EqualFunc(b.Peers, o.Peers, BGPPeer.equal)
}

func (p BGPPeer) equal(o BGPPeer) bool {
	return p.Name == o.Name && p.Session == o.Session && p.PasswordFile == o.PasswordFile &&
		selectorKey(p.NodeSelector) == selectorKey(o.NodeSelector)
}

func (a BGPAdvertisement) equal(o BGPAdvertisement) bool {
	return slices.Equal(a.Communities, o.Communities) && slices.Equal(a.LargeCommunities, o.LargeCommunities) &&
		a.LocalPreference == o.LocalPreference && a.AggregationLength == o.AggregationLength &&
		a.AggregationLengthV6 == o.AggregationLengthV6 && slices.Equal(a.Peers, o.Peers)
}

// Enabled reports whether b asks for a BFD session.
func (b BFD) Enabled() bool { return b.Multiplier != 0 }

// Announce says how a pool's addresses reach the network.
type Announce string

const (
	// AnnounceL2: one node answers ARP/NDP for each address. The default.
	AnnounceL2 Announce = "l2"
	// AnnounceBGP: every node that can serve an address advertises it to
	// its BGP peers.
	AnnounceBGP Announce = "bgp"
	// AnnounceBoth: both at once.
	AnnounceBoth Announce = "both"
)

// L2 reports whether addresses announced as a are announced by ARP/NDP; "" is the default,
// AnnounceL2.
func (a Announce) L2() bool { return a == "" || a == AnnounceL2 || a == AnnounceBoth }

// BGP reports whether addresses announced as a are advertised over BGP.
func (a Announce) BGP() bool { return a == AnnounceBGP || a == AnnounceBoth }

// BGPAdvertisement is how a pool's addresses are advertised over BGP.
type BGPAdvertisement struct {
	// Communities are attached to every route (RFC 1997), in file order.
	Communities []Community
	// LargeCommunities are attached to every route (RFC 8092).
	LargeCommunities []LargeCommunity
	// LocalPreference is the LOCAL_PREF of routes to iBGP peers; 0 when the
	// file gives none (the attribute is then not sent).
	LocalPreference uint32
	// AggregationLength and AggregationLengthV6 are the prefix lengths
	// advertised for IPv4 and IPv6 addresses: 32 and 128 unless the file
	// gives shorter ones.
	AggregationLength, AggregationLengthV6 int
	// Peers names the peers that get the routes; empty means every peer.
	Peers []string
}

// Community is a BGP community, the two 16-bit halves in one uint32.
type Community uint32

// String returns c as "high:low", e.g. "65535:0".
func (c Community) String() string { return fmt.Sprintf("%d:%d", uint32(c)>>16, uint32(c)&0xffff) }

// GracefulShutdown is the GRACEFUL_SHUTDOWN well-known community (RFC 8326):
// routes carrying it are preferred least by the routers that honour it.
const GracefulShutdown Community = 0xffff0000

// LargeCommunity is a BGP large community (RFC 8092).
type LargeCommunity struct{ Global, Local1, Local2 uint32 }

// String returns c as "global:local1:local2".
func (c LargeCommunity) String() string {
	return fmt.Sprintf("%d:%d:%d", c.Global, c.Local1, c.Local2)
}
