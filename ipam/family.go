package ipam

import "net/netip"

// Family is an IP family. Its values are spelled like the Kubernetes
// spec.ipFamilies entries, so a provider can convert them directly.
type Family string

// The IP families.
const (
	IPv4 Family = "IPv4"
	IPv6 Family = "IPv6"
)

// FamilyOf returns the family of a valid address.
func FamilyOf(a netip.Addr) Family {
	if a.Is4() {
		return IPv4
	}
	return IPv6
}

func (f Family) valid() bool { return f == IPv4 || f == IPv6 }

// index returns 0 for IPv4 and 1 for IPv6, for per-family arrays.
func (f Family) index() int {
	if f == IPv4 {
		return 0
	}
	return 1
}

// IPFamilyPolicy says how many families a Service wants. Its values are
// spelled like the Kubernetes spec.ipFamilyPolicy values; the zero value
// means SingleStack.
type IPFamilyPolicy string

// The IP family policies.
const (
	// SingleStack: one address, of the first requested family.
	SingleStack IPFamilyPolicy = "SingleStack"
	// PreferDualStack: one address per requested family, as many as can be
	// given; the request fails only if none can.
	PreferDualStack IPFamilyPolicy = "PreferDualStack"
	// RequireDualStack: one IPv4 and one IPv6 address, or nothing.
	RequireDualStack IPFamilyPolicy = "RequireDualStack"
)
