package dataplane

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Flow names the conntrack entries of one UDP flow to a removed endpoint: original
// destination VIP:Port, reply source Endpoint. Deleting them makes the flow's next packet
// new, so nat sends it to a current endpoint (UDP has no connection to end: without this,
// a client that keeps sending sticks to a deleted pod until the entry times out).
type Flow struct {
	VIP      netip.Addr
	Port     uint16
	Endpoint netip.Addr
}

func (f Flow) String() string {
	return netip.AddrPortFrom(f.VIP, f.Port).String() + ">" + f.Endpoint.String()
}

// Conntrack deletes conntrack entries. The real one runs the conntrack tool; tests hand in
// a fake.
type Conntrack interface {
	// DeleteUDP deletes the UDP entries of flow; none to delete is not an error.
	DeleteUDP(ctx context.Context, flow Flow) error
}

// staleUDP returns, sorted, the UDP flows that old forwarded and services no longer do:
// for each VIP and UDP port of a Service, every endpoint address old programmed for it (as
// usableEndpoints chooses them) that services does not. It is a pure function; kube-proxy
// clears the same entries (conntrack -D --orig-dst VIP --orig-port-dst PORT --reply-src
// ENDPOINT).
func staleUDP(old, services []Service) []Flow {
	was, now := udpFlows(old), udpFlows(services)
	var out []Flow
	for f := range was {
		if !now[f] {
			out = append(out, f)
		}
	}
	slices.SortFunc(out, func(a, b Flow) int {
		return cmp.Or(a.VIP.Compare(b.VIP), cmp.Compare(a.Port, b.Port), a.Endpoint.Compare(b.Endpoint))
	})
	return out
}

// udpFlows is every (VIP, UDP port, endpoint address) services forward.
func udpFlows(services []Service) map[Flow]bool {
	out := map[Flow]bool{}
	for i := range services {
		s := &services[i]
		if s.ProxiedElsewhere {
			continue
		}
		for _, p := range s.Ports {
			if p.Protocol != UDP || p.Port == 0 {
				continue
			}
			for _, f := range families {
				eps := usableEndpoints(s, p, f)
				for _, v := range s.VIPs {
					if !f.has(v) {
						continue
					}
					for _, e := range eps {
						out[Flow{VIP: v.Unmap(), Port: p.Port, Endpoint: e.IP}] = true
					}
				}
			}
		}
	}
	return out
}

// NewConntrack returns the Conntrack of the conntrack tool, run in the network namespace
// netns ("": the process's own).
func NewConntrack(netns string) Conntrack {
	return toolConntrack{netns: netns}
}

type toolConntrack struct{ netns string }

func (c toolConntrack) DeleteUDP(ctx context.Context, flow Flow) error {
	family := "ipv4"
	if flow.VIP.Is6() {
		family = "ipv6"
	}
	_, err := runIn(ctx, c.netns, nil, "conntrack", "-D", "-f", family, "-p", "udp",
		"--orig-dst", flow.VIP.String(), "--orig-port-dst", strconv.Itoa(int(flow.Port)), "--reply-src", flow.Endpoint.String())
	// conntrack exits 1 when nothing matched.
	if err != nil && strings.Contains(err.Error(), "0 flow entries have been deleted") {
		return nil
	}
	return err
}

// clearFlows deletes the entries of flows, all of them even if some fail.
func clearFlows(ctx context.Context, c Conntrack, flows []Flow) error {
	var errs []error
	for _, f := range flows {
		if err := c.DeleteUDP(ctx, f); err != nil {
			errs = append(errs, fmt.Errorf("flow %s: %w", f, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("dataplane: conntrack: %w", errors.Join(errs...))
	}
	return nil
}
