package speaker

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"time"

	"github.com/onprem-lb/onprem-lb/speaker/bgp"
	"github.com/onprem-lb/onprem-lb/speaker/l2"
)

// announcement is one VIP this node owns, as /announcements shows it.
type announcement struct {
	IP string `json:"ip"`
	// State is announced, probing, conflict or unavailable (no usable interface).
	State      string   `json:"state"`
	Interfaces []string `json:"interfaces,omitempty"`
	// ConflictMACs are the MACs of the hosts that already answer for the IP.
	ConflictMACs []string `json:"conflictMACs,omitempty"`
}

// announcements renders what the announcer does for each VIP this node owns, sorted by IP.
// A VIP answered on some interfaces and not others is "announced".
func announcements(state map[netip.Addr]l2.Status) []announcement {
	out := make([]announcement, 0, len(state))
	for ip, st := range state {
		a := announcement{IP: ip.String()}
		switch {
		case len(st.Announced) > 0:
			a.State, a.Interfaces = "announced", st.Announced
		case len(st.Conflicts) > 0:
			a.State = "conflict"
			for _, c := range st.Conflicts {
				a.Interfaces = append(a.Interfaces, c.Interface)
				a.ConflictMACs = append(a.ConflictMACs, c.MAC.String())
			}
		case len(st.Probing) > 0:
			a.State, a.Interfaces = "probing", st.Probing
		default:
			a.State, a.Interfaces = "unavailable", st.Unavailable
		}
		out = append(out, a)
	}
	slices.SortFunc(out, func(x, y announcement) int {
		return netip.MustParseAddr(x.IP).Compare(netip.MustParseAddr(y.IP))
	})
	return out
}

// bgpView is what /announcements/bgp shows: this node's BGP sessions and the routes it
// advertises.
type bgpView struct {
	// Draining: the routes carry GRACEFUL_SHUTDOWN (the speaker is stopping, or the node got
	// the exclusion label).
	Draining bool         `json:"draining"`
	Sessions []bgpSession `json:"sessions"`
	Routes   []bgpRoute   `json:"routes"`
}

type bgpSession struct {
	Peer        string `json:"peer"`
	State       string `json:"state"`
	Established string `json:"establishedAt,omitempty"` // RFC 3339
	// BFD is up, down, init or admin-down; absent without BFD.
	BFD          string `json:"bfd,omitempty"`
	PrefixesSent uint64 `json:"prefixesSent"`
	Recoveries   int    `json:"recoveries,omitempty"`
}

type bgpRoute struct {
	Prefix           string   `json:"prefix"`
	Communities      []string `json:"communities,omitempty"`
	LargeCommunities []string `json:"largeCommunities,omitempty"`
	LocalPreference  uint32   `json:"localPreference,omitempty"`
	// Peers are the peers the route is for; absent: every peer.
	Peers []string `json:"peers,omitempty"`
}

// bgpAnnouncements renders the sessions and routes of a BGP engine.
func bgpAnnouncements(peers []bgp.PeerStatus, routes []bgp.Route, draining bool) bgpView {
	v := bgpView{Draining: draining, Sessions: []bgpSession{}, Routes: []bgpRoute{}}
	for _, p := range peers {
		s := bgpSession{Peer: p.Address.String(), State: p.State, BFD: p.BFD, PrefixesSent: p.PrefixesSent, Recoveries: p.Recoveries}
		if p.Established {
			s.Established = p.EstablishedAt.UTC().Format(time.RFC3339)
		}
		v.Sessions = append(v.Sessions, s)
	}
	for _, r := range routes {
		v.Routes = append(v.Routes, bgpRoute{
			Prefix: r.Prefix.String(), Communities: stringsOf(r.Communities), LargeCommunities: stringsOf(r.LargeCommunities),
			LocalPreference: r.LocalPreference, Peers: stringsOf(r.Peers),
		})
	}
	return v
}

// stringsOf returns the String of each of xs, nil for none.
func stringsOf[T fmt.Stringer](xs []T) []string {
	var out []string
	for _, x := range xs {
		out = append(out, x.String())
	}
	return out
}

// jsonHandler serves what view returns, as indented JSON.
func jsonHandler[T any](view func() T) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(view())
	})
}
