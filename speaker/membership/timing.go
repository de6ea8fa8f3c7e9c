package membership

import (
	"cmp"
	"fmt"
	"time"
)

// Timing are memberlist's failure-detector timers, plus how often Run
// re-joins the configured peers.
//
// A zero field takes its value from DefaultTiming, so a zero Timing is
// DefaultTiming().
type Timing struct {
	// ProbeInterval is how often each member probes one other member
	// (round robin over a shuffled list).
	ProbeInterval time.Duration
	// ProbeTimeout is how long a direct probe waits for its ack before
	// indirect probes (through other members) and a TCP probe are sent.
	// The whole probe still gets until ProbeInterval. Must be less than
	// ProbeInterval.
	ProbeTimeout time.Duration
	// GossipInterval is how often queued broadcasts (joins, suspicions,
	// deaths, leaves) are sent to random members when they could not ride
	// on a probe. Nothing is sent when nothing is queued.
	GossipInterval time.Duration
	// PushPullInterval is how often a member exchanges its full state with
	// a random member over TCP (memberlist scales it up above 32 members).
	PushPullInterval time.Duration
	// SuspicionMult sets how long a member that missed a probe stays
	// suspect, able to refute, before it is declared dead (see
	// DefaultTiming).
	SuspicionMult int
	// SuspicionMaxTimeoutMult bounds the suspicion timeout when memberlist
	// waits for confirmations from other members (only when
	// SuspicionMult > 2, see DefaultTiming).
	SuspicionMaxTimeoutMult int
	// RejoinInterval is how often Run joins the peers that are not members:
	// it heals partitions (memberlist never probes a dead member again)
	// and finds nodes that started late.
	RejoinInterval time.Duration
}

// DefaultTiming returns timers tuned so that a member that dies without
// leaving (power loss, kill -9, cable pulled) is declared dead by every other
// member in well under a second on a LAN of a few to about 100 nodes.
//
// The arithmetic, with N members (memberlist v0.5.4, state.go):
//
//  1. Each member probes one member per ProbeInterval, round robin over a
//     shuffled list, so the dead member is probed by someone within one or
//     two ProbeIntervals (N−1 live probers each probe 1 of N−1 others per
//     interval).
//
//  2. The probe that fails takes one ProbeInterval: ProbeTimeout (40 ms) for
//     the direct ack, then indirect and TCP probes until the interval ends.
//
//  3. The member is then suspect for memberlist's suspicion timeout
//
//     SuspicionTimeout = SuspicionMult × max(1, log10(N)) × ProbeInterval
//
//     With SuspicionMult = 2, memberlist's expected confirmations
//     k = SuspicionMult − 2 = 0, so the timer is that base timeout exactly;
//     with k ≥ 1 (Lifeguard) it would start at SuspicionMaxTimeoutMult
//     times the base and shrink only as other members confirm, which takes
//     well over a second. 2 × 1 × 100 ms = 200 ms for N ≤ 10,
//     2 × 2 × 100 ms = 400 ms for N = 100. A live member that was merely
//     slow to answer hears the suspicion (piggybacked on probes, gossiped
//     every GossipInterval) and refutes it within that window.
//
//  4. The suspicion, then the death, spread by gossip to 3 members every
//     GossipInterval: about log3(N) × 30 ms, 30 ms for N = 3, 150 ms for
//     N = 100. Every member runs its own suspicion timer from the moment
//     the suspicion reached it.
//
// Total: N = 3: 0–200 + 100 + 200 + 30 ≈ 330–530 ms; N = 100: 0–200 + 100 +
// 400 + 150 ≈ 650–850 ms. Memberlist's self-awareness (Lifeguard)
// stretches a member's own probe timers up to 8× while it is itself
// starved, which keeps a starved member from accusing healthy ones.
//
// The cost is small: one ~100-byte UDP probe per member every 100 ms, one
// full-state TCP exchange per member every 10 s. A graceful Leave is seen at
// once (about one GossipInterval), not after failure detection.
func DefaultTiming() Timing {
	return Timing{
		ProbeInterval:           100 * time.Millisecond,
		ProbeTimeout:            40 * time.Millisecond,
		GossipInterval:          30 * time.Millisecond,
		PushPullInterval:        10 * time.Second,
		SuspicionMult:           2,
		SuspicionMaxTimeoutMult: 4,
		RejoinInterval:          10 * time.Second,
	}
}

// withDefaults returns t with every zero field taken from DefaultTiming.
func (t Timing) withDefaults() Timing {
	d := DefaultTiming()
	t.ProbeInterval = cmp.Or(t.ProbeInterval, d.ProbeInterval)
	t.ProbeTimeout = cmp.Or(t.ProbeTimeout, d.ProbeTimeout)
	t.GossipInterval = cmp.Or(t.GossipInterval, d.GossipInterval)
	t.PushPullInterval = cmp.Or(t.PushPullInterval, d.PushPullInterval)
	t.SuspicionMult = cmp.Or(t.SuspicionMult, d.SuspicionMult)
	t.SuspicionMaxTimeoutMult = cmp.Or(t.SuspicionMaxTimeoutMult, d.SuspicionMaxTimeoutMult)
	t.RejoinInterval = cmp.Or(t.RejoinInterval, d.RejoinInterval)
	return t
}

// validate checks a Timing that went through withDefaults.
func (t Timing) validate() error {
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"ProbeInterval", t.ProbeInterval},
		{"ProbeTimeout", t.ProbeTimeout},
		{"GossipInterval", t.GossipInterval},
		{"PushPullInterval", t.PushPullInterval},
		{"RejoinInterval", t.RejoinInterval},
	} {
		if d.v < 0 {
			return fmt.Errorf("membership: timing %s is %v, want > 0: %w", d.name, d.v, ErrInvalidConfig)
		}
	}
	if t.ProbeTimeout >= t.ProbeInterval {
		return fmt.Errorf("membership: timing ProbeTimeout %v must be less than ProbeInterval %v: %w",
			t.ProbeTimeout, t.ProbeInterval, ErrInvalidConfig)
	}
	if t.SuspicionMult < 1 {
		return fmt.Errorf("membership: timing SuspicionMult is %d, want ≥ 1: %w", t.SuspicionMult, ErrInvalidConfig)
	}
	if t.SuspicionMaxTimeoutMult < 1 {
		return fmt.Errorf("membership: timing SuspicionMaxTimeoutMult is %d, want ≥ 1: %w",
			t.SuspicionMaxTimeoutMult, ErrInvalidConfig)
	}
	return nil
}
