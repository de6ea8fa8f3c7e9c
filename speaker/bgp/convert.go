package bgp

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	gobgp "github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"github.com/onprem-lb/onprem-lb/config"
)

// defaultHoldTime is the hold time of a config.Session that gives none.
const defaultHoldTime = 90 * time.Second

// family returns the address family of the sessions with peers at a, and of the routes to
// prefixes of a's family: IPv4 or IPv6 unicast.
func family(a netip.Addr) *api.Family {
	if a.Is4() {
		return &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
	}
	return &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}
}

// seconds returns d in whole seconds, rounded up.
func seconds(d time.Duration) uint64 { return uint64((d + time.Second - 1) / time.Second) }

// apiPeer returns GoBGP's configuration of the session with p: outgoing only, the address
// family of p's address only, and BFD when p asks for it and bfd is set.
func apiPeer(p Peer, c Config, bfd bool) *api.Peer {
	hold := p.HoldTime
	if hold == 0 {
		hold = defaultHoldTime
	}
	keepalive := p.KeepaliveTime
	if keepalive == 0 {
		keepalive = hold / 3
	}
	port := uint32(p.Port)
	if port == 0 {
		port = 179
	}
	ap := &api.Peer{
		Conf: &api.PeerConf{
			NeighborAddress: p.Address.String(),
			PeerAsn:         p.ASN,
			LocalAsn:        c.ASN,
			AuthPassword:    p.Password,
		},
		Timers: &api.Timers{Config: &api.TimersConfig{
			HoldTime:               seconds(hold),
			KeepaliveInterval:      seconds(keepalive),
			ConnectRetry:           seconds(c.ConnectRetry),
			IdleHoldTimeAfterReset: seconds(c.IdleHoldTimeAfterReset),
		}},
		Transport: &api.Transport{RemotePort: port, PassiveMode: c.passive},
		AfiSafis: []*api.AfiSafi{{
			Config: &api.AfiSafiConfig{Family: family(p.Address), Enabled: true},
		}},
	}
	if p.EBGPMultihop > 0 {
		ap.EbgpMultihop = &api.EbgpMultihop{Enabled: true, MultihopTtl: uint32(p.EBGPMultihop)}
	}
	if bfd && p.BFD.Enabled() {
		ap.Bfd = &api.BfdPeerConfig{
			Enabled:                  true,
			DesiredMinimumTxInterval: uint32(p.BFD.TransmitInterval.Microseconds()),
			RequiredMinimumReceive:   uint32(p.BFD.ReceiveInterval.Microseconds()),
			DetectionMultiplier:      uint32(p.BFD.Multiplier),
		}
	}
	return ap
}

// communities returns r's communities as GoBGP's attribute values, with GRACEFUL_SHUTDOWN
// added when gshut is set and r has not got it already.
func communities(r Route, gshut bool) []uint32 {
	cs := make([]uint32, 0, len(r.Communities)+1)
	for _, c := range r.Communities {
		cs = append(cs, uint32(c))
	}
	if gshut && !slices.Contains(r.Communities, config.GracefulShutdown) {
		cs = append(cs, uint32(config.GracefulShutdown))
	}
	return cs
}

// path returns GoBGP's path for r, with GRACEFUL_SHUTDOWN added when gshut is set. The next
// hop is unspecified (0.0.0.0 or ::), which GoBGP replaces with the session's local address
// for every peer, eBGP or iBGP: next-hop-self.
func path(r Route, gshut bool) (*apiutil.Path, error) {
	nlri, err := gobgp.NewIPAddrPrefix(r.Prefix)
	if err != nil {
		return nil, fmt.Errorf("bgp: route %v: %w", r.Prefix, err)
	}
	attrs := []gobgp.PathAttributeInterface{
		gobgp.NewPathAttributeOrigin(gobgp.BGP_ORIGIN_ATTR_TYPE_IGP),
		gobgp.NewPathAttributeAsPath(nil),
	}
	fam := gobgp.RF_IPv4_UC
	if r.Prefix.Addr().Is4() {
		nh, err := gobgp.NewPathAttributeNextHop(netip.IPv4Unspecified())
		if err != nil {
			return nil, err
		}
		attrs = append(attrs, nh)
	} else {
		fam = gobgp.RF_IPv6_UC
		mp, err := gobgp.NewPathAttributeMpReachNLRI(fam, []gobgp.PathNLRI{{NLRI: nlri}}, netip.IPv6Unspecified())
		if err != nil {
			return nil, fmt.Errorf("bgp: route %v: %w", r.Prefix, err)
		}
		attrs = append(attrs, mp)
	}
	if cs := communities(r, gshut); len(cs) > 0 {
		attrs = append(attrs, gobgp.NewPathAttributeCommunities(cs))
	}
	if len(r.LargeCommunities) > 0 {
		lcs := make([]*gobgp.LargeCommunity, 0, len(r.LargeCommunities))
		for _, c := range r.LargeCommunities {
			lcs = append(lcs, gobgp.NewLargeCommunity(c.Global, c.Local1, c.Local2))
		}
		attrs = append(attrs, gobgp.NewPathAttributeLargeCommunities(lcs))
	}
	if r.LocalPreference != 0 {
		attrs = append(attrs, gobgp.NewPathAttributeLocalPref(r.LocalPreference))
	}
	return &apiutil.Path{Family: fam, Nlri: nlri, Attrs: attrs}, nil
}

// paths returns the paths of the routes of prefixes.
func paths(routes map[netip.Prefix]Route, prefixes []netip.Prefix, gshut bool) ([]*apiutil.Path, error) {
	ps := make([]*apiutil.Path, 0, len(prefixes))
	for _, p := range prefixes {
		ap, err := path(routes[p], gshut)
		if err != nil {
			return nil, err
		}
		ps = append(ps, ap)
	}
	return ps, nil
}

// exportPolicy is the name of the global export policy that keeps routes from the peers they
// are not for; importPolicy the global import policy's, which lets only this node's own
// routes into its table (GoBGP applies the import policy to them too): every route a peer
// sends is rejected.
const (
	exportPolicy = "onprem-lb-export"
	importPolicy = "onprem-lb-import"
)

// policies returns the routing policy that keeps each prefix of ex[peer] from peer: per peer,
// a neighbor set of its address, a prefix set of the prefixes, and a statement that rejects
// what matches both. The policy has no statement when ex is empty. It holds the import policy
// too, as each request replaces every policy.
func policies(ex map[netip.Addr][]netip.Prefix) *api.SetPoliciesRequest {
	req := &api.SetPoliciesRequest{}
	policy := &api.Policy{Name: exportPolicy}
	for _, peer := range slices.SortedFunc(maps.Keys(ex), netip.Addr.Compare) {
		prefixes := ex[peer]
		if len(prefixes) == 0 {
			continue
		}
		neighbors := "peer-" + peer.String()
		excluded := "excluded-" + peer.String()
		ps := make([]*api.Prefix, 0, len(prefixes))
		for _, p := range prefixes {
			ps = append(ps, &api.Prefix{IpPrefix: p.String(), MaskLengthMin: uint32(p.Bits()), MaskLengthMax: uint32(p.Bits())})
		}
		req.DefinedSets = append(req.DefinedSets,
			&api.DefinedSet{DefinedType: api.DefinedType_DEFINED_TYPE_NEIGHBOR, Name: neighbors, List: []string{netip.PrefixFrom(peer, peer.BitLen()).String()}},
			&api.DefinedSet{DefinedType: api.DefinedType_DEFINED_TYPE_PREFIX, Name: excluded, Prefixes: ps},
		)
		policy.Statements = append(policy.Statements, &api.Statement{
			Name: excluded,
			Conditions: &api.Conditions{
				NeighborSet: &api.MatchSet{Type: api.MatchSet_TYPE_ANY, Name: neighbors},
				PrefixSet:   &api.MatchSet{Type: api.MatchSet_TYPE_ANY, Name: excluded},
			},
			Actions: &api.Actions{RouteAction: api.RouteAction_ROUTE_ACTION_REJECT},
		})
	}
	req.Policies = []*api.Policy{policy, {Name: importPolicy, Statements: []*api.Statement{{
		Name:       "local",
		Conditions: &api.Conditions{RouteType: api.Conditions_ROUTE_TYPE_LOCAL},
		Actions:    &api.Actions{RouteAction: api.RouteAction_ROUTE_ACTION_ACCEPT},
	}}}}
	return req
}
