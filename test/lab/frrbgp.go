package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// BGPPath is one path of a prefix in an FRR instance's BGP table, as `show bgp <afi> unicast
// <prefix> json` has it.
type BGPPath struct {
	// Peer is the address of the session the path came over.
	Peer netip.Addr
	// Communities are the path's communities as FRR writes them: "64512:100", well-known
	// ones by name ("graceful-shutdown" for 65535:0).
	Communities []string
	// LocalPref is the path's LOCAL_PREF, -1 if it has none (FRR sets 0 on a path that
	// carries GRACEFUL_SHUTDOWN).
	LocalPref int
	// Best and Multipath say whether the path is the best one or one of its ECMP peers.
	Best, Multipath bool
}

// GracefulShutdown says whether the path carries GRACEFUL_SHUTDOWN (RFC 8326, 65535:0).
func (p BGPPath) GracefulShutdown() bool {
	return slices.ContainsFunc(p.Communities, func(c string) bool {
		return c == "65535:0" || c == "graceful-shutdown" || c == "gracefulShutdown"
	})
}

// BGPPaths returns the paths f's BGP table has for exactly prefix, none if it has no route.
func (f *FRR) BGPPaths(ctx context.Context, prefix netip.Prefix) ([]BGPPath, error) {
	afi := "ipv4"
	if prefix.Addr().Is6() {
		afi = "ipv6"
	}
	out, err := f.Vtysh(ctx, fmt.Sprintf("show bgp %s unicast %s json", afi, prefix))
	if err != nil {
		return nil, err
	}
	return parseBGPPaths([]byte(out))
}

// parseBGPPaths parses the output of `show bgp <afi> unicast <prefix> json`.
func parseBGPPaths(data []byte) ([]BGPPath, error) {
	var table struct {
		Paths []struct {
			Peer struct {
				PeerID string `json:"peerId"`
			} `json:"peer"`
			Community struct {
				String string `json:"string"`
			} `json:"community"`
			LocalPref *int `json:"locPrf"`
			Multipath bool `json:"multipath"`
			Bestpath  struct {
				Overall bool `json:"overall"`
			} `json:"bestpath"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(data, &table); err != nil {
		return nil, fmt.Errorf("lab: parse BGP paths: %w: %s", err, data)
	}
	var paths []BGPPath
	for _, p := range table.Paths {
		peer, err := netip.ParseAddr(p.Peer.PeerID)
		if err != nil {
			return nil, fmt.Errorf("lab: parse BGP paths: peer: %w", err)
		}
		path := BGPPath{Peer: peer, Communities: strings.Fields(p.Community.String), LocalPref: -1, Best: p.Bestpath.Overall, Multipath: p.Multipath}
		if p.LocalPref != nil {
			path.LocalPref = *p.LocalPref
		}
		paths = append(paths, path)
	}
	return paths, nil
}

// BGPSessions returns the state ("Established", "Active", ...) of f's BGP sessions that
// carry address family afi ("ipv4" or "ipv6" unicast), by peer address, as `show bgp
// summary json` has them.
func (f *FRR) BGPSessions(ctx context.Context, afi string) (map[netip.Addr]string, error) {
	out, err := f.Vtysh(ctx, "show bgp "+afi+" unicast summary json")
	if err != nil {
		return nil, err
	}
	return parseBGPSessions([]byte(out))
}

// parseBGPSessions parses the output of `show bgp <afi> unicast summary json`.
func parseBGPSessions(data []byte) (map[netip.Addr]string, error) {
	var summary struct {
		Peers map[string]struct {
			State string `json:"state"`
		} `json:"peers"`
	}
	if err := json.Unmarshal(data, &summary); err != nil {
		return nil, fmt.Errorf("lab: parse BGP summary: %w: %s", err, data)
	}
	states := map[netip.Addr]string{}
	for addr, p := range summary.Peers {
		a, err := netip.ParseAddr(addr)
		if err != nil {
			return nil, fmt.Errorf("lab: parse BGP summary: peer: %w", err)
		}
		states[a] = p.State
	}
	return states, nil
}

// WaitNextHops waits until the router's kernel routes prefix via exactly want (none: no
// route), and returns how long that took, or an error after timeout.
func (r *Router) WaitNextHops(ctx context.Context, prefix netip.Prefix, want []netip.Addr, timeout time.Duration) (time.Duration, error) {
	began := time.Now()
	var got []netip.Addr
	var last error
	err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		got, last = r.NextHops(ctx, prefix)
		return last == nil && slices.Equal(got, want), nil
	})
	if err != nil {
		return 0, fmt.Errorf("router's route to %s: next hops %v (err %v), want %v within %v", prefix, got, last, want, timeout)
	}
	return time.Since(began), nil
}

// WaitBFDUp waits until the router's BFD sessions with every address of peers are up with
// the router's timers, for at most timeout.
func (r *Router) WaitBFDUp(ctx context.Context, peers []netip.Addr, timeout time.Duration) error {
	ms := int(r.Options.BFDInterval.Milliseconds())
	var sessions []BFDPeer
	var last error
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		sessions, last = r.FRR.BFDPeers(ctx)
		up := map[netip.Addr]bool{}
		for _, s := range sessions {
			up[s.Peer] = s.Status == "up" && s.TransmitInterval == ms && s.ReceiveInterval == ms && s.DetectMultiplier == r.Options.BFDMultiplier
		}
		for _, a := range peers {
			if !up[a] {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("router's BFD sessions with %v not all up at %d ms x %d within %v: %+v (err %v)", peers, ms, r.Options.BFDMultiplier, timeout, sessions, last)
	}
	return nil
}
