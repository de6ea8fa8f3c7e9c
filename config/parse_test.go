package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/onprem-lb/onprem-lb/ipam"
)

// onePool is a document of one pool "p" on 198.18.0.0/24 plus the given
// lines, indented as fields of the pool.
func onePool(lines ...string) string {
	doc := "pools:\n  - name: p\n    addresses: [198.18.0.0/24]\n"
	for _, l := range lines {
		doc += "    " + l + "\n"
	}
	return doc
}

func TestParse(t *testing.T) {
	// withPool returns a config of one pool p (on 198.18.0.0/24), changed by f.
	withPool := func(f func(p *Pool)) *Config {
		p := pool("p", "198.18.0.0/24")
		f(&p)
		return &Config{Pools: []Pool{p}, Dataplane: DataplaneKubeProxy}
	}
	tests := []struct {
		name string
		doc  string
		want *Config
	}{
		{name: "DESIGN.md example", doc: designExample(t), want: designConfig()},
		{name: "defaults", doc: onePool(), want: withPool(func(*Pool) {})},
		{
			name: "pools in file order, IPv4 and IPv6 only",
			doc:  "pools:\n  - name: v6\n    addresses: [2001:db8:18::/64]\n  - name: v4\n    addresses: ['198.18.0.0 - 198.18.0.9']\n",
			want: &Config{Pools: []Pool{pool("v6", "2001:db8:18::/64"), pool("v4", "198.18.0.0-198.18.0.9")}, Dataplane: DataplaneKubeProxy},
		},
		{name: "addresses", doc: "pools:\n- name: p\n  addresses: [198.18.0.0/24, 198.18.1.5, 198.18.2.1-198.18.2.3, '2001:db8::1-2001:db8::ff', 2001:db8:1::/48]\n",
			want: &Config{Pools: []Pool{pool("p", "198.18.0.0/24", "198.18.1.5", "198.18.2.1-198.18.2.3", "2001:db8::1-2001:db8::ff", "2001:db8:1::/48")}, Dataplane: DataplaneKubeProxy}},
		{name: "exclude", doc: onePool("exclude: [198.18.0.1, 198.18.0.8/29]"),
			want: withPool(func(p *Pool) { p.Exclude = ranges("198.18.0.1", "198.18.0.8/29") })},
		{name: "autoAssign false", doc: onePool("autoAssign: false"), want: withPool(func(p *Pool) { p.AutoAssign = false })},
		{name: "autoAssign true", doc: onePool("autoAssign: true"), want: withPool(func(*Pool) {})},
		{name: "autoAssign null is the default", doc: onePool("autoAssign:"), want: withPool(func(*Pool) {})},
		{name: "avoidBuggyIPs", doc: onePool("avoidBuggyIPs: true"), want: withPool(func(p *Pool) { p.AvoidBuggyIPs = true })},
		{name: "namespaces", doc: onePool("namespaces: [team-a, kube-system]"),
			want: withPool(func(p *Pool) { p.Namespaces = []string{"team-a", "kube-system"} })},
		{name: "priority", doc: onePool("priority: 10"), want: withPool(func(p *Pool) { p.Priority = 10 })},
		{name: "priority maximum", doc: onePool("priority: 1000000"), want: withPool(func(p *Pool) { p.Priority = MaxPriority })},
		{name: "interfaces", doc: onePool("interfaces: [eth0, bond0.100, enp0s31f6]"),
			want: withPool(func(p *Pool) { p.Interfaces = []string{"eth0", "bond0.100", "enp0s31f6"} })},
		{name: "serviceSelector matchLabels keeps dots and case", doc: onePool("serviceSelector: {matchLabels: {app.kubernetes.io/name: Web, Tier: front}}"),
			want: withPool(func(p *Pool) {
				p.ServiceSelector = serviceSelector{selector(t, "app.kubernetes.io/name=Web,Tier=front")}
			})},
		{
			name: "serviceSelector matchExpressions",
			doc: onePool("serviceSelector:", "  matchExpressions:",
				"    - {key: env, operator: In, values: [prod, staging]}",
				"    - {key: example.com/tier, operator: NotIn, values: [internal]}",
				"    - {key: public, operator: Exists}",
				"    - {key: legacy, operator: DoesNotExist}"),
			want: withPool(func(p *Pool) {
				p.ServiceSelector = serviceSelector{selector(t, "env in (prod,staging),example.com/tier notin (internal),public,!legacy")}
			}),
		},
		{name: "serviceSelector matchLabels and matchExpressions", doc: onePool("serviceSelector: {matchLabels: {a: x}, matchExpressions: [{key: b, operator: Exists}]}"),
			want: withPool(func(p *Pool) { p.ServiceSelector = serviceSelector{selector(t, "a=x,b")} })},
		{name: "empty serviceSelector matches every Service", doc: onePool("serviceSelector: {matchLabels: {}, matchExpressions: []}"),
			want: withPool(func(*Pool) {})},
		{name: "nodeSelector", doc: onePool("nodeSelector: {matchLabels: {node-role.kubernetes.io/edge: ''}, matchExpressions: [{key: zone, operator: In, values: [a]}]}"),
			want: withPool(func(p *Pool) { p.NodeSelector = selector(t, "node-role.kubernetes.io/edge=,zone in (a)") })},
		{name: "empty nodeSelector", doc: onePool("nodeSelector: {}"), want: withPool(func(*Pool) {})},
		{name: "dataplane iptables", doc: onePool() + "dataplane: iptables\n",
			want: &Config{Pools: []Pool{pool("p", "198.18.0.0/24")}, Dataplane: DataplaneIPTables}},
		{name: "dataplane kube-proxy", doc: onePool() + "dataplane: kube-proxy\n", want: withPool(func(*Pool) {})},
		{name: "dataplane empty is the default", doc: onePool() + "dataplane: ''\n", want: withPool(func(*Pool) {})},
		{name: "loadBalancerClass", doc: onePool() + "loadBalancerClass: onprem-lb.io/lan\n",
			want: &Config{Pools: []Pool{pool("p", "198.18.0.0/24")}, Dataplane: DataplaneKubeProxy, LoadBalancerClass: "onprem-lb.io/lan"}},
		{name: "JSON is YAML", doc: `{"pools": [{"name": "p", "addresses": ["198.18.0.0/24"], "priority": 3}]}`,
			want: withPool(func(p *Pool) { p.Priority = 3 })},
		{
			name: "unknown fields are warnings, by path",
			doc: "version: 2\n" + onePool("autoassign: false", "Priority: 3",
				"serviceSelector: {matchLabels: {a: x}, matchlabels: {b: y}, matchExpressions: [{key: c, operator: Exists, value: z}]}",
				"nodeSelector: {selector: x}"),
			want: withPool(func(p *Pool) {
				p.ServiceSelector = serviceSelector{selector(t, "a=x,c")}
			}),
		},
	}
	tests[len(tests)-1].want.Warnings = []string{
		"version: unknown field",
		"pools[0].Priority: unknown field",
		"pools[0].autoassign: unknown field",
		"pools[0].serviceSelector.matchlabels: unknown field",
		"pools[0].serviceSelector.matchExpressions[0].value: unknown field",
		"pools[0].nodeSelector.selector: unknown field",
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkParse(t, tt.doc, tt.want) })
	}
}

func TestParseErrors(t *testing.T) {
	long := strings.Repeat("a", 64)
	tests := []struct {
		name   string
		doc    string
		field  string // want Error.Field
		reason string // want in Error.Reason
		is     error  // want errors.Is, if set
	}{
		// The document.
		{name: "malformed YAML", doc: "pools: [", field: "", reason: "malformed YAML: yaml: line 1:"},
		{name: "tab indentation", doc: "pools:\n\t- name: p\n", field: "", reason: "line 2"},
		{name: "duplicate key", doc: onePool("name: q"), field: "", reason: `line 4: key "name" already set`},
		{name: "not a map", doc: "- name: p\n", field: "", reason: "must be a map, not a list"},
		{name: "a scalar", doc: "pools", field: "", reason: "must be a map, not a string"},
		{name: "unsupported value", doc: onePool("priority: .nan"), field: "", reason: "malformed YAML"},
		// pools
		{name: "empty document", doc: "", field: "pools", reason: "at least one pool is required"},
		{name: "comments only", doc: "# nothing\n", field: "pools", reason: "at least one pool is required"},
		{name: "pools missing", doc: "dataplane: iptables\n", field: "pools", reason: "at least one pool is required"},
		{name: "pools null", doc: "pools:\n", field: "pools", reason: "at least one pool is required"},
		{name: "pools empty", doc: "pools: []\n", field: "pools", reason: "at least one pool is required"},
		{name: "pools a map", doc: "pools: {name: p}\n", field: "pools", reason: "must be a list, not a map"},
		{name: "pool a string", doc: "pools: [lan]\n", field: "pools[0]", reason: "must be a map, not a string"},
		{name: "pool null", doc: "pools: [~]\n", field: "pools[0].name", reason: "must not be empty", is: ipam.ErrInvalidPool},
		// name
		{name: "name missing", doc: "pools:\n- addresses: [198.18.0.0/24]\n", field: "pools[0].name", reason: "must not be empty", is: ipam.ErrInvalidPool},
		{name: "name upper case", doc: "pools:\n- name: Lan\n  addresses: [198.18.0.0/24]\n", field: "pools[0].name", reason: "not a DNS label", is: ipam.ErrInvalidPool},
		{name: "name with underscore", doc: "pools:\n- name: my_pool\n  addresses: [198.18.0.0/24]\n", field: "pools[0].name", reason: "not a DNS label"},
		{name: "name with dot", doc: "pools:\n- name: a.b\n  addresses: [198.18.0.0/24]\n", field: "pools[0].name", reason: "not a DNS label"},
		{name: "name too long", doc: "pools:\n- name: " + long + "\n  addresses: [198.18.0.0/24]\n", field: "pools[0].name", reason: "longer than 63"},
		{name: "name a number", doc: "pools:\n- name: 12\n  addresses: [198.18.0.0/24]\n", field: "pools[0].name", reason: "must be a string, not a number (12)"},
		{name: "duplicate names", doc: "pools:\n- name: p\n  addresses: [198.18.0.0/24]\n- name: p\n  addresses: [198.18.1.0/24]\n",
			field: "pools[1].name", reason: "duplicate name, also used by pools[0]", is: ipam.ErrInvalidPool},
		// addresses
		{name: "addresses missing", doc: "pools:\n- name: p\n", field: "pools[0].addresses", reason: "at least one address range", is: ipam.ErrInvalidPool},
		{name: "addresses empty", doc: "pools:\n- name: p\n  addresses: []\n", field: "pools[0].addresses", reason: "at least one address range"},
		{name: "addresses a string", doc: "pools:\n- name: p\n  addresses: 198.18.0.0/24\n", field: "pools[0].addresses", reason: "must be a list, not a string"},
		{name: "address garbage", doc: "pools:\n- name: p\n  addresses: [198.18.0.0/24, lan]\n", field: "pools[0].addresses[1]", reason: `address range "lan"`, is: ipam.ErrInvalidAddressRange},
		{name: "address host bits set", doc: "pools:\n- name: p\n  addresses: [198.18.0.1/24]\n", field: "pools[0].addresses[0]", reason: "host bits set", is: ipam.ErrInvalidAddressRange},
		{name: "address range reversed", doc: "pools:\n- name: p\n  addresses: [198.18.0.9-198.18.0.1]\n", field: "pools[0].addresses[0]", reason: "is after last address", is: ipam.ErrInvalidAddressRange},
		{name: "address range of two families", doc: "pools:\n- name: p\n  addresses: ['198.18.0.1-2001:db8::1']\n", field: "pools[0].addresses[0]", reason: "mixed families", is: ipam.ErrInvalidAddressRange},
		{name: "address IPv4-mapped", doc: "pools:\n- name: p\n  addresses: ['::ffff:198.18.0.1']\n", field: "pools[0].addresses[0]", reason: "IPv4-mapped", is: ipam.ErrInvalidAddressRange},
		{name: "address bad prefix length", doc: "pools:\n- name: p\n  addresses: [198.18.0.0/33]\n", field: "pools[0].addresses[0]", reason: "invalid address range", is: ipam.ErrInvalidAddressRange},
		{name: "address null", doc: "pools:\n- name: p\n  addresses: [~]\n", field: "pools[0].addresses[0]", reason: "must be a string, not null"},
		{name: "address a number", doc: "pools:\n- name: p\n  addresses: [1]\n", field: "pools[0].addresses[0]", reason: "must be a string, not a number"},
		{name: "addresses overlap in a pool", doc: "pools:\n- name: p\n  addresses: [198.18.0.0/24, 198.18.0.5]\n",
			field: "pools[0].addresses[1]", reason: "198.18.0.5 overlaps addresses[0] (198.18.0.0/24) of the same pool", is: ipam.ErrInvalidPool},
		{name: "pools overlap", doc: "pools:\n- name: a\n  addresses: [2001:db8::/64]\n- name: b\n  addresses: [198.18.0.0/24, '2001:db8::5-2001:db8::9']\n",
			field: "pools[1].addresses[1]", reason: `pool "b": 2001:db8::5-2001:db8::9 overlaps pools[0].addresses[0] (2001:db8::/64) of pool "a"`, is: ipam.ErrInvalidPool},
		// exclude
		{name: "exclude outside the pool", doc: onePool("exclude: [198.18.0.1, 198.18.1.1]"), field: "pools[0].exclude[1]", reason: "198.18.1.1 is not inside the pool's addresses", is: ipam.ErrInvalidPool},
		{name: "exclude across the pool's end", doc: onePool("exclude: [198.18.0.250-198.18.1.5]"), field: "pools[0].exclude[0]", reason: "not inside the pool's addresses"},
		{name: "exclude garbage", doc: onePool("exclude: [all]"), field: "pools[0].exclude[0]", reason: `address range "all"`, is: ipam.ErrInvalidAddressRange},
		{name: "exclude a string", doc: onePool("exclude: 198.18.0.1"), field: "pools[0].exclude", reason: "must be a list, not a string"},
		// booleans
		{name: "autoAssign a string", doc: onePool(`autoAssign: "false"`), field: "pools[0].autoAssign", reason: "must be true or false, not a string"},
		{name: "avoidBuggyIPs a number", doc: onePool("avoidBuggyIPs: 1"), field: "pools[0].avoidBuggyIPs", reason: "must be true or false, not a number (1)"},
		// namespaces
		{name: "namespace not a DNS label", doc: onePool("namespaces: [team-a, Team_B]"), field: "pools[0].namespaces[1]", reason: `namespace "Team_B"`, is: ipam.ErrInvalidPool},
		{name: "namespace empty", doc: onePool("namespaces: ['']"), field: "pools[0].namespaces[0]", reason: "must not be empty"},
		{name: "namespaces a string", doc: onePool("namespaces: team-a"), field: "pools[0].namespaces", reason: "must be a list, not a string"},
		// priority
		{name: "priority negative", doc: onePool("priority: -1"), field: "pools[0].priority", reason: "-1 is negative"},
		{name: "priority absurd", doc: onePool("priority: 1000001"), field: "pools[0].priority", reason: "1000001 is more than the maximum, 1000000"},
		{name: "priority huge", doc: onePool("priority: 99999999999999999999"), field: "pools[0].priority", reason: "must be an integer"},
		{name: "priority fractional", doc: onePool("priority: 1.5"), field: "pools[0].priority", reason: "must be an integer, not 1.5"},
		{name: "priority a string", doc: onePool("priority: high"), field: "pools[0].priority", reason: "must be an integer, not a string"},
		// interfaces
		{name: "interface empty", doc: onePool("interfaces: ['']"), field: "pools[0].interfaces[0]", reason: "is empty"},
		{name: "interface too long", doc: onePool("interfaces: [eth0, abcdefghijklmnop]"), field: "pools[0].interfaces[1]", reason: "longer than 15"},
		{name: "interface with slash", doc: onePool("interfaces: [eth0/1]"), field: "pools[0].interfaces[0]", reason: "contains '/'"},
		{name: "interface with space", doc: onePool("interfaces: ['eth 0']"), field: "pools[0].interfaces[0]", reason: "a space"},
		{name: "interface dot", doc: onePool("interfaces: [.]"), field: "pools[0].interfaces[0]", reason: "not an interface name"},
		{name: "interfaces a map", doc: onePool("interfaces: {eth0: true}"), field: "pools[0].interfaces", reason: "must be a list, not a map"},
		// selectors
		{name: "serviceSelector a string", doc: onePool("serviceSelector: app=web"), field: "pools[0].serviceSelector", reason: "must be a map, not a string"},
		{name: "matchLabels a list", doc: onePool("serviceSelector: {matchLabels: [a]}"), field: "pools[0].serviceSelector.matchLabels", reason: "must be a map, not a list"},
		{name: "matchLabels bad key", doc: onePool("serviceSelector: {matchLabels: {'-a': x}}"), field: "pools[0].serviceSelector.matchLabels[-a]", reason: `label key "-a"`},
		{name: "matchLabels bad key prefix", doc: onePool("serviceSelector: {matchLabels: {'Example.com/a': x}}"), field: "pools[0].serviceSelector.matchLabels[Example.com/a]", reason: "prefix part"},
		{name: "matchLabels bad value", doc: onePool("serviceSelector: {matchLabels: {a: 'x y'}}"), field: "pools[0].serviceSelector.matchLabels[a]", reason: `label value "x y"`},
		{name: "matchLabels value a number", doc: onePool("serviceSelector: {matchLabels: {version: 1.0}}"), field: "pools[0].serviceSelector.matchLabels[version]", reason: "must be a string, not a number"},
		{name: "matchExpressions a map", doc: onePool("serviceSelector: {matchExpressions: {key: a}}"), field: "pools[0].serviceSelector.matchExpressions", reason: "must be a list, not a map"},
		{name: "matchExpression bad operator", doc: onePool("serviceSelector: {matchExpressions: [{key: a, operator: in, values: [x]}]}"),
			field: "pools[0].serviceSelector.matchExpressions[0].operator", reason: `Invalid value: "in": not a valid selector operator`},
		{name: "matchExpression no operator", doc: onePool("serviceSelector: {matchExpressions: [{key: a}]}"),
			field: "pools[0].serviceSelector.matchExpressions[0].operator", reason: "not a valid selector operator"},
		{name: "matchExpression In without values", doc: onePool("serviceSelector: {matchExpressions: [{key: a, operator: Exists}, {key: b, operator: In}]}"),
			field: "pools[0].serviceSelector.matchExpressions[1].values", reason: "Required value"},
		{name: "matchExpression Exists with values", doc: onePool("serviceSelector: {matchExpressions: [{key: a, operator: Exists, values: [x]}]}"),
			field: "pools[0].serviceSelector.matchExpressions[0].values", reason: "Forbidden"},
		{name: "matchExpression bad key", doc: onePool("serviceSelector: {matchExpressions: [{key: 'a b', operator: Exists}]}"),
			field: "pools[0].serviceSelector.matchExpressions[0].key", reason: "Invalid value"},
		{name: "matchExpression bad value", doc: onePool("serviceSelector: {matchExpressions: [{key: a, operator: In, values: [ok, 'not ok']}]}"),
			field: "pools[0].serviceSelector.matchExpressions[0].values[1]", reason: "Invalid value"},
		{name: "matchExpression values a string", doc: onePool("serviceSelector: {matchExpressions: [{key: a, operator: In, values: x}]}"),
			field: "pools[0].serviceSelector.matchExpressions[0].values", reason: "must be a list, not a string"},
		{name: "nodeSelector bad", doc: onePool("nodeSelector: {matchLabels: {kubernetes.io/hostname: 'a b'}}"), field: "pools[0].nodeSelector.matchLabels[kubernetes.io/hostname]", reason: "label value"},
		{name: "nodeSelector bad operator", doc: onePool("nodeSelector: {matchExpressions: [{key: a, operator: Gt, values: ['1']}]}"),
			field: "pools[0].nodeSelector.matchExpressions[0].operator", reason: "not a valid selector operator"},
		// dataplane
		{name: "dataplane unknown", doc: onePool() + "dataplane: ipvs\n", field: "dataplane", reason: `unknown dataplane "ipvs", want "kube-proxy" or "iptables"`},
		{name: "dataplane wrong case", doc: onePool() + "dataplane: IPTables\n", field: "dataplane", reason: `unknown dataplane "IPTables"`},
		{name: "dataplane a list", doc: onePool() + "dataplane: [iptables]\n", field: "dataplane", reason: "must be a string, not a list"},
		// loadBalancerClass
		{name: "loadBalancerClass with space", doc: onePool() + "loadBalancerClass: 'onprem lb'\n", field: "loadBalancerClass", reason: `"onprem lb" is not a qualified name`},
		{name: "loadBalancerClass two slashes", doc: onePool() + "loadBalancerClass: a/b/c\n", field: "loadBalancerClass", reason: "not a qualified name"},
		{name: "loadBalancerClass too long", doc: onePool() + "loadBalancerClass: example.com/" + long + "\n", field: "loadBalancerClass", reason: "not a qualified name"},
		{name: "loadBalancerClass a boolean", doc: onePool() + "loadBalancerClass: true\n", field: "loadBalancerClass", reason: "must be a string, not a boolean"},
		// The first problem wins.
		{name: "first problem", doc: "pools:\n- name: a\n  addresses: [x]\n- name: B\n  addresses: [y]\ndataplane: z\n", field: "pools[0].addresses[0]", reason: `"x"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkParseError(t, tt.doc, tt.field, tt.reason, tt.is) })
	}
}

func TestErrorString(t *testing.T) {
	_, err := Parse("/etc/onprem-lb/pools.yaml", []byte("pools:\n- name: a\n  addresses: [198.18.0.0/24]\n- name: b\n  addresses: [198.18.0.7]\n"))
	want := `config: /etc/onprem-lb/pools.yaml: pools[1].addresses[0]: pool "b": 198.18.0.7 overlaps pools[0].addresses[0] (198.18.0.0/24) of pool "a"`
	if err == nil || err.Error() != want {
		t.Errorf("error = %v, want %s", err, want)
	}
	var pe *ipam.PoolError
	if !errors.As(err, &pe) || pe.Pool != "b" {
		t.Errorf("errors.As(%v, *ipam.PoolError) = %v, want pool b", err, pe)
	}

	_, err = Parse("pools.yaml", []byte("pools: {"))
	if got, want := err.Error(), "config: pools.yaml: malformed YAML: yaml: line 1: did not find expected node content"; got != want {
		t.Errorf("error = %s, want %s", got, want)
	}

	_, err = Parse("pools.yaml", []byte(onePool("serviceSelector: {matchExpressions: [{key: a, operator: In}]}")))
	var fe *field.Error
	if !errors.As(err, &fe) || fe.Type != field.ErrorTypeRequired {
		t.Errorf("errors.As(%v, *field.Error) = %v, want a Required error", err, fe)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "pools.yaml")
	if err := os.WriteFile(good, []byte(designExample(t)), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := Load(good)
	if err != nil {
		t.Fatalf("Load(%s): %v", good, err)
	}
	if diff := cmp.Diff(designConfig(), got, configCmp); diff != "" {
		t.Errorf("Load (-want +got):\n%s", diff)
	}

	missing := filepath.Join(dir, "missing.yaml")
	_, err = Load(missing)
	var e *Error
	if !errors.As(err, &e) || e.Source != missing || e.Field != "" || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load(%s) = %v, want an *Error for the file wrapping fs.ErrNotExist", missing, err)
	}

	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("pools: []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(bad); !errors.As(err, &e) || e.Source != bad || e.Field != "pools" {
		t.Errorf("Load(%s) = %v, want an *Error on pools naming the file", bad, err)
	}
}

func TestIPAMPools(t *testing.T) {
	cfg, err := Parse("pools.yaml", []byte(`pools:
- name: web
  addresses: [198.18.0.0/28]
  autoAssign: false
  namespaces: [shop]
  priority: 5
  serviceSelector:
    matchLabels: {app.kubernetes.io/name: web}
- name: rest
  addresses: [198.18.1.0/28]
`))
	if err != nil {
		t.Fatal(err)
	}
	pools := cfg.IPAMPools()
	want := []ipam.Pool{
		{Name: "web", Addresses: ranges("198.18.0.0/28"), Namespaces: []string{"shop"}, Priority: 5,
			ServiceSelector: serviceSelector{selector(t, "app.kubernetes.io/name=web")}},
		{Name: "rest", Addresses: ranges("198.18.1.0/28"), AutoAssign: true},
	}
	if diff := cmp.Diff(want, pools, configCmp); diff != "" {
		t.Errorf("IPAMPools (-want +got):\n%s", diff)
	}
	if _, err := ipam.New(pools); err != nil {
		t.Errorf("ipam.New(IPAMPools()): %v", err)
	}

	sel := pools[0].ServiceSelector
	for _, tt := range []struct {
		name   string
		labels map[string]string
		want   bool
	}{
		{name: "matching label", labels: map[string]string{"app.kubernetes.io/name": "web", "x": "y"}, want: true},
		{name: "other value", labels: map[string]string{"app.kubernetes.io/name": "db"}},
		{name: "no labels", labels: nil},
		{name: "key folded to lower case is another key", labels: map[string]string{"app": "web"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := sel.Matches(tt.labels); got != tt.want {
				t.Errorf("Matches(%v) = %v, want %v", tt.labels, got, tt.want)
			}
		})
	}
}

func TestDataplaneIPMode(t *testing.T) {
	tests := []struct {
		name string
		dp   Dataplane
		want corev1.LoadBalancerIPMode
	}{
		{name: "kube-proxy", dp: DataplaneKubeProxy, want: corev1.LoadBalancerIPModeVIP},
		{name: "iptables", dp: DataplaneIPTables, want: corev1.LoadBalancerIPModeProxy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.dp.IPMode(); got != tt.want {
				t.Errorf("%s.IPMode() = %s, want %s", tt.dp, got, tt.want)
			}
		})
	}
}

func TestEqual(t *testing.T) {
	base := `# base
pools:
- name: p
  addresses: [198.18.0.0/24, 2001:db8::/120]
  serviceSelector: {matchLabels: {a: x, b: w}, matchExpressions: [{key: c, operator: In, values: ['1', '2']}]}
  nodeSelector: {matchLabels: {zone: a}}
`
	tests := []struct {
		name string
		doc  string
		want bool
	}{
		{name: "same", doc: base, want: true},
		{name: "comments, order and style", doc: `pools: [{nodeSelector: {matchLabels: {zone: a}},
  serviceSelector: {matchExpressions: [{values: ["2", "1"], operator: In, key: c}], matchLabels: {b: w, a: x}},
  addresses: ["198.18.0.0/24", "2001:db8::/120"], name: p, autoAssign: true}]  # same
dataplane: kube-proxy
`, want: true},
		{name: "address order", doc: strings.Replace(base, "[198.18.0.0/24, 2001:db8::/120]", "[2001:db8::/120, 198.18.0.0/24]", 1)},
		{name: "service selector", doc: strings.Replace(base, "b: w", "b: z", 1)},
		{name: "node selector", doc: strings.Replace(base, "zone: a", "zone: b", 1)},
		{name: "no service selector", doc: strings.Replace(base, "serviceSelector", "serviceSelectorX", 1)},
		{name: "autoAssign", doc: base + "  autoAssign: false\n"},
		{name: "avoidBuggyIPs", doc: base + "  avoidBuggyIPs: true\n"},
		{name: "priority", doc: base + "  priority: 1\n"},
		{name: "namespaces", doc: base + "  namespaces: [a]\n"},
		{name: "exclude", doc: base + "  exclude: [198.18.0.1]\n"},
		{name: "interfaces", doc: base + "  interfaces: [eth0]\n"},
		{name: "name", doc: strings.Replace(base, "name: p", "name: q", 1)},
		{name: "another pool", doc: base + "- name: q\n  addresses: [198.18.1.0/24]\n"},
		{name: "dataplane", doc: base + "dataplane: iptables\n"},
		{name: "loadBalancerClass", doc: base + "loadBalancerClass: x\n"},
		{name: "a warning", doc: base + "x: 1\n"},
	}
	a, err := Parse("a.yaml", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkEqual(t, a, tt.doc, tt.want) })
	}
	t.Run("nil", func(t *testing.T) {
		var none *Config
		if a.Equal(none) || none.Equal(a) || !none.Equal(nil) {
			t.Errorf("Equal with nil: got %v %v %v, want false false true", a.Equal(none), none.Equal(a), none.Equal(nil))
		}
	})
	t.Run("foreign service selector", func(t *testing.T) {
		b := *a
		b.Pools = []Pool{a.Pools[0]}
		b.Pools[0].ServiceSelector = foreignSelector{}
		if a.Equal(&b) || b.Equal(a) {
			t.Errorf("a config with a foreign ipam.Selector is Equal to a parsed one")
		}
	})
}

// foreignSelector is an ipam.Selector that config did not make.
type foreignSelector struct{}

func (foreignSelector) Matches(map[string]string) bool { return true }
