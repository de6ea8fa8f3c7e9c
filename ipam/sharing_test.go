package ipam_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/onprem-lb/onprem-lb/ipam"
)

func TestSharing(t *testing.T) {
	web := func(name string, ports ...uint16) ipam.Request {
		return ipam.Request{Service: key(name), SharingKey: "web", Ports: tcp(ports...)}
	}
	runScenarios(t, []scenario{
		{
			name:  "same namespace and key, distinct ports: one address",
			pools: []ipam.Pool{lan},
			steps: []step{
				{name: "http", req: web("http", 80), want: []string{"198.18.0.0"}},
				{name: "https shares it", req: web("https", 443), want: []string{"198.18.0.0"}},
				{name: "dns over UDP 53 and TCP 53 shares it too", req: ipam.Request{Service: key("dns"), SharingKey: "web", Ports: []ipam.Port{{ipam.UDP, 53}, {ipam.TCP, 53}}}, want: []string{"198.18.0.0"}},
				{name: "UDP 80 does not collide with TCP 80", req: ipam.Request{Service: key("quic"), SharingKey: "web", Ports: []ipam.Port{{ipam.UDP, 80}, {ipam.UDP, 443}}}, want: []string{"198.18.0.0"}},
				{name: "http releases: still held", op: release, svc: "http", want: []string{"198.18.0.0"}},
				{name: "another Service without key does not get it", req: ipam.Request{Service: key("other")}, want: []string{"198.18.0.1"}},
				{name: "https releases", op: release, svc: "https", want: []string{"198.18.0.0"}},
				{name: "dns releases", op: release, svc: "dns", want: []string{"198.18.0.0"}},
				{name: "quic releases: freed", op: release, svc: "quic", want: []string{"198.18.0.0"}},
				{name: "now free for anyone", req: ipam.Request{Service: key("next")}, want: []string{"198.18.0.0"}},
			},
		},
		{
			name:  "port collision: a fresh address, or an error for a requested one",
			pools: []ipam.Pool{lan},
			steps: []step{
				{name: "a", req: web("a", 80, 443), want: []string{"198.18.0.0"}},
				{name: "b collides on 443: own address", req: web("b", 443), want: []string{"198.18.0.1"}},
				{name: "c shares with a or b: the lowest", req: web("c", 8080), want: []string{"198.18.0.0"}},
				{name: "d asks for a's address, collides", req: ipam.Request{Service: key("d"), SharingKey: "web", Ports: tcp(80), IPs: addrs("198.18.0.0")}, wantErr: ipam.ErrPortCollision},
				{name: "assign collides too", op: assign, req: web("d", 8080), ips: []string{"198.18.0.0"}, wantErr: ipam.ErrPortCollision},
				{name: "c changes to 443: collides with a, moves to b's", req: web("c", 443, 9000), want: []string{"198.18.0.2"}},
			},
		},
		{
			name:  "different sharing keys never share",
			pools: []ipam.Pool{lan},
			steps: []step{
				{name: "a", req: web("a", 80), want: []string{"198.18.0.0"}},
				{name: "b with key api", req: ipam.Request{Service: key("b"), SharingKey: "api", Ports: tcp(443)}, want: []string{"198.18.0.1"}},
				{name: "c with key api asks for a's", req: ipam.Request{Service: key("c"), SharingKey: "api", Ports: tcp(8443), IPs: addrs("198.18.0.0")}, wantErr: ipam.ErrIPInUse},
				{name: "c without key asks for a's", req: ipam.Request{Service: key("c"), Ports: tcp(8443), IPs: addrs("198.18.0.0")}, wantErr: ipam.ErrIPInUse},
				{name: "c with key api shares b's", req: ipam.Request{Service: key("c"), SharingKey: "api", Ports: tcp(8443)}, want: []string{"198.18.0.1"}},
			},
		},
		{
			name:  "a Service without key never shares",
			pools: []ipam.Pool{lan},
			steps: []step{
				{name: "a without key", req: ipam.Request{Service: key("a"), Ports: tcp(80)}, want: []string{"198.18.0.0"}},
				{name: "b with a key asks for a's", req: withIPs(web("b", 443), "198.18.0.0"), wantErr: ipam.ErrIPInUse},
				{name: "b with a key gets its own", req: web("b", 443), want: []string{"198.18.0.1"}},
			},
		},
		{
			name:  "another namespace never shares, even with the same key",
			pools: []ipam.Pool{lan},
			steps: []step{
				{name: "a in default", req: web("a", 80), want: []string{"198.18.0.0"}},
				{name: "b in other, same key, asks for it", req: ipam.Request{Service: nskey("other", "b"), SharingKey: "web", Ports: tcp(443), IPs: addrs("198.18.0.0")}, wantErr: ipam.ErrIPInUse},
				{name: "b in other gets its own", req: ipam.Request{Service: nskey("other", "b"), SharingKey: "web", Ports: tcp(443)}, want: []string{"198.18.0.1"}},
			},
		},
		{
			name:  "externalTrafficPolicy Local shares only with the same pod selector",
			pools: []ipam.Pool{lan},
			steps: []step{
				{name: "a Local app=web", req: ipam.Request{Service: key("a"), SharingKey: "web", Ports: tcp(80), PodSelector: "app=web"}, want: []string{"198.18.0.0"}},
				{name: "b Local app=web shares", req: ipam.Request{Service: key("b"), SharingKey: "web", Ports: tcp(443), PodSelector: "app=web"}, want: []string{"198.18.0.0"}},
				{name: "c Local app=api asks for it", req: ipam.Request{Service: key("c"), SharingKey: "web", Ports: tcp(8080), PodSelector: "app=api", IPs: addrs("198.18.0.0")}, wantErr: ipam.ErrPodSelectorMismatch},
				{name: "c Cluster asks for it", req: ipam.Request{Service: key("c"), SharingKey: "web", Ports: tcp(8080), IPs: addrs("198.18.0.0")}, wantErr: ipam.ErrPodSelectorMismatch},
				{name: "c Local app=api gets its own", req: ipam.Request{Service: key("c"), SharingKey: "web", Ports: tcp(8080), PodSelector: "app=api"}, want: []string{"198.18.0.1"}},
				{name: "d Cluster gets its own", req: ipam.Request{Service: key("d"), SharingKey: "web", Ports: tcp(8080)}, want: []string{"198.18.0.2"}},
				{name: "e Cluster shares d's", req: ipam.Request{Service: key("e"), SharingKey: "web", Ports: tcp(9090)}, want: []string{"198.18.0.2"}},
			},
		},
		{
			name:  "sharing respects the pools a Service may use",
			pools: []ipam.Pool{lan, {Name: "dmz", Addresses: ranges("198.18.1.0/30")}},
			steps: []step{
				{name: "a asks for dmz", req: ipam.Request{Service: key("a"), Pool: "dmz", SharingKey: "web", Ports: tcp(80)}, want: []string{"198.18.1.0"}},
				{name: "b may not use dmz: no sharing", req: web("b", 443), want: []string{"198.18.0.0"}, wantPools: []string{"lan"}},
				{name: "c asks for dmz: shares a's", req: ipam.Request{Service: key("c"), Pool: "dmz", SharingKey: "web", Ports: tcp(8080)}, want: []string{"198.18.1.0"}},
			},
		},
	})
}

// withIPs returns r asking for ips.
func withIPs(r ipam.Request, ips ...string) ipam.Request {
	r.IPs = addrs(ips...)
	return r
}

func TestAllocateReportsWhyNotShared(t *testing.T) {
	a, err := ipam.New([]ipam.Pool{lan})
	if err != nil {
		t.Fatal(err)
	}
	web := func(name string, ports ...uint16) ipam.Request {
		return ipam.Request{Service: key(name), SharingKey: "web", Ports: tcp(ports...)}
	}
	for _, tt := range []struct {
		name    string
		req     ipam.Request
		wantIP  string
		wantErr error  // the kind of Allocation.NotShared; nil: none
		detail  string // in NotShared's message
	}{
		{name: "first of the key", req: web("a", 80), wantIP: "198.18.0.0"},
		{name: "collides on TCP/80", req: web("b", 80), wantIP: "198.18.0.1", wantErr: ipam.ErrPortCollision, detail: "198.18.0.0 is used by default/a, which also uses TCP/80"},
		{name: "again: it keeps its own, nothing to report", req: web("b", 80), wantIP: "198.18.0.1"},
		{name: "shares: nothing to report", req: web("c", 443), wantIP: "198.18.0.0"},
		{name: "no key: nothing to report", req: ipam.Request{Service: key("d"), Ports: tcp(80)}, wantIP: "198.18.0.2"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := a.Allocate(tt.req)
			if err != nil {
				t.Fatal(err)
			}
			if ips := got.IPs(); len(ips) != 1 || ips[0].String() != tt.wantIP {
				t.Errorf("IPs = %v, want %s", ips, tt.wantIP)
			}
			switch {
			case tt.wantErr == nil && got.NotShared != nil:
				t.Errorf("NotShared = %v, want nil", got.NotShared)
			case tt.wantErr != nil && (!errors.Is(got.NotShared, tt.wantErr) || !strings.Contains(got.NotShared.Error(), tt.detail)):
				t.Errorf("NotShared = %v, want %v saying %q", got.NotShared, tt.wantErr, tt.detail)
			}
		})
	}
}
