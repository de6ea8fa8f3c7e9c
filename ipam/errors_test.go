package ipam_test

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/onprem-lb/onprem-lb/ipam"
)

// TestErrorDetails checks what a refusal says: the sentinel, the reason,
// the fields of the *RequestError and the words of its message.
func TestErrorDetails(t *testing.T) {
	pools := []ipam.Pool{
		{Name: "lan", AutoAssign: true, Addresses: ranges("198.18.0.0/31"), Exclude: ranges("198.18.0.1")},
		{Name: "team", AutoAssign: true, Namespaces: []string{"team"}, Addresses: ranges("198.18.1.0/31")},
	}
	setup := []ipam.Request{
		{Service: key("holder"), SharingKey: "k", Ports: tcp(80), IPs: addrs("198.18.0.0")},
	}
	tests := []struct {
		name     string
		req      ipam.Request
		want     ipam.RequestError // Detail: a substring of the message
		wantText string
		reason   string
	}{
		{
			name:   "exhausted",
			req:    ipam.Request{Service: key("s")},
			want:   ipam.RequestError{Service: key("s"), Family: ipam.IPv4, Pool: "lan", Err: ipam.ErrPoolExhausted},
			reason: "PoolExhausted", wantText: "ipam: service default/s: pool exhausted: no free IPv4 address in pool lan",
		},
		{
			name:   "IP in use names the holder",
			req:    ipam.Request{Service: key("s"), IPs: addrs("198.18.0.0")},
			want:   ipam.RequestError{Service: key("s"), Family: ipam.IPv4, Pool: "lan", IP: netip.MustParseAddr("198.18.0.0"), Holder: key("holder"), Err: ipam.ErrIPInUse},
			reason: "IPInUse", wantText: "198.18.0.0 is used by default/holder and the service has no sharing key",
		},
		{
			name:   "port collision names the holder and the port",
			req:    ipam.Request{Service: key("s"), SharingKey: "k", Ports: tcp(80), IPs: addrs("198.18.0.0")},
			want:   ipam.RequestError{Service: key("s"), Family: ipam.IPv4, Pool: "lan", IP: netip.MustParseAddr("198.18.0.0"), Holder: key("holder"), Err: ipam.ErrPortCollision},
			reason: "PortCollision", wantText: "198.18.0.0 is used by default/holder, which also uses TCP/80",
		},
		{
			name:   "excluded",
			req:    ipam.Request{Service: key("s"), IPs: addrs("198.18.0.1")},
			want:   ipam.RequestError{Service: key("s"), Family: ipam.IPv4, Pool: "lan", IP: netip.MustParseAddr("198.18.0.1"), Err: ipam.ErrIPExcluded},
			reason: "IPExcluded", wantText: "198.18.0.1 is excluded from pool lan",
		},
		{
			name:   "namespace",
			req:    ipam.Request{Service: key("s"), Pool: "team"},
			want:   ipam.RequestError{Service: key("s"), Pool: "team", Err: ipam.ErrNamespaceNotAllowed},
			reason: "NamespaceNotAllowed", wantText: "pool team does not allow namespace default",
		},
		{
			name:   "not in any pool",
			req:    ipam.Request{Service: key("s"), IPs: addrs("203.0.113.9")},
			want:   ipam.RequestError{Service: key("s"), Family: ipam.IPv4, IP: netip.MustParseAddr("203.0.113.9"), Err: ipam.ErrIPNotInPool},
			reason: "IPNotInPool", wantText: "203.0.113.9 is not in any pool",
		},
		{
			name:   "pool not found",
			req:    ipam.Request{Service: key("s"), Pool: "nope"},
			want:   ipam.RequestError{Service: key("s"), Family: ipam.IPv4, Pool: "nope", Err: ipam.ErrPoolNotFound},
			reason: "PoolNotFound", wantText: "no pool is named nope",
		},
		{
			name:   "no IPv6 pool",
			req:    ipam.Request{Service: key("s"), Families: []ipam.Family{ipam.IPv6}},
			want:   ipam.RequestError{Service: key("s"), Family: ipam.IPv6, Err: ipam.ErrNoMatchingPool},
			reason: "NoMatchingPool", wantText: "no pool has IPv6 addresses",
		},
		{
			name:   "IP of another pool than the requested one",
			req:    ipam.Request{Service: key("s"), Pool: "lan", IPs: addrs("198.18.1.0")},
			want:   ipam.RequestError{Service: key("s"), Family: ipam.IPv4, Pool: "team", IP: netip.MustParseAddr("198.18.1.0"), Err: ipam.ErrIPNotInPool},
			reason: "IPNotInPool", wantText: "198.18.1.0: in pool team, not in the requested pool lan",
		},
		{
			name:   "wrong family",
			req:    ipam.Request{Service: key("s"), Families: []ipam.Family{ipam.IPv4}, IPs: addrs("2001:db8::1")},
			want:   ipam.RequestError{Service: key("s"), Family: ipam.IPv6, IP: netip.MustParseAddr("2001:db8::1"), Err: ipam.ErrWrongFamily},
			reason: "WrongFamily", wantText: "requested IP 2001:db8::1 is IPv6, the service wants [IPv4]",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := ipam.New(pools)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range setup {
				if _, err := a.Allocate(r); err != nil {
					t.Fatal(err)
				}
			}
			_, err = a.Allocate(tt.req)
			if !errors.Is(err, tt.want.Err) {
				t.Fatalf("Allocate: %v, want %v", err, tt.want.Err)
			}
			var re *ipam.RequestError
			if !errors.As(err, &re) {
				t.Fatalf("%v is not a *RequestError", err)
			}
			if diff := cmp.Diff(tt.want, *re, addrCmp, cmpopts.IgnoreFields(ipam.RequestError{}, "Detail"), cmpopts.EquateErrors()); diff != "" {
				t.Errorf("RequestError (-want +got):\n%s", diff)
			}
			if !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("message %q does not say %q", err, tt.wantText)
			}
			if got := ipam.ReasonOf(err); got != tt.reason {
				t.Errorf("ReasonOf = %q, want %q", got, tt.reason)
			}
			// Callers wrap; the kind survives.
			if got := ipam.ReasonOf(fmt.Errorf("sync: %w", err)); got != tt.reason {
				t.Errorf("ReasonOf(wrapped) = %q, want %q", got, tt.reason)
			}
		})
	}
}

func TestNoMatchingPoolSaysWhy(t *testing.T) {
	a, err := ipam.New([]ipam.Pool{
		{Name: "team", AutoAssign: true, Namespaces: []string{"team"}, Addresses: ranges("198.18.1.0/31")},
		{Name: "manual", Addresses: ranges("198.18.2.0/31")},
		{Name: "prod", AutoAssign: true, Addresses: ranges("198.18.3.0/31"), ServiceSelector: ipam.SelectorFunc(func(map[string]string) bool { return false })},
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = a.Allocate(ipam.Request{Service: key("s")})
	want := "ipam: service default/s: no pool matches: no pool with IPv4 addresses may serve the service: " +
		"manual (PoolNotAutoAssign), prod (ServiceSelectorMismatch), team (NamespaceNotAllowed)"
	if !errors.Is(err, ipam.ErrNoMatchingPool) || err.Error() != want {
		t.Errorf("Allocate: %v\nwant %s", err, want)
	}
}

func TestReasonOf(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{name: "nil", err: nil, want: ""},
		{name: "foreign", err: errors.New("boom"), want: "Unknown"},
		{name: "sentinel", err: ipam.ErrPoolExhausted, want: "PoolExhausted"},
		{name: "wrapped sentinel", err: fmt.Errorf("x: %w", ipam.ErrIPInUse), want: "IPInUse"},
		{name: "joined", err: errors.Join(errors.New("boom"), ipam.ErrWrongFamily), want: "WrongFamily"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ipam.ReasonOf(tt.err); got != tt.want {
				t.Errorf("ReasonOf(%v) = %q, want %q", tt.err, got, tt.want)
			}
		})
	}
	// Every sentinel has its own reason, free of spaces, for a metric label.
	seen := map[string]bool{}
	for _, err := range []error{
		ipam.ErrInvalidAddressRange, ipam.ErrInvalidPool, ipam.ErrInvalidRequest, ipam.ErrPoolNotFound,
		ipam.ErrNamespaceNotAllowed, ipam.ErrServiceSelectorMismatch, ipam.ErrPoolNotAutoAssign,
		ipam.ErrNoMatchingPool, ipam.ErrWrongFamily, ipam.ErrIPNotInPool, ipam.ErrIPExcluded,
		ipam.ErrIPNotRequested, ipam.ErrPoolExhausted, ipam.ErrIPInUse, ipam.ErrPortCollision,
		ipam.ErrPodSelectorMismatch,
	} {
		r := ipam.ReasonOf(err)
		if seen[r] || r == "" || strings.ContainsAny(r, " \t") {
			t.Errorf("%v: reason %q empty, repeated or not a label", err, r)
		}
		seen[r] = true
	}
}

func TestInputsNotMutated(t *testing.T) {
	pools := []ipam.Pool{
		{Name: "lan", AutoAssign: true, Addresses: ranges("198.18.0.0/24", "198.18.1.0-198.18.1.9", "2001:db8::/64"), Exclude: ranges("198.18.0.5", "198.18.0.0/30"), Namespaces: []string{"default", "team"}},
		{Name: "dmz", Priority: 3, Addresses: ranges("198.18.2.9", "198.18.2.0-198.18.2.8")},
	}
	req := ipam.Request{
		Service:  key("s"),
		Labels:   map[string]string{"app": "web"},
		Families: []ipam.Family{ipam.IPv6, ipam.IPv4},
		Policy:   ipam.RequireDualStack,
		IPs:      addrs("198.18.0.7"),
		Ports:    []ipam.Port{{ipam.UDP, 53}, {ipam.TCP, 53}},
	}
	poolsCopy := clonePools(pools)
	reqCopy := cloneRequest(req)

	a, err := ipam.New(pools)
	if err != nil {
		t.Fatal(err)
	}
	al, err := a.Allocate(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Assign(req, al.IPs()); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Reconfigure(pools); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(poolsCopy, pools, addrCmp); diff != "" {
		t.Errorf("pools changed (-before +after):\n%s", diff)
	}
	if diff := cmp.Diff(reqCopy, req, addrCmp); diff != "" {
		t.Errorf("request changed (-before +after):\n%s", diff)
	}

	// The allocator keeps its own copies: changing the caller's values
	// afterwards changes nothing.
	req.Labels["app"] = "other"
	req.IPs[0] = netip.MustParseAddr("198.18.0.8")
	req.Families[0] = ipam.IPv4
	pools[0].Namespaces[0] = "elsewhere"
	pools[0].Exclude[0] = mustRange("198.18.0.9")
	want := []ipam.Address{{IP: al.Addresses[0].IP, Pool: "lan"}, {IP: netip.MustParseAddr("198.18.0.7"), Pool: "lan"}}
	got, _ := a.Lookup(key("s"))
	if diff := cmp.Diff(want, got, addrCmp); diff != "" {
		t.Errorf("Lookup (-want +got):\n%s", diff)
	}
	if _, err := a.Allocate(ipam.Request{Service: key("t")}); err != nil {
		t.Errorf("namespace default may no longer use lan: %v", err)
	}
	if _, err := a.Allocate(ipam.Request{Service: key("u"), IPs: addrs("198.18.0.5")}); !errors.Is(err, ipam.ErrIPExcluded) {
		t.Errorf("198.18.0.5 is no longer excluded: %v", err)
	}
}

func clonePools(ps []ipam.Pool) []ipam.Pool {
	out := make([]ipam.Pool, len(ps))
	for i, p := range ps {
		p.Addresses = append([]ipam.AddressRange(nil), p.Addresses...)
		p.Exclude = append([]ipam.AddressRange(nil), p.Exclude...)
		p.Namespaces = append([]string(nil), p.Namespaces...)
		out[i] = p
	}
	return out
}

func cloneRequest(r ipam.Request) ipam.Request {
	labels := map[string]string{}
	for k, v := range r.Labels {
		labels[k] = v
	}
	r.Labels = labels
	r.Families = append([]ipam.Family(nil), r.Families...)
	r.IPs = append([]netip.Addr(nil), r.IPs...)
	r.Ports = append([]ipam.Port(nil), r.Ports...)
	return r
}
