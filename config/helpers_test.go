package config

import (
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/onprem-lb/onprem-lb/ipam"
)

// configCmp compares Configs: addresses by value, selectors by their
// requirements (as Equal does), nil and empty slices alike.
var configCmp = cmp.Options{
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmp.Comparer(func(a, b labels.Selector) bool { return selectorKey(a) == selectorKey(b) }),
	cmp.Comparer(serviceSelectorsEqual),
	cmpopts.EquateEmpty(),
}

// designExample returns the IP-pool YAML example of docs/DESIGN.md, read from
// the page itself so that the documented contract and the parser cannot drift.
func designExample(tb testing.TB) string {
	tb.Helper()
	return designBlock(tb, "**IP-pool YAML**")
}

// designBlock returns the first ```yaml block after marker in docs/DESIGN.md.
func designBlock(tb testing.TB, marker string) string {
	tb.Helper()
	page, err := os.ReadFile("../docs/DESIGN.md")
	if err != nil {
		tb.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(page), marker)
	if ok {
		_, rest, ok = strings.Cut(rest, "```yaml\n")
	}
	doc, _, closed := strings.Cut(rest, "```")
	if !ok || !closed {
		tb.Fatalf("docs/DESIGN.md: no ```yaml block after %s", marker)
	}
	return doc
}

// designConfig is what designExample parses to.
func designConfig() *Config {
	p := pool("lan", "198.18.0.200-198.18.0.239", "2001:db8:18::200/122")
	p.Exclude = ranges("198.18.0.201")
	return &Config{Pools: []Pool{p}, Dataplane: DataplaneKubeProxy}
}

// pool returns a pool with the defaults of a pool file.
func pool(name string, addrs ...string) Pool {
	return Pool{
		Pool:         ipam.Pool{Name: name, Addresses: ranges(addrs...), AutoAssign: true},
		NodeSelector: labels.Everything(),
		Announce:     AnnounceL2,
		BGPAdvertisement: BGPAdvertisement{
			AggregationLength: defaultAggregationLength, AggregationLengthV6: defaultAggregationLengthV6,
		},
	}
}

func ranges(ss ...string) []ipam.AddressRange {
	out := make([]ipam.AddressRange, len(ss))
	for i, s := range ss {
		r, err := ipam.ParseAddressRange(s)
		if err != nil {
			panic(err)
		}
		out[i] = r
	}
	return out
}

// selector parses a selector in kubectl's syntax.
func selector(t testing.TB, s string) labels.Selector {
	t.Helper()
	sel, err := labels.Parse(s)
	if err != nil {
		t.Fatalf("labels.Parse(%q): %v", s, err)
	}
	return sel
}
