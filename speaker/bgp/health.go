package bgp

import "time"

// health tracks whether the session with a peer stays down while it should come up.
type health struct {
	// down is when the current episode of the session not being stably up began (the
	// peer was added, or the session went down), or the last recovery or the last time its
	// BFD session came up, whichever is later; zero while the session is stably up.
	down time.Time
	// idle is when the session was first seen idle in a row of observations, zero when it
	// was not idle at the last one.
	idle time.Time
	// bfdUp is whether the peer's BFD session was up at the last observation.
	bfdUp bool
	// quick is whether the session had its quick recovery since it was last established.
	quick bool
	// attempts counts recoveries after RecoverAfter since the session was last stably up;
	// recoveries counts all recoveries.
	attempts, recoveries int
}

// maxBackoff bounds the doubling of RecoverAfter: at most 2^maxBackoff times.
const maxBackoff = 3

// observe records the state s of the session at now and reports whether it is time to
// recover it (delete and re-add the peer), which it then counts, and why. An established
// session is never recovered.
//
// A session is stably up once established for StableAfter. One that is not is recovered
// when it has not been for RecoverAfter (doubled per such recovery, up to 8 times) since it
// went down, the peer was added, the last recovery, or its BFD session came up, whichever
// is last: a session that keeps flapping, or never comes up.
//
// Besides, a session that sits idle for a second longer than IdleHoldTimeAfterReset is
// recovered at once, if it has been established since its last such recovery: GoBGP waits
// 5 s before it reconnects after a session went down without an administrative reset of
// its own, and a reset it may have queued meanwhile would tear down the next session
// (osrg/gobgp#3561); a new peer connects within ConnectRetry.
func (h *health) observe(now time.Time, s PeerStatus, c Config) (recover bool, why string) {
	if s.Established && now.Sub(s.EstablishedAt) >= c.StableAfter {
		*h = health{bfdUp: s.BFD == "up", recoveries: h.recoveries}
		return false, ""
	}
	if h.down.IsZero() {
		h.down = now
	}
	bfdUp := s.BFD == "up"
	if bfdUp && !h.bfdUp {
		h.down = now // BFD says the router is there again: give the session its time from now
	}
	h.bfdUp = bfdUp
	if s.Established {
		h.quick, h.idle = false, time.Time{}
		return false, ""
	}
	if s.State != "idle" {
		h.idle = time.Time{}
	} else if h.idle.IsZero() {
		h.idle = now
	}
	switch {
	case !h.quick && !h.idle.IsZero() && now.Sub(h.idle) >= c.IdleHoldTimeAfterReset+time.Second:
		h.quick = true
		why = "idle"
	case now.Sub(h.down) >= c.RecoverAfter<<min(h.attempts, maxBackoff):
		h.attempts++
		why = "not established in time"
	default:
		return false, ""
	}
	h.down, h.idle = now, time.Time{}
	h.recoveries++
	return true, why
}
