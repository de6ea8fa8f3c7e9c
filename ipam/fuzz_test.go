package ipam_test

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/onprem-lb/onprem-lb/ipam"
)

// FuzzAllocator runs a random sequence of operations, four bytes each,
// against small pools and checks after every one: the internal invariants,
// that no address is held by two Services that may not share it, that a
// failed operation changed nothing, and that allocating is idempotent.
func FuzzAllocator(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 0, 0, 4, 0, 0, 0})
	f.Add([]byte{0, 0, 4, 0, 0, 1, 4, 0, 0, 2, 0x14, 0, 3, 0, 0, 0, 2, 1, 0, 3})
	f.Add([]byte{0, 3, 0x20, 5, 0, 4, 0x21, 6, 0, 5, 0x08, 0, 4, 0, 0, 0, 4, 0, 0, 0, 0, 3, 1, 0})
	f.Fuzz(runOps)
}

// fuzzConfigs are the pool lists FuzzAllocator switches between.
var fuzzConfigs = [][]ipam.Pool{
	{
		{Name: "lan", AutoAssign: true, AvoidBuggyIPs: true, Addresses: ranges("198.18.0.254-198.18.1.2", "2001:db8::/126"), Exclude: ranges("198.18.1.1")},
		{Name: "dmz", Namespaces: []string{"team"}, Priority: 1, Addresses: ranges("198.18.2.0/31", "2001:db8:2::/127")},
	},
	{
		{Name: "lan", AutoAssign: true, Addresses: ranges("198.18.0.255-198.18.1.0", "2001:db8::/127")},
		{Name: "new", AutoAssign: true, Priority: 2, Addresses: ranges("198.18.3.0/31")},
	},
}

// fuzzCandidates are the addresses FuzzAllocator requests and assigns: in
// pools, excluded, skipped as buggy, in a pool of another namespace, and in
// no pool.
var fuzzCandidates = addrs("198.18.0.254", "198.18.0.255", "198.18.1.0", "198.18.1.1", "198.18.1.2",
	"198.18.2.0", "198.18.2.1", "198.18.3.1", "203.0.113.1", "2001:db8::1", "2001:db8:2::", "2001:db8:9::")

// runOps runs the operations encoded in ops (see FuzzAllocator).
func runOps(t *testing.T, ops []byte) {
	// Long sequences find nothing short ones do not, and slow the fuzzer.
	ops = ops[:min(len(ops), 4*64)]
	a, err := ipam.New(fuzzConfigs[0])
	if err != nil {
		t.Fatal(err)
	}
	reqs := map[ipam.ServiceKey]ipam.Request{} // the last request each Service succeeded with
	cfg := 0
	for len(ops) >= 4 {
		kind, who, flags, ipb := ops[0], ops[1], ops[2], ops[3]
		ops = ops[4:]
		ns := "default"
		if who&4 != 0 {
			ns = "team"
		}
		req := ipam.Request{Service: ipam.ServiceKey{Namespace: ns, Name: fmt.Sprint("s", who%4)}}
		switch flags & 3 {
		case 1:
			req.Policy = ipam.PreferDualStack
		case 2:
			req.Policy = ipam.RequireDualStack
		case 3:
			req.Families = []ipam.Family{ipam.IPv6}
		}
		if flags&4 != 0 {
			req.SharingKey = "k"
		}
		req.Ports = tcp(uint16(1 + flags>>3&1))
		if flags&0x10 != 0 {
			req.PodSelector = "app=x"
		}
		if flags&0x20 != 0 {
			req.Pool = "dmz"
		}
		var ips []netip.Addr
		if ipb != 0 {
			ips = []netip.Addr{fuzzCandidates[int(ipb)%len(fuzzCandidates)]}
		}
		before := ipam.Snapshot(a)
		var opErr error
		switch kind % 5 {
		case 0, 1:
			req.IPs = ips
			var al ipam.Allocation
			al, opErr = a.Allocate(req)
			if opErr == nil {
				reqs[req.Service] = req
				again, err := a.Allocate(req)
				if err != nil || !slices.Equal(al.IPs(), again.IPs()) {
					t.Fatalf("%v: allocated %v, then %v, %v", req.Service, al.IPs(), again.IPs(), err)
				}
			}
		case 2:
			if len(ips) == 0 {
				ips = fuzzCandidates[:1]
			}
			_, opErr = a.Assign(req, ips)
			if opErr == nil {
				reqs[req.Service] = req
			}
		case 3:
			a.Release(req.Service)
			delete(reqs, req.Service)
		case 4:
			cfg = 1 - cfg
			if _, err := a.Reconfigure(fuzzConfigs[cfg]); err != nil {
				t.Fatal(err)
			}
		}
		if opErr != nil {
			if ipam.ReasonOf(opErr) == "Unknown" {
				t.Fatalf("%v: error without a reason: %v", req.Service, opErr)
			}
			if diff := cmp.Diff(before, ipam.Snapshot(a), addrCmp); diff != "" {
				t.Fatalf("%v: failed with %v, yet changed (-before +after):\n%s", req.Service, opErr, diff)
			}
		}
		if err := ipam.CheckInvariants(a); err != nil {
			t.Fatal(err)
		}
		checkSharing(t, a, reqs)
	}
}

// checkSharing fails if two Services hold one address without being allowed
// to share it.
func checkSharing(t *testing.T, a *ipam.Allocator, reqs map[ipam.ServiceKey]ipam.Request) {
	t.Helper()
	users := map[netip.Addr][]ipam.ServiceKey{}
	for svc, ads := range ipam.Snapshot(a) {
		for _, ad := range ads {
			users[ad.IP] = append(users[ad.IP], svc)
		}
	}
	for ip, us := range users {
		for i, x := range us {
			for _, y := range us[:i] {
				rx, ry := reqs[x], reqs[y]
				ok := x.Namespace == y.Namespace && rx.SharingKey != "" && rx.SharingKey == ry.SharingKey &&
					rx.PodSelector == ry.PodSelector && !slices.ContainsFunc(rx.Ports, func(p ipam.Port) bool { return slices.Contains(ry.Ports, p) })
				if !ok {
					t.Fatalf("%s held by %v (%+v) and %v (%+v)", ip, x, rx, y, ry)
				}
			}
		}
	}
}
