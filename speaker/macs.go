package speaker

import (
	"net"
	"strings"
)

// EncodeMACs renders MAC addresses as the membership metadata a speaker publishes:
// "aa:bb:cc:dd:ee:01,aa:bb:cc:dd:ee:02". Peers read it with DecodeMACs.
func EncodeMACs(macs []net.HardwareAddr) []byte {
	parts := make([]string, len(macs))
	for i, m := range macs {
		parts[i] = m.String()
	}
	return []byte(strings.Join(parts, ","))
}

// DecodeMACs reads the metadata of EncodeMACs, skipping what is not a MAC address: a peer's
// metadata is outside input.
func DecodeMACs(meta []byte) []net.HardwareAddr {
	var out []net.HardwareAddr
	for _, s := range strings.Split(string(meta), ",") {
		if mac, err := net.ParseMAC(s); err == nil {
			out = append(out, mac)
		}
	}
	return out
}
