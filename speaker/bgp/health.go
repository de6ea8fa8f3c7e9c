package bgp

import "time"

// health tracks whether the session with a peer stays down while it should come up.
type health struct {
	// down is when the current episode of the session not being stably up began (the
	// peer was added, or the session went down), or the last recovery or the last time its
	// BFD session came up, whichever is later; zero while the session is stably up.
	down time.Time
	// bfdUp is whether the peer's BFD session was up at the last observation.
	bfdUp bool
	// attempts counts recoveries since the session was last stably up; recoveries counts
	// them all.
	attempts, recoveries int
}

// maxBackoff bounds the doubling of RecoverAfter: at most 2^maxBackoff times.
const maxBackoff = 3

// observe records the state s of the session at now and reports whether it is time to
// recover it (delete and re-add the peer), which it then counts. A session is stably up
// once established for StableAfter. One that is not is recovered when it has not been for
// RecoverAfter (doubled per recovery that did not help, up to 8 times) since it went down,
// the peer was added, the last recovery, or its BFD session came up, whichever is last.
func (h *health) observe(now time.Time, s PeerStatus, c Config) (recover bool) {
	if s.Established && now.Sub(s.EstablishedAt) >= c.StableAfter {
		h.down, h.attempts = time.Time{}, 0
		h.bfdUp = s.BFD == "up"
		return false
	}
	if h.down.IsZero() {
		h.down = now
	}
	bfdUp := s.BFD == "up"
	if bfdUp && !h.bfdUp {
		h.down = now // BFD says the router is there again: give the session its time from now
	}
	h.bfdUp = bfdUp
	if now.Sub(h.down) < c.RecoverAfter<<min(h.attempts, maxBackoff) {
		return false
	}
	h.down = now
	h.attempts++
	h.recoveries++
	return true
}
