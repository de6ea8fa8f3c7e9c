package speaker

import (
	"fmt"
	"net"
	"net/netip"

	"k8s.io/klog/v2"

	"github.com/onprem-lb/onprem-lb/config"
	"github.com/onprem-lb/onprem-lb/speaker/l2"
	"github.com/onprem-lb/onprem-lb/speaker/membership"
)

// The membership metadata a speaker publishes is its MAC addresses: a format byte, macsV1,
// then 6 bytes per MAC. The format byte lets a later format be told apart.
const (
	macsV1  = 1
	macLen  = 6
	metaHdr = 1
)

// MaxMACs is how many MAC addresses fit in the metadata (85): EncodeMACs never exceeds
// membership.MaxMetaSize.
const MaxMACs = (membership.MaxMetaSize - metaHdr) / macLen

// EncodeMACs renders macs as the membership metadata a speaker publishes; peers read it with
// DecodeMACs. Only the first MaxMACs are kept, and dropped says how many were not; addresses
// that are not 6 bytes are skipped (not counted).
func EncodeMACs(macs []net.HardwareAddr) (meta []byte, dropped int) {
	meta = []byte{macsV1}
	for _, m := range macs {
		switch {
		case len(m) != macLen:
		case len(meta)+macLen > membership.MaxMetaSize:
			dropped++
		default:
			meta = append(meta, m...)
		}
	}
	return meta, dropped
}

// DecodeMACs reads the metadata of EncodeMACs. A peer's metadata is outside input: another
// format gives no MAC, and trailing bytes short of a MAC are ignored.
func DecodeMACs(meta []byte) []net.HardwareAddr {
	if len(meta) < metaHdr || meta[0] != macsV1 {
		return nil
	}
	var out []net.HardwareAddr
	for b := meta[metaHdr:]; len(b) >= macLen; b = b[macLen:] {
		out = append(out, net.HardwareAddr(b[:macLen:macLen]))
	}
	return out
}

// publishedMACs is the metadata this node publishes: the MACs it may answer from
// (l2.AnnounceMACs: the interfaces cfg's pools name first, then the one holding nodeIPs).
// Were there more than MaxMACs, the rest are left out with a warning: a peer would then take
// a handover from one of those for a conflict, and probe again later.
func publishedMACs(cfg *config.Config, nodeIPs []netip.Addr) ([]byte, error) {
	var named []string
	for _, p := range cfg.Pools {
		named = append(named, p.Interfaces...)
	}
	macs, err := l2.AnnounceMACs(named, nodeIPs)
	if err != nil {
		return nil, fmt.Errorf("speaker: MACs to publish: %w", err)
	}
	meta, dropped := EncodeMACs(macs)
	if dropped > 0 {
		klog.InfoS("WARNING: more interfaces can announce than fit in the membership metadata; peers will not know the MACs of the last ones",
			"published", len(macs)-dropped, "dropped", dropped)
	}
	return meta, nil
}
