package speaker

import (
	"net"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestMACsRoundTrip(t *testing.T) {
	a, _ := net.ParseMAC("02:00:00:00:00:01")
	b, _ := net.ParseMAC("0a:1b:d5:77:d9:2a")
	meta := EncodeMACs([]net.HardwareAddr{a, b})
	if string(meta) != "02:00:00:00:00:01,0a:1b:d5:77:d9:2a" {
		t.Errorf("EncodeMACs = %q", meta)
	}
	if diff := cmp.Diff([]net.HardwareAddr{a, b}, DecodeMACs(meta)); diff != "" {
		t.Errorf("DecodeMACs (-want +got):\n%s", diff)
	}
	if got := DecodeMACs([]byte("garbage,,02:00:00:00:00:01,zz")); len(got) != 1 || got[0].String() != a.String() {
		t.Errorf("DecodeMACs kept %v of garbage, want only %v", got, a)
	}
}

// FuzzDecodeMACs: a peer's metadata is outside input; decoding never panics and keeps only
// MACs, which encode back to what decodes to themselves.
func FuzzDecodeMACs(f *testing.F) {
	f.Add([]byte("02:00:00:00:00:01,0a:1b:d5:77:d9:2a"))
	f.Add([]byte(""))
	f.Add([]byte(",,,"))
	f.Add([]byte("00:00:5e:00:53:01:02:03"))
	f.Fuzz(func(t *testing.T, meta []byte) {
		macs := DecodeMACs(meta)
		if diff := cmp.Diff(macs, DecodeMACs(EncodeMACs(macs))); diff != "" {
			t.Errorf("round trip (-first +second):\n%s", diff)
		}
	})
}
