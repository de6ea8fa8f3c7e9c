package speaker

import (
	"maps"
	"net/netip"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/onprem-lb/onprem-lb/config"
	"github.com/onprem-lb/onprem-lb/speaker/bgp"
)

// routes returns the BGP routes node advertises after a sync that assigned assignments: for
// each VIP of a pool announced over BGP that node can serve (it is among the Assignment's
// Nodes), the VIP's prefix at the pool's aggregation length, with the pool's communities,
// large communities and local preference, for the pool's peers (every peer when it names
// none). VIPs aggregated into one prefix make one route, advertised while node can serve any
// of them; if they come from several pools, the pool first in the file gives the route's
// attributes. The routes are sorted by prefix. It does not modify its inputs.
func routes(node string, cfg *config.Config, assignments map[netip.Addr]*Assignment) []bgp.Route {
	if cfg.BGP == nil {
		return nil
	}
	peerAddr := make(map[string]netip.Addr, len(cfg.BGP.Peers))
	for _, p := range cfg.BGP.Peers {
		peerAddr[p.Name] = p.Address
	}
	type candidate struct {
		route bgp.Route
		pool  int // the pool's index in the file
	}
	byPrefix := map[netip.Prefix]candidate{}
	for ip, a := range assignments {
		if !a.Announce.BGP() {
			continue
		}
		if _, ok := slices.BinarySearch(a.Nodes, node); !ok {
			continue
		}
		i := slices.IndexFunc(cfg.Pools, func(p config.Pool) bool { return p.Name == a.Pool })
		if i < 0 {
			continue
		}
		adv := cfg.Pools[i].BGPAdvertisement
		bits := adv.AggregationLength
		if ip.Is6() {
			bits = adv.AggregationLengthV6
		}
		prefix, err := ip.Prefix(bits)
		if err != nil {
			prefix = netip.PrefixFrom(ip, ip.BitLen())
		}
		if c, ok := byPrefix[prefix]; ok && c.pool <= i {
			continue
		}
		r := bgp.Route{Prefix: prefix, Communities: adv.Communities, LargeCommunities: adv.LargeCommunities, LocalPreference: adv.LocalPreference}
		for _, name := range adv.Peers {
			if addr, ok := peerAddr[name]; ok {
				r.Peers = append(r.Peers, addr)
			}
		}
		byPrefix[prefix] = candidate{r, i}
	}
	out := make([]bgp.Route, 0, len(byPrefix))
	for _, p := range slices.SortedFunc(maps.Keys(byPrefix), netip.Prefix.Compare) {
		out = append(out, byPrefix[p].route)
	}
	return out
}

// holdDown is how long a node waits before it advertises again a prefix it withdrew while
// its IPs stayed assigned, so that an endpoint that flaps does not make every router
// recompute its ECMP set each time. A prefix withdrawn because its IPs were released is not
// held: assigned again, it is another Service's, advertised at once.
const holdDown = 2 * time.Second

// damper delays the advertisement of prefixes withdrawn less than holdDown ago. The zero
// damper has advertised nothing.
type damper struct {
	// advertised are the prefixes of the last routes let through.
	advertised map[netip.Prefix]bool
	// withdrawn says when each prefix was last withdrawn, for those withdrawn within
	// holdDown.
	withdrawn map[netip.Prefix]time.Time
}

// filter returns the routes of want that may be advertised at now: all but those whose
// prefix was withdrawn less than holdDown before now; if it held some back, how long until
// the first of them may go (0 if none); and the prefixes advertised until now that want
// lacks, withdrawn from now. Routes advertised before pass at once, their attributes as they
// are now. It records want's prefixes as advertised and the others as withdrawn, and holds
// none of those that released reports to hold no assigned IP any more.
func (d *damper) filter(now time.Time, want []bgp.Route, released func(netip.Prefix) bool) (pass []bgp.Route, wait time.Duration, gone []netip.Prefix) {
	if d.advertised == nil {
		d.advertised, d.withdrawn = map[netip.Prefix]bool{}, map[netip.Prefix]time.Time{}
	}
	wanted := make(map[netip.Prefix]bool, len(want))
	for _, r := range want {
		wanted[r.Prefix] = true
	}
	for p := range d.advertised {
		if !wanted[p] {
			delete(d.advertised, p)
			if !released(p) {
				d.withdrawn[p] = now
			}
			gone = append(gone, p)
		}
	}
	for _, r := range want {
		if !d.advertised[r.Prefix] {
			if at, ok := d.withdrawn[r.Prefix]; ok && now.Sub(at) < holdDown {
				if left := holdDown - now.Sub(at); wait == 0 || left < wait {
					wait = left
				}
				continue
			}
			d.advertised[r.Prefix] = true
		}
		pass = append(pass, r)
	}
	for p, at := range d.withdrawn {
		if now.Sub(at) >= holdDown {
			delete(d.withdrawn, p)
		}
	}
	return pass, wait, gone
}

// Why a node withdraws a route: the reason label of onprem_lb_bgp_withdrawals_total.
const (
	WithdrawReleased        = "released"          // no IP of the prefix is assigned and advertised over BGP any more
	WithdrawExcluded        = "excluded"          // the node got the exclusion label
	WithdrawNoLocalEndpoint = "no-local-endpoint" // the IPs' Services are Local and the node has no ready, confirmed endpoint of them
	WithdrawNotEligible     = "not-eligible"      // the node may no longer serve the IPs: its service proxy, the pool's nodeSelector, its speaker's liveness
	WithdrawStopping        = "stopping"          // the speaker stopped
)

// advertisedIn returns the assignments of assignments whose IP is in p and announced over
// BGP; none: p is released.
func advertisedIn(p netip.Prefix, assignments map[netip.Addr]*Assignment) []*Assignment {
	var in []*Assignment
	if p.IsSingleIP() {
		if a := assignments[p.Addr()]; a != nil && a.Announce.BGP() {
			in = append(in, a)
		}
		return in
	}
	for ip, a := range assignments {
		if a.Announce.BGP() && p.Contains(ip) {
			in = append(in, a)
		}
	}
	return in
}

// withdrawReasons counts by reason why the prefixes gone are withdrawn by a node (excluded:
// it has the exclusion label) after a sync that assigned assignments; isLocal says whether a
// Service's externalTrafficPolicy is Local.
func withdrawReasons(gone []netip.Prefix, assignments map[netip.Addr]*Assignment, excluded bool, isLocal func(types.NamespacedName) bool) map[string]int {
	if len(gone) == 0 {
		return nil
	}
	reasons := map[string]int{}
	for _, p := range gone {
		in := advertisedIn(p, assignments)
		allLocal := true
		for _, a := range in {
			for _, key := range a.Services {
				allLocal = allLocal && isLocal(key)
			}
		}
		switch {
		case len(in) == 0:
			reasons[WithdrawReleased]++
		case excluded:
			reasons[WithdrawExcluded]++
		case allLocal:
			reasons[WithdrawNoLocalEndpoint]++
		default:
			reasons[WithdrawNotEligible]++
		}
	}
	return reasons
}
