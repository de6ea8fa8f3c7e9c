package config

import (
	"errors"
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

// checkParseError checks that Parse("pools.yaml", doc) fails, with no config,
// with an *Error on field whose Reason contains reason, wrapping is if set.
func checkParseError(t *testing.T, doc, field, reason string, is error) {
	t.Helper()
	cfg, err := Parse("pools.yaml", []byte(doc))
	if err == nil {
		t.Fatalf("Parse = %+v, want an error", cfg)
	}
	if cfg != nil {
		t.Errorf("Parse returned a config with the error %v", err)
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("Parse error %v (%T) is not an *Error", err, err)
	}
	if diff := cmp.Diff(field, e.Field); diff != "" {
		t.Errorf("Field (-want +got):\n%s\nerror: %v", diff, err)
	}
	if e.Source != "pools.yaml" {
		t.Errorf("Source = %q, want pools.yaml", e.Source)
	}
	if !strings.Contains(e.Reason, reason) {
		t.Errorf("Reason = %q, want it to contain %q", e.Reason, reason)
	}
	if is != nil && !errors.Is(err, is) {
		t.Errorf("errors.Is(%v, %v) = false", err, is)
	}
}

// checkEqual checks that a.Equal and, swapped, Equal of the config doc parses
// to are want.
func checkEqual(t *testing.T, a *Config, doc string, want bool) {
	t.Helper()
	b, err := Parse("b.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if got := a.Equal(b); got != want {
		t.Errorf("Equal = %v, want %v", got, want)
	}
	if got := b.Equal(a); got != want {
		t.Errorf("Equal, swapped = %v, want %v", got, want)
	}
}

// checkParse checks that Parse("pools.yaml", doc) returns want, and that it
// is valid (checkValid).
func checkParse(t *testing.T, doc string, want *Config) {
	t.Helper()
	got, err := Parse("pools.yaml", []byte(doc))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if diff := cmp.Diff(want, got, configCmp); diff != "" {
		t.Errorf("Parse (-want +got):\n%s", diff)
	}
	checkValid(t, got)
}
