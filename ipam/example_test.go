package ipam_test

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/onprem-lb/onprem-lb/ipam"
)

func Example() {
	lan, _ := ipam.ParseAddressRange("198.18.0.200-198.18.0.239")
	lan6, _ := ipam.ParseAddressRange("2001:db8:18::200/122")
	excluded, _ := ipam.ParseAddressRange("198.18.0.200")
	a, err := ipam.New([]ipam.Pool{{
		Name:       "lan",
		Addresses:  []ipam.AddressRange{lan, lan6},
		Exclude:    []ipam.AddressRange{excluded},
		AutoAssign: true,
	}})
	if err != nil {
		fmt.Println(err)
		return
	}

	web := ipam.Request{
		Service:  ipam.ServiceKey{Namespace: "default", Name: "web"},
		Policy:   ipam.PreferDualStack,
		Families: []ipam.Family{ipam.IPv4, ipam.IPv6},
		Ports:    []ipam.Port{{Protocol: ipam.TCP, Port: 443}},
	}
	al, err := a.Allocate(web)
	fmt.Println(al.IPs(), err)

	// Another Service may not take web's address.
	other := ipam.Request{
		Service: ipam.ServiceKey{Namespace: "default", Name: "other"},
		IPs:     []netip.Addr{netip.MustParseAddr("198.18.0.201")},
	}
	_, err = a.Allocate(other)
	fmt.Println(errors.Is(err, ipam.ErrIPInUse), ipam.ReasonOf(err))
	fmt.Println(err)

	// Output:
	// [198.18.0.201 2001:db8:18::200] <nil>
	// true IPInUse
	// ipam: service default/other: IP in use: 198.18.0.201 is used by default/web and the service has no sharing key
}

func ExampleParseAddressRange() {
	for _, s := range []string{"198.18.0.0/24", "198.18.0.200-198.18.0.239", "2001:db8::1", "198.18.0.9-198.18.0.1"} {
		r, err := ipam.ParseAddressRange(s)
		if err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Println(r.First, r.Last)
	}
	// Output:
	// 198.18.0.0 198.18.0.255
	// 198.18.0.200 198.18.0.239
	// 2001:db8::1 2001:db8::1
	// ipam: address range "198.18.0.9-198.18.0.1": first address 198.18.0.9 is after last address 198.18.0.1: invalid address range
}
