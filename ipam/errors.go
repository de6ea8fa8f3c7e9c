package ipam

import (
	"errors"
	"fmt"
	"net/netip"
)

// kind is the type of the sentinel errors. Each kind has a stable short
// reason; see ReasonOf.
type kind struct {
	reason string
	text   string
}

func (k *kind) Error() string { return k.text }

// Sentinel errors. Every error the package returns wraps exactly one of them
// (a PoolError whose field failed to parse wraps ErrInvalidPool and
// ErrInvalidAddressRange); test with errors.Is, and use errors.As with
// *RequestError or *PoolError for the details. The reason in brackets is
// what ReasonOf returns.
var (
	// ErrInvalidAddressRange: an address entry does not parse or is not a
	// range (ParseAddressRange, AddressRange.Validate). [InvalidAddressRange]
	ErrInvalidAddressRange error = &kind{"InvalidAddressRange", "invalid address range"}
	// ErrInvalidPool: a pool fails validation in New or Reconfigure.
	// [InvalidPool]
	ErrInvalidPool error = &kind{"InvalidPool", "invalid pool"}
	// ErrInvalidRequest: the request itself is malformed (missing key,
	// unknown policy or family, two IPs of one family, ...). [InvalidRequest]
	ErrInvalidRequest error = &kind{"InvalidRequest", "invalid request"}
	// ErrPoolNotFound: the requested pool does not exist. [PoolNotFound]
	ErrPoolNotFound error = &kind{"PoolNotFound", "pool not found"}
	// ErrNamespaceNotAllowed: the pool's namespaces do not include the
	// Service's. [NamespaceNotAllowed]
	ErrNamespaceNotAllowed error = &kind{"NamespaceNotAllowed", "namespace not allowed to use pool"}
	// ErrServiceSelectorMismatch: the pool's serviceSelector does not match
	// the Service's labels. [ServiceSelectorMismatch]
	ErrServiceSelectorMismatch error = &kind{"ServiceSelectorMismatch", "service selector does not match"}
	// ErrPoolNotAutoAssign: the address is in a pool with autoAssign off
	// that the Service asked for neither by name nor by IP. [PoolNotAutoAssign]
	ErrPoolNotAutoAssign error = &kind{"PoolNotAutoAssign", "pool is not auto-assigned"}
	// ErrNoMatchingPool: no pool with addresses of the family may be used by
	// the Service. [NoMatchingPool]
	ErrNoMatchingPool error = &kind{"NoMatchingPool", "no pool matches"}
	// ErrWrongFamily: an address or the requested pool is not of a family
	// the Service wants. [WrongFamily]
	ErrWrongFamily error = &kind{"WrongFamily", "wrong IP family"}
	// ErrIPNotInPool: the address is not in any pool, or not in the pool
	// the Service asked for. [IPNotInPool]
	ErrIPNotInPool error = &kind{"IPNotInPool", "IP not in any pool the service may use"}
	// ErrIPExcluded: the address is in a pool's exclude list, or is an IPv4
	// .0 or .255 address of a pool with avoidBuggyIPs. [IPExcluded]
	ErrIPExcluded error = &kind{"IPExcluded", "IP excluded"}
	// ErrIPNotRequested: Assign was given an address other than the one the
	// request asks for. [IPNotRequested]
	ErrIPNotRequested error = &kind{"IPNotRequested", "IP differs from the requested IP"}
	// ErrPoolExhausted: every pool the Service may use has no free address
	// of the family. [PoolExhausted]
	ErrPoolExhausted error = &kind{"PoolExhausted", "pool exhausted"}
	// ErrIPInUse: the address is held by another Service and may not be
	// shared with it (other namespace, no or another sharing key).
	// [IPInUse]
	ErrIPInUse error = &kind{"IPInUse", "IP in use"}
	// ErrPortCollision: the Services could share the address but use the
	// same protocol and port. [PortCollision]
	ErrPortCollision error = &kind{"PortCollision", "port collision on shared IP"}
	// ErrPodSelectorMismatch: the Services could share the address but at
	// least one has externalTrafficPolicy Local and they do not select the
	// same pods. [PodSelectorMismatch]
	ErrPodSelectorMismatch error = &kind{"PodSelectorMismatch", "pod selectors differ on shared IP"}
)

// ReasonOf returns the stable short reason of err, for a metric label or the
// reason of a Kubernetes event: "" for nil, "Unknown" for an error that
// wraps none of the package's sentinels, else the reason listed with the
// sentinel (e.g. "PoolExhausted").
func ReasonOf(err error) string {
	if err == nil {
		return ""
	}
	var k *kind
	if errors.As(err, &k) {
		return k.reason
	}
	return "Unknown"
}

// RequestError says why a request (Allocate, Assign) was refused, or why
// Reconfigure took an address from a Service. It wraps one sentinel.
type RequestError struct {
	Service ServiceKey // the Service asking
	Family  Family     // the family concerned, "" if none
	Pool    string     // the pool concerned, "" if none
	IP      netip.Addr // the address concerned, invalid if none
	Holder  ServiceKey // the Service holding IP, for IPInUse, PortCollision and PodSelectorMismatch
	Detail  string     // a sentence that says exactly why
	Err     error      // the sentinel
}

func (e *RequestError) Error() string {
	return fmt.Sprintf("ipam: service %s: %v: %s", e.Service, e.Err, e.Detail)
}

func (e *RequestError) Unwrap() error { return e.Err }

// PoolError says which pool and field failed validation, and why.
type PoolError struct {
	Index  int    // position in the pool list
	Pool   string // the pool's name as given (may be the invalid one)
	Field  string // the field, spelled as in the pool YAML: "name", "addresses[1]", "exclude[0]", ...
	Detail string // why
	Err    error  // the parse error of an address entry, or nil
}

func (e *PoolError) Error() string {
	msg := fmt.Sprintf("pool %q (pools[%d]): %s: %s", e.Pool, e.Index, e.Field, e.Detail)
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap returns ErrInvalidPool and, if set, the parse error.
func (e *PoolError) Unwrap() []error {
	if e.Err != nil {
		return []error{ErrInvalidPool, e.Err}
	}
	return []error{ErrInvalidPool}
}
