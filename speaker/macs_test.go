package speaker

import (
	"net"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/onprem-lb/onprem-lb/speaker/membership"
)

func TestMACsRoundTrip(t *testing.T) {
	a, _ := net.ParseMAC("02:00:00:00:00:01")
	b, _ := net.ParseMAC("0a:1b:d5:77:d9:2a")
	meta, dropped := EncodeMACs([]net.HardwareAddr{a, make(net.HardwareAddr, 20), b})
	if diff := cmp.Diff([]byte{macsV1, 2, 0, 0, 0, 0, 1, 0x0a, 0x1b, 0xd5, 0x77, 0xd9, 0x2a}, meta); dropped != 0 || diff != "" {
		t.Errorf("EncodeMACs dropped %d, meta (-want +got):\n%s", dropped, diff)
	}
	if diff := cmp.Diff([]net.HardwareAddr{a, b}, DecodeMACs(meta)); diff != "" {
		t.Errorf("DecodeMACs (-want +got):\n%s", diff)
	}
	for _, bad := range []string{"", "02:00:00:00:00:01", "\x02abcdef"} {
		if got := DecodeMACs([]byte(bad)); got != nil {
			t.Errorf("DecodeMACs(%q) = %v, want none", bad, got)
		}
	}
	if got := DecodeMACs(append(meta, 1, 2, 3)); len(got) != 2 {
		t.Errorf("DecodeMACs with 3 trailing bytes = %v, want the 2 MACs", got)
	}
}

// TestMACsBudget: whatever the node has, the metadata fits in memberlist's limit and the
// membership starts; the first MaxMACs are kept, the rest counted.
func TestMACsBudget(t *testing.T) {
	for _, n := range []int{0, 1, MaxMACs, MaxMACs + 1, 500, 5000} {
		macs := make([]net.HardwareAddr, n)
		for i := range macs {
			macs[i] = net.HardwareAddr{2, 0, 0, 0, byte(i >> 8), byte(i)}
		}
		meta, dropped := EncodeMACs(macs)
		kept := min(n, MaxMACs)
		if len(meta) > membership.MaxMetaSize || dropped != n-kept {
			t.Errorf("%d MACs: meta %d bytes (limit %d), %d dropped; want ≤ limit, %d dropped", n, len(meta), membership.MaxMetaSize, dropped, n-kept)
		}
		if diff := cmp.Diff(macs[:kept], DecodeMACs(meta), cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("%d MACs: decoded (-want +got):\n%s", n, diff)
		}
		if _, err := membership.New(membership.Config{Name: "node-1", BindAddr: netip.MustParseAddr("198.18.0.1"), Meta: meta}); err != nil {
			t.Errorf("%d MACs: %v", n, err)
		}
	}
	if MaxMACs < 80 {
		t.Errorf("MaxMACs = %d, want room for at least 80", MaxMACs)
	}
}

// FuzzDecodeMACs: a peer's metadata is outside input; decoding never panics and keeps only
// MACs, which encode back to what decodes to themselves.
func FuzzDecodeMACs(f *testing.F) {
	f.Add([]byte{macsV1, 2, 0, 0, 0, 0, 1, 0x0a, 0x1b, 0xd5, 0x77, 0xd9, 0x2a})
	f.Add([]byte(""))
	f.Add([]byte{macsV1})
	f.Add([]byte("02:00:00:00:00:01,0a:1b:d5:77:d9:2a"))
	f.Fuzz(func(t *testing.T, meta []byte) {
		macs := DecodeMACs(meta)
		enc, _ := EncodeMACs(macs)
		if diff := cmp.Diff(macs[:min(len(macs), MaxMACs)], DecodeMACs(enc), cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("round trip (-first +second):\n%s", diff)
		}
	})
}
