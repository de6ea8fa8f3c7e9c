package config

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestExamples loads each pool file of examples/: each parses, with no
// warnings, to what its comments say.
func TestExamples(t *testing.T) {
	multi := &Config{Dataplane: DataplaneKubeProxy}
	payments := pool("payments", "198.18.1.0/28", "2001:db8:18:1::/124")
	payments.AutoAssign = false
	payments.Namespaces = []string{"payments", "payments-staging"}
	payments.ServiceSelector = serviceSelector{selector(t, "app.kubernetes.io/part-of=checkout,tier notin (internal)")}
	payments.Priority = 10
	payments.Interfaces = []string{"eth1"}
	payments.NodeSelector = selector(t, "node-role.onprem-lb.io/edge")
	iptables := &Config{Dataplane: DataplaneIPTables, Pools: []Pool{pool("lan", "198.18.0.200-198.18.0.229", "2001:db8:18::200/122")}}
	def := pool("default", "198.18.0.200-198.18.0.239", "2001:db8:18::200/122")
	def.AvoidBuggyIPs = true
	multi.Pools = []Pool{payments, def}
	public := pool("public", "203.0.113.0/26", "2001:db8:113::/120")
	public.Announce = AnnounceBGP
	public.BGPAdvertisement.Communities = []Community{64512<<16 | 100}
	tor := func(name, addr, zone string, asn uint32) BGPPeer {
		return BGPPeer{
			Name: name,
			Session: Session{Address: netip.MustParseAddr(addr), ASN: asn, Port: 179,
				HoldTime: 9 * time.Second, KeepaliveTime: 3 * time.Second,
				BFD: BFD{TransmitInterval: 300 * time.Millisecond, ReceiveInterval: 300 * time.Millisecond, Multiplier: 3}},
			PasswordFile: "/etc/onprem-lb/bgp/" + name,
			NodeSelector: selector(t, "topology.kubernetes.io/zone="+zone),
		}
	}
	bgp := &Config{Dataplane: DataplaneKubeProxy, Pools: []Pool{public, pool("lan", "198.18.0.200-198.18.0.239")},
		BGP: &BGP{ASN: 64512, Peers: []BGPPeer{tor("tor-a", "198.18.10.1", "rack-a", 64601), tor("tor-b", "198.18.11.1", "rack-b", 64602)}}}

	tests := []struct {
		name string // the file in examples/
		want *Config
	}{
		{name: "pools-basic.yaml", want: designConfig()},
		{name: "pools-multi.yaml", want: multi},
		{name: "pools-iptables.yaml", want: iptables},
		{name: "pools-bgp.yaml", want: bgp},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join("..", "examples", tt.name)
			got, err := Load(path)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if len(got.Warnings) > 0 {
				t.Errorf("Load(%s) warnings: %q", path, got.Warnings)
			}
			if diff := cmp.Diff(tt.want, got, configCmp); diff != "" {
				t.Errorf("Load(%s) (-want +got):\n%s", path, diff)
			}
			checkValid(t, got)
		})
	}
	t.Run("manifests/pools.yaml, the ConfigMap kustomize makes, is pools-basic.yaml", func(t *testing.T) {
		example, err := os.ReadFile(filepath.Join("..", "examples", "pools-basic.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		manifest, err := os.ReadFile(filepath.Join("..", "manifests", "pools.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(string(example), string(manifest)); diff != "" {
			t.Errorf("manifests/pools.yaml differs from examples/pools-basic.yaml (-example +manifest):\n%s", diff)
		}
	})
	t.Run("every example is tested", func(t *testing.T) {
		files, err := filepath.Glob(filepath.Join("..", "examples", "pools-*.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if len(files) != len(tests) {
			t.Errorf("examples/ has %d pool files %v, this test checks %d", len(files), files, len(tests))
		}
	})
}
