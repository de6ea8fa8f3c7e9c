package config

import (
	"net/netip"
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

// designExample is the IP-pool YAML of DESIGN.md, verbatim.
const designExample = `pools:
  - name: lan                     # unique, DNS-label
    addresses:                    # CIDRs and first-last ranges, IPv4 and IPv6 mixed
      - 198.18.0.200-198.18.0.239
      - 2001:db8:18::200/122
    exclude: [198.18.0.201]       # never handed out
    autoAssign: true              # false: only for Services that ask for this pool or one of its IPs
    avoidBuggyIPs: false          # skip IPv4 .0 and .255
    namespaces: []                # empty: every namespace may use it
    serviceSelector: {}           # metav1.LabelSelector on the Service
    priority: 0                   # higher wins among matching pools
    interfaces: []                # speaker: announce only on these interfaces (empty: auto)
    nodeSelector: {}              # speaker: only these nodes may announce this pool's IPs
dataplane: kube-proxy             # or iptables (see Dataplane)
loadBalancerClass: ""             # "": Services without a class; else only that class
`

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
