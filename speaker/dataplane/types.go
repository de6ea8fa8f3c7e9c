package dataplane

import (
	"net"
	"net/netip"
	"time"
)

// Protocol is a Service port's protocol: "TCP", "UDP" or "SCTP".
type Protocol string

// The protocols a Service port may use.
const (
	TCP  Protocol = "TCP"
	UDP  Protocol = "UDP"
	SCTP Protocol = "SCTP"
)

// Endpoint is one ready endpoint of a Service port. The caller filters out
// endpoints that are not ready.
type Endpoint struct {
	IP   netip.Addr
	Port uint16 // the target port
	// Local: the endpoint runs on this node. A Service with Local set is
	// forwarded to its local endpoints only.
	Local bool
}

// Port is one port of a Service.
type Port struct {
	Protocol  Protocol
	Port      uint16 // the Service port, on every VIP
	Endpoints []Endpoint
}

// Service is a LoadBalancer Service whose VIPs this node forwards.
// A Service is identified by Namespace/Name; of two with the same name only
// the first given to Sync counts.
type Service struct {
	Namespace, Name string
	VIPs            []netip.Addr // the Service's ingress IPs, both families possible
	Ports           []Port
	// Local is externalTrafficPolicy: Local: only local endpoints, client
	// source IP kept. Otherwise (Cluster) every endpoint, masqueraded.
	Local bool
	// AffinityTimeout > 0 is sessionAffinity: ClientIP with this timeout
	// (rounded up to whole seconds).
	AffinityTimeout time.Duration
	// SourceRanges are the loadBalancerSourceRanges; empty lets everyone in.
	SourceRanges []netip.Prefix
	// ProxiedElsewhere says another service proxy (kube-proxy, ipMode VIP) forwards the VIPs:
	// Ports and the rest are ignored, and traffic to a VIP that proxy neither DNATed nor
	// answered itself (e.g. rejected) is dropped silently. A connection tried before the proxy programs a new VIP then leaves no
	// conntrack entry behind, so the client's retransmission gets through once it has.
	ProxiedElsewhere bool
}

// Handover is a VIP this node took over from a node that is still up (it left gracefully, or
// the VIP moved for another reason than its death) and still holds the VIP's open
// connections: their packets, which the clients now send here, are forwarded to it, so those
// connections survive the move instead of being reset by an endpoint that never saw them.
type Handover struct {
	VIP netip.Addr
	// To is the previous owner's address on the segment, of VIP's family.
	To netip.Addr
}

// Handovers are the VIPs whose connections SetHandovers forwards.
type Handovers struct {
	VIPs []Handover
	// Peers are the MAC addresses of the other nodes: what they send is never forwarded, so
	// two nodes that briefly both hold a handover of a VIP cannot bounce a packet between them.
	Peers []net.HardwareAddr
}

// Family is an IP family: IPv4 (iptables) or IPv6 (ip6tables).
type Family int

// The two families, in the order they are synced.
const (
	IPv4 Family = iota
	IPv6
)

var families = [...]Family{IPv4, IPv6}

func (f Family) String() string {
	if f == IPv6 {
		return "ipv6"
	}
	return "ipv4"
}

// has reports whether a is an address of family f (IPv4-mapped IPv6
// addresses count as IPv4).
func (f Family) has(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	if f == IPv4 {
		return a.Unmap().Is4()
	}
	return a.Is6() && !a.Is4In6()
}

// unmapPrefix turns an IPv4-mapped IPv6 prefix into an IPv4 one.
func unmapPrefix(p netip.Prefix) netip.Prefix {
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(a.Unmap(), p.Bits()-96).Masked()
	}
	return p.Masked()
}
