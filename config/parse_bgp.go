package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/onprem-lb/onprem-lb/ipam"
)

// Limits of the bgp: section.
const (
	// asTrans is AS_TRANS (RFC 6793), the placeholder a 2-byte speaker sees
	// for a 4-byte AS number: never a real AS.
	asTrans = 23456
	// maxASN is the highest AS number, 4294967295 being reserved (RFC 7300).
	maxASN = 1<<32 - 2

	defaultPort          = 179
	defaultHoldTime      = 90 * time.Second
	minHoldTime          = 3 * time.Second // RFC 4271: 0 or at least 3 s; 0 is refused
	maxHoldTime          = 65535 * time.Second
	defaultBFDInterval   = 300 * time.Millisecond
	minBFDInterval       = 10 * time.Millisecond
	maxBFDInterval       = 60 * time.Second
	defaultBFDMultiplier = 3

	defaultAggregationLength   = 32
	defaultAggregationLengthV6 = 128
)

var (
	holdTimeLimits = durationLimits{def: defaultHoldTime, unit: time.Second, min: minHoldTime, max: maxHoldTime,
		zero: "it would disable keepalives and the hold timer"}
	bfdIntervalLimits = durationLimits{def: defaultBFDInterval, unit: time.Millisecond, min: minBFDInterval, max: maxBFDInterval}
)

// ErrInvalidCommunity is wrapped by the errors of ParseCommunity and
// ParseLargeCommunity.
var ErrInvalidCommunity = errors.New("invalid community")

// Well-known communities (RFC 1997); GracefulShutdown is another.
const (
	NoExport          Community = 0xffffff01
	NoAdvertise       Community = 0xffffff02
	NoExportSubconfed Community = 0xffffff03
)

// wellKnownCommunities are the names ParseCommunity accepts.
var wellKnownCommunities = map[string]Community{
	"no-export":           NoExport,
	"no-advertise":        NoAdvertise,
	"no-export-subconfed": NoExportSubconfed,
	"graceful-shutdown":   GracefulShutdown,
}

// ParseCommunity parses a community written "A:B", each half a decimal from
// 0 to 65535, or one of the well-known names no-export, no-advertise,
// no-export-subconfed and graceful-shutdown. Errors wrap ErrInvalidCommunity.
// For every c it returns, ParseCommunity(c.String()) returns c.
func ParseCommunity(s string) (Community, error) {
	if c, ok := wellKnownCommunities[s]; ok {
		return c, nil
	}
	parts, err := communityParts(s, 2, 16)
	if err != nil {
		return 0, fmt.Errorf("%w %q: want A:B with A and B from 0 to 65535, or no-export, no-advertise, no-export-subconfed or graceful-shutdown: %w",
			ErrInvalidCommunity, s, err)
	}
	return Community(parts[0]<<16 | parts[1]), nil
}

// ParseLargeCommunity parses a large community written "A:B:C", each part a
// decimal from 0 to 4294967295. Errors wrap ErrInvalidCommunity. For every c
// it returns, ParseLargeCommunity(c.String()) returns c.
func ParseLargeCommunity(s string) (LargeCommunity, error) {
	parts, err := communityParts(s, 3, 32)
	if err != nil {
		return LargeCommunity{}, fmt.Errorf("%w %q: want A:B:C with each part from 0 to 4294967295: %w", ErrInvalidCommunity, s, err)
	}
	return LargeCommunity{Global: parts[0], Local1: parts[1], Local2: parts[2]}, nil
}

// communityParts splits s on ':' into n unsigned decimals of bits bits.
func communityParts(s string, n, bits int) ([]uint32, error) {
	fields := strings.Split(s, ":")
	if len(fields) != n {
		return nil, fmt.Errorf("%d parts, not %d", len(fields), n)
	}
	parts := make([]uint32, n)
	for i, f := range fields {
		if f == "" || strings.Trim(f, "0123456789") != "" {
			return nil, fmt.Errorf("part %d, %q, is not a decimal number", i+1, f)
		}
		v, err := strconv.ParseUint(f, 10, bits)
		if err != nil {
			return nil, fmt.Errorf("part %d, %s, is more than %d", i+1, f, uint64(1)<<bits-1)
		}
		parts[i] = uint32(v)
	}
	return parts, nil
}

// bgp decodes the bgp: section; nil when it is absent.
func (d *decoder) bgp(path string, v any) *BGP {
	if v == nil {
		return nil
	}
	m := d.object(path, v, "asn", "routerID", "peers")
	b := &BGP{ASN: d.asn(path+".asn", m["asn"])}
	if id := m["routerID"]; id != nil {
		b.RouterID = d.addr(path+".routerID", id)
		if d.err == nil && !b.RouterID.Is4() {
			d.fail(path+".routerID", nil, "%s is not an IPv4 address", b.RouterID)
		}
	}
	list := d.list(path+".peers", m["peers"])
	if d.err == nil && len(list) == 0 {
		d.fail(path+".peers", nil, "at least one peer is required")
	}
	for i, v := range list {
		ppath := fmt.Sprintf("%s.peers[%d]", path, i)
		p := d.peer(ppath, v)
		for j, q := range b.Peers {
			if p.Address == q.Address && p.Port == q.Port {
				d.fail(ppath+".address", nil, "%s port %d is also the peer %s.peers[%d]", p.Address, p.Port, path, j)
			}
			if p.Name == q.Name {
				d.fail(ppath+".name", nil, "duplicate name %q, also used by %s.peers[%d]", p.Name, path, j)
			}
		}
		b.Peers = append(b.Peers, p)
	}
	if d.err != nil {
		return nil
	}
	return b
}

func (d *decoder) peer(path string, v any) BGPPeer {
	m := d.object(path, v, "name", "address", "asn", "port", "holdTime", "keepaliveTime", "passwordFile",
		"ebgpMultihop", "nodeSelector", "bfd")
	if m["address"] == nil {
		d.fail(path+".address", nil, "is required")
	}
	p := BGPPeer{
		Name: d.str(path+".name", m["name"]),
		Session: Session{
			Address:      d.addr(path+".address", m["address"]),
			ASN:          d.asn(path+".asn", m["asn"]),
			Port:         uint16(d.intIn(path+".port", m["port"], defaultPort, 1, 1<<16-1)),
			HoldTime:     d.duration(path+".holdTime", m["holdTime"], holdTimeLimits),
			EBGPMultihop: uint8(d.intIn(path+".ebgpMultihop", m["ebgpMultihop"], 0, 0, 255)),
		},
		PasswordFile: d.str(path+".passwordFile", m["passwordFile"]),
		NodeSelector: d.selector(path+".nodeSelector", m["nodeSelector"]),
	}
	if p.Name == "" {
		p.Name = p.Address.String()
	}
	// Whole seconds, at least 1 s since the hold time is at least 3 s.
	p.KeepaliveTime = d.duration(path+".keepaliveTime", m["keepaliveTime"],
		durationLimits{def: (p.HoldTime / 3).Truncate(time.Second), unit: time.Second, min: time.Second, max: p.HoldTime})
	if p.PasswordFile != "" && !filepath.IsAbs(p.PasswordFile) {
		d.fail(path+".passwordFile", nil, "%q is not an absolute path", p.PasswordFile)
	}
	p.BFD = d.bfd(path+".bfd", m["bfd"])
	return p
}

// bfd decodes a peer's bfd: the zero BFD when v is absent.
func (d *decoder) bfd(path string, v any) BFD {
	if v == nil {
		return BFD{}
	}
	m := d.object(path, v, "transmitInterval", "receiveInterval", "multiplier")
	return BFD{
		TransmitInterval: d.duration(path+".transmitInterval", m["transmitInterval"], bfdIntervalLimits),
		ReceiveInterval:  d.duration(path+".receiveInterval", m["receiveInterval"], bfdIntervalLimits),
		Multiplier:       uint8(d.intIn(path+".multiplier", m["multiplier"], defaultBFDMultiplier, 1, 255)),
	}
}

// asn decodes a required AS number.
func (d *decoder) asn(path string, v any) uint32 {
	if v == nil {
		d.fail(path, nil, "is required")
	}
	n := d.intIn(path, v, 0, 1, maxASN)
	if n == asTrans {
		d.fail(path, nil, "%d is AS_TRANS (RFC 6793), not an AS number", n)
	}
	return uint32(n)
}

// addr decodes a peer's or router's address: not zoned, unspecified,
// multicast or IPv4-mapped.
func (d *decoder) addr(path string, v any) netip.Addr {
	s := d.str(path, v)
	if d.err != nil {
		return netip.Addr{}
	}
	a, err := netip.ParseAddr(s)
	switch {
	case err != nil:
		d.fail(path, err, "%v", err)
	case a.Zone() != "":
		d.fail(path, nil, "%s has a zone", a)
	case a.IsUnspecified(), a.IsMulticast():
		d.fail(path, nil, "%s is not a unicast address", a)
	case a.Is4In6():
		d.fail(path, nil, "%s is IPv4-mapped: write it as %s", a, a.Unmap())
	}
	return a
}

// poolBGP decodes a pool's announce and bgpAdvertisement from its fields m
// into p.
func (d *decoder) poolBGP(path string, m map[string]any, p *Pool) {
	switch a := Announce(d.str(path+".announce", m["announce"])); a {
	case "":
		p.Announce = AnnounceL2
	case AnnounceL2, AnnounceBGP, AnnounceBoth:
		p.Announce = a
	default:
		d.fail(path+".announce", nil, "unknown announce %q, want %q, %q or %q", a, AnnounceL2, AnnounceBGP, AnnounceBoth)
	}
	apath := path + ".bgpAdvertisement"
	v := m["bgpAdvertisement"]
	am := d.object(apath, v, "communities", "largeCommunities", "localPreference", "aggregationLength",
		"aggregationLengthV6", "peers")
	adv := BGPAdvertisement{
		LocalPreference:     uint32(d.intIn(apath+".localPreference", am["localPreference"], 0, 0, 1<<32-1)),
		AggregationLength:   int(d.intIn(apath+".aggregationLength", am["aggregationLength"], defaultAggregationLength, 0, 32)),
		AggregationLengthV6: int(d.intIn(apath+".aggregationLengthV6", am["aggregationLengthV6"], defaultAggregationLengthV6, 0, 128)),
		Peers:               d.strList(apath+".peers", am["peers"]),
	}
	for k, s := range d.strList(apath+".communities", am["communities"]) {
		c, err := ParseCommunity(s)
		if err != nil {
			d.fail(fmt.Sprintf("%s.communities[%d]", apath, k), err, "%v", err)
		}
		adv.Communities = append(adv.Communities, c)
	}
	for k, s := range d.strList(apath+".largeCommunities", am["largeCommunities"]) {
		c, err := ParseLargeCommunity(s)
		if err != nil {
			d.fail(fmt.Sprintf("%s.largeCommunities[%d]", apath, k), err, "%v", err)
		}
		adv.LargeCommunities = append(adv.LargeCommunities, c)
	}
	if v != nil && d.err == nil && !p.Announce.BGP() {
		d.warnings = append(d.warnings, apath+": ignored: announce is "+string(p.Announce))
	}
	p.BGPAdvertisement = adv
}

// checkAnnounce checks the pools' announce and bgpAdvertisement.peers
// against the bgp: section b (nil when absent), then forgets the peers of
// pools that do not announce over BGP.
func (d *decoder) checkAnnounce(path string, pools []Pool, b *BGP) {
	for i := range pools {
		p := &pools[i]
		ppath := fmt.Sprintf("%s[%d]", path, i)
		if p.Announce.BGP() && b == nil {
			d.fail(ppath+".announce", nil, "announce %s needs a bgp section", p.Announce)
		}
		if b != nil {
			for k, name := range p.BGPAdvertisement.Peers {
				if !slices.ContainsFunc(b.Peers, func(q BGPPeer) bool { return q.Name == name }) {
					d.fail(fmt.Sprintf("%s.bgpAdvertisement.peers[%d]", ppath, k), nil, "unknown peer %q: not the name of a peer in bgp.peers", name)
				}
			}
		}
		if !p.Announce.BGP() {
			p.BGPAdvertisement = BGPAdvertisement{AggregationLength: defaultAggregationLength, AggregationLengthV6: defaultAggregationLengthV6}
			continue
		}
		for k, r := range p.Addresses {
			field, bits := "aggregationLength", p.BGPAdvertisement.AggregationLength
			if r.First.Is6() {
				field, bits = "aggregationLengthV6", p.BGPAdvertisement.AggregationLengthV6
			}
			if d.err == nil && !aggregates(r, bits) {
				min := bits
				for min < r.First.BitLen() && !aggregates(r, min) {
					min++
				}
				d.fail(fmt.Sprintf("%s.bgpAdvertisement.%s", ppath, field), nil,
					"%d would advertise addresses outside the pool: addresses[%d] (%s) is not made of whole /%d prefixes; use %d or more",
					bits, k, r, bits, min)
			}
		}
	}
}

// aggregates reports whether the range r is made of whole prefixes of length bits, so that
// advertising the prefix of length bits of each of its addresses advertises no other
// address.
func aggregates(r ipam.AddressRange, bits int) bool {
	aligned := func(a netip.Addr) bool {
		p, err := a.Prefix(bits)
		return err == nil && p.Addr() == a
	}
	next := r.Last.Next()
	return aligned(r.First) && (!next.IsValid() || aligned(next))
}

// durationLimits are what a duration field accepts: a whole number of unit
// from min to max, def when absent. zero, if set, says why 0 is refused.
type durationLimits struct {
	def, unit, min, max time.Duration
	zero                string
}

// duration decodes a Go duration string such as "90s" or "300ms". Messages
// give durations in l.unit: "65536s", not "18h12m16s".
func (d *decoder) duration(path string, v any, l durationLimits) time.Duration {
	if v == nil {
		return l.def
	}
	var s string
	if n, ok := v.(json.Number); ok {
		s = n.String()
	} else if s = d.str(path, v); d.err != nil {
		return 0
	}
	unit := unitName(l.unit)
	if s != "" && strings.Trim(s, "0123456789.") == "" {
		d.fail(path, nil, "%s has no unit: add one, e.g. %s%s", s, s, unit)
		return 0
	}
	dur, err := time.ParseDuration(s)
	switch {
	case err != nil:
		d.fail(path, err, "%q is not a duration such as 90s or 300ms: %v", s, err)
	case dur%l.unit != 0:
		d.fail(path, nil, "%s is not a whole number of %s", dur, unit)
	case dur == 0 && l.zero != "":
		d.fail(path, nil, "0%s is refused (%s): the minimum is %d%s", unit, l.zero, l.min/l.unit, unit)
	case dur < l.min:
		d.fail(path, nil, "%d%s is less than the minimum, %d%s", dur/l.unit, unit, l.min/l.unit, unit)
	case dur > l.max:
		d.fail(path, nil, "%d%s is more than the maximum, %d%s", dur/l.unit, unit, l.max/l.unit, unit)
	}
	return dur
}

func unitName(unit time.Duration) string {
	if unit == time.Millisecond {
		return "ms"
	}
	return "s"
}

// intIn decodes an integer from min to max; def when v is absent.
func (d *decoder) intIn(path string, v any, def, min, max int64) int64 {
	if v == nil {
		return def
	}
	n := d.integer(path, v)
	switch {
	case d.err != nil:
		return def
	case n < 0 && min == 0:
		d.fail(path, nil, "%d is negative", n)
	case n < min:
		d.fail(path, nil, "%d is less than the minimum, %d", n, min)
	case n > max:
		d.fail(path, nil, "%d is more than the maximum, %d", n, max)
	}
	return n
}
