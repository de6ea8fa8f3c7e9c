package dataplane

import (
	"cmp"
	"crypto/sha256"
	"encoding/base32"
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Chain names. Every chain this package makes starts with chainPrefix; that
// is how Cleanup and the resync recognise them (and nothing else).
const (
	chainPrefix = "ONPREM-LB-"

	servicesChain    = chainPrefix + "SERVICES"    // nat, from PREROUTING and OUTPUT
	markMasqChain    = chainPrefix + "MARK-MASQ"   // nat, marks for masquerade
	postroutingChain = chainPrefix + "POSTROUTING" // nat, from POSTROUTING
	firewallChain    = chainPrefix + "FIREWALL"    // filter, from INPUT, FORWARD and OUTPUT
	guardChain       = chainPrefix + "GUARD"       // mangle, from POSTROUTING
	handoverChain    = chainPrefix + "HANDOVER"    // mangle, from PREROUTING

	vipsShardPrefix  = chainPrefix + "VIPS-"  // nat, one per last byte of the VIPs
	fwShardPrefix    = chainPrefix + "FW-"    // filter, one per last byte of the VIPs
	guardShardPrefix = chainPrefix + "GUARD-" // mangle, one per last byte of the guarded VIPs
	svcChainPrefix   = chainPrefix + "SVC-"   // nat, one per Service port

	// sepPrefix names the xt_recent list of an endpoint (session
	// affinity). There are no per-endpoint chains: see buildRulesCached.
	sepPrefix = chainPrefix + "SEP-"

	tableNAT    = "nat"
	tableFilter = "filter"
	tableMangle = "mangle"
)

// ourTables are the tables this package writes chains in.
var ourTables = []string{tableNAT, tableFilter, tableMangle}

// DefaultMasqueradeMark is the packet mark bit that asks ONPREM-LB-POSTROUTING
// to masquerade. kube-proxy uses 0x4000 and 0x8000; Calico the upper 16
// bits.
const DefaultMasqueradeMark = 0x2000

// chainKey names a chain: table and chain name.
type chainKey struct {
	table, name string
}

// ruleset is the content of every chain of one family, keyed by chain. A
// chain's content is its rules as iptables-restore lines ("-A NAME ...\n"),
// in order; an empty string is a chain without rules.
type ruleset map[chainKey]string

// genConfig is what rule generation needs besides the Services.
type genConfig struct {
	mark        uint32 // the masquerade mark bit
	randomFully bool   // MASQUERADE --random-fully is supported
	handovers   Handovers
}

// baseChains are the chains a family has as soon as it is in use, even
// without Services.
var baseChains = []chainKey{
	{tableNAT, servicesChain},
	{tableNAT, markMasqChain},
	{tableNAT, postroutingChain},
	{tableFilter, firewallChain},
	{tableMangle, guardChain},
	{tableMangle, handoverChain},
}

// buildRulesCached computes the content of every chain of family f for services.
// It is a pure function of its arguments.
//
// Layout (nat): ONPREM-LB-SERVICES sends each packet, by the last byte of its
// destination, to one ONPREM-LB-VIPS-xx shard, which matches VIP, protocol,
// port (and source range) and jumps to the Service port's ONPREM-LB-SVC-
// chain; that one honours session affinity and DNATs to an endpoint chosen
// at random. Only ports with usable endpoints (Local: local ones) are
// matched in nat. A shard lists the rules of Local Services first; then,
// if it has Cluster ones, it marks the packet for masquerade, lists them
// and takes the mark off again: a packet that matched none leaves unmarked,
// one that did was DNATed with the mark on. One marking rule per shard
// instead of one per Service port keeps a full sync of 10,000 Services
// about a fifth faster. A Local Service's chain marks only hairpin traffic,
// from an endpoint to itself.
//
// Unlike kube-proxy there is no chain per endpoint (KUBE-SEP-*): the DNAT
// rules sit in the Service port's chain. iptables-nft-restore slows down
// superlinearly with the chains one transaction creates: 30,000 chains (10,000
// Services with two endpoints) took 24 s, 10,000 take 0.3 s. The xt_recent
// list of an endpoint keeps kube-proxy's name scheme (ONPREM-LB-SEP-<hash>).
//
// Layout (filter): ONPREM-LB-FIREWALL, by the same last byte, sends new
// connections to an ONPREM-LB-FW-xx shard. Traffic there still has a VIP as
// destination, i.e. nat did not DNAT it: from outside the source ranges it is
// dropped, to a port without usable endpoints or to any other port of a VIP
// it is rejected with ICMP port unreachable (TCP connects fail at once with
// ECONNREFUSED).
//
// Layout (mangle): the guard of ProxiedElsewhere VIPs. ONPREM-LB-GUARD, from
// POSTROUTING for new connections, by the same last byte, sends packets to an
// ONPREM-LB-GUARD-xx shard that drops those still going to a guarded VIP: the
// service proxy did not DNAT them. It sits in mangle POSTROUTING, after every
// filter hook, so that whatever the service proxy answers for a VIP it knows
// (kube-proxy's REJECT of a Service without endpoints, in iptables filter or in
// its own nftables table at filter priority) comes first; and before conntrack
// confirms the connection, so a dropped first packet leaves no entry behind.
//
// Layout (mangle): handovers. ONPREM-LB-HANDOVER, from PREROUTING for TCP packets
// that are not a SYN and belong to no connection this node knows (conntrack NEW, as a
// mid-stream pickup, or INVALID), sends those to a handed-over VIP to the previous
// owner (TEE: an untracked copy, routed to it as gateway) and drops the original
// before nat could DNAT it to an endpoint that would reset the connection. What a
// peer node sent is left alone.
//
// Sharding keeps the chains a one-Service change rewrites small (tens of
// rules for 10,000 VIPs) and the per-packet walk short.
//
// With more than commentLimit Services the per-VIP rules carry no comment
// (as kube-proxy drops its per-endpoint comments in large clusters): a
// comment match costs iptables-nft-restore about an eighth of a full sync.
//
// Through cache (nil: none) it reuses what Services unchanged since the last
// call contribute; the result is the same with or without a cache.
func buildRulesCached(services []Service, f Family, cfg genConfig, cache *ruleCache) ruleset {
	rs := make(ruleset, 16)
	mark := "0x" + strconv.FormatUint(uint64(cfg.mark), 16)
	rs[chainKey{tableNAT, markMasqChain}] = "-A " + markMasqChain + " -j MARK --or-mark " + mark + "\n"
	masq := "-A " + postroutingChain + " -j MASQUERADE"
	if cfg.randomFully {
		masq += " --random-fully"
	}
	rs[chainKey{tableNAT, postroutingChain}] = "-A " + postroutingChain + " -m mark ! --mark " + mark + "/" + mark + " -j RETURN\n" +
		"-A " + postroutingChain + " -j MARK --xor-mark " + mark + "\n" +
		masq + "\n"

	// Services in a stable order, duplicates dropped.
	svcs := make([]*Service, 0, len(services))
	for i := range services {
		svcs = append(svcs, &services[i])
	}
	slices.SortStableFunc(svcs, func(a, b *Service) int {
		return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
	})
	svcs = slices.CompactFunc(svcs, func(a, b *Service) bool { return a.Namespace == b.Namespace && a.Name == b.Name })
	sg := svcGen{mark: mark, comments: len(svcs) <= commentLimit}

	type vipEntry struct {
		vip     netip.Addr
		lines   *[2]string
		drop    bool
		cluster bool
	}
	var shards [256][]vipEntry
	if cache != nil {
		cache.gen++
	}
	for _, s := range svcs {
		out := cache.get(s, f, sg)
		for _, c := range out.chains {
			rs[c.key] = c.content
		}
		for i := range out.vips {
			v := &out.vips[i]
			b := v.vip.As16()
			shards[b[15]] = append(shards[b[15]], vipEntry{v.vip, &v.lines, v.drop, v.cluster})
		}
	}
	cache.prune()

	var nat, filter, guard strings.Builder
	for k := range shards {
		entries := shards[k]
		if len(entries) == 0 {
			continue
		}
		slices.SortStableFunc(entries, func(a, b vipEntry) int { return a.vip.Compare(b.vip) })
		vipsName, fwName := shardNames(byte(k))
		guardName := guardShardPrefix + vipsName[len(vipsShardPrefix):]
		shardMatch := shardMatch(f, byte(k))

		var vips, cluster, fw, drop strings.Builder
		forwarded := false
		for i, e := range entries {
			if e.cluster {
				cluster.WriteString(e.lines[0])
			} else {
				vips.WriteString(e.lines[0])
			}
			fw.WriteString(e.lines[1])
			// The catch-all, after the last Service of a VIP: whatever
			// is left for it.
			switch {
			case i+1 < len(entries) && entries[i+1].vip == e.vip:
			case e.drop:
				drop.WriteString("-A " + guardName + " -d " + hostPrefix(e.vip) + sg.comment("not forwarded by the service proxy") + " -j DROP\n")
			default:
				forwarded = true
				fw.WriteString("-A " + fwName + " -d " + hostPrefix(e.vip) + sg.comment("port not served") + " -j REJECT --reject-with " + rejectWith(f) + "\n")
			}
		}
		if cluster.Len() > 0 {
			vips.WriteString("-A " + vipsName + " -j MARK --or-mark " + mark + "\n")
			vips.WriteString(cluster.String())
			vips.WriteString("-A " + vipsName + " -j MARK --set-mark 0x0/" + mark + "\n")
		}
		if forwarded {
			nat.WriteString("-A " + servicesChain + " -d " + shardMatch + " -j " + vipsName + "\n")
			filter.WriteString("-A " + firewallChain + " -d " + shardMatch + " -j " + fwName + "\n")
			rs[chainKey{tableNAT, vipsName}] = vips.String()
			rs[chainKey{tableFilter, fwName}] = fw.String()
		}
		if drop.Len() > 0 {
			guard.WriteString("-A " + guardChain + " -d " + shardMatch + " -j " + guardName + "\n")
			rs[chainKey{tableMangle, guardName}] = drop.String()
		}
	}
	rs[chainKey{tableNAT, servicesChain}] = nat.String()
	rs[chainKey{tableFilter, firewallChain}] = filter.String()
	rs[chainKey{tableMangle, guardChain}] = guard.String()
	rs[chainKey{tableMangle, handoverChain}] = handoverRules(cfg.handovers, f)
	return rs
}

// handoverRules is the content of ONPREM-LB-HANDOVER for family f: nothing without a
// handover of that family, else a RETURN for each peer MAC, then for each VIP a TEE to
// its previous owner and a DROP, in VIP order.
func handoverRules(h Handovers, f Family) string {
	vips := slices.DeleteFunc(slices.Clone(h.VIPs), func(v Handover) bool { return !f.has(v.VIP) || !f.has(v.To) })
	if len(vips) == 0 {
		return ""
	}
	slices.SortFunc(vips, func(a, b Handover) int { return a.VIP.Compare(b.VIP) })
	vips = slices.CompactFunc(vips, func(a, b Handover) bool { return a.VIP == b.VIP })
	var b strings.Builder
	peers := make([]string, len(h.Peers))
	for i, mac := range h.Peers {
		peers[i] = mac.String()
	}
	slices.Sort(peers)
	for _, mac := range slices.Compact(peers) {
		b.WriteString("-A " + handoverChain + " -m mac --mac-source " + mac + " -j RETURN\n")
	}
	for _, v := range vips {
		dst := " -d " + hostPrefix(v.VIP)
		b.WriteString("-A " + handoverChain + dst + " -m comment --comment \"to the previous owner\" -j TEE --gateway " + v.To.String() + "\n")
		b.WriteString("-A " + handoverChain + dst + " -j DROP\n")
	}
	return b.String()
}

// commentLimit is the most Services whose per-VIP rules carry comments.
const commentLimit = 1000

// svcGen is what generating one Service's rules needs besides the Service
// and the family.
type svcGen struct {
	mark     string // the masquerade mark, "0x2000"
	comments bool   // rules carry comments
}

// comment is the comment match for text, "" without comments.
func (g svcGen) comment(text string) string {
	if !g.comments {
		return ""
	}
	return " -m comment --comment \"" + text + "\""
}

// svcOut is what one Service contributes to the rules of a family.
type svcOut struct {
	fp     uint64 // fingerprint of the Service and the family
	gen    uint64 // the last build that used it
	chains []chainEntry
	vips   []vipLines
}

type chainEntry struct {
	key     chainKey
	content string
}

// vipLines are a Service's rules for one of its VIPs: in the VIP's nat
// shard and in its filter shard (without the catch-all reject). drop: the
// VIP is ProxiedElsewhere, its catch-all drops. cluster: the nat rules go
// among the shard's marked ones.
type vipLines struct {
	vip     netip.Addr
	lines   [2]string
	drop    bool
	cluster bool
}

// ruleCache memoizes svcOut per Service, keyed by a fingerprint of the
// Service, for one family. One-Service changes among 10,000 then cost a
// fingerprint per Service instead of generating every rule again.
type ruleCache struct {
	seed    maphash.Seed
	gen     uint64
	entries map[string]*svcOut
}

func newRuleCache() *ruleCache {
	return &ruleCache{seed: maphash.MakeSeed(), entries: map[string]*svcOut{}}
}

// get returns s's contribution, from the cache if s did not change.
func (c *ruleCache) get(s *Service, f Family, sg svcGen) *svcOut {
	if c == nil {
		return serviceOut(s, f, sg)
	}
	fp := fingerprint(c.seed, s, f, sg)
	key := s.Namespace + "/" + s.Name
	out := c.entries[key]
	if out == nil || out.fp != fp {
		out = serviceOut(s, f, sg)
		out.fp = fp
		c.entries[key] = out
	}
	out.gen = c.gen
	return out
}

// prune forgets the Services the last build did not use.
func (c *ruleCache) prune() {
	if c == nil {
		return
	}
	for k, out := range c.entries {
		if out.gen != c.gen {
			delete(c.entries, k)
		}
	}
}

func fingerprint(seed maphash.Seed, s *Service, f Family, sg svcGen) uint64 {
	var h maphash.Hash
	h.SetSeed(seed)
	var buf [8]byte
	u64 := func(v uint64) {
		binary.LittleEndian.PutUint64(buf[:], v)
		h.Write(buf[:])
	}
	addr := func(a netip.Addr) {
		b := a.As16()
		h.Write(b[:])
		u64(uint64(a.BitLen()))
	}
	str := func(v string) {
		u64(uint64(len(v)))
		h.WriteString(v)
	}
	u64(uint64(f))
	str(sg.mark)
	str(sg.comment(""))
	str(s.Namespace)
	str(s.Name)
	u64(uint64(len(s.VIPs)))
	for _, v := range s.VIPs {
		addr(v)
	}
	u64(uint64(len(s.Ports)))
	for _, p := range s.Ports {
		str(string(p.Protocol))
		u64(uint64(p.Port)<<32 | uint64(len(p.Endpoints)))
		for _, e := range p.Endpoints {
			addr(e.IP)
			local := uint64(0)
			if e.Local {
				local = 1
			}
			u64(uint64(e.Port)<<1 | local)
		}
	}
	local := uint64(0)
	if s.Local {
		local = 1
	}
	u64(local)
	if s.ProxiedElsewhere {
		u64(1)
	} else {
		u64(0)
	}
	u64(uint64(s.AffinityTimeout))
	u64(uint64(len(s.SourceRanges)))
	for _, p := range s.SourceRanges {
		addr(p.Addr())
		u64(uint64(p.Bits()))
	}
	return h.Sum64()
}

// serviceOut computes s's contribution to family f.
func serviceOut(s *Service, f Family, sg svcGen) *svcOut {
	out := &svcOut{}
	if s.ProxiedElsewhere {
		for _, v := range s.VIPs {
			if v = v.Unmap(); f.has(v) && !slices.ContainsFunc(out.vips, func(l vipLines) bool { return l.vip == v }) {
				out.vips = append(out.vips, vipLines{vip: v, drop: true})
			}
		}
		return out
	}
	tmp := ruleset{}
	chains := buildService(tmp, s, f)
	for k, c := range tmp {
		out.chains = append(out.chains, chainEntry{k, c})
	}
	var ranges []string
	restricted := len(s.SourceRanges) > 0
	for _, p := range s.SourceRanges {
		if p = unmapPrefix(p); p.IsValid() && f.has(p.Addr()) {
			ranges = append(ranges, p.String())
		}
	}
	for _, v := range s.VIPs {
		if !f.has(v) {
			continue
		}
		v = v.Unmap()
		if slices.ContainsFunc(out.vips, func(l vipLines) bool { return l.vip == v }) {
			continue
		}
		vipsName, fwName := shardNames(v.As16()[15])
		dst := " -d " + hostPrefix(v)
		var vips, fw strings.Builder
		for i, p := range s.Ports {
			proto, ok := protoName(p.Protocol)
			if !ok || p.Port == 0 {
				continue
			}
			match := dst + " -p " + proto + " -m " + proto + " --dport " + strconv.Itoa(int(p.Port))
			name := s.Namespace + "/" + s.Name + ":" + proto + "/" + strconv.Itoa(int(p.Port))
			svc := chains[i]
			switch {
			case svc == "":
				fw.WriteString("-A " + fwName + match + sg.comment(name+" has no endpoints") + " -j REJECT --reject-with " + rejectWith(f) + "\n")
			case !restricted:
				vips.WriteString("-A " + vipsName + match + sg.comment(name) + " -j " + svc + "\n")
			default:
				for _, r := range ranges {
					vips.WriteString("-A " + vipsName + " -s " + r + match + sg.comment(name) + " -j " + svc + "\n")
				}
				fw.WriteString("-A " + fwName + match + sg.comment(name+" not in loadBalancerSourceRanges") + " -j DROP\n")
			}
		}
		out.vips = append(out.vips, vipLines{vip: v, lines: [2]string{vips.String(), fw.String()}, cluster: !s.Local})
	}
	return out
}

func shardNames(k byte) (vips, fw string) {
	const hex = "0123456789ABCDEF"
	suffix := string([]byte{hex[k>>4], hex[k&15]})
	return vipsShardPrefix + suffix, fwShardPrefix + suffix
}

// buildService adds the SVC chains of s's ports to rs and returns,
// per port, the SVC chain ("": the port has no usable endpoint or is
// invalid).
func buildService(rs ruleset, s *Service, f Family) []string {
	chains := make([]string, len(s.Ports))
	affinity := 0
	if s.AffinityTimeout > 0 {
		affinity = int(math.Ceil(s.AffinityTimeout.Seconds()))
	}
	recentMask := "255.255.255.255"
	if f == IPv6 {
		recentMask = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
	}
	for i, p := range s.Ports {
		proto, ok := protoName(p.Protocol)
		if !ok || p.Port == 0 {
			continue
		}
		eps := usableEndpoints(s, p, f)
		if len(eps) == 0 {
			continue
		}
		svc := svcChainPrefix + hashName(s.Namespace+"/"+s.Name+":"+proto+"/"+strconv.Itoa(int(p.Port)))
		chains[i] = svc
		var b strings.Builder
		if s.Local {
			// Hairpin: an endpoint reaching itself through the VIP must
			// see the node as the source. (Cluster Services are marked
			// in their shard.)
			for _, e := range eps {
				b.WriteString("-A " + svc + " -s " + hostPrefix(e.IP) + " -j " + markMasqChain + "\n")
			}
		}
		dests := make([]string, len(eps))
		lists := make([]string, len(eps))
		for j, e := range eps {
			dests[j] = netip.AddrPortFrom(e.IP, e.Port).String()
			// The xt_recent list of the endpoint, named like kube-proxy's
			// endpoint chain.
			lists[j] = sepPrefix + hashName(svc+">"+proto+"/"+dests[j])
		}
		if affinity > 0 {
			for j := range eps {
				b.WriteString("-A " + svc + " -p " + proto + " -m recent --name " + lists[j] + " --mask " + recentMask +
					" --rsource --update --seconds " + strconv.Itoa(affinity) + " --reap -j DNAT --to-destination " + dests[j] + "\n")
			}
		}
		for j := range eps {
			b.WriteString("-A " + svc + " -p " + proto)
			if n := len(eps) - j; n > 1 {
				b.WriteString(" -m statistic --mode random --probability " + probability(n))
			}
			if affinity > 0 {
				b.WriteString(" -m recent --name " + lists[j] + " --mask " + recentMask + " --rsource --set")
			}
			b.WriteString(" -j DNAT --to-destination " + dests[j] + "\n")
		}
		rs[chainKey{tableNAT, svc}] = b.String()
	}
	return chains
}

// usableEndpoints are the endpoints of s's port p that family f forwards to: of the family,
// with a port, local ones only if s is Local; unmapped, without duplicates, sorted.
func usableEndpoints(s *Service, p Port, f Family) []Endpoint {
	var eps []Endpoint
	seen := map[netip.AddrPort]bool{}
	for _, e := range p.Endpoints {
		if !f.has(e.IP) || e.Port == 0 || (s.Local && !e.Local) {
			continue
		}
		e.IP = e.IP.Unmap()
		ap := netip.AddrPortFrom(e.IP, e.Port)
		if seen[ap] {
			continue
		}
		seen[ap] = true
		eps = append(eps, e)
	}
	slices.SortFunc(eps, func(a, b Endpoint) int {
		return cmp.Or(a.IP.Compare(b.IP), cmp.Compare(a.Port, b.Port))
	})
	return eps
}

// probability is kube-proxy's "1/n" for the statistic match.
func probability(n int) string {
	return fmt.Sprintf("%0.10f", 1.0/float64(n))
}

func protoName(p Protocol) (string, bool) {
	switch p {
	case TCP:
		return "tcp", true
	case UDP:
		return "udp", true
	case SCTP:
		return "sctp", true
	}
	return "", false
}

func rejectWith(f Family) string {
	if f == IPv6 {
		return "icmp6-port-unreachable"
	}
	return "icmp-port-unreachable"
}

// hostPrefix is a as a one-address prefix, "198.18.96.1/32".
func hostPrefix(a netip.Addr) string {
	return netip.PrefixFrom(a, a.BitLen()).String()
}

// shardMatch matches the destinations whose last byte is k: an address
// with a non-contiguous mask, "0.0.0.7/0.0.0.255" or "::7/::ff".
func shardMatch(f Family, k byte) string {
	if f == IPv6 {
		var b [16]byte
		b[15] = k
		return netip.AddrFrom16(b).String() + "/::ff"
	}
	return "0.0.0." + strconv.Itoa(int(k)) + "/0.0.0.255"
}

// hashName is kube-proxy's chain name hash, cut to fit: chain names are at
// most 28 characters, 14 of them our prefix.
func hashName(s string) string {
	h := sha256.Sum256([]byte(s))
	return base32.StdEncoding.EncodeToString(h[:])[:14]
}
