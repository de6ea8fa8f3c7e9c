package l2

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// Link describes one network interface as the announcer sees it. Reading the
// kernel ([readLinks]) and choosing interfaces ([chooseInterfaces]) are kept
// apart so that the choice can be tested without a kernel.
type Link struct {
	Name  string
	Index int
	MAC   net.HardwareAddr
	Flags net.Flags
	// NoARP is IFF_NOARP (dummy, tun, ...): the link does not resolve addresses.
	NoARP bool
	// BridgePort is true for a port enslaved to a bridge (the bridge holds the addresses).
	BridgePort bool
	// BondMember is true for a member of a bond (the bond holds the addresses).
	BondMember bool
	// CarrierChanges is the kernel's carrier change counter; a change means
	// the link flapped since it was last read.
	CarrierChanges uint64
	// Prefixes are the addresses held by the link, with their prefix lengths.
	Prefixes []netip.Prefix
}

// Errors that say why an interface cannot be used; checked with errors.Is.
var (
	ErrNoInterface      = errors.New("l2: no such interface")
	ErrInterfaceDown    = errors.New("l2: interface is down or has no carrier")
	ErrInterfaceNoARP   = errors.New("l2: interface does not do address resolution (loopback, NOARP or not Ethernet)")
	ErrInterfaceEnslave = errors.New("l2: interface is a bridge port or bond member")
)

// unusable says why l cannot announce anything; nil if it can.
func (l *Link) unusable() error {
	switch {
	case !l.resolves():
		return ErrInterfaceNoARP
	case l.Flags&net.FlagUp == 0 || l.Flags&net.FlagRunning == 0:
		return ErrInterfaceDown
	case l.BridgePort || l.BondMember:
		return ErrInterfaceEnslave
	}
	return nil
}

// holds reports whether l holds an address whose prefix contains ip.
func (l *Link) holdsPrefixOf(ip netip.Addr) bool {
	for _, p := range l.Prefixes {
		if p.Addr().Is4() == ip.Is4() && p.Masked().Contains(ip) {
			return true
		}
	}
	return false
}

// holdsAny reports whether l holds one of ips.
func (l *Link) holdsAny(ips []netip.Addr) bool {
	for _, p := range l.Prefixes {
		if slices.Contains(ips, p.Addr()) {
			return true
		}
	}
	return false
}

// choice is where one VIP goes: the usable interfaces, and the configured
// interfaces that cannot be used, with the reason.
type choice struct {
	ifaces []string
	errs   map[string]error
}

// chooseInterfaces is the pure interface choice for one VIP. Explicit
// interfaces in t are used if they exist and are usable (an explicit bridge
// port or bond member is accepted: the operator said so); otherwise the usable
// links holding an address whose prefix contains vip, else the usable links
// holding one of nodeIPs of vip's family. Loopback, down, NOARP links, bridge
// ports and bond members are never chosen automatically. links must be sorted
// by name for a stable result.
func chooseInterfaces(vip netip.Addr, t Target, links []Link, nodeIPs []netip.Addr) choice {
	var c choice
	if len(t.Interfaces) > 0 {
		for _, name := range t.Interfaces {
			i := slices.IndexFunc(links, func(l Link) bool { return l.Name == name })
			var err error
			if i < 0 {
				err = ErrNoInterface
			} else if err = links[i].unusable(); errors.Is(err, ErrInterfaceEnslave) {
				err = nil
			}
			if err != nil {
				if c.errs == nil {
					c.errs = map[string]error{}
				}
				c.errs[name] = err
				continue
			}
			if !slices.Contains(c.ifaces, name) {
				c.ifaces = append(c.ifaces, name)
			}
		}
		return c
	}
	for _, l := range links {
		if l.unusable() == nil && l.holdsPrefixOf(vip) {
			c.ifaces = append(c.ifaces, l.Name)
		}
	}
	if len(c.ifaces) > 0 {
		return c
	}
	var family []netip.Addr
	for _, ip := range nodeIPs {
		if ip.Unmap().Is4() == vip.Is4() {
			family = append(family, ip.Unmap())
		}
	}
	for _, l := range links {
		if l.unusable() == nil && l.holdsAny(family) {
			c.ifaces = append(c.ifaces, l.Name)
		}
	}
	return c
}

// sysClassNet is where readLinks reads link attributes the net package does
// not give.
const sysClassNet = "/sys/class/net"

// readLinks reads the host's (the network namespace's) interfaces, sorted by
// name: one link dump and one address dump, whatever the number of links.
func readLinks() ([]Link, error) {
	return readLinksFrom(net.Interfaces, dumpAddrs)
}

// readLinksFrom is readLinks with the kernel's link list and address dump
// handed in.
func readLinksFrom(interfaces func() ([]net.Interface, error), addrs func() (map[int][]netip.Prefix, error)) ([]Link, error) {
	ifis, err := interfaces()
	if err != nil {
		return nil, fmt.Errorf("l2: listing interfaces: %w", err)
	}
	byIndex, err := addrs()
	if err != nil {
		return nil, fmt.Errorf("l2: listing addresses: %w", err)
	}
	links := make([]Link, 0, len(ifis))
	for _, ifi := range ifis {
		l := Link{Name: ifi.Name, Index: ifi.Index, MAC: ifi.HardwareAddr, Flags: ifi.Flags, Prefixes: byIndex[ifi.Index]}
		dir := filepath.Join(sysClassNet, ifi.Name)
		if b, err := os.ReadFile(filepath.Join(dir, "flags")); err == nil {
			if f, err := strconv.ParseUint(strings.TrimPrefix(strings.TrimSpace(string(b)), "0x"), 16, 32); err == nil {
				l.NoARP = f&0x80 != 0 // IFF_NOARP
			}
		}
		if b, err := os.ReadFile(filepath.Join(dir, "carrier_changes")); err == nil {
			l.CarrierChanges, _ = strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		}
		l.BridgePort = exists(filepath.Join(dir, "brport"))
		l.BondMember = exists(filepath.Join(dir, "bonding_slave"))
		if !l.BondMember {
			if master, err := os.Readlink(filepath.Join(dir, "master")); err == nil {
				l.BondMember = exists(filepath.Join(sysClassNet, filepath.Base(master), "bonding"))
			}
		}
		links = append(links, l)
	}
	slices.SortFunc(links, func(a, b Link) int { return strings.Compare(a.Name, b.Name) })
	return links, nil
}

// dumpAddrs returns every address of the host (the network namespace), by
// interface index, from one netlink address dump. An IPv4 address is the
// local one (IFA_LOCAL), not the peer of a point-to-point link.
func dumpAddrs() (map[int][]netip.Prefix, error) {
	rib, err := syscall.NetlinkRIB(syscall.RTM_GETADDR, syscall.AF_UNSPEC)
	if err != nil {
		return nil, fmt.Errorf("netlink address dump: %w", err)
	}
	msgs, err := syscall.ParseNetlinkMessage(rib)
	if err != nil {
		return nil, fmt.Errorf("netlink address dump: %w", err)
	}
	out := map[int][]netip.Prefix{}
	for i := range msgs {
		m := &msgs[i]
		if m.Header.Type != syscall.RTM_NEWADDR || len(m.Data) < syscall.SizeofIfAddrmsg {
			continue
		}
		bits, index := int(m.Data[1]), int(binary.NativeEndian.Uint32(m.Data[4:8]))
		attrs, err := syscall.ParseNetlinkRouteAttr(m)
		if err != nil {
			continue
		}
		var addr, local netip.Addr
		for _, a := range attrs {
			switch a.Attr.Type {
			case syscall.IFA_ADDRESS:
				addr, _ = netip.AddrFromSlice(a.Value)
			case syscall.IFA_LOCAL:
				local, _ = netip.AddrFromSlice(a.Value)
			}
		}
		if local.IsValid() {
			addr = local
		}
		if addr.IsValid() && bits <= addr.BitLen() {
			out[index] = append(out[index], netip.PrefixFrom(addr, bits))
		}
	}
	return out, nil
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// AnnounceMACs returns the MAC addresses this host may answer ARP and NDP
// from: the speaker publishes them to its peers so that their
// [Options.IsPeerMAC] can tell a handover from a conflict. They are the MACs
// of the interfaces a VIP can be announced on, whatever their state now:
// first the interfaces named in explicit (pools' interfaces, bridge ports
// and bond members included), then those holding one of nodeIPs, then the
// other links chooseInterfaces may pick, those holding a subnet (not only a
// /32 or /128 as a pod's veth does, nor only link-local addresses). Pod
// veths without address, bridge ports, bond members, loopback and NOARP
// links are left out. No MAC appears twice; the order is the priority,
// for a caller that has room for only the first ones.
func AnnounceMACs(explicit []string, nodeIPs []netip.Addr) ([]net.HardwareAddr, error) {
	links, err := readLinks()
	if err != nil {
		return nil, err
	}
	return announceMACs(links, explicit, nodeIPs), nil
}

func announceMACs(links []Link, explicit []string, nodeIPs []netip.Addr) []net.HardwareAddr {
	var named, node, subnet []net.HardwareAddr
	for _, name := range explicit {
		if i := slices.IndexFunc(links, func(l Link) bool { return l.Name == name }); i >= 0 && links[i].resolves() {
			named = append(named, links[i].MAC)
		}
	}
	unmapped := make([]netip.Addr, len(nodeIPs))
	for i, ip := range nodeIPs {
		unmapped[i] = ip.Unmap()
	}
	for _, l := range links {
		switch {
		case !l.resolves() || l.BridgePort || l.BondMember:
		case l.holdsAny(unmapped):
			node = append(node, l.MAC)
		case l.holdsSubnet():
			subnet = append(subnet, l.MAC)
		}
	}
	var out []net.HardwareAddr
	for _, mac := range slices.Concat(named, node, subnet) {
		if !slices.ContainsFunc(out, func(m net.HardwareAddr) bool { return bytes.Equal(m, mac) }) {
			out = append(out, slices.Clone(mac))
		}
	}
	return out
}

// resolves reports whether l does address resolution from an Ethernet MAC:
// not loopback, not NOARP.
func (l *Link) resolves() bool {
	return l.Flags&net.FlagLoopback == 0 && !l.NoARP && len(l.MAC) == 6
}

// holdsSubnet reports whether l holds a global address whose prefix has room
// for another address, a VIP.
func (l *Link) holdsSubnet() bool {
	return slices.ContainsFunc(l.Prefixes, func(p netip.Prefix) bool {
		return p.Bits() < p.Addr().BitLen() && !p.Addr().IsLinkLocalUnicast()
	})
}
