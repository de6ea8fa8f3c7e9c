package speaker

import (
	"hash/fnv"
	"net/netip"
)

// Owner returns the node that announces ip among the eligible nodes: the one with the highest
// rendezvous (highest-random-weight) score for ip, the lowest name on a tie. Every speaker that
// is given the same nodes computes the same owner, whatever their order. When a node leaves,
// only the IPs it owned move; when one joins, it takes only the IPs it now scores highest for.
// It returns "" if nodes is empty.
func Owner(ip netip.Addr, nodes []string) string {
	var best string
	var bestScore uint64
	for _, n := range nodes {
		s := score(n, ip)
		if best == "" || s > bestScore || (s == bestScore && n < best) {
			best, bestScore = n, s
		}
	}
	return best
}

// score is the rendezvous weight of node for ip: FNV-1a over the node name and the 16-byte
// address, finished with the splitmix64 mixer so that names differing in one character spread
// evenly.
func score(node string, ip netip.Addr) uint64 {
	h := fnv.New64a()
	h.Write([]byte(node))
	h.Write([]byte{0})
	b := ip.As16()
	h.Write(b[:])
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
