package speaker

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/onprem-lb/onprem-lb/config"
	"github.com/onprem-lb/onprem-lb/speaker/membership"
	"github.com/onprem-lb/onprem-lb/test/lab/labtest"
)

// macsNetnsChildEnv names the network namespace TestMembershipManyVeths re-executes itself in.
const macsNetnsChildEnv = "OLB_SPEAKER_MACS_NETNS"

// TestMembershipManyVeths is a node with 500 pod veths (200 bridge ports of a CNI bridge as
// flannel makes them, 200 with the pod gateway as a /32 as the ptp plugin makes them, 100 with
// no address as Calico makes them) and one uplink, olbeth0, holding the node IPs
// 198.18.65.1/24 and .2. The speaker's MACs go into the metadata of a member bound to .1; a
// second member bound to .2 joins it: the first member starts, and the second decodes the
// MACs of the uplink and of the bridge (which holds a subnet), and no pod's.
func TestMembershipManyVeths(t *testing.T) {
	if ns := os.Getenv(macsNetnsChildEnv); ns != "" {
		membershipManyVethsChild(t)
		return
	}
	labtest.NeedRoot(t, "ip")
	node, pods := fmt.Sprintf("olbt-macs-%d", os.Getpid()), fmt.Sprintf("olbt-macp-%d", os.Getpid())
	for _, ns := range []string{node, pods} {
		netnsRun(t, nil, "ip", "netns", "add", ns)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	}
	var batch strings.Builder
	fmt.Fprintf(&batch, "link add olbeth0 type veth peer name olbeth0p\n")
	fmt.Fprintf(&batch, "addr add 198.18.65.1/24 dev olbeth0\naddr add 198.18.65.2/24 dev olbeth0\n")
	fmt.Fprintf(&batch, "link set olbeth0p up\nlink set olbeth0 up\nlink set lo up\n")
	fmt.Fprintf(&batch, "link add olbcni0 type bridge\naddr add 198.18.66.1/24 dev olbcni0\n")
	for i := range 500 {
		fmt.Fprintf(&batch, "link add olbv%d type veth peer name p%d netns %s\n", i, i, pods)
		switch {
		case i < 200:
			fmt.Fprintf(&batch, "link set olbv%d master olbcni0\n", i)
		case i < 400:
			fmt.Fprintf(&batch, "addr add 198.18.67.1/32 dev olbv%d\n", i)
		}
		fmt.Fprintf(&batch, "link set olbv%d up\n", i)
	}
	netnsRun(t, strings.NewReader(batch.String()), "ip", "-n", node, "-batch", "-")

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", node, exe, "-test.run", "^TestMembershipManyVeths$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), macsNetnsChildEnv+"="+node)
	out, err := cmd.CombinedOutput()
	t.Logf("in %s:\n%s", node, out)
	if err != nil {
		t.Fatalf("in %s: %v", node, err)
	}
}

// membershipManyVethsChild is TestMembershipManyVeths inside the node's network namespace.
func membershipManyVethsChild(t *testing.T) {
	var want []net.HardwareAddr // the uplink holding the node IP, then the CNI bridge
	for _, name := range []string{"olbeth0", "olbcni0"} {
		ifi, err := net.InterfaceByName(name)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, ifi.HardwareAddr)
	}
	meta := nodeMeta(t)
	t.Logf("metadata: %d bytes", len(meta))
	start := func(name, bind string, peers ...netip.Addr) *membership.Membership {
		m, err := membership.New(membership.Config{
			Name: name, BindAddr: netip.MustParseAddr(bind), Port: 17946, Meta: meta,
			Peers: func() []netip.Addr { return peers }, ConvergeTimeout: time.Minute, // converged: state exchanged
		})
		if err != nil {
			t.Fatalf("membership of %s: %v", name, err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- m.Run(ctx) }()
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("membership of %s: %v", name, err)
			}
		})
		select {
		case <-m.Converged():
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: membership not converged within 10s", name)
		}
		return m
	}
	start("node-a", "198.18.65.1") // no peers: converged once it runs
	b := start("node-b", "198.18.65.2", netip.MustParseAddr("198.18.65.1"))
	i := slices.IndexFunc(b.Members(), func(m membership.Member) bool { return m.Name == "node-a" })
	if i < 0 {
		t.Fatalf("node-b does not see node-a: members %v", b.Members())
	}
	if diff := cmp.Diff(want, DecodeMACs(b.Members()[i].Meta)); diff != "" {
		t.Errorf("MACs node-b decodes from node-a (-want +got):\n%s", diff)
	}
}

func netnsRun(t *testing.T, stdin *strings.Reader, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	if stdin != nil {
		cmd.Stdin = stdin
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// nodeMeta is the metadata the speaker publishes on this node.
func nodeMeta(t *testing.T) []byte {
	meta, err := publishedMACs(&config.Config{}, []netip.Addr{netip.MustParseAddr("198.18.65.1")})
	if err != nil {
		t.Fatal(err)
	}
	return meta
}
