package speaker

import (
	"encoding/json"
	"net/http"
	"net/netip"
	"slices"

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

// announcementsHandler serves the VIPs this node owns and what it does for each, as JSON.
func announcementsHandler(state func() map[netip.Addr]l2.Status) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(announcements(state()))
	})
}
