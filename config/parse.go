package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"unicode"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"

	"github.com/onprem-lb/onprem-lb/ipam"
)

// MaxPriority is the highest priority a pool may have; the lowest is 0.
const MaxPriority = 1_000_000

// maxInterfaceName is the longest Linux interface name (IFNAMSIZ - 1).
const maxInterfaceName = 15

// Error says why a pool file is invalid. Test for it with errors.As.
type Error struct {
	// Source is the file, as given to Load or Parse.
	Source string
	// Field is the path of the bad field, spelled as in the file, e.g.
	// "pools[1].addresses[0]" or "dataplane"; "" when the problem is the
	// document as a whole (unreadable, malformed YAML).
	Field string
	// Reason says why, in words, including the message of Err if any. For
	// malformed YAML it includes the line when the YAML parser gives one.
	Reason string
	// Err is the cause, or nil: the read error, the YAML error, the
	// ipam error (wrapping ipam.ErrInvalidAddressRange or
	// ipam.ErrInvalidPool), or a *field.Error for a bad selector.
	Err error
}

func (e *Error) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("config: %s: %s", e.Source, e.Reason)
	}
	return fmt.Sprintf("config: %s: %s: %s", e.Source, e.Field, e.Reason)
}

// Unwrap returns the cause, or nil.
func (e *Error) Unwrap() error { return e.Err }

// Load reads and parses the pool file at path (following symlinks, as in a
// mounted ConfigMap). See Parse.
//
// The file is read with os.ReadFile, not with viper: Parse needs the bytes,
// which viper's ReadInConfig does not give back, and a second read could see
// another version of the file than viper did.
func Load(path string) (*Config, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

// Parse parses and validates a pool file; source names it in errors. It
// returns a valid Config, with a warning for every field it does not know,
// or an *Error for the first problem found. It never panics.
//
// The document is decoded with sigs.k8s.io/yaml into plain maps, keys kept
// exactly, and not through viper: viper folds keys to lower case and splits
// them on dots, which would turn the label key app.kubernetes.io/name of a
// selector into nested keys, and would make a misspelt "autoassign" silently
// mean autoAssign.
func Parse(source string, data []byte) (*Config, error) {
	d := &decoder{source: source}
	cfg := d.document(data)
	if d.err != nil {
		return nil, d.err
	}
	return cfg, nil
}

// decoder walks a decoded document. It keeps the first error: once err is
// set, every method returns zero values, so callers check err once at the
// end.
type decoder struct {
	source   string
	warnings []string
	err      *Error
}

func (d *decoder) fail(field string, cause error, format string, args ...any) {
	if d.err == nil {
		d.err = &Error{Source: d.source, Field: field, Reason: fmt.Sprintf(format, args...), Err: cause}
	}
}

func (d *decoder) document(data []byte) *Config {
	j, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		d.fail("", err, "malformed YAML: %v", err)
		return nil
	}
	var doc any
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.UseNumber() // keep integers exact and tell 1 from 1.5
	if err := dec.Decode(&doc); err != nil {
		d.fail("", err, "malformed YAML: %v", err)
		return nil
	}
	if doc == nil { // an empty document
		doc = map[string]any{}
	}
	m := d.object("", doc, "pools", "dataplane", "loadBalancerClass", "bgp")
	cfg := &Config{Dataplane: DataplaneKubeProxy}
	cfg.Pools = d.pools("pools", m["pools"])
	if d.err == nil {
		d.validatePools(cfg.IPAMPools())
	}
	cfg.BGP = d.bgp("bgp", m["bgp"])
	d.checkAnnounce("pools", cfg.Pools, cfg.BGP)
	switch dp := Dataplane(d.str("dataplane", m["dataplane"])); dp {
	case "":
	case DataplaneKubeProxy, DataplaneIPTables:
		cfg.Dataplane = dp
	default:
		d.fail("dataplane", nil, "unknown dataplane %q, want %q or %q", dp, DataplaneKubeProxy, DataplaneIPTables)
	}
	if class := d.str("loadBalancerClass", m["loadBalancerClass"]); class != "" {
		if msgs := validation.IsQualifiedName(class); len(msgs) > 0 {
			d.fail("loadBalancerClass", nil, "%q is not a qualified name: %s", class, strings.Join(msgs, "; "))
		}
		cfg.LoadBalancerClass = class
	}
	cfg.Warnings = d.warnings
	return cfg
}

func (d *decoder) pools(path string, v any) []Pool {
	list := d.list(path, v)
	if d.err == nil && len(list) == 0 {
		d.fail(path, nil, "at least one pool is required")
	}
	var pools []Pool
	for i, v := range list {
		pools = append(pools, d.pool(fmt.Sprintf("%s[%d]", path, i), v))
	}
	return pools
}

func (d *decoder) pool(path string, v any) Pool {
	m := d.object(path, v, "name", "addresses", "exclude", "autoAssign", "avoidBuggyIPs", "namespaces",
		"serviceSelector", "priority", "interfaces", "nodeSelector", "announce", "bgpAdvertisement")
	p := Pool{Pool: ipam.Pool{
		Name:          d.str(path+".name", m["name"]),
		Addresses:     d.ranges(path+".addresses", m["addresses"]),
		Exclude:       d.ranges(path+".exclude", m["exclude"]),
		AutoAssign:    d.boolean(path+".autoAssign", m["autoAssign"], true),
		AvoidBuggyIPs: d.boolean(path+".avoidBuggyIPs", m["avoidBuggyIPs"], false),
		Namespaces:    d.strList(path+".namespaces", m["namespaces"]),
	}}
	if sel := d.selector(path+".serviceSelector", m["serviceSelector"]); sel != nil && !sel.Empty() {
		p.ServiceSelector = serviceSelector{sel}
	}
	p.Priority = int(d.intIn(path+".priority", m["priority"], 0, 0, MaxPriority))
	p.Interfaces = d.strList(path+".interfaces", m["interfaces"])
	for k, name := range p.Interfaces {
		if why := checkInterfaceName(name); why != "" {
			d.fail(fmt.Sprintf("%s.interfaces[%d]", path, k), nil, "%q %s", name, why)
		}
	}
	p.NodeSelector = d.selector(path+".nodeSelector", m["nodeSelector"])
	d.poolBGP(path, m, &p)
	return p
}

// validatePools checks the pools as a whole with the allocator's own
// validation (names, namespaces, exclude inside the pool, no overlaps), and
// maps its error to the field path.
func (d *decoder) validatePools(pools []ipam.Pool) {
	_, err := ipam.New(pools)
	if err == nil {
		return
	}
	var pe *ipam.PoolError
	if !errors.As(err, &pe) {
		d.fail("pools", err, "%v", err)
		return
	}
	reason := pe.Detail
	if pe.Err != nil {
		reason += ": " + pe.Err.Error()
	}
	if pe.Field != "name" {
		// The path gives the pool's index; the name is what the user searches the file for.
		reason = fmt.Sprintf("pool %q: %s", pe.Pool, reason)
	}
	d.fail(fmt.Sprintf("pools[%d].%s", pe.Index, pe.Field), err, "%s", reason)
}

// ranges parses a list of address entries.
func (d *decoder) ranges(path string, v any) []ipam.AddressRange {
	var rs []ipam.AddressRange
	for k, s := range d.strList(path, v) {
		r, err := ipam.ParseAddressRange(s)
		if err != nil {
			d.fail(fmt.Sprintf("%s[%d]", path, k), err, "%v", err)
		}
		rs = append(rs, r)
	}
	return rs
}

// selector decodes a metav1.LabelSelector: labels.Everything() when v is
// absent or empty, nil after an error.
func (d *decoder) selector(path string, v any) labels.Selector {
	if v == nil {
		return labels.Everything()
	}
	m := d.object(path, v, "matchLabels", "matchExpressions")
	ls := &metav1.LabelSelector{}
	matchLabels := d.mapping(path+".matchLabels", m["matchLabels"])
	for _, k := range slices.Sorted(maps.Keys(matchLabels)) {
		kpath := fmt.Sprintf("%s.matchLabels[%s]", path, k)
		val := d.str(kpath, matchLabels[k])
		if msgs := validation.IsQualifiedName(k); len(msgs) > 0 {
			d.fail(kpath, nil, "label key %q: %s", k, strings.Join(msgs, "; "))
		}
		if msgs := validation.IsValidLabelValue(val); len(msgs) > 0 {
			d.fail(kpath, nil, "label value %q: %s", val, strings.Join(msgs, "; "))
		}
		if ls.MatchLabels == nil {
			ls.MatchLabels = make(map[string]string, len(matchLabels))
		}
		ls.MatchLabels[k] = val
	}
	for i, v := range d.list(path+".matchExpressions", m["matchExpressions"]) {
		epath := fmt.Sprintf("%s.matchExpressions[%d]", path, i)
		e := d.object(epath, v, "key", "operator", "values")
		req := metav1.LabelSelectorRequirement{
			Key:      d.str(epath+".key", e["key"]),
			Operator: metav1.LabelSelectorOperator(d.str(epath+".operator", e["operator"])),
			Values:   d.strList(epath+".values", e["values"]),
		}
		if d.err != nil {
			return nil
		}
		if errs := metav1validation.ValidateLabelSelectorRequirement(req, metav1validation.LabelSelectorValidationOptions{}, field.NewPath(epath)); len(errs) > 0 {
			d.fail(errs[0].Field, errs[0], "%s", errs[0].ErrorBody())
		}
		ls.MatchExpressions = append(ls.MatchExpressions, req)
	}
	if d.err != nil {
		return nil
	}
	sel, err := metav1.LabelSelectorAsSelector(ls)
	if err != nil {
		d.fail(path, err, "%v", err)
		return nil
	}
	return sel
}

// checkInterfaceName returns why name is not a Linux interface name, or "".
func checkInterfaceName(name string) string {
	switch {
	case name == "":
		return "is empty"
	case len(name) > maxInterfaceName:
		return fmt.Sprintf("is longer than %d bytes", maxInterfaceName)
	case name == "." || name == "..":
		return "is not an interface name"
	case strings.ContainsFunc(name, func(r rune) bool { return r == '/' || r == ':' || unicode.IsSpace(r) || !unicode.IsPrint(r) }):
		return "contains '/', ':', a space or an unprintable character"
	}
	return ""
}

// object returns v, which must be a map, and warns about each of its keys
// not in known, in key order.
func (d *decoder) object(path string, v any, known ...string) map[string]any {
	m := d.mapping(path, v)
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if !slices.Contains(known, k) {
			d.warnings = append(d.warnings, joinPath(path, k)+": unknown field")
		}
	}
	return m
}

// The accessors below take a decoded YAML value (nil, bool, json.Number,
// string, []any or map[string]any). nil means absent: they return the zero
// value, or def.

func (d *decoder) mapping(path string, v any) map[string]any {
	m, ok := v.(map[string]any)
	if !ok && v != nil {
		d.fail(path, nil, "must be a map, not %s", describe(v))
	}
	if d.err != nil {
		return nil
	}
	return m
}

func (d *decoder) list(path string, v any) []any {
	l, ok := v.([]any)
	if !ok && v != nil {
		d.fail(path, nil, "must be a list, not %s", describe(v))
	}
	if d.err != nil {
		return nil
	}
	return l
}

func (d *decoder) str(path string, v any) string {
	s, ok := v.(string)
	if !ok && v != nil {
		d.fail(path, nil, "must be a string, not %s", describe(v))
	}
	if d.err != nil {
		return ""
	}
	return s
}

// strList returns a list of strings; an element may not be null.
func (d *decoder) strList(path string, v any) []string {
	var ss []string
	for k, e := range d.list(path, v) {
		if e == nil {
			d.fail(fmt.Sprintf("%s[%d]", path, k), nil, "must be a string, not null")
		}
		ss = append(ss, d.str(fmt.Sprintf("%s[%d]", path, k), e))
	}
	if d.err != nil {
		return nil
	}
	return ss
}

func (d *decoder) boolean(path string, v any, def bool) bool {
	if v == nil {
		return def
	}
	b, ok := v.(bool)
	if !ok {
		d.fail(path, nil, "must be true or false, not %s", describe(v))
	}
	return b
}

func (d *decoder) integer(path string, v any) int64 {
	if v == nil {
		return 0
	}
	n, ok := v.(json.Number)
	if !ok {
		d.fail(path, nil, "must be an integer, not %s", describe(v))
		return 0
	}
	i, err := n.Int64()
	if err != nil {
		d.fail(path, nil, "must be an integer, not %s", n)
	}
	return i
}

// describe names the kind of a decoded YAML value, for messages.
func describe(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case json.Number:
		return "a number (" + v.String() + ")"
	case string:
		return "a string"
	case []any:
		return "a list"
	case map[string]any:
		return "a map"
	}
	return fmt.Sprintf("%T", v)
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
